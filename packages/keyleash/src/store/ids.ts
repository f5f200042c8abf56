import { randomBytes } from 'node:crypto';

// Time-ordered ids for ledger rows (reservations, audit records, request ids): 12 hex digits of
// milliseconds, then 80 random bits, 32 hex digits in all like the UUIDs they replace. Rows
// written together land together at the end of each index, so a commit touches a few pages
// rather than one random page per row. Not secrets; unique by their random part.

let pool = Buffer.alloc(0);
let at = 0;

export function timeOrderedHex(now = Date.now()): string {
  if (at + 10 > pool.length) {
    pool = randomBytes(4096);
    at = 0;
  }
  const random = pool.toString('hex', at, at + 10);
  at += 10;
  return now.toString(16).padStart(12, '0') + random;
}
