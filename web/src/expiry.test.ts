import { describe, expect, it } from 'vitest';
import {
  SkewEstimator,
  combineOffset,
  describeTimeLeft,
  durationWords,
  formatTimeLeft,
  isExpired,
  lifeLeft,
  lifetimeChoices,
  lifetimeLabel,
  lowerBoundFromMessage,
  messageTimeLeft,
  offsetFromOwnMessage,
  serverNow,
  timeLeft,
  toLocalTime,
  urgency,
} from './expiry.ts';

describe('offset samples', () => {
  it('own message: server stamped it half a round trip after it left', () => {
    // Sent at local 1000, RTT 100 → reached the server at local 1050,
    // which the server called 6050: the server is 5000 ahead.
    expect(offsetFromOwnMessage(1000, 6050, 100)).toBe(5000);
    expect(offsetFromOwnMessage(1000, 1050, 100)).toBe(0);
    expect(offsetFromOwnMessage(10_000, 7_050, 100)).toBe(-3000);
  });

  it('any message: it was stamped before it arrived', () => {
    expect(lowerBoundFromMessage(6000, 1100)).toBe(4900);
  });
});

describe('combineOffset', () => {
  it('is 0 with nothing known', () => {
    expect(combineOffset([], -Infinity)).toBe(0);
  });

  it('uses a positive lower bound when there are no own samples', () => {
    expect(combineOffset([], 2500)).toBe(2500);
    expect(combineOffset([], -2500)).toBe(0);
  });

  it('prefers the sample taken with the smallest RTT', () => {
    const samples = [
      { offset: 900, rtt: 400, upper: 1100 },
      { offset: 1000, rtt: 20, upper: 1010 },
      { offset: 1200, rtt: 300, upper: 1350 },
    ];
    expect(combineOffset(samples, -Infinity)).toBe(1000);
  });

  it('keeps the estimate within the proven bounds', () => {
    // A sample says 1000 but another message proves at least 1200.
    expect(combineOffset([{ offset: 1000, rtt: 20, upper: 1010 }], 1200)).toBe(1200);
    // The best-RTT sample says 1000 but another own message proves at most 950.
    expect(
      combineOffset(
        [
          { offset: 1000, rtt: 20, upper: 1010 },
          { offset: 700, rtt: 500, upper: 950 },
        ],
        -Infinity,
      ),
    ).toBe(950);
  });
});

describe('SkewEstimator', () => {
  it('starts at zero and learns from an own message using the ping RTT', () => {
    const s = new SkewEstimator();
    expect(s.offset).toBe(0);
    expect(s.rtt).toBeNull();
    s.observeRtt(80);
    s.observeRtt(120);
    expect(s.rtt).toBe(80);
    // Local clock 30 s behind the server.
    s.observeOwnMessage(1_000, 31_040, 1_200);
    expect(s.offset).toBe(30_000);
  });

  it('falls back to the send → delivery time when no ping came back yet', () => {
    const s = new SkewEstimator();
    s.observeOwnMessage(1_000, 51_100, 1_200);
    // rtt := 200 → offset = 51100 − 1100
    expect(s.offset).toBe(50_000);
  });

  it('learns that the server is ahead from other people’s messages', () => {
    const s = new SkewEstimator();
    s.observeMessage(70_000, 10_000);
    expect(s.offset).toBe(60_000);
    // An older message proves less and changes nothing.
    s.observeMessage(65_000, 11_000);
    expect(s.offset).toBe(60_000);
  });

  it('handles a local clock that runs ahead of the server', () => {
    const s = new SkewEstimator();
    s.observeRtt(50);
    s.observeOwnMessage(100_000, 40_025, 100_060);
    expect(s.offset).toBe(-60_000);
  });

  it('ignores nonsense RTTs and forgets everything on reset', () => {
    const s = new SkewEstimator();
    s.observeRtt(-5);
    s.observeRtt(Number.NaN);
    expect(s.rtt).toBeNull();
    s.observeMessage(9_000, 1_000);
    expect(s.offset).toBe(8_000);
    s.reset();
    expect(s.offset).toBe(0);
    expect(s.rtt).toBeNull();
  });
});

