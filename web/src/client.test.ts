import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatClient, wireLength, type ChatClientOptions } from './client.ts';
import { ENC_SCHEME, decryptText, encryptText, importRoomKey, newRoomKey } from './crypto.ts';
import type { ChatError } from './errors.ts';
import { CID_PATTERN } from './protocol.ts';
import { DEFAULT_BACKOFF, backoffDelay, policyDelay } from './transport.ts';
import {
  FakeClock,
  FakeNetwork,
  V11_EXTRA,
  V11_LIMITS,
  messageFrame,
  welcomeFrame,
  type FakeSocket,
} from './testing/fakes.ts';

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
  /** Online (v1, or v1.1 with `v11`) and joined to #lobby. */
  function joined(client: ChatClient, { v11 = false, user = me } = {}): FakeSocket {
    client.connect();
    const sock = net.last;
    sock.open();
    sock.receive(v11 ? welcomeFrame(user, 'gw-a', V11_LIMITS, V11_EXTRA) : welcomeFrame(user));
    client.join('lobby');
    sock.receive({ type: 'joined', room: 'lobby', history: [], members: [user] });
    return sock;
  }

  function outbox(client: ChatClient, roomId = 'lobby') {
    return room(client, roomId).outbox.map((o) => ({ text: o.text, status: o.status, code: o.error?.code ?? null }));
  }

  it('send → ack → echo: sending, then sent, then the message itself, once, as own', () => {
    const client = makeClient();
    const sock = joined(client);
    const cid = client.send('lobby', 'hello there');
    expect(cid).toMatch(CID_PATTERN);
    const frame = sock.lastOf('send');
    expect(frame).toEqual({ type: 'send', room: 'lobby', text: 'hello there', ref: expect.stringMatching(/^c-/) as string, cid });
    expect(outbox(client)).toEqual([{ text: 'hello there', status: 'sending', code: null }]);

    sock.receive({ type: 'ack', ref: frame?.ref, room: 'lobby', id: 'm-42' });
    expect(outbox(client)).toEqual([{ text: 'hello there', status: 'sent', code: null }]);
    sock.receive(messageFrame('lobby', 'm-42', me, 'hello there', clock.now()));
    expect(room(client, 'lobby').messages.map((m) => [m.id, m.own, m.body])).toEqual([
      ['m-42', true, { kind: 'text', text: 'hello there', encrypted: false }],
    ]);
    expect(outbox(client)).toEqual([]);
  });

  it('the echo may overtake the ack', () => {
    const client = makeClient();
    const sock = joined(client);
    client.send('lobby', 'fast');
    sock.receive(messageFrame('lobby', 'm-7', me, 'fast', clock.now()));
    sock.receive({ type: 'ack', ref: sock.lastOf('send')?.ref, room: 'lobby', id: 'm-7' });
    expect(room(client, 'lobby').messages.map((m) => [m.id, m.own])).toEqual([['m-7', true]]);
    expect(outbox(client)).toEqual([]);
  });

  it('every message gets a cid of its own', () => {
    const client = makeClient();
    const sock = joined(client);
    const cids = [client.send('lobby', 'one'), client.send('lobby', 'two')];
    expect(new Set(cids).size).toBe(2);
    expect(sock.framesOf('send').map((f) => f.cid)).toEqual(cids);
  });

  it.each(['blocked', 'too_large', 'empty', 'not_joined', 'bad_request', 'invalid_ttl', 'encryption_required'])(
    'a %s error marks that message not sent, with its reason, and sends nothing more by itself',
    (code) => {
      const client = makeClient();
      const sock = joined(client);
      client.send('lobby', 'one');
      client.send('lobby', 'two');
      const [f1, f2] = sock.framesOf('send');
      sock.receive({ type: 'error', code, message: 'server words', ref: f2?.ref });
      sock.receive({ type: 'ack', ref: f1?.ref, room: 'lobby', id: 'm1' });
      expect(outbox(client)).toEqual([
        { text: 'one', status: 'sent', code: null },
        { text: 'two', status: 'failed', code },
      ]);
      clock.advance(60_000);
      expect(sock.framesOf('send')).toHaveLength(2);
    },
  );

  it('blocked says the content policy refused it', () => {
    const client = makeClient();
    const sock = joined(client);
    client.send('lobby', 'forbidden words');
    sock.receive({ type: 'error', code: 'blocked', message: 'deny-list', ref: sock.lastOf('send')?.ref });
    const failed = room(client, 'lobby').outbox[0];
    expect(failed?.error?.message).toMatch(/content policy refused this message\. It was not sent/);
  });

  it('retry sends a failed message again with the same cid; discard forgets it', () => {
    const client = makeClient();
    const sock = joined(client);
    const cid = client.send('lobby', 'again');
    sock.receive({ type: 'error', code: 'not_joined', message: '', ref: sock.lastOf('send')?.ref });
    client.retry('lobby', cid);
    const [first, second] = sock.framesOf('send');
    expect(second?.cid).toBe(cid);
    expect(second?.ref).not.toBe(first?.ref);
    expect(outbox(client)).toEqual([{ text: 'again', status: 'sending', code: null }]);
    sock.receive({ type: 'error', code: 'blocked', message: '', ref: second?.ref });
    client.discard('lobby', cid);
    expect(outbox(client)).toEqual([]);
  });

  it.each(['unavailable', 'rate_limited'])('%s is retried with backoff and the same cid until acked', (code) => {
    const client = makeClient({ random: () => 0.999999, retryBackoff: { baseMs: 500, capMs: 8_000 } });
    const sock = joined(client);
    const cid = client.send('lobby', 'persist');
    for (const wait of [1_000, 2_000, 4_000]) {
      const before = sock.framesOf('send').length;
      sock.receive({ type: 'error', code, message: '', ref: sock.lastOf('send')?.ref });
      expect(outbox(client)).toEqual([{ text: 'persist', status: 'sending', code: null }]);
      clock.advance(wait - 2);
      expect(sock.framesOf('send')).toHaveLength(before);
      clock.advance(1);
      expect(sock.framesOf('send')).toHaveLength(before + 1);
    }
    expect(new Set(sock.framesOf('send').map((f) => f.cid))).toEqual(new Set([cid]));
    sock.receive({ type: 'ack', ref: sock.lastOf('send')?.ref, room: 'lobby', id: 'm1' });
    expect(outbox(client)).toEqual([{ text: 'persist', status: 'sent', code: null }]);
  });

  it('checks stopped, empty, byte size and membership before queueing anything', () => {
    const client = makeClient();
    const code = (f: () => unknown) => {
      try {
        f();
        return 'queued';
      } catch (e) {
        return (e as ChatError).code;
      }
    };
    expect(code(() => client.send('lobby', 'x'))).toBe('offline');

    client.connect();
    const sock = net.last;
    sock.open();
    sock.receive(welcomeFrame(me, 'gw-a', { max_text_bytes: 8 }));
    client.join('lobby');
    expect([
      code(() => client.send('lobby', '   \n ')),
      code(() => client.send('lobby', 'éééé')), // 8 bytes: fits
      code(() => client.send('lobby', 'ééééé')), // 10 bytes: too large
      code(() => client.send('nowhere', 'hi')),
    ]).toEqual(['empty', 'queued', 'too_large', 'not_joined']);
    // Queued while #lobby is joining; sent once it is joined.
    expect(sock.framesOf('send')).toEqual([]);
    sock.receive({ type: 'joined', room: 'lobby', history: [], members: [me] });
    expect(sock.framesOf('send').map((f) => f.text)).toEqual(['éééé']);
  });

  it('queues while connecting and sends after the room is joined', () => {
    const client = makeClient();
    client.join('lobby');
    client.connect();
    client.send('lobby', 'early bird');
    const sock = net.last;
    sock.open();
    sock.receive(welcomeFrame(me));
    expect(sock.framesOf('send')).toEqual([]);
    sock.receive({ type: 'joined', room: 'lobby', history: [], members: [me] });
    expect(sock.framesOf('send').map((f) => f.text)).toEqual(['early bird']);
  });

  describe('on a v1 gateway (no idempotent send)', () => {
    it('a send with no answer in time is not sent — the user decides', () => {
      const client = makeClient({ ackTimeoutMs: 5_000 });
      const sock = joined(client);
      client.send('lobby', 'hello?');
      clock.advance(5_000);
      expect(outbox(client)).toEqual([{ text: 'hello?', status: 'failed', code: 'timeout' }]);
      expect(sock.framesOf('send')).toHaveLength(1);
    });

    it('a send on the wire when the connection drops is not sent; one never written waits', () => {
      const client = makeClient();
      const sock = joined(client);
      client.send('lobby', 'lost?');
      sock.serverClose(1006);
      client.send('lobby', 'written later');
      expect(outbox(client)).toEqual([
        { text: 'lost?', status: 'failed', code: 'connection_lost' },
        { text: 'written later', status: 'sending', code: null },
      ]);
      clock.advance(client.getState().retryAt! - clock.now());
      net.last.open();
      net.last.receive(welcomeFrame(me));
      net.last.receive({ type: 'joined', room: 'lobby', history: [], members: [me] });
      expect(net.last.framesOf('send').map((f) => f.text)).toEqual(['written later']);
    });

    it('sends no ttl_ms', () => {
      const client = makeClient();
      const sock = joined(client);
      client.send('lobby', 'default life', 30_000);
      expect(sock.lastOf('send')).not.toHaveProperty('ttl_ms');
    });
  });

  describe('on a v1.1 gateway (idempotent send)', () => {
    it('a lost connection resends with the same cid after re-joining, and the message shows once', () => {
      const client = makeClient();
      let sock = joined(client, { v11: true });
      const cid = client.send('lobby', 'exactly once');
      const first = sock.lastOf('send');
      sock.serverClose(1006);
      expect(outbox(client)).toEqual([{ text: 'exactly once', status: 'sending', code: null }]);

      clock.advance(client.getState().retryAt! - clock.now());
      sock = net.last;
      sock.open();
      sock.receive(welcomeFrame({ id: 'u-me-2', name: 'alice' }, 'gw-a', V11_LIMITS, V11_EXTRA));
      expect(sock.framesOf('send')).toEqual([]);
      // The first attempt had arrived: history has it, from the old user id.
      const t = clock.now();
      sock.receive({ type: 'joined', room: 'lobby', history: [messageFrame('lobby', 'm1', me, 'exactly once', t)], members: [] });
      const again = sock.lastOf('send');
      expect(again).toMatchObject({ cid, text: 'exactly once' });
      expect(again?.ref).not.toBe(first?.ref);
      // The gateway knows the cid: the same id, and the message is not sent again.
      sock.receive({ type: 'ack', ref: again?.ref, room: 'lobby', id: 'm1' });
      sock.receive(messageFrame('lobby', 'm1', me, 'exactly once', t));
      expect(ids(client, 'lobby')).toEqual(['m1']);
      expect(outbox(client)).toEqual([]);
    });

    it('no answer in time sends again with the same cid', () => {
      const client = makeClient({ ackTimeoutMs: 5_000, random: () => 0.5 });
      const sock = joined(client, { v11: true });
      const cid = client.send('lobby', 'anyone?');
      clock.advance(5_000);
      clock.advance(2_000);
      expect(sock.framesOf('send').map((f) => f.cid)).toEqual([cid, cid]);
      expect(outbox(client)).toEqual([{ text: 'anyone?', status: 'sending', code: null }]);
    });

    it('sends the chosen lifetime, within the gateway range, and the outbox keeps it until then', () => {
      const client = makeClient();
      const sock = joined(client, { v11: true });
      const code = (ttl: number) => {
        try {
          client.send('lobby', `life ${ttl}`, ttl);
          return 'queued';
        } catch (e) {
          return (e as ChatError).code;
        }
      };
      expect([code(999), code(1_000), code(30_000), code(300_000), code(300_001)]).toEqual([
        'invalid_ttl',
        'queued',
        'queued',
        'queued',
        'invalid_ttl',
      ]);
      expect(sock.framesOf('send').map((f) => f.ttl_ms)).toEqual([1_000, 30_000, 300_000]);
      const deadlines = room(client, 'lobby').outbox.map((o) => o.deadline - o.createdAt);
      expect(deadlines).toEqual([1_000, 30_000, 300_000]);
    });

    it('gives up at the lifetime: the message leaves the outbox and the user is told', () => {
      const client = makeClient({ random: () => 0.999999 });
      const sock = joined(client, { v11: true });
      const errors: ChatError[] = [];
      client.on('error', (e) => errors.push(e));
      client.send('lobby', 'short-lived', 5_000);
      client.send('lobby', 'blocked one', 10_000);
      sock.receive({ type: 'error', code: 'unavailable', message: '', ref: sock.framesOf('send')[0]?.ref });
      sock.receive({ type: 'error', code: 'blocked', message: '', ref: sock.framesOf('send')[1]?.ref });
      expect(client.nextExpiryIn()).toBe(5_000);
      clock.advance(5_000);
      expect(client.pruneExpired()).toBe(true);
      expect(outbox(client)).toEqual([{ text: 'blocked one', status: 'failed', code: 'blocked' }]);
      expect(errors.map((e) => [e.code, e.room])).toEqual([['not_sent_in_time', 'lobby']]);
      // The failed one leaves at its own deadline, silently.
      clock.advance(5_000);
      client.pruneExpired();
      expect(outbox(client)).toEqual([]);
      expect(errors).toHaveLength(1);
      expect(client.nextExpiryIn()).toBe(Infinity);
    });

    it('refuses plain text where the gateway requires encryption', () => {
      const client = makeClient();
      client.connect();
      net.last.open();
      net.last.receive(welcomeFrame(me, 'gw-a', V11_LIMITS, { ...V11_EXTRA, encryption_required: true }));
      expect(client.getState().features.encryptionRequired).toBe(true);
      client.join('lobby');
      expect(() => client.send('lobby', 'in the clear')).toThrow(expect.objectContaining({ code: 'encryption_required' }) as Error);
    });
  });
});

