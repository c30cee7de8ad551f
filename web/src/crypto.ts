/**
 * Randomness and end-to-end encryption, through WebCrypto only.
 *
 * The scheme `aes-gcm-v1` (docs/protocol.md, "End-to-end encryption"):
 *
 * - key: 32 random bytes (AES-256), written base64url without padding
 *   (43 characters) in the room link's fragment, never sent to a server;
 * - `text` on the wire: base64url (no padding) of IV (12 random bytes, fresh
 *   for every encryption) ‖ AES-GCM ciphertext ‖ tag (16 bytes);
 * - additional data: the UTF-8 bytes of
 *   `"whisperrooms/aes-gcm-v1\n" + room + "\n" + sender user id`, so a
 *   ciphertext opens only in its room and under its sender's id.
 *
 * No React, no DOM: `crypto.getRandomValues` and `crypto.subtle` exist in
 * browsers and in Node alike (`subtle` only in a secure context: HTTPS or
 * localhost, see `encryptionAvailable`).
 */

export const ENC_SCHEME = 'aes-gcm-v1';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const AAD_PREFIX = `whisperrooms/${ENC_SCHEME}\n`;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------- base64url

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const VALUE = new Map(Array.from(ALPHABET, (c, i) => [c, i]));

/** RFC 4648 §5 base64url, without padding. */
export function base64url(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = ((bytes[i] ?? 0) << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let j = 0; j < chars; j++) out += ALPHABET.charAt((n >> (18 - 6 * j)) & 63);
  }
  return out;
}

/**
 * Decodes unpadded base64url; null for any other character, an impossible
 * length, or leftover bits that are not zero (so each byte string has
 * exactly one spelling).
 */
export function fromBase64url(text: string): Uint8Array<ArrayBuffer> | null {
  if (text.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((text.length * 6) / 8));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (const c of text) {
    const v = VALUE.get(c);
    if (v === undefined) return null;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return (acc & ((1 << bits) - 1)) === 0 ? out : null;
}

/** Length of the unpadded base64url form of `bytes` bytes. */
export function base64urlLength(bytes: number): number {
  return Math.ceil((bytes * 4) / 3);
}

// ---------------------------------------------------------------- randomness

export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** A fresh `cid`: 128 random bits, 22 characters of `[A-Za-z0-9_-]`. */
export function newCid(): string {
  return base64url(randomBytes(16));
}

const ROOM_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
/** 20 characters of 36: about 103 bits, enough that nobody stumbles into the room. */
const PRIVATE_ROOM_CHARS = 20;

/** A random room id for a new private room (a valid room id). */
export function newPrivateRoomId(): string {
  let out = '';
  while (out.length < PRIVATE_ROOM_CHARS) {
    for (const b of randomBytes(PRIVATE_ROOM_CHARS)) {
      // 252 = 7 × 36: dropping larger bytes keeps every character equally likely.
      if (b < 252 && out.length < PRIVATE_ROOM_CHARS) out += ROOM_ALPHABET.charAt(b % 36);
    }
  }
  return out;
}

// ---------------------------------------------------------------- keys

/** A new room key, as it is written in the link. */
export function newRoomKey(): string {
  return base64url(randomBytes(KEY_BYTES));
}

/** True when `text` is a room key as links carry it (32 bytes, base64url). */
export function isRoomKey(text: string): boolean {
  return text.length === base64urlLength(KEY_BYTES) && fromBase64url(text)?.length === KEY_BYTES;
}

/** True when this page can encrypt (WebCrypto's `subtle` needs a secure context). */
export function encryptionAvailable(): boolean {
  return typeof crypto !== 'undefined' && typeof crypto.subtle !== 'undefined';
}

/** Turns a link's key into a non-extractable AES-GCM key. Rejects a malformed key. */
export async function importRoomKey(text: string): Promise<CryptoKey> {
  const raw = isRoomKey(text) ? fromBase64url(text) : null;
  if (raw === null) throw new Error('not a room key');
  return crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
}

// ---------------------------------------------------------------- the scheme

/** The additional data that binds a ciphertext to its room and sender. */
export function additionalData(room: string, userId: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(`${AAD_PREFIX}${room}\n${userId}`);
}

/** Size on the wire of `plainBytes` bytes of text once encrypted. */
export function sealedLength(plainBytes: number): number {
  return base64urlLength(IV_BYTES + plainBytes + TAG_BYTES);
}

/** Encrypts `text`, sent by `userId` to `room`, with a fresh IV. */
export async function encryptText(key: CryptoKey, room: string, userId: string, text: string): Promise<string> {
  const iv = randomBytes(IV_BYTES);
  const sealed = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: additionalData(room, userId), tagLength: TAG_BYTES * 8 },
    key,
    encoder.encode(text),
  );
  const out = new Uint8Array(IV_BYTES + sealed.byteLength);
  out.set(iv);
  out.set(new Uint8Array(sealed), IV_BYTES);
  return base64url(out);
}

/**
 * Decrypts a message's `text`; null when it does not open: another key,
 * another room or sender, tampered, truncated, or not UTF-8.
 */
export async function decryptText(key: CryptoKey, room: string, userId: string, text: string): Promise<string | null> {
  const bytes = fromBase64url(text);
  if (bytes === null || bytes.length < IV_BYTES + TAG_BYTES) return null;
  try {
    const plain = await crypto.subtle.decrypt(
      {
        name: 'AES-GCM',
        iv: bytes.slice(0, IV_BYTES),
        additionalData: additionalData(room, userId),
        tagLength: TAG_BYTES * 8,
      },
      key,
      bytes.slice(IV_BYTES),
    );
    return decoder.decode(plain);
  } catch {
    return null;
  }
}
