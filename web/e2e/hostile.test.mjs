// Hostile message text renders as text: no markup runs, only http(s) links
// become anchors (opened without an opener), direction overrides and
// zero-width characters stay inside their message, and 2,000 emoji or a
// 2,000-byte word wrap instead of widening the page, on desktop and phone.
// One gateway on the embedded bus, with room for 2,000 emoji (8,000 bytes).

import assert from 'node:assert/strict';
import { PHONE, messages, scenario, screenshot, send, tid, unique, waitForMessage } from './harness.mjs';

const HOSTILE = [
  '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b>',
  'javascript:window.__pwned=3 [x](javascript:alert(1)) https://example.com/ok and https://example.com/\u202Egpj.exe',
  '\u202Eright-to-left override\u202C then left-to-right, and \u2067isolate',
  'family 👩‍👩‍👧‍👦 zero\u200Dwidth\u200Bjoin\u2060er\uFEFFs',
  '😀'.repeat(2000),
  'W'.repeat(2000),
];

/** What a page would show if any of it had been taken for markup or wider than the screen. */
function damage(page) {
  return page.evaluate(() => {
    const list = document.querySelector('[data-testid="message-list"]');
    const items = [...(list?.querySelectorAll('[data-testid="message"]') ?? [])];
    return {
      pwned: window.__pwned ?? null,
      markup: list?.querySelectorAll('script, img, b, iframe, object, embed, svg:not(.icon):not(.expiry-ring)').length ?? -1,
      pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
      itemOverflow: items.map((li) => li.scrollWidth - li.clientWidth).filter((px) => px > 0),
      textWiderThanList: items
        .map((li) => li.querySelector('[data-testid="message-text"]')?.getBoundingClientRect().right ?? 0)
        .filter((right) => right > (list?.getBoundingClientRect().right ?? 0) + 1),
      links: [...(list?.querySelectorAll('a') ?? [])].map((a) => ({
        href: a.getAttribute('href'),
        rel: a.rel,
        target: a.target,
      })),
      senderIsolated: items.every((li) => li.querySelector('[data-testid="message-sender"]')?.tagName === 'BDI'),
      title: document.title,
    };
  });
}

scenario(
  'hostile text renders as plain text, links only http(s) with noopener, and the layout holds',
  async (s) => {
    const gw = await s.gateway({ name: 'hostile', settings: { WHISPER_MAX_TEXT_BYTES: '8192' } });
    const room = unique('hostile');
    // A right-to-left name too (direction overrides are refused as names):
    // it must not turn the message line around.
    const eve = await s.user(gw, 'שלום Eve', { room });
    const ann = await s.user(gw, 'Ann', { room });

    for (const text of HOSTILE) await send(eve, text);
    for (const text of HOSTILE) await waitForMessage(ann, text);

    for (const [who, page] of [
      ['sender', eve],
      ['reader', ann],
    ]) {
      const shown = await messages(page);
      assert.deepEqual(
        shown.map((m) => m.text),
        HOSTILE,
        `${who}: every message shows exactly its text, character for character`,
      );
      const d = await damage(page);
      assert.equal(d.pwned, null, `${who}: no script or handler from a message ran`);
      assert.equal(d.markup, 0, `${who}: no element was made from message text`);
      assert.deepEqual(
        d.links.map((l) => l.href),
        ['https://example.com/ok', 'https://example.com/'],
        `${who}: only the http(s) links are links, ending before the direction override`,
      );
      for (const l of d.links) {
        assert.match(l.rel, /\bnoopener\b/, `${who}: ${l.href} opens without an opener`);
        assert.match(l.rel, /\bnoreferrer\b/);
        assert.equal(l.target, '_blank');
      }
      assert.ok(d.pageOverflow <= 0, `${who}: the page is ${d.pageOverflow}px too wide`);
      assert.deepEqual(d.itemOverflow, [], `${who}: no message is wider than its row`);
      assert.deepEqual(d.textWiderThanList, [], `${who}: long words and emoji wrap inside the list`);
      assert.ok(d.senderIsolated, `${who}: sender names are direction-isolated`);
      assert.doesNotMatch(d.title, /script|W{20}|😀/u, `${who}: message text stays out of the title`);
    }
    await screenshot(ann, 'hostile-light-desktop');

    // The same on a phone.
    await ann.setViewportSize(PHONE);
    const phone = await damage(ann);
    assert.ok(phone.pageOverflow <= 0, `phone: the page is ${phone.pageOverflow}px too wide`);
    assert.deepEqual(phone.itemOverflow, [], 'phone: no message is wider than its row');
    await screenshot(ann, 'hostile-light-phone');
    await tid(ann, 'message-input').waitFor();
  },
  { embedded: true },
);
