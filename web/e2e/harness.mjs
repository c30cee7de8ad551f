// The browser tests' harness: real `whisper-gateway` processes (on free
// ports of 127.0.0.1, sharing the test Kafka and Redis), Debian's Chromium
// driven by playwright-core, and helpers that read what a user sees through
// the UI's data-testids (web/README.md). Whatever a scenario starts is
// stopped when it ends, pass or fail, and again in `after` and on exit.
//
// Environment:
//   WHISPER_TEST_KAFKA_BROKERS, WHISPER_TEST_REDIS_URL
//                        the services (`eval "$(scripts/services env)"`); when
//                        unset a scenario is skipped, or fails under CI=true
//   WHISPER_GATEWAY_BIN  the gateway binary (default $CARGO_TARGET_DIR/debug/
//                        whisper-gateway, CARGO_TARGET_DIR defaulting to
//                        ~/.cache/whisperrooms/target)
//   WHISPER_CHROMIUM     the browser (default /usr/bin/chromium)
//   WHISPER_ARTIFACTS    screenshots and logs (default <repo>/test-artifacts)

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(import.meta.dirname, '..', '..');
export const ARTIFACTS = process.env.WHISPER_ARTIFACTS || path.join(REPO, 'test-artifacts');
export const SCREENSHOTS = path.join(ARTIFACTS, 'screenshots');
const LOGS = path.join(ARTIFACTS, 'e2e-logs');
const FAILURES = path.join(ARTIFACTS, 'e2e-failures');

export const GATEWAY_BIN =
  process.env.WHISPER_GATEWAY_BIN ||
  path.join(
    process.env.CARGO_TARGET_DIR || path.join(homedir(), '.cache', 'whisperrooms', 'target'),
    'debug',
    'whisper-gateway',
  );
const CHROMIUM = process.env.WHISPER_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Generous but bounded: 2 cores, debug gateways, a real broker. */
export const TIMEOUTS = {
  /** A gateway process until `/readyz` answers 200. */
  ready: 60_000,
  /** Anything a page should show soon (a message, a member, a state). */
  ui: 20_000,
  /** A page finding a restarted gateway by itself (backoff grows to 15 s). */
  reconnect: 60_000,
  /** One scenario, start to end. */
  scenario: 150_000,
};

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

const CI = process.env.CI === 'true';

/** The real services, or why they are missing. */
function services() {
  const kafka = process.env.WHISPER_TEST_KAFKA_BROKERS;
  const redis = process.env.WHISPER_TEST_REDIS_URL;
  const missing = [
    ...(kafka ? [] : ['WHISPER_TEST_KAFKA_BROKERS']),
    ...(redis ? [] : ['WHISPER_TEST_REDIS_URL']),
  ];
  if (missing.length === 0) return { kafka, redis, problem: null };
  return {
    kafka,
    redis,
    problem:
      `${missing.join(' and ')} ${missing.length === 1 ? 'is' : 'are'} not set: the test services are not ` +
      'running (run `scripts/services up`, then `eval "$(scripts/services env)"`)',
  };
}

/** A name no other run uses (topics, rooms, gateway ids). */
export function unique(prefix) {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        resolve(typeof address === 'object' && address !== null ? address.port : 0);
      });
    });
  });
}

/**
 * Polls `probe` until `accept(value)` holds; returns the value. On timeout
 * it fails saying what it waited for and the last value it saw.
 */
export async function until(what, probe, accept, timeout = TIMEOUTS.ui) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await probe();
      lastError = undefined;
      if (accept(last)) return last;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const seen = lastError === undefined ? JSON.stringify(last) : String(lastError);
      throw new Error(`timed out after ${timeout / 1000}s waiting until ${what}; last seen: ${seen}`);
    }
    await sleep(100);
  }
}

// ------------------------------------------------------------------ gateways

/** Every process and browser started and not yet stopped, for cleanup. */
const live = new Set();

const uiChecked = new Set();

class Gateway {
  constructor({ child, port, id, log, exited }) {
    this.child = child;
    this.port = port;
    this.id = id;
    this.log = log;
    this.exited = exited;
    this.url = `http://127.0.0.1:${port}`;
  }

