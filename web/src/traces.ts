/**
 * What the page shows of messages outside the message list: screen reader
 * announcements (the live region) and desktop notifications. Each holds a
 * message's text, so each goes when its message expires, like the message.
 *
 * Framework-free: the caller supplies the server clock's time; React reads
 * the announcements through `subscribe` / `announcements`.
 */

export interface Announcement {
  id: number;
  text: string;
  /** Server clock: the announced message's `expires_at`. */
  expiresAt: number;
}

/** What is needed of a shown notification. */
export interface Closable {
  close(): void;
}

/** A screen reader reads additions once; a few recent ones are plenty. */
const MAX_ANNOUNCEMENTS = 5;

export class MessageTraces {
  private list: readonly Announcement[] = [];
  private readonly notes = new Map<string, { note: Closable; expiresAt: number }>();
  private readonly subscribers = new Set<() => void>();
  private nextId = 1;

  /** The current announcements, oldest first (a new array whenever they change). */
  announcements = (): readonly Announcement[] => this.list;

  subscribe = (fn: () => void): (() => void) => {
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
    };
  };

  announce(text: string, expiresAt: number): void {
    this.set([...this.list, { id: this.nextId++, text, expiresAt }].slice(-MAX_ANNOUNCEMENTS));
  }

  /** Tracks a shown notification; one with the same tag replaced it, so that one is forgotten. */
  notified(tag: string, note: Closable, expiresAt: number): void {
    this.notes.set(tag, { note, expiresAt });
  }

  /** Removes what belongs to messages expired at `serverNow`, closing their notifications. */
  sweep(serverNow: number): void {
    for (const [tag, n] of this.notes) {
      if (n.expiresAt > serverNow) continue;
      n.note.close();
      this.notes.delete(tag);
    }
    if (this.list.some((a) => a.expiresAt <= serverNow)) this.set(this.list.filter((a) => a.expiresAt > serverNow));
  }

  /** Server time of the next expiry among them; Infinity when none. */
  nextExpiry(): number {
    let next = Infinity;
    for (const a of this.list) next = Math.min(next, a.expiresAt);
    for (const n of this.notes.values()) next = Math.min(next, n.expiresAt);
    return next;
  }

  /** Removes everything now (the page is going away). */
  clear(): void {
    for (const n of this.notes.values()) n.note.close();
    this.notes.clear();
    if (this.list.length > 0) this.set([]);
  }

  private set(list: readonly Announcement[]): void {
    this.list = list;
    for (const fn of this.subscribers) fn();
  }
}
