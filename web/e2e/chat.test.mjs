// Two people on two different gateways (one Kafka topic, one Redis) chat in
// one room opened from its link, see each other in the members list, and
// see each other go.

import assert from 'node:assert/strict';
import {
  joinWithForm,
  memberNames,
  messages,
  scenario,
  send,
  tid,
  unique,
  waitForMembers,
  waitForMessage,
} from './harness.mjs';

scenario('two users on two gateways chat both ways, see each other as members, and see each other leave', async (s) => {
  const [gwA, gwB] = await Promise.all([s.gateway({ name: 'a' }), s.gateway({ name: 'b' })]);
  const room = unique('chat');

  // A room link opens the name screen inviting to that room, then the room itself.
  const alice = await s.page(`${gwA.url}/#/room/${room}`);
  await tid(alice, 'connect-button').filter({ hasText: `Join #${room}` }).waitFor();
  await tid(alice, 'name-input').fill('Alice');
  await tid(alice, 'connect-button').click();
  await tid(alice, 'room-item', { room, status: 'joined', active: true }).waitFor();
  assert.equal((await tid(alice, 'room-title').textContent())?.replace(/\s/g, ''), `#${room}`);
  assert.equal(await tid(alice, 'self-name').textContent(), 'Alice');
  await tid(alice, 'room-empty').waitFor();

  const bob = await s.user(gwB, 'Bob', { room });

  // Both see both, whichever gateway they are on.
  await waitForMembers(alice, ['Alice', 'Bob']);
  await waitForMembers(bob, ['Alice', 'Bob']);

  // Alice → Bob.
  const hello = 'Hi Bob, this is Alice on gateway A';
  const sent = await send(alice, hello);
  const gotByBob = await waitForMessage(bob, hello);
  assert.deepEqual(gotByBob, { ...sent, own: false }, 'Bob sees the same message, from Alice, not as his own');
  assert.equal(gotByBob.sender, 'Alice');

  // Bob → Alice.
  const reply = 'Hello Alice! Bob here, on gateway B';
  await send(bob, reply);
  const gotByAlice = await waitForMessage(alice, reply);
  assert.equal(gotByAlice.sender, 'Bob');
  assert.equal(gotByAlice.own, false);

  // Both pages show the same conversation in the same order.
  const order = (ms) => ms.map((m) => `${m.sender}: ${m.text}`);
  const expected = [`Alice: ${hello}`, `Bob: ${reply}`];
  assert.deepEqual(order(await messages(alice)), expected);
  assert.deepEqual(order(await messages(bob)), expected);

  // Bob leaves with the header's Leave button: the room goes from his
  // sidebar, and from Alice's members list.
  await tid(bob, 'leave-button').click();
  await tid(bob, 'room-item', { room }).waitFor({ state: 'detached' });
  await waitForMembers(alice, ['Alice']);

  // Bob comes back through the sidebar's join form, then closes the page.
  await joinWithForm(bob, room);
  await waitForMembers(alice, ['Alice', 'Bob']);
  await waitForMessage(bob, reply);
  await bob.close();
  await waitForMembers(alice, ['Alice']);
  assert.deepEqual(await memberNames(alice), ['Alice']);
  assert.equal(await tid(alice, 'connection-status').getAttribute('data-state'), 'online');
});
