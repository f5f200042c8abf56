import pg from 'pg';
import type { AdminAuditFilter, AdminAuditLog, AdminAuditRecord } from '../../control/admin-audit.js';
import { decodeCursor, encodeCursor } from '../cursor.js';
import { quoteIdent } from './migrations.js';

// The admin audit trail in the store's Postgres schema, on a small pool of its own. Its table is
// created here, not by a store migration: only this writes it.

export class PgAdminAudit implements AdminAuditLog {
  private readonly pool: pg.Pool;
  private ready: Promise<unknown> | null = null;

  constructor(url: string, schema: string) {
    this.pool = new pg.Pool({ connectionString: url, max: 2, options: `-c search_path=${schema}` });
    this.pool.on('error', () => undefined);
    this.schema = schema;
  }

  private readonly schema: string;

  private table(): Promise<unknown> {
    this.ready ??= this.pool
      .query(
        `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)};
         CREATE TABLE IF NOT EXISTS admin_audit (
           seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, time BIGINT NOT NULL, tenant_id TEXT NOT NULL,
           actor TEXT NOT NULL, via TEXT NOT NULL, ip TEXT NOT NULL, request_id TEXT NOT NULL, method TEXT NOT NULL,
           route TEXT NOT NULL, target TEXT, status INTEGER NOT NULL, detail JSONB);
         CREATE TABLE IF NOT EXISTS dashboard_session_revocations (sid TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)`,
      )
      .catch((e: unknown) => {
        this.ready = null;
        throw e;
      });
    return this.ready;
  }

  async append(r: AdminAuditRecord): Promise<void> {
    await this.table();
    await this.pool.query(
      `INSERT INTO admin_audit (id, time, tenant_id, actor, via, ip, request_id, method, route, target, status, detail)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      [r.id, r.time, r.tenantId, r.actor, r.via, r.ip, r.requestId, r.method, r.route, r.target, r.status, r.detail === null ? null : JSON.stringify(r.detail)],
    );
  }

  async list(f: AdminAuditFilter, limit: number, cursor: string | null) {
    await this.table();
    const where: string[] = [];
    const args: unknown[] = [];
    const add = (sql: string, v: unknown) => {
      args.push(v);
      where.push(sql.replace('?', `$${args.length}`));
    };
    const after = decodeCursor(cursor);
    if (after) add('seq < ?', after.t);
    if (f.tenantId !== undefined) add('tenant_id = ?', f.tenantId);
    if (f.actor !== undefined) add('actor = ?', f.actor);
    if (f.since !== undefined) add('time >= ?', f.since);
    if (f.until !== undefined) add('time < ?', f.until);
    args.push(limit + 1);
    const { rows } = await this.pool.query(
      `SELECT * FROM admin_audit ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq DESC LIMIT $${args.length}`,
      args,
    );
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map(
        (r): AdminAuditRecord => ({
          id: r.id,
          time: Number(r.time),
          tenantId: r.tenant_id,
          actor: r.actor,
          via: r.via,
          ip: r.ip,
          requestId: r.request_id,
          method: r.method,
          route: r.route,
          target: r.target,
          status: r.status,
          detail: r.detail,
        }),
      ),
      nextCursor: rows.length > limit && last ? encodeCursor({ t: Number(last.seq), id: '' }) : null,
    };
  }

  async revoke(sid: string, expiresAt: number): Promise<void> {
    await this.table();
    await this.pool.query('INSERT INTO dashboard_session_revocations (sid, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING', [sid, expiresAt]);
    await this.pool.query('DELETE FROM dashboard_session_revocations WHERE expires_at < $1', [Date.now()]);
  }

  async isRevoked(sid: string): Promise<boolean> {
    await this.table();
    const { rowCount } = await this.pool.query('SELECT 1 FROM dashboard_session_revocations WHERE sid = $1', [sid]);
    return (rowCount ?? 0) > 0;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
