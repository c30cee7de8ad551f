/**
 * WhisperRooms wire protocol, versions 1 and 1.1 (docs/protocol.md).
 *
 * The frame types below mirror the reference field for field. Server frames
 * are untrusted input: `parseServerFrame` checks every field the UI relies on
 * and turns anything else into a typed failure instead of throwing. The v1.1
 * fields are optional: a v1 gateway leaves them out.
 */

export const WS_PATH = '/v1/ws';

/** Room ids the gateway accepts. */
export const ROOM_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Name length bounds, in Unicode scalar values after trimming. */
export const NAME_MAX_CHARS = 32;

export interface Member {
  id: string;
  name: string;
}

export interface Limits {
  max_text_bytes: number;
  messages_per_second: number;
  burst: number;
  max_rooms: number;
  /** v1.1: every client frame spends from this per-connection budget. */
  frames_per_second?: number;
  frame_burst?: number;
  /** v1.1: the shortest `ttl_ms` a `send` may ask for. */
  min_ttl_ms?: number;
}

/** The limits the spec documents as defaults, used until `welcome` says otherwise. */
export const DEFAULT_LIMITS: Readonly<Limits> = {
  max_text_bytes: 2000,
  messages_per_second: 5,
  burst: 10,
  max_rooms: 32,
};

/** A message's lifetime when `welcome` has not said yet (the gateway's default). */
export const DEFAULT_TTL_MS = 300_000;

// ---------------------------------------------------------------- client → server

export interface HelloFrame {
  type: 'hello';
  name: string;
  token?: string;
}

export interface JoinFrame {
  type: 'join';
  room: string;
  since?: string;
}

export interface LeaveFrame {
  type: 'leave';
  room: string;
}

export interface SendFrame {
  type: 'send';
  room: string;
  /** Plain text, or with `enc` the ciphertext of that scheme. */
  text: string;
  ref?: string;
  /** v1.1: client-chosen message id; sends with the same `cid` are one message. */
  cid?: string;
  /** v1.1: this message's lifetime, `min_ttl_ms` … the gateway's `ttl_ms`. */
  ttl_ms?: number;
  /** v1.1: end-to-end encryption scheme of `text` (`ENC_SCHEME` in crypto.ts). */
  enc?: string;
}

export interface PingFrame {
  type: 'ping';
  ref?: string;
}

/** v1.1, auth on: replaces the session's token (same `sub`); answered by `authed`. */
export interface AuthFrame {
  type: 'auth';
  token: string;
  ref?: string;
}

export type ClientFrame = HelloFrame | JoinFrame | LeaveFrame | SendFrame | PingFrame | AuthFrame;

// ---------------------------------------------------------------- server → client

export interface WelcomeFrame {
  type: 'welcome';
  session: string;
  user: Member;
  gateway: string;
  ttl_ms: number;
  limits: Limits;
  /** v1.1: a socket silent this long is closed with 4010. */
  idle_timeout_ms?: number;
  /** v1.1: the gateway refuses a `send` without `enc`. */
  encryption_required?: boolean;
  /** v1.1, auth on: when the session's token expires (then 4001, unless refreshed). */
  token_expires_at?: number;
}

export interface MessageFrame {
  type: 'message';
  room: string;
  id: string;
  user: Member;
  text: string;
  /** Unix milliseconds, server clock. */
  ts: number;
  /** Unix milliseconds, server clock; `ts + ttl_ms` (the message's own `ttl_ms` when it chose one). */
  expires_at: number;
  /** v1.1: `text` is ciphertext of this end-to-end encryption scheme. */
  enc?: string;
}

export interface JoinedFrame {
  type: 'joined';
  room: string;
  history: MessageFrame[];
  members: Member[];
}

export interface LeftFrame {
  type: 'left';
  room: string;
}

export interface AckFrame {
  type: 'ack';
  /** Echo of the `send`'s ref; absent when the send had none. */
  ref?: string;
  room: string;
  id: string;
}

export interface PresenceFrame {
  type: 'presence';
  room: string;
  joined: Member[];
  left: Member[];
}

export const ERROR_CODES = [
  'bad_request',
  'invalid_room',
  'invalid_name',
  'too_large',
  'empty',
  'not_joined',
  'too_many_rooms',
  'rate_limited',
  'unavailable',
  'unauthorized',
  // v1.1
  'invalid_ttl',
  'encryption_required',
  'blocked',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(code: string): code is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(code);
}

export interface ErrorFrame {
  type: 'error';
  /**
   * One of `ERROR_CODES`. Kept as a plain string so that a code added by a
   * newer gateway still reaches the user (with the server's own message)
   * instead of being dropped as garbage.
   */
  code: string;
  message: string;
  ref?: string;
}