describe('private rooms', () => {
  const ROOM = 'k3v9q0x2m7c4b8n1z5a6';

  async function keyOf(encoded: string) {
    return importRoomKey(encoded);
  }

  function joinedPrivate(client: ChatClient, key: string, { user = me, v11 = true } = {}): FakeSocket {
    client.connect();
    const sock = net.last;
    sock.open();
    sock.receive(v11 ? welcomeFrame(user, 'gw-a', V11_LIMITS, V11_EXTRA) : welcomeFrame(user));
    client.join(ROOM, key);
    sock.receive({ type: 'joined', room: ROOM, history: [], members: [user] });
    return sock;
  }

  async function sealed(key: string, text: string, user = bob.id) {
    return encryptText(await keyOf(key), ROOM, user, text);
  }

  it('a private room has its key; a malformed key is refused', () => {
    const client = makeClient();
    const key = newRoomKey();
    client.join(ROOM, key);
    expect(room(client, ROOM).key).toBe(key);
    expect(() => {
      client.join('other', 'not-a-key');
    }).toThrow(expect.objectContaining({ code: 'bad_key' }) as Error);
  });

  it('encrypts before sending, bound to the room and this connection’s user id', async () => {
    const client = makeClient();
    const key = newRoomKey();
    const sock = joinedPrivate(client, key);
    client.send(ROOM, 'for members only');
    const frame = await vi.waitFor(() => {
      const f = sock.lastOf('send');
      if (f === undefined) throw new Error('not sent yet');
      return f;
    });
    expect(frame.enc).toBe(ENC_SCHEME);
    expect(frame.text).not.toContain('members');
    expect(await decryptText(await keyOf(key), ROOM, me.id, frame.text)).toBe('for members only');
  });

  it('counts the encrypted size against the limit', () => {
    const client = makeClient();
    client.connect();
    net.last.open();
    net.last.receive(welcomeFrame(me, 'gw-a', { max_text_bytes: 2000 }));
    client.join(ROOM, newRoomKey());
    expect(wireLength('x'.repeat(1472), true)).toBe(2000);
    expect(client.send(ROOM, 'x'.repeat(1472))).toMatch(CID_PATTERN);
    expect(() => client.send(ROOM, 'x'.repeat(1473))).toThrow(expect.objectContaining({ code: 'too_large' }) as Error);
  });

  it('decrypts what arrives, in order, and announces each message once readable', async () => {
    const client = makeClient();
    const key = newRoomKey();
    const sock = joinedPrivate(client, key);
    const heard: string[] = [];
    client.on('message', ({ message }) => heard.push(message.body.kind === 'text' ? message.body.text : message.body.kind));
    const t = clock.now();
    const [one, two] = [await sealed(key, 'one'), await sealed(key, 'two')];
    sock.receive({ ...messageFrame(ROOM, 'm1', bob, one, t), enc: ENC_SCHEME });
    sock.receive({ ...messageFrame(ROOM, 'm2', bob, two, t), enc: ENC_SCHEME });
    expect(room(client, ROOM).messages.map((m) => m.body.kind)).toEqual(['decrypting', 'decrypting']);
    await vi.waitFor(() => {
      expect(heard).toEqual(['one', 'two']);
    });
    expect(room(client, ROOM).messages.map((m) => m.body)).toEqual([
      { kind: 'text', text: 'one', encrypted: true },
      { kind: 'text', text: 'two', encrypted: true },
    ]);
  });

  it('shows what it cannot read as such: another key, another sender, an unknown scheme, and plain text as plain', async () => {
    const client = makeClient();
    const key = newRoomKey();
    const sock = joinedPrivate(client, key);
    const t = clock.now();
    const history = [
      { ...messageFrame(ROOM, 'wrong-key', bob, await sealed(newRoomKey(), 'x'), t), enc: ENC_SCHEME },
      // Sealed by bob, replayed under carol's name.
      { ...messageFrame(ROOM, 'replayed', carol, await sealed(key, 'x', bob.id), t), enc: ENC_SCHEME },
      { ...messageFrame(ROOM, 'future', bob, 'whatever', t), enc: 'aes-gcm-v9' },
      messageFrame(ROOM, 'plain', bob, 'not encrypted', t),
    ];
    client.leave(ROOM);
    client.join(ROOM, key);
    sock.receive({ type: 'joined', room: ROOM, history, members: [] });
    await vi.waitFor(() => {
      expect(room(client, ROOM).messages.map((m) => m.body)).toEqual([
        { kind: 'unreadable' },
        { kind: 'unreadable' },
        { kind: 'unreadable' },
        { kind: 'text', text: 'not encrypted', encrypted: false },
      ]);
    });
  });

  it('without the key, encrypted messages are locked', async () => {
    const client = makeClient();
    const sock = online(client);
    client.join(ROOM);
    const t = clock.now();
    sock.receive({
      type: 'joined',
      room: ROOM,
      history: [{ ...messageFrame(ROOM, 'm1', bob, await sealed(newRoomKey(), 'secret'), t), enc: ENC_SCHEME }],
      members: [],
    });
    expect(room(client, ROOM).messages.map((m) => m.body)).toEqual([{ kind: 'locked' }]);
  });

  it('a key for a room already open reads its history again with the key', async () => {
    const client = makeClient();
    const sock = online(client);
    client.join(ROOM);
    const key = newRoomKey();
    const m1 = { ...messageFrame(ROOM, 'm1', bob, await sealed(key, 'now readable'), clock.now()), enc: ENC_SCHEME };
    sock.receive({ type: 'joined', room: ROOM, history: [m1], members: [] });
    client.join(ROOM, key);
    expect(sock.framesOf('join')).toEqual([
      { type: 'join', room: ROOM },
      { type: 'join', room: ROOM },
    ]);
    expect(room(client, ROOM).messages).toEqual([]);
    sock.receive({ type: 'joined', room: ROOM, history: [m1], members: [] });
    await vi.waitFor(() => {
      expect(room(client, ROOM).messages.map((m) => m.body)).toEqual([{ kind: 'text', text: 'now readable', encrypted: true }]);
    });
  });

  it('a retry on a new connection is encrypted again for the new user id', async () => {
    const client = makeClient();
    const key = newRoomKey();
    let sock = joinedPrivate(client, key);
    client.send(ROOM, 'survives reconnects');
    const first = await vi.waitFor(() => sock.lastOf('send') ?? Promise.reject(new Error('not yet')));
    sock.serverClose(1006);
    clock.advance(client.getState().retryAt! - clock.now());
    sock = net.last;
    sock.open();
    const me2 = { id: 'u-me-2', name: 'alice' };
    sock.receive(welcomeFrame(me2, 'gw-a', V11_LIMITS, V11_EXTRA));
    sock.receive({ type: 'joined', room: ROOM, history: [], members: [me2] });
    const again = await vi.waitFor(() => sock.lastOf('send') ?? Promise.reject(new Error('not yet')));
    expect(again.cid).toBe(first.cid);
    const k = await keyOf(key);
    expect(await decryptText(k, ROOM, me2.id, again.text)).toBe('survives reconnects');
    expect(await decryptText(k, ROOM, me.id, again.text)).toBeNull();
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

  it.each([1001, 4009, 4010, 1006, 1011, 1000])('reconnects after close code %i', (code) => {
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

  it.each([1001, 4010])('after close %i re-joins every room with since = last id seen, and shows nothing twice', (code) => {
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

    sock.serverClose(code);
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

describe('sign-in tokens', () => {
  const expiresAt = 1_700_000_600_000;

  /** Connects to a gateway with auth on, whose welcome says when the token expires; returns the socket. */
  function signedIn(client: ChatClient, tokenExpiresAt = expiresAt): FakeSocket {
    client.connect();
    const sock = net.last;
    sock.open();
    sock.receive(welcomeFrame(me, 'gw-a', V11_LIMITS, { ...V11_EXTRA, token_expires_at: tokenExpiresAt }));
    return sock;
  }

  it('without a token, 4001 stops and says a sign-in is needed', () => {
    const client = makeClient();
    const sock = online(client);
    sock.receive({ type: 'error', code: 'unauthorized', message: 'a token is required' });
    sock.serverClose(4001);
    const s = client.getState();
    expect(s.status).toBe('offline');
    expect(s.fatal?.code).toBe('sign_in_required');
    expect(s.fatal?.message).toMatch(/open the chat from/);
    clock.advance(600_000);
    expect(net.sockets).toHaveLength(1);
  });

  it('a new token is sent as auth on the open session, and carried by later hellos', () => {
    const client = makeClient({ token: 'jwt-1' });
    const sock = signedIn(client);
    expect(sock.sent[0]).toEqual({ type: 'hello', name: 'alice', token: 'jwt-1' });
    expect(client.getState().tokenExpiresAt).toBe(expiresAt);

    client.setToken('jwt-1');
    expect(sock.framesOf('auth')).toEqual([]);
    client.setToken('jwt-2');
    const auth = sock.lastOf('auth');
    expect(auth).toEqual({ type: 'auth', token: 'jwt-2', ref: expect.stringMatching(/^a-\d+$/) as unknown });
    sock.receive({ type: 'authed', ref: 'a-unrelated', expires_at: expiresAt + 1 });
    expect(client.getState().tokenExpiresAt).toBe(expiresAt);
    sock.receive({ type: 'authed', ref: auth?.ref, expires_at: expiresAt + 600_000 });
    expect(client.getState().tokenExpiresAt).toBe(expiresAt + 600_000);
    expect(client.getState().status).toBe('online');

    sock.serverClose(4010);
    clock.advance(client.getState().retryAt! - clock.now());
    net.last.open();
    expect(net.last.sent[0]).toEqual({ type: 'hello', name: 'alice', token: 'jwt-2' });
  });

  it('a token that arrives while reconnecting waits for the next hello', () => {
    const client = makeClient({ token: 'jwt-1' });
    signedIn(client).serverClose(1001);
    client.setToken('jwt-2');
    clock.advance(client.getState().retryAt! - clock.now());
    const sock = net.last;
    sock.open();
    expect(sock.sent[0]).toEqual({ type: 'hello', name: 'alice', token: 'jwt-2' });
    sock.receive(welcomeFrame(me, 'gw-a', V11_LIMITS, V11_EXTRA));
    expect(sock.framesOf('auth')).toEqual([]);
  });

  it('a token that arrives after hello went out is sent as auth once welcome comes', () => {
    const client = makeClient({ token: 'jwt-1' });
    client.connect();
    const sock = net.last;
    sock.open();
    client.setToken('jwt-2');
    expect(sock.framesOf('auth')).toEqual([]);
    sock.receive(welcomeFrame(me, 'gw-a', V11_LIMITS, V11_EXTRA));
    expect(sock.lastOf('auth')?.token).toBe('jwt-2');
  });

  it('a refused refresh stops with "not accepted"; a newer token connects again', () => {
    const client = makeClient({ token: 'jwt-1' });
    const sock = signedIn(client);
    client.join('lobby');
    client.setToken('jwt-other-user');
    sock.receive({ type: 'error', code: 'unauthorized', message: 'sub differs', ref: sock.lastOf('auth')?.ref });
    sock.serverClose(4001);
    let s = client.getState();
    expect(s.status).toBe('offline');
    expect(s.fatal?.code).toBe('closed_unauthorized');
    expect(s.fatal?.message).toMatch(/not accepted/);
    clock.advance(600_000);
    expect(net.sockets).toHaveLength(1);

    client.setToken('jwt-3');
    expect(net.sockets).toHaveLength(2);
    net.last.open();
    expect(net.last.sent[0]).toEqual({ type: 'hello', name: 'alice', token: 'jwt-3' });
    net.last.receive(welcomeFrame(me, 'gw-a', V11_LIMITS, V11_EXTRA));
    s = client.getState();
    expect(s.status).toBe('online');
    expect(s.fatal).toBeNull();
    expect(net.last.lastOf('join')).toEqual({ type: 'join', room: 'lobby' });
  });

  it('a token that expires without a refresh stops with "expired"', () => {
    const client = makeClient({ token: 'jwt-1' });
    const sock = signedIn(client, clock.now() + 5_000);
    clock.advance(5_000);
    sock.receive({ type: 'error', code: 'unauthorized', message: 'the token has expired' });
    sock.serverClose(4001);
    const s = client.getState();
    expect(s.fatal?.code).toBe('sign_in_expired');
    expect(s.fatal?.message).toMatch(/expired/);
    clock.advance(600_000);
    expect(net.sockets).toHaveLength(1);
  });

  it('a hello refused after a drop, past the expiry it knew, says "expired"', () => {
    const client = makeClient({ token: 'jwt-1' });
    signedIn(client, clock.now() + 5_000).serverClose(1006);
    clock.advance(6_000);
    expect(net.sockets).toHaveLength(2);
    net.last.open();
    net.last.receive({ type: 'error', code: 'unauthorized', message: 'the token has expired' });
    net.last.serverClose(4001);
    expect(client.getState().fatal?.code).toBe('sign_in_expired');
  });

  it('an expiry that overtakes a refresh on the wire reconnects with the new token', () => {
    const client = makeClient({ token: 'jwt-1' });
    const sock = signedIn(client);
    client.setToken('jwt-2');
    sock.receive({ type: 'error', code: 'unauthorized', message: 'the token has expired' });
    sock.serverClose(4001);
    expect(client.getState().status).toBe('reconnecting');
    clock.advance(client.getState().retryAt! - clock.now());
    net.last.open();
    expect(net.last.sent[0]).toEqual({ type: 'hello', name: 'alice', token: 'jwt-2' });
  });

  it('a gateway without token refresh keeps the session, and the next connection uses the new token', () => {
    const client = makeClient({ token: 'jwt-1' });
    const errors: ChatError[] = [];
    client.on('error', (e) => errors.push(e));
    const sock = signedIn(client);
    client.setToken('jwt-2');
    sock.receive({ type: 'error', code: 'bad_request', message: 'unknown frame type', ref: sock.lastOf('auth')?.ref });
    expect(client.getState().status).toBe('online');
    expect(errors).toEqual([]);
    sock.serverClose(1001);
    clock.advance(client.getState().retryAt! - clock.now());
    net.last.open();
    expect(net.last.sent[0]).toEqual({ type: 'hello', name: 'alice', token: 'jwt-2' });
  });

  it('a new token does not reconnect a client the user disconnected', () => {
    const client = makeClient({ token: 'jwt-1' });
    signedIn(client);
    client.disconnect();
    client.setToken('jwt-2');
    expect(net.sockets).toHaveLength(1);
    expect(client.getState().status).toBe('offline');
  });
});

describe('clock skew', () => {
  it('learns the offset from an own message and the ping RTT', () => {
    const client = makeClient();
    const sock = online(client);
    // The server clock runs 42 s ahead; the RTT is 100 ms.
    const skew = 42_000;
    clock.advance(100);
    sock.receive({ type: 'pong', ref: sock.lastOf('ping')?.ref });
    client.join('lobby');
    sock.receive({ type: 'joined', room: 'lobby', history: [], members: [me] });
    const sentAt = clock.now();
    client.send('lobby', 'tick');
    clock.advance(300);
    sock.receive({ type: 'ack', ref: sock.lastOf('send')?.ref, room: 'lobby', id: 'm1' });
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
