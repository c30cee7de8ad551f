import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatClient, type ChatClientOptions } from './client.ts';
import type { ChatError } from './errors.ts';
import { DEFAULT_BACKOFF, backoffDelay, policyDelay } from './transport.ts';
import { FakeClock, FakeNetwork, messageFrame, welcomeFrame, type FakeSocket } from './testing/fakes.ts';

const me = { id: 'u-me', name: 'alice' };
const bob = { id: 'u-bob', name: 'bob' };
const carol = { id: 'u-carol', name: 'carol' };

let clock: FakeClock;
let net: FakeNetwork;

beforeEach(() => {
  clock = new FakeClock();
  net = new FakeNetwork();
  vi.spyOn(console, 'warn').mockImplementation(() => undefined);
  vi.spyOn(console, 'error').mockImplementation(() => undefined);
});

afterEach(() => {
  vi.restoreAllMocks();
});

function makeClient(extra: Partial<ChatClientOptions> = {}): ChatClient {
  return new ChatClient({
    url: 'ws://test/v1/ws',
    name: 'alice',
    socketFactory: net.factory,
    clock,
    random: () => 0.5,
    ...extra,
  });
}

/** Connects and completes the handshake; returns the socket. */
function online(client: ChatClient, user = me, gateway = 'gw-a'): FakeSocket {
  client.connect();
  const sock = net.last;
  sock.open();
  sock.receive(welcomeFrame(user, gateway));
  expect(client.getState().status).toBe('online');
  return sock;
}

function room(client: ChatClient, id: string) {
  const r = client.getState().rooms.find((x) => x.id === id);
  if (r === undefined) throw new Error(`not in room ${id}`);
  return r;
}

function ids(client: ChatClient, id: string): string[] {
  return room(client, id).messages.map((m) => m.id);
}

/** Settles a promise into a plain result so tests can assert on it. */
async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: ChatError }> {
  try {
    return { ok: true, value: await p };
  } catch (e) {
    return { ok: false, error: e as ChatError };
  }
}

