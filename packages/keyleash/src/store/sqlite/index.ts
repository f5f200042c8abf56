import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Mode } from '../../keys/token.js';
import { decodeCursor, encodeCursor } from '../cursor.js';
import {
  budgetWindow,
  crossedThresholds,
  DEFAULT_TENANT,
  type BudgetPatch,
  type BudgetPeriod,
  type BudgetRecord,
  type DeleteBudgetResult,
  type RateLimit,
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
  type NewMintingKeyVersion,
  type RevokeMintingKeyResult,
  type RotateMintingKeyResult,
} from '../store.js';
import type {
  AuditFilter,
  AuditRecord,
  KeyFilter,
  KeyRecord,
  KeyUsage,
  Page,
  Reservation,
  ReservationState,
  ReserveRequest,
  ReserveResult,
  RevokeResult,
  Settlement,
  Store,
} from '../store.js';
import { Checkpointer } from './checkpoint.js';
import { MIGRATIONS } from './migrations.js';
import { WritePath } from './write-path.js';

export interface SqliteStoreOptions {
  /** A file path, or ':memory:'. */
  path: string;
  /**
   * NORMAL (default) makes every commit durable against a process crash (SIGKILL); FULL also
   * against power loss, at the cost of an fsync per commit.
   */
  synchronous?: 'NORMAL' | 'FULL';
  /** How long a write waits for another process's lock on the file before it fails (default 5 s). */
  lockWaitMs?: number;
  /** How often the WAL is checkpointed, off the event loop (default 1 s). */
  checkpointEveryMs?: number;
}

interface KeyRow {
  id: string;
  tenant_id: string;
  token_hash: string;
  label: string;
  vendor: string;
  mode: Mode;
  allowed_endpoints: string;
  daily_cap_micros: number | null;
  metadata: string;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
  budget_ids: string;
  rate_requests: number | null;
  rate_per_ms: number | null;
  minting_key_id: string | null;
  mint_version: number | null;
  ancestor_ids: string;
}


interface BudgetRow {
  tenant_id: string;
  id: string;
  limit_micros: number;
  period: BudgetPeriod;
  frozen: number;
  metadata: string;
  created_at: number;
  updated_at: number;
  rate_requests: number | null;
  rate_per_ms: number | null;
}

/** A key's state as reserve and extend check it. */
interface KeyState {
  revoked_at: number | null;
  expires_at: number;
  daily_cap_micros: number | null;
  budget_ids: string;
  rate_requests: number | null;
  rate_per_ms: number | null;
  tenant_id: string;
  ancestor_ids: string;
}

const NONE: readonly string[] = [];
const ancestorsOf = (k: { ancestor_ids: string }): readonly string[] =>
  k.ancestor_ids === '[]' ? NONE : (JSON.parse(k.ancestor_ids) as string[]);

function rateOf(r: { rate_requests: number | null; rate_per_ms: number | null }): RateLimit | null {
  return r.rate_requests === null || r.rate_per_ms === null ? null : { requests: r.rate_requests, perMs: r.rate_per_ms };
}

function budgetFromRow(r: BudgetRow): BudgetRecord {
  return {
    tenantId: r.tenant_id,
    id: r.id,
    limitMicros: r.limit_micros,
    period: r.period,
    frozen: r.frozen === 1,
    metadata: JSON.parse(r.metadata) as Record<string, string>,
    rateLimit: rateOf(r),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export interface AuditRow {
  seq: number;
  id: string;
  tenant_id: string;
  time: number;
  request_id: string;
  key_id: string | null;
  label: string | null;
  vendor: string | null;
  mode: Mode | null;
  method: string;
  path: string;
  status: number;
  decision: 'allow' | 'deny';
  code: string | null;
  cost_micros: number;
  upstream_latency_ms: number | null;
  chain_id: string | null;
  chain_seq: number | null;
  prev_hash: string | null;
  hash: string | null;
}

interface ReservationRow {
  id: string;
  key_id: string;
  day: string;
  estimate_micros: number;
  final_micros: number | null;
  state: ReservationState;
  request_id: string;
  created_at: number;
  settled_at: number | null;
}

function keyFromRow(r: KeyRow): KeyRecord {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    tokenHash: r.token_hash,
    label: r.label,
    vendor: r.vendor,
    mode: r.mode,
    allowedEndpoints: JSON.parse(r.allowed_endpoints) as string[],
    dailyCapMicros: r.daily_cap_micros,
    metadata: JSON.parse(r.metadata) as Record<string, string>,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    budgetIds: JSON.parse(r.budget_ids) as string[],
    rateLimit: rateOf(r),
    // Issued keys keep the original shape: the minting fields only exist on minted keys.
    ...(r.minting_key_id === null
      ? {}
      : { mintingKeyId: r.minting_key_id, mintVersion: r.mint_version, ancestorIds: JSON.parse(r.ancestor_ids) as string[] }),
  };
}

export function auditFromRow(r: AuditRow): AuditRecord {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    time: r.time,
    requestId: r.request_id,
    keyId: r.key_id,
    label: r.label,
    vendor: r.vendor,
    mode: r.mode,
    method: r.method,
    path: r.path,
    status: r.status,
    decision: r.decision,
    code: r.code,
    costMicros: r.cost_micros,
    upstreamLatencyMs: r.upstream_latency_ms,
    ...(r.chain_id === null ? {} : { chain: { chainId: r.chain_id, seq: r.chain_seq!, prevHash: r.prev_hash!, hash: r.hash! } }),
  };
}

