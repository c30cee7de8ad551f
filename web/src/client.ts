/**
 * ChatClient: one WhisperRooms session over a WebSocket, framework-free.
 *
 * - Connection state machine: offline → connecting → online, and on a drop
 *   reconnecting (exponential backoff, full jitter) → connecting → online.
 *   Close codes 4000 and 1009 (protocol errors) stop retrying; so does 4001
 *   (unauthorized) unless the page has a newer token the gateway has not
 *   judged yet; 4008 backs off hard; anything else (1001, 4009, 4010,
 *   network loss) reconnects.
 * - Sign-in (gateways with auth on): the token goes in `hello`; a new one
 *   (`setToken`) is sent as `auth` on the open session (v1.1 token refresh)
 *   and used by every later `hello`. After a 4001 a new token connects
 *   again.
 * - The rooms the user is in survive reconnects: after every `welcome` the
 *   client re-joins each one with `since` = the last message id seen there,
 *   and drops messages whose id it already has.
 * - `send` puts a message in its room's outbox, with a fresh `cid`; it stays
 *   there as `sending` until the `ack` (then `sent`, until the message itself
 *   arrives) or a refusal (`failed`). `unavailable` and `rate_limited` are
 *   retried with backoff, with the same `cid`, and so is a send whose fate a
 *   lost connection or a missing ack left unknown when the gateway's sends
 *   are idempotent (v1.1). Retries stop at the message's lifetime.
 * - Private rooms have a key (`join(room, key)`): text is encrypted before
 *   every send attempt (for the user id of that connection) and decrypted on
 *   receipt, in arrival order; see crypto.ts.
 * - Liveness: a `ping` every `pingIntervalMs`; a missing `pong` drops the
 *   socket. Pong round trips feed the clock skew estimate (see expiry.ts).
 *
 * Everything the outside world provides (WebSocket, timers, clock, random)
 * is injected, so tests drive the client deterministically.
 *
 * State is exposed as an immutable snapshot (`getState` / `subscribe`), which
 * is what React's `useSyncExternalStore` wants; one-off happenings (a new
 * live message, an error not tied to a send) go through `on`.
 */
import {
  ENC_SCHEME,
  decryptText,
  encryptText,
  encryptionAvailable,
  importRoomKey,
  isRoomKey,
  newCid,
  sealedLength,
} from './crypto.ts';
import { ChatError, describeError, isSignInError } from './errors.ts';
import { SkewEstimator, isExpired } from './expiry.ts';
import {
  CloseCode,
  DEFAULT_LIMITS,
  DEFAULT_TTL_MS,
  V1_FEATURES,
  encodeClientFrame,
  featuresOf,
  isBlank,
  isValidRoomId,
  parseServerFrame,
  utf8Length,
  type AckFrame,
  type AuthedFrame,
  type ClientFrame,
  type ErrorFrame,
  type Features,
  type JoinedFrame,
  type Limits,
  type Member,
  type MessageFrame,
  type PresenceFrame,
  type SendFrame,
  type ServerFrame,
  type WelcomeFrame,
} from './protocol.ts';
import {
  DEFAULT_BACKOFF,
  backoffDelay,
  browserSocketFactory,
  policyDelay,
  systemClock,
  type BackoffPolicy,
  type Clock,
  type SocketFactory,
  type SocketLike,
  type TimerHandle,
} from './transport.ts';

// ---------------------------------------------------------------- state

export type ConnectionStatus = 'connecting' | 'online' | 'reconnecting' | 'offline';

/** What a message says, as far as this page can read it. */
export type MessageBody =
  /** `encrypted`: it came end-to-end encrypted and was decrypted here. */
  | { kind: 'text'; text: string; encrypted: boolean }
  /** Encrypted, and this page has no key for the room. */
  | { kind: 'locked' }
  /** Encrypted, and the room's key does not open it (another key, tampered, unknown scheme). */
  | { kind: 'unreadable' }
  /** Encrypted; decryption is under way. */
  | { kind: 'decrypting' };

export interface ChatMessage {
  room: string;
  id: string;
  user: Member;
  /** Server clock. */
  ts: number;
  /** Server clock. */
  expires_at: number;
  /** Sent by this user (any of its connections in this browser). */
  own: boolean;
  body: MessageBody;
}

/** A message of ours on its way: shown until the gateway's copy arrives. */
export interface OutgoingMessage {
  /** The v1.1 client message id, the same for every attempt. */
  cid: string;
  room: string;
  text: string;
  /** The lifetime asked for; null for the gateway's. */
  ttlMs: number | null;
  /** Local clock. Retries stop, and the entry leaves, at `deadline`. */
  createdAt: number;
  deadline: number;
  /** `sent`: acked, its `message` not here yet. */
  status: 'sending' | 'sent' | 'failed';
  /** Why it was not sent, when `failed`. */
  error: ChatError | null;
  /** The message id from the `ack`. */
  id: string | null;
}

export interface RoomState {
  id: string;
  /** `joining` until the gateway answers `joined` (again after a reconnect). */
  status: 'joining' | 'joined';
  /** Oldest first, in the order the gateway delivered them. */
  messages: readonly ChatMessage[];
  members: readonly Member[];
  unread: number;
  /** Last message id seen in this room; `since` for the next re-join. */
  lastId: string | null;
  /** The room's end-to-end key as links carry it; null for a plain room. */
  key: string | null;
  /** Our messages not yet delivered, oldest first. */
  outbox: readonly OutgoingMessage[];
}

