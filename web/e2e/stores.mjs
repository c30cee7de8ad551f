// What the chat's stores hold, read from outside the gateways: every record
// of a Kafka topic (Kafka's own console consumer, from the beginning, until
// the topic has been quiet for a few seconds) and every key and value of one
// Redis scope (a minimal RESP client, so nothing is needed beyond Node).
//
// Environment:
//   WHISPER_SERVICES  the services script whose `tool` runs Kafka's command
//                     line classes (default <repo>/scripts/services)

import { spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import path from 'node:path';
import { REPO } from './harness.mjs';

const SERVICES = process.env.WHISPER_SERVICES || path.join(REPO, 'scripts', 'services');

/** Fields of one record, in the order the console consumer prints them. */
const FIELD = '\u001f';

/**
 * Every record of `topic`, from the beginning: `{ partition, offset, key,
 * headers, value }` (value as text) and `raw`, everything the consumer
 * printed. It stops once no record came for `quietMs`; the whole read is
 * bounded by `timeoutMs`.
 */
export async function readTopic(brokers, topic, { quietMs = 5_000, timeoutMs = 60_000 } = {}) {
  const args = [
    'tool',
    'org.apache.kafka.tools.consumer.ConsoleConsumer',
    '--bootstrap-server',
    brokers,
    '--topic',
    topic,
    '--from-beginning',
    '--timeout-ms',
    String(quietMs),
    '--isolation-level',
    'read_committed',
    ...['print.partition', 'print.offset', 'print.key', 'print.headers'].flatMap((p) => [
      '--formatter-property',
      `${p}=true`,
    ]),
    ...['key.separator', 'headers.separator'].flatMap((p) => ['--formatter-property', `${p}=${FIELD}`]),
  ];
  const { code, stdout, stderr } = await run(SERVICES, args, timeoutMs);
  const total = /Processed a total of (\d+) messages/.exec(stderr);
  if (code !== 0 || total === null) {
    throw new Error(`the console consumer of ${topic} failed (exit ${code}):\n${stderr.slice(-2_000)}`);
  }
  const lines = stdout.split('\n').filter((l) => l !== '');
  const records = lines.map((line) => {
    const [partition, offset, headers, key, ...value] = line.split(FIELD);
    return {
      partition: Number(/\d+/.exec(partition)?.[0]),
      offset: Number(/\d+/.exec(offset)?.[0]),
      headers,
      key,
      value: value.join(FIELD),
    };
  });
  if (records.length !== Number(total[1])) {
    throw new Error(`${records.length} records printed, the consumer says ${total[1]}:\n${stdout.slice(0, 2_000)}`);
  }
  return { records, raw: stdout };
}

function run(command, args, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== null) reject(new Error(`${path.basename(command)} ${args[1]} killed by ${signal} after ${timeoutMs / 1000}s`));
      else resolve({ code, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------- Redis

/** A RESP2 connection: `call(...args)` sends one command and resolves its reply. */
export async function redis(url) {
  const { hostname, port } = new URL(url);
  const socket = createConnection({ host: hostname || '127.0.0.1', port: Number(port || 6379) });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let buffer = Buffer.alloc(0);
  const waiting = [];
  /** Pushed replies nobody asked for (pub/sub messages). */
  const pushed = [];
  let failure = null;
  socket.on('error', (e) => {
    failure = e;
    for (const w of waiting.splice(0)) w.reject(e);
  });
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      const parsed = parse(buffer, 0);
      if (parsed === null) return;
      buffer = buffer.subarray(parsed.end);
      const w = waiting.shift();
      if (w === undefined) pushed.push(parsed.value);
      else if (parsed.value instanceof Error) w.reject(parsed.value);
      else w.resolve(parsed.value);
    }
  });
  const write = (args) => {
    const parts = args.map((a) => Buffer.from(String(a)));
    socket.write(`*${parts.length}\r\n`);
    for (const p of parts) socket.write(Buffer.concat([Buffer.from(`$${p.length}\r\n`), p, Buffer.from('\r\n')]));
  };
  return {
    call(...args) {
      if (failure !== null) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        write(args);
      });
    },
    pushed,
    close() {
      socket.destroy();
    },
  };
}

/** One RESP2 value at `at`, or null when `buf` does not hold all of it yet. */
function parse(buf, at) {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return null;
  const kind = String.fromCharCode(buf[at]);
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (kind) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.toString('utf8', next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items = [];
      let end = next;
      for (let i = 0; i < n; i++) {
        const item = parse(buf, end);
        if (item === null) return null;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`not RESP: ${JSON.stringify(buf.toString('utf8', at, Math.min(buf.length, at + 40)))}`);
  }
}

/**
 * Every key matching `pattern` with its type and whole value (hash fields
 * and values, set and list members, sorted-set members with scores,
 * strings, stream entries).
 */
export async function redisDump(url, pattern) {
  const r = await redis(url);
  try {
    const keys = [];
    let cursor = '0';
    do {
      const [next, batch] = await r.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
    const dump = {};
    for (const key of [...new Set(keys)].sort()) {
      const type = await r.call('TYPE', key);
      const read = {
        string: ['GET', key],
        hash: ['HGETALL', key],
        set: ['SMEMBERS', key],
        list: ['LRANGE', key, 0, -1],
        zset: ['ZRANGE', key, 0, -1, 'WITHSCORES'],
        stream: ['XRANGE', key, '-', '+'],
      }[type];
      dump[key] = { type, value: read === undefined ? null : await r.call(...read) };
    }
    return dump;
  } finally {
    r.close();
  }
}

/**
 * Subscribes to the Redis channels matching `pattern`; `messages()` returns
 * what was published on them so far, `close()` ends the subscription.
 */
export async function redisSubscribe(url, pattern) {
  const r = await redis(url);
  await r.call('PSUBSCRIBE', pattern);
  return {
    messages: () => r.pushed.filter((m) => Array.isArray(m) && m[0] === 'pmessage').map(([, , channel, data]) => ({ channel, data })),
    close: () => r.close(),
  };
}
