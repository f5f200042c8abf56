import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';

// Vault tokens: `vk_<mode>_` + 32 random base62 chars + 6-char base62 CRC32 of everything before
// it. The prefix lets secret scanners spot leaked tokens; the checksum lets the proxy refuse a
// mistyped or made-up token without touching the store.

export type Mode = 'test' | 'live';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_LEN = 32;
const CHECK_LEN = 6;
const TOKEN_RE = /^vk_(test|live)_[0-9A-Za-z]{38}$/;

function base62(bytes: Buffer, len: number): string {
  let out = '';
  // Rejection sampling keeps every character uniform (256 is not a multiple of 62).
  let i = 0;
  while (out.length < len) {
    if (i >= bytes.length) {
      bytes = randomBytes(len * 2);
      i = 0;
    }
    const b = bytes[i++]!;
    if (b < 248) out += ALPHABET[b % 62];
  }
  return out;
}

function checksum(s: string): string {
  let n = crc32(s) >>> 0;
  let out = '';
  for (let i = 0; i < CHECK_LEN; i++) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

export function generateToken(mode: Mode): string {
  const head = `vk_${mode}_${base62(randomBytes(48), BODY_LEN)}`;
  return head + checksum(head);
}

/** Shape and checksum only; says nothing about whether the key exists. */
export function tokenLooksValid(token: string): boolean {
  if (!TOKEN_RE.test(token)) return false;
  const head = token.slice(0, token.length - CHECK_LEN);
  return checksum(head) === token.slice(token.length - CHECK_LEN);
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function hashesEqual(a: string, b: string): boolean {
  const ba = Buffer.from(a, 'hex');
  const bb = Buffer.from(b, 'hex');
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}

/** Public ids: a type prefix and 24 base62 chars. */
export function newId(prefix: string): string {
  return `${prefix}_${base62(randomBytes(32), 24)}`;
}
