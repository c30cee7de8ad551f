import { describe, expect, it } from 'vitest';
import { base64url } from './crypto.ts';
import { PageToken, embedderHost, nameClaim, stripToken, type PageWindow } from './token.ts';

/** A JWT-shaped string with these claims (the signature is not looked at). */
function jwt(claims: object): string {
  const part = (o: object) => base64url(new TextEncoder().encode(JSON.stringify(o)));
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}.c2lnbmF0dXJl`;
}

describe('stripToken', () => {
  it.each([
    ['a bare token', '#token=h.p.s', '', { token: 'h.p.s', hash: '' }],
    ['a token beside other parameters', '#token=h.p.s&x=1', '', { token: 'h.p.s', hash: '#x=1' }],
    ['a room route with its token', '#/room/lobby?token=h.p.s', '', { token: 'h.p.s', hash: '#/room/lobby' }],
    [
      'a private room route with key and token',
      '#/room/secret?k=KEY&token=h.p.s',
      '',
      { token: 'h.p.s', hash: '#/room/secret?k=KEY' },
    ],
    ['an empty token', '#token=', '', { token: null, hash: '' }],
  ])('takes %s out of the fragment', (_label, hash, search, want) => {
    expect(stripToken(hash, search)).toEqual({ ...want, inQuery: false, search: '' });
  });

  it.each([
    ['no fragment', ''],
    ['a room route', '#/room/lobby?k=KEY'],
    ['an in-page anchor', '#main'],
    ['the empty route', '#/'],
  ])('leaves %s alone', (_label, hash) => {
    expect(stripToken(hash, '?room=lobby')).toEqual({ token: null, inQuery: false, hash, search: '?room=lobby' });
  });

  it('never takes a token from the query: it is removed and flagged', () => {
    expect(stripToken('', '?token=h.p.s')).toEqual({ token: null, inQuery: true, hash: '', search: '' });
    expect(stripToken('#token=frag', '?room=lobby&token=query')).toEqual({
      token: 'frag',
      inQuery: true,
      hash: '',
      search: '?room=lobby',
    });
  });
});

describe('nameClaim', () => {
  it('reads the name claim, UTF-8 included', () => {
    expect(nameClaim(jwt({ sub: 'u-1', name: 'Zoë 山田', exp: 1 }))).toBe('Zoë 山田');
  });

  it.each([
    ['no name claim', jwt({ sub: 'u-1', exp: 1 })],
    ['a blank name', jwt({ sub: 'u-1', name: '  ' })],
    ['a numeric name', jwt({ sub: 'u-1', name: 7 })],
    ['not a JWT', 'not-a-jwt'],
    ['a payload that is not base64url', 'a.b+c/.d'],
    ['a payload that is not JSON', `a.${base64url(new TextEncoder().encode('nope'))}.c`],
  ])('is null for %s', (_label, token) => {
    expect(nameClaim(token)).toBeNull();
  });
});

describe('embedderHost', () => {
  it('names the other origin that embeds or linked to the page', () => {
    expect(embedderHost('https://app.example.com/inbox', 'https://chat.example.com')).toBe('app.example.com');
  });

  it.each([
    ['no referrer', ''],
    ['this origin', 'https://chat.example.com/#/room/a'],
    ['a non-web scheme', 'file:///tmp/x.html'],
  ])('is null for %s', (_label, referrer) => {
    expect(embedderHost(referrer, 'https://chat.example.com')).toBeNull();
  });
});

/** A window whose address the test sets and whose replaceState it records. */
function fakeWindow(url: string) {
  const replaced: string[] = [];
  const location = { pathname: '', search: '', hash: '' };
  const go = (to: string) => {
    const u = new URL(to, 'https://chat.example.com');
    Object.assign(location, { pathname: u.pathname, search: u.search, hash: u.hash });
  };
  go(url);
  const win: PageWindow = {
    location,
    history: {
      replaceState: (_data: unknown, _unused: string, to?: string | URL | null) => {
        replaced.push(String(to));
        go(String(to));
      },
    },
  };
  return { win, replaced, location, go };
}

describe('PageToken', () => {
  it('takes the token out of the address at load and keeps it in memory', () => {
    const { win, replaced, location } = fakeWindow('/chat/#/room/lobby?token=t-1');
    const page = new PageToken(win);
    page.take();
    expect(page.current()).toBe('t-1');
    expect(replaced).toEqual(['/chat/#/room/lobby']);
    expect(location.hash).toBe('#/room/lobby');
    expect(page.ignoredQueryToken).toBe(false);
  });

  it('a token-only fragment leaves the address bare at load', () => {
    const { win, replaced } = fakeWindow('/#token=t-1');
    new PageToken(win).take();
    expect(replaced).toEqual(['/']);
  });

  it('leaves an address without a token untouched', () => {
    const { win, replaced } = fakeWindow('/?room=lobby#/');
    const page = new PageToken(win);
    page.take();
    expect(page.current()).toBeNull();
    expect(replaced).toEqual([]);
  });

  it('ignores a token in the query, removes it, and remembers that it did', () => {
    const { win, replaced } = fakeWindow('/?room=lobby&token=leaked');
    const page = new PageToken(win);
    page.take();
    expect(page.current()).toBeNull();
    expect(page.ignoredQueryToken).toBe(true);
    expect(replaced).toEqual(['/?room=lobby']);
  });

  it('a new fragment token replaces the old one, tells subscribers, and puts the route back', () => {
    const { win, replaced, location, go } = fakeWindow('/#/room/lobby?token=t-1');
    const page = new PageToken(win);
    page.take();
    const heard: (string | null)[] = [];
    const off = page.subscribe(() => heard.push(page.current()));

    // The embedding app sets `…/#token=t-2`: the browser changes only the fragment.
    go('/#token=t-2');
    page.take('#/room/lobby');
    expect(page.current()).toBe('t-2');
    expect(location.hash).toBe('#/room/lobby');
    expect(replaced.at(-1)).toBe('/#/room/lobby');

    // The same token again is no news.
    go('/#/room/lobby?token=t-2');
    page.take('#/room/lobby');
    expect(heard).toEqual(['t-2']);

    off();
    go('/#token=t-3');
    page.take('#/');
    expect(heard).toEqual(['t-2']);
    expect(page.current()).toBe('t-3');
  });
});
