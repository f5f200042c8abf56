import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { ReserveRequest } from '../store/store.js';
import type { Vendor } from '../vendors/vendor.js';

/** How long an Idempotency-Key is remembered per vault key (Stripe keeps them 24 hours). */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;

const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/**
 * The idempotency part of a reservation for a call that carries `Idempotency-Key`: the key and
 * the request's fingerprint (method, canonical path and query, SHA-256 of the forwarded body).
 *
 * A retry goes uncharged only when the vendor itself will answer it with the original result:
 * the vendor dedupes (`dedupesIdempotencyKey`), the key is among the headers actually forwarded
 * (`forwarded`, e.g. not dropped because `Connection` named it), and it is remembered under the
 * same account (`idempotencyScopeHeaders`, e.g. `Stripe-Account`). Otherwise no idempotency is
 * claimed and the call is charged like any other.
 */
export function idempotencyOf(
  headers: IncomingMessage['headers'],
  forwarded: Readonly<Record<string, string | string[] | undefined>>,
  vendor: Pick<Vendor, 'dedupesIdempotencyKey' | 'idempotencyScopeHeaders'>,
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
  if (vendor.dedupesIdempotencyKey !== true || forwarded['idempotency-key'] !== raw) return { ok: true };
  const scope: string[] = [];
  for (const name of vendor.idempotencyScopeHeaders ?? []) {
    const v = forwarded[name];
    if (v !== undefined) scope.push(`${name}:${Array.isArray(v) ? v.join('\n') : v}`);
  }
  // Header values hold no newline, so a scoped key can never equal a caller's plain key.
  const key = scope.length ? `${raw}\n${sha256(scope.join('\n'))}` : raw;
  const call = `${method}\n${path}\n${query}\n${sha256(body)}`;
  const fingerprint = sha256(scope.length ? `${call}\n${scope.join('\n')}` : call);
  return { ok: true, value: { key, fingerprint, ttlMs: IDEMPOTENCY_TTL_MS } };
}
