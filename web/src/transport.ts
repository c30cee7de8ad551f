/**
 * What ChatClient needs from the outside world, behind small interfaces so
 * tests can swap in fakes: a socket, a clock with timers, and the
 * reconnect backoff arithmetic.
 */

export interface SocketHandlers {
  onOpen(): void;
  onMessage(data: unknown): void;
  onClose(code: number, reason: string): void;
}

export interface SocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** Opens a socket to `url` and reports its events to `handlers`. */
export type SocketFactory = (url: string, handlers: SocketHandlers) => SocketLike;

export const browserSocketFactory: SocketFactory = (url, handlers) => {
  const ws = new WebSocket(url);
  ws.onopen = () => {
    handlers.onOpen();
  };
  ws.onmessage = (ev: MessageEvent) => {
    handlers.onMessage(ev.data);
  };
  ws.onclose = (ev: CloseEvent) => {
    handlers.onClose(ev.code, ev.reason);
  };
  return {
    send: (data) => {
      ws.send(data);
    },
    close: (code, reason) => {
      ws.close(code, reason);
    },
  };
};

/** Whatever the clock's setTimeout returns (a number in browsers). */
export type TimerHandle = number | object;

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => {
    clearTimeout(handle as number);
  },
};

// ---------------------------------------------------------------- backoff

export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffPolicy> = { baseMs: 500, capMs: 15_000 };

/**
 * "Full jitter": a uniformly random delay in [0, min(cap, base·2^attempt)).
 * `attempt` counts the failures since the connection was last stable.
 */
export function backoffDelay(attempt: number, random: () => number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}

/** After 4008 ("back off"): somewhere in the upper half of the cap. */
export function policyDelay(random: () => number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  return Math.floor(policy.capMs / 2 + (random() * policy.capMs) / 2);
}