export interface ChatState {
  status: ConnectionStatus;
  /** Local time of the next connection attempt while `reconnecting`. */
  retryAt: number | null;
  /** Failed attempts since the connection was last stable. */
  attempt: number;
  /** Why the client stopped trying, while `offline` for a reason. */
  fatal: ChatError | null;
  self: Member | null;
  gateway: string | null;
  limits: Limits;
  ttlMs: number | null;
  /** What the gateway offers beyond v1 (from `welcome`). */
  features: Features;
  /** In the order they were joined. */
  rooms: readonly RoomState[];
  activeRoom: string | null;
  /** Estimated `server clock − local clock`, ms. */
  offset: number;
  /** Server clock: when the session's token expires (auth on, v1.1); null when not told. */
  tokenExpiresAt: number | null;
}

export interface ChatEvents {
  /** A message delivered live (not from `history`), once it is readable or known not to be. */
  message: { message: ChatMessage };
  /** The gateway said `welcome`: a session is up. */
  welcome: { self: Member; gateway: string };
  /** An error the outbox does not show (join failures, stray errors, a message dropped unsent). */
  error: ChatError;
}

type Listener<T> = (payload: T) => void;

export interface ChatClientOptions {
  /** WebSocket URL, e.g. `wss://host/v1/ws`. */
  url: string;
  name: string;
  /** Sent in `hello` when set (gateways with auth on); `setToken` replaces it. */
  token?: string;
  socketFactory?: SocketFactory;
  clock?: Clock;
  random?: () => number;
  backoff?: Partial<BackoffPolicy>;
  /** Gap between a pong and the next ping. */
  pingIntervalMs?: number;
  /** A ping unanswered for this long means the socket is dead. */
  pongTimeoutMs?: number;
  /** From opening the socket to `welcome`. */
  connectTimeoutMs?: number;
  /** From `send` to `ack` or `error`. */
  ackTimeoutMs?: number;
  /** Delays between retries of a send refused as `unavailable` or `rate_limited`. */
  retryBackoff?: Partial<BackoffPolicy>;
  /** Online this long and the backoff starts over. */
  stableAfterMs?: number;
  /** At most this many messages are kept per room (oldest go first). */
  maxMessagesPerRoom?: number;
  /** User ids this browser had before (their messages are shown as own). */
  selfIds?: Iterable<string>;
}

/** One `send` frame on the wire, waiting for its `ack` or `error`. */
interface Attempt {
  cid: string;
  room: string;
  /** The text as sent (ciphertext in a private room). */
  text: string;
  sentAt: number;
  timer: TimerHandle;
}

/** Bookkeeping of an outbox entry still to be delivered. */
interface SendJob {
  /** Refused as `unavailable` / `rate_limited` this many times. */
  tries: number;
  retryTimer: TimerHandle | null;
  /** The ref of the attempt being prepared or on the wire. */
  ref: string | null;
}

const DEFAULT_RETRY_BACKOFF: Readonly<BackoffPolicy> = { baseMs: 500, capMs: 8_000 };

/**
 * A 4001 this close to the token's expiry (server clock) is taken for the
 * expiry: the gateway allows 5 s of leeway, and the skew estimate is rough.
 */
const EXPIRY_MARGIN_MS = 10_000;

interface RoomMeta {
  /** Message id → expires_at, for dedupe; kept a while past expiry. */
  seen: Map<string, number>;
  /** Has this room been joined on some connection before? */
  everJoined: boolean;
}

/** How long an expired id stays in the dedupe set (covers late history). */
const SEEN_GRACE_MS = 60_000;

/** What `text` weighs on the wire: in a private room, its ciphertext. */
export function wireLength(text: string, encrypted: boolean): number {
  const bytes = utf8Length(text);
  return encrypted ? sealedLength(bytes) : bytes;
}

/** The room without the outbox entries whose message has arrived. */
function delivered(r: RoomState): RoomState {
  if (!r.outbox.some((o) => o.status === 'sent')) return r;
  const here = new Set(r.messages.map((m) => m.id));
  const outbox = r.outbox.filter((o) => o.id === null || !here.has(o.id));
  return outbox.length === r.outbox.length ? r : { ...r, outbox };
}

function dedupeMembers(list: readonly Member[]): Member[] {
  const byId = new Map<string, Member>();
  for (const m of list) byId.set(m.id, m);
  return [...byId.values()];
}

export class ChatClient {
  private readonly opts: Required<
    Omit<ChatClientOptions, 'token' | 'selfIds' | 'backoff' | 'retryBackoff' | 'socketFactory' | 'clock' | 'random'>
  >;
  private token: string | undefined;
  /**
   * The token this connection last showed the gateway: in `hello`, or in an
   * `auth` it accepted or refused. A 4001 judges it; a newer one is untried.
   */
  private presented: string | undefined;
  /** An `auth` on the wire, waiting for `authed` or `unauthorized`. */
  private pendingAuth: { ref: string; token: string } | null = null;
  private readonly factory: SocketFactory;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly backoff: BackoffPolicy;
  private readonly retryBackoff: BackoffPolicy;

  private state: ChatState;
  private readonly subscribers = new Set<() => void>();
  private readonly listeners: { [K in keyof ChatEvents]: Set<Listener<ChatEvents[K]>> } = {
    message: new Set(),
    welcome: new Set(),
    error: new Set(),
  };

  private socket: SocketLike | null = null;
  /** Bumped for every socket; events from older sockets are ignored. */
  private generation = 0;
  private seq = 0;
  private userStopped = true;
  private onlineSince: number | null = null;

  private retryTimer: TimerHandle | null = null;
  private connectTimer: TimerHandle | null = null;
  private pingTimer: TimerHandle | null = null;
  private pongTimer: TimerHandle | null = null;
  private pingRef: string | null = null;
  private pingSentAt = 0;

