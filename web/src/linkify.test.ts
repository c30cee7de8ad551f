import { describe, expect, it } from 'vitest';
import { linkify, safeHref } from './linkify.ts';
import { hashForRoom, isRouteHash, linkFromText, linkFromUrl, shareLink } from './route.ts';

describe('linkify', () => {
  it('leaves plain text alone', () => {
    expect(linkify('hello <b>world</b>')).toEqual([{ kind: 'text', text: 'hello <b>world</b>' }]);
    expect(linkify('')).toEqual([]);
  });

  it('splits out http and https links', () => {
    expect(linkify('see https://example.com/a?b=1#c and http://x.org')).toEqual([
      { kind: 'text', text: 'see ' },
      { kind: 'link', text: 'https://example.com/a?b=1#c', href: 'https://example.com/a?b=1#c' },
      { kind: 'text', text: ' and ' },
      { kind: 'link', text: 'http://x.org', href: 'http://x.org/' },
    ]);
  });

  it('drops sentence punctuation after a link but keeps balanced brackets', () => {
    expect(linkify('go to https://example.com.')).toEqual([
      { kind: 'text', text: 'go to ' },
      { kind: 'link', text: 'https://example.com', href: 'https://example.com/' },
      { kind: 'text', text: '.' },
    ]);
    expect(linkify('(https://example.com/x)')[1]).toEqual({
      kind: 'link',
      text: 'https://example.com/x',
      href: 'https://example.com/x',
    });
    expect(linkify('https://en.wikipedia.org/wiki/Rust_(language).')[0]).toMatchObject({
      kind: 'link',
      text: 'https://en.wikipedia.org/wiki/Rust_(language)',
    });
  });

  it('never links other schemes', () => {
    for (const text of ['javascript:alert(1)', 'data:text/html,<script>', 'ftp://x.org', 'jAvAsCrIpT://x']) {
      expect(linkify(text).every((s) => s.kind === 'text')).toBe(true);
    }
    expect(safeHref('javascript:alert(1)')).toBeNull();
    expect(safeHref('https://')).toBeNull();
    expect(safeHref('HTTPS://EXAMPLE.com')).toBe('https://example.com/');
  });

  it('keeps text around a link that does not parse', () => {
    expect(linkify('x http://[bad y')).toEqual([{ kind: 'text', text: 'x http://[bad y' }]);
  });
});

describe('hostile text', () => {
  const links = (text: string) => linkify(text).filter((s) => s.kind === 'link');

  it('never links anything but http(s)', () => {
    for (const text of [
      'javascript:alert(1)',
      '<a href="javascript:alert(1)">x</a>',
      'JaVaScRiPt:alert(1)',
      'data:text/html,<script>alert(1)</script>',
      'vbscript:msgbox(1)',
      'file:///etc/passwd',
      '<script>alert(document.cookie)</script>',
    ]) {
      expect(linkify(text)).toEqual([{ kind: 'text', text }]);
    }
    // A javascript: URL hidden after an http one is still text.
    expect(links('http://x.org/?javascript:alert(1)').map((l) => l.href)).toEqual(['http://x.org/?javascript:alert(1)']);
  });

  it('ends a link at a direction override or a zero-width character', () => {
    expect(linkify('https://example.com/\u202Egpj.exe')).toEqual([
      { kind: 'link', text: 'https://example.com/', href: 'https://example.com/' },
      { kind: 'text', text: '\u202Egpj.exe' },
    ]);
    expect(links('https://exa\u200Dmple.com').map((l) => l.text)).toEqual(['https://exa']);
    expect(links('https://a.org\u2066x\u2069').map((l) => l.text)).toEqual(['https://a.org']);
    expect(links('https://a.org\uFEFFb').map((l) => l.text)).toEqual(['https://a.org']);
  });

  it('keeps every character of the text, links or not', () => {
    const texts = [
      '\u202Eevil\u202C plain',
      '👩‍👩‍👧‍👦 family (zero-width joiners)',
      '🙂'.repeat(2000),
      'x'.repeat(2000),
      'see https://example.com/a and http://b.org.',
    ];
    for (const text of texts) {
      expect(
        linkify(text)
          .map((s) => s.text)
          .join(''),
      ).toBe(text);
    }
  });
});

describe('route', () => {
  const KEY = 'q8cE2oQ0m5rV7b-Yx_3NzT1pLk9wAaHsDfGjUiOeR4c';

  it('reads the room from the hash or the query', () => {
    expect(linkFromUrl('#/room/lobby', '')).toEqual({ room: 'lobby', key: null });
    expect(linkFromUrl('', '?room=lobby')).toEqual({ room: 'lobby', key: null });
    expect(linkFromUrl('#/room/a%20b', '')).toEqual({ room: 'a b', key: null });
    expect(linkFromUrl('#/room/%E0%A4%A', '')).toEqual({ room: '%E0%A4%A', key: null });
    expect(linkFromUrl('#message-input', '')).toBeNull();
    expect(linkFromUrl('#/room/', '')).toBeNull();
    expect(linkFromUrl('', '?room=')).toBeNull();
    expect(linkFromUrl('', '')).toBeNull();
  });

  it('reads a private room’s key from the fragment only, never from the query', () => {
    expect(linkFromUrl(`#/room/secret1?k=${KEY}`, '')).toEqual({ room: 'secret1', key: KEY });
    expect(linkFromUrl('#/room/secret1?k=', '')).toEqual({ room: 'secret1', key: null });
    expect(linkFromUrl('', `?room=secret1&k=${KEY}`)).toEqual({ room: 'secret1', key: null });
  });

  it('reads links pasted as text', () => {
    expect(linkFromText(`https://chat.example/#/room/secret1?k=${KEY}`)).toEqual({ room: 'secret1', key: KEY });
    expect(linkFromText(' #/room/lobby ')).toEqual({ room: 'lobby', key: null });
    expect(linkFromText('lobby')).toBeNull();
  });

  it('writes hashes and share links', () => {
    expect(hashForRoom('lobby')).toBe('#/room/lobby');
    expect(hashForRoom(null)).toBe('#/');
    expect(hashForRoom('secret1', KEY)).toBe(`#/room/secret1?k=${KEY}`);
    expect(isRouteHash('#/room/x')).toBe(true);
    expect(isRouteHash('')).toBe(true);
    expect(isRouteHash('#main')).toBe(false);
    expect(shareLink('https://chat.example', '/', 'lobby')).toBe('https://chat.example/#/room/lobby');
    const link = shareLink('https://chat.example', '/', 'secret1', KEY);
    expect(link).toBe(`https://chat.example/#/room/secret1?k=${KEY}`);
    // What a server would see of it: no key.
    const url = new URL(link);
    expect(`${url.origin}${url.pathname}${url.search}`).toBe('https://chat.example/');
    expect(linkFromUrl(url.hash, url.search)).toEqual({ room: 'secret1', key: KEY });
  });
});
