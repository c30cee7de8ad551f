// Sign-in through the embedding app (docs/auth.md): a gateway with
// WHISPER_JWT_SECRET, tokens minted here the way an app would (HS256 with
// node:crypto), an app page on another origin embedding the chat in an
// iframe whose fragment carries the token.
//
// 1. The token rides in the fragment: the user is named by its `name`
//    claim (no name screen), the fragment is gone from the address at once,
//    nothing of it is stored, and a message round-trips under the token's
//    `sub`. A token in the query string is ignored and the page says why.
// 2. Refresh: the app sets a new `#token=…`; the open session takes it
//    (`auth` → `authed`) and outlives the first token's expiry. A token of
//    another user is refused (4001) and the page says to reopen the chat
//    from the app; a good token connects again. A token left to expire
//    ends the session with "expired".

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import {
  TIMEOUTS,
  connectionState,
  freePort,
  joinWithForm,
  recordFrames,
  recordStates,
  scenario,
  seenStates,
  send,
  tid,
  unique,
  until,
  waitForMessage,
  waitJoined,
  waitOnline,
} from './harness.mjs';

const SECRET = 'e2e-secret-of-at-least-32-bytes-0123456789';
const AUTH = { WHISPER_JWT_SECRET: SECRET };

/** An HS256 JWT, as an app without a JWT library would make it. */
function mint(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

/** A token for `sub` / `name` that expires `seconds` from now. */
function token(sub, name, seconds = 300) {
  return mint({ sub, name, exp: Math.floor(Date.now() / 1000) + seconds });
}

/**
 * The embedding app: a page on an origin of its own (another port) with an
 * empty iframe. Stopped when `s` ends.
 */
async function startApp(s) {
  const port = await freePort();
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Example app</title><iframe id="chat" title="Chat" width="1200" height="760"></iframe>');
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  s.onCleanup(() => new Promise((resolve) => server.close(resolve)));
  return { url: `http://127.0.0.1:${port}/`, host: `127.0.0.1:${port}` };
}

/** Points the app's iframe at `src` (as the app does); returns the chat's frame. */
async function embed(appPage, gateway, src) {
  await appPage.evaluate((to) => {
    document.getElementById('chat').src = to;
  }, src);
  return until(
    'the iframe shows the chat',
    async () => appPage.frames().find((f) => f.url().startsWith(gateway.url)) ?? null,
    (f) => f !== null,
  );
}

/** The frame's address, and whether its storage holds `secret`. */
async function traces(frame, secret) {
  return frame.evaluate(
    (t) => ({
      href: location.href,
      inStorage: Object.values({ ...localStorage, ...sessionStorage }).some((v) => v.includes(t)),
    }),
    secret,
  );
}

scenario(
  'a token in the fragment names the user, leaves the address at once, and carries a message; one in the query is refused',
  async (s) => {
    const gw = await s.gateway({ name: 'auth', settings: AUTH });
    const app = await startApp(s);
    const room = unique('signed');

    // Alice opens the app, which embeds the chat with her token in a room route's fragment.
    const alicesToken = token('user-alice', 'Alice Example');
    const appPage = await s.page(app.url);
    const alice = await embed(appPage, gw, `${gw.url}/#/room/${room}?token=${alicesToken}`);
    await waitOnline(alice);
    await waitJoined(alice, room);
    assert.equal(await tid(alice, 'self-name').textContent(), 'Alice Example', 'the name comes from the token');
    assert.equal(await tid(alice, 'change-name').count(), 0, 'a name from the token cannot be changed');
    const seen = await traces(alice, alicesToken);
    assert.equal(seen.href, `${gw.url}/#/room/${room}`, 'the token left the address, the room stayed');
    assert.equal(seen.inStorage, false, 'the token is not stored');

    // Bob opens the chat directly with a bare `#token=…` and joins by hand.
    const bobsToken = token('user-bob', 'Bob Example');
    const bob = await s.page(`${gw.url}/#token=${bobsToken}`);
    await waitOnline(bob);
    assert.equal(await tid(bob, 'self-name').textContent(), 'Bob Example');
    assert.ok(!(await traces(bob, bobsToken)).href.includes('token'), 'the bare fragment is gone');
    await joinWithForm(bob, room);

    const text = 'Signed in by the app, not by a name box';
    await send(alice, text);
    const got = await waitForMessage(bob, text);
    assert.equal(got.sender, 'Alice Example');
    assert.equal(
      await tid(bob, 'message-sender').first().getAttribute('data-user-id'),
      'user-alice',
      "the sender's id is the token's sub",
    );

    // A token in the query string reached the server already: it is removed and ignored.
    const leaky = await s.page(`${gw.url}/?token=${bobsToken}`);
    const notice = await tid(leaky, 'gate-notice').textContent();
    assert.match(notice ?? '', /query string.*ignored.*#token=/s);
    assert.ok(!leaky.url().includes('token='), `the address keeps no token: ${leaky.url()}`);
    await tid(leaky, 'name-input').fill('Mallory');
    await tid(leaky, 'connect-button').click();
    await until('the page without a token is signed out', () => connectionState(leaky), (st) => st === 'offline');
    assert.match((await tid(leaky, 'connection-banner').textContent()) ?? '', /Sign-in needed/);
  },
  { embedded: true },
);

scenario(
  'a new #token=… from the app refreshes the open session; a refused or expired one signs out until the next',
  async (s) => {
    const gw = await s.gateway({ name: 'refresh', settings: AUTH });
    const app = await startApp(s);
    const room = unique('refresh');
    const appPage = await s.page(app.url);
    const frames = recordFrames(appPage);
    const src = (t) => `${gw.url}/#token=${t}`;

    // A short first token, refreshed by the app before it runs out.
    const first = token('user-ann', 'Ann', 15);
    const ann = await embed(appPage, gw, `${gw.url}/#/room/${room}?token=${first}`);
    await waitOnline(ann);
    await waitJoined(ann, room);
    await recordStates(ann);
    const fresh = token('user-ann', 'Ann', 600);
    await embed(appPage, gw, src(fresh));
    await until(
      'the fragment is back to the room',
      () => ann.evaluate(() => location.hash),
      (h) => h === `#/room/${room}`,
    );
    const auth = await until(
      'the page sends the new token as auth',
      async () => frames.sent.find((f) => f?.type === 'auth'),
      (f) => f !== undefined,
    );
    assert.equal(auth.token, fresh);
    const authed = await until(
      'the gateway answers authed',
      async () => frames.received.find((f) => f?.type === 'authed' || f?.type === 'error'),
      (f) => f !== undefined,
    );
    assert.deepEqual(
      { type: authed.type, ref: authed.ref },
      { type: 'authed', ref: auth.ref },
      `the refresh is accepted: ${JSON.stringify(authed)}`,
    );
    assert.ok(authed.expires_at > Date.now() + 500_000, 'the session now lasts as long as the new token');
    // Past the first token's expiry (and the gateway's 5 s leeway): still the same session.
    await new Promise((resolve) => setTimeout(resolve, 22_000));
    assert.deepEqual(await seenStates(ann), [], 'the connection never dropped');
    assert.equal(await connectionState(ann), 'online');
    await send(ann, 'Still here on the refreshed token');

    // A token of somebody else is refused: signed out, told to reopen from the app.
    await embed(appPage, gw, src(token('user-eve', 'Eve')));
    await until('the refused refresh signs Ann out', () => connectionState(ann), (st) => st === 'offline');
    const refused = (await tid(ann, 'connection-banner').textContent()) ?? '';
    assert.match(refused, /not accepted/);
    assert.ok(refused.includes(app.host), `the banner names the app: ${refused}`);

    // The app's next good token connects again, into the same room.
    await embed(appPage, gw, src(token('user-ann', 'Ann', 15)));
    await waitOnline(ann, TIMEOUTS.reconnect);
    await waitJoined(ann, room);
    await waitForMessage(ann, 'Still here on the refreshed token');

    // Left to expire, it ends the session with "expired", and no reconnect loop.
    await until('the expired token signs Ann out', () => connectionState(ann), (st) => st === 'offline', 30_000);
    assert.match((await tid(ann, 'connection-banner').textContent()) ?? '', /sign-in expired/i);
  },
  { embedded: true },
);
