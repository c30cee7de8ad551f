/**
 * Clock skew and time-left arithmetic. Pure: every function takes the local
 * time as an argument and nothing here reads a clock or touches the DOM.
 *
 * Offsets are `server clock − local clock` in milliseconds, so
 * `serverNow = localNow + offset` and `localTime = serverTime − offset`.
 *
 * The gateway stamps `ts` on a message; `welcome` and `pong` carry no server
 * time. So the estimate comes from the client's own messages: a `send` leaves
 * at local `sentAt`, reaches the gateway about half a round trip later (RTT
 * measured with `ping`/`pong`) and is stamped there, which gives
 * `offset ≈ ts − (sentAt + rtt/2)`. Two bounds keep the estimate honest:
 *
 * - any message received at local `receivedAt` was stamped before that:
 *   `ts ≤ receivedAt + offset`, so `offset ≥ ts − receivedAt`;
 * - one of our own messages was stamped after it was sent:
 *   `ts ≥ sentAt + offset`, so `offset ≤ ts − sentAt`.
 */

/** How many recent samples of each kind are kept. */
const WINDOW = 8;

export interface SkewSample {
  /** Estimated `server − local`, ms. */
  offset: number;
  /** Round trip time in force when the sample was taken, ms. */
  rtt: number;
  /** Upper bound this sample proves (`ts − sentAt`). */
  upper: number;
}

/** `ts − (sentAt + rtt/2)`: the offset implied by one of our own messages. */
export function offsetFromOwnMessage(sentAt: number, serverTs: number, rtt: number): number {
  return serverTs - (sentAt + rtt / 2);
}

/** `ts − receivedAt`: the lower bound on the offset implied by any message. */
export function lowerBoundFromMessage(serverTs: number, receivedAt: number): number {
  return serverTs - receivedAt;
}

/**
 * Combines samples into one offset. The sample taken with the smallest RTT
 * wins (its uncertainty, ±rtt/2, is the smallest, as in NTP's clock filter);
 * it is then kept within the bounds the other observations prove. With no
 * own samples the offset is 0 unless a received message proves the server
 * is ahead.
 */
export function combineOffset(samples: readonly SkewSample[], lowerBound: number): number {
  let best: SkewSample | undefined;
  let upper = Infinity;
  for (const s of samples) {
    if (best === undefined || s.rtt < best.rtt) best = s;
    upper = Math.min(upper, s.upper);
  }
  let offset = best?.offset ?? 0;
  // When the bounds contradict each other (clocks of several gateways) the
  // lower bound, which every received message supports, is preferred.
  if (offset > upper) offset = upper;
  if (offset < lowerBound) offset = lowerBound;
  return Math.round(offset);
}

/**
 * Accumulates observations into a clock offset estimate. Holds only numbers;
 * the caller supplies every timestamp.
 */
export class SkewEstimator {
  private samples: SkewSample[] = [];
  private rtts: number[] = [];
  private lower = -Infinity;
  private cached = 0;

  /** Current estimate of `server clock − local clock`, ms. */
  get offset(): number {
    return this.cached;
  }

  /** Best known round trip time (minimum of recent pings), or null. */
  get rtt(): number | null {
    return this.rtts.length === 0 ? null : Math.min(...this.rtts);
  }

  /** A `pong` arrived `rtt` ms after its `ping` left. */
  observeRtt(rtt: number): void {
    if (!Number.isFinite(rtt) || rtt < 0) return;
    this.rtts = [...this.rtts, rtt].slice(-WINDOW);
  }

  /**
   * Our own message, sent at local `sentAt`, came back stamped `serverTs`.
   * Without a measured RTT, the send → delivery time (an upper bound on the
   * RTT) stands in.
   */
  observeOwnMessage(sentAt: number, serverTs: number, receivedAt: number): void {
    const rtt = this.rtt ?? Math.max(0, receivedAt - sentAt);
    const sample: SkewSample = {
      offset: offsetFromOwnMessage(sentAt, serverTs, rtt),
      rtt,
      upper: serverTs - sentAt,
    };
    this.samples = [...this.samples, sample].slice(-WINDOW);
    this.observeMessage(serverTs, receivedAt);
  }