  get running() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  logTail(lines = 25) {
    try {
      return readFileSync(this.log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Sends `signal` and waits for the exit; SIGKILL after `timeout`. Returns the exit code. */
  async stop(signal = 'SIGTERM', timeout = 20_000) {
    if (this.running) {
      this.child.kill(signal);
      const done = await Promise.race([this.exited, sleep(timeout, 'timeout', { ref: false })]);
      if (done === 'timeout') {
        this.child.kill('SIGKILL');
        await this.exited;
        live.delete(this);
        throw new Error(`gateway ${this.id} did not exit within ${timeout / 1000}s of ${signal}`);
      }
    }
    await this.exited;
    live.delete(this);
    return this.child.exitCode;
  }

  async close() {
    await this.stop('SIGTERM', 5_000).catch(() => undefined);
  }
}

/**
 * Starts a gateway on `port` (a free one by default) against the test
 * services, or, with no services, alone on its embedded bus and in-memory
 * presence (what `make run` starts), and waits until it is ready and serves
 * the UI. `settings` adds WHISPER_* variables (e.g. WHISPER_MAX_TEXT_BYTES).
 */
export async function startGateway({ services: svc, topic, name = 'gw', port, ttl, settings = {} }) {
  assert.ok(
    existsSync(GATEWAY_BIN),
    `no gateway binary at ${GATEWAY_BIN}: build it with \`cargo build -p whisper-gateway\` or set WHISPER_GATEWAY_BIN`,
  );
  const listen = port ?? (await freePort());
  const id = unique(`e2e-${name}`);
  mkdirSync(LOGS, { recursive: true });
  const log = path.join(LOGS, `${id}.log`);
  const fd = openSync(log, 'w');
  // A clean environment: a WHISPER_* setting of the caller's (a JWT secret,
  // a config file) must not change what the gateway does here.
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? homedir(),
    NO_COLOR: '1',
    WHISPER_LISTEN: `127.0.0.1:${listen}`,
    ...(svc === null ? {} : { WHISPER_KAFKA_BROKERS: svc.kafka, WHISPER_KAFKA_TOPIC: topic, WHISPER_REDIS_URL: svc.redis }),
    WHISPER_GATEWAY_ID: id,
    WHISPER_LOG: 'info,whisper_gateway=debug',
    ...(ttl === undefined ? {} : { WHISPER_MESSAGE_TTL: ttl }),
    ...settings,
  };
  const child = spawn(GATEWAY_BIN, [], { env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise((resolve) => {
    child.once('exit', resolve);
    child.once('error', resolve);
  });
  const gateway = new Gateway({ child, port: listen, id, log, exited });
  live.add(gateway);

  try {
    await waitReady(gateway);
    await checkServesUi(gateway);
  } catch (e) {
    await gateway.stop('SIGKILL').catch(() => undefined);
    throw e;
  }
  return gateway;
}

async function waitReady(gateway) {
  const deadline = Date.now() + TIMEOUTS.ready;
  for (;;) {
    if (!gateway.running) {
      throw new Error(
        `gateway ${gateway.id} exited during startup (code ${gateway.child.exitCode}); its log:\n${gateway.logTail()}`,
      );
    }
    const status = await fetch(`${gateway.url}/readyz`, { signal: AbortSignal.timeout(2_000) }).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) return;
    if (Date.now() >= deadline) {
      throw new Error(
        `gateway ${gateway.id} not ready on ${gateway.url} within ${TIMEOUTS.ready / 1000}s ` +
          `(last /readyz: ${status}); its log:\n${gateway.logTail()}`,
      );
    }
    await sleep(100);
  }
}

/** Once per binary: `/` must be the UI, or every browser step would fail obscurely. */
async function checkServesUi(gateway) {
  if (uiChecked.has(GATEWAY_BIN)) return;
  const res = await fetch(`${gateway.url}/`, { signal: AbortSignal.timeout(5_000) });
  const body = await res.text();
  assert.ok(
    res.status === 200 && body.includes('<div id="root">'),
    `the gateway ${GATEWAY_BIN} does not serve the web UI at / ` +
      `(HTTP ${res.status}: ${JSON.stringify(body.slice(0, 120))}); ` +
      'build it with `scripts/web build`, then `cargo build -p whisper-gateway`',
  );
  uiChecked.add(GATEWAY_BIN);
}

// ------------------------------------------------------------------ browsers

/** Headless Chromium with a fresh profile. */
export async function launchBrowser() {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install -y chromium (scripts/e2e does)`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
  const handle = {
    browser,
    close: () => browser.close().catch(() => undefined),
  };
  live.add(handle);
  browser.once('disconnected', () => live.delete(handle));
  return browser;
}

// ------------------------------------------------------------ what a user sees

/** A test id locator, optionally narrowed by attributes: tid(page, 'room-item', {room: 'x'}). */
export function tid(scope, id, attrs = {}) {
  const extra = Object.entries(attrs)
    .map(([k, v]) => `[data-${k}="${String(v)}"]`)
    .join('');
  return scope.locator(`[data-testid="${id}"]${extra}`);
}

/** The connection pill's state: connecting / online / reconnecting / offline. */
export function connectionState(page) {
  return tid(page, 'connection-status').getAttribute('data-state', { timeout: 2_000 });
}

export async function waitOnline(page, timeout = TIMEOUTS.ui) {
  await until('the page is online', () => connectionState(page), (s) => s === 'online', timeout);
}

/**
 * The messages of the open room, as shown: id, own, body (`text`, or why
 * it cannot be read: `locked`, `unreadable`, `decrypting`), sender name, text.
 */
export function messages(page) {
  return page.locator('[data-testid="message-list"] [data-testid="message"]').evaluateAll((items) =>
    items.map((li) => ({
      id: li.getAttribute('data-id'),
      own: li.getAttribute('data-own') === 'true',
      body: li.getAttribute('data-body'),
      sender: li.querySelector('[data-testid="message-sender"]')?.textContent ?? null,
      text: li.querySelector('[data-testid="message-text"]')?.textContent ?? null,
    })),
  );
}

/** Waits until the open room shows a message with this text; returns it. */
export async function waitForMessage(page, text, timeout = TIMEOUTS.ui) {
  const list = await until(
    `a message "${text}" is shown`,
    () => messages(page),
    (ms) => ms.some((m) => m.text === text),
    timeout,
  );
  return list.find((m) => m.text === text);
}

/**
 * Records the JSON frames the page's WebSockets send and receive from now
 * on (all of its sockets, reconnects included): `{ sent, received }`.
 */
export function recordFrames(page) {
  const frames = { sent: [], received: [] };
  const parse = (payload) => {
    try {
      return typeof payload === 'string' ? JSON.parse(payload) : null;
    } catch {
      return null;
    }
  };
  page.on('websocket', (ws) => {
    ws.on('framesent', ({ payload }) => frames.sent.push(parse(payload)));
    ws.on('framereceived', ({ payload }) => frames.received.push(parse(payload)));
  });
  return frames;
}

/** Names in the members list of the open room, sorted. */
export async function memberNames(page) {
  const names = await page.locator('[data-testid="member-list"] [data-testid="member"] .member-name').allTextContents();
  return names.map((n) => n.trim()).sort();
}

export async function waitForMembers(page, expected, timeout = TIMEOUTS.ui) {
  const want = [...expected].sort();
  return until(
    `the members list shows ${JSON.stringify(want)}`,
    () => memberNames(page),
    (names) => JSON.stringify(names) === JSON.stringify(want),
    timeout,
  );
}

/** The room is in the sidebar, joined, and open. */
export async function waitJoined(page, room) {
  await tid(page, 'room-item', { room, status: 'joined', active: true }).waitFor();
  await until(
    `#${room} is the open room`,
    () => tid(page, 'message-list').getAttribute('data-room', { timeout: 2_000 }),
    (r) => r === room,
  );
}

/** Types into the composer and presses Enter; resolves once the gateway acked (the box clears). */
export async function send(page, text) {
  const input = tid(page, 'message-input');
  await input.fill(text);
  await input.press('Enter');
  await until(`the composer clears after sending "${text}"`, () => input.inputValue(), (v) => v === '');
  const shown = await waitForMessage(page, text);
  assert.equal(shown.own, true, `the sender's own message "${text}" is marked as own`);
  return shown;
}

/** Joins `room` with the sidebar's join form. */
export async function joinWithForm(page, room) {
  await tid(page, 'room-input').fill(room);
  await tid(page, 'join-button').click();
  await waitJoined(page, room);
}

/**
 * Records every value the connection pill's `data-state` takes from now
 * on (a MutationObserver, so a state that lasts a few milliseconds is not
 * missed); read them with `seenStates`.
 */
export async function recordStates(page) {
  await page.evaluate(() => {
    const seen = [];
    Object.assign(window, { __e2eStates: seen });
    new MutationObserver((records) => {
      for (const r of records) {
        const el = r.target;
        if (el instanceof Element && el.getAttribute('data-testid') === 'connection-status') {
          seen.push(el.getAttribute('data-state'));
        }
      }
    }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  });
}

export function seenStates(page) {
  return page.evaluate(() => [...(window.__e2eStates ?? [])]);
}

/**
 * Saves `<name>.png` in the screenshots folder, after checking that the
 * page does not overflow sideways (a layout bug a picture can hide).
 */
export async function screenshot(page, name) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${name}: the page is ${overflow}px wider than the viewport`);
  mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, animations: 'disabled', caret: 'hide' });
  return file;
}

// ------------------------------------------------------------------ scenarios

/** One scenario's gateways, browser and pages; `cleanup` stops them all. */
class Scenario {
  constructor(name, svc, t) {
    this.t = t;
    this.name = name;
    this.services = svc;
    this.topic = unique('e2e');
    this.gateways = [];
    this.pages = [];
    this.pageErrors = [];
    this.browser = null;
    this.cleanups = [];
  }

  /** Runs `stop` (which may return a promise) when the scenario ends, pass or fail. */
  onCleanup(stop) {
    this.cleanups.push(stop);
  }

  /** Marks the scenario skipped, saying why; the body should return right after. */
  skip(why) {
    this.t.skip(why);
  }

  /** A gateway on this scenario's topic. */
  async gateway(options = {}) {
    const gateway = await startGateway({ services: this.services, topic: this.topic, ...options });
    this.gateways.push(gateway);
    return gateway;
  }

  async openBrowser() {
    this.browser ??= await launchBrowser();
    return this.browser;
  }

  /**
   * A fresh browser context (its own storage) with one page at `url`;
   * `setup(page)` runs before the page loads (to route or watch its socket).
   */
  async page(url, { colorScheme = 'light', viewport = DESKTOP, setup } = {}) {
    const browser = await this.openBrowser();
    const context = await browser.newContext({ colorScheme, viewport, locale: 'en-US', timezoneId: 'UTC' });
    context.setDefaultTimeout(TIMEOUTS.ui);
    const page = await context.newPage();
    const label = `page ${this.pages.length + 1}`;
    page.on('pageerror', (e) => this.pageErrors.push(`${label}: ${e.message}`));
    this.pages.push(page);
    await setup?.(page);
    await page.goto(url);
    return page;
  }

  /**
   * A user: a fresh context on `gateway`, straight into `room` through its
   * link (`#/room/<id>`, or `#/room/<id>?k=<key>` with `key`) when given,
   * name entered, online (and joined).
   */
  async user(gateway, name, { room, key, ...options } = {}) {
    const hash = room === undefined ? '' : `#/room/${room}${key === undefined ? '' : `?k=${key}`}`;
    const page = await this.page(`${gateway.url}/${hash}`, options);
    await tid(page, 'name-input').fill(name);
    await tid(page, 'connect-button').click();
    await waitOnline(page);
    if (room !== undefined) await waitJoined(page, room);
    return page;
  }

  async saveFailureScreens() {
    for (const g of this.gateways) console.error(`  gateway ${g.id} log: ${g.log}`);
    if (this.pages.length === 0) return;
    mkdirSync(FAILURES, { recursive: true });
    const slug = this.name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
    await Promise.all(
      this.pages.map((page, i) =>
        page
          .screenshot({ path: path.join(FAILURES, `${slug}-page${i + 1}.png`), timeout: 5_000 })
          .catch(() => undefined),
      ),
    );
    console.error(`  screenshots of the pages: ${FAILURES}`);
  }

  async cleanup() {
    await Promise.all([
      ...this.gateways.map((g) => g.close()),
      this.browser?.close().catch(() => undefined),
      ...this.cleanups.map((stop) => Promise.resolve().then(stop).catch(() => undefined)),
    ]);
  }
}

/**
 * A browser test. It is skipped (with the reason) when the services are not
 * configured, and fails instead under CI=true. An `embedded` one needs no
 * services: its gateways run alone on the embedded bus.
 */
export function scenario(name, body, { timeout = TIMEOUTS.scenario, embedded = false } = {}) {
  const svc = embedded ? null : services();
  const problem = svc?.problem ?? null;
  if (problem !== null && !CI) {
    test(name, { skip: problem }, () => undefined);
    return;
  }
  test(name, { timeout }, async (t) => {
    if (problem !== null) assert.fail(`under CI=true the browser tests need the services: ${problem}`);
    const s = new Scenario(name, svc, t);
    // A timed-out body never returns: keep its pages and stop its processes now.
    const onAbort = () => void s.saveFailureScreens().finally(() => s.cleanup());
    t.signal.addEventListener('abort', onAbort, { once: true });
    try {
      await body(s);
      assert.deepEqual(s.pageErrors, [], 'no uncaught errors in the pages');
    } catch (e) {
      if (!t.signal.aborted) await s.saveFailureScreens();
      throw e;
    } finally {
      t.signal.removeEventListener('abort', onAbort);
      await s.cleanup();
    }
  });
}

/** Stops whatever is still running: the safety net behind each scenario's own cleanup. */
async function stopAll() {
  await Promise.all([...live].map((x) => x.close()));
}

after(stopAll);
process.once('exit', () => {
  for (const x of live) {
    if (x instanceof Gateway && x.running) x.child.kill('SIGKILL');
  }
});
