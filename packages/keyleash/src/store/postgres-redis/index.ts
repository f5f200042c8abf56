// The scale-out backend: Postgres is the durable record (keys, the reservation ledger, audit);
// Redis holds each key's hot state and day counters so reserve/settle are one atomic Lua call
// shared by every replica, and carries the revocation broadcast.
//
// Consistency rule: Redis is a cache of Postgres that can be lost at any time. A key's Redis
// state is stamped with an epoch that Postgres also holds (keys.epoch). A reservation row is
// only inserted if the epoch it was counted under is still current, and rebuilding the state
// (after a flush, restart or eviction) takes the key row FOR UPDATE, bumps the epoch and sums
// the ledger. Writes whose Redis effect must count exactly once (insert, settle, extend) hold
// the key row FOR KEY SHARE, so a rebuild either sees them in Postgres or they see its epoch.

import pg from 'pg';
import { Redis } from 'ioredis';
import type { Mode } from '../../keys/token.js';
import { decodeCursor, encodeCursor } from '../cursor.js';
import {
  StoreUnavailableError,
  type AuditFilter,
  type AuditRecord,
  type KeyFilter,
  type KeyRecord,
  type KeyUsage,
  type Page,
  type Reservation,
  type ReservationState,
  type ReserveRequest,
  type ReserveResult,
  type RevokeResult,
  type Settlement,
  type Store,
  reservationFromRow,
  staleFromRow,
  type StaleReservation,
  type CreateMintedResult,
  type MintedRevocation,
  inUse,
  MintedRefusal,
  mintingKeyFromRow,
  retireVersions,
  type MintingKeyRecord,
  type MintingKeyVersion,
  type NewMintingKeyVersion,
  type RevokeMintingKeyResult,
  type RotateMintingKeyResult,
} from '../store.js';
import { migratePostgres } from './migrations.js';
import { Batcher } from './write-path.js';
import { ADJUST, ADJUST_MANY, BINIT, BINIT_WIN, BSET, EXTEND, INIT, INIT_DAY, RESERVE, REVOKE, SHORTEN } from './scripts.js';
import {
  budgetWindow,
  crossedThresholds,
  DEFAULT_TENANT,
  type BudgetPatch,
  type BudgetPeriod,
  type BudgetRecord,
  type DeleteBudgetResult,
  type RateLimit,
} from '../store.js';

export { migratePostgres } from './migrations.js';

function windowOf(period: BudgetPeriod, day: string): string {
  return budgetWindow(period, day);
}

