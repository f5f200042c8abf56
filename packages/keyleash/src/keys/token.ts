import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';

// Vault tokens: `vk_<mode>_` + 32 random base62 chars + 6-char base62 CRC32 of everything before
// it. The prefix lets secret scanners spot leaked tokens; the checksum lets the proxy refuse a
// mistyped or made-up token without touching the store.

export type Mode = 'test' | 'live';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_LEN = 32;
const CHECK_LEN = 6;
const TOKEN_RE = /^vk_(test|live)_[0-9A-Za-z]{38}$/;

function base62(bytes: Buffer, len: number, more: () => Buffer = () => randomBytes(len * 2)): string {
  let out = '';
  // Rejection sampling keeps every character uniform (256 is not a multiple of 62).
  let i = 0;
  while (out.length < len) {
    if (i >= bytes.length) {
      bytes = more();
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

/**
 * Deterministic bytes from a secret and an input (HMAC-SHA256 in counter mode), for ids and
 * tokens that a retry must get again: `derivedToken` / `derivedId` below.
 */
function derivedStream(secret: Buffer, input: string): () => Buffer {
  let counter = 0;
  return () => createHmac('sha256', secret).update(`${counter++}\0${input}`).digest();
}

/** A token like `generateToken`'s, but the same for the same secret and input. */
export function derivedToken(mode: Mode, secret: Buffer, input: string): string {
  const next = derivedStream(secret, `token\0${input}`);
  const head = `vk_${mode}_${base62(next(), BODY_LEN, next)}`;
  return head + checksum(head);
}

/** An id like `newId`'s, but the same for the same secret and input. */
export function derivedId(prefix: string, secret: Buffer, input: string): string {
  const next = derivedStream(secret, `id\0${input}`);
  return `${prefix}_${base62(next(), 24, next)}`;
}
