import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { ReserveRequest } from '../store/store.js';

/** How long an Idempotency-Key is remembered per vault key (Stripe keeps them 24 hours). */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;

/**
 * The idempotency part of a reservation for a call that carries `Idempotency-Key`: the key and
 * the request's fingerprint (method, canonical path and query, SHA-256 of the forwarded body).
 */
export function idempotencyOf(
  headers: IncomingMessage['headers'],
  method: string,
  path: string,
  query: string,
  body: Buffer,
): { ok: true; value?: NonNullable<ReserveRequest['idempotency']> } | { ok: false; reason: string } {
  const raw = headers['idempotency-key'];
  if (raw === undefined) return { ok: true };
  if (Array.isArray(raw) || raw.length === 0 || raw.length > 255) {
    return { ok: false, reason: 'Idempotency-Key must be given once, 1-255 characters.' };
  }
  const bodyHash = createHash('sha256').update(body).digest('hex');
  const fingerprint = createHash('sha256').update(`${method}\n${path}\n${query}\n${bodyHash}`).digest('hex');
  return { ok: true, value: { key: raw, fingerprint, ttlMs: IDEMPOTENCY_TTL_MS } };
}
