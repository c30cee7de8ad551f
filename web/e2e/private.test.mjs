// An end-to-end encrypted room, on two gateways sharing the test Kafka and
// Redis. The key travels in the link's fragment only; two members chat both
// ways; a member without the key sees locked messages. Then the stores are
// read from outside: the whole Kafka topic the gateways use and every Redis
// key of their scope (and what they published there meanwhile) hold the
// ciphertext records and none of the typed text. The gateways must speak
// protocol v1.1: one that does not fails this test.

import assert from 'node:assert/strict';
import {
  messages,
  recordFrames,
  scenario,
  send,
  tid,
  unique,
  until,
  waitForMessage,
} from './harness.mjs';
import { readTopic, redisDump, redisSubscribe } from './stores.mjs';

/** The page's `welcome` must announce v1.1 (limits.min_ttl_ms). */
async function assertV11(frames) {
  const welcome = await until(
    'the page got its welcome',
    () => frames.received.find((f) => f?.type === 'welcome'),
    (w) => w !== undefined,
  );
  assert.equal(
    typeof welcome.limits?.min_ttl_ms,
    'number',
    `the gateway speaks protocol v1.1 (limits.min_ttl_ms in its welcome): ${JSON.stringify(welcome)}`,
  );
}

/** Base64url text decoded, as a string of its bytes (so a mere encoding of the plaintext is caught too). */
function decoded(text) {
  return /^[A-Za-z0-9_-]+$/.test(text) ? Buffer.from(text, 'base64url').toString('latin1') : '';
}

