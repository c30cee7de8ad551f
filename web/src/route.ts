/**
 * The current room lives in the URL so a link opens straight into it:
 * `#/room/lobby` (written by the app) or `?room=lobby` (accepted on load).
 * A private room's link carries its key in the fragment, which browsers
 * never send to a server: `#/room/<room>?k=<key>` (docs/protocol.md).
 */
const HASH_PREFIX = '#/room/';

/** A room named by a URL, as typed (not yet validated), with its key when private. */
export interface RoomLink {
  room: string;
  key: string | null;
}

function decode(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * The room named by a URL, or null when the URL names none. Hashes that are
 * not routes (`#main`) name none. A key is read from the fragment only.
 */
export function linkFromUrl(hash: string, search: string): RoomLink | null {
  if (hash.startsWith(HASH_PREFIX)) {
    const rest = hash.slice(HASH_PREFIX.length);
    const q = rest.indexOf('?');
    const room = decode(q < 0 ? rest : rest.slice(0, q));
    const key = q < 0 ? null : new URLSearchParams(rest.slice(q + 1)).get('k');
    return room === '' ? null : { room, key: key === '' ? null : key };
  }
  const fromQuery = new URLSearchParams(search).get('room');
  return fromQuery === null || fromQuery === '' ? null : { room: fromQuery, key: null };
}

/** A room link pasted as text (a whole URL or just its `#/room/…` part), or null. */
export function linkFromText(text: string): RoomLink | null {
  const at = text.indexOf(HASH_PREFIX);
  return at < 0 ? null : linkFromUrl(text.slice(at).trim(), '');
}

/** True when `hash` is one of ours (a room route, or the empty route). */
export function isRouteHash(hash: string): boolean {
  return hash === '' || hash === '#' || hash === '#/' || hash.startsWith(HASH_PREFIX);
}

export function hashForRoom(room: string | null, key: string | null = null): string {
  if (room === null) return '#/';
  return `${HASH_PREFIX}${encodeURIComponent(room)}${key === null ? '' : `?k=${key}`}`;
}

/** A link others can open to join `room` (and read it, when `key` is given). */
export function shareLink(origin: string, pathname: string, room: string, key: string | null = null): string {
  return `${origin}${pathname}${hashForRoom(room, key)}`;
}
