import { describe, expect, it, vi } from 'vitest';
import { MessageTraces } from './traces.ts';

const T = 1_700_000_000_000;

function note() {
  return { close: vi.fn() };
}

describe('MessageTraces', () => {
  it('an announcement leaves the live region when its message expires, not before', () => {
    const traces = new MessageTraces();
    const changed = vi.fn();
    traces.subscribe(changed);
    traces.announce('bob: short-lived', T + 5_000);
    traces.announce('bob: long-lived', T + 60_000);
    expect(changed).toHaveBeenCalledTimes(2);

    traces.sweep(T + 4_999);
    expect(traces.announcements().map((a) => a.text)).toEqual(['bob: short-lived', 'bob: long-lived']);
    expect(changed).toHaveBeenCalledTimes(2);

    traces.sweep(T + 5_000);
    expect(traces.announcements().map((a) => a.text)).toEqual(['bob: long-lived']);
    traces.sweep(T + 60_000);
    expect(traces.announcements()).toEqual([]);
    expect(changed).toHaveBeenCalledTimes(4);
  });

  it('a notification is closed when its message expires', () => {
    const traces = new MessageTraces();
    const lobby = note();
    const other = note();
    traces.notified('room-lobby', lobby, T + 5_000);
    traces.notified('room-other', other, T + 9_000);
    expect(traces.nextExpiry()).toBe(T + 5_000);
    traces.sweep(T + 4_999);
    expect(lobby.close).not.toHaveBeenCalled();
    traces.sweep(T + 5_000);
    expect(lobby.close).toHaveBeenCalledOnce();
    expect(other.close).not.toHaveBeenCalled();
    traces.sweep(T + 9_000);
    expect(other.close).toHaveBeenCalledOnce();
    // Closed once only.
    traces.sweep(T + 20_000);
    expect(lobby.close).toHaveBeenCalledOnce();
    expect(traces.nextExpiry()).toBe(Infinity);
  });

  it('a newer notification of the room (same tag) lives as long as its own message', () => {
    const traces = new MessageTraces();
    const first = note();
    const second = note();
    traces.notified('room-lobby', first, T + 5_000);
    traces.notified('room-lobby', second, T + 30_000);
    traces.sweep(T + 5_000);
    expect(second.close).not.toHaveBeenCalled();
    traces.sweep(T + 30_000);
    expect(second.close).toHaveBeenCalledOnce();
  });

  it('keeps the last five announcements', () => {
    const traces = new MessageTraces();
    for (let i = 1; i <= 7; i++) traces.announce(`m${i}`, T + 60_000);
    expect(traces.announcements().map((a) => a.text)).toEqual(['m3', 'm4', 'm5', 'm6', 'm7']);
    expect(new Set(traces.announcements().map((a) => a.id)).size).toBe(5);
  });

  it('clear removes everything at once (the page is going away)', () => {
    const traces = new MessageTraces();
    const n = note();
    traces.announce('bob: hi', T + 60_000);
    traces.notified('room-lobby', n, T + 60_000);
    expect(traces.nextExpiry()).toBe(T + 60_000);
    traces.clear();
    expect(traces.announcements()).toEqual([]);
    expect(n.close).toHaveBeenCalledOnce();
    expect(traces.nextExpiry()).toBe(Infinity);
  });
});