  /** By ref. */
  private readonly attempts = new Map<string, Attempt>();
  /** By cid. */
  private readonly jobs = new Map<string, SendJob>();
  /** Room → its key, imported (null: the import failed). */
  private readonly keys = new Map<string, Promise<CryptoKey | null>>();
  /** Encryptions and decryptions run one after another, so they finish in order. */
  private cryptoQueue: Promise<unknown> = Promise.resolve();
  /** Ids we sent (acked), with local send time, until the message comes back. */
  private readonly ownSentAt = new Map<string, number>();
  private readonly ownIds = new Set<string>();
  private readonly selfIds: Set<string>;
  /** Rooms whose `join` awaits `joined`, in order sent (errors carry no room). */
  private pendingJoins: string[] = [];
  /** Rooms left locally whose `left` has not arrived yet. */
  private readonly leaving = new Map<string, number>();
  private readonly meta = new Map<string, RoomMeta>();
  private readonly skew = new SkewEstimator();

  constructor(options: ChatClientOptions) {
    this.opts = {
      url: options.url,
      name: options.name,
      pingIntervalMs: options.pingIntervalMs ?? 15_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      ackTimeoutMs: options.ackTimeoutMs ?? 15_000,
      stableAfterMs: options.stableAfterMs ?? 10_000,
      maxMessagesPerRoom: options.maxMessagesPerRoom ?? 500,
    };
    this.token = options.token;
    this.factory = options.socketFactory ?? browserSocketFactory;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.retryBackoff = { ...DEFAULT_RETRY_BACKOFF, ...options.retryBackoff };
    this.selfIds = new Set(options.selfIds);
    this.state = {
      status: 'offline',
      retryAt: null,
      attempt: 0,
      fatal: null,
      self: null,
      gateway: null,
      limits: DEFAULT_LIMITS,
      ttlMs: null,
      features: V1_FEATURES,
      rooms: [],
      activeRoom: null,
      offset: 0,
      tokenExpiresAt: null,
    };
  }

  // ------------------------------------------------------------ observing

  getState = (): ChatState => this.state;

