import { describe, expect, it } from 'vitest';
import {
  V1_FEATURES,
  encodeClientFrame,
  featuresOf,
  isValidRoomId,
  nameProblem,
  normalizeRoomId,
  parseServerFrame,
  utf8Length,
  type ServerFrame,
} from './protocol.ts';

const alice = { id: 'u-1', name: 'alice' };
const msg = {
  type: 'message',
  room: 'lobby',
  id: 'm-1',
  user: alice,
  text: 'hi',
  ts: 1763800000000,
  expires_at: 1763800300000,
};

function ok(frame: unknown): ServerFrame {
  const r = parseServerFrame(JSON.stringify(frame));
  if (!r.ok) throw new Error(`expected a frame, got: ${r.error}`);
  return r.frame;
}

function bad(raw: unknown): string {
  const r = parseServerFrame(typeof raw === 'string' ? raw : JSON.stringify(raw));
  if (r.ok) throw new Error(`expected a rejection, got ${JSON.stringify(r.frame)}`);
  return r.error;
}

describe('parseServerFrame accepts every server frame of the spec', () => {
  it('welcome', () => {
    const welcome = {
      type: 'welcome',
      session: 's-1',
      user: alice,
      gateway: 'gw-a',
      ttl_ms: 300000,
      limits: { max_text_bytes: 2000, messages_per_second: 5, burst: 10, max_rooms: 32 },
    };
    expect(ok(welcome)).toEqual(welcome);
  });

  it('joined, with history and members', () => {
    const joined = { type: 'joined', room: 'lobby', history: [msg], members: [alice, { id: 'u-2', name: 'bob' }] };
    expect(ok(joined)).toEqual(joined);
    expect(ok({ type: 'joined', room: 'x', history: [], members: [] })).toEqual({
      type: 'joined',
      room: 'x',
      history: [],
      members: [],
    });
  });

  it('left', () => {
    expect(ok({ type: 'left', room: 'lobby' })).toEqual({ type: 'left', room: 'lobby' });
  });

  it('message', () => {
    expect(ok(msg)).toEqual(msg);
  });

  it('ack', () => {
    const ack = { type: 'ack', ref: 'c-1', room: 'lobby', id: 'm-1' };
    expect(ok(ack)).toEqual(ack);
    // `ref` is echoed only when the send had one.
    expect(ok({ type: 'ack', room: 'lobby', id: 'm-1' })).toEqual({ type: 'ack', room: 'lobby', id: 'm-1' });
  });

  it('presence', () => {
    const p = { type: 'presence', room: 'lobby', joined: [alice], left: [{ id: 'u-2', name: 'bob' }] };
    expect(ok(p)).toEqual(p);
  });

  it('error with and without ref', () => {
    const e = { type: 'error', code: 'rate_limited', message: 'slow down', ref: 'c-1' };
    expect(ok(e)).toEqual(e);
    expect(ok({ type: 'error', code: 'invalid_room', message: 'no' })).toEqual({
      type: 'error',
      code: 'invalid_room',
      message: 'no',
    });
    // A null ref is the same as no ref.
    expect(ok({ type: 'error', code: 'empty', message: 'x', ref: null })).not.toHaveProperty('ref');
  });

  it('error with a code this version does not know is still delivered', () => {
    expect(ok({ type: 'error', code: 'brand_new', message: 'from the future' })).toMatchObject({ code: 'brand_new' });
  });

  it('pong with and without ref', () => {
    expect(ok({ type: 'pong', ref: 'p-1' })).toEqual({ type: 'pong', ref: 'p-1' });
    expect(ok({ type: 'pong' })).toEqual({ type: 'pong' });
  });

  it('ignores unknown extra fields and drops them', () => {
    expect(ok({ type: 'left', room: 'lobby', extra: 1 })).toEqual({ type: 'left', room: 'lobby' });
  });
});