/** v1.1: the `auth` with this `ref` was accepted; the session now lasts until `expires_at`. */
export interface AuthedFrame {
  type: 'authed';
  ref?: string;
  expires_at: number;
}

export interface PongFrame {
  type: 'pong';
  ref?: string;
}

export type ServerFrame =
  | WelcomeFrame
  | JoinedFrame
  | LeftFrame
  | MessageFrame
  | AckFrame
  | PresenceFrame
  | ErrorFrame
  | PongFrame
  | AuthedFrame;

// ---------------------------------------------------------------- close codes

export const CloseCode = {
  /** Gateway shutting down: reconnect and re-join with `since`. */
  GoingAway: 1001,
  /** Frame too large: a client bug. */
  TooLarge: 1009,
  /** Protocol violation (no hello, repeated bad frames): a client bug. */
  ProtocolViolation: 4000,
  /** Unauthorized (token refused, or expired without a refresh): a new token is needed. */
  Unauthorized: 4001,
  /** Abuse beyond rate limiting: back off. */
  Policy: 4008,
  /** Outbound queue overflowed: reconnect and re-join with `since`. */
  TooSlow: 4009,
  /** v1.1: nothing heard within `idle_timeout_ms`: reconnect and re-join with `since`. */
  Idle: 4010,
} as const;

// ---------------------------------------------------------------- validation

/** What a v1.1 `cid` looks like. */
export const CID_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;

/** True when `room` is a valid room id. */
export function isValidRoomId(room: string): boolean {
  return ROOM_ID_PATTERN.test(room);
}

/**
 * Turns what a person types into a room id: trims, drops a leading `#`,
 * lower-cases and joins words with `-`. Returns null when the result still
 * does not match the room id pattern (the caller explains why).
 */
export function normalizeRoomId(input: string): string | null {
  const room = input
    .trim()
    .replace(/^#+/, '')
    .trim()
    .toLowerCase()
    .replace(/\s+/g, '-');
  return isValidRoomId(room) ? room : null;
}

/** Why a name is rejected, or null when the gateway will accept it. */
export function nameProblem(input: string): string | null {
  const name = input.trim();
  // The spec counts Unicode scalar values, which is exactly what spreading a string yields.
  // eslint-disable-next-line @typescript-eslint/no-misused-spread
  const chars = [...name].length;
  if (chars === 0) return 'Pick a name so others know who is talking.';
  if (chars > NAME_MAX_CHARS) return `Names are at most ${NAME_MAX_CHARS} characters (this one has ${chars}).`;
  if (/\p{Cc}/u.test(name)) return 'Names cannot contain control characters.';
  return null;
}

const encoder = new TextEncoder();

/** Size of `text` on the wire, in UTF-8 bytes (what `max_text_bytes` limits). */
export function utf8Length(text: string): number {
  return encoder.encode(text).length;
}

/** True when the gateway would reject `text` as `empty`. */
export function isBlank(text: string): boolean {
  return text.trim().length === 0;
}

// ---------------------------------------------------------------- versions

/** What a gateway offers beyond v1, as its `welcome` announces it. */
export interface Features {
  /** `send` may carry `ttl_ms` within these bounds (ms); null on a v1 gateway. */
  lifetimes: { min: number; max: number } | null;
  /** `send` with a `cid` is idempotent, so a send whose fate is unknown may be retried. */
  idempotentSend: boolean;
  /** Only end-to-end encrypted text is carried. */
  encryptionRequired: boolean;
}

/** What a gateway is taken to offer before its `welcome`: plain v1. */
export const V1_FEATURES: Readonly<Features> = { lifetimes: null, idempotentSend: false, encryptionRequired: false };

/**
 * Reads the v1.1 additions off a `welcome`. The additions come together, so
 * a welcome announcing `limits.min_ttl_ms` is a v1.1 gateway's.
 */
export function featuresOf(welcome: WelcomeFrame): Features {
  const min = welcome.limits.min_ttl_ms;
  const v11 = min !== undefined;
  return {
    lifetimes: v11 ? { min: Math.min(min, welcome.ttl_ms), max: welcome.ttl_ms } : null,
    idempotentSend: v11,
    encryptionRequired: welcome.encryption_required === true,
  };
}

// ---------------------------------------------------------------- parsing

export type ParseResult = { ok: true; frame: ServerFrame } | { ok: false; error: string };

type Obj = Record<string, unknown>;

class FrameError extends Error {}

function fail(msg: string): never {
  throw new FrameError(msg);
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Obj, key: string): string {
  const v = o[key];
  if (typeof v !== 'string') fail(`field "${key}" must be a string`);
  return v;
}

/** Optional string: absent and `null` both mean "not there". */
function optStr(o: Obj, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') fail(`field "${key}" must be a string`);
  return v;
}

function num(o: Obj, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`field "${key}" must be a number`);
  return v;
}

