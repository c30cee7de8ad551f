// A gateway stops (SIGTERM): its page says it is reconnecting. A new gateway
// on the same address: the page reconnects by itself and catches up on what
// was said meanwhile, showing each message once.

import assert from 'node:assert/strict';
import {
  TIMEOUTS,
  messages,
  recordStates,
  scenario,
  screenshot,
  seenStates,
  send,
  tid,
  unique,
  until,
  waitForMembers,
  waitForMessage,
  waitOnline,
} from './harness.mjs';

/** Fails if a message id shows more than once. */
function assertNoDuplicates(list, who) {
  const ids = list.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, `${who} shows each message once: ${JSON.stringify(ids)}`);
}

scenario('a page reconnects by itself to a restarted gateway and catches up without duplicates', async (s) => {
  const [gwA, gwB] = await Promise.all([s.gateway({ name: 'a' }), s.gateway({ name: 'b' })]);
  const room = unique('resume');
  const alice = await s.user(gwA, 'Alice', { room });
  const bob = await s.user(gwB, 'Bob', { room });
  await waitForMembers(alice, ['Alice', 'Bob']);

  const before = ['Are you there?', 'Yes, on gateway B'];
  await send(alice, before[0]);
  await send(bob, before[1]);
  await waitForMessage(alice, before[1]);
  await waitForMessage(bob, before[0]);

  // Bob's gateway shuts down (closing his socket with 1001).
  await recordStates(bob);
  assert.equal(await gwB.stop('SIGTERM'), 0, 'the gateway exits cleanly on SIGTERM');
  await tid(bob, 'connection-banner').waitFor();
  assert.match((await tid(bob, 'connection-banner').textContent()) ?? '', /Connection lost|Reconnecting/);
  await until('Bob\'s page has shown "reconnecting"', () => seenStates(bob), (st) => st.includes('reconnecting'));
  assert.notEqual(await tid(bob, 'connection-status').getAttribute('data-state'), 'online');
  await screenshot(bob, 'reconnecting-light-desktop');
  // His gateway said goodbye for him: Alice sees him go.
  await waitForMembers(alice, ['Alice']);

  // Alice keeps talking while Bob is away.
  const away = ['Bob?', 'Your gateway went down', 'Tell me when you see this'];
  for (const text of away) await send(alice, text);
  assert.notEqual(await tid(bob, 'connection-status').getAttribute('data-state'), 'online', 'Bob is still away');

  // A new gateway on the same address; Bob's page finds it without help.
  const gwB2 = await s.gateway({ name: 'b2', port: gwB.port });
  assert.equal(gwB2.url, gwB.url);
  await waitOnline(bob, TIMEOUTS.reconnect);
  await tid(bob, 'connection-banner').waitFor({ state: 'detached' });
  await waitForMembers(alice, ['Alice', 'Bob']);

  // Catch-up: everything Alice said while he was away, in order, once.
  const expected = [...before, ...away];
  const text = (ms) => ms.map((m) => m.text);
  const caughtUp = await until(
    "Bob's page shows the messages sent while he was away",
    () => messages(bob),
    (ms) => away.every((t) => ms.some((m) => m.text === t)),
  );
  assertNoDuplicates(caughtUp, 'Bob');
  assert.deepEqual(text(caughtUp), expected);
  assert.deepEqual(
    caughtUp.map((m) => [m.sender, m.own]),
    [
      ['Alice', false],
      ['Bob', true],
      ['Alice', false],
      ['Alice', false],
      ['Alice', false],
    ],
    "senders are kept, and Bob's message from before is still his own",
  );

  // One more round trip through the new gateway: whatever might arrive
  // twice has arrived by the time this shows on both pages.
  const back = 'Back, and I see all three';
  await send(bob, back);
  await waitForMessage(alice, back);
  for (const [who, page] of [
    ['Alice', alice],
    ['Bob', bob],
  ]) {
    const list = await messages(page);
    assertNoDuplicates(list, who);
    assert.deepEqual(text(list), [...expected, back], `${who} sees the whole conversation once, in order`);
  }
  assert.deepEqual(
    (await messages(alice)).map((m) => m.id),
    (await messages(bob)).map((m) => m.id),
    'both pages hold the same message ids',
  );
});
