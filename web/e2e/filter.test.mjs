// The content filter: a gateway started with WHISPER_CONTENT_FILTER (a file
// of deny rules) refuses plain text matching a rule with `blocked`. The
// sender sees the refusal on the message, which is not retried; the other
// member never sees the text, at any moment; the topic never gets it, while
// an allowed message goes through as usual.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { messages, recordFrames, scenario, send, tid, unique, until, waitForMessage } from './harness.mjs';
import { readTopic } from './stores.mjs';

/** Watches the page for `needle` in its text from now on; `sawText(page)` tells whether it ever appeared. */
async function watchFor(page, needle) {
  await page.evaluate((text) => {
    const state = { seen: document.body.textContent.includes(text) };
    Object.assign(window, { __e2eWatch: state });
    new MutationObserver(() => {
      if (document.body.textContent.includes(text)) state.seen = true;
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  }, needle);
}

function sawText(page) {
  return page.evaluate(() => window.__e2eWatch.seen);
}

scenario('a message the content filter refuses is shown refused to its sender and reaches nobody', async (s) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'e2e-filter-'));
  try {
    const rules = path.join(dir, 'rules.txt');
    writeFileSync(rules, '# no fruit talk here\n(?i)\\bforbidden fruit\\b\n');
    const gw = await s.gateway({ name: 'filter', settings: { WHISPER_CONTENT_FILTER: rules } });
    const room = unique('filter');
    let annFrames;
    const ann = await s.user(gw, 'Ann', {
      room,
      setup: (page) => {
        annFrames = recordFrames(page);
      },
    });
    const ben = await s.user(gw, 'Ben', { room });

    const refused = `have a bite of the Forbidden Fruit ${unique('x')}`;
    await watchFor(ben, refused);
    const input = tid(ann, 'message-input');
    await input.fill(refused);
    await input.press('Enter');

    // Ann: the message stays in her outbox, refused, with no retry offered.
    const outgoing = tid(ann, 'outgoing', { state: 'failed' });
    await outgoing.waitFor();
    assert.equal(await outgoing.locator('[data-testid="message-text"]').textContent(), refused);
    const status = outgoing.locator('[data-testid="message-status"]');
    assert.equal(await status.getAttribute('data-code'), 'blocked');
    assert.match(await status.textContent(), /Refused by the server’s content policy — not sent\./);
    assert.equal(await outgoing.locator('[data-testid="retry-send"]').count(), 0, 'a refusal is not offered a retry');
    const errors = annFrames.received.filter((f) => f?.type === 'error');
    const sendFrame = annFrames.sent.find((f) => f?.type === 'send' && f.text === refused);
    assert.deepEqual(
      errors.map((e) => [e.code, e.ref]),
      [['blocked', sendFrame.ref]],
      'the gateway answered the send with blocked',
    );
    assert.ok(!(await messages(ann)).some((m) => m.text === refused), 'not among the messages');

    // An allowed message still goes through; Ben gets it and never saw the refused one.
    const allowed = await send(ann, `an apple a day ${unique('ok')}`);
    await waitForMessage(ben, allowed.text);
    assert.deepEqual(
      (await messages(ben)).map((m) => m.text),
      [allowed.text],
    );
    assert.equal(await sawText(ben), false, 'the refused text never appeared on Ben’s page');
    assert.equal(
      annFrames.sent.filter((f) => f?.type === 'send' && f.text === refused).length,
      1,
      'the refused message was sent once, never retried',
    );

    // Discarding it clears the outbox.
    await outgoing.locator('[data-testid="discard-send"]').click();
    await until('the outbox is empty', () => tid(ann, 'outgoing').count(), (n) => n === 0);

    // The bus got the allowed message and never the refused one.
    const topic = await readTopic(s.services.kafka, s.topic);
    assert.ok(topic.raw.includes(allowed.text), `the allowed message is in the topic: ${topic.raw}`);
    assert.ok(!topic.raw.includes(refused), 'the refused message never reached the topic');
    assert.equal(topic.records.length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