/** Optional number: absent and `null` both mean "not there". */
function optNum(o: Obj, key: string): number | undefined {
  return o[key] === undefined || o[key] === null ? undefined : num(o, key);
}

function optBool(o: Obj, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') fail(`field "${key}" must be a boolean`);
  return v;
}

/** `{ key: value }`, or nothing when the value is absent: spread it into a frame. */
function opt<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return (value === undefined ? {} : { [key]: value }) as Partial<Record<K, V>>;
}

function obj(o: Obj, key: string): Obj {
  const v = o[key];
  if (!isObj(v)) fail(`field "${key}" must be an object`);
  return v;
}

function arr(o: Obj, key: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) fail(`field "${key}" must be an array`);
  return v;
}

function member(v: unknown): Member {
  if (!isObj(v)) fail('member must be an object');
  return { id: str(v, 'id'), name: str(v, 'name') };
}

function members(o: Obj, key: string): Member[] {
  return arr(o, key).map(member);
}

function message(o: Obj): MessageFrame {
  return {
    type: 'message',
    room: str(o, 'room'),
    id: str(o, 'id'),
    user: member(o.user),
    text: str(o, 'text'),
    ts: num(o, 'ts'),
    expires_at: num(o, 'expires_at'),
    ...opt('enc', optStr(o, 'enc')),
  };
}

function withRef<T extends object>(frame: T, ref: string | undefined): T & { ref?: string } {
  return { ...frame, ...opt('ref', ref) };
}

function decode(o: Obj): ServerFrame {
  const type = str(o, 'type');
  switch (type) {
    case 'welcome': {
      const limits = obj(o, 'limits');
      return {
        type,
        session: str(o, 'session'),
        user: member(o.user),
        gateway: str(o, 'gateway'),
        ttl_ms: num(o, 'ttl_ms'),
        limits: {
          max_text_bytes: num(limits, 'max_text_bytes'),
          messages_per_second: num(limits, 'messages_per_second'),
          burst: num(limits, 'burst'),
          max_rooms: num(limits, 'max_rooms'),
          ...opt('frames_per_second', optNum(limits, 'frames_per_second')),
          ...opt('frame_burst', optNum(limits, 'frame_burst')),
          ...opt('min_ttl_ms', optNum(limits, 'min_ttl_ms')),
        },
        ...opt('idle_timeout_ms', optNum(o, 'idle_timeout_ms')),
        ...opt('encryption_required', optBool(o, 'encryption_required')),
        ...opt('token_expires_at', optNum(o, 'token_expires_at')),
      };
    }
    case 'joined':
      return {
        type,
        room: str(o, 'room'),
        history: arr(o, 'history').map((m) => {
          if (!isObj(m)) fail('history entries must be objects');
          return message(m);
        }),
        members: members(o, 'members'),
      };
    case 'left':
      return { type, room: str(o, 'room') };
    case 'message':
      return message(o);
    case 'ack':
      return withRef({ type, room: str(o, 'room'), id: str(o, 'id') }, optStr(o, 'ref'));
    case 'presence':
      return { type, room: str(o, 'room'), joined: members(o, 'joined'), left: members(o, 'left') };
    case 'error':
      return withRef({ type, code: str(o, 'code'), message: str(o, 'message') }, optStr(o, 'ref'));
    case 'pong':
      return withRef({ type }, optStr(o, 'ref'));
    case 'authed':
      return withRef({ type, expires_at: num(o, 'expires_at') }, optStr(o, 'ref'));
    default:
      return fail(`unknown frame type "${type}"`);
  }
}

/** Parses one text frame from the gateway. Never throws. */
export function parseServerFrame(data: unknown): ParseResult {
  if (typeof data !== 'string') return { ok: false, error: 'not a text frame' };
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return { ok: false, error: 'not valid JSON' };
  }
  if (!isObj(value)) return { ok: false, error: 'not a JSON object' };
  try {
    return { ok: true, frame: decode(value) };
  } catch (e) {
    if (e instanceof FrameError) return { ok: false, error: e.message };
    throw e;
  }
}

/** Serializes a client frame. Optional fields that are undefined are left out. */
export function encodeClientFrame(frame: ClientFrame): string {
  return JSON.stringify(frame);
}
