import type { Mode } from '../keys/token.js';

// The storage interface. Every backend (SQLite embedded, Postgres+Redis) implements it and runs
// the same conformance suite (conformance.ts). Money is integer micro-dollars throughout.

export interface KeyRecord {
  id: string;
  tokenHash: string;
  label: string;
  vendor: string;
  mode: Mode;
  allowedEndpoints: string[];
  /** null: no cap. */
  dailyCapMicros: number | null;
  metadata: Record<string, string>;
  createdAt: number;
  expiresAt: number;
  revokedAt: number | null;
}

export interface KeyUsage {
  requestCount: number;
  lastUsedAt: number | null;
  /** Settled spend plus open reservations in the given UTC day. */
  spentMicros: number;
}

export type KeyStatus = 'active' | 'expired' | 'revoked';

export interface KeyFilter {
  status?: KeyStatus;
  vendor?: string;
  mode?: Mode;
  labelPrefix?: string;
  /** Every pair must match. */
  metadata?: Record<string, string>;
}

export interface Page<T> {
  items: T[];
  /** Opaque; pass back to get the next page. null when there is none. */
  nextCursor: string | null;
}

export type RevokeResult = 'revoked' | 'already_revoked' | 'not_found';

export interface ReserveRequest {
  reservationId: string;
  keyId: string;
  /** UTC day (YYYY-MM-DD) the spend counts in. */
  day: string;
  amountMicros: number;
  requestId: string;
  method: string;
  path: string;
  now: number;
}

export type ReserveResult =
  | { ok: true; spentMicros: number }
  | { ok: false; code: 'invalid_key' | 'key_revoked' | 'key_expired' }
  | { ok: false; code: 'cap_exhausted'; spentMicros: number; capMicros: number };

/**
 * How a reservation ends. `settled`: the vendor executed the call, at this real cost.
 * `released`: the vendor provably did not execute it. `unknown`: nobody knows (timeout, reset,
 * crash) — the estimate stays charged.
 */
export type Settlement =
  | { state: 'settled'; micros: number }
  | { state: 'released' }
  | { state: 'unknown' };

export type ReservationState = 'reserved' | 'settled' | 'released' | 'unknown';

export interface Reservation {
  id: string;
  keyId: string;
  day: string;
  estimateMicros: number;
  finalMicros: number | null;
  state: ReservationState;
  requestId: string;
  createdAt: number;
  settledAt: number | null;
}

export type Decision = 'allow' | 'deny';

export interface AuditRecord {
  id: string;
  time: number;
  requestId: string;
  keyId: string | null;
  label: string | null;
  vendor: string | null;
  mode: Mode | null;
  method: string;
  path: string;
  status: number;
  decision: Decision;
  /** null for a call that was forwarded and answered; otherwise the error code given. */
  code: string | null;
  costMicros: number;
  upstreamLatencyMs: number | null;
}

export interface AuditFilter {
  keyId?: string;
  decision?: Decision;
  vendor?: string;
  code?: string;
  since?: number;
}

export interface Store {
  readonly kind: string;
  createKey(key: KeyRecord): Promise<void>;
  getKeyById(id: string): Promise<KeyRecord | null>;
  getKeyByHash(tokenHash: string): Promise<KeyRecord | null>;
  listKeys(filter: KeyFilter, limit: number, cursor: string | null, now: number): Promise<Page<KeyRecord>>;
  revokeKey(id: string, now: number): Promise<RevokeResult>;
  keyUsage(id: string, day: string): Promise<KeyUsage>;

  /**
   * Atomically: check the key is usable, check `spent + amount <= cap` for the day, record the
   * reservation and add it to the day's spend. Durable when the promise resolves.
   */
  reserve(req: ReserveRequest): Promise<ReserveResult>;
  /**
   * Atomically adds to an open reservation (e.g. a stream that outgrows its estimate), under the
   * same checks as reserve. Nothing changes when it is refused or the reservation is not open.
   */
  extendReservation(reservationId: string, addMicros: number, now: number): Promise<ReserveResult>;
  /** Ends an open reservation; a no-op on one that has already ended. Durable on resolve. */
  settle(reservationId: string, outcome: Settlement, now: number): Promise<void>;
  getReservation(id: string): Promise<Reservation | null>;
  /** Turns reservations still open after `olderThan` into `unknown` (kept charged). Returns how many. */
  reconcileStale(olderThan: number, now: number): Promise<number>;

  appendAudit(records: readonly AuditRecord[]): Promise<void>;
  listAudit(filter: AuditFilter, limit: number, cursor: string | null): Promise<Page<AuditRecord>>;

  /**
   * Optional: calls `listener` when any replica revokes a key, so this replica's key cache drops
   * it at once. Backends with one process (SQLite) need not implement it.
   */
  onRevoked?(listener: (tokenHash: string, revokedAt: number) => void): void;

  /** Cheap liveness probe for /readyz; a StoreUnavailableError names the component that is down. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function keyStatus(key: KeyRecord, now: number): KeyStatus {
  if (key.revokedAt !== null) return 'revoked';
  if (key.expiresAt <= now) return 'expired';
  return 'active';
}

/** Thrown by a backend that cannot reach its database; the gateway answers 503 store_unavailable. */
export class StoreUnavailableError extends Error {
  constructor(
    readonly component: string,
    cause?: unknown,
  ) {
    super(`${component} is unavailable`, { cause });
  }
}
