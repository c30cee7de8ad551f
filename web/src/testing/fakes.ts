/**
 * Test doubles for ChatClient: a manual clock with timers, and an in-memory
 * socket the test plays the gateway on. Imported by tests only.
 */
import type { Clock, SocketFactory, SocketHandlers, SocketLike } from '../transport.ts';
import type { ClientFrame, Member, MessageFrame } from '../protocol.ts';

interface Timer {
  at: number;
  fn: () => void;
}

export class FakeClock implements Clock {
  private t: number;
  private nextId = 1;
  private readonly timers = new Map<number, Timer>();

  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  now = (): number => this.t;

  setTimeout = (fn: () => void, ms: number): number => {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  };

  clearTimeout = (handle: number | object): void => {
    this.timers.delete(handle as number);
  };

  /** Moves time forward, running every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let dueId: number | undefined;
      let due: Timer | undefined;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (due === undefined || timer.at < due.at)) {
          dueId = id;
          due = timer;
        }
      }
      if (due === undefined || dueId === undefined) break;
      this.timers.delete(dueId);
      this.t = due.at;
      due.fn();
    }
    this.t = end;
  }

  /** Delays (from now) of the timers still pending, ascending. */
  pendingDelays(): number[] {
    return [...this.timers.values()].map((x) => x.at - this.t).sort((a, b) => a - b);
  }
}

export class FakeSocket implements SocketLike {
  readonly sent: ClientFrame[] = [];
  closedWith: { code: number | undefined; reason: string | undefined } | null = null;

  constructor(
    readonly url: string,
    private readonly handlers: SocketHandlers,
  ) {}

  send(data: string): void {
    this.sent.push(JSON.parse(data) as ClientFrame);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
  }

  // ---- the gateway's side

  open(): void {
    this.handlers.onOpen();
  }

  receive(frame: object): void {
    this.handlers.onMessage(JSON.stringify(frame));
  }

  receiveRaw(data: unknown): void {
    this.handlers.onMessage(data);
  }

  serverClose(code: number, reason = ''): void {
    this.handlers.onClose(code, reason);
  }

  framesOf<T extends ClientFrame['type']>(type: T): Extract<ClientFrame, { type: T }>[] {
    return this.sent.filter((f): f is Extract<ClientFrame, { type: T }> => f.type === type);
  }

  lastOf<T extends ClientFrame['type']>(type: T): Extract<ClientFrame, { type: T }> | undefined {
    return this.framesOf(type).at(-1);
  }
}

export class FakeNetwork {
  readonly sockets: FakeSocket[] = [];

  factory: SocketFactory = (url, handlers) => {
    const socket = new FakeSocket(url, handlers);
    this.sockets.push(socket);
    return socket;
  };

  get last(): FakeSocket {
    const s = this.sockets.at(-1);
    if (s === undefined) throw new Error('no socket opened yet');
    return s;
  }
}

export function welcomeFrame(
  user: Member,
  gateway = 'gw-a',
  limits: Partial<Record<string, number>> = {},
  extra: Record<string, unknown> = {},
) {
  return {
    type: 'welcome',
    session: `s-${user.id}`,
    user,
    gateway,
    ttl_ms: 300_000,
    limits: { max_text_bytes: 2000, messages_per_second: 5, burst: 10, max_rooms: 32, ...limits },
    ...extra,
  };
}

/** What a v1.1 gateway adds to `welcome`, as `welcomeFrame`'s last two arguments. */
export const V11_LIMITS = { frames_per_second: 20, frame_burst: 40, min_ttl_ms: 1_000 };
export const V11_EXTRA = { idle_timeout_ms: 60_000, encryption_required: false };

export function messageFrame(room: string, id: string, user: Member, text: string, ts: number): MessageFrame {
  return { type: 'message', room, id, user, text, ts, expires_at: ts + 300_000 };
}
