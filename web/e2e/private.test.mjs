// Protocol v1.1 in the browser: an end-to-end encrypted room and a message
// that chooses its own lifetime. The gateway sees only ciphertext (every
// `send` frame is read off the sender's socket); the key travels in the
// link's fragment only; a member without the key sees a locked message.
// Skipped against a gateway that does not announce v1.1 in its welcome.

import assert from 'node:assert/strict';
import { messages, scenario, send, tid, unique, until, waitForMessage } from './harness.mjs';

/** True when the page's gateway speaks v1.1 (the composer then offers lifetimes). */
async function speaksV11(page) {
  await tid(page, 'message-input').waitFor();
  return (await tid(page, 'lifetime-select').count()) > 0;
}

/** Records the JSON frames the page sends on its WebSocket from now on. */
function recordSent(page) {
  const sent = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', ({ payload }) => {
      if (typeof payload === 'string') sent.push(JSON.parse(payload));
    });
  });
  return sent;
}

scenario(
  'a private room: its link carries the key, members read along, the gateway sees ciphertext, others see it locked',
  async (s) => {
    const gw = await s.gateway({ name: 'private' });
    const ann = await s.page(`${gw.url}/`);
    const annFrames = recordSent(ann);
    await tid(ann, 'name-input').fill('Ann');
    await tid(ann, 'connect-button').click();
    await tid(ann, 'new-private-room').first().click();
    await tid(ann, 'room-item', { private: 'true', status: 'joined', active: true }).waitFor();
    if (!(await speaksV11(ann))) {
      s.skip('the gateway does not speak protocol v1.1 (no min_ttl_ms in its welcome)');
      return;
    }

    const url = new URL(ann.url());
    const [, room, key] = /^#\/room\/([a-z0-9]{20})\?k=([A-Za-z0-9_-]{43})$/.exec(url.hash) ?? [];
    assert.ok(room && key, `the address holds the room and its key in the fragment: ${url.hash}`);
    assert.equal(url.search, '', 'no query string');
    assert.equal(await tid(ann, 'room-title').getAttribute('data-private'), 'true');
    const stored = await ann.evaluate(() => JSON.stringify(window.localStorage));
    assert.ok(!stored.includes(key) && !stored.includes(room), 'an unpinned private room is not stored');

    const ben = await s.user(gw, 'Ben', { room, key });
    const secret = `for members only ${unique('x')}`;
    await send(ann, secret);
    const got = await waitForMessage(ben, secret);
    assert.equal(got.body, 'text');
    assert.equal(got.sender, 'Ann');

    const sends = annFrames.filter((f) => f.type === 'send');
    assert.equal(sends.length, 1);
    assert.equal(sends[0].enc, 'aes-gcm-v1');
    assert.match(sends[0].cid, /^[A-Za-z0-9_-]{16,64}$/);
    assert.match(sends[0].text, /^[A-Za-z0-9_-]+$/);
    assert.ok(!JSON.stringify(annFrames).includes(key), 'the key never goes over the socket');
    assert.ok(!JSON.stringify(annFrames).includes('members only'), 'the text goes over the socket encrypted only');

    // Someone with the room id but not the key sees that there is a message, not what it says.
    const eve = await s.user(gw, 'Eve', { room });
    await until(
      'Eve sees one locked message',
      () => messages(eve),
      (ms) => ms.length === 1 && ms[0].body === 'locked',
    );
    assert.equal(await tid(eve, 'room-title').getAttribute('data-private'), 'false');
    assert.ok(!(await eve.content()).includes(secret));

    // Pinned, the room and its key are kept in this browser; unpinned, forgotten.
    await tid(ann, 'pin-room').click();
    const storedKeys = () => ann.evaluate(() => window.localStorage.getItem('whisperrooms.room-keys'));
    await until('the key is stored', storedKeys, (v) => v?.includes(key) === true);
    await tid(ann, 'pin-room').click();
    await until('the key is forgotten', storedKeys, (v) => v === null);
  },
  { embedded: true },
);

scenario(
  'a message chooses a shorter lifetime than the TTL and counts down from it',
  async (s) => {
    const gw = await s.gateway({ name: 'lifetime', ttl: '5m' });
    const room = unique('lifetime');
    const ann = await s.user(gw, 'Ann', { room });
    if (!(await speaksV11(ann))) {
      s.skip('the gateway does not speak protocol v1.1 (no min_ttl_ms in its welcome)');
      return;
    }
    const choices = await tid(ann, 'lifetime-select')
      .locator('option')
      .evaluateAll((os) => os.map((o) => [o.value, o.textContent]));
    assert.deepEqual(choices, [
      ['30000', '30 s'],
      ['60000', '1 min'],
      ['120000', '2 min'],
      ['300000', '5 min'],
    ]);
    assert.equal(await tid(ann, 'lifetime-select').inputValue(), '300000', 'the TTL is the default');
    await tid(ann, 'lifetime-select').selectOption('30000');
    const shown = await send(ann, 'gone in half a minute');
    const expiry = tid(ann, 'message', { id: shown.id }).locator('[data-testid="message-expiry"]');
    const left = Number(await expiry.getAttribute('data-time-left'));
    assert.ok(left > 20_000 && left <= 30_000, `${left} ms left of a 30 s lifetime`);
  },
  { embedded: true },
);
