// With an 8 s TTL a message counts down on both pages, fades, and is gone
// from both when it expires; a reload does not bring it back.

import assert from 'node:assert/strict';
import { messages, scenario, send, tid, unique, until, waitForMessage, waitJoined, waitOnline } from './harness.mjs';

const TTL_MS = 8_000;

/** The expiry indicator of the message with this text: ms left (server clock), expires_at, label. */
function expiryOf(page, text) {
  return page
    .locator('[data-testid="message"]', { has: page.locator('[data-testid="message-text"]', { hasText: text }) })
    .evaluate((li) => {
      const expiry = li.querySelector('[data-testid="message-expiry"]');
      return {
        left: Number(expiry?.getAttribute('data-time-left')),
        expiresAt: Number(expiry?.getAttribute('data-expires-at')),
        label: expiry?.querySelector('.expiry-text')?.textContent ?? '',
        visible: expiry instanceof HTMLElement && expiry.offsetWidth > 0 && expiry.offsetHeight > 0,
        fading: li.classList.contains('is-fading'),
      };
    });
}

scenario('a message shows its countdown and disappears from both pages when it expires', async (s) => {
  const [gwA, gwB] = await Promise.all([s.gateway({ name: 'a', ttl: '8s' }), s.gateway({ name: 'b', ttl: '8s' })]);
  const room = unique('expiry');
  const alice = await s.user(gwA, 'Alice', { room });
  const bob = await s.user(gwB, 'Bob', { room });

  const text = 'This message will self-destruct in 8 seconds';
  await send(alice, text);
  await waitForMessage(bob, text);

  // Both show a visible countdown (seconds under a minute), within the TTL.
  const first = { alice: await expiryOf(alice, text), bob: await expiryOf(bob, text) };
  for (const [who, e] of Object.entries(first)) {
    assert.ok(e.visible, `${who} sees the expiry indicator`);
    assert.match(e.label, /^[1-8]s$/, `${who}'s countdown reads whole seconds under the 8 s TTL`);
    assert.ok(e.left > 0 && e.left <= TTL_MS, `${who}: ${e.left} ms left, within the TTL`);
  }
  assert.equal(first.alice.expiresAt, first.bob.expiresAt, 'both pages count down to the same expires_at');
  const expiresAt = first.alice.expiresAt;

  // It counts down, and fades over the last seconds.
  await until(
    "Alice's countdown goes down by at least a second",
    () => expiryOf(alice, text),
    (e) => e.left <= first.alice.left - 1_000 && e.label !== first.alice.label,
  );
  await until("Bob's message starts fading", () => expiryOf(bob, text), (e) => e.fading);

  // Gone from both pages once it expires (not before), and both show the quiet room.
  const goneAt = await Promise.all(
    [alice, bob].map(async (page) => {
      await until(
        'the expired message is removed',
        () => messages(page),
        (ms) => ms.length === 0,
        Math.max(0, expiresAt - Date.now()) + 10_000,
      );
      return Date.now();
    }),
  );
  for (const at of goneAt) {
    assert.ok(at >= expiresAt - 1_500, `removed ${expiresAt - at} ms before expires_at: too early`);
  }
  await tid(alice, 'room-empty').waitFor();
  await tid(bob, 'room-empty').waitFor();

  // A reload re-joins from the gateway's history, which no longer has it.
  await bob.reload();
  await waitOnline(bob);
  await waitJoined(bob, room);
  await tid(bob, 'room-empty').waitFor();
  assert.deepEqual(await messages(bob), []);
});
