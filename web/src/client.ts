/**
 * ChatClient: one WhisperRooms session over a WebSocket, framework-free.
 *
 * - Connection state machine: offline → connecting → online, and on a drop
 *   reconnecting (exponential backoff, full jitter) → connecting → online.
 *   Close codes 4001 (unauthorized), 4000 and 1009 (protocol errors) stop
 *   retrying; 4008 backs off hard; anything else (1001, 4009, network loss)
 *   reconnects.
 * - The rooms the user is in survive reconnects: after every `welcome` the
 *   client re-joins each one with `since` = the last message id seen there,
 *   and drops messages whose id it already has.
 * - `send` tags each frame with a `ref` and settles when the matching `ack`
 *   or `error` arrives, so the UI can keep or clear the text box.
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
import { ChatError, describeError } from './errors.ts';
import { SkewEstimator, isExpired } from './expiry.ts';
import {
  CloseCode,
  DEFAULT_LIMITS,
  encodeClientFrame,
  isBlank,
  isValidRoomId,
  parseServerFrame,
  utf8Length,
  type AckFrame,
  type ClientFrame,
  type ErrorFrame,
  type JoinedFrame,
  type Limits,
  type Member,
  type MessageFrame,
  type PresenceFrame,
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

export interface ChatMessage extends MessageFrame {
  /** Sent by this user (any of its connections in this browser). */
  own: boolean;
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
  /** In the order they were joined. */
  rooms: readonly RoomState[];
  activeRoom: string | null;
  /** Estimated `server clock − local clock`, ms. */
  offset: number;
}

export interface ChatEvents {
  /** A message delivered live (not from `history`). */
  message: { message: ChatMessage };
  /** The gateway said `welcome`: a session is up. */
  welcome: { self: Member; gateway: string };
  /** An error that no `send` promise received (join failures, stray errors). */
  error: ChatError;
}

type Listener<T> = (payload: T) => void;

export interface ChatClientOptions {
  /** WebSocket URL, e.g. `wss://host/v1/ws`. */
  url: string;
  name: string;
  /** Sent in `hello` when set (gateways with auth on). */
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
  /** Online this long and the backoff starts over. */
  stableAfterMs?: number;
  /** At most this many messages are kept per room (oldest go first). */
  maxMessagesPerRoom?: number;
  /** User ids this browser had before (their messages are shown as own). */
  selfIds?: Iterable<string>;
}

interface PendingSend {
  room: string;
  text: string;
  sentAt: number;
  timer: TimerHandle;
  resolve: (id: string) => void;
  reject: (err: ChatError) => void;
}

interface RoomMeta {
  /** Message id → expires_at, for dedupe; kept a while past expiry. */
  seen: Map<string, number>;
  /** Has this room been joined on some connection before? */
  everJoined: boolean;
}

/** How long an expired id stays in the dedupe set (covers late history). */
const SEEN_GRACE_MS = 60_000;

function dedupeMembers(list: readonly Member[]): Member[] {
  const byId = new Map<string, Member>();
  for (const m of list) byId.set(m.id, m);
  return [...byId.values()];
}

export class ChatClient {
  private readonly opts: Required<
    Omit<ChatClientOptions, 'token' | 'selfIds' | 'backoff' | 'socketFactory' | 'clock' | 'random'>
  >;
  private readonly token: string | undefined;
  private readonly factory: SocketFactory;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly backoff: BackoffPolicy;

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

