import type { Mode } from '../keys/token.js';

// The storage interface. Every backend (SQLite embedded, Postgres+Redis) implements it and runs
// the same conformance suite (conformance.ts). Money is integer micro-dollars throughout.

export interface KeyRecord {
  id: string;
  /** The tenant (project) the key belongs to; its budgets and vendor credentials are that tenant's. */
  tenantId: string;
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
  /**
   * Budgets (ids within the key's tenant) every call's spend also counts against. Fixed at
   * issuance. Every budget must exist when the key is created.
   */
  budgetIds: string[];
  /** Requests per period for this key (token bucket), or null for none. */
  rateLimit: RateLimit | null;
  /** A minted key's minting key (null or absent: issued through the control API). */
  mintingKeyId?: string | null;
  /** The minting secret version it was minted under. */
  mintVersion?: number | null;
  /**
   * The keys it was narrowed from, the minted key first. Every call also checks each one
   * (revoked, expired, its cap) and counts its spend against each, atomically.
   */
  ancestorIds?: string[];
}

/**
 * A token bucket: `requests` tokens at most, refilled at `requests` per `perMs`. Each reserved
 * call takes one from the key's bucket and every budget's, all or nothing.
 */
export interface RateLimit {
  requests: number;
  perMs: number;
}

/** `day` = UTC day, `month` = UTC calendar month, `total` = forever. */
export type BudgetPeriod = 'day' | 'month' | 'total';

export const DEFAULT_TENANT = 'default';

export interface BudgetRecord {
  tenantId: string;
  /** The budget's name, e.g. `user:u42`, `team:billing`. Unique within its tenant. */
  id: string;
  limitMicros: number;
  period: BudgetPeriod;
  /** A frozen budget refuses every call of its keys and every new key attached to it. */
  frozen: boolean;
  metadata: Record<string, string>;
  /** Requests per period over all the budget's keys together, or null for none. */
  rateLimit: RateLimit | null;
  createdAt: number;
  updatedAt: number;
}

export interface BudgetPatch {
  rateLimit?: RateLimit | null;
  limitMicros?: number;
  frozen?: boolean;
  metadata?: Record<string, string>;
}

export type DeleteBudgetResult = 'deleted' | 'not_found' | 'in_use';

/** The spend window of a budget for the UTC day `day` (YYYY-MM-DD). */
export function budgetWindow(period: BudgetPeriod, day: string): string {
  if (period === 'day') return day;
  if (period === 'month') return day.slice(0, 7);
  return 'total';
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
  /** Only keys minted from this minting key. */
  mintingKeyId?: string;
  vendor?: string;
  mode?: Mode;
  labelPrefix?: string;
  /** Every pair must match. */
  metadata?: Record<string, string>;
  /** Only keys attached to this budget (of the filter's tenant). */
  budgetId?: string;
  /** Only this tenant's keys (default tenant when absent and budgetId is given). */
  tenantId?: string;
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
  /**
   * Stripe-style idempotency: the first reservation under (keyId, key) records `fingerprint`
   * and this reservation. A later one with the same key and fingerprint, while the record is
   * younger than `ttlMs`, is not charged again (`replayOf` names the original) unless the
   * original was released (the vendor never ran it: it is charged anew). A different
   * fingerprint is refused as `idempotency_key_reused`. Key checks apply to replays too.
   */
  idempotency?: { key: string; fingerprint: string; ttlMs: number };
}

export interface BudgetThreshold {
  budgetId: string;
  window: string;
  percent: 80 | 100;
  spentMicros: number;
  limitMicros: number;
}

/** The thresholds a change of a budget's spend from `before` to `after` crosses. */
export function crossedThresholds(
  budgets: ReadonlyArray<{ id: string; window: string; before: number; after: number; limit: number }>,
): BudgetThreshold[] | undefined {
  const out: BudgetThreshold[] = [];
  for (const b of budgets) {
    if (b.limit <= 0 || b.after <= b.before) continue;
    const base = { budgetId: b.id, window: b.window, spentMicros: b.after, limitMicros: b.limit };
    if (b.before * 5 < b.limit * 4 && b.after * 5 >= b.limit * 4) out.push({ ...base, percent: 80 });
    if (b.before < b.limit && b.after >= b.limit) out.push({ ...base, percent: 100 });
  }
  return out.length ? out : undefined;
}