describe('parseServerFrame reads the v1.1 additions', () => {
  const v11 = {
    type: 'welcome',
    session: 's-1',
    user: alice,
    gateway: 'gw-a',
    ttl_ms: 300000,
    limits: {
      max_text_bytes: 2000,
      messages_per_second: 5,
      burst: 10,
      max_rooms: 32,
      frames_per_second: 20,
      frame_burst: 40,
      min_ttl_ms: 1000,
    },
    idle_timeout_ms: 60000,
    encryption_required: true,
  };

  it('welcome with limits, idle timeout and encryption_required', () => {
    expect(ok(v11)).toEqual(v11);
  });

  it('welcome with the token expiry (auth on), and authed answering a token refresh', () => {
    expect(ok({ ...v11, token_expires_at: 1763800600000 })).toEqual({ ...v11, token_expires_at: 1763800600000 });
    expect(ok({ type: 'authed', ref: 'a-3', expires_at: 1763800900000 })).toEqual({
      type: 'authed',
      ref: 'a-3',
      expires_at: 1763800900000,
    });
  });

  it('message with enc', () => {
    expect(ok({ ...msg, enc: 'aes-gcm-v1' })).toEqual({ ...msg, enc: 'aes-gcm-v1' });
    expect(ok({ ...msg, enc: null })).toEqual(msg);
  });

  it('features: a v1 welcome offers nothing new', () => {
    const limits = { max_text_bytes: 2000, messages_per_second: 5, burst: 10, max_rooms: 32 };
    const v1 = ok({ ...v11, limits, idle_timeout_ms: undefined, encryption_required: undefined });
    if (v1.type !== 'welcome') throw new Error('not a welcome');
    expect(featuresOf(v1)).toEqual(V1_FEATURES);
  });

  it('features: a v1.1 welcome offers lifetimes, idempotent sends and says whether encryption is required', () => {
    const w = ok(v11);
    if (w.type !== 'welcome') throw new Error('not a welcome');
    expect(featuresOf(w)).toEqual({ lifetimes: { min: 1000, max: 300000 }, idempotentSend: true, encryptionRequired: true });
    const open = ok({ ...v11, encryption_required: false });
    if (open.type !== 'welcome') throw new Error('not a welcome');
    expect(featuresOf(open).encryptionRequired).toBe(false);
  });

  it.each([
    ['a string min_ttl_ms', { ...v11, limits: { ...v11.limits, min_ttl_ms: '1000' } }],
    ['a string encryption_required', { ...v11, encryption_required: 'yes' }],
    ['a numeric enc', { ...msg, enc: 1 }],
    ['a string token_expires_at', { ...v11, token_expires_at: 'soon' }],
    ['authed without expires_at', { type: 'authed', ref: 'a-1' }],
  ])('rejects %s', (_label, frame) => {
    expect(bad(frame)).toBeTruthy();
  });
});

describe('parseServerFrame rejects garbage', () => {
  it.each([
    ['not JSON', '{nope'],
    ['empty string', ''],
    ['a JSON array', '[1,2]'],
    ['a JSON string', '"welcome"'],
    ['null', 'null'],
  ])('%s', (_label, raw) => {
    expect(bad(raw)).toBeTruthy();
  });

  it('non-string data (a binary frame)', () => {
    expect(parseServerFrame(new ArrayBuffer(4))).toEqual({ ok: false, error: 'not a text frame' });
  });

  it('missing or non-string type', () => {
    expect(bad({ room: 'lobby' })).toMatch(/type/);
    expect(bad({ type: 7 })).toMatch(/type/);
  });

  it('unknown type', () => {
    expect(bad({ type: 'hello', name: 'x' })).toMatch(/unknown frame type/);
  });

  it.each([
    ['message without id', { ...msg, id: undefined }],
    ['message with string ts', { ...msg, ts: '1763800000000' }],
    ['message with NaN-ish expires_at', { ...msg, expires_at: null }],
    ['message with bad user', { ...msg, user: { id: 1, name: 'a' } }],
    ['message with user missing', { ...msg, user: undefined }],
    ['joined with non-array history', { type: 'joined', room: 'a', history: {}, members: [] }],
    ['joined with a garbage history entry', { type: 'joined', room: 'a', history: [msg, 3], members: [] }],
    ['joined with a bad member', { type: 'joined', room: 'a', history: [], members: [{ id: 'x' }] }],
    ['welcome without limits', { type: 'welcome', session: 's', user: alice, gateway: 'g', ttl_ms: 1 }],
    [
      'welcome with a string limit',
      {
        type: 'welcome',
        session: 's',
        user: alice,
        gateway: 'g',
        ttl_ms: 1,
        limits: { max_text_bytes: '2000', messages_per_second: 5, burst: 10, max_rooms: 32 },
      },
    ],
    ['ack without id', { type: 'ack', ref: 'c-1', room: 'a' }],
    ['presence without left', { type: 'presence', room: 'a', joined: [] }],
    ['error without message', { type: 'error', code: 'empty' }],
    ['error with numeric ref', { type: 'error', code: 'empty', message: 'm', ref: 3 }],
    ['left without room', { type: 'left' }],
  ])('%s', (_label, frame) => {
    expect(bad(frame)).toBeTruthy();
  });
});