  /** Any live message stamped `serverTs` arrived at local `receivedAt`. */
  observeMessage(serverTs: number, receivedAt: number): void {
    this.lower = Math.max(this.lower, lowerBoundFromMessage(serverTs, receivedAt));
    this.cached = combineOffset(this.samples, this.lower);
  }

  /** Forget everything, e.g. after moving to a gateway with another clock. */
  reset(): void {
    this.samples = [];
    this.rtts = [];
    this.lower = -Infinity;
    this.cached = 0;
  }
}

/** The server's clock now, given the local clock and the offset. */
export function serverNow(localNow: number, offset: number): number {
  return localNow + offset;
}

/** A server timestamp expressed on the local clock (for display). */
export function toLocalTime(serverTs: number, offset: number): number {
  return serverTs - offset;
}

/** Milliseconds until `expiresAt` (server clock), never negative. */
export function timeLeft(expiresAt: number, localNow: number, offset: number): number {
  return Math.max(0, expiresAt - serverNow(localNow, offset));
}

/**
 * Time left for a message, never more than its whole life (`expires_at − ts`):
 * an offset estimate a few milliseconds off must not show "5:01" for a
 * five-minute message.
 */
export function messageTimeLeft(ts: number, expiresAt: number, localNow: number, offset: number): number {
  return Math.min(Math.max(0, expiresAt - ts), timeLeft(expiresAt, localNow, offset));
}

export function isExpired(expiresAt: number, localNow: number, offset: number): boolean {
  return serverNow(localNow, offset) >= expiresAt;
}

/** Share of the message's life still ahead, from 1 (just sent) to 0 (expired). */
export function lifeLeft(ts: number, expiresAt: number, localNow: number, offset: number): number {
  const total = expiresAt - ts;
  if (total <= 0) return 0;
  return Math.min(1, Math.max(0, timeLeft(expiresAt, localNow, offset) / total));
}

/** "4:05" for minutes, "42s" under a minute, "0s" once gone. Rounds up. */
export function formatTimeLeft(ms: number): string {
  const secs = Math.max(0, Math.ceil(ms / 1000));
  if (secs < 60) return `${secs}s`;
  const m = Math.floor(secs / 60);
  const s = secs % 60;
  return `${m}:${String(s).padStart(2, '0')}`;
}

/** A duration in words, rounded up to the second: "4 minutes 5 seconds". */
export function durationWords(ms: number): string {
  const secs = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(secs / 60);
  const s = secs % 60;
  const parts: string[] = [];
  if (m > 0) parts.push(`${m} minute${m === 1 ? '' : 's'}`);
  if (s > 0 || m === 0) parts.push(`${s} second${s === 1 ? '' : 's'}`);
  return parts.join(' ');
}

/** Words for screen readers: "4 minutes 5 seconds left". */
export function describeTimeLeft(ms: number): string {
  return ms <= 0 ? 'expiring now' : `${durationWords(ms)} left`;
}

/** How urgent the countdown looks: by share of life left, and never calm in the last seconds. */
export function urgency(left: number, life: number): 'ok' | 'warn' | 'danger' {
  if (life <= 0.05 || left <= 5_000) return 'danger';
  if (life <= 0.2) return 'warn';
  return 'ok';
}

/** Lifetimes offered when the gateway lets a message choose (v1.1), before the bounds are applied. */
const LIFETIME_STEPS = [
  30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000,
];

/**
 * The lifetimes a sender may pick, shortest first: the usual steps between
 * `min` and `max`, and `max` itself (the gateway's TTL, the default). A
 * `min` that is not a step is offered when it is the only way to go shorter.
 */
export function lifetimeChoices(min: number, max: number): number[] {
  const steps = LIFETIME_STEPS.filter((ms) => ms >= min && ms < max);
  const shortest = steps.length === 0 && min < max ? [min] : [];
  return [...shortest, ...steps, max];
}

/** "30 s", "1 min", "90 s", "1 h", "1 h 30 min": short words for a lifetime. */
export function lifetimeLabel(ms: number): string {
  const secs = Math.round(ms / 1000);
  if (secs < 60 || (secs < 600 && secs % 60 !== 0)) return `${secs} s`;
  const mins = Math.round(secs / 60);
  if (mins < 60) return `${mins} min`;
  const h = Math.floor(mins / 60);
  const m = mins % 60;
  return m === 0 ? `${h} h` : `${h} h ${m} min`;
}