  private readonly pendingSends = new Map<string, PendingSend>();
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
      rooms: [],
      activeRoom: null,
      offset: 0,
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
    this.write(hello);
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
      fatal = new ChatError('closed_unauthorized', describeError('closed_unauthorized'));
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
    this.pendingJoins = [];
    this.leaving.clear();
    this.ownSentAt.clear();
    for (const p of this.pendingSends.values()) {
      this.clock.clearTimeout(p.timer);
      p.reject(new ChatError(sendError.code, sendError.message, p.room));
    }
    this.pendingSends.clear();
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
      offset: this.skew.offset,
    });
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
    const fresh = frame.history.filter((m) => this.remember(meta, m)).map((m) => this.toChat(m));
    const unseenByUser =
      rejoin && this.state.activeRoom !== frame.room ? fresh.filter((m) => !m.own).length : 0;
    const last = fresh.at(-1);
    this.updateRoom(frame.room, (r) => ({
      ...r,
      status: 'joined',
      messages: this.cap([...r.messages, ...fresh]),
      members: dedupeMembers(frame.members),
      unread: r.unread + unseenByUser,
      lastId: last?.id ?? r.lastId,
    }));
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
    const sentAt = this.ownSentAt.get(frame.id) ?? this.pendingSendFor(frame)?.sentAt;
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
    this.updateRoom(frame.room, (r) => ({
      ...r,
      messages: this.cap([...r.messages, message]),
      unread: r.unread + bump,
      lastId: frame.id,
    }));
    this.emit('message', { message });
  }

  /** A send of ours still waiting for its ack that this message answers. */
  private pendingSendFor(frame: MessageFrame): PendingSend | undefined {
    if (this.state.self?.id !== frame.user.id) return undefined;
    for (const p of this.pendingSends.values()) {
      if (p.room === frame.room && p.text === frame.text) return p;
    }
    return undefined;
  }

  private onAck(frame: AckFrame): void {
    if (frame.ref === undefined) return;
    const pending = this.pendingSends.get(frame.ref);
    if (pending === undefined) return;
    this.pendingSends.delete(frame.ref);
    this.clock.clearTimeout(pending.timer);
    this.ownIds.add(frame.id);
    const seen = this.meta.get(frame.room)?.seen.has(frame.id) ?? false;
    if (seen) {
      // The message overtook its ack; make sure it is shown as ours.
      this.updateRoom(frame.room, (r) => ({
        ...r,
        messages: r.messages.map((m) => (m.id === frame.id && !m.own ? { ...m, own: true } : m)),
      }));
    } else {
      this.ownSentAt.set(frame.id, pending.sentAt);
    }
    pending.resolve(frame.id);
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
    const pending = frame.ref === undefined ? undefined : this.pendingSends.get(frame.ref);
    if (pending !== undefined && frame.ref !== undefined) {
      this.pendingSends.delete(frame.ref);
      this.clock.clearTimeout(pending.timer);
      pending.reject(new ChatError(frame.code, describeError(frame.code, frame.message, this.state.limits), pending.room));
      return;
    }
    const error = (room?: string) => new ChatError(frame.code, describeError(frame.code, frame.message, this.state.limits), room);

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

  /** Joins `room` (now, or as soon as the session is up). Throws on a bad id. */
  join(roomId: string): void {
    if (!isValidRoomId(roomId)) throw new ChatError('invalid_room', describeError('invalid_room'), roomId);
    if (this.room(roomId) !== undefined) return;
    if (this.state.rooms.length >= this.state.limits.max_rooms) {
      throw new ChatError('too_many_rooms', describeError('too_many_rooms', '', this.state.limits), roomId);
    }
    const room: RoomState = { id: roomId, status: 'joining', messages: [], members: [], unread: 0, lastId: null };
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

  private removeRoom(roomId: string): void {
    this.meta.delete(roomId);
    const rooms = this.state.rooms.filter((r) => r.id !== roomId);
    if (rooms.length === this.state.rooms.length) return;
    const activeRoom = this.state.activeRoom === roomId ? null : this.state.activeRoom;
    this.update({ rooms, activeRoom });
  }

  // ------------------------------------------------------------ sending

  /**
   * Sends `text` to `room`. Resolves with the message id on `ack`; rejects
   * with a ChatError (the gateway's code, or offline / connection_lost /
   * timeout) otherwise, and then the message was not sent.
   */
  send(roomId: string, text: string): Promise<string> {
    const limits = this.state.limits;
    const fail = (code: string) => Promise.reject(new ChatError(code, describeError(code, '', limits), roomId));
    if (this.state.status !== 'online' || this.socket === null) return fail('offline');
    if (this.room(roomId) === undefined) return fail('not_joined');
    if (isBlank(text)) return fail('empty');
    if (utf8Length(text) > limits.max_text_bytes) return fail('too_large');

    const ref = `c-${++this.seq}`;
    return new Promise<string>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        if (this.pendingSends.delete(ref)) reject(new ChatError('timeout', describeError('timeout'), roomId));
      }, this.opts.ackTimeoutMs);
      this.pendingSends.set(ref, { room: roomId, text, sentAt: this.clock.now(), timer, resolve, reject });
      this.write({ type: 'send', room: roomId, text, ref });
    });
  }

  // ------------------------------------------------------------ expiry

  /** Drops expired messages from memory. Returns true when any were dropped. */
  pruneExpired(localNow: number = this.clock.now()): boolean {
    const offset = this.state.offset;
    const serverNow = localNow + offset;
    let changed = false;
    const rooms: RoomState[] = [];
    for (const r of this.state.rooms) {
      const seen = this.meta.get(r.id)?.seen;
      if (seen !== undefined) {
        for (const [id, expiresAt] of seen) {
          if (expiresAt + SEEN_GRACE_MS < serverNow) seen.delete(id);
        }
      }
      const kept = r.messages.filter((m) => !isExpired(m.expires_at, localNow, offset));
      if (kept.length === r.messages.length) {
        rooms.push(r);
      } else {
        changed = true;
        rooms.push({ ...r, messages: kept });
      }
    }
    if (changed) this.update({ rooms });
    return changed;
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

  private toChat(m: MessageFrame): ChatMessage {
    return { ...m, own: this.ownIds.has(m.id) || this.selfIds.has(m.user.id) };
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