describe('handshake and joining', () => {
  it('hello → welcome → join → joined', () => {
    const client = makeClient();
    expect(client.getState().status).toBe('offline');
    client.connect();
    expect(client.getState().status).toBe('connecting');
    const sock = net.last;
    expect(sock.url).toBe('ws://test/v1/ws');
    expect(sock.sent).toEqual([]);

    sock.open();
    expect(sock.sent).toEqual([{ type: 'hello', name: 'alice' }]);

    sock.receive(welcomeFrame(me, 'gw-a', { max_text_bytes: 1000 }));
    const s = client.getState();
    expect(s.status).toBe('online');
    expect(s.self).toEqual(me);
    expect(s.gateway).toBe('gw-a');
    expect(s.limits.max_text_bytes).toBe(1000);
    expect(s.ttlMs).toBe(300_000);

    client.join('lobby');
    expect(sock.lastOf('join')).toEqual({ type: 'join', room: 'lobby' });
    expect(room(client, 'lobby').status).toBe('joining');

    const t = clock.now();
    sock.receive({
      type: 'joined',
      room: 'lobby',
      history: [messageFrame('lobby', 'm1', bob, 'hello', t - 2000), messageFrame('lobby', 'm2', me, 'hi bob', t - 1000)],
      members: [me, bob, bob],
    });
    const lobby = room(client, 'lobby');
    expect(lobby.status).toBe('joined');
    expect(lobby.messages.map((m) => [m.id, m.own])).toEqual([
      ['m1', false],
      ['m2', true],
    ]);
    expect(lobby.members).toEqual([me, bob]);
    expect(lobby.lastId).toBe('m2');
    expect(lobby.unread).toBe(0);
  });

  it('sends the token in hello when it has one', () => {
    const client = makeClient({ token: 'jwt' });
    client.connect();
    net.last.open();
    expect(net.last.sent[0]).toEqual({ type: 'hello', name: 'alice', token: 'jwt' });
  });

  it('joins requested before the session is up are sent after welcome', () => {
    const client = makeClient();
    client.join('lobby');
    client.join('random');
    client.connect();
    const sock = net.last;
    sock.open();
    expect(sock.framesOf('join')).toEqual([]);
    sock.receive(welcomeFrame(me));
    expect(sock.framesOf('join')).toEqual([
      { type: 'join', room: 'lobby' },
      { type: 'join', room: 'random' },
    ]);
  });

  it('refuses invalid room ids before sending anything', () => {
    const client = makeClient();
    const sock = online(client);
    expect(() => {
      client.join('Not Valid');
    }).toThrow(expect.objectContaining({ code: 'invalid_room' }) as Error);
    expect(sock.framesOf('join')).toEqual([]);
  });

  it('a join error without ref removes the oldest room still joining', () => {
    const client = makeClient();
    const sock = online(client);
    const errors: ChatError[] = [];
    client.on('error', (e) => errors.push(e));
    client.join('a');
    client.join('b');
    sock.receive({ type: 'joined', room: 'a', history: [], members: [me] });
    sock.receive({ type: 'error', code: 'too_many_rooms', message: 'limit' });
    expect(client.getState().rooms.map((r) => r.id)).toEqual(['a']);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.code).toBe('too_many_rooms');
    expect(errors[0]?.room).toBe('b');
    expect(errors[0]?.message).toMatch(/too many rooms/);
  });

  it('stops at limits.max_rooms locally', () => {
    const client = makeClient();
    client.connect();
    net.last.open();
    net.last.receive(welcomeFrame(me, 'gw-a', { max_rooms: 2 }));
    client.join('a');
    client.join('b');
    expect(() => {
      client.join('c');
    }).toThrow(expect.objectContaining({ code: 'too_many_rooms' }) as Error);
  });

  it('leave sends leave, drops the room, and ignores the echo', () => {
    const client = makeClient();
    const sock = online(client);
    client.join('lobby');
    sock.receive({ type: 'joined', room: 'lobby', history: [], members: [me] });
    client.setActiveRoom('lobby');
    client.leave('lobby');
    expect(sock.lastOf('leave')).toEqual({ type: 'leave', room: 'lobby' });
    expect(client.getState().rooms).toEqual([]);
    expect(client.getState().activeRoom).toBeNull();

    // Leave then join again quickly: the late `left` must not remove the new membership.
    client.join('lobby');
    sock.receive({ type: 'left', room: 'lobby' });
    expect(room(client, 'lobby').status).toBe('joining');
    sock.receive({ type: 'joined', room: 'lobby', history: [], members: [me] });
    expect(room(client, 'lobby').status).toBe('joined');
  });

  it('an unrequested left removes the room', () => {
    const client = makeClient();
    const sock = online(client);
    client.join('lobby');
    sock.receive({ type: 'left', room: 'lobby' });
    expect(client.getState().rooms).toEqual([]);
  });

  it('a refused name stops the client instead of retrying', () => {
    const client = makeClient();
    client.connect();
    const sock = net.last;
    sock.open();
    sock.receive({ type: 'error', code: 'invalid_name', message: 'bad name' });
    const s = client.getState();
    expect(s.status).toBe('offline');
    expect(s.fatal?.code).toBe('invalid_name');
    expect(sock.closedWith).not.toBeNull();
    clock.advance(120_000);
    expect(net.sockets).toHaveLength(1);
  });
});