function migrate(db: Database.Database): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null };
  const current = row.v ?? 0;
  for (let v = current + 1; v <= MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v - 1]!);
      db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(v);
    }).immediate();
  }
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  /** The database file, for read-only connections such as the statistics worker; null for ':memory:'. */
  readonly file: string | null;
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly reserveTx;
  private readonly settleTx;
  private readonly extendTx;
  private readonly auditTx;
  private readonly createKeyTx;
  /** Every write goes through here: one transaction per event-loop turn (write-path.ts). */
  private readonly writes: WritePath;
  private checkpointer: Checkpointer | null = null;
  /** Request counts and last use of the open batch, written once per key right before it commits. */
  private uses = new Map<string, { count: number; at: number }>();

  constructor(opts: SqliteStoreOptions) {
    if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
    const db = new Database(opts.path);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.synchronous ?? 'NORMAL'}`);
    // Waiting for a lock is allowed only while opening (migrations); once serving, the write path
    // never waits synchronously for another process's lock (see write-path.ts).
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    migrate(db);
    db.pragma('busy_timeout = 0');
    this.db = db;
    this.file = opts.path === ':memory:' ? null : resolve(opts.path);
    // Checkpoints run in a worker (checkpoint.ts), never inside a caller's commit; it starts with
    // the first write, so a process that only reads (a CLI command) never starts one.
    const checkpointed = opts.path !== ':memory:';
    if (checkpointed) db.pragma('wal_autocheckpoint = 0');

    // Prepared once; the proxy's hot path runs reserve and settle on every call.
    this.stmts = {
      insertKey: db.prepare(`INSERT INTO keys (id, token_hash, label, vendor, mode, allowed_endpoints,
        daily_cap_micros, metadata, created_at, expires_at, revoked_at, budget_ids, rate_requests, rate_per_ms, tenant_id,
        minting_key_id, mint_version, ancestor_ids)
        VALUES (@id, @token_hash, @label, @vendor, @mode, @allowed_endpoints, @daily_cap_micros,
        @metadata, @created_at, @expires_at, @revoked_at, @budget_ids, @rate_requests, @rate_per_ms, @tenant_id,
        @minting_key_id, @mint_version, @ancestor_ids)`),
      insertLineage: db.prepare('INSERT INTO key_lineage (ancestor_id, key_id) VALUES (?, ?)'),
      insertMintingKey: db.prepare(`INSERT INTO minting_keys (id, tenant_id, label, mode, vendors, allowed_endpoints, max_cap_micros,
        max_ttl_seconds, budget_ids, allowed_budgets, metadata, versions, created_at, revoked_at) VALUES (@id, @tenant_id, @label, @mode,
        @vendors, @allowed_endpoints, @max_cap_micros, @max_ttl_seconds, @budget_ids, @allowed_budgets, @metadata, @versions, @created_at, NULL)`),
      mintingKey: db.prepare('SELECT * FROM minting_keys WHERE id = ?'),
      setVersions: db.prepare('UPDATE minting_keys SET versions = ? WHERE id = ?'),
      shortenMinted: db.prepare(`UPDATE keys SET expires_at = ? WHERE minting_key_id = ? AND mint_version < ? AND expires_at > ?`),
      revokeMintingKey: db.prepare('UPDATE minting_keys SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL'),
      revokeMinted: db.prepare('UPDATE keys SET revoked_at = ? WHERE minting_key_id = ? AND revoked_at IS NULL RETURNING id, token_hash, expires_at'),
      mintedRevocation: db.prepare('SELECT * FROM minted_revocations WHERE id = ?'),
      insertMintedRevocation: db.prepare(`INSERT INTO minted_revocations (id, tenant_id, minting_key_id, revoked_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (id) DO NOTHING`),
      attachBudget: db.prepare('INSERT INTO key_budgets (tenant_id, budget_id, key_id, position) VALUES (?, ?, ?, ?)'),
      keyBudgets: db.prepare(`SELECT b.id, b.limit_micros, b.period, b.frozen, b.rate_requests, b.rate_per_ms FROM key_budgets kb
        JOIN budgets b ON b.tenant_id = kb.tenant_id AND b.id = kb.budget_id WHERE kb.key_id = ? ORDER BY kb.position`),
      budgetSpend: db.prepare('SELECT spent_micros FROM budget_spend WHERE tenant_id = ? AND budget_id = ? AND win = ?').pluck(),
      addBudgetSpend: db.prepare(`INSERT INTO budget_spend (tenant_id, budget_id, win, spent_micros) VALUES (?, ?, ?, ?)
        ON CONFLICT (tenant_id, budget_id, win) DO UPDATE SET spent_micros = spent_micros + excluded.spent_micros`),
      insertBudget: db.prepare(`INSERT INTO budgets (tenant_id, id, limit_micros, period, frozen, metadata, created_at, updated_at,
        rate_requests, rate_per_ms) VALUES (@tenant_id, @id, @limit_micros, @period, @frozen, @metadata, @created_at, @updated_at,
        @rate_requests, @rate_per_ms) ON CONFLICT DO NOTHING`),
      budget: db.prepare('SELECT * FROM budgets WHERE tenant_id = ? AND id = ?'),
      updateBudget: db.prepare(`UPDATE budgets SET limit_micros = @limit_micros, frozen = @frozen, metadata = @metadata,
        rate_requests = @rate_requests, rate_per_ms = @rate_per_ms, updated_at = @updated_at WHERE tenant_id = @tenant_id AND id = @id`),
      budgetOfMintingKey: db.prepare(`SELECT 1 FROM minting_keys WHERE tenant_id = ? AND revoked_at IS NULL
        AND EXISTS (SELECT 1 FROM json_each(minting_keys.budget_ids) WHERE value = ?) LIMIT 1`).pluck(),
      budgetInUse: db.prepare(`SELECT 1 FROM key_budgets kb JOIN keys k ON k.id = kb.key_id
        WHERE kb.tenant_id = ? AND kb.budget_id = ? AND k.revoked_at IS NULL AND k.expires_at > ? LIMIT 1`).pluck(),
      deleteBudgetLinks: db.prepare('DELETE FROM key_budgets WHERE tenant_id = ? AND budget_id = ?'),
      deleteBudgetSpend: db.prepare('DELETE FROM budget_spend WHERE tenant_id = ? AND budget_id = ?'),
      deleteBudget: db.prepare('DELETE FROM budgets WHERE tenant_id = ? AND id = ?'),
      idem: db.prepare('SELECT fingerprint, reservation_id, created_at FROM idempotency WHERE key_id = ? AND idem_key = ?'),
      putIdem: db.prepare(`INSERT INTO idempotency (key_id, idem_key, fingerprint, reservation_id, created_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (key_id, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint,
        reservation_id = excluded.reservation_id, created_at = excluded.created_at`),
      pointIdem: db.prepare('UPDATE idempotency SET reservation_id = ? WHERE key_id = ? AND idem_key = ?'),
      purgeIdem: db.prepare('DELETE FROM idempotency WHERE created_at < ?'),
      keyById: db.prepare('SELECT * FROM keys WHERE id = ?'),
      keyByIdIn: db.prepare('SELECT * FROM keys WHERE id = ? AND tenant_id = ?'),
      revokeIn: db.prepare('UPDATE keys SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL'),
      keyByHash: db.prepare('SELECT * FROM keys WHERE token_hash = ?'),
      keyState: db.prepare(
        'SELECT revoked_at, expires_at, daily_cap_micros, budget_ids, rate_requests, rate_per_ms, tenant_id, ancestor_ids FROM keys WHERE id = ?',
      ),
      revoke: db.prepare('UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
      keyUse: db.prepare('UPDATE keys SET request_count = request_count + ?, last_used_at = ? WHERE id = ?'),
      usage: db.prepare('SELECT request_count, last_used_at FROM keys WHERE id = ?'),
      spend: db.prepare('SELECT spent_micros FROM key_spend WHERE key_id = ? AND day = ?').pluck(),
      addSpend: db.prepare(`INSERT INTO key_spend (key_id, day, spent_micros) VALUES (?, ?, ?)
        ON CONFLICT (key_id, day) DO UPDATE SET spent_micros = spent_micros + excluded.spent_micros`),
      insertReservation: db.prepare(`INSERT INTO reservations (id, key_id, day, estimate_micros, state,
        request_id, method, path, created_at) VALUES (?, ?, ?, ?, 'reserved', ?, ?, ?, ?)`),
      reservation: db.prepare('SELECT * FROM reservations WHERE id = ?'),
      growReservation: db.prepare(
        `UPDATE reservations SET estimate_micros = estimate_micros + ? WHERE id = ? AND state = 'reserved'`,
      ),
      endReservation: db.prepare(
        `UPDATE reservations SET state = ?, final_micros = ?, settled_at = ? WHERE id = ? AND state = 'reserved'`,
      ),
      staleReservations: db.prepare(
        `UPDATE reservations SET state = 'unknown', final_micros = estimate_micros, settled_at = ?
         WHERE state = 'reserved' AND created_at < ?
         RETURNING id, key_id, request_id, method, path, estimate_micros, created_at`,
      ),
      insertAudit: db.prepare(`INSERT INTO audit (id, time, request_id, key_id, label, vendor, mode, method,
        path, status, decision, code, cost_micros, upstream_latency_ms, tenant_id, chain_id, chain_seq, prev_hash,
        hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    };

    const s = this.stmts;
    type Attached = { id: string; limit_micros: number; period: BudgetPeriod; frozen: number; rate_requests: number | null; rate_per_ms: number | null };
    /** The key's budgets; no query for a key without any (the common case). */
    const budgetsOf = (keyId: string, budgetIds: string): Attached[] =>
      budgetIds === '[]' ? [] : (s.keyBudgets.all(keyId) as Attached[]);

    /** Every check reserve and extend share; null when `add` fits everywhere. */
    const check = (key: KeyState | undefined, keyId: string, day: string, add: number, now: number, limitRate = true) => {
      if (!key) return { refused: { ok: false, code: 'invalid_key' } as ReserveResult };
      if (key.revoked_at !== null) return { refused: { ok: false, code: 'key_revoked' } as ReserveResult };
      if (key.expires_at <= now) return { refused: { ok: false, code: 'key_expired' } as ReserveResult };
      // A narrowed key lives only as long as every key it came from, and spends from each one's cap.
      const ancestors: Array<{ id: string; cap: number | null; spent: number }> = [];
      for (const id of ancestorsOf(key)) {
        const a = s.keyState.get(id) as KeyState | undefined;
        if (!a) return { refused: { ok: false, code: 'invalid_key' } as ReserveResult };
        if (a.revoked_at !== null) return { refused: { ok: false, code: 'key_revoked' } as ReserveResult };
        if (a.expires_at <= now) return { refused: { ok: false, code: 'key_expired' } as ReserveResult };
        ancestors.push({ id, cap: a.daily_cap_micros, spent: (s.spend.get(id, day) as number | undefined) ?? 0 });
      }
      const budgets = budgetsOf(keyId, key.budget_ids);
      for (const b of budgets) {
        if (b.frozen) return { refused: { ok: false, code: 'budget_frozen', budgetId: b.id } as ReserveResult };
      }
      // Token buckets: all are checked before any is taken from (take() after every check passed).
      const buckets: Array<{ name: string; tokens: number; rate: RateLimit }> = [];
      const rates: Array<[string, 'key' | 'budget', string, RateLimit | null]> = [
        [`k:${keyId}`, 'key', keyId, rateOf(key)],
        ...budgets.map((b): [string, 'budget', string, RateLimit | null] => [`b:${key.tenant_id}:${b.id}`, 'budget', b.id, rateOf(b)]),
      ];
      for (const [name, kind, id, rate] of rates) {
        if (!rate || !limitRate) continue;
        const tokens = this.bucketLevel(name, rate, now);
        if (tokens < 1) {
          const retryAfterMs = Math.ceil(((1 - tokens) * rate.perMs) / rate.requests);
          return { refused: { ok: false, code: 'rate_limited', retryAfterMs, limit: { kind, id } } as ReserveResult };
        }
        buckets.push({ name, tokens, rate });
      }
      const spent = (s.spend.get(keyId, day) as number | undefined) ?? 0;
      const cap = key.daily_cap_micros;
      if (cap !== null && spent + add > cap) {
        return { refused: { ok: false, code: 'cap_exhausted', spentMicros: spent, capMicros: cap } as ReserveResult };
      }
      for (const a of ancestors) {
        if (a.cap !== null && a.spent + add > a.cap) {
          return {
            refused: { ok: false, code: 'cap_exhausted', spentMicros: a.spent, capMicros: a.cap, limit: { kind: 'parent_key', id: a.id } } as ReserveResult,
          };
        }
      }
      const windows: string[] = [];
      const spends: number[] = [];
      for (const b of budgets) {
        const win = budgetWindow(b.period, day);
        const bSpent = (s.budgetSpend.get(key.tenant_id, b.id, win) as number | undefined) ?? 0;
        if (bSpent + add > b.limit_micros) {
          return {
            refused: {
              ok: false,
              code: 'cap_exhausted',
              spentMicros: bSpent,
              capMicros: b.limit_micros,
              limit: { kind: 'budget', id: b.id, period: b.period, window: win },
            } as ReserveResult,
          };
        }
        windows.push(win);
        spends.push(bSpent);
      }
      return { refused: null, spent, budgets, windows, spends, buckets, ancestors };
    };
    const addAncestors = (ids: readonly string[], day: string, delta: number) => {
      for (const id of ids) s.addSpend.run(id, day, delta);
    };
    const addBudgets = (tenantId: string, budgets: Attached[], day: string, delta: number) => {
      for (const b of budgets) s.addBudgetSpend.run(tenantId, b.id, budgetWindow(b.period, day), delta);
    };

    this.reserveTx = ((req: ReserveRequest): ReserveResult => {
      const state = s.keyState.get(req.keyId) as KeyState | undefined;
      const idem = req.idempotency;
      let repoint = false;
      if (idem) {
        const rec = s.idem.get(req.keyId, idem.key) as { fingerprint: string; reservation_id: string; created_at: number } | undefined;
        if (rec && rec.created_at > req.now - idem.ttlMs) {
          if (rec.fingerprint !== idem.fingerprint) return { ok: false, code: 'idempotency_key_reused' };
          const orig = s.reservation.get(rec.reservation_id) as ReservationRow | undefined;
          if (orig && orig.state !== 'released') {
            // A replay: the same checks as a free call, nothing charged or recorded.
            const c = check(state, req.keyId, req.day, 0, req.now, false);
            if (c.refused) return c.refused;
            return { ok: true, spentMicros: c.spent, replayOf: rec.reservation_id };
          }
          repoint = true;
        }
      }
      const c = check(state, req.keyId, req.day, req.amountMicros, req.now);
      if (c.refused) return c.refused;
      if (idem) {
        if (repoint) s.pointIdem.run(req.reservationId, req.keyId, idem.key);
        else s.putIdem.run(req.keyId, idem.key, idem.fingerprint, req.reservationId, req.now);
      }
      this.take(c.buckets, req.now);
      s.addSpend.run(req.keyId, req.day, req.amountMicros);
      addAncestors(ancestorsOf(state!), req.day, req.amountMicros);
      addBudgets(state!.tenant_id, c.budgets, req.day, req.amountMicros);
      s.insertReservation.run(
        req.reservationId, req.keyId, req.day, req.amountMicros, req.requestId, req.method, req.path, req.now,
      );
      const use = this.uses.get(req.keyId);
      if (use) (use.count++, (use.at = Math.max(use.at, req.now)));
      else this.uses.set(req.keyId, { count: 1, at: req.now });
      const thresholds = c.budgets.length
        ? crossedThresholds(c.budgets.map((b, i) => ({ id: b.id, window: c.windows[i]!, before: c.spends[i]!, after: c.spends[i]! + req.amountMicros, limit: b.limit_micros })))
        : undefined;
      return thresholds ? { ok: true, spentMicros: c.spent + req.amountMicros, thresholds } : { ok: true, spentMicros: c.spent + req.amountMicros };
    });

    this.extendTx = ((id: string, add: number, now: number): ReserveResult => {
      const r = s.reservation.get(id) as ReservationRow | undefined;
      if (!r || r.state !== 'reserved') return { ok: false, code: 'invalid_key' };
      const state = s.keyState.get(r.key_id) as KeyState | undefined;
      const c = check(state, r.key_id, r.day, add, now, false);
      if (c.refused) return c.refused;
      s.growReservation.run(add, id);
      s.addSpend.run(r.key_id, r.day, add);
      addAncestors(ancestorsOf(state!), r.day, add);
      addBudgets(state!.tenant_id, c.budgets, r.day, add);
      return { ok: true, spentMicros: c.spent + add };
    });

    this.settleTx = ((id: string, outcome: Settlement, now: number, audit?: AuditRecord) => {
      // The call's audit record commits with its settlement, or not at all.
      if (audit) this.insertAudit(audit);
      const r = s.reservation.get(id) as ReservationRow | undefined;
      if (!r || r.state !== 'reserved') return;
      let final: number;
      if (outcome.state === 'settled') final = outcome.micros;
      else if (outcome.state === 'released') final = 0;
      else final = r.estimate_micros;
      s.endReservation.run(outcome.state, final, now, id);
      const delta = final - r.estimate_micros;
      if (delta !== 0) {
        s.addSpend.run(r.key_id, r.day, delta);
        const key = s.keyState.get(r.key_id) as KeyState | undefined;
        if (key) {
          addAncestors(ancestorsOf(key), r.day, delta);
          addBudgets(key.tenant_id, budgetsOf(r.key_id, key.budget_ids), r.day, delta);
        }
      }
    });

    this.createKeyTx = db.transaction((k: KeyRecord) => this.insertKey(k));

    this.auditTx = ((records: readonly AuditRecord[]) => {
      for (const r of records) this.insertAudit(r);
    });

    this.writes = new WritePath(db, {
      ...(opts.lockWaitMs !== undefined ? { lockWaitMs: opts.lockWaitMs } : {}),
      beforeCommit: () => {
        if (checkpointed && !this.checkpointer) this.checkpointer = new Checkpointer(opts.path, opts.checkpointEveryMs);
        if (!this.uses.size) return;
        for (const [id, u] of this.uses) s.keyUse.run(u.count, u.at, id);
        this.uses.clear();
      },
      onRollback: () => this.uses.clear(),
    });
  }

  private insertAudit(r: AuditRecord): void {
    // Positional parameters: binding 19 named ones from an object costs more than the insert.
    const c = r.chain;
    this.stmts.insertAudit.run(
      r.id, r.time, r.requestId, r.keyId, r.label, r.vendor, r.mode, r.method, r.path, r.status, r.decision, r.code, r.costMicros,
      r.upstreamLatencyMs, r.tenantId ?? DEFAULT_TENANT, c?.chainId ?? null, c?.seq ?? null, c?.prevHash ?? null, c?.hash ?? null,
    );
  }

  async createKey(k: KeyRecord): Promise<void> {
    await this.writes.run(() => this.createKeyTx(k));
  }

  private insertKey(k: KeyRecord): void {
    const ancestors = k.ancestorIds ?? [];
    this.stmts.insertKey.run({
      revoked_at: k.revokedAt,
      minting_key_id: k.mintingKeyId ?? null,
      mint_version: k.mintVersion ?? null,
      ancestor_ids: JSON.stringify(ancestors),
      id: k.id,
      token_hash: k.tokenHash,
      label: k.label,
      vendor: k.vendor,
      mode: k.mode,
      allowed_endpoints: JSON.stringify(k.allowedEndpoints),
      daily_cap_micros: k.dailyCapMicros,
      metadata: JSON.stringify(k.metadata),
      created_at: k.createdAt,
      expires_at: k.expiresAt,
      budget_ids: JSON.stringify(k.budgetIds),
      rate_requests: k.rateLimit?.requests ?? null,
      rate_per_ms: k.rateLimit?.perMs ?? null,
      tenant_id: k.tenantId,
    });
    k.budgetIds.forEach((b, i) => this.stmts.attachBudget.run(k.tenantId, b, k.id, i));
    for (const a of ancestors) this.stmts.insertLineage.run(a, k.id);
  }

  async getKeyById(id: string, tenantId?: string): Promise<KeyRecord | null> {
    const row = (tenantId === undefined ? this.stmts.keyById.get(id) : this.stmts.keyByIdIn.get(id, tenantId)) as KeyRow | undefined;
    return row ? keyFromRow(row) : null;
  }

  async getKeyByHash(tokenHash: string): Promise<KeyRecord | null> {
    const row = this.stmts.keyByHash.get(tokenHash) as KeyRow | undefined;
    return row ? keyFromRow(row) : null;
  }

  async listKeys(filter: KeyFilter, limit: number, cursor: string | null, now: number): Promise<Page<KeyRecord>> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.status === 'active') where.push('revoked_at IS NULL AND expires_at > ?'), args.push(now);
    if (filter.status === 'expired') where.push('revoked_at IS NULL AND expires_at <= ?'), args.push(now);
    if (filter.status === 'revoked') where.push('revoked_at IS NOT NULL');
    if (filter.vendor !== undefined) where.push('vendor = ?'), args.push(filter.vendor);
    if (filter.mode !== undefined) where.push('mode = ?'), args.push(filter.mode);
    if (filter.labelPrefix !== undefined) {
      // substr comparison, not LIKE: a prefix may itself contain % or _. substr counts code points,
      // not UTF-16 units, so measure the prefix the same way (an emoji is 1, not 2).
      where.push('substr(label, 1, ?) = ?');
      args.push([...filter.labelPrefix].length, filter.labelPrefix);
    }
    for (const [k, v] of Object.entries(filter.metadata ?? {})) {
      where.push('json_extract(metadata, ?) = ?');
      args.push(`$."${k}"`, v);
    }
    if (filter.tenantId !== undefined) where.push('tenant_id = ?'), args.push(filter.tenantId);
    if (filter.mintingKeyId !== undefined) where.push('minting_key_id = ?'), args.push(filter.mintingKeyId);
    if (filter.budgetId !== undefined) {
      where.push('id IN (SELECT key_id FROM key_budgets WHERE tenant_id = ? AND budget_id = ?)');
      args.push(filter.tenantId ?? DEFAULT_TENANT, filter.budgetId);
    }
    const after = decodeCursor(cursor);
    if (after) {
      where.push('(created_at < ? OR (created_at = ? AND id < ?))');
      args.push(after.t, after.t, after.id);
    }
    const sql = `SELECT * FROM keys ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
      ORDER BY created_at DESC, id DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...args, limit + 1) as KeyRow[];
    const more = rows.length > limit;
    const items = rows.slice(0, limit).map(keyFromRow);
    const last = items[items.length - 1];
    return { items, nextCursor: more && last ? encodeCursor({ t: last.createdAt, id: last.id }) : null };
  }

  async revokeKey(id: string, now: number, tenantId?: string): Promise<RevokeResult> {
    const changed = await this.writes.run(
      () => (tenantId === undefined ? this.stmts.revoke.run(now, id) : this.stmts.revokeIn.run(now, id, tenantId)).changes,
    );
    if (changed === 1) return 'revoked';
    return (await this.getKeyById(id, tenantId)) ? 'already_revoked' : 'not_found';
  }

  async keyUsage(id: string, day: string): Promise<KeyUsage> {
    const u = this.stmts.usage.get(id) as { request_count: number; last_used_at: number | null } | undefined;
    const spent = (this.stmts.spend.get(id, day) as number | undefined) ?? 0;
    // Uses of the batch still open are written when it commits.
    const open = this.uses.get(id);
    const last = open ? Math.max(open.at, u?.last_used_at ?? 0) : (u?.last_used_at ?? null);
    return { requestCount: (u?.request_count ?? 0) + (open?.count ?? 0), lastUsedAt: last, spentMicros: spent };
  }

  async reserve(req: ReserveRequest): Promise<ReserveResult> {
    // The check runs at once inside the batch that holds the write lock (BEGIN IMMEDIATE), so two
    // processes on one file cannot both pass the cap check; the answer comes once it is committed.
    return this.writes.run(() => this.reserveTx(req), true);
  }

  async extendReservation(reservationId: string, addMicros: number, now: number): Promise<ReserveResult> {
    return this.writes.run(() => this.extendTx(reservationId, addMicros, now), true);
  }

  async settle(reservationId: string, outcome: Settlement, now: number, audit?: AuditRecord): Promise<void> {
    await this.writes.run(() => this.settleTx(reservationId, outcome, now, audit), true);
  }

  async getReservation(id: string): Promise<Reservation | null> {
    const r = this.stmts.reservation.get(id) as ReservationRow | undefined;
    if (!r) return null;
    return reservationFromRow(r as unknown as Record<string, unknown>);
  }

  async reconcileStale(olderThan: number, now: number): Promise<StaleReservation[]> {
    const rows = await this.writes.run(() => this.stmts.staleReservations.all(now, olderThan) as Array<Record<string, unknown>>);
    return rows.map(staleFromRow);
  }

  // ---- budgets ----

  /**
   * Rate-limit buckets live in this process's memory: one process per SQLite file is the
   * supported shape (replicas use Postgres + Redis, where buckets are in Redis).
   */
  private readonly buckets = new Map<string, { tokens: number; at: number; rate: RateLimit }>();

  private bucketLevel(name: string, rate: RateLimit, now: number): number {
    const b = this.buckets.get(name);
    if (!b || b.rate.requests !== rate.requests || b.rate.perMs !== rate.perMs) return rate.requests;
    const refill = (Math.max(0, now - b.at) * rate.requests) / rate.perMs;
    return Math.min(rate.requests, b.tokens + refill);
  }

  private take(buckets: Array<{ name: string; tokens: number; rate: RateLimit }>, now: number): void {
    for (const { name, tokens, rate } of buckets) {
      const prev = this.buckets.get(name);
      this.buckets.set(name, { tokens: tokens - 1, at: Math.max(now, prev?.at ?? now), rate });
    }
  }

  async createBudget(b: BudgetRecord): Promise<boolean> {
    const r = await this.writes.run(() => this.stmts.insertBudget.run({
      tenant_id: b.tenantId,
      id: b.id,
      limit_micros: b.limitMicros,
      period: b.period,
      frozen: b.frozen ? 1 : 0,
      metadata: JSON.stringify(b.metadata),
      created_at: b.createdAt,
      updated_at: b.updatedAt,
      rate_requests: b.rateLimit?.requests ?? null,
      rate_per_ms: b.rateLimit?.perMs ?? null,
    }));
    return r.changes === 1;
  }

  async getBudget(tenantId: string, id: string): Promise<BudgetRecord | null> {
    const row = this.stmts.budget.get(tenantId, id) as BudgetRow | undefined;
    return row ? budgetFromRow(row) : null;
  }

  async listBudgets(tenantId: string, limit: number, cursor: string | null): Promise<Page<BudgetRecord>> {
    const after = decodeCursor(cursor);
    const rows = this.db
      .prepare(`SELECT * FROM budgets WHERE tenant_id = ? ${after ? 'AND id > ?' : ''} ORDER BY id LIMIT ?`)
      .all(...(after ? [tenantId, after.id, limit + 1] : [tenantId, limit + 1])) as BudgetRow[];
    const more = rows.length > limit;
    const items = rows.slice(0, limit).map(budgetFromRow);
    const last = items[items.length - 1];
    return { items, nextCursor: more && last ? encodeCursor({ t: 0, id: last.id }) : null };
  }

  async updateBudget(tenantId: string, id: string, patch: BudgetPatch, now: number): Promise<BudgetRecord | null> {
    return this.writes.run(this.db.transaction(() => {
      const cur = this.stmts.budget.get(tenantId, id) as BudgetRow | undefined;
      if (!cur) return null;
      this.stmts.updateBudget.run({
        tenant_id: tenantId,
        id,
        limit_micros: patch.limitMicros ?? cur.limit_micros,
        frozen: patch.frozen === undefined ? cur.frozen : patch.frozen ? 1 : 0,
        metadata: patch.metadata === undefined ? cur.metadata : JSON.stringify(patch.metadata),
        rate_requests: patch.rateLimit === undefined ? cur.rate_requests : (patch.rateLimit?.requests ?? null),
        rate_per_ms: patch.rateLimit === undefined ? cur.rate_per_ms : (patch.rateLimit?.perMs ?? null),
        updated_at: now,
      });
      return budgetFromRow(this.stmts.budget.get(tenantId, id) as BudgetRow);
    }));
  }

  async deleteBudget(tenantId: string, id: string, now: number): Promise<DeleteBudgetResult> {
    return this.writes.run(this.db.transaction((): DeleteBudgetResult => {
      if (!this.stmts.budget.get(tenantId, id)) return 'not_found';
      if (this.stmts.budgetInUse.get(tenantId, id, now)) return 'in_use';
      // A minting key attaches it to every key it will mint.
      if (this.stmts.budgetOfMintingKey.get(tenantId, id)) return 'in_use';
      this.stmts.deleteBudgetLinks.run(tenantId, id);
      this.stmts.deleteBudgetSpend.run(tenantId, id);
      this.stmts.deleteBudget.run(tenantId, id);
      return 'deleted';
    }));
  }

  async budgetSpend(tenantId: string, id: string, window: string): Promise<number> {
    return (this.stmts.budgetSpend.get(tenantId, id, window) as number | undefined) ?? 0;
  }

  async purgeIdempotency(olderThan: number): Promise<number> {
    return this.writes.run(() => this.stmts.purgeIdem.run(olderThan).changes);
  }

  // ---- minting keys and minted keys ----

  async createMintingKey(m: MintingKeyRecord): Promise<void> {
    await this.writes.run(() => this.stmts.insertMintingKey.run({
      id: m.id,
      tenant_id: m.tenantId,
      label: m.label,
      mode: m.mode,
      vendors: JSON.stringify(m.vendors),
      allowed_endpoints: JSON.stringify(m.allowedEndpoints),
      max_cap_micros: m.maxCapMicros,
      max_ttl_seconds: m.maxTtlSeconds,
      budget_ids: JSON.stringify(m.budgetIds),
      allowed_budgets: JSON.stringify(m.allowedBudgets),
      metadata: JSON.stringify(m.metadata),
      versions: JSON.stringify(m.versions),
      created_at: m.createdAt,
    }));
  }

  private mintingKeyRecord(id: string, tenantId?: string): MintingKeyRecord | undefined {
    const row = this.stmts.mintingKey.get(id) as Record<string, unknown> | undefined;
    return row && (tenantId === undefined || row.tenant_id === tenantId) ? mintingKeyFromRow(row) : undefined;
  }

  async getMintingKey(id: string, tenantId?: string): Promise<MintingKeyRecord | null> {
    return this.mintingKeyRecord(id, tenantId) ?? null;
  }

  async listMintingKeys(tenantId: string, limit: number, cursor: string | null): Promise<Page<MintingKeyRecord>> {
    const after = decodeCursor(cursor);
    const rows = this.db
      .prepare(
        `SELECT * FROM minting_keys WHERE tenant_id = ? ${after ? 'AND (created_at < ? OR (created_at = ? AND id < ?))' : ''}
         ORDER BY created_at DESC, id DESC LIMIT ?`,
      )
      .all(...(after ? [tenantId, after.t, after.t, after.id, limit + 1] : [tenantId, limit + 1])) as Array<Record<string, unknown>>;
    const more = rows.length > limit;
    const items = rows.slice(0, limit).map(mintingKeyFromRow);
    const last = items[items.length - 1];
    return { items, nextCursor: more && last ? encodeCursor({ t: last.createdAt, id: last.id }) : null };
  }

  async rotateMintingKey(tenantId: string, id: string, next: NewMintingKeyVersion, retireAt: number): Promise<RotateMintingKeyResult> {
    return this.writes.run(this.db.transaction((): RotateMintingKeyResult => {
      const record = this.mintingKeyRecord(id, tenantId);
      if (!record) return { ok: false, code: 'not_found' };
      if (record.revokedAt !== null) return { ok: false, code: 'revoked' };
      const versions = retireVersions(record.versions, retireAt, next);
      this.stmts.setVersions.run(JSON.stringify(versions), id);
      this.stmts.shortenMinted.run(retireAt, id, versions[versions.length - 1]!.version, retireAt);
      return { ok: true, record: { ...record, versions } };
    }));
  }

  async revokeMintingKey(tenantId: string, id: string, now: number): Promise<RevokeMintingKeyResult> {
    return this.writes.run(this.db.transaction((): RevokeMintingKeyResult => {
      const changed = this.stmts.revokeMintingKey.run(now, id, tenantId).changes;
      if (changed === 0) return { result: this.mintingKeyRecord(id, tenantId) ? 'already_revoked' : 'not_found', keys: [] };
      const revoked = this.stmts.revokeMinted.all(now, id) as Array<{ id: string; token_hash: string; expires_at: number }>;
      return { result: 'revoked', keys: inUse(revoked, now) };
    }));
  }

  async createMintedKeys(keys: readonly KeyRecord[]): Promise<CreateMintedResult> {
    try {
      return await this.createMintedTx(keys);
    } catch (e) {
      if (e instanceof MintedRefusal) return e.result;
      throw e;
    }
  }

  private createMintedTx(keys: readonly KeyRecord[]): Promise<CreateMintedResult> {
    return this.writes.run(this.db.transaction((): CreateMintedResult => {
      const first = keys[0];
      const mk = first?.mintingKeyId ? this.mintingKeyRecord(first.mintingKeyId, first.tenantId) : undefined;
      if (!first || !mk) return { ok: false, code: 'minting_key_not_found' };
      const retiresAt = mk.versions.find((v) => v.version === first.mintVersion)?.retiresAt ?? null;
      const out: KeyRecord[] = [];
      for (const k of keys) {
        const existing = this.stmts.keyById.get(k.id) as KeyRow | undefined;
        if (existing) {
          if (existing.token_hash !== k.tokenHash) throw new MintedRefusal({ ok: false, code: 'conflict', id: k.id });
          out.push(keyFromRow(existing));
          continue;
        }
        for (const b of k.budgetIds) if (!this.stmts.budget.get(k.tenantId, b)) throw new MintedRefusal({ ok: false, code: 'budget_not_found', id: b });
        const early = this.stmts.mintedRevocation.get(k.id) as { revoked_at: number } | undefined;
        const record: KeyRecord = {
          ...k,
          expiresAt: retiresAt === null ? k.expiresAt : Math.min(k.expiresAt, retiresAt),
          revokedAt: mk.revokedAt ?? early?.revoked_at ?? null,
        };
        this.insertKey(record);
        out.push(record);
      }
      return { ok: true, keys: out };
    }));
  }

  async revokeMintedKey(tenantId: string, id: string, mintingKeyId: string, now: number): Promise<{ result: RevokeResult; tokenHash: string | null }> {
    return this.writes.run(this.db.transaction(() => {
      // First used since the caller looked: revoke the record like any key.
      if (this.stmts.keyByIdIn.get(id, tenantId)) {
        const changed = this.stmts.revokeIn.run(now, id, tenantId).changes;
        const row = this.stmts.keyById.get(id) as KeyRow;
        return { result: (changed === 1 ? 'revoked' : 'already_revoked') as RevokeResult, tokenHash: row.token_hash };
      }
      if (!this.mintingKeyRecord(mintingKeyId, tenantId)) return { result: 'not_found' as RevokeResult, tokenHash: null };
      const r = this.stmts.insertMintedRevocation.run(id, tenantId, mintingKeyId, now);
      return { result: (r.changes === 1 ? 'revoked' : 'already_revoked') as RevokeResult, tokenHash: null };
    }));
  }

  async getMintedRevocation(id: string, tenantId: string): Promise<MintedRevocation | null> {
    const r = this.stmts.mintedRevocation.get(id) as { id: string; tenant_id: string; minting_key_id: string; revoked_at: number } | undefined;
    if (!r || r.tenant_id !== tenantId) return null;
    return { id: r.id, tenantId: r.tenant_id, mintingKeyId: r.minting_key_id, revokedAt: r.revoked_at };
  }

  async appendAudit(records: readonly AuditRecord[]): Promise<void> {
    if (records.length) await this.writes.run(() => this.auditTx(records), true);
  }

  async listAudit(filter: AuditFilter, limit: number, cursor: string | null): Promise<Page<AuditRecord>> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.tenantId !== undefined) where.push('tenant_id = ?'), args.push(filter.tenantId);
    if (filter.keyId !== undefined) where.push('key_id = ?'), args.push(filter.keyId);
    if (filter.decision !== undefined) where.push('decision = ?'), args.push(filter.decision);
    if (filter.vendor !== undefined) where.push('vendor = ?'), args.push(filter.vendor);
    if (filter.code !== undefined) where.push('code = ?'), args.push(filter.code);
    if (filter.since !== undefined) where.push('time >= ?'), args.push(filter.since);
    const after = decodeCursor(cursor);
    if (after) where.push('seq < ?'), args.push(after.t);
    const sql = `SELECT * FROM audit ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...args, limit + 1) as AuditRow[];
    const more = rows.length > limit;
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { items: page.map(auditFromRow), nextCursor: more && last ? encodeCursor({ t: last.seq, id: '' }) : null };
  }

  /** A read-only statement on this connection (statistics of an in-memory store; a file is read by a worker). */
  async readRows(sql: string, params: readonly unknown[]): Promise<Array<Record<string, unknown>>> {
    const stmt = this.db.prepare(sql);
    if (!stmt.readonly) throw new Error('readRows: not a read-only statement');
    return stmt.all(...params) as Array<Record<string, unknown>>;
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    this.writes.close();
    await this.checkpointer?.stop();
    this.db.close();
  }
}