describe('client frames', () => {
  it('encode as the spec shows them, leaving out absent optional fields', () => {
    expect(JSON.parse(encodeClientFrame({ type: 'hello', name: 'alice' }))).toEqual({ type: 'hello', name: 'alice' });
    expect(JSON.parse(encodeClientFrame({ type: 'join', room: 'lobby', since: 'm-9' }))).toEqual({
      type: 'join',
      room: 'lobby',
      since: 'm-9',
    });
    expect(encodeClientFrame({ type: 'send', room: 'lobby', text: 'hi', ref: 'c-1' })).toBe(
      '{"type":"send","room":"lobby","text":"hi","ref":"c-1"}',
    );
    expect(encodeClientFrame({ type: 'leave', room: 'lobby' })).toBe('{"type":"leave","room":"lobby"}');
    expect(encodeClientFrame({ type: 'ping', ref: 'p-1' })).toBe('{"type":"ping","ref":"p-1"}');
    expect(encodeClientFrame({ type: 'auth', token: 'h.p.s', ref: 'a-1' })).toBe(
      '{"type":"auth","token":"h.p.s","ref":"a-1"}',
    );
    const v11Send = {
      type: 'send',
      room: 'r',
      text: 'c2lw',
      ref: 'c-2',
      cid: 'AAAAAAAAAAAAAAAAAAAAAA',
      ttl_ms: 30000,
      enc: 'aes-gcm-v1',
    } as const;
    expect(JSON.parse(encodeClientFrame(v11Send))).toEqual(v11Send);
  });
});

describe('room ids', () => {
  it('match the spec pattern', () => {
    expect(isValidRoomId('lobby')).toBe(true);
    expect(isValidRoomId('0')).toBe(true);
    expect(isValidRoomId('a_b-c9')).toBe(true);
    expect(isValidRoomId('a'.repeat(64))).toBe(true);
    expect(isValidRoomId('a'.repeat(65))).toBe(false);
    expect(isValidRoomId('-lobby')).toBe(false);
    expect(isValidRoomId('_lobby')).toBe(false);
    expect(isValidRoomId('Lobby')).toBe(false);
    expect(isValidRoomId('')).toBe(false);
    expect(isValidRoomId('lob by')).toBe(false);
  });

  it('normalize what people type', () => {
    expect(normalizeRoomId('  Lobby ')).toBe('lobby');
    expect(normalizeRoomId('#General')).toBe('general');
    expect(normalizeRoomId('Team  Rust')).toBe('team-rust');
    expect(normalizeRoomId('café')).toBeNull();
    expect(normalizeRoomId('-x')).toBeNull();
    expect(normalizeRoomId('   ')).toBeNull();
    expect(normalizeRoomId('x'.repeat(65))).toBeNull();
  });
});

describe('names', () => {
  it('follow the hello rules', () => {
    expect(nameProblem('alice')).toBeNull();
    expect(nameProblem('  alice  ')).toBeNull();
    expect(nameProblem('   ')).toMatch(/Pick a name/);
    expect(nameProblem('é'.repeat(32))).toBeNull();
    // 32 emoji are 32 scalar values (64 UTF-16 units): still fine.
    expect(nameProblem('🙂'.repeat(32))).toBeNull();
    expect(nameProblem('a'.repeat(33))).toMatch(/at most 32/);
    expect(nameProblem('al\u0007ice')).toMatch(/control/);
  });
});

describe('utf8Length', () => {
  it('counts bytes, not characters', () => {
    expect(utf8Length('')).toBe(0);
    expect(utf8Length('abc')).toBe(3);
    expect(utf8Length('é')).toBe(2);
    expect(utf8Length('€')).toBe(3);
    expect(utf8Length('🙂')).toBe(4);
  });
});