describe('messages, presence and unread', () => {
  it('live messages append, dedupe by id and ignore rooms not joined', () => {
    const client = makeClient();
    const sock = online(client);
    client.join('lobby');
    sock.receive({ type: 'joined', room: 'lobby', history: [], members: [me] });
    const seen: string[] = [];
    client.on('message', ({ message }) => seen.push(message.id));
    const t = clock.now();
    sock.receive(messageFrame('lobby', 'm1', bob, 'one', t));
    sock.receive(messageFrame('lobby', 'm1', bob, 'one', t));
    sock.receive(messageFrame('elsewhere', 'm2', bob, 'two', t));
    expect(ids(client, 'lobby')).toEqual(['m1']);
    expect(seen).toEqual(['m1']);
    expect(room(client, 'lobby').lastId).toBe('m1');
  });

  it('presence adds and removes members, deduped by id', () => {
    const client = makeClient();
    const sock = online(client);
    client.join('lobby');
    sock.receive({ type: 'joined', room: 'lobby', history: [], members: [me, bob] });
    sock.receive({ type: 'presence', room: 'lobby', joined: [carol, bob], left: [] });
    expect(room(client, 'lobby').members).toEqual([me, bob, carol]);
    sock.receive({ type: 'presence', room: 'lobby', joined: [], left: [bob] });
    expect(room(client, 'lobby').members).toEqual([me, carol]);
    // Named in both lists: left, then joined again.
    sock.receive({ type: 'presence', room: 'lobby', joined: [bob], left: [bob] });
    expect(room(client, 'lobby').members).toEqual([me, carol, bob]);
    sock.receive({ type: 'presence', room: 'lobby', joined: [], left: [bob] });
    // A renamed member keeps one entry.
    sock.receive({ type: 'presence', room: 'lobby', joined: [{ id: 'u-carol', name: 'caz' }], left: [] });
    expect(room(client, 'lobby').members).toEqual([me, { id: 'u-carol', name: 'caz' }]);
  });

  it('counts unread messages in rooms other than the active one', () => {
    const client = makeClient();
    const sock = online(client);
    client.join('a');
    client.join('b');
    sock.receive({ type: 'joined', room: 'a', history: [], members: [me] });
    sock.receive({ type: 'joined', room: 'b', history: [messageFrame('b', 'old', bob, 'x', clock.now())], members: [me] });
    client.setActiveRoom('a');
    expect(room(client, 'b').unread).toBe(0);
    const t = clock.now();
    sock.receive(messageFrame('a', 'a1', bob, 'x', t));
    sock.receive(messageFrame('b', 'b1', bob, 'x', t));
    sock.receive(messageFrame('b', 'b2', bob, 'x', t));
    sock.receive(messageFrame('b', 'b3', me, 'mine', t));
    expect(room(client, 'a').unread).toBe(0);
    expect(room(client, 'b').unread).toBe(2);
    client.setActiveRoom('b');
    expect(room(client, 'b').unread).toBe(0);
  });

  it('drops expired messages, on the server clock', () => {
    const client = makeClient();
    const sock = online(client);
    client.join('lobby');
    const t = clock.now();
    sock.receive({
      type: 'joined',
      room: 'lobby',
      history: [
        { ...messageFrame('lobby', 'm1', bob, 'short', t), expires_at: t + 1_000 },
        messageFrame('lobby', 'm2', bob, 'long', t),
      ],
      members: [me],
    });
    expect(client.pruneExpired()).toBe(false);
    clock.advance(1_000);
    expect(client.pruneExpired()).toBe(true);
    expect(ids(client, 'lobby')).toEqual(['m2']);
  });

  it('ignores garbage from the gateway', () => {
    const client = makeClient();
    const sock = online(client);
    sock.receiveRaw('{not json');
    sock.receiveRaw(new Uint8Array([1, 2]));
    sock.receive({ type: 'mystery' });
    expect(client.getState().status).toBe('online');
    expect(console.warn).toHaveBeenCalledTimes(3);
  });
});