/** Which limit refused a reservation; absent on a key-cap refusal (the original shape). */
export interface BudgetLimitHit {
  kind: 'budget';
  id: string;
  period: BudgetPeriod;
  window: string;
}

/** The daily cap of a key this one was narrowed from refused the reservation. */
export interface ParentLimitHit {
  kind: 'parent_key';
  id: string;
}

export type ReserveResult =
  /**
   * `replayOf`: an idempotent retry of that reservation; nothing was charged or recorded.
   * `thresholds`: budgets this reservation took to or past 80 % / 100 % of their limit.
   */
  | { ok: true; spentMicros: number; replayOf?: string; thresholds?: BudgetThreshold[] }
  | { ok: false; code: 'idempotency_key_reused' }
  | { ok: false; code: 'invalid_key' | 'key_revoked' | 'key_expired' }
  | { ok: false; code: 'budget_frozen'; budgetId: string }
  /** A token bucket (the key's, or a budget's) is empty; nothing was taken from any bucket. */
  | { ok: false; code: 'rate_limited'; retryAfterMs: number; limit: { kind: 'key' | 'budget'; id: string } }
  /**
   * `spentMicros`/`capMicros` are those of the limit hit: the key's own daily cap, or (with
   * `limit`) the ancestor key or budget named there. Checks run key first, then its ancestors
   * (the minted key first), then budgets in attachment order.
   */
  | { ok: false; code: 'cap_exhausted'; spentMicros: number; capMicros: number; limit?: BudgetLimitHit | ParentLimitHit };

/**
 * How a reservation ends. `settled`: the vendor executed the call, at this real cost.
 * `released`: the vendor provably did not execute it. `unknown`: nobody knows (timeout, reset,
 * crash) — the estimate stays charged.
 */
export type Settlement =
  | { state: 'settled'; micros: number }
  | { state: 'released' }
  | { state: 'unknown' };

/** A reservation the reconciler closed at its estimate: the call's outcome was never learned. */
export interface StaleReservation {
  id: string;
  keyId: string;
  requestId: string;
  method: string;
  path: string;
  estimateMicros: number;
  createdAt: number;
}

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
  /** The tenant of the key, "default" when absent (and for calls with no key). */
  tenantId?: string;
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
  /** Its place in the writing process's hash chain (see audit/chain.ts); null on unchained records. */
  chain?: { chainId: string; seq: number; prevHash: string; hash: string } | null;
}

export interface AuditFilter {
  /** Only this tenant's records. */
  tenantId?: string;
  keyId?: string;
  decision?: Decision;
  vendor?: string;
  code?: string;
  since?: number;
}

/** One secret of a minting key. Only its salt is stored; the secret is derived from it. */
export interface MintingKeyVersion {
  version: number;
  salt: string;
  createdAt: number;
  /** When tokens minted under it stop verifying (set by a rotation), or null. */
  retiresAt: number | null;
}

/** A minting key: whoever holds its secret mints vault keys within this policy (docs/minting.md). */
export interface MintingKeyRecord {
  id: string;
  tenantId: string;
  label: string;
  mode: Mode;
  vendors: string[];
  allowedEndpoints: string[];
  /** The highest daily cap a minted key gets; null: no maximum. */
  maxCapMicros: number | null;
  maxTtlSeconds: number;
  /** Budgets every minted key counts against. */
  budgetIds: string[];
  /** Further budgets a minted key may name (exact ids, or prefixes ending in `*`). */
  allowedBudgets: string[];
  metadata: Record<string, string>;
  /** Oldest first; the last is the current one. */
  versions: MintingKeyVersion[];
  createdAt: number;
  revokedAt: number | null;
}

/** What a rotation adds; the store numbers it. */
export type NewMintingKeyVersion = Pick<MintingKeyVersion, 'salt' | 'createdAt'>;

export type RotateMintingKeyResult = { ok: true; record: MintingKeyRecord } | { ok: false; code: 'not_found' | 'revoked' };

/** Of the keys a minting-key revocation revoked, those still in use (not expired). */
export function inUse(rows: ReadonlyArray<{ id: string; token_hash: string; expires_at: number }>, now: number): RevokeMintingKeyResult['keys'] {
  return rows.filter((k) => Number(k.expires_at) > now).map((k) => ({ id: k.id, tokenHash: k.token_hash }));
}

export interface RevokeMintingKeyResult {
  result: RevokeResult;
  /** The minted keys in use that this revocation revoked. */
  keys: Array<{ id: string; tokenHash: string }>;
}

