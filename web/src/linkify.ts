/**
 * Splits message text into plain text and http(s) links, so the UI can
 * render links as anchors without ever interpreting text as HTML.
 */
export type Segment = { kind: 'text'; text: string } | { kind: 'link'; text: string; href: string };

// A URL runs to the next white space, or to an invisible formatting
// character (bidi controls, zero-width characters), which would let a link's
// text look like another address; trailing punctuation that usually ends a
// sentence (or closes a bracket opened before the URL) is left out.
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+/gi;
const TRAILING = `.,;:!?'")]}>`;

/** The URL if `candidate` is a well-formed http(s) URL, else null. */
export function safeHref(candidate: string): string | null {
  try {
    const url = new URL(candidate);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    if (url.hostname === '') return null;
    return url.href;
  } catch {
    return null;
  }
}

function trimTrailing(url: string): string {
  let out = url;
  while (out.length > 0) {
    const c = out.charAt(out.length - 1);
    if (!TRAILING.includes(c)) break;
    // Keep a closing bracket that balances one inside the URL
    // (e.g. https://en.wikipedia.org/wiki/Rust_(programming_language)).
    if (c === ')' && count(out, '(') >= count(out, ')')) break;
    out = out.slice(0, -1);
  }
  return out;
}

function count(s: string, c: string): number {
  return s.split(c).length - 1;
}

export function linkify(text: string): Segment[] {
  const out: Segment[] = [];
  let last = 0;
  const push = (s: string) => {
    if (s === '') return;
    const prev = out.at(-1);
    if (prev?.kind === 'text') prev.text += s;
    else out.push({ kind: 'text', text: s });
  };
  for (const match of text.matchAll(URL_PATTERN)) {
    const start = match.index;
    const raw = trimTrailing(match[0]);
    const href = safeHref(raw);
    push(text.slice(last, start));
    if (href === null) push(raw);
    else out.push({ kind: 'link', text: raw, href });
    last = start + raw.length;
  }
  push(text.slice(last));
  return out;
}