describe('sending', () => {
  function joined(client: ChatClient): FakeSocket {
    const sock = online(client);
    client.join('lobby');
    sock.receive({ type: 'joined', room: 'lobby', history: [], members: [me] });
    return sock;
  }

  it('send → ack resolves with the message id; the echo is shown once, as own', async () => {
    const client = makeClient();
    const sock = joined(client);
    const p = client.send('lobby', 'hello there');
    const frame = sock.lastOf('send');
    expect(frame).toEqual({ type: 'send', room: 'lobby', text: 'hello there', ref: expect.stringMatching(/^c-/) as string });
    sock.receive({ type: 'ack', ref: frame?.ref, room: 'lobby', id: 'm-42' });
    await expect(p).resolves.toBe('m-42');
    sock.receive(messageFrame('lobby', 'm-42', me, 'hello there', clock.now()));
    expect(room(client, 'lobby').messages.map((m) => [m.id, m.own])).toEqual([['m-42', true]]);
  });

  it('the echo may overtake the ack', async () => {
    const client = makeClient();
    const sock = joined(client);
    const p = client.send('lobby', 'fast');
    sock.receive(messageFrame('lobby', 'm-7', me, 'fast', clock.now()));
    sock.receive({ type: 'ack', ref: sock.lastOf('send')?.ref, room: 'lobby', id: 'm-7' });
    await expect(p).resolves.toBe('m-7');
    expect(room(client, 'lobby').messages.map((m) => [m.id, m.own])).toEqual([['m-7', true]]);
  });

  it('send → error with the same ref rejects with the code and human words (the UI keeps the text)', async () => {
    const client = makeClient();
    const sock = joined(client);
    const first = client.send('lobby', 'one');
    const second = client.send('lobby', 'two');
    const [f1, f2] = sock.framesOf('send');
    expect(f1?.ref).not.toBe(f2?.ref);
    sock.receive({ type: 'error', code: 'rate_limited', message: 'slow down', ref: f2?.ref });
    sock.receive({ type: 'ack', ref: f1?.ref, room: 'lobby', id: 'm1' });
    const r2 = await settle(second);
    expect(r2.ok).toBe(false);
    if (!r2.ok) {
      expect(r2.error.code).toBe('rate_limited');
      expect(r2.error.room).toBe('lobby');
      expect(r2.error.message).toMatch(/too fast/);
    }
    await expect(first).resolves.toBe('m1');
  });

  it.each(['too_large', 'empty', 'not_joined', 'unavailable', 'bad_request'])(
    'a %s error for a send rejects that send',
    async (code) => {
      const client = makeClient();
      const sock = joined(client);
      const p = settle(client.send('lobby', 'x'));
      sock.receive({ type: 'error', code, message: 'server words', ref: sock.lastOf('send')?.ref });
      const r = await p;
      expect(r.ok ? null : r.error.code).toBe(code);
    },
  );

  it('checks offline, empty, byte size and membership before sending', async () => {
    const client = makeClient();
    const early = await settle(client.send('lobby', 'x'));
    expect(early.ok ? null : early.error.code).toBe('offline');

    client.connect();
    const sock = net.last;
    sock.open();
    sock.receive(welcomeFrame(me, 'gw-a', { max_text_bytes: 8 }));
    client.join('lobby');
    const codes = await Promise.all(
      [
        client.send('lobby', '   \n '),
        client.send('lobby', 'éééé'), // 8 bytes: fits
        client.send('lobby', 'ééééé'), // 10 bytes: too large
        client.send('nowhere', 'hi'),
      ].map(async (p) => {
        const r = await settle(Promise.race([p, Promise.resolve('pending')]));
        return r.ok ? r.value : r.error.code;
      }),
    );
    expect(codes).toEqual(['empty', 'pending', 'too_large', 'not_joined']);
    expect(sock.framesOf('send').map((f) => f.text)).toEqual(['éééé']);
  });

  it('rejects a send that gets no answer in time', async () => {
    const client = makeClient({ ackTimeoutMs: 5_000 });
    joined(client);
    const p = settle(client.send('lobby', 'hello?'));
    clock.advance(5_000);
    const r = await p;
    expect(r.ok ? null : r.error.code).toBe('timeout');
  });

  it('rejects sends in flight when the connection drops', async () => {
    const client = makeClient();
    const sock = joined(client);
    const p = settle(client.send('lobby', 'lost?'));
    sock.serverClose(1006);
    const r = await p;
    expect(r.ok ? null : r.error.code).toBe('connection_lost');
  });
});