export type CreateMintedResult =
  /** The chain's records as stored, root first (created now, or found from an earlier use). */
  | { ok: true; keys: KeyRecord[] }
  /** `conflict`: an id of the chain already belongs to another token. */
  | { ok: false; code: 'conflict' | 'minting_key_not_found'; id?: string }
  | { ok: false; code: 'budget_not_found'; id: string };

/** Thrown inside a backend's createMintedKeys transaction to roll it back with this answer. */
export class MintedRefusal extends Error {
  constructor(readonly result: Exclude<CreateMintedResult, { ok: true }>) {
    super(result.code);
  }
}

/** A revocation of a minted key that was never used (there is no key record to mark). */
export interface MintedRevocation {
  id: string;
  tenantId: string;
  mintingKeyId: string;
  revokedAt: number;
}

export interface Store {
  readonly kind: string;
  createKey(key: KeyRecord): Promise<void>;
  /** With `tenantId`, a key of another tenant is not found. */
  getKeyById(id: string, tenantId?: string): Promise<KeyRecord | null>;
  getKeyByHash(tokenHash: string): Promise<KeyRecord | null>;
  listKeys(filter: KeyFilter, limit: number, cursor: string | null, now: number): Promise<Page<KeyRecord>>;
  /** With `tenantId`, a key of another tenant is `not_found` and left alone. */
  revokeKey(id: string, now: number, tenantId?: string): Promise<RevokeResult>;
  keyUsage(id: string, day: string): Promise<KeyUsage>;

  /**
   * Atomically: check the key is usable, check `spent + amount <= cap` for the day and for each
   * of the key's budgets in its own window (none frozen), record the reservation and add it to
   * the key's and every budget's spend. All or nothing. Durable when the promise resolves.
   */
  reserve(req: ReserveRequest): Promise<ReserveResult>;
  /**
   * Atomically adds to an open reservation (e.g. a stream that outgrows its estimate), under the
   * same checks as reserve. Nothing changes when it is refused or the reservation is not open.
   */
  extendReservation(reservationId: string, addMicros: number, now: number): Promise<ReserveResult>;
  /**
   * Ends an open reservation; a no-op on one that has already ended. With `audit`, the call's
   * audit record is written in the same commit (whether or not the reservation was still open):
   * when the promise resolves, both the charge and its record are durable, or neither is.
   */
  settle(reservationId: string, outcome: Settlement, now: number, audit?: AuditRecord): Promise<void>;
  getReservation(id: string): Promise<Reservation | null>;
  /** Turns reservations still open after `olderThan` into `unknown` (kept charged), and returns them. */
  reconcileStale(olderThan: number, now: number): Promise<StaleReservation[]>;
  /** Forgets idempotency records created before `olderThan`. Returns how many. */
  purgeIdempotency(olderThan: number): Promise<number>;

  // ---- budgets (all additive; a key without budgets costs reserve/settle nothing extra) ----

  /** Creates a budget; false if the id is already taken in its tenant. */
  createBudget(budget: BudgetRecord): Promise<boolean>;
  getBudget(tenantId: string, id: string): Promise<BudgetRecord | null>;
  /** Budgets of a tenant ordered by id; the cursor is opaque. */
  listBudgets(tenantId: string, limit: number, cursor: string | null): Promise<Page<BudgetRecord>>;
  /** Changes limit, frozen and/or metadata at once (reserve sees it at once); null if unknown. */
  updateBudget(tenantId: string, id: string, patch: BudgetPatch, now: number): Promise<BudgetRecord | null>;
  /** Deletes a budget no active key or minting key is attached to (`in_use` otherwise). */
  deleteBudget(tenantId: string, id: string, now: number): Promise<DeleteBudgetResult>;
  /** Settled spend plus open reservations of every attached key in `window` (see budgetWindow). */
  budgetSpend(tenantId: string, id: string, window: string): Promise<number>;

  // ---- minting keys and minted keys (docs/minting.md) ----