export interface PgRedisStoreOptions {
  /** postgres://… */
  url: string;
  /** redis://… */
  redisUrl: string;
  /** Postgres schema holding keyleash's tables; created if missing. */
  schema?: string;
  /** Prefix of every Redis key and channel, so several deployments can share one Redis. */
  redisPrefix?: string;
  poolSize?: number;
  log?: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

type RevokedListener = (tokenHash: string, revokedAt: number) => void;
type Client = pg.PoolClient;

const DAY_MS = 86_400_000;
/**
 * Tries per reserve/extend. After a Redis loss one call may have to rebuild the key, a budget,
 * the key's day and the budget's window, and lose one race to another replica's rebuild.
 */
const MAX_ATTEMPTS = 12;
/** bigint and numeric (SUM) come back as numbers: micros and ms timestamps stay far below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 || oid === 1700 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

interface KeyRow {
  id: string;
  tenant_id: string;
  token_hash: string;
  label: string;
  vendor: string;
  mode: Mode;
  allowed_endpoints: string[];
  daily_cap_micros: number | null;
  metadata: Record<string, string>;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
  budget_ids: string[];
  rate_requests: number | null;
  rate_per_ms: number | null;
  minting_key_id: string | null;
  mint_version: number | null;
  ancestor_ids: string[];
}

function rateOf(r: { rate_requests: number | null; rate_per_ms: number | null }): RateLimit | null {
  return r.rate_requests === null || r.rate_per_ms === null ? null : { requests: r.rate_requests, perMs: r.rate_per_ms };
}

const KEY_COLS = `id, tenant_id, token_hash, label, vendor, mode, allowed_endpoints, daily_cap_micros, metadata,
  created_at, expires_at, revoked_at, budget_ids, rate_requests, rate_per_ms, minting_key_id, mint_version, ancestor_ids`;


/**
 * Key $1 and every key narrowed from it, as an array: `key_id = ANY(…)` stays on the
 * reservations index, where `key_id = $1 OR key_id IN (…)` makes Postgres scan the table.
 */
const SELF_AND_DESCENDANTS = `ARRAY(SELECT $1::text UNION ALL SELECT key_id FROM key_lineage WHERE ancestor_id = $1)`;

/** Serializes a minted key id's first use against its revocation before use (both take it). */
const MINTED_LOCK = `SELECT pg_advisory_xact_lock(hashtext('keyleash:minted:' || $1))`;

interface BudgetRow {
  tenant_id: string;
  id: string;
  limit_micros: number;
  period: BudgetPeriod;
  frozen: boolean;
  metadata: Record<string, string>;
  created_at: number;
  updated_at: number;
  epoch: number;
  rate_requests: number | null;
  rate_per_ms: number | null;
}

function budgetFromRow(r: BudgetRow): BudgetRecord {
  return {
    tenantId: r.tenant_id,
    id: r.id,
    limitMicros: r.limit_micros,
    period: r.period,
    frozen: r.frozen,
    metadata: r.metadata,
    rateLimit: rateOf(r),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** A counter to move: hash, field, delta, epoch (see ADJUST_MANY). */
interface Adjustment {
  hash: string;
  field: string;
  delta: number;
  epoch: number;
}

/** The SQL condition "reservation day r.day falls in budget window $n". */
const IN_WINDOW = (n: number) => `($${n} = 'total' OR r.day = $${n} OR (length($${n}) = 7 AND starts_with(r.day, $${n})))`;

function keyFromRow(r: KeyRow): KeyRecord {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    tokenHash: r.token_hash,
    label: r.label,
    vendor: r.vendor,
    mode: r.mode,
    allowedEndpoints: r.allowed_endpoints,
    dailyCapMicros: r.daily_cap_micros,
    metadata: r.metadata,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    budgetIds: r.budget_ids,
    rateLimit: rateOf(r),
    // Issued keys keep the original shape: the minting fields only exist on minted keys.
    ...(r.minting_key_id === null ? {} : { mintingKeyId: r.minting_key_id, mintVersion: r.mint_version, ancestorIds: r.ancestor_ids }),
  };
}

/** Connection trouble (down, timeout, shutting down) is an outage; a constraint violation is not. */
function pgError(e: unknown): unknown {
  if (e instanceof StoreUnavailableError) return e;
  if (e instanceof pg.DatabaseError && !/^(08|53|57|58)/.test(e.code ?? '')) return e;
  return new StoreUnavailableError('postgres', e);
}

/** Column types of an audit row in a VALUES list (after the reservation id it belongs to). */
const AUDIT_CASTS = ['text', 'text', 'bigint', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'integer', 'text', 'text', 'bigint',
  'double precision', 'text', 'text', 'bigint', 'text', 'text'];

interface SettleItem {
  id: string;
  outcome: Settlement;
  now: number;
  audit: AuditRecord | undefined;
}

export class PgRedisStore implements Store {
  readonly kind = 'postgres+redis';
  private readonly pool: pg.Pool;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly prefix: string;
  private readonly listeners = new Set<RevokedListener>();
  /** One rebuild per key at a time in this process; other callers wait for it. */
  private readonly rebuilding = new Map<string, Promise<boolean>>();
  private lastRedisError = 0;
  /** Settlements with their audit records, group-committed (write-path.ts). */
  private readonly settles = new Batcher<SettleItem, void>((items) => this.settleBatch(items));
  /** Reservation rows of keys without budgets or ancestors, one multi-row INSERT per batch. */
  private readonly inserts = new Batcher<{ req: ReserveRequest; epoch: number }, boolean>((items) => this.insertBatch(items));

  private constructor(private readonly o: PgRedisStoreOptions) {
    const schema = o.schema ?? 'public';
    this.prefix = o.redisPrefix ?? 'keyleash:';
    this.pool = new pg.Pool({
      connectionString: o.url,
      max: o.poolSize ?? 20,
      options: `-c search_path=${schema}`,
      // Fail fast during an outage (the proxy answers 503 at once) and reconnect on next use.
      connectionTimeoutMillis: 3_000,
      statement_timeout: 5_000,
      query_timeout: 6_000,
      idle_in_transaction_session_timeout: 15_000,
      types,
    });
    // An idle client whose server went away emits here; the pool drops it and makes a new one.
    this.pool.on('error', (err) => this.o.log?.warn({ err }, 'postgres connection lost'));

    const redisOpts = {
      connectTimeout: 2_000,
      commandTimeout: 2_000,
      // No queueing while disconnected: a call fails at once instead of waiting for Redis.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy: (times: number) => Math.min(100 * times, 1_000),
    };
    // Commands issued in one event-loop turn go to Redis as one pipeline.
    this.redis = new Redis(o.redisUrl, { ...redisOpts, enableAutoPipelining: true });
    this.redis.on('error', (err) => this.redisError(err));
    for (const [name, lua] of Object.entries({ RESERVE, EXTEND, ADJUST, INIT, INIT_DAY, REVOKE, SHORTEN, BINIT, BSET, BINIT_WIN })) {
      this.redis.defineCommand(`kl_${name}`, { numberOfKeys: 1, lua });
    }
    // Any number of keys: called with the key count first.
    this.redis.defineCommand('kl_ADJUST_MANY', { lua: ADJUST_MANY });
    // The subscriber re-subscribes by itself after a reconnect.
    this.sub = new Redis(o.redisUrl, { ...redisOpts, enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined });
    this.sub.on('error', (err) => this.redisError(err));
    this.sub.on('message', (_channel: string, message: string) => {
      try {
        const { h, at } = JSON.parse(message) as { h: string; at: number };
        for (const fn of this.listeners) fn(h, at);
      } catch {
        /* not ours */
      }
    });
    this.sub.subscribe(this.channel).catch((err: unknown) => this.redisError(err));

  }

  /** Connects, migrates (idempotent, safe from many replicas at once) and returns the store. */
  static async open(o: PgRedisStoreOptions): Promise<PgRedisStore> {
    const store = new PgRedisStore(o);
    try {
      await migratePostgres(store.pool, o.schema ?? 'public').catch((e: unknown) => {
        throw pgError(e);
      });
      // Redis may come up later: calls fail closed until it does, /readyz says so.
      if (store.redis.status !== 'ready') {
        await Promise.race([
          new Promise((resolve) => store.redis.once('ready', resolve)),
          new Promise((resolve) => setTimeout(resolve, 3_000).unref()),
        ]);
      }
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  private get channel(): string {
    return `${this.prefix}revocations`;
  }

  private hashKey(keyId: string): string {
    return `${this.prefix}k:${keyId}`;
  }

  private redisError(err: unknown): void {
    // ioredis reports every failed reconnect; one line a few seconds is enough.
    if (Date.now() - this.lastRedisError < 5_000) return;
    this.lastRedisError = Date.now();
    this.o.log?.warn({ err }, 'redis unavailable');
  }

  private async script(name: string, key: string, ...args: Array<string | number>): Promise<unknown> {
    const fn = (this.redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[`kl_${name}`]!;
    try {
      return await fn.call(this.redis, key, ...args.map(String));
    } catch (e) {
      throw new StoreUnavailableError('redis', e);
    }
  }

  /** A read-only statement for the dashboard's statistics (aggregates over the audit log). */
  async readRows(sql: string, params: readonly unknown[]): Promise<Array<Record<string, unknown>>> {
    return (await this.query<Record<string, unknown>>(`/* read-only */ ${sql}`, [...params])).rows;
  }

  private async query<R extends pg.QueryResultRow>(text: string, params: unknown[] = [], client?: Client) {
    try {
      return await (client ?? this.pool).query<R>(text, params);
    } catch (e) {
      throw pgError(e);
    }
  }

  /**
   * Runs fn in a transaction; rolls back on any error and drops a connection that failed.
   * `onAbort` registers a compensation (e.g. undoing a Redis change) run if it does not commit.
   */
  private async tx<T>(fn: (c: Client, onAbort: (undo: () => Promise<void>) => void) => Promise<T>): Promise<T> {
    let c: Client;
    try {
      c = await this.pool.connect();
    } catch (e) {
      throw pgError(e);
    }
    const undos: Array<() => Promise<void>> = [];
    try {
      await this.query('BEGIN', [], c);
      const out = await fn(c, (undo) => undos.push(undo));
      await this.query('COMMIT', [], c);
      c.release();
      return out;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      c.release(e instanceof StoreUnavailableError ? (e as Error) : undefined);
      for (const undo of undos) await undo();
      throw e;
    }
  }

  // ---- keys ----

  async createKey(k: KeyRecord): Promise<void> {
    await this.tx(async (c) => {
      await this.insertKeyRow(k, c);
      // Written before the row is visible, so nobody can rebuild it first. Best effort: without
      // it the first call rebuilds the state from Postgres.
      await this.initKeyState(k, true).catch((err: unknown) => this.o.log?.warn({ err, keyId: k.id }, 'could not prime key state in redis'));
    });
  }

  /** Inserts a key with its budget and lineage rows (a budget that does not exist is refused by its foreign key). */
  private async insertKeyRow(k: KeyRecord, c: Client): Promise<void> {
    await this.query(
      `INSERT INTO keys (${KEY_COLS}) VALUES ($1, $14, $2, $3, $4, $5, $6, $7, $8, $9, $10, $15, $11, $12, $13, $16, $17, $18)`,
      [k.id, k.tokenHash, k.label, k.vendor, k.mode, JSON.stringify(k.allowedEndpoints), k.dailyCapMicros,
        JSON.stringify(k.metadata), k.createdAt, k.expiresAt, JSON.stringify(k.budgetIds), k.rateLimit?.requests ?? null,
        k.rateLimit?.perMs ?? null, k.tenantId, k.revokedAt, k.mintingKeyId ?? null, k.mintVersion ?? null, JSON.stringify(k.ancestorIds ?? [])],
      c,
    );
    if (k.budgetIds.length) {
      await this.query(
        `INSERT INTO key_budgets (tenant_id, budget_id, key_id, position)
         SELECT $1, b, $2, ord - 1 FROM unnest($3::text[]) WITH ORDINALITY AS u(b, ord)`,
        [k.tenantId, k.id, k.budgetIds],
        c,
      );
    }
    if (k.ancestorIds?.length) {
      await this.query('INSERT INTO key_lineage (ancestor_id, key_id) SELECT a, $1 FROM unnest($2::text[]) AS a', [k.id, k.ancestorIds], c);
    }
  }

  /** A new key's Redis state at epoch 0, fresh (a missing day means nothing spent). */
  private initKeyState(k: KeyRecord, onlyIfAbsent: boolean): Promise<unknown> {
    return this.script('INIT', this.hashKey(k.id), 0, k.revokedAt === null ? 0 : 1, k.expiresAt, k.dailyCapMicros ?? -1, 1, this.ttlMs(k),
      onlyIfAbsent ? 1 : 0, k.tenantId, JSON.stringify(k.budgetIds), k.rateLimit?.requests ?? '', k.rateLimit?.perMs ?? '',
      JSON.stringify(k.ancestorIds ?? []));
  }

  private ttlMs(k: { expiresAt: number; createdAt: number }): number {
    // Outlives the key by two days so late settlements still find their counters.
    return Math.max(0, k.expiresAt - k.createdAt) + 2 * DAY_MS;
  }

  async getKeyById(id: string, tenantId?: string): Promise<KeyRecord | null> {
    const { rows } = await this.query<KeyRow>(
      `SELECT ${KEY_COLS} FROM keys WHERE id = $1 ${tenantId === undefined ? '' : 'AND tenant_id = $2'}`,
      tenantId === undefined ? [id] : [id, tenantId],
    );
    return rows[0] ? keyFromRow(rows[0]) : null;
  }

  async getKeyByHash(tokenHash: string): Promise<KeyRecord | null> {
    const { rows } = await this.query<KeyRow>(`SELECT ${KEY_COLS} FROM keys WHERE token_hash = $1`, [tokenHash]);
    return rows[0] ? keyFromRow(rows[0]) : null;
  }

  async listKeys(filter: KeyFilter, limit: number, cursor: string | null, now: number): Promise<Page<KeyRecord>> {
    const where: string[] = [];
    const args: unknown[] = [];
    const p = (v: unknown) => `$${args.push(v)}`;
    if (filter.status === 'active') where.push(`revoked_at IS NULL AND expires_at > ${p(now)}`);
    if (filter.status === 'expired') where.push(`revoked_at IS NULL AND expires_at <= ${p(now)}`);
    if (filter.status === 'revoked') where.push('revoked_at IS NOT NULL');
    if (filter.vendor !== undefined) where.push(`vendor = ${p(filter.vendor)}`);
    if (filter.mode !== undefined) where.push(`mode = ${p(filter.mode)}`);
    // starts_with, not LIKE: a prefix may itself contain % or _.
    if (filter.labelPrefix !== undefined) where.push(`starts_with(label, ${p(filter.labelPrefix)})`);
    if (filter.metadata && Object.keys(filter.metadata).length) {
      where.push(`metadata @> ${p(JSON.stringify(filter.metadata))}::jsonb`);
    }
    if (filter.tenantId !== undefined) where.push(`tenant_id = ${p(filter.tenantId)}`);
    if (filter.mintingKeyId !== undefined) where.push(`minting_key_id = ${p(filter.mintingKeyId)}`);
    if (filter.budgetId !== undefined) {
      where.push(`id IN (SELECT key_id FROM key_budgets WHERE tenant_id = ${p(filter.tenantId ?? DEFAULT_TENANT)} AND budget_id = ${p(filter.budgetId)})`);
    }
    const after = decodeCursor(cursor);
    if (after) where.push(`(created_at, id) < (${p(after.t)}, ${p(after.id)})`);
    const { rows } = await this.query<KeyRow>(
      `SELECT ${KEY_COLS} FROM keys ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
       ORDER BY created_at DESC, id DESC LIMIT ${p(limit + 1)}`,
      args,
    );
    const more = rows.length > limit;
    const items = rows.slice(0, limit).map(keyFromRow);
    const last = items[items.length - 1];
    return { items, nextCursor: more && last ? encodeCursor({ t: last.createdAt, id: last.id }) : null };
  }

  async revokeKey(id: string, now: number, tenantId?: string): Promise<RevokeResult> {
    const scope = tenantId === undefined ? '' : 'AND tenant_id = $3';
    // One transaction around both stores: the row lock keeps a concurrent rebuild out, and if
    // Redis cannot take the flag nothing is revoked (503, retry) rather than half-revoked.
    const out = await this.tx(async (c) => {
      let result: RevokeResult = 'revoked';
      let { rows } = await this.query<{ token_hash: string; revoked_at: number }>(
        `UPDATE keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL ${scope} RETURNING token_hash, revoked_at`,
        tenantId === undefined ? [id, now] : [id, now, tenantId],
        c,
      );
      if (!rows[0]) {
        ({ rows } = await this.query<{ token_hash: string; revoked_at: number }>(
          `SELECT token_hash, revoked_at FROM keys WHERE id = $1 ${tenantId === undefined ? '' : 'AND tenant_id = $2'} FOR UPDATE`,
          tenantId === undefined ? [id] : [id, tenantId],
          c,
        ));
        if (!rows[0]) return null;
        result = 'already_revoked';
      }
      // Set again on a repeat too: harmless, and heals a flag lost with a commit that failed.
      await this.script('REVOKE', this.hashKey(id));
      return { result, hash: rows[0].token_hash, at: rows[0].revoked_at };
    });
    if (!out) return 'not_found';
    // The broadcast only refreshes other replicas' key caches; the flag above is what enforces.
    await this.redis.publish(this.channel, JSON.stringify({ h: out.hash, at: out.at })).catch(() => {});
    return out.result;
  }

  onRevoked(listener: RevokedListener): void {
    this.listeners.add(listener);
  }

  async keyUsage(id: string, day: string): Promise<KeyUsage> {
    // Spend includes the keys narrowed from it (they count against it); calls are its own.
    const { rows } = await this.query<{ n: number; last: number | null; spent: number }>(
      `SELECT count(*) FILTER (WHERE key_id = $1) AS n, max(created_at) FILTER (WHERE key_id = $1) AS last,
         COALESCE(SUM(COALESCE(final_micros, estimate_micros)) FILTER (WHERE day = $2), 0) AS spent
       FROM reservations WHERE key_id = ANY(${SELF_AND_DESCENDANTS})`,
      [id, day],
    );
    const r = rows[0]!;
    return { requestCount: r.n, lastUsedAt: r.last, spentMicros: r.spent };
  }

  // ---- spend ----

  private budgetHash(tenantId: string, id: string): string {
    return `${this.prefix}b:${tenantId}:${id}`;
  }

  /** Runs RESERVE/EXTEND; ARGV as documented in scripts.ts. */
  private async check(
    name: 'RESERVE' | 'EXTEND',
    keyId: string,
    day: string,
    amount: number,
    now: number,
    keyEpoch: number | null,
    budgetEpochs: Record<string, number> | null,
    limitRate = false,
    ancestorEpochs: Record<string, number> | null = null,
  ): Promise<unknown[]> {
    return (await this.script(name, this.hashKey(keyId), day, amount, now, keyEpoch ?? '', `${this.prefix}b:`,
      budgetEpochs ? JSON.stringify(budgetEpochs) : '', limitRate ? '1' : '', `${this.prefix}k:`,
      ancestorEpochs ? JSON.stringify(ancestorEpochs) : '')) as unknown[];
  }

  /**
   * What to do about a script answer that is not 'ok': a refusal to return, or a state to
   * rebuild (then null is returned after rebuilding, and the caller retries).
   */
  private async handleNotOk(r: unknown[], keyId: string, day: string): Promise<ReserveResult | null> {
    const refused = this.refusal(r, keyId);
    if (refused) return refused;
    switch (r[0]) {
      case 'nostate':
        if (!(await this.rebuild(keyId))) return { ok: false, code: 'invalid_key' };
        return null;
      case 'nospend':
        await this.initDay(keyId, day);
        return null;
      case 'nostate_parent':
        if (!(await this.rebuild(r[1] as string))) return { ok: false, code: 'invalid_key' };
        return null;
      case 'nospend_parent':
        await this.initDay(r[1] as string, day);
        return null;
      case 'nostate_budget':
        if (!(await this.rebuildBudget(r[1] as string, r[2] as string))) {
          throw new StoreUnavailableError('postgres', new Error(`budget ${String(r[2])} of key ${keyId} is gone`));
        }
        return null;
      case 'nospend_budget':
        await this.initBudgetWindow(r[1] as string, r[2] as string, r[3] as string);
        return null;
    }
    throw new StoreUnavailableError('redis', new Error(`unexpected answer ${String(r[0])}`));
  }

  /** The ancestor keys an accepted RESERVE/EXTEND answer counted in: id, epoch. */
  private ancestorsOf(r: unknown[]): Array<{ id: string; epoch: number }> {
    const out = [];
    for (let i = 0; i < (r[4] as number); i++) out.push({ id: r[5 + 2 * i] as string, epoch: r[6 + 2 * i] as number });
    return out;
  }

  /** The budgets an accepted RESERVE/EXTEND answer counted in: id, epoch, window. */
  private budgetsOf(r: unknown[]): Array<{ id: string; epoch: number; window: string; before: number; limit: number }> {
    const out = [];
    for (let i = 5 + 2 * (r[4] as number); i + 4 < r.length; i += 5) {
      out.push({ id: r[i] as string, epoch: r[i + 1] as number, window: r[i + 2] as string, before: r[i + 3] as number, limit: r[i + 4] as number });
    }
    return out;
  }

  /** The ok answer of an accepted reservation of `amount`, with the budget thresholds it crossed. */
  private accepted(r: unknown[], amount: number): ReserveResult {
    const budgets = this.budgetsOf(r);
    const thresholds = budgets.length ? crossedThresholds(budgets.map((b) => ({ ...b, after: b.before + amount }))) : undefined;
    return thresholds ? { ok: true, spentMicros: r[1] as number, thresholds } : { ok: true, spentMicros: r[1] as number };
  }

  /** Undoes an accepted RESERVE/EXTEND answer of `amount` (best effort: a rebuild heals it). */
  private async undoCheck(r: unknown[], keyId: string, day: string, amount: number): Promise<void> {
    const budgets = this.budgetsOf(r);
    const ancestors = this.ancestorsOf(r);
    if (!budgets.length && !ancestors.length) return this.undo(this.hashKey(keyId), day, amount, r[2] as number);
    const adj: Adjustment[] = [{ hash: this.hashKey(keyId), field: `d:${day}`, delta: -amount, epoch: r[2] as number }];
    for (const a of ancestors) adj.push({ hash: this.hashKey(a.id), field: `d:${day}`, delta: -amount, epoch: a.epoch });
    for (const b of budgets) {
      adj.push({ hash: this.budgetHash(r[3] as string, b.id), field: `w:${b.window}`, delta: -amount, epoch: b.epoch });
    }
    await this.adjustMany(adj).catch((err: unknown) =>
      this.o.log?.error({ err }, 'could not undo a redis reservation; the key may be over-counted until rebuilt'),
    );
  }

  async reserve(req: ReserveRequest): Promise<ReserveResult> {
    if (req.idempotency) return this.reserveIdempotent(req, req.idempotency);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const r = await this.check('RESERVE', req.keyId, req.day, req.amountMicros, req.now, null, null, true);
      if (r[0] !== 'ok') {
        const out = await this.handleNotOk(r, req.keyId, req.day);
        if (out) return out;
        continue;
      }
      const undo = () => this.undoCheck(r, req.keyId, req.day, req.amountMicros);
      let inserted: boolean;
      try {
        const simple = !this.budgetsOf(r).length && !this.ancestorsOf(r).length;
        inserted = simple
          ? await this.inserts.push({ req, epoch: r[2] as number })
          : (await this.insertReservation(req, r)).rowCount === 1;
      } catch (e) {
        await undo();
        throw e;
      }
      if (inserted) return this.accepted(r, req.amountMicros);
      // A state was rebuilt between our count and our insert: count again in the new one.
      await undo();
      await this.rebuild(req.keyId);
    }
    throw new StoreUnavailableError('redis', new Error(`key state for ${req.keyId} kept changing`));
  }

  /**
   * reserve() with an Idempotency-Key: one transaction holds the record's row lock, so
   * concurrent duplicates queue behind the first and then see its reservation. The Redis count
   * is undone if the transaction does not commit; a refusal rolls the record back too.
   */
  private async reserveIdempotent(req: ReserveRequest, idem: NonNullable<ReserveRequest['idempotency']>): Promise<ReserveResult> {
    class Done {
      constructor(readonly result: ReserveResult | null, readonly after?: () => Promise<unknown>) {}
    }
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      try {
        return await this.tx(async (c, onAbort): Promise<ReserveResult> => {
          await this.query(
            `INSERT INTO idempotency (key_id, idem_key, fingerprint, reservation_id, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING`,
            [req.keyId, idem.key, idem.fingerprint, req.reservationId, req.now],
            c,
          );
          const { rows } = await this.query<{ fingerprint: string; reservation_id: string; created_at: number; state: ReservationState | null }>(
            `SELECT i.fingerprint, i.reservation_id, i.created_at, r.state FROM idempotency i
             LEFT JOIN reservations r ON r.id = i.reservation_id WHERE i.key_id = $1 AND i.idem_key = $2 FOR UPDATE OF i`,
            [req.keyId, idem.key],
            c,
          );
          const rec = rows[0]!;
          if (rec.reservation_id !== req.reservationId) {
            if (rec.created_at <= req.now - idem.ttlMs) {
              await this.query(
                'UPDATE idempotency SET fingerprint = $3, reservation_id = $4, created_at = $5 WHERE key_id = $1 AND idem_key = $2',
                [req.keyId, idem.key, idem.fingerprint, req.reservationId, req.now],
                c,
              );
            } else if (rec.fingerprint !== idem.fingerprint) {
              throw new Done({ ok: false, code: 'idempotency_key_reused' });
            } else if (rec.state !== null && rec.state !== 'released') {
              // A replay: the same checks as a free call, nothing charged or recorded.
              const r = await this.check('RESERVE', req.keyId, req.day, 0, req.now, null, null);
              if (r[0] !== 'ok') throw new Done(this.refusal(r, req.keyId), () => this.handleNotOk(r, req.keyId, req.day));
              return { ok: true, spentMicros: r[1] as number, replayOf: rec.reservation_id };
            } else {
              // The original never ran (or never got recorded): this one is charged.
              await this.query('UPDATE idempotency SET reservation_id = $3 WHERE key_id = $1 AND idem_key = $2',
                [req.keyId, idem.key, req.reservationId], c);
            }
          }
          const r = await this.check('RESERVE', req.keyId, req.day, req.amountMicros, req.now, null, null, true);
          if (r[0] !== 'ok') throw new Done(this.refusal(r, req.keyId), () => this.handleNotOk(r, req.keyId, req.day));
          onAbort(() => this.undoCheck(r, req.keyId, req.day, req.amountMicros));
          const inserted = await this.insertReservation(req, r, c);
          // A state was rebuilt between our count and our insert: roll back, count again.
          if (inserted.rowCount !== 1) throw new Done(null, () => this.rebuild(req.keyId));
          return this.accepted(r, req.amountMicros);
        });
      } catch (e) {
        if (!(e instanceof Done)) throw e;
        if (e.result) return e.result;
        await e.after?.();
      }
    }
    throw new StoreUnavailableError('redis', new Error(`key state for ${req.keyId} kept changing`));
  }

  /**
   * Records a reservation counted by an accepted RESERVE answer `r`, durable before the call is
   * forwarded; only if the key's epoch, and every ancestor's and budget's, is still current.
   */
  private insertReservation(req: ReserveRequest, r: unknown[], client?: Client) {
    const budgets = this.budgetsOf(r);
    const ancestors = this.ancestorsOf(r);
    const base = [req.reservationId, req.keyId, req.day, req.amountMicros, req.requestId, req.method, req.path, req.now, r[2]];
    const insert = `INSERT INTO reservations (id, key_id, day, estimate_micros, state, request_id, method, path, created_at)
       SELECT $1::text, id, $3::text, $4::bigint, 'reserved', $5::text, $6::text, $7::text, $8::bigint
       FROM keys WHERE id = $2 AND epoch = $9`;
    if (!budgets.length && !ancestors.length) return this.query(`${insert} FOR KEY SHARE`, base, client);
    return this.query(
      `WITH b AS (SELECT 1 FROM budgets WHERE tenant_id = $10::text
         AND (id, epoch) IN (SELECT * FROM unnest($11::text[], $12::bigint[])) FOR KEY SHARE),
       a AS (SELECT 1 FROM keys WHERE (id, epoch) IN (SELECT * FROM unnest($14::text[], $15::bigint[])) FOR KEY SHARE)
       ${insert} AND (SELECT count(*) FROM b) = $13 AND (SELECT count(*) FROM a) = $16 FOR KEY SHARE`,
      [...base, r[3] as string, budgets.map((b) => b.id), budgets.map((b) => b.epoch), budgets.length,
        ancestors.map((a) => a.id), ancestors.map((a) => a.epoch), ancestors.length],
      client,
    );
  }

  async purgeIdempotency(olderThan: number): Promise<number> {
    const r = await this.query('DELETE FROM idempotency WHERE created_at < $1', [olderThan]);
    return r.rowCount ?? 0;
  }

  /** Moves several counters in one atomic call, each only at its epoch (ADJUST_MANY). */
  private async adjustMany(adj: Adjustment[]): Promise<void> {
    const moves = adj.filter((a) => a.delta !== 0);
    if (!moves.length) return;
    const fn = (this.redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>).kl_ADJUST_MANY!;
    const args = moves.flatMap((a) => [a.field, String(a.delta), String(a.epoch)]);
    try {
      await fn.call(this.redis, moves.length, ...moves.map((a) => a.hash), ...args);
    } catch (e) {
      throw new StoreUnavailableError('redis', e);
    }
  }

  private refusal(r: unknown[], keyId: string): ReserveResult | null {
    if (r[0] === 'rate_limited') {
      const kind = r[1] as 'key' | 'budget';
      return { ok: false, code: 'rate_limited', retryAfterMs: r[3] as number, limit: { kind, id: kind === 'key' ? keyId : (r[2] as string) } };
    }
    if (r[0] === 'key_revoked' || r[0] === 'key_expired') return { ok: false, code: r[0] };
    if (r[0] === 'cap_exhausted') return { ok: false, code: 'cap_exhausted', spentMicros: r[1] as number, capMicros: r[2] as number };
    if (r[0] === 'parent_exhausted') {
      return { ok: false, code: 'cap_exhausted', spentMicros: r[2] as number, capMicros: r[3] as number, limit: { kind: 'parent_key', id: r[1] as string } };
    }
    if (r[0] === 'budget_frozen') return { ok: false, code: 'budget_frozen', budgetId: r[1] as string };
    if (r[0] === 'budget_exhausted') {
      return {
        ok: false,
        code: 'cap_exhausted',
        spentMicros: r[2] as number,
        capMicros: r[3] as number,
        limit: { kind: 'budget', id: r[1] as string, period: r[4] as BudgetPeriod, window: r[5] as string },
      };
    }
    return null;
  }

  private async undo(hk: string, day: string, amount: number, epoch: number): Promise<void> {
    if (amount === 0) return;
    await this.script('ADJUST', hk, day, -amount, epoch).catch((err: unknown) =>
      this.o.log?.error({ err }, 'could not undo a redis reservation; the key may be over-counted until rebuilt'),
    );
  }

  /**
   * Rebuilds a key's Redis state from Postgres, unless another replica already did. Returns
   * false for an unknown key.
   */
  private rebuild(keyId: string): Promise<boolean> {
    let p = this.rebuilding.get(keyId);
    if (!p) {
      p = this.tx(async (c) => {
        const { rows } = await this.query<{ revoked_at: number | null; expires_at: number; created_at: number;
          daily_cap_micros: number | null; epoch: number; budgets: string[]; rate_requests: number | null; rate_per_ms: number | null;
          tenant_id: string; ancestor_ids: string[] }>(
          `SELECT revoked_at, expires_at, created_at, daily_cap_micros, epoch, rate_requests, rate_per_ms, tenant_id, ancestor_ids,
             (SELECT COALESCE(json_agg(budget_id ORDER BY position), '[]') FROM key_budgets WHERE key_id = keys.id) AS budgets
           FROM keys WHERE id = $1 FOR UPDATE`,
          [keyId],
          c,
        );
        const k = rows[0];
        if (!k) return false;
        const hk = this.hashKey(keyId);
        const current = await this.redis.hget(hk, 'e').catch((e: unknown) => {
          throw new StoreUnavailableError('redis', e);
        });
        if (current !== null && Number(current) === k.epoch) return true;
        const epoch = k.epoch + 1;
        await this.query('UPDATE keys SET epoch = $2 WHERE id = $1', [keyId, epoch], c);
        // Day counters start empty and are summed from the ledger on first use (initDay).
        const ttl = this.ttlMs({ expiresAt: k.expires_at, createdAt: k.created_at });
        await this.script('INIT', hk, epoch, k.revoked_at === null ? 0 : 1, k.expires_at, k.daily_cap_micros ?? -1, 0, ttl, 0,
          k.tenant_id, JSON.stringify(k.budgets), k.rate_requests ?? '', k.rate_per_ms ?? '', JSON.stringify(k.ancestor_ids));
        this.o.log?.warn({ keyId, epoch }, 'rebuilt key state in redis from postgres');
        return true;
      }).finally(() => this.rebuilding.delete(keyId));
      this.rebuilding.set(keyId, p);
    }
    return p;
  }

  /**
   * Sets a day counter from the ledger: settled spend plus open reservations, its own and those
   * of every key narrowed from it (whose inserts hold this row FOR KEY SHARE, so none slips by).
   */
  private async initDay(keyId: string, day: string): Promise<void> {
    await this.tx(async (c) => {
      const { rows } = await this.query<{ epoch: number }>('SELECT epoch FROM keys WHERE id = $1 FOR UPDATE', [keyId], c);
      if (!rows[0]) return;
      const sum = await this.query<{ s: number }>(
        `SELECT COALESCE(SUM(COALESCE(final_micros, estimate_micros)), 0) AS s FROM reservations
         WHERE key_id = ANY(${SELF_AND_DESCENDANTS}) AND day = $2`,
        [keyId, day],
        c,
      );
      await this.script('INIT_DAY', this.hashKey(keyId), day, sum.rows[0]!.s, rows[0].epoch);
    });
  }

  async extendReservation(reservationId: string, addMicros: number, now: number): Promise<ReserveResult> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let retry: (() => Promise<unknown>) | null = null;
      const out = await this.tx(async (c, onAbort): Promise<ReserveResult | null> => {
        const { rows } = await this.query<{ key_id: string; day: string; state: ReservationState; epoch: number; budget_ids: string[];
          ancestor_ids: string[] }>(
          `SELECT r.key_id, r.day, r.state, k.epoch, k.budget_ids, k.ancestor_ids FROM reservations r JOIN keys k ON k.id = r.key_id
           WHERE r.id = $1 FOR UPDATE OF r FOR KEY SHARE OF k`,
          [reservationId],
          c,
        );
        const r = rows[0];
        if (!r || r.state !== 'reserved') return { ok: false, code: 'invalid_key' };
        const budgets = r.budget_ids.length ? await this.lockBudgetsOf(r.key_id, c) : [];
        const epochs = budgets.length ? Object.fromEntries(budgets.map((b) => [b.id, b.epoch])) : null;
        const ancestors = await this.lockAncestors(r.ancestor_ids, c);
        const ancestorEpochs = ancestors.length ? Object.fromEntries(ancestors.map((a) => [a.id, a.epoch])) : null;
        const res = await this.check('EXTEND', r.key_id, r.day, addMicros, now, r.epoch, epochs, false, ancestorEpochs);
        if (res[0] !== 'ok') {
          const refused = this.refusal(res, r.key_id);
          if (refused) return refused;
          // Rebuild outside the transaction: it needs the row lock this one holds.
          retry = () => this.handleNotOk(res, r.key_id, r.day);
          return null;
        }
        onAbort(() => this.undoCheck(res, r.key_id, r.day, addMicros));
        await this.query('UPDATE reservations SET estimate_micros = estimate_micros + $2 WHERE id = $1', [reservationId, addMicros], c);
        return { ok: true, spentMicros: res[1] as number };
      });
      if (out) return out;
      await (retry as (() => Promise<unknown>) | null)?.();
    }
    throw new StoreUnavailableError('redis', new Error('key state kept changing'));
  }

  /** The keys a key was narrowed from, locked FOR KEY SHARE (no rebuild of them until commit). */
  private async lockAncestors(ids: readonly string[], c: Client): Promise<Array<{ id: string; epoch: number }>> {
    if (!ids.length) return [];
    const { rows } = await this.query<{ id: string; epoch: number }>('SELECT id, epoch FROM keys WHERE id = ANY($1::text[]) FOR KEY SHARE', [ids], c);
    return rows;
  }

  /** The key's budgets, locked FOR KEY SHARE (no rebuild of them until commit), in attachment order. */
  private async lockBudgetsOf(keyId: string, c: Client): Promise<Array<{ id: string; epoch: number; period: BudgetPeriod }>> {
    const { rows } = await this.query<{ id: string; epoch: number; period: BudgetPeriod }>(
      `SELECT b.id, b.epoch, b.period FROM key_budgets kb JOIN budgets b ON b.tenant_id = kb.tenant_id AND b.id = kb.budget_id
       WHERE kb.key_id = $1 ORDER BY kb.position FOR KEY SHARE OF b`,
      [keyId],
      c,
    );
    return rows;
  }

  async settle(reservationId: string, outcome: Settlement, now: number, audit?: AuditRecord): Promise<void> {
    await this.settles.push({ id: reservationId, outcome, now, audit });
  }

  /**
   * Reservation rows of one batch in one INSERT (one commit), each only if its key is still at the
   * epoch its Redis count was taken in. Answers, per item, whether its row was written.
   */
  private async insertBatch(items: Array<{ req: ReserveRequest; epoch: number }>): Promise<boolean[]> {
    const col = <T>(f: (r: ReserveRequest) => T) => items.map((i) => f(i.req));
    const { rows } = await this.query<{ id: string }>(
      `INSERT INTO reservations (id, key_id, day, estimate_micros, state, request_id, method, path, created_at)
       SELECT u.id, k.id, u.day, u.est, 'reserved', u.rid, u.method, u.path, u.at
       FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[])
         AS u(id, key_id, day, est, rid, method, path, at, epoch)
       JOIN keys k ON k.id = u.key_id AND k.epoch = u.epoch
       FOR KEY SHARE OF k
       RETURNING id`,
      [col((r) => r.reservationId), col((r) => r.keyId), col((r) => r.day), col((r) => r.amountMicros), col((r) => r.requestId),
        col((r) => r.method), col((r) => r.path), col((r) => r.now), items.map((i) => i.epoch)],
    );
    const written = new Set(rows.map((r) => r.id));
    return items.map((i) => written.has(i.req.reservationId));
  }

  /**
   * The settlements of one batch, each with its audit record in the same commit: those that move
   * no money in one statement, then those that do in one transaction.
   */
  private async settleBatch(items: SettleItem[]): Promise<void[]> {
    const moving = await this.settleStill(items);
    if (moving.size) await this.settleMoving(items.filter((i) => moving.has(i.id)));
    return items.map(() => undefined);
  }

  /**
   * One statement, one round trip, one commit: ends every reservation of the batch whose
   * settlement moves no money (the common case: a fixed price settles at its estimate) and writes
   * the audit records of those calls (and of calls with no open reservation) with it. Nothing in
   * Redis changes for them. Returns the reservations whose settlement moves money, untouched.
   */
  private async settleStill(items: SettleItem[]): Promise<Set<string>> {
    const args: unknown[] = [items.map((i) => i.id), items.map((i) => i.outcome.state),
      items.map((i) => (i.outcome.state === 'settled' ? i.outcome.micros : 0)), items.map((i) => i.now)];
    const rows: string[] = [];
    for (const i of items) {
      const r = i.audit;
      if (!r) continue;
      const start = args.length;
      args.push(i.id, r.id, r.time, r.requestId, r.keyId, r.label, r.vendor, r.mode, r.method, r.path, r.status,
        r.decision, r.code, r.costMicros, r.upstreamLatencyMs, r.tenantId ?? DEFAULT_TENANT,
        r.chain?.chainId ?? null, r.chain?.seq ?? null, r.chain?.prevHash ?? null, r.chain?.hash ?? null);
      rows.push(`(${AUDIT_CASTS.map((cast, j) => `$${start + j + 1}::${cast}`).join(', ')})`);
    }
    const audit = rows.length
      ? `, a(rid, id, time, request_id, key_id, label, vendor, mode, method, path, status, decision, code, cost_micros,
             upstream_latency_ms, tenant_id, chain_id, chain_seq, prev_hash, hash) AS (VALUES ${rows.join(', ')}),
         w AS (INSERT INTO audit (id, time, request_id, key_id, label, vendor, mode, method, path, status, decision, code,
             cost_micros, upstream_latency_ms, tenant_id, chain_id, chain_seq, prev_hash, hash)
           SELECT id, time, request_id, key_id, label, vendor, mode, method, path, status, decision, code, cost_micros,
             upstream_latency_ms, tenant_id, chain_id, chain_seq, prev_hash, hash FROM a WHERE rid NOT IN (SELECT id FROM m)
           ON CONFLICT (id) DO NOTHING)`
      : '';
    const { rows: out } = await this.query<{ id: string }>(
      `WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u(id, state, micros, at)),
       r AS (SELECT res.id, res.estimate_micros AS est, CASE u.state WHEN 'settled' THEN u.micros WHEN 'released' THEN 0
           ELSE res.estimate_micros END AS final, u.state, u.at
         FROM reservations res JOIN u ON u.id = res.id WHERE res.state = 'reserved'),
       m AS (SELECT id FROM r WHERE final <> est),
       s AS (UPDATE reservations SET state = r.state, settled_at = r.at, final_micros = r.final FROM r
         WHERE reservations.id = r.id AND r.final = r.est AND reservations.state = 'reserved')
       ${audit}
       SELECT id FROM m`,
      args,
    );
    return new Set(out.map((r) => r.id));
  }

  /**
   * The settlements that move money, with their audit records, in one transaction: one
   * multi-row INSERT of the records, one UPDATE of the reservations, and one Redis call for every
   * counter that moves (undone if the commit fails: then nothing changed, the reservations stay
   * open and charged at their estimates in both stores).
   */
  private async settleMoving(items: SettleItem[]): Promise<void> {
    await this.tx(async (c, onAbort) => {
      const audits = items.flatMap((i) => (i.audit ? [i.audit] : []));
      if (audits.length) await this.insertAudit(audits, c);
      const { rows } = await this.query<{ key_id: string; day: string; estimate_micros: number; final_micros: number; epoch: number;
        budget_ids: string[]; tenant_id: string; ancestor_ids: string[] }>(
        `WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u(id, state, micros, at)),
         k AS (SELECT r.id AS rid, k.epoch, k.budget_ids, k.tenant_id, k.ancestor_ids FROM keys k JOIN reservations r ON r.key_id = k.id
           JOIN u ON u.id = r.id FOR KEY SHARE OF k)
         UPDATE reservations SET state = u.state, settled_at = u.at, final_micros = CASE u.state
           WHEN 'settled' THEN u.micros WHEN 'released' THEN 0 ELSE reservations.estimate_micros END
         FROM u, k WHERE reservations.id = u.id AND k.rid = u.id AND reservations.state = 'reserved'
         RETURNING reservations.key_id, reservations.day, reservations.estimate_micros, reservations.final_micros, k.epoch, k.budget_ids,
           k.tenant_id, k.ancestor_ids`,
        [items.map((i) => i.id), items.map((i) => i.outcome.state), items.map((i) => (i.outcome.state === 'settled' ? i.outcome.micros : 0)),
          items.map((i) => i.now)],
        c,
      );
      const adj: Adjustment[] = [];
      for (const r of rows) {
        const delta = r.final_micros - r.estimate_micros;
        if (delta === 0) continue; // no money moves: the row update is all there is
        adj.push({ hash: this.hashKey(r.key_id), field: `d:${r.day}`, delta, epoch: r.epoch });
        for (const a of await this.lockAncestors(r.ancestor_ids, c)) adj.push({ hash: this.hashKey(a.id), field: `d:${r.day}`, delta, epoch: a.epoch });
        for (const b of r.budget_ids.length ? await this.lockBudgetsOf(r.key_id, c) : []) {
          adj.push({ hash: this.budgetHash(r.tenant_id, b.id), field: `w:${windowOf(b.period, r.day)}`, delta, epoch: b.epoch });
        }
      }
      if (adj.length) {
        await this.adjustMany(adj);
        onAbort(() => this.adjustMany(adj.map((a) => ({ ...a, delta: -a.delta }))).catch(() => {}));
      }
    });
  }

  async getReservation(id: string): Promise<Reservation | null> {
    const { rows } = await this.query<{ id: string; key_id: string; day: string; estimate_micros: number;
      final_micros: number | null; state: ReservationState; request_id: string; created_at: number; settled_at: number | null }>(
      `SELECT id, key_id, day, estimate_micros, final_micros, state, request_id, created_at, settled_at
       FROM reservations WHERE id = $1`,
      [id],
    );
    const r = rows[0];
    if (!r) return null;
    return reservationFromRow(r);
  }

  async reconcileStale(olderThan: number, now: number): Promise<StaleReservation[]> {
    // Charged at the estimate either way, so Redis counters need no change.
    const r = await this.query<Record<string, unknown>>(
      `UPDATE reservations SET state = 'unknown', final_micros = estimate_micros, settled_at = $1
       WHERE state = 'reserved' AND created_at < $2
       RETURNING id, key_id, request_id, method, path, estimate_micros, created_at`,
      [now, olderThan],
    );
    return r.rows.map(staleFromRow);
  }

  // ---- budgets ----

  async createBudget(b: BudgetRecord): Promise<boolean> {
    return this.tx(async (c) => {
      const r = await this.query(
        `INSERT INTO budgets (tenant_id, id, limit_micros, period, frozen, metadata, created_at, updated_at, epoch, rate_requests, rate_per_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10) ON CONFLICT DO NOTHING`,
        [b.tenantId, b.id, b.limitMicros, b.period, b.frozen, JSON.stringify(b.metadata), b.createdAt, b.updatedAt,
          b.rateLimit?.requests ?? null, b.rateLimit?.perMs ?? null],
        c,
      );
      if (r.rowCount !== 1) return false;
      // Before the row is visible: a fresh hash, so a missing window means nothing spent. It
      // also replaces whatever a deleted budget of the same name left behind.
      await this.script('BINIT', this.budgetHash(b.tenantId, b.id), 0, b.limitMicros, b.period, b.frozen ? 1 : 0, 1,
        b.rateLimit?.requests ?? '', b.rateLimit?.perMs ?? '');
      return true;
    });
  }

  async getBudget(tenantId: string, id: string): Promise<BudgetRecord | null> {
    const { rows } = await this.query<BudgetRow>('SELECT * FROM budgets WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return rows[0] ? budgetFromRow(rows[0]) : null;
  }

  async listBudgets(tenantId: string, limit: number, cursor: string | null): Promise<Page<BudgetRecord>> {
    const after = decodeCursor(cursor);
    const { rows } = await this.query<BudgetRow>(
      `SELECT * FROM budgets WHERE tenant_id = $1 ${after ? 'AND id > $3' : ''} ORDER BY id LIMIT $2`,
      after ? [tenantId, limit + 1, after.id] : [tenantId, limit + 1],
    );
    const more = rows.length > limit;
    const items = rows.slice(0, limit).map(budgetFromRow);
    const last = items[items.length - 1];
    return { items, nextCursor: more && last ? encodeCursor({ t: 0, id: last.id }) : null };
  }

  async updateBudget(tenantId: string, id: string, patch: BudgetPatch, now: number): Promise<BudgetRecord | null> {
    return this.tx(async (c) => {
      const { rows } = await this.query<BudgetRow>(
        `UPDATE budgets SET limit_micros = COALESCE($3, limit_micros), frozen = COALESCE($4, frozen),
           metadata = COALESCE($5::jsonb, metadata), updated_at = $6,
           rate_requests = CASE WHEN $7 THEN $8::integer ELSE rate_requests END,
           rate_per_ms = CASE WHEN $7 THEN $9::bigint ELSE rate_per_ms END
         WHERE tenant_id = $1 AND id = $2 RETURNING *`,
        [tenantId, id, patch.limitMicros ?? null, patch.frozen ?? null, patch.metadata ? JSON.stringify(patch.metadata) : null, now,
          patch.rateLimit !== undefined, patch.rateLimit?.requests ?? null, patch.rateLimit?.perMs ?? null],
        c,
      );
      const b = rows[0];
      if (!b) return null;
      // In the transaction: a rebuild (FOR UPDATE) waits for it, and if Redis cannot take the
      // change nothing changes. A hash at another epoch is rebuilt from this row anyway.
      await this.script('BSET', this.budgetHash(tenantId, id), b.epoch, b.limit_micros, b.frozen ? 1 : 0, b.rate_requests ?? '', b.rate_per_ms ?? '');
      return budgetFromRow(b);
    });
  }

  async deleteBudget(tenantId: string, id: string, now: number): Promise<DeleteBudgetResult> {
    return this.tx(async (c) => {
      const { rows } = await this.query('SELECT 1 FROM budgets WHERE tenant_id = $1 AND id = $2 FOR UPDATE', [tenantId, id], c);
      if (!rows[0]) return 'not_found';
      const used = await this.query(
        `SELECT 1 FROM key_budgets kb JOIN keys k ON k.id = kb.key_id
         WHERE kb.tenant_id = $1 AND kb.budget_id = $2 AND k.revoked_at IS NULL AND k.expires_at > $3 LIMIT 1`,
        [tenantId, id, now],
        c,
      );
      if (used.rows[0]) return 'in_use';
      // A minting key attaches it to every key it will mint.
      const minting = await this.query(
        'SELECT 1 FROM minting_keys WHERE tenant_id = $1 AND revoked_at IS NULL AND budget_ids ? $2 LIMIT 1',
        [tenantId, id],
        c,
      );
      if (minting.rows[0]) return 'in_use';
      await this.query('DELETE FROM key_budgets WHERE tenant_id = $1 AND budget_id = $2', [tenantId, id], c);
      await this.query('DELETE FROM budgets WHERE tenant_id = $1 AND id = $2', [tenantId, id], c);
      await this.redis.del(this.budgetHash(tenantId, id)).catch((e: unknown) => {
        throw new StoreUnavailableError('redis', e);
      });
      return 'deleted';
    });
  }

  async budgetSpend(tenantId: string, id: string, window: string): Promise<number> {
    const { rows } = await this.query<{ s: number }>(
      `SELECT COALESCE(SUM(COALESCE(r.final_micros, r.estimate_micros)), 0) AS s
       FROM key_budgets kb JOIN reservations r ON r.key_id = kb.key_id
       WHERE kb.tenant_id = $1 AND kb.budget_id = $2 AND ${IN_WINDOW(3)}`,
      [tenantId, id, window],
    );
    return rows[0]!.s;
  }

  /** Rebuilds a budget's Redis state from Postgres unless already current; false if it is gone. */
  private rebuildBudget(tenantId: string, id: string): Promise<boolean> {
    const name = `budget\u0000${tenantId}\u0000${id}`;
    let p = this.rebuilding.get(name);
    if (!p) {
      p = this.tx(async (c) => {
        const { rows } = await this.query<BudgetRow>(
          'SELECT * FROM budgets WHERE tenant_id = $1 AND id = $2 FOR UPDATE',
          [tenantId, id],
          c,
        );
        const b = rows[0];
        if (!b) return false;
        const hb = this.budgetHash(tenantId, id);
        const current = await this.redis.hget(hb, 'e').catch((e: unknown) => {
          throw new StoreUnavailableError('redis', e);
        });
        if (current !== null && Number(current) === b.epoch) return true;
        const epoch = b.epoch + 1;
        await this.query('UPDATE budgets SET epoch = $3 WHERE tenant_id = $1 AND id = $2', [tenantId, id, epoch], c);
        // Windows start empty and are summed from the ledger on first use (initBudgetWindow).
        await this.script('BINIT', hb, epoch, b.limit_micros, b.period, b.frozen ? 1 : 0, 0, b.rate_requests ?? '', b.rate_per_ms ?? '');
        this.o.log?.warn({ budget: id, epoch }, 'rebuilt budget state in redis from postgres');
        return true;
      }).finally(() => this.rebuilding.delete(name));
      this.rebuilding.set(name, p);
    }
    return p;
  }

  /** Sets a budget window from the ledger: settled spend plus open reservations of its keys. */
  private async initBudgetWindow(tenantId: string, id: string, window: string): Promise<void> {
    await this.tx(async (c) => {
      const { rows } = await this.query<{ epoch: number }>(
        'SELECT epoch FROM budgets WHERE tenant_id = $1 AND id = $2 FOR UPDATE',
        [tenantId, id],
        c,
      );
      if (!rows[0]) return;
      const sum = await this.query<{ s: number }>(
        `SELECT COALESCE(SUM(COALESCE(r.final_micros, r.estimate_micros)), 0) AS s
         FROM key_budgets kb JOIN reservations r ON r.key_id = kb.key_id
         WHERE kb.tenant_id = $1 AND kb.budget_id = $2 AND ${IN_WINDOW(3)}`,
        [tenantId, id, window],
        c,
      );
      await this.script('BINIT_WIN', this.budgetHash(tenantId, id), window, sum.rows[0]!.s, rows[0].epoch);
    });
  }

  // ---- minting keys and minted keys ----

  async createMintingKey(m: MintingKeyRecord): Promise<void> {
    await this.query(
      `INSERT INTO minting_keys (id, tenant_id, label, mode, vendors, allowed_endpoints, max_cap_micros, max_ttl_seconds, budget_ids,
         allowed_budgets, metadata, versions, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL)`,
      [m.id, m.tenantId, m.label, m.mode, JSON.stringify(m.vendors), JSON.stringify(m.allowedEndpoints), m.maxCapMicros, m.maxTtlSeconds,
        JSON.stringify(m.budgetIds), JSON.stringify(m.allowedBudgets), JSON.stringify(m.metadata), JSON.stringify(m.versions), m.createdAt],
    );
  }

  async getMintingKey(id: string, tenantId?: string): Promise<MintingKeyRecord | null> {
    const { rows } = await this.query<Record<string, unknown>>(
      `SELECT * FROM minting_keys WHERE id = $1 ${tenantId === undefined ? '' : 'AND tenant_id = $2'}`,
      tenantId === undefined ? [id] : [id, tenantId],
    );
    return rows[0] ? mintingKeyFromRow(rows[0]) : null;
  }

  async listMintingKeys(tenantId: string, limit: number, cursor: string | null): Promise<Page<MintingKeyRecord>> {
    const after = decodeCursor(cursor);
    const { rows } = await this.query<Record<string, unknown>>(
      `SELECT * FROM minting_keys WHERE tenant_id = $1 ${after ? 'AND (created_at, id) < ($3, $4)' : ''}
       ORDER BY created_at DESC, id DESC LIMIT $2`,
      after ? [tenantId, limit + 1, after.t, after.id] : [tenantId, limit + 1],
    );
    const more = rows.length > limit;
    const items = rows.slice(0, limit).map(mintingKeyFromRow);
    const last = items[items.length - 1];
    return { items, nextCursor: more && last ? encodeCursor({ t: last.createdAt, id: last.id }) : null };
  }

  /** Runs one script for many keys in a single round trip; any failure fails the whole call. */
  private async scriptEach(name: string, hashes: readonly string[], ...args: Array<string | number>): Promise<void> {
    if (!hashes.length) return;
    const pipe = this.redis.pipeline() as unknown as Record<string, (...a: unknown[]) => unknown> & { exec(): Promise<Array<[Error | null, unknown]> | null> };
    for (const h of hashes) pipe[`kl_${name}`]!(h, ...args.map(String));
    let results;
    try {
      results = await pipe.exec();
    } catch (e) {
      throw new StoreUnavailableError('redis', e);
    }
    const failed = results?.find(([err]) => err);
    if (!results || failed) throw new StoreUnavailableError('redis', failed?.[0] ?? new Error('pipeline failed'));
  }

  async rotateMintingKey(tenantId: string, id: string, next: NewMintingKeyVersion, retireAt: number): Promise<RotateMintingKeyResult> {
    return this.tx(async (c): Promise<RotateMintingKeyResult> => {
      const { rows } = await this.query<Record<string, unknown>>('SELECT * FROM minting_keys WHERE id = $1 AND tenant_id = $2 FOR UPDATE', [id, tenantId], c);
      const record = rows[0] ? mintingKeyFromRow(rows[0]) : null;
      if (!record) return { ok: false, code: 'not_found' };
      if (record.revokedAt !== null) return { ok: false, code: 'revoked' };
      const versions = retireVersions(record.versions, retireAt, next);
      await this.query('UPDATE minting_keys SET versions = $2 WHERE id = $1', [id, JSON.stringify(versions)], c);
      // In the transaction, like a revocation: if Redis cannot take the earlier expiry, nothing changes.
      const shortened = await this.query<{ id: string }>(
        'UPDATE keys SET expires_at = $1 WHERE minting_key_id = $2 AND mint_version < $3 AND expires_at > $1 RETURNING id',
        [retireAt, id, versions[versions.length - 1]!.version],
        c,
      );
      await this.scriptEach('SHORTEN', shortened.rows.map((k) => this.hashKey(k.id)), retireAt);
      return { ok: true, record: { ...record, versions } };
    });
  }

  async revokeMintingKey(tenantId: string, id: string, now: number): Promise<RevokeMintingKeyResult> {
    const out = await this.tx(async (c) => {
      const { rows } = await this.query<{ revoked_at: number | null }>(
        'SELECT revoked_at FROM minting_keys WHERE id = $1 AND tenant_id = $2 FOR UPDATE',
        [id, tenantId],
        c,
      );
      if (!rows[0]) return null;
      if (rows[0].revoked_at !== null) return { result: 'already_revoked' as RevokeResult, keys: [] };
      await this.query('UPDATE minting_keys SET revoked_at = $2 WHERE id = $1', [id, now], c);
      // First uses lock the minting key row FOR SHARE, so every key of it is in this update or
      // is created revoked after it.
      const keys = await this.query<{ id: string; token_hash: string; expires_at: number }>(
        'UPDATE keys SET revoked_at = $2 WHERE minting_key_id = $1 AND revoked_at IS NULL RETURNING id, token_hash, expires_at',
        [id, now],
        c,
      );
      await this.scriptEach('REVOKE', keys.rows.map((k) => this.hashKey(k.id)));
      return { result: 'revoked' as RevokeResult, keys: keys.rows };
    });
    if (!out) return { result: 'not_found', keys: [] };
    if (out.keys.length) {
      const pipe = this.redis.pipeline();
      for (const k of out.keys) pipe.publish(this.channel, JSON.stringify({ h: k.token_hash, at: now }));
      await pipe.exec().catch(() => {});
    }
    return { result: out.result, keys: inUse(out.keys, now) };
  }

  async createMintedKeys(keys: readonly KeyRecord[]): Promise<CreateMintedResult> {
    const first = keys[0];
    if (!first?.mintingKeyId) return { ok: false, code: 'minting_key_not_found' };
    return this.tx(async (c): Promise<CreateMintedResult> => {
      // FOR SHARE: a revocation of the minting key waits for this first use, or this sees it.
      const { rows } = await this.query<{ revoked_at: number | null; versions: MintingKeyVersion[] }>(
        'SELECT revoked_at, versions FROM minting_keys WHERE id = $1 AND tenant_id = $2 FOR SHARE',
        [first.mintingKeyId, first.tenantId],
        c,
      );
      const mk = rows[0];
      if (!mk) return { ok: false, code: 'minting_key_not_found' };
      const retiresAt = mk.versions.find((v) => v.version === first.mintVersion)?.retiresAt ?? null;
      const out: KeyRecord[] = [];
      for (const k of keys) {
        await this.query(MINTED_LOCK, [k.id], c);
        const existing = await this.query<KeyRow>(`SELECT ${KEY_COLS} FROM keys WHERE id = $1`, [k.id], c);
        if (existing.rows[0]) {
          if (existing.rows[0].token_hash !== k.tokenHash) throw new MintedRefusal({ ok: false, code: 'conflict', id: k.id });
          out.push(keyFromRow(existing.rows[0]));
          continue;
        }
        if (k.budgetIds.length) {
          const found = await this.query<{ id: string }>('SELECT id FROM budgets WHERE tenant_id = $1 AND id = ANY($2::text[])', [k.tenantId, k.budgetIds], c);
          const missing = k.budgetIds.find((b) => !found.rows.some((r) => r.id === b));
          if (missing !== undefined) throw new MintedRefusal({ ok: false, code: 'budget_not_found', id: missing });
        }
        const early = await this.query<{ revoked_at: number }>('SELECT revoked_at FROM minted_revocations WHERE id = $1', [k.id], c);
        const record: KeyRecord = {
          ...k,
          expiresAt: retiresAt === null ? k.expiresAt : Math.min(k.expiresAt, retiresAt),
          revokedAt: mk.revoked_at ?? early.rows[0]?.revoked_at ?? null,
        };
        await this.insertKeyRow(record, c);
        // Not only-if-absent: the row is new, so a hash by its id is a leftover of an attempt that rolled back.
        await this.initKeyState(record, false);
        out.push(record);
      }
      return { ok: true, keys: out };
    }).catch((e: unknown) => {
      if (e instanceof MintedRefusal) return e.result;
      throw e;
    });
  }

  async revokeMintedKey(tenantId: string, id: string, mintingKeyId: string, now: number): Promise<{ result: RevokeResult; tokenHash: string | null }> {
    const out = await this.tx(async (c) => {
      await this.query(MINTED_LOCK, [id], c);
      const { rows } = await this.query<{ token_hash: string; revoked_at: number | null }>(
        'SELECT token_hash, revoked_at FROM keys WHERE id = $1 AND tenant_id = $2 FOR UPDATE',
        [id, tenantId],
        c,
      );
      const k = rows[0];
      if (k) {
        // First used since the caller looked: revoke the record like any key.
        if (k.revoked_at === null) await this.query('UPDATE keys SET revoked_at = $2 WHERE id = $1', [id, now], c);
        await this.script('REVOKE', this.hashKey(id));
        return { result: (k.revoked_at === null ? 'revoked' : 'already_revoked') as RevokeResult, tokenHash: k.token_hash };
      }
      const mk = await this.query('SELECT 1 FROM minting_keys WHERE id = $1 AND tenant_id = $2', [mintingKeyId, tenantId], c);
      if (!mk.rows[0]) return { result: 'not_found' as RevokeResult, tokenHash: null };
      const r = await this.query(
        'INSERT INTO minted_revocations (id, tenant_id, minting_key_id, revoked_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING',
        [id, tenantId, mintingKeyId, now],
        c,
      );
      return { result: (r.rowCount === 1 ? 'revoked' : 'already_revoked') as RevokeResult, tokenHash: null };
    });
    if (out.tokenHash) await this.redis.publish(this.channel, JSON.stringify({ h: out.tokenHash, at: now })).catch(() => {});
    return out;
  }

  async getMintedRevocation(id: string, tenantId: string): Promise<MintedRevocation | null> {
    const { rows } = await this.query<{ id: string; tenant_id: string; minting_key_id: string; revoked_at: number }>(
      'SELECT * FROM minted_revocations WHERE id = $1 AND tenant_id = $2',
      [id, tenantId],
    );
    const r = rows[0];
    return r ? { id: r.id, tenantId: r.tenant_id, mintingKeyId: r.minting_key_id, revokedAt: r.revoked_at } : null;
  }

  // ---- audit ----

  async appendAudit(records: readonly AuditRecord[]): Promise<void> {
    await this.insertAudit(records);
  }

  private async insertAudit(records: readonly AuditRecord[], client?: Client): Promise<void> {
    for (let i = 0; i < records.length; i += 1000) {
      const batch = records.slice(i, i + 1000);
      const args: unknown[] = [];
      const values = batch.map((r) => {
        const start = args.length;
        args.push(r.id, r.time, r.requestId, r.keyId, r.label, r.vendor, r.mode, r.method, r.path, r.status,
          r.decision, r.code, r.costMicros, r.upstreamLatencyMs, r.tenantId ?? DEFAULT_TENANT,
          r.chain?.chainId ?? null, r.chain?.seq ?? null, r.chain?.prevHash ?? null, r.chain?.hash ?? null);
        return `(${Array.from({ length: 19 }, (_, j) => `$${start + j + 1}`).join(', ')})`;
      });
      // ON CONFLICT: a batch retried after a lost commit acknowledgement is not written twice.
      await this.query(
        `INSERT INTO audit (id, time, request_id, key_id, label, vendor, mode, method, path, status, decision, code,
           cost_micros, upstream_latency_ms, tenant_id, chain_id, chain_seq, prev_hash, hash)
         VALUES ${values.join(', ')} ON CONFLICT (id) DO NOTHING`,
        args,
        client,
      );
    }
  }

  async listAudit(filter: AuditFilter, limit: number, cursor: string | null): Promise<Page<AuditRecord>> {
    const where: string[] = [];
    const args: unknown[] = [];
    const p = (v: unknown) => `$${args.push(v)}`;
    if (filter.tenantId !== undefined) where.push(`tenant_id = ${p(filter.tenantId)}`);
    if (filter.keyId !== undefined) where.push(`key_id = ${p(filter.keyId)}`);
    if (filter.decision !== undefined) where.push(`decision = ${p(filter.decision)}`);
    if (filter.vendor !== undefined) where.push(`vendor = ${p(filter.vendor)}`);
    if (filter.code !== undefined) where.push(`code = ${p(filter.code)}`);
    if (filter.since !== undefined) where.push(`time >= ${p(filter.since)}`);
    const after = decodeCursor(cursor);
    if (after) where.push(`seq < ${p(after.t)}`);
    const { rows } = await this.query<Record<string, unknown>>(
      `SELECT * FROM audit ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq DESC LIMIT ${p(limit + 1)}`,
      args,
    );
    const more = rows.length > limit;
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      items: page.map((r) => ({
        id: r.id as string,
        tenantId: r.tenant_id as string,
        time: r.time as number,
        requestId: r.request_id as string,
        keyId: r.key_id as string | null,
        label: r.label as string | null,
        vendor: r.vendor as string | null,
        mode: r.mode as Mode | null,
        method: r.method as string,
        path: r.path as string,
        status: r.status as number,
        decision: r.decision as 'allow' | 'deny',
        code: r.code as string | null,
        costMicros: r.cost_micros as number,
        upstreamLatencyMs: r.upstream_latency_ms as number | null,
        ...(r.chain_id === null
          ? {}
          : { chain: { chainId: r.chain_id as string, seq: Number(r.chain_seq), prevHash: r.prev_hash as string, hash: r.hash as string } }),
      })),
      nextCursor: more && last ? encodeCursor({ t: last.seq as number, id: '' }) : null,
    };
  }

  // ---- lifecycle ----

  /** Checks both; the error names whichever is down ("postgres", "redis" or "postgres+redis"). */
  async ping(): Promise<void> {
    const [p, r] = await Promise.allSettled([this.query('SELECT 1'), this.redis.ping()]);
    const down = [p.status === 'rejected' ? 'postgres' : '', r.status === 'rejected' ? 'redis' : ''].filter(Boolean);
    if (down.length) throw new StoreUnavailableError(down.join('+'));
  }

  async close(): Promise<void> {
    this.redis.disconnect();
    this.sub.disconnect();
    await this.pool.end().catch(() => {});
  }
}
