/**
 * The sign-in token an embedding app hands this page (docs/auth.md).
 *
 * It rides in the URL fragment, which browsers never send to a server:
 * `#token=<jwt>` on its own, or as a parameter of a room route,
 * `#/room/<id>?token=<jwt>`. It is taken out of the address bar as soon as
 * it is read (so it is neither bookmarked nor shown), kept in memory only,
 * and never logged. A token in the query string (`?token=`) has already
 * reached the server and its logs: it is removed and ignored.
 *
 * When the app sets a new fragment (an iframe's `src` changed only after
 * `#`), the browser fires `hashchange` without reloading; the new token
 * replaces the old one and subscribers hear of it.
 */

import { fromBase64url } from './crypto.ts';

const PARAM = 'token';

/** A URL's fragment and query with any token taken out. */
export interface Stripped {
  /** The fragment's token; null when it has none (or an empty one). */
  token: string | null;
  /** The query held a `token` parameter (now removed). */
  inQuery: boolean;
  /** The fragment without the token: '' when the token was all it held. */
  hash: string;
  /** The query without the token: '' when nothing else is left. */
  search: string;
}

/** `params` without `token`, as `?a=b` / `a=b` after `lead`, or '' when empty. */
function rest(params: URLSearchParams, lead: string): string {
  params.delete(PARAM);
  const left = params.toString();
  return left === '' ? '' : `${lead}${left}`;
}

/** Splits a token out of `hash` (`#token=…`, `#/room/x?token=…`) and `search` (`?token=…`). */
export function stripToken(hash: string, search: string): Stripped {
  const query = new URLSearchParams(search);
  const inQuery = query.has(PARAM);
  const cleanSearch = inQuery ? rest(query, '?') : search;

  // A route (`#/…`) keeps its parameters after `?`; any other fragment is all parameters.
  const fragment = hash.replace(/^#/, '');
  const split = fragment.startsWith('/') ? fragment.indexOf('?') : 0;
  const path = split < 0 ? fragment : fragment.slice(0, split);
  const params = new URLSearchParams(split < 0 ? '' : fragment.slice(split));
  const token = params.get(PARAM);
  if (token === null) return { token: null, inQuery, hash, search: cleanSearch };
  const left = `${path}${rest(params, path === '' ? '' : '?')}`;
  return { token: token === '' ? null : token, inQuery, hash: left === '' ? '' : `#${left}`, search: cleanSearch };
}

/**
 * The `name` claim of a JWT, read without checking the signature: only to
 * skip asking for a name the gateway will take from the token anyway. Null
 * when the token has none or is not a readable JWT.
 */
export function nameClaim(token: string): string | null {
  const bytes = fromBase64url(token.split('.')[1] ?? '');
  if (bytes === null) return null;
  try {
    const claims: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    if (typeof claims !== 'object' || claims === null) return null;
    const name = (claims as Record<string, unknown>).name;
    return typeof name === 'string' && name.trim() !== '' ? name : null;
  } catch {
    return null;
  }
}

/** What the page was given to sign in with. */
export interface PageAuth {
  /** The latest token, or null. */
  token: string | null;
  /** The address carried a token in its query, which was ignored. */
  ignoredQueryToken: boolean;
}

/** What PageToken needs of `window`. */
export interface PageWindow {
  location: Pick<Location, 'pathname' | 'search' | 'hash'>;
  history: Pick<History, 'replaceState'>;
}

/** The page's token, as the address last carried it. */
export class PageToken {
  private token: string | null = null;
  private queryIgnored = false;
  private readonly subscribers = new Set<() => void>();

  constructor(private readonly win: PageWindow) {}

  /**
   * Takes a token out of the address, keeping everything else. When the
   * fragment held nothing but a token, `keepHash` (the fragment before it
   * arrived, e.g. the open room's route) is put back.
   */
  take(keepHash = ''): void {
    const { pathname, search, hash } = this.win.location;
    const found = stripToken(hash, search);
    if (found.hash === hash && found.search === search) return;
    this.win.history.replaceState(null, '', `${pathname}${found.search}${found.hash === '' ? keepHash : found.hash}`);
    if (found.inQuery) this.queryIgnored = true;
    if (found.token !== null && found.token !== this.token) {
      this.token = found.token;
      for (const fn of this.subscribers) fn();
    }
  }

  /** The latest token, or null when the page was given none. */
  current = (): string | null => this.token;

  /** The address had a token in its query, which was ignored. */
  get ignoredQueryToken(): boolean {
    return this.queryIgnored;
  }

  subscribe = (fn: () => void): (() => void) => {
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
    };
  };
}

/**
 * The host of the page that embeds or linked to this one, from
 * `document.referrer`, to name it in messages; null when unknown or when
 * it is this page's own origin.
 */
export function embedderHost(referrer: string, origin: string): string | null {
  try {
    const url = new URL(referrer);
    return url.origin === origin || !/^https?:$/.test(url.protocol) ? null : url.host;
  } catch {
    return null;
  }
}