  createMintingKey(record: MintingKeyRecord): Promise<void>;
  /** With `tenantId`, another tenant's minting key is not found. */
  getMintingKey(id: string, tenantId?: string): Promise<MintingKeyRecord | null>;
  /** Newest first; the cursor is opaque. */
  listMintingKeys(tenantId: string, limit: number, cursor: string | null): Promise<Page<MintingKeyRecord>>;
  /**
   * Adds `next` as the current version and retires every older version at `retireAt` (keeping
   * an earlier retirement), shortening every key minted under them to expire by then.
   */
  rotateMintingKey(tenantId: string, id: string, next: NewMintingKeyVersion, retireAt: number): Promise<RotateMintingKeyResult>;
  /** Revokes the minting key and every key minted from it, at once and on every replica. */
  revokeMintingKey(tenantId: string, id: string, now: number): Promise<RevokeMintingKeyResult>;
  /**
   * Creates the records of a verified chain on its first use, root first, atomically. A key
   * whose id is already stored with the same token hash is kept as it is. Each new key is
   * created revoked when its minting key (or a revocation before use) says so, and expires no
   * later than its secret version retires. Every budget must exist.
   */
  createMintedKeys(keys: readonly KeyRecord[]): Promise<CreateMintedResult>;
  /**
   * Revokes a minted key by id whether or not it was ever used: marks its record, or records
   * the revocation for its first use. `not_found` when its minting key is not the tenant's.
   */
  revokeMintedKey(tenantId: string, id: string, mintingKeyId: string, now: number): Promise<{ result: RevokeResult; tokenHash: string | null }>;
  /** The revocation of a minted key that was never used, if any. */
  getMintedRevocation(id: string, tenantId: string): Promise<MintedRevocation | null>;

  appendAudit(records: readonly AuditRecord[]): Promise<void>;
  listAudit(filter: AuditFilter, limit: number, cursor: string | null): Promise<Page<AuditRecord>>;

  /**
   * Optional: calls `listener` when any replica revokes a key, so this replica's key cache drops
   * it at once. Backends with one process (SQLite) need not implement it.
   */
  onRevoked?(listener: (tokenHash: string, revokedAt: number) => void): void;

  /**
   * A read-only SQL statement (the dashboard's aggregates over the audit log), `?` placeholders on
   * SQLite and `$n` on Postgres. Statistics never read on the proxy's event loop when a file store
   * can be read from a worker instead (control/stats-reader.ts).
   */
  readRows(sql: string, params: readonly unknown[]): Promise<Array<Record<string, unknown>>>;

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

/** Maps a reservations row (either backend) to a StaleReservation. */
export function staleFromRow(r: Record<string, unknown>): StaleReservation {
  return {
    id: r.id as string,
    keyId: r.key_id as string,
    requestId: r.request_id as string,
    method: r.method as string,
    path: r.path as string,
    estimateMicros: Number(r.estimate_micros),
    createdAt: Number(r.created_at),
  };
}

/** Maps a reservations row (either backend) to a Reservation. */
export function reservationFromRow(r: Record<string, unknown>): Reservation {
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    id: r.id as string,
    keyId: r.key_id as string,
    day: r.day as string,
    estimateMicros: Number(r.estimate_micros),
    finalMicros: num(r.final_micros),
    state: r.state as ReservationState,
    requestId: r.request_id as string,
    createdAt: Number(r.created_at),
    settledAt: num(r.settled_at),
  };
}

/** Maps a minting_keys row (either backend: JSON as text in SQLite, parsed in Postgres). */
export function mintingKeyFromRow(r: Record<string, unknown>): MintingKeyRecord {
  const json = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    id: r.id as string,
    tenantId: r.tenant_id as string,
    label: r.label as string,
    mode: r.mode as Mode,
    vendors: json(r.vendors),
    allowedEndpoints: json(r.allowed_endpoints),
    maxCapMicros: num(r.max_cap_micros),
    maxTtlSeconds: Number(r.max_ttl_seconds),
    budgetIds: json(r.budget_ids),
    allowedBudgets: json(r.allowed_budgets),
    metadata: json(r.metadata),
    versions: json(r.versions),
    createdAt: Number(r.created_at),
    revokedAt: num(r.revoked_at),
  };
}

/**
 * A rotation's versions: each older one retires at `retireAt` (or earlier, if already set), then
 * `next` as the version after the newest. Numbered inside the rotation's transaction, so two
 * rotations at once can never hand out one version with two salts.
 */
export function retireVersions(versions: readonly MintingKeyVersion[], retireAt: number, next: NewMintingKeyVersion): MintingKeyVersion[] {
  const version = Math.max(0, ...versions.map((v) => v.version)) + 1;
  return [...versions.map((v) => ({ ...v, retiresAt: v.retiresAt === null ? retireAt : Math.min(v.retiresAt, retireAt) })), { ...next, version, retiresAt: null }];
}