scenario(
  'a private room on two gateways: the key stays in the link, members chat, others see it locked, Kafka and Redis hold only ciphertext',
  async (s) => {
    const [gwA, gwB] = await Promise.all([s.gateway({ name: 'private-a' }), s.gateway({ name: 'private-b' })]);
    const scope = `whisper:${s.topic}:`;
    const published = await redisSubscribe(s.services.redis, `${scope}*`);
    try {
      const ann = await s.page(`${gwA.url}/`);
      const annFrames = recordFrames(ann);
      await tid(ann, 'name-input').fill('Ann');
      await tid(ann, 'connect-button').click();
      await assertV11(annFrames);
      await tid(ann, 'new-private-room').first().click();
      await tid(ann, 'room-item', { private: 'true', status: 'joined', active: true }).waitFor();
      await tid(ann, 'lifetime-select').waitFor();

      const url = new URL(ann.url());
      const [, room, key] = /^#\/room\/([a-z0-9]{20})\?k=([A-Za-z0-9_-]{43})$/.exec(url.hash) ?? [];
      assert.ok(room && key, `the address holds the room and its key in the fragment: ${url.hash}`);
      assert.equal(url.search, '', 'no query string');
      assert.equal(await tid(ann, 'room-title').getAttribute('data-private'), 'true');
      const stored = await ann.evaluate(() => JSON.stringify(window.localStorage));
      assert.ok(!stored.includes(key) && !stored.includes(room), 'an unpinned private room is not stored');

      // Ben opens the link on the other gateway; they talk both ways.
      let benFrames;
      const ben = await s.user(gwB, 'Ben', {
        room,
        key,
        setup: (page) => {
          benFrames = recordFrames(page);
        },
      });
      const said = [
        [ann, ben, `orchids bloom at midnight ${unique('a')}`],
        [ben, ann, `bring the lantern to pier seven ${unique('b')}`],
        [ann, ben, `the password is marmalade ${unique('c')}`],
        [ben, ann, `see you under the clock ${unique('d')}`],
      ];
      for (const [from, to, text] of said) {
        await send(from, text);
        const got = await waitForMessage(to, text);
        assert.equal(got.body, 'text');
        assert.equal(got.sender, from === ann ? 'Ann' : 'Ben');
      }
      const plaintexts = said.map(([, , text]) => text);

      // On the wire: ciphertext only, never the key.
      const sends = [...annFrames.sent, ...benFrames.sent].filter((f) => f?.type === 'send');
      assert.equal(sends.length, said.length, 'one send frame per message');
      for (const f of sends) {
        assert.equal(f.enc, 'aes-gcm-v1');
        assert.match(f.cid, /^[A-Za-z0-9_-]{16,64}$/);
        assert.match(f.text, /^[A-Za-z0-9_-]+$/);
      }
      const wire = JSON.stringify([annFrames, benFrames]);
      assert.ok(!wire.includes(key), 'the key never goes over a socket');
      for (const text of plaintexts) assert.ok(!wire.includes(text), `"${text}" goes over the sockets encrypted only`);

      // Someone with the room id but not the key sees that there are messages, not what they say.
      const eve = await s.user(gwA, 'Eve', { room });
      const locked = await until(
        'Eve sees the four messages locked',
        () => messages(eve),
        (ms) => ms.length === said.length && ms.every((m) => m.body === 'locked'),
      );
      for (const m of locked) assert.match(m.text ?? '', /^Encrypted — ask for the room’s link/);
      assert.equal(await tid(eve, 'room-title').getAttribute('data-private'), 'false');
      const eveHtml = await eve.content();
      for (const text of plaintexts) assert.ok(!eveHtml.includes(text));

      // Pinned, the room and its key are kept in this browser; unpinned, forgotten.
      await tid(ann, 'pin-room').click();
      const storedKeys = () => ann.evaluate(() => window.localStorage.getItem('whisperrooms.room-keys'));
      await until('the key is stored', storedKeys, (v) => v?.includes(key) === true);
      await tid(ann, 'pin-room').click();
      await until('the key is forgotten', storedKeys, (v) => v === null);

      // Redis, while the gateways and pages are still there: every key of the scope.
      const dump = await redisDump(s.services.redis, `${scope}*`);
      const roomKey = `${scope}room:${room}`;
      assert.ok(roomKey in dump, `Redis has the room's presence (${roomKey}); keys: ${Object.keys(dump).join(', ')}`);
      const redisText = JSON.stringify(dump);
      for (const name of ['Ann', 'Ben', 'Eve']) assert.ok(redisText.includes(name), `Redis's presence names ${name}`);
      const events = published.messages();
      assert.ok(events.length > 0, `the gateways published presence events under ${scope}`);
      const redisAll = redisText + JSON.stringify(events);
      for (const text of plaintexts) assert.ok(!redisAll.includes(text), `Redis never held "${text}"`);
      assert.ok(!redisAll.includes(key), 'Redis never held the key');

      // Kafka: the whole topic, from the beginning.
      const topic = await readTopic(s.services.kafka, s.topic);
      const records = topic.records.map((r) => ({ ...r, message: JSON.parse(r.value) }));
      const inRoom = records.filter((r) => r.message.room === room);
      assert.equal(inRoom.length, said.length, `one record per message in the topic: ${topic.raw}`);
      const ciphertexts = new Set(sends.map((f) => f.text));
      for (const r of inRoom) {
        assert.equal(r.key, room, 'records are keyed by room');
        assert.equal(r.message.enc, 'aes-gcm-v1');
        assert.ok(ciphertexts.has(r.message.text), `the record holds a ciphertext a page sent: ${r.value}`);
      }
      assert.deepEqual(
        new Set(inRoom.map((r) => r.message.text)),
        ciphertexts,
        'every ciphertext sent is in the topic',
      );
      const bytes = records.map((r) => decoded(r.message.text)).join('\n');
      for (const text of plaintexts) {
        assert.ok(!topic.raw.includes(text), `the topic never held "${text}"`);
        assert.ok(!bytes.includes(text), `no record's text decodes to "${text}"`);
      }
      assert.ok(!topic.raw.includes(key), 'the topic never held the key');
    } finally {
      published.close();
    }
  },
);
