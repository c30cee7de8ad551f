import { describe, expect, it } from 'vitest';
import { linkify, safeHref } from './linkify.ts';
import { hashForRoom, isRouteHash, roomFromUrl, shareLink } from './route.ts';

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

describe('route', () => {
  it('reads the room from the hash or the query', () => {
    expect(roomFromUrl('#/room/lobby', '')).toBe('lobby');
    expect(roomFromUrl('', '?room=lobby')).toBe('lobby');
    expect(roomFromUrl('#/room/a%20b', '')).toBe('a b');
    expect(roomFromUrl('#/room/%E0%A4%A', '')).toBe('%E0%A4%A');
    expect(roomFromUrl('#message-input', '')).toBeNull();
    expect(roomFromUrl('', '?room=')).toBeNull();
    expect(roomFromUrl('', '')).toBeNull();
  });

  it('writes hashes and share links', () => {
    expect(hashForRoom('lobby')).toBe('#/room/lobby');
    expect(hashForRoom(null)).toBe('#/');
    expect(isRouteHash('#/room/x')).toBe(true);
    expect(isRouteHash('')).toBe(true);
    expect(isRouteHash('#main')).toBe(false);
    expect(shareLink('https://chat.example', '/', 'lobby')).toBe('https://chat.example/#/room/lobby');
  });
});
