// What a newcomer's first command starts: one gateway with no Kafka and no
// Redis (embedded bus, in-memory presence). Two tabs of it chat in one room.
// It needs no test services, so it runs everywhere.

import assert from 'node:assert/strict';
import { messages, scenario, send, unique, waitForMembers, waitForMessage } from './harness.mjs';

const chat = async (s) => {
  const gw = await s.gateway({ name: 'solo' });
  const health = await fetch(`${gw.url}/readyz`).then((r) => r.text());
  assert.equal(health, 'bus: ok\npresence: ok\n');

  const room = unique('solo');
  const ann = await s.user(gw, 'Ann', { room });
  const ben = await s.user(gw, 'Ben', { room });
  await waitForMembers(ann, ['Ann', 'Ben']);
  await waitForMembers(ben, ['Ann', 'Ben']);

  const hello = 'First message on a laptop';
  await send(ann, hello);
  assert.equal((await waitForMessage(ben, hello)).sender, 'Ann');
  const reply = 'Got it, no Kafka needed';
  await send(ben, reply);
  assert.equal((await waitForMessage(ann, reply)).sender, 'Ben');

  const order = (ms) => ms.map((m) => `${m.sender}: ${m.text}`);
  assert.deepEqual(order(await messages(ann)), [`Ann: ${hello}`, `Ben: ${reply}`]);
  assert.deepEqual(order(await messages(ben)), [`Ann: ${hello}`, `Ben: ${reply}`]);
};

scenario('two tabs on one gateway with the embedded bus chat and see each other', chat, { embedded: true });
