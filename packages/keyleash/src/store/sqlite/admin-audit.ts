import Database from 'better-sqlite3';
import type { AdminAuditFilter, AdminAuditLog, AdminAuditRecord } from '../../control/admin-audit.js';
import { decodeCursor, encodeCursor } from '../cursor.js';

// The admin audit trail in the store's SQLite file, on a connection of its own (WAL lets it write
// beside the store's). Its table is created here, not by a store migration: only this writes it.

export const ADMIN_AUDIT_TABLE = `CREATE TABLE IF NOT EXISTS admin_audit (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  id         TEXT NOT NULL UNIQUE,
  time       INTEGER NOT NULL,
  tenant_id  TEXT NOT NULL,
  actor      TEXT NOT NULL,
  via        TEXT NOT NULL,
  ip         TEXT NOT NULL,
  request_id TEXT NOT NULL,
  method     TEXT NOT NULL,
  route      TEXT NOT NULL,
  target     TEXT,
  status     INTEGER NOT NULL,
  detail     TEXT
)`;

interface Row {
  seq: number;
  id: string;
  time: number;
  tenant_id: string;
  actor: string;
  via: 'token' | 'dashboard';
  ip: string;
  request_id: string;
  method: string;
  route: string;
  target: string | null;
  status: number;
  detail: string | null;
}

export class SqliteAdminAudit implements AdminAuditLog {
  private readonly db: Database.Database;
  private readonly insert;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(ADMIN_AUDIT_TABLE);
    this.db.exec('CREATE TABLE IF NOT EXISTS dashboard_session_revocations (sid TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)');
    this.insert = this.db.prepare(`INSERT INTO admin_audit (id, time, tenant_id, actor, via, ip, request_id, method, route, target, status, detail)
      VALUES (@id, @time, @tenantId, @actor, @via, @ip, @requestId, @method, @route, @target, @status, @detail)`);
  }

  async append(r: AdminAuditRecord): Promise<void> {
    this.insert.run({ ...r, detail: r.detail === null ? null : JSON.stringify(r.detail) });
  }

  async list(f: AdminAuditFilter, limit: number, cursor: string | null) {
    const where: string[] = [];
    const args: unknown[] = [];
    const after = decodeCursor(cursor);
    if (after) where.push('seq < ?'), args.push(after.t);
    if (f.tenantId !== undefined) where.push('tenant_id = ?'), args.push(f.tenantId);
    if (f.actor !== undefined) where.push('actor = ?'), args.push(f.actor);
    if (f.since !== undefined) where.push('time >= ?'), args.push(f.since);
    if (f.until !== undefined) where.push('time < ?'), args.push(f.until);
    const rows = this.db
      .prepare(`SELECT * FROM admin_audit ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq DESC LIMIT ?`)
      .all(...args, limit + 1) as Row[];
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return { items: page.map(fromRow), nextCursor: rows.length > limit && last ? encodeCursor({ t: last.seq, id: '' }) : null };
  }

  async revoke(sid: string, expiresAt: number): Promise<void> {
    this.db.prepare('INSERT OR IGNORE INTO dashboard_session_revocations (sid, expires_at) VALUES (?, ?)').run(sid, expiresAt);
    this.db.prepare('DELETE FROM dashboard_session_revocations WHERE expires_at < ?').run(Date.now());
  }

  async isRevoked(sid: string): Promise<boolean> {
    return this.db.prepare('SELECT 1 FROM dashboard_session_revocations WHERE sid = ?').get(sid) !== undefined;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

function fromRow(r: Row): AdminAuditRecord {
  return {
    id: r.id,
    time: r.time,
    tenantId: r.tenant_id,
    actor: r.actor,
    via: r.via,
    ip: r.ip,
    requestId: r.request_id,
    method: r.method,
    route: r.route,
    target: r.target,
    status: r.status,
    detail: r.detail === null ? null : (JSON.parse(r.detail) as Record<string, unknown>),
  };
}
