// Screenshots of the main screens for people to look at: a real
// conversation between three users (members visible, another room with an
// unread badge), light and dark, desktop and phone, plus the name screen.
// Saved as PNGs in $WHISPER_ARTIFACTS/screenshots (default <repo>/test-artifacts).

import assert from 'node:assert/strict';
import path from 'node:path';
import {
  DESKTOP,
  PHONE,
  SCREENSHOTS,
  TIMEOUTS,
  joinWithForm,
  messages,
  scenario,
  screenshot as shot,
  send,
  tid,
  waitForMembers,
  waitForMessage,
  waitJoined,
} from './harness.mjs';

/**
 * Fixed room names read better in a picture than random ones; this
 * scenario has a topic of its own, so they hold only its messages. A
 * member left over in Redis by a crashed earlier run is reaped within the
 * presence timeout (30 s), which `waitForMembers` below outlasts.
 */
const ROOM = 'design';
const OTHER = 'random';

/** The unread badge of `room` in the sidebar. */
function unreadBadge(page, room) {
  return tid(page, 'room-item', { room }).locator('[data-testid="unread-badge"]');
}

async function openRoom(page, room) {
  await tid(page, 'room-item', { room }).locator('.room-button').click();
  await waitJoined(page, room);
}

scenario('screenshots: name screen, and a conversation in light and dark on desktop and phone', async (s) => {
  const gw = await s.gateway({ name: 'shots' });

  // The name screen, as a room link opens it.
  const alice = await s.page(`${gw.url}/#/room/${ROOM}`);
  await tid(alice, 'connect-button').filter({ hasText: `Join #${ROOM}` }).waitFor();
  await shot(alice, 'name-light-desktop');
  await tid(alice, 'name-input').fill('Alice');
  await tid(alice, 'connect-button').click();
  await waitJoined(alice, ROOM);
  await joinWithForm(alice, OTHER);
  await openRoom(alice, ROOM);

  const bob = await s.user(gw, 'Bob', { room: ROOM });
  await joinWithForm(bob, OTHER);
  await openRoom(bob, ROOM);
  const carol = await s.user(gw, 'Carol', { room: ROOM });
  await waitForMembers(alice, ['Alice', 'Bob', 'Carol'], TIMEOUTS.reconnect);

  const conversation = [
    [alice, 'Morning! Did the new colour palette land?'],
    [bob, 'It did. Preview is up at https://example.com/palette, and dark mode got the most love.'],
    [bob, 'Timestamps pass AA contrast now, too.'],
    [carol, 'Looks great on my phone as well. Can we ship it on Friday?'],
    [
      alice,
      'Friday works for me. I will write the release notes today; these messages will have faded long before anyone reads them.',
    ],
  ];
  for (const [page, text] of conversation) await send(page, text);
  await waitForMessage(alice, conversation.at(-1)[1]);

  // Bob talks in the other room while Alice reads this one: an unread badge.
  await openRoom(bob, OTHER);
  await send(bob, 'Lunch at 12:30?');
  await send(bob, 'The new ramen place opened next door.');
  await unreadBadge(alice, OTHER).filter({ hasText: /^2$/ }).waitFor();
  assert.equal((await messages(alice)).length, conversation.length);

  const files = [];
  files.push(await shot(alice, 'chat-light-desktop'));
  await alice.emulateMedia({ colorScheme: 'dark' });
  files.push(await shot(alice, 'chat-dark-desktop'));
  await alice.setViewportSize(PHONE);
  files.push(await shot(alice, 'chat-dark-phone'));
  await alice.emulateMedia({ colorScheme: 'light' });
  files.push(await shot(alice, 'chat-light-phone'));

  // At phone width members and rooms are panels opened from the header.
  await tid(alice, 'members-toggle').click();
  await tid(alice, 'member-list').waitFor({ state: 'visible' });
  files.push(await shot(alice, 'members-light-phone'));
  await alice.keyboard.press('Escape');
  await tid(alice, 'menu-button').click();
  await tid(alice, 'room-list').waitFor({ state: 'visible' });
  files.push(await shot(alice, 'rooms-light-phone'));
  await alice.keyboard.press('Escape');
  await alice.setViewportSize(DESKTOP);

  console.log(`screenshots in ${SCREENSHOTS}: ${files.map((f) => path.basename(f)).join(', ')}`);
});