describe('time left', () => {
  const ts = 1_000_000;
  const expiresAt = ts + 300_000;

  it('converts between clocks', () => {
    expect(serverNow(1_000, 500)).toBe(1_500);
    expect(toLocalTime(1_500, 500)).toBe(1_000);
  });

  it('counts down on the server clock', () => {
    // Local clock 10 s behind: at local ts − 10 s the server is at ts.
    expect(timeLeft(expiresAt, ts - 10_000, 10_000)).toBe(300_000);
    expect(timeLeft(expiresAt, ts, 0)).toBe(300_000);
    expect(timeLeft(expiresAt, ts + 299_000, 0)).toBe(1_000);
    expect(timeLeft(expiresAt, ts + 400_000, 0)).toBe(0);
  });

  it('never shows more than the whole life of a message', () => {
    expect(messageTimeLeft(ts, expiresAt, ts - 40, 0)).toBe(300_000);
    expect(messageTimeLeft(ts, expiresAt, ts + 1_000, 0)).toBe(299_000);
    expect(messageTimeLeft(ts, expiresAt, ts + 400_000, 0)).toBe(0);
  });

  it('is expired exactly at expires_at', () => {
    expect(isExpired(expiresAt, expiresAt - 1, 0)).toBe(false);
    expect(isExpired(expiresAt, expiresAt, 0)).toBe(true);
    expect(isExpired(expiresAt, expiresAt - 5_000, 5_000)).toBe(true);
  });

  it('gives the share of life left, clamped to [0, 1]', () => {
    expect(lifeLeft(ts, expiresAt, ts, 0)).toBe(1);
    expect(lifeLeft(ts, expiresAt, ts + 150_000, 0)).toBe(0.5);
    expect(lifeLeft(ts, expiresAt, ts + 999_999, 0)).toBe(0);
    // A local clock far behind would claim more than the whole life.
    expect(lifeLeft(ts, expiresAt, ts - 60_000, 0)).toBe(1);
    expect(lifeLeft(ts, ts, ts, 0)).toBe(0);
  });

  it('formats for people', () => {
    expect(formatTimeLeft(300_000)).toBe('5:00');
    expect(formatTimeLeft(245_001)).toBe('4:06');
    expect(formatTimeLeft(60_000)).toBe('1:00');
    expect(formatTimeLeft(59_001)).toBe('1:00');
    expect(formatTimeLeft(59_000)).toBe('59s');
    expect(formatTimeLeft(1)).toBe('1s');
    expect(formatTimeLeft(0)).toBe('0s');
    expect(formatTimeLeft(-5)).toBe('0s');
    expect(describeTimeLeft(245_000)).toBe('4 minutes 5 seconds left');
    expect(describeTimeLeft(60_000)).toBe('1 minute left');
    expect(describeTimeLeft(1_000)).toBe('1 second left');
    expect(describeTimeLeft(0)).toBe('expiring now');
    expect(durationWords(300_000)).toBe('5 minutes');
    expect(durationWords(15_000)).toBe('15 seconds');
    expect(durationWords(90_000)).toBe('1 minute 30 seconds');
    expect(durationWords(0)).toBe('0 seconds');
  });

  it('grows urgent towards the end of a message’s life', () => {
    expect(urgency(240_000, 0.8)).toBe('ok');
    expect(urgency(60_000, 0.2)).toBe('warn');
    expect(urgency(15_000, 0.05)).toBe('danger');
    // A 15 s message starts calm and ends red.
    expect(urgency(14_000, 14 / 15)).toBe('ok');
    expect(urgency(3_000, 0.2)).toBe('danger');
  });
});

describe('lifetimes a sender may choose', () => {
  it('offers the usual steps from the minimum up to the TTL, the TTL included', () => {
    expect(lifetimeChoices(1_000, 300_000)).toEqual([30_000, 60_000, 120_000, 300_000]);
    expect(lifetimeChoices(60_000, 300_000)).toEqual([60_000, 120_000, 300_000]);
    expect(lifetimeChoices(45_000, 300_000)).toEqual([60_000, 120_000, 300_000]);
    expect(lifetimeChoices(1_000, 86_400_000)).toEqual([
      30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000,
      86_400_000,
    ]);
  });

  it('never goes below the minimum or above the TTL', () => {
    for (const [min, max] of [
      [1_000, 8_000],
      [1_000, 45_000],
      [40_000, 100_000],
      [1_000, 1_000],
      [300_000, 300_000],
    ] as const) {
      const choices = lifetimeChoices(min, max);
      expect(choices.at(-1)).toBe(max);
      for (const c of choices) {
        expect(c).toBeGreaterThanOrEqual(min);
        expect(c).toBeLessThanOrEqual(max);
      }
      expect([...choices].sort((a, b) => a - b)).toEqual(choices);
      expect(new Set(choices).size).toBe(choices.length);
    }
  });

  it('offers the minimum when no step fits below a short TTL, and one choice when min = TTL', () => {
    expect(lifetimeChoices(1_000, 8_000)).toEqual([1_000, 8_000]);
    expect(lifetimeChoices(5_000, 5_000)).toEqual([5_000]);
  });

  it('labels them briefly', () => {
    expect([30_000, 60_000, 90_000, 300_000, 3_600_000, 5_400_000, 86_400_000, 8_000].map(lifetimeLabel)).toEqual([
      '30 s',
      '1 min',
      '90 s',
      '5 min',
      '1 h',
      '1 h 30 min',
      '24 h',
      '8 s',
    ]);
  });
});
