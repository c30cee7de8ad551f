// Nothing of a message is left in the browser once it expires: at
// expires_at its text leaves the page (the screen-reader live region
// included) and its desktop notification is closed; and at no point is it
// written to localStorage, sessionStorage, IndexedDB, the Cache API or the
// page title. One gateway on the embedded bus with a 6 s TTL.

import assert from 'node:assert/strict';
import { messages, scenario, send, tid, unique, until, waitForMessage } from './harness.mjs';

/**
 * Makes the page believe it is in the background (so it notifies) and
 * records every notification it shows: title, body, and whether it was
 * closed since.
 */
async function watchNotifications(page) {
  await page.context().grantPermissions(['notifications']);
  await page.evaluate(() => {
    Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => true });
    const Real = window.Notification;
    const shown = [];
    class Recorded extends Real {
      constructor(title, options) {
        super(title, options);
        this.record = { title, body: options?.body ?? '', closed: false };
        shown.push(this.record);
      }
      close() {
        this.record.closed = true;
        super.close();
      }
    }
    Object.defineProperty(Recorded, 'permission', { get: () => Real.permission });
    Object.assign(window, { Notification: Recorded, __notifications: shown });
  });
  await tid(page, 'notifications-toggle').click();
  await until(
    'desktop notifications are on',
    () => tid(page, 'notifications-toggle').getAttribute('aria-pressed'),
    (v) => v === 'true',
  );
}

function notifications(page) {
  return page.evaluate(() => window.__notifications.map((n) => ({ ...n })));
}

/** Everywhere a page could keep text: the DOM (hidden parts too), form values, storage, caches, title. */
function traces(page, text) {
  return page.evaluate(async (needle) => {
    const inStorage = (store) =>
      Object.keys(store).filter((k) => k.includes(needle) || (store.getItem(k) ?? '').includes(needle));
    const values = [...document.querySelectorAll('input, textarea, select')].map((el) => el.value);
    return {
      dom: document.documentElement.outerHTML.includes(needle),
      liveRegion: document.querySelector('[data-testid="live-region"]')?.textContent?.includes(needle) ?? false,
      formValues: values.some((v) => v.includes(needle)),
      localStorage: inStorage(window.localStorage),
      sessionStorage: inStorage(window.sessionStorage),
      indexedDB: (await indexedDB.databases()).map((db) => db.name),
      caches: await caches.keys(),
      title: document.title.includes(needle),
    };
  }, text);
}

const CLEAN = {
  dom: false,
  liveRegion: false,
  formValues: false,
  localStorage: [],
  sessionStorage: [],
  indexedDB: [],
  caches: [],
  title: false,
};

scenario(
  'at expiry a message leaves the page, the live region and its notification, and nothing stored ever held it',
  async (s) => {
    const gw = await s.gateway({ name: 'traces', ttl: '6s' });
    const room = unique('traces');
    const ann = await s.user(gw, 'Ann', { room });
    const ben = await s.user(gw, 'Ben', { room });
    await watchNotifications(ben);

    const secret = `whisper ${unique('secret')}`;
    await send(ann, secret);
    await waitForMessage(ben, secret);

    // While it lives: on screen, announced, notified, and nowhere stored.
    const live = await traces(ben, secret);
    assert.equal(live.dom, true);
    assert.equal(live.liveRegion, true, 'the live region announced it');
    assert.deepEqual({ ...live, dom: false, liveRegion: false }, CLEAN, 'nothing stored holds it while it lives');
    assert.deepEqual(await notifications(ben), [{ title: `Ann in #${room}`, body: secret, closed: false }]);
    const expiresAt = Number(await tid(ben, 'message-expiry').first().getAttribute('data-expires-at'));

    // Gone from both pages at expires_at, live region and notification included.
    for (const [who, page] of [
      ['Ann', ann],
      ['Ben', ben],
    ]) {
      await until(
        `${who}'s page no longer holds the text`,
        () => traces(page, secret),
        (t) => !t.dom,
        Math.max(0, expiresAt - Date.now()) + 10_000,
      );
      assert.ok(Date.now() >= expiresAt - 1_500, `${who}: removed ${expiresAt - Date.now()} ms before expires_at`);
      assert.deepEqual(await traces(page, secret), CLEAN, `${who}: no trace of the message is left`);
      assert.deepEqual(await messages(page), []);
    }
    assert.deepEqual(await notifications(ben), [{ title: `Ann in #${room}`, body: secret, closed: true }]);
  },
  { embedded: true },
);