describe('reconnecting', () => {
  it('backoffDelay is full jitter within [0, min(cap, base·2^n))', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(15_000, 500 * 2 ** attempt);
      expect(backoffDelay(attempt, () => 0)).toBe(0);
      expect(backoffDelay(attempt, () => 0.999999)).toBe(ceiling - 1);
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(attempt, Math.random);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(ceiling);
      }
    }
    expect(backoffDelay(3, () => 0.5, { baseMs: 100, capMs: 1_000 })).toBe(400);
  });

  it('policyDelay for 4008 stays in the upper half of the cap', () => {
    expect(policyDelay(() => 0)).toBe(DEFAULT_BACKOFF.capMs / 2);
    expect(policyDelay(() => 0.999999)).toBeLessThan(DEFAULT_BACKOFF.capMs);
  });

  it('waits a growing, jittered delay between failed attempts', () => {
    const client = makeClient({ random: () => 0.999999 });
    client.connect();
    const expected = [500, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000];
    for (const ceiling of expected) {
      const before = net.sockets.length;
      net.last.serverClose(1006);
      const s = client.getState();
      expect(s.status).toBe('reconnecting');
      const delay = (s.retryAt ?? 0) - clock.now();
      expect(delay).toBe(ceiling - 1);
      clock.advance(delay - 1);
      expect(net.sockets).toHaveLength(before);
      clock.advance(1);
      expect(net.sockets).toHaveLength(before + 1);
      expect(client.getState().status).toBe('connecting');
    }
  });

  it('starts the backoff over once a connection was stable', () => {
    const client = makeClient({ random: () => 0.999999, stableAfterMs: 10_000 });
    client.connect();
    for (let i = 0; i < 4; i++) {
      net.last.serverClose(1006);
      clock.advance(client.getState().retryAt! - clock.now());
    }
    expect(client.getState().attempt).toBe(4);
    net.last.open();
    net.last.receive(welcomeFrame(me));
    net.last.receive({ type: 'pong', ref: net.last.lastOf('ping')?.ref });
    clock.advance(10_000);
    net.last.serverClose(1001);
    expect(client.getState().retryAt! - clock.now()).toBe(499);
  });

  it.each([1001, 4009, 1006, 1011, 1000])('reconnects after close code %i', (code) => {
    const client = makeClient();
    const sock = online(client);
    sock.serverClose(code);
    expect(client.getState().status).toBe('reconnecting');
    clock.advance(client.getState().retryAt! - clock.now());
    expect(net.sockets).toHaveLength(2);
    expect(client.getState().status).toBe('connecting');
  });

  it('4008 backs off for at least half the cap', () => {
    const client = makeClient({ random: () => 0 });
    const sock = online(client);
    sock.serverClose(4008);
    expect(client.getState().retryAt! - clock.now()).toBe(7_500);
  });

  it('4001 stops with "unauthorized"', () => {
    const client = makeClient();
    const sock = online(client);
    sock.receive({ type: 'error', code: 'unauthorized', message: 'token expired' });
    sock.serverClose(4001);
    const s = client.getState();
    expect(s.status).toBe('offline');
    expect(s.fatal?.code).toBe('closed_unauthorized');
    expect(s.fatal?.message).toMatch(/not authorized/);
    clock.advance(600_000);
    expect(net.sockets).toHaveLength(1);
  });

  it.each([4000, 1009])('%i stops with a protocol error instead of looping', (code) => {
    const client = makeClient();
    const sock = online(client);
    sock.serverClose(code);
    const s = client.getState();
    expect(s.status).toBe('offline');
    expect(s.fatal?.code).toBe('protocol');
    clock.advance(600_000);
    expect(net.sockets).toHaveLength(1);
    // The user may still ask for another try.
    client.reconnectNow();
    expect(net.sockets).toHaveLength(2);
    expect(client.getState().fatal).toBeNull();
  });

  it('re-joins every room with since = last id seen, and shows nothing twice', () => {
    const client = makeClient();
    let sock = online(client);
    client.join('lobby');
    client.join('quiet');
    client.setActiveRoom('lobby');
    const t = clock.now();
    sock.receive({
      type: 'joined',
      room: 'lobby',
      history: [messageFrame('lobby', 'm1', bob, 'one', t)],
      members: [me, bob],
    });
    sock.receive({ type: 'joined', room: 'quiet', history: [], members: [me] });
    sock.receive(messageFrame('lobby', 'm2', bob, 'two', t + 10));

    sock.serverClose(1001, 'shutting down');
    expect(client.getState().rooms.every((r) => r.status === 'joining')).toBe(true);
    clock.advance(client.getState().retryAt! - clock.now());
    sock = net.last;
    expect(net.sockets).toHaveLength(2);
    sock.open();
    sock.receive(welcomeFrame({ id: 'u-me-2', name: 'alice' }, 'gw-b'));
    expect(sock.framesOf('join')).toEqual([
      { type: 'join', room: 'lobby', since: 'm2' },
      { type: 'join', room: 'quiet' },
    ]);

    // A gateway may send overlap; m2 must not appear twice.
    sock.receive({
      type: 'joined',
      room: 'lobby',
      history: [messageFrame('lobby', 'm2', bob, 'two', t + 10), messageFrame('lobby', 'm3', carol, 'three', t + 20)],
      members: [{ id: 'u-me-2', name: 'alice' }, bob, carol],
    });
    sock.receive(messageFrame('lobby', 'm3', carol, 'three', t + 20));
    sock.receive(messageFrame('lobby', 'm4', bob, 'four', t + 30));
    expect(ids(client, 'lobby')).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(room(client, 'lobby').lastId).toBe('m4');
    expect(room(client, 'lobby').members.map((m) => m.name)).toEqual(['alice', 'bob', 'carol']);

    // Messages of the earlier connection's user id still count as own.
    sock.receive(messageFrame('lobby', 'm5', me, 'from before', t + 40));
    expect(room(client, 'lobby').messages.at(-1)?.own).toBe(true);
  });

  it('counts missed messages from a re-join history as unread', () => {
    const client = makeClient();
    let sock = online(client);
    client.join('a');
    client.join('b');
    client.setActiveRoom('a');
    sock.receive({ type: 'joined', room: 'a', history: [], members: [me] });
    sock.receive({ type: 'joined', room: 'b', history: [], members: [me] });
    sock.serverClose(1006);
    clock.advance(client.getState().retryAt! - clock.now());
    sock = net.last;
    sock.open();
    sock.receive(welcomeFrame(me));
    const t = clock.now();
    sock.receive({ type: 'joined', room: 'b', history: [messageFrame('b', 'x1', bob, 'missed', t)], members: [me] });
    expect(room(client, 'b').unread).toBe(1);
  });

  it('a missing pong drops the socket and reconnects; pongs measure the RTT', () => {
    const client = makeClient({ pingIntervalMs: 15_000, pongTimeoutMs: 10_000 });
    const sock = online(client);
    const ping = sock.lastOf('ping');
    expect(ping?.ref).toMatch(/^p-/);
    clock.advance(40);
    sock.receive({ type: 'pong', ref: ping?.ref });
    clock.advance(15_000);
    const ping2 = sock.lastOf('ping');
    expect(ping2?.ref).not.toBe(ping?.ref);
    clock.advance(9_999);
    expect(client.getState().status).toBe('online');
    clock.advance(1);
    expect(client.getState().status).toBe('reconnecting');
    expect(sock.closedWith).not.toBeNull();
    // The old socket's late close must not disturb the new attempt.
    clock.advance(client.getState().retryAt! - clock.now());
    sock.serverClose(1006);
    expect(client.getState().status).toBe('connecting');
  });

  it('gives up on a connection that never says welcome', () => {
    const client = makeClient({ connectTimeoutMs: 10_000 });
    client.connect();
    net.last.open();
    clock.advance(10_000);
    expect(client.getState().status).toBe('reconnecting');
  });

  it('a socket factory that throws counts as a failed attempt', () => {
    let calls = 0;
    const client = makeClient({
      socketFactory: (url, handlers) => {
        calls++;
        if (calls === 1) throw new Error('bad url');
        return net.factory(url, handlers);
      },
    });
    client.connect();
    expect(client.getState().status).toBe('reconnecting');
    clock.advance(client.getState().retryAt! - clock.now());
    expect(net.sockets).toHaveLength(1);
  });

  it('reconnectNow skips the wait; disconnect stops for good', () => {
    const client = makeClient();
    const sock = online(client);
    sock.serverClose(1006);
    client.reconnectNow();
    expect(net.sockets).toHaveLength(2);
    expect(client.getState().status).toBe('connecting');
    client.disconnect();
    expect(client.getState().status).toBe('offline');
    expect(client.getState().fatal).toBeNull();
    clock.advance(600_000);
    expect(net.sockets).toHaveLength(2);
  });
});

