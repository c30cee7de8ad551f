/**
 * The current room lives in the URL so a link opens straight into it:
 * `#/room/lobby` (written by the app) or `?room=lobby` (accepted on load).
 */
const HASH_PREFIX = '#/room/';

/**
 * The room named by a URL, as typed (not yet validated), or null when the
 * URL names none. Hashes that are not routes (`#main`) name none.
 */
export function roomFromUrl(hash: string, search: string): string | null {
  if (hash.startsWith(HASH_PREFIX)) {
    const raw = hash.slice(HASH_PREFIX.length);
    try {
      return decodeURIComponent(raw);
    } catch {
      return raw;
    }
  }
  const fromQuery = new URLSearchParams(search).get('room');
  return fromQuery === null || fromQuery === '' ? null : fromQuery;
}

/** True when `hash` is one of ours (a room route, or the empty route). */
export function isRouteHash(hash: string): boolean {
  return hash === '' || hash === '#' || hash === '#/' || hash.startsWith(HASH_PREFIX);
}

export function hashForRoom(room: string | null): string {
  return room === null ? '#/' : `${HASH_PREFIX}${encodeURIComponent(room)}`;
}

/** A link others can open to join `room`. */
export function shareLink(origin: string, pathname: string, room: string): string {
  return `${origin}${pathname}${hashForRoom(room)}`;
}