  subscribe = (fn: () => void): (() => void) => {
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
    };
  };

  on<K extends keyof ChatEvents>(event: K, fn: Listener<ChatEvents[K]>): () => void {
    const set = this.listeners[event] as Set<Listener<ChatEvents[K]>>;
    set.add(fn);
    return () => {
      set.delete(fn);
    };
  }

  /** The server's clock now, by the current skew estimate. */
  serverNow(): number {
    return this.clock.now() + this.state.offset;
  }

  // ------------------------------------------------------------ connection

  /** Starts (or restarts after `disconnect` or a fatal close) the session. */
  connect(): void {
    this.userStopped = false;
    if (this.state.status === 'connecting' || this.state.status === 'online') return;
    this.clearTimer('retryTimer');
    this.open();
  }

  /** While waiting to reconnect (or stopped), try again right away. */
  reconnectNow(): void {
    if (this.state.status === 'reconnecting' || this.state.status === 'offline') {
      this.userStopped = false;
      this.clearTimer('retryTimer');
      this.open();
    }
  }

  /**
   * A new sign-in token from the page: sent as `auth` on the open session,
   * and in every later `hello`. After a sign-in failure it connects again.
   */
  setToken(token: string): void {
    if (token === this.token) return;
    this.token = token;
    if (this.state.status === 'online') this.sendAuth();
    else if (this.state.status === 'offline' && this.state.fatal !== null && isSignInError(this.state.fatal.code)) {
      this.connect();
    }
  }

  /** Closes the session for good (until `connect`). Rooms are remembered. */
  disconnect(): void {
    this.userStopped = true;
    this.clearTimer('retryTimer');
    const sock = this.socket;
    this.teardown(new ChatError('offline', describeError('offline')));
    sock?.close(1000, 'bye');
    this.update({ status: 'offline', retryAt: null, fatal: null });
  }

  /** Disconnects and drops every listener. */
  dispose(): void {
    this.disconnect();
    this.subscribers.clear();
    for (const set of Object.values(this.listeners)) set.clear();
  }

  private open(): void {
    const gen = ++this.generation;
    this.update({ status: 'connecting', retryAt: null, fatal: null });
    this.connectTimer = this.clock.setTimeout(() => {
      this.connectTimer = null;
      this.drop(gen, 'no welcome in time');
    }, this.opts.connectTimeoutMs);
    try {
      this.socket = this.factory(this.opts.url, {
        onOpen: () => {
          if (gen === this.generation) this.onOpen();
        },
        onMessage: (data) => {
          if (gen === this.generation) this.onMessage(data);
        },
        onClose: (code) => {
          if (gen === this.generation) this.onClose(code);
        },
      });
    } catch (e) {
      console.error('WhisperRooms: cannot open socket', e);
      this.socket = null;
      this.onClose(1006);
    }
  }

  /** Gives up on the current socket as if it had closed abnormally. */
  private drop(gen: number, why: string): void {
    if (gen !== this.generation || this.socket === null) return;
    console.warn(`WhisperRooms: dropping connection (${why})`);
    const sock = this.socket;
    this.onClose(1006);
    sock.close(1000, why);
  }

  private onOpen(): void {
    const hello: ClientFrame =
      this.token === undefined ? { type: 'hello', name: this.opts.name } : { type: 'hello', name: this.opts.name, token: this.token };
    this.presented = this.token;
    this.write(hello);
  }

  private sendAuth(): void {
    if (this.token === undefined) return;
    const ref = `a-${++this.seq}`;
    this.pendingAuth = { ref, token: this.token };
    this.write({ type: 'auth', token: this.token, ref });
  }

  private onAuthed(frame: AuthedFrame): void {
    if (this.pendingAuth === null || frame.ref !== this.pendingAuth.ref) return;
    this.presented = this.pendingAuth.token;
    this.pendingAuth = null;
    this.update({ tokenExpiresAt: frame.expires_at });
  }

  /** Why a 4001 stops the client: no token, the token's expiry, or a refusal. */
  private signInError(): ChatError {
    const expiresAt = this.state.tokenExpiresAt;
    const code =
      this.token === undefined
        ? 'sign_in_required'
        : expiresAt !== null && this.serverNow() >= expiresAt - EXPIRY_MARGIN_MS
          ? 'sign_in_expired'
          : 'closed_unauthorized';
    return new ChatError(code, describeError(code));
  }

  private onClose(code: number): void {
    this.generation++;
    const wasStable = this.onlineSince !== null && this.clock.now() - this.onlineSince >= this.opts.stableAfterMs;
    this.teardown(new ChatError('connection_lost', describeError('connection_lost')));
    const attempt = wasStable ? 0 : this.state.attempt;

    if (this.userStopped) {
      this.update({ status: 'offline', retryAt: null });
      return;
    }
    let fatal: ChatError | null = null;
    if (code === CloseCode.Unauthorized) {
      // A token newer than the one refused or expired is tried on a new connection.
      if (this.token === undefined || this.token === this.presented) fatal = this.signInError();
    } else if (code === CloseCode.ProtocolViolation || code === CloseCode.TooLarge) {
      fatal = new ChatError('protocol', describeError('protocol'));
    }
    if (fatal !== null) {
      this.update({ status: 'offline', retryAt: null, fatal, attempt });
      return;
    }
    const delay = code === CloseCode.Policy ? policyDelay(this.random, this.backoff) : backoffDelay(attempt, this.random, this.backoff);
    this.update({ status: 'reconnecting', retryAt: this.clock.now() + delay, attempt: attempt + 1 });
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      this.open();
    }, delay);
  }

  /** Closes the socket and stays offline, showing `fatal`, until `connect`. */
  private stop(fatal: ChatError): void {
    const sock = this.socket;
    this.teardown(new ChatError('connection_lost', describeError('connection_lost')));
    sock?.close(1000, fatal.code);
    this.update({ status: 'offline', retryAt: null, fatal });
  }

  /** Forgets everything tied to the current socket. */
  private teardown(sendError: ChatError): void {
    this.generation++;
    this.socket = null;
    this.onlineSince = null;
    this.clearTimer('connectTimer');
    this.clearTimer('pingTimer');
    this.clearTimer('pongTimer');
    this.pingRef = null;
    this.pendingAuth = null;
    this.pendingJoins = [];
    this.leaving.clear();
    this.ownSentAt.clear();
    // A send never written waits for the next connection. One on the wire
    // did or did not arrive: retried (same cid) where sends are idempotent,
    // else left for the user to judge.
    for (const job of this.jobs.values()) job.ref = null;
    const unknown = [...this.attempts.values()];
    for (const a of unknown) this.clock.clearTimeout(a.timer);
    this.attempts.clear();
    if (!this.state.features.idempotentSend) {
      for (const a of unknown) this.fail(a.room, a.cid, new ChatError(sendError.code, sendError.message, a.room));
    }
    if (this.state.rooms.some((r) => r.status !== 'joining')) {
      this.update({ rooms: this.state.rooms.map((r) => ({ ...r, status: 'joining' })) });
    }
  }

  private clearTimer(key: 'retryTimer' | 'connectTimer' | 'pingTimer' | 'pongTimer'): void {
    const handle = this[key];
    if (handle !== null) {
      this.clock.clearTimeout(handle);
      this[key] = null;
    }
  }

  private write(frame: ClientFrame): void {
    this.socket?.send(encodeClientFrame(frame));
  }

  // ------------------------------------------------------------ heartbeat

  private sendPing(): void {
    this.pingTimer = null;
    const ref = `p-${++this.seq}`;
    this.pingRef = ref;
    this.pingSentAt = this.clock.now();
    this.write({ type: 'ping', ref });
    const gen = this.generation;
    this.pongTimer = this.clock.setTimeout(() => {
      this.pongTimer = null;
      this.drop(gen, 'no pong in time');
    }, this.opts.pongTimeoutMs);
  }

  private onPong(ref: string | undefined): void {
    if (ref === undefined || ref !== this.pingRef) return;
    this.skew.observeRtt(this.clock.now() - this.pingSentAt);
    this.pingRef = null;
    this.clearTimer('pongTimer');
    this.pingTimer = this.clock.setTimeout(() => {
      this.sendPing();
    }, this.opts.pingIntervalMs);
  }

  // ------------------------------------------------------------ frames in

  private onMessage(data: unknown): void {
    const parsed = parseServerFrame(data);
    if (!parsed.ok) {
      console.warn(`WhisperRooms: ignoring a frame from the gateway: ${parsed.error}`);
      return;
    }
    this.dispatch(parsed.frame);
  }

  private dispatch(frame: ServerFrame): void {
    switch (frame.type) {
      case 'welcome':
        this.onWelcome(frame);
        break;
      case 'joined':
        this.onJoined(frame);
        break;
      case 'left':
        this.onLeft(frame.room);
        break;
      case 'message':
        this.onLiveMessage(frame);
        break;
      case 'ack':
        this.onAck(frame);
        break;
      case 'presence':
        this.onPresence(frame);
        break;
      case 'error':
        this.onError(frame);
        break;
      case 'pong':
        this.onPong(frame.ref);
        break;
      case 'authed':
        this.onAuthed(frame);
        break;
    }
  }

  private onWelcome(frame: WelcomeFrame): void {
    if (this.state.status !== 'connecting') return;
    this.clearTimer('connectTimer');
    if (this.state.gateway !== null && this.state.gateway !== frame.gateway) this.skew.reset();
    this.selfIds.add(frame.user.id);
    this.onlineSince = this.clock.now();
    this.update({
      status: 'online',
      retryAt: null,
      fatal: null,
      self: frame.user,
      gateway: frame.gateway,
      limits: frame.limits,
      ttlMs: frame.ttl_ms,
      features: featuresOf(frame),
      offset: this.skew.offset,
      tokenExpiresAt: frame.token_expires_at ?? null,
    });
    // A token that came while connecting replaces the one `hello` carried.
    if (this.token !== this.presented) this.sendAuth();
    this.sendPing();
    for (const room of this.state.rooms) this.sendJoin(room.id, room.lastId);
    this.emit('welcome', { self: frame.user, gateway: frame.gateway });
  }

  private onJoined(frame: JoinedFrame): void {
    const i = this.pendingJoins.indexOf(frame.room);
    if (i >= 0) this.pendingJoins.splice(i, 1);
    const room = this.room(frame.room);
    if (room === undefined) return;
    const meta = this.metaFor(frame.room);
    const rejoin = meta.everJoined;
    meta.everJoined = true;
    const wire = frame.history.filter((m) => this.remember(meta, m));
    const fresh = wire.map((m) => this.toChat(m));
    const unseenByUser =
      rejoin && this.state.activeRoom !== frame.room ? fresh.filter((m) => !m.own).length : 0;
    const last = fresh.at(-1);
    this.updateRoom(frame.room, (r) =>
      delivered({
        ...r,
        status: 'joined',
        messages: this.cap([...r.messages, ...fresh]),
        members: dedupeMembers(frame.members),
        unread: r.unread + unseenByUser,
        lastId: last?.id ?? r.lastId,
      }),
    );
    wire.forEach((m, i) => {
      if (fresh[i]?.body.kind === 'decrypting') this.decrypt(m, false);
    });
    for (const entry of room.outbox) this.attempt(entry.room, entry.cid);
  }

  private onLeft(roomId: string): void {
    const waiting = this.leaving.get(roomId) ?? 0;
    if (waiting > 0) {
      if (waiting === 1) this.leaving.delete(roomId);
      else this.leaving.set(roomId, waiting - 1);
      return;
    }
    // A `left` nobody asked for: the gateway took us out.
    this.removeRoom(roomId);
  }

  private onLiveMessage(frame: MessageFrame): void {
    const now = this.clock.now();
    const sentAt = this.ownSentAt.get(frame.id) ?? this.attemptFor(frame)?.sentAt;
    if (sentAt !== undefined) {
      this.ownSentAt.delete(frame.id);
      this.ownIds.add(frame.id);
      this.skew.observeOwnMessage(sentAt, frame.ts, now);
    } else {
      this.skew.observeMessage(frame.ts, now);
    }
    if (this.skew.offset !== this.state.offset) this.update({ offset: this.skew.offset });

    const room = this.room(frame.room);
    if (room === undefined) return;
    const meta = this.metaFor(frame.room);
    if (!this.remember(meta, frame)) return;
    const message = this.toChat(frame);
    const bump = !message.own && this.state.activeRoom !== frame.room ? 1 : 0;
    this.updateRoom(frame.room, (r) =>
      delivered({
        ...r,
        messages: this.cap([...r.messages, message]),
        unread: r.unread + bump,
        lastId: frame.id,
      }),
    );
    if (message.body.kind === 'decrypting') this.decrypt(frame, true);
    else this.emit('message', { message });
  }

  /** The attempt of ours, still waiting for its ack, that this message answers. */
  private attemptFor(frame: MessageFrame): Attempt | undefined {
    if (this.state.self?.id !== frame.user.id) return undefined;
    for (const a of this.attempts.values()) {
      if (a.room === frame.room && a.text === frame.text) return a;
    }
    return undefined;
  }

  private onAck(frame: AckFrame): void {
    const attempt = frame.ref === undefined ? undefined : this.attempts.get(frame.ref);
    if (attempt === undefined || frame.ref === undefined) return;
    this.attempts.delete(frame.ref);
    this.clock.clearTimeout(attempt.timer);
    this.dropJob(attempt.cid);
    this.ownIds.add(frame.id);
    const seen = this.meta.get(frame.room)?.seen.has(frame.id) ?? false;
    if (!seen) this.ownSentAt.set(frame.id, attempt.sentAt);
    this.updateRoom(attempt.room, (r) =>
      delivered({
        ...r,
        // The message may have overtaken its ack: make sure it is shown as ours.
        messages: seen ? r.messages.map((m) => (m.id === frame.id && !m.own ? { ...m, own: true } : m)) : r.messages,
        outbox: r.outbox.map((o) => (o.cid === attempt.cid ? { ...o, status: 'sent', error: null, id: frame.id } : o)),
      }),
    );
  }

  private onPresence(frame: PresenceFrame): void {
    if (this.room(frame.room) === undefined) return;
    // `left` first, then `joined`: a member named in both (left on one
    // connection, back on another) ends up present.
    const gone = new Set(frame.left.map((m) => m.id));
    this.updateRoom(frame.room, (r) => ({
      ...r,
      members: dedupeMembers([...r.members.filter((m) => !gone.has(m.id)), ...frame.joined]),
    }));
  }

  private onError(frame: ErrorFrame): void {
    const attempt = frame.ref === undefined ? undefined : this.attempts.get(frame.ref);
    if (attempt !== undefined && frame.ref !== undefined) {
      this.attempts.delete(frame.ref);
      this.clock.clearTimeout(attempt.timer);
      const job = this.jobs.get(attempt.cid);
      if (job !== undefined) job.ref = null;
      if (frame.code === 'unavailable' || frame.code === 'rate_limited') {
        // Not sent, and it may work in a moment.
        this.retryLater(attempt.room, attempt.cid);
      } else {
        const err = new ChatError(frame.code, describeError(frame.code, frame.message, this.state.limits), attempt.room);
        this.fail(attempt.room, attempt.cid, err);
      }
      return;
    }
    const error = (room?: string) => new ChatError(frame.code, describeError(frame.code, frame.message, this.state.limits), room);

    if (this.pendingAuth !== null && frame.ref === this.pendingAuth.ref) {
      if (frame.code === 'unauthorized') {
        // Refused: the gateway closes with 4001 right after.
        this.presented = this.pendingAuth.token;
      } else {
        // A gateway without token refresh: the token waits for the next connection.
        console.warn(`WhisperRooms: the gateway did not take the new token (${frame.code}); the next connection uses it`);
      }
      this.pendingAuth = null;
      return;
    }
    if (frame.code === 'unauthorized') {
      // The gateway closes with 4001 right after; the close shows the reason.
      return;
    }
    if (frame.code === 'invalid_name' && this.state.status === 'connecting') {
      // `hello` was refused and the socket stays open: retrying cannot help.
      this.stop(error());
      return;
    }
    if ((frame.code === 'invalid_room' || frame.code === 'too_many_rooms') && this.pendingJoins.length > 0) {
      // Join errors carry no ref: the gateway answers joins in order, so
      // this one belongs to the oldest join still waiting.
      const room = this.pendingJoins.shift();
      if (room !== undefined) {
        this.removeRoom(room);
        this.emit('error', error(room));
        return;
      }
    }
    this.emit('error', error());
  }

  // ------------------------------------------------------------ rooms

  /**
   * Joins `room` (now, or as soon as the session is up); with `key` (as
   * links carry it) the room is private: end-to-end encrypted. A key for a
   * room already open replaces its key and reads its history again. Throws
   * on a bad id, a malformed key, or a key this page cannot use.
   */
  join(roomId: string, key: string | null = null): void {
    const refuse = (code: string) => new ChatError(code, describeError(code, '', this.state.limits), roomId);
    if (!isValidRoomId(roomId)) throw refuse('invalid_room');
    if (key !== null && !isRoomKey(key)) throw refuse('bad_key');
    if (key !== null && !encryptionAvailable()) throw refuse('no_crypto');
    const existing = this.room(roomId);
    if (existing !== undefined) {
      if (key === null || key === existing.key) return;
      this.setKey(roomId, key);
      this.meta.delete(roomId);
      this.updateRoom(roomId, (r) => ({ ...r, key, status: 'joining', messages: [], unread: 0, lastId: null }));
      if (this.state.status === 'online') this.sendJoin(roomId, null);
      return;
    }
    if (this.state.rooms.length >= this.state.limits.max_rooms) throw refuse('too_many_rooms');
    const room: RoomState = {
      id: roomId,
      status: 'joining',
      messages: [],
      members: [],
      unread: 0,
      lastId: null,
      key,
      outbox: [],
    };
    if (key !== null) this.setKey(roomId, key);
    this.update({ rooms: [...this.state.rooms, room] });
    if (this.state.status === 'online') this.sendJoin(roomId, null);
  }

  /** Leaves `room`; its messages are dropped from this page. */
  leave(roomId: string): void {
    if (this.room(roomId) === undefined) return;
    if (this.state.status === 'online') {
      this.leaving.set(roomId, (this.leaving.get(roomId) ?? 0) + 1);
      this.write({ type: 'leave', room: roomId });
    }
    this.removeRoom(roomId);
  }

  /** The room the user is looking at: its unread count stays at zero. */
  setActiveRoom(roomId: string | null): void {
    if (this.state.activeRoom === roomId) return;
    this.update({ activeRoom: roomId });
    if (roomId !== null) this.markRead(roomId);
  }

  markRead(roomId: string): void {
    const room = this.room(roomId);
    if (room !== undefined && room.unread !== 0) this.updateRoom(roomId, (r) => ({ ...r, unread: 0 }));
  }

  private sendJoin(roomId: string, since: string | null): void {
    this.pendingJoins.push(roomId);
    this.write(since === null ? { type: 'join', room: roomId } : { type: 'join', room: roomId, since });
  }

  private setKey(roomId: string, key: string): void {
    this.keys.set(
      roomId,
      importRoomKey(key).catch((e: unknown) => {
        console.error('WhisperRooms: cannot import a room key', e);
        return null;
      }),
    );
  }

  private removeRoom(roomId: string): void {
    this.meta.delete(roomId);
    this.keys.delete(roomId);
    for (const entry of this.room(roomId)?.outbox ?? []) this.dropJob(entry.cid);
    const rooms = this.state.rooms.filter((r) => r.id !== roomId);
    if (rooms.length === this.state.rooms.length) return;
    const activeRoom = this.state.activeRoom === roomId ? null : this.state.activeRoom;
    this.update({ rooms, activeRoom });
  }

  // ------------------------------------------------------------ sending

  /**
   * Puts `text` in `room`'s outbox and sends it as soon as it can; returns
   * its cid. `ttlMs` is the lifetime asked for (sent to v1.1 gateways only).
   * Throws a ChatError, and nothing is queued, when the message cannot go:
   * stopped offline, not in the room, empty, too large (encrypted size in a
   * private room), plain text where the gateway requires encryption, or a
   * lifetime the gateway does not offer.
   */
  send(roomId: string, text: string, ttlMs: number | null = null): string {
    const { limits, features } = this.state;
    const refuse = (code: string) => new ChatError(code, describeError(code, '', limits), roomId);
    const room = this.room(roomId);
    if (this.state.status === 'offline') throw refuse('offline');
    if (room === undefined) throw refuse('not_joined');
    if (isBlank(text)) throw refuse('empty');
    if (wireLength(text, room.key !== null) > limits.max_text_bytes) throw refuse('too_large');
    if (room.key === null && features.encryptionRequired) throw refuse('encryption_required');
    const range = features.lifetimes;
    if (ttlMs !== null && range !== null && (ttlMs < range.min || ttlMs > range.max)) throw refuse('invalid_ttl');

    const now = this.clock.now();
    const entry: OutgoingMessage = {
      cid: newCid(),
      room: roomId,
      text,
      ttlMs,
      createdAt: now,
      deadline: now + (ttlMs ?? this.state.ttlMs ?? DEFAULT_TTL_MS),
      status: 'sending',
      error: null,
      id: null,
    };
    this.jobs.set(entry.cid, { tries: 0, retryTimer: null, ref: null });
    this.updateRoom(roomId, (r) => ({ ...r, outbox: [...r.outbox, entry] }));
    this.attempt(roomId, entry.cid);
    return entry.cid;
  }

  /** Sends a `failed` message again, with its cid, until its deadline. */
  retry(roomId: string, cid: string): void {
    const entry = this.outgoing(roomId, cid);
    if (entry?.status !== 'failed') return;
    this.jobs.set(cid, { tries: 0, retryTimer: null, ref: null });
    this.setOutgoing(roomId, cid, { status: 'sending', error: null });
    this.attempt(roomId, cid);
  }

  /** Forgets a message of the outbox (one already on the wire may still arrive). */
  discard(roomId: string, cid: string): void {
    this.dropJob(cid);
    this.updateRoom(roomId, (r) => ({ ...r, outbox: r.outbox.filter((o) => o.cid !== cid) }));
  }

  /**
   * Writes one attempt of an outbox entry, unless it is not due: not
   * `sending`, already on the wire, waiting for a retry, or its room not
   * joined on this connection (the `joined` sends it).
   */
  private attempt(roomId: string, cid: string): void {
    const entry = this.outgoing(roomId, cid);
    const job = this.jobs.get(cid);
    const self = this.state.self;
    if (entry?.status !== 'sending' || job?.ref !== null || job.retryTimer !== null) return;
    if (this.state.status !== 'online' || this.room(roomId)?.status !== 'joined' || self === null) return;
    const ref = `c-${++this.seq}`;
    job.ref = ref;
    const range = this.state.features.lifetimes;
    const frame: SendFrame & { ref: string; cid: string } = {
      type: 'send',
      room: roomId,
      text: entry.text,
      ref,
      cid,
      ...(entry.ttlMs === null || range === null
        ? {}
        : { ttl_ms: Math.min(range.max, Math.max(range.min, entry.ttlMs)) }),
    };
    const key = this.keys.get(roomId);
    if (key === undefined) {
      this.transmit(frame);
      return;
    }
    // Encrypted for the user id of this connection: a retry on another
    // connection (another id when auth is off) is encrypted again.
    const gen = this.generation;
    void this.inOrder(async () => {
      const k = await key;
      return k === null ? null : encryptText(k, roomId, self.id, entry.text);
    }).then((sealed) => {
      if (gen !== this.generation || job.ref !== ref || this.jobs.get(cid) !== job) return;
      if (sealed === null) {
        job.ref = null;
        this.fail(roomId, cid, new ChatError('no_crypto', describeError('no_crypto'), roomId));
        return;
      }
      this.transmit({ ...frame, text: sealed, enc: ENC_SCHEME });
    });
  }

  private transmit(frame: SendFrame & { ref: string; cid: string }): void {
    const { ref, cid } = frame;
    const timer = this.clock.setTimeout(() => {
      this.onAckTimeout(ref);
    }, this.opts.ackTimeoutMs);
    this.attempts.set(ref, { cid, room: frame.room, text: frame.text, sentAt: this.clock.now(), timer });
    this.write(frame);
  }

  private onAckTimeout(ref: string): void {
    const attempt = this.attempts.get(ref);
    if (attempt === undefined) return;
    this.attempts.delete(ref);
    const job = this.jobs.get(attempt.cid);
    if (job !== undefined) job.ref = null;
    if (this.state.features.idempotentSend) this.retryLater(attempt.room, attempt.cid);
    else this.fail(attempt.room, attempt.cid, new ChatError('timeout', describeError('timeout'), attempt.room));
  }

  private retryLater(roomId: string, cid: string): void {
    const job = this.jobs.get(cid);
    if (job === undefined) return;
    job.tries++;
    const delay = backoffDelay(job.tries, this.random, this.retryBackoff);
    job.retryTimer = this.clock.setTimeout(() => {
      job.retryTimer = null;
      this.attempt(roomId, cid);
    }, delay);
  }

  private fail(roomId: string, cid: string, error: ChatError): void {
    this.dropJob(cid);
    this.setOutgoing(roomId, cid, { status: 'failed', error });
  }

  private dropJob(cid: string): void {
    const job = this.jobs.get(cid);
    if (job !== undefined && job.retryTimer !== null) this.clock.clearTimeout(job.retryTimer);
    this.jobs.delete(cid);
  }

  private outgoing(roomId: string, cid: string): OutgoingMessage | undefined {
    return this.room(roomId)?.outbox.find((o) => o.cid === cid);
  }

  private setOutgoing(roomId: string, cid: string, patch: Partial<OutgoingMessage>): void {
    if (this.outgoing(roomId, cid) === undefined) return;
    this.updateRoom(roomId, (r) => ({ ...r, outbox: r.outbox.map((o) => (o.cid === cid ? { ...o, ...patch } : o)) }));
  }

  // ------------------------------------------------------------ decryption

  /** Runs `task` after every encryption and decryption queued before it. */
  private inOrder<T>(task: () => Promise<T>): Promise<T> {
    const run = this.cryptoQueue.then(task);
    this.cryptoQueue = run.catch(() => undefined);
    return run;
  }

  /** Decrypts a message shown as `decrypting`; a live one is announced once readable. */
  private decrypt(frame: MessageFrame, live: boolean): void {
    const key = this.keys.get(frame.room);
    if (key === undefined) return;
    void this.inOrder(async () => {
      const k = await key;
      return k === null ? null : decryptText(k, frame.room, frame.user.id, frame.text);
    }).then((text) => {
      const shown = this.room(frame.room)?.messages.find((m) => m.id === frame.id);
      // Left, expired, or read again with another key meanwhile: nothing to do.
      if (this.keys.get(frame.room) !== key || shown?.body.kind !== 'decrypting') return;
      const message: ChatMessage = {
        ...shown,
        body: text === null ? { kind: 'unreadable' } : { kind: 'text', text, encrypted: true },
      };
      this.updateRoom(frame.room, (r) => ({ ...r, messages: r.messages.map((m) => (m.id === frame.id ? message : m)) }));
      if (live) this.emit('message', { message });
    });
  }

  // ------------------------------------------------------------ expiry

  /**
   * Drops expired messages, and outbox entries past their deadline, from
   * memory. A message dropped while still `sending` is reported as an
   * `error` (`not_sent_in_time`). Returns true when anything was dropped.
   */
  pruneExpired(localNow: number = this.clock.now()): boolean {
    const offset = this.state.offset;
    const serverNow = localNow + offset;
    let changed = false;
    const unsent: string[] = [];
    const rooms: RoomState[] = [];
    for (const r of this.state.rooms) {
      const seen = this.meta.get(r.id)?.seen;
      if (seen !== undefined) {
        for (const [id, expiresAt] of seen) {
          if (expiresAt + SEEN_GRACE_MS < serverNow) seen.delete(id);
        }
      }
      const kept = r.messages.filter((m) => !isExpired(m.expires_at, localNow, offset));
      const outbox = r.outbox.filter((o) => o.deadline > localNow);
      for (const o of r.outbox) {
        if (o.deadline > localNow) continue;
        this.dropJob(o.cid);
        if (o.status === 'sending') unsent.push(r.id);
      }
      if (kept.length === r.messages.length && outbox.length === r.outbox.length) {
        rooms.push(r);
      } else {
        changed = true;
        rooms.push({ ...r, messages: kept, outbox });
      }
    }
    if (changed) this.update({ rooms });
    for (const room of unsent) {
      this.emit('error', new ChatError('not_sent_in_time', describeError('not_sent_in_time'), room));
    }
    return changed;
  }

  /** Local milliseconds from `localNow` until the next message expires or outbox entry leaves; Infinity for none. */
  nextExpiryIn(localNow: number = this.clock.now()): number {
    let next = Infinity;
    for (const r of this.state.rooms) {
      for (const m of r.messages) next = Math.min(next, m.expires_at - this.state.offset - localNow);
      for (const o of r.outbox) next = Math.min(next, o.deadline - localNow);
    }
    return Math.max(0, next);
  }

  // ------------------------------------------------------------ helpers

  private room(roomId: string): RoomState | undefined {
    return this.state.rooms.find((r) => r.id === roomId);
  }

  private metaFor(roomId: string): RoomMeta {
    let meta = this.meta.get(roomId);
    if (meta === undefined) {
      meta = { seen: new Map(), everJoined: false };
      this.meta.set(roomId, meta);
    }
    return meta;
  }

  /** Records a message id; false when it was already seen (a duplicate). */
  private remember(meta: RoomMeta, m: MessageFrame): boolean {
    if (meta.seen.has(m.id)) return false;
    meta.seen.set(m.id, m.expires_at);
    return true;
  }

  /** A message as shown; an encrypted one in a private room starts as `decrypting` (see `decrypt`). */
  private toChat(m: MessageFrame): ChatMessage {
    let body: MessageBody;
    if (m.enc === undefined) body = { kind: 'text', text: m.text, encrypted: false };
    else if (!this.keys.has(m.room)) body = { kind: 'locked' };
    else if (m.enc !== ENC_SCHEME) body = { kind: 'unreadable' };
    else body = { kind: 'decrypting' };
    return {
      room: m.room,
      id: m.id,
      user: m.user,
      ts: m.ts,
      expires_at: m.expires_at,
      own: this.ownIds.has(m.id) || this.selfIds.has(m.user.id),
      body,
    };
  }

  private cap(messages: ChatMessage[]): ChatMessage[] {
    const max = this.opts.maxMessagesPerRoom;
    return messages.length > max ? messages.slice(messages.length - max) : messages;
  }

  private updateRoom(roomId: string, fn: (r: RoomState) => RoomState): void {
    this.update({ rooms: this.state.rooms.map((r) => (r.id === roomId ? fn(r) : r)) });
  }

  private update(patch: Partial<ChatState>): void {
    this.state = { ...this.state, ...patch };
    for (const fn of this.subscribers) fn();
  }

  private emit<K extends keyof ChatEvents>(event: K, payload: ChatEvents[K]): void {
    for (const fn of this.listeners[event] as Set<Listener<ChatEvents[K]>>) fn(payload);
  }
}