describe('clock skew', () => {
  it('learns the offset from an own message and the ping RTT', async () => {
    const client = makeClient();
    const sock = online(client);
    // The server clock runs 42 s ahead; the RTT is 100 ms.
    const skew = 42_000;
    clock.advance(100);
    sock.receive({ type: 'pong', ref: sock.lastOf('ping')?.ref });
    client.join('lobby');
    sock.receive({ type: 'joined', room: 'lobby', history: [], members: [me] });
    const sentAt = clock.now();
    const p = client.send('lobby', 'tick');
    clock.advance(300);
    sock.receive({ type: 'ack', ref: sock.lastOf('send')?.ref, room: 'lobby', id: 'm1' });
    await p;
    sock.receive(messageFrame('lobby', 'm1', me, 'tick', sentAt + 50 + skew));
    expect(client.getState().offset).toBe(skew);
    expect(client.serverNow()).toBe(clock.now() + skew);
  });

  it('forgets the offset when moving to another gateway', () => {
    const client = makeClient();
    let sock = online(client, me, 'gw-a');
    client.join('lobby');
    sock.receive(messageFrame('lobby', 'x', bob, 'ahead', clock.now() + 9_000));
    expect(client.getState().offset).toBe(9_000);
    sock.serverClose(1001);
    clock.advance(client.getState().retryAt! - clock.now());
    sock = net.last;
    sock.open();
    sock.receive(welcomeFrame(me, 'gw-b'));
    expect(client.getState().offset).toBe(0);
  });
});
