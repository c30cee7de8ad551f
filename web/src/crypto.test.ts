import { describe, expect, it } from 'vitest';
import {
  additionalData,
  base64url,
  base64urlLength,
  decryptText,
  encryptText,
  fromBase64url,
  importRoomKey,
  isRoomKey,
  newCid,
  newPrivateRoomId,
  newRoomKey,
  sealedLength,
} from './crypto.ts';
import { CID_PATTERN, isValidRoomId, utf8Length } from './protocol.ts';

const ROOM = 'k3v9q0x2m7c4b8n1z5a6';
const ALICE = 'u-alice';

async function key(): Promise<CryptoKey> {
  return importRoomKey(newRoomKey());
}

describe('base64url', () => {
  it('matches RFC 4648 test vectors, without padding', () => {
    const vectors: [string, string][] = [
      ['', ''],
      ['f', 'Zg'],
      ['fo', 'Zm8'],
      ['foo', 'Zm9v'],
      ['foob', 'Zm9vYg'],
      ['fooba', 'Zm9vYmE'],
      ['foobar', 'Zm9vYmFy'],
    ];
    for (const [plain, encoded] of vectors) {
      const bytes = new TextEncoder().encode(plain);
      expect(base64url(bytes)).toBe(encoded);
      expect(fromBase64url(encoded)).toEqual(bytes);
      expect(base64urlLength(bytes.length)).toBe(encoded.length);
    }
  });

  it('uses - and _ instead of + and /', () => {
    expect(base64url(new Uint8Array([0xfb, 0xff, 0xfe]))).toBe('-__-');
    expect(fromBase64url('-__-')).toEqual(new Uint8Array([0xfb, 0xff, 0xfe]));
  });

  it('refuses anything else', () => {
    expect(fromBase64url('Zm9v=')).toBeNull();
    expect(fromBase64url('Zm+v')).toBeNull();
    expect(fromBase64url('Z')).toBeNull();
    // Non-zero leftover bits: a second spelling of "f".
    expect(fromBase64url('Zh')).toBeNull();
  });
});

describe('random ids and keys', () => {
  it('cids are 128 random bits in the v1.1 cid alphabet', () => {
    const cids = new Set(Array.from({ length: 200 }, newCid));
    expect(cids.size).toBe(200);
    for (const cid of cids) {
      expect(cid).toMatch(CID_PATTERN);
      expect(fromBase64url(cid)?.length).toBe(16);
    }
  });

  it('private room ids are valid, long and distinct', () => {
    const ids = new Set(Array.from({ length: 200 }, newPrivateRoomId));
    expect(ids.size).toBe(200);
    for (const id of ids) {
      expect(id).toMatch(/^[a-z0-9]{20}$/);
      expect(isValidRoomId(id)).toBe(true);
    }
  });

  it('room keys are 32 bytes in 43 characters', async () => {
    const k = newRoomKey();
    expect(k).toHaveLength(43);
    expect(isRoomKey(k)).toBe(true);
    expect(isRoomKey(k.slice(1))).toBe(false);
    expect(isRoomKey(`${k}A`)).toBe(false);
    expect(isRoomKey(`${k.slice(0, 42)}+`)).toBe(false);
    await expect(importRoomKey('short')).rejects.toThrow();
  });
});

describe('aes-gcm-v1', () => {
  it('round trips any text, with a fresh IV every time', async () => {
    const k = await key();
    for (const text of ['hi', 'é € 🙂 עברית', '<script>alert(1)</script>', 'x'.repeat(1400)]) {
      const a = await encryptText(k, ROOM, ALICE, text);
      const b = await encryptText(k, ROOM, ALICE, text);
      expect(a).not.toBe(b);
      expect(a).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(a).toHaveLength(sealedLength(utf8Length(text)));
      expect(await decryptText(k, ROOM, ALICE, a)).toBe(text);
      expect(await decryptText(k, ROOM, ALICE, b)).toBe(text);
    }
  });

  it('lays out IV ‖ ciphertext ‖ tag: 12 + n + 16 bytes', async () => {
    const k = await key();
    const sealed = fromBase64url(await encryptText(k, ROOM, ALICE, 'abc'));
    expect(sealed?.length).toBe(12 + 3 + 16);
  });

  it('binds room and sender as additional data', async () => {
    expect(new TextDecoder().decode(additionalData('lobby', 'u-1'))).toBe('whisperrooms/aes-gcm-v1\nlobby\nu-1');
    const k = await key();
    const sealed = await encryptText(k, ROOM, ALICE, 'only here, only from alice');
    expect(await decryptText(k, 'other-room', ALICE, sealed)).toBeNull();
    expect(await decryptText(k, ROOM, 'u-mallory', sealed)).toBeNull();
    // Room ids have no newline, so the first one ends the room: "ab" + "c" is not "a" + "bc".
    const split = await encryptText(k, 'ab', 'c', 'x');
    expect(await decryptText(k, 'a', 'bc', split)).toBeNull();
  });

  it('does not open under another key', async () => {
    const sealed = await encryptText(await key(), ROOM, ALICE, 'secret');
    expect(await decryptText(await key(), ROOM, ALICE, sealed)).toBeNull();
  });

  it('detects tampering and truncation, and ignores what is not ciphertext', async () => {
    const k = await key();
    const sealed = await encryptText(k, ROOM, ALICE, 'do not touch');
    const bytes = fromBase64url(sealed)!;
    for (const at of [0, 11, 12, bytes.length - 1]) {
      const flipped = bytes.slice();
      flipped[at] = (flipped[at] ?? 0) ^ 1;
      expect(await decryptText(k, ROOM, ALICE, base64url(flipped))).toBeNull();
    }
    expect(await decryptText(k, ROOM, ALICE, base64url(bytes.slice(0, -1)))).toBeNull();
    expect(await decryptText(k, ROOM, ALICE, base64url(bytes.slice(0, 27)))).toBeNull();
    expect(await decryptText(k, ROOM, ALICE, 'plain words')).toBeNull();
    expect(await decryptText(k, ROOM, ALICE, '')).toBeNull();
  });

  it('sealedLength is what the byte limit must hold', () => {
    // 28 bytes of overhead, then 4 characters for every 3 bytes.
    expect(sealedLength(0)).toBe(38);
    expect(sealedLength(1472)).toBe(2000);
    expect(sealedLength(1473)).toBe(2002);
  });
});
