// A send whose ack is lost is retried with the same cid and is still one
// message. Ann's socket runs through a route that lets her `send` reach the
// gateway, swallows everything the gateway answers from then on, and cuts
// the connection as soon as the `ack` has gone by: the message is on the bus
// but her page does not know it. It reconnects, re-joins and sends again
// with the same cid; the topic then holds two records of one id, and each
// page shows the message once.

import assert from 'node:assert/strict';
import { messages, recordStates, scenario, seenStates, send, tid, unique, until, waitForMessage } from './harness.mjs';
import { readTopic } from './stores.mjs';

function parse(payload) {
  try {
    return typeof payload === 'string' ? JSON.parse(payload) : null;
  } catch {
    return null;
  }
}

/**
 * Routes the page's sockets to the gateway, recording every frame, and
 * loses the answer to the first `send` of `text`: from that send on nothing
 * reaches the page, and once the gateway's `ack` has passed, the connection
 * is cut on both sides. Later connections pass through untouched.
 */
async function loseFirstAck(page, text) {
  const state = { sent: [], received: [], swallowed: [], send: null, ack: null, connections: 0 };
  await page.routeWebSocket(/\/v1\/ws$/, (ws) => {
    state.connections += 1;
    const server = ws.connectToServer();
    let swallowing = false;
    ws.onMessage((payload) => {
      const frame = parse(payload);
      state.sent.push(frame);
      if (state.send === null && frame?.type === 'send' && frame.text === text) {
        state.send = frame;
        swallowing = true;
      }
      server.send(payload);
    });
    server.onMessage((payload) => {
      const frame = parse(payload);
      if (!swallowing) {
        state.received.push(frame);
        ws.send(payload);
        return;
      }
      state.swallowed.push(frame);
      if (frame?.type === 'ack' && frame.ref === state.send.ref) {
        state.ack = frame;
        swallowing = false;
        void ws.close({ code: 1011, reason: 'connection lost' });
        void server.close({ code: 1001, reason: 'going away' });
      }
    });
  });
  return state;
}

scenario('a send whose ack was lost is retried with its cid and shows once on every page', async (s) => {
  const [gwA, gwB] = await Promise.all([s.gateway({ name: 'retry-a' }), s.gateway({ name: 'retry-b' })]);
  const room = unique('retry');
  const text = `said once, sent twice ${unique('r')}`;
  let route;
  const ann = await s.user(gwA, 'Ann', {
    room,
    setup: async (page) => {
      route = await loseFirstAck(page, text);
    },
  });
  const ben = await s.user(gwB, 'Ben', { room });
  await recordStates(ann);

  const input = tid(ann, 'message-input');
  await input.fill(text);
  await input.press('Enter');

  // The first attempt reached the bus; its ack was lost with the connection.
  await until('the gateway acked the first attempt', () => route.ack, (a) => a !== null);
  await until('Ann reconnects', () => seenStates(ann), (st) => st.includes('reconnecting') && st.at(-1) === 'online');
  assert.equal(route.connections, 2, 'one reconnect');

  // Ann's page retries with the same cid and shows the message once, sent.
  const mine = await waitForMessage(ann, text);
  assert.equal(mine.own, true);
  assert.equal(mine.id, route.ack.id, 'the message has the id the lost ack named');
  await tid(ann, 'outbox').locator('[data-testid="outgoing"]').waitFor({ state: 'detached' });
  const sends = route.sent.filter((f) => f?.type === 'send');
  assert.equal(sends.length, 2, `two attempts: ${JSON.stringify(sends)}`);
  assert.equal(sends[1].cid, sends[0].cid, 'the retry carries the first attempt’s cid');
  assert.notEqual(sends[1].ref, sends[0].ref, 'each attempt has its own ref');
  const acks = route.received.filter((f) => f?.type === 'ack');
  assert.deepEqual(
    acks.map((a) => [a.ref, a.id]),
    [[sends[1].ref, route.ack.id]],
    'the retry is acked with the same message id',
  );

  // Ben, on the other gateway, gets it once. A reply sent after the retry's
  // ack is behind both records in the room's partition: once it arrives, a
  // second copy would have too.
  const theirs = await waitForMessage(ben, text);
  assert.equal(theirs.id, route.ack.id);
  const reply = await send(ben, `got it ${unique('reply')}`);
  await waitForMessage(ann, reply.text);
  for (const [who, page] of [
    ['Ann', ann],
    ['Ben', ben],
  ]) {
    const shown = (await messages(page)).filter((m) => m.text === text);
    assert.equal(shown.length, 1, `${who} shows the message once: ${JSON.stringify(shown)}`);
    assert.equal(shown[0].id, route.ack.id);
  }
  const status = tid(ann, 'message', { id: mine.id }).locator('[data-testid="message-status"]');
  assert.equal(await status.count(), 1, 'one status on the message');
  assert.equal(await status.getAttribute('data-state'), 'sent');
  assert.equal(await tid(ann, 'outgoing').count(), 0, 'nothing left in the outbox');

  // The bus holds both attempts under one id: the gateways dropped the second.
  const topic = await readTopic(s.services.kafka, s.topic);
  const records = topic.records.map((r) => JSON.parse(r.value)).filter((m) => m.text === text);
  assert.equal(records.length, 2, `both attempts are records in the topic: ${topic.raw}`);
  assert.deepEqual(
    records.map((m) => m.id),
    [route.ack.id, route.ack.id],
  );
});
