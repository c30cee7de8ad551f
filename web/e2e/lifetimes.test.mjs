// A sender picks each message's lifetime in the composer (v1.1): on
// gateways with a 5 min TTL, a 30 s message disappears from both pages at
// about 30 s while a 5 min one sent beside it stays, also after a reload.

import assert from 'node:assert/strict';
import { messages, scenario, send, tid, unique, until, waitForMessage, waitJoined, waitOnline } from './harness.mjs';

/** expires_at and ms left of the message with this id, as the page shows them. */
async function expiryOf(page, id) {
  const expiry = tid(page, 'message', { id }).locator('[data-testid="message-expiry"]');
  return {
    expiresAt: Number(await expiry.getAttribute('data-expires-at')),
    left: Number(await expiry.getAttribute('data-time-left')),
  };
}

scenario(
  'a 30 s message disappears at about 30 s while a 5 min one stays',
  async (s) => {
    const [gwA, gwB] = await Promise.all([
      s.gateway({ name: 'lifetime-a', ttl: '5m' }),
      s.gateway({ name: 'lifetime-b', ttl: '5m' }),
    ]);
    const room = unique('lifetime');
    const ann = await s.user(gwA, 'Ann', { room });
    const ben = await s.user(gwB, 'Ben', { room });

    const picker = tid(ann, 'lifetime-select');
    const choices = await picker.locator('option').evaluateAll((os) => os.map((o) => [o.value, o.textContent]));
    assert.deepEqual(choices, [
      ['30000', '30 s'],
      ['60000', '1 min'],
      ['120000', '2 min'],
      ['300000', '5 min'],
    ]);
    assert.equal(await picker.inputValue(), '300000', 'the TTL is the default');

    await picker.selectOption('30000');
    const short = await send(ann, `gone in half a minute ${unique('s')}`);
    await picker.selectOption('300000');
    const long = await send(ann, `here for five minutes ${unique('l')}`);
    await waitForMessage(ben, short.text);
    await waitForMessage(ben, long.text);

    const shortExpiry = await expiryOf(ann, short.id);
    const longExpiry = await expiryOf(ann, long.id);
    assert.ok(shortExpiry.left > 25_000 && shortExpiry.left <= 30_000, `${shortExpiry.left} ms left of a 30 s lifetime`);
    assert.ok(longExpiry.left > 290_000 && longExpiry.left <= 300_000, `${longExpiry.left} ms left of a 5 min lifetime`);
    assert.equal((await expiryOf(ben, short.id)).expiresAt, shortExpiry.expiresAt, 'both pages count to one expires_at');
    assert.equal((await expiryOf(ben, long.id)).expiresAt, longExpiry.expiresAt, 'both pages count to one expires_at');

    // The 30 s one goes from both pages at its expires_at (not before, not long after); the other stays.
    const { expiresAt } = shortExpiry;
    const gone = await Promise.all(
      [
        ['Ann', ann],
        ['Ben', ben],
      ].map(async ([who, page]) => {
        const left = await until(
          `the 30 s message leaves ${who}'s page`,
          () => messages(page),
          (ms) => !ms.some((m) => m.id === short.id),
          Math.max(0, expiresAt - Date.now()) + 5_000,
        );
        return { who, at: Date.now(), left };
      }),
    );
    for (const { who, at, left } of gone) {
      assert.ok(at >= expiresAt - 1_500, `${who}: removed ${expiresAt - at} ms before expires_at`);
      assert.ok(at <= expiresAt + 3_000, `${who}: removed ${at - expiresAt} ms after expires_at`);
      assert.deepEqual(
        left.map((m) => m.text),
        [long.text],
        `${who} still shows the 5 min message`,
      );
    }

    // A reload re-joins from the gateway's history: the 5 min message only.
    await ben.reload();
    await waitOnline(ben);
    await waitJoined(ben, room);
    await waitForMessage(ben, long.text);
    assert.deepEqual(
      (await messages(ben)).map((m) => m.text),
      [long.text],
    );
    assert.ok((await expiryOf(ben, long.id)).left > 240_000, 'the 5 min message has minutes left');
  },
  { timeout: 90_000 },
);
