import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Mode } from '../../keys/token.js';
import { decodeCursor, encodeCursor } from '../cursor.js';
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
import { MIGRATIONS } from './migrations.js';

export interface SqliteStoreOptions {
  /** A file path, or ':memory:'. */
  path: string;
  /**
   * NORMAL (default) makes every commit durable against a process crash (SIGKILL); FULL also
   * against power loss, at the cost of an fsync per commit.
   */
  synchronous?: 'NORMAL' | 'FULL';
}

interface KeyRow {
  id: string;
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
}

interface AuditRow {
  seq: number;
  id: string;
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
  };
}

function auditFromRow(r: AuditRow): AuditRecord {
  return {
    id: r.id,
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
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly reserveTx;
  private readonly settleTx;
  private readonly extendTx;
  private readonly auditTx;

  constructor(opts: SqliteStoreOptions) {
    if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
    const db = new Database(opts.path);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.synchronous ?? 'NORMAL'}`);
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    migrate(db);
    this.db = db;

    // Prepared once; the proxy's hot path runs reserve and settle on every call.
    this.stmts = {
      insertKey: db.prepare(`INSERT INTO keys (id, token_hash, label, vendor, mode, allowed_endpoints,
        daily_cap_micros, metadata, created_at, expires_at, revoked_at)
        VALUES (@id, @token_hash, @label, @vendor, @mode, @allowed_endpoints, @daily_cap_micros,
        @metadata, @created_at, @expires_at, NULL)`),
      keyById: db.prepare('SELECT * FROM keys WHERE id = ?'),
      keyByHash: db.prepare('SELECT * FROM keys WHERE token_hash = ?'),
      keyState: db.prepare('SELECT revoked_at, expires_at, daily_cap_micros FROM keys WHERE id = ?'),
      revoke: db.prepare('UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
      keyUse: db.prepare('UPDATE keys SET request_count = request_count + 1, last_used_at = ? WHERE id = ?'),
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
         WHERE state = 'reserved' AND created_at < ?`,
      ),
      insertAudit: db.prepare(`INSERT INTO audit (id, time, request_id, key_id, label, vendor, mode, method,
        path, status, decision, code, cost_micros, upstream_latency_ms) VALUES (@id, @time, @requestId,
        @keyId, @label, @vendor, @mode, @method, @path, @status, @decision, @code, @costMicros,
        @upstreamLatencyMs)`),
    };

    const s = this.stmts;
    this.reserveTx = db.transaction((req: ReserveRequest): ReserveResult => {
      const key = s.keyState.get(req.keyId) as
        | { revoked_at: number | null; expires_at: number; daily_cap_micros: number | null }
        | undefined;
      if (!key) return { ok: false, code: 'invalid_key' };
      if (key.revoked_at !== null) return { ok: false, code: 'key_revoked' };
      if (key.expires_at <= req.now) return { ok: false, code: 'key_expired' };
      const spent = (s.spend.get(req.keyId, req.day) as number | undefined) ?? 0;
      const cap = key.daily_cap_micros;
      if (cap !== null && spent + req.amountMicros > cap) {
        return { ok: false, code: 'cap_exhausted', spentMicros: spent, capMicros: cap };
      }
      s.addSpend.run(req.keyId, req.day, req.amountMicros);
      s.insertReservation.run(
        req.reservationId, req.keyId, req.day, req.amountMicros, req.requestId, req.method, req.path, req.now,
      );
      s.keyUse.run(req.now, req.keyId);
      return { ok: true, spentMicros: spent + req.amountMicros };
    });

    this.extendTx = db.transaction((id: string, add: number, now: number): ReserveResult => {
      const r = s.reservation.get(id) as ReservationRow | undefined;
      if (!r || r.state !== 'reserved') return { ok: false, code: 'invalid_key' };
      const key = s.keyState.get(r.key_id) as
        | { revoked_at: number | null; expires_at: number; daily_cap_micros: number | null }
        | undefined;
      if (!key) return { ok: false, code: 'invalid_key' };
      if (key.revoked_at !== null) return { ok: false, code: 'key_revoked' };
      if (key.expires_at <= now) return { ok: false, code: 'key_expired' };
      const spent = (s.spend.get(r.key_id, r.day) as number | undefined) ?? 0;
      if (key.daily_cap_micros !== null && spent + add > key.daily_cap_micros) {
        return { ok: false, code: 'cap_exhausted', spentMicros: spent, capMicros: key.daily_cap_micros };
      }
      s.growReservation.run(add, id);
      s.addSpend.run(r.key_id, r.day, add);
      return { ok: true, spentMicros: spent + add };
    });

    this.settleTx = db.transaction((id: string, outcome: Settlement, now: number) => {
      const r = s.reservation.get(id) as ReservationRow | undefined;
      if (!r || r.state !== 'reserved') return;
      let final: number;
      if (outcome.state === 'settled') final = outcome.micros;
      else if (outcome.state === 'released') final = 0;
      else final = r.estimate_micros;
      s.endReservation.run(outcome.state, final, now, id);
      const delta = final - r.estimate_micros;
      if (delta !== 0) s.addSpend.run(r.key_id, r.day, delta);
    });

    this.auditTx = db.transaction((records: readonly AuditRecord[]) => {
      for (const r of records) s.insertAudit.run(r);
    });
  }

  async createKey(k: KeyRecord): Promise<void> {
    this.stmts.insertKey.run({
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
    });
  }

  async getKeyById(id: string): Promise<KeyRecord | null> {
    const row = this.stmts.keyById.get(id) as KeyRow | undefined;
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

  async revokeKey(id: string, now: number): Promise<RevokeResult> {
    const changed = this.stmts.revoke.run(now, id).changes;
    if (changed === 1) return 'revoked';
    return this.stmts.keyById.get(id) ? 'already_revoked' : 'not_found';
  }

  async keyUsage(id: string, day: string): Promise<KeyUsage> {
    const u = this.stmts.usage.get(id) as { request_count: number; last_used_at: number | null } | undefined;
    const spent = (this.stmts.spend.get(id, day) as number | undefined) ?? 0;
    return { requestCount: u?.request_count ?? 0, lastUsedAt: u?.last_used_at ?? null, spentMicros: spent };
  }

  async reserve(req: ReserveRequest): Promise<ReserveResult> {
    // IMMEDIATE takes the write lock up front, so two processes on one file cannot both pass the cap check.
    return this.reserveTx.immediate(req);
  }

  async extendReservation(reservationId: string, addMicros: number, now: number): Promise<ReserveResult> {
    return this.extendTx.immediate(reservationId, addMicros, now);
  }

  async settle(reservationId: string, outcome: Settlement, now: number): Promise<void> {
    this.settleTx.immediate(reservationId, outcome, now);
  }

  async getReservation(id: string): Promise<Reservation | null> {
    const r = this.stmts.reservation.get(id) as ReservationRow | undefined;
    if (!r) return null;
    return {
      id: r.id,
      keyId: r.key_id,
      day: r.day,
      estimateMicros: r.estimate_micros,
      finalMicros: r.final_micros,
      state: r.state,
      requestId: r.request_id,
      createdAt: r.created_at,
      settledAt: r.settled_at,
    };
  }

  async reconcileStale(olderThan: number, now: number): Promise<number> {
    return this.stmts.staleReservations.run(now, olderThan).changes;
  }

  async appendAudit(records: readonly AuditRecord[]): Promise<void> {
    if (records.length) this.auditTx.immediate(records);
  }

  async listAudit(filter: AuditFilter, limit: number, cursor: string | null): Promise<Page<AuditRecord>> {
    const where: string[] = [];
    const args: unknown[] = [];
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

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
