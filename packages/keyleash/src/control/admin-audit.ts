import { randomUUID } from 'node:crypto';
import type { Config } from '../config/config.js';
import { decodeCursor, encodeCursor } from '../store/cursor.js';
import { MemorySessionRevocations, type SessionRevocations } from './sessions.js';

// The admin audit trail: every change made through the control plane (keys, minting keys, the
// kill switch, budgets, dashboard sign-in and out), with who made it, from where and the request
// id. Kept apart from the call audit log: it is written rarely, read by operators, and never on
// the proxy's path.

export interface AdminAuditRecord {
  id: string;
  time: number;
  tenantId: string;
  /** The admin token's name (config `name`), or "admin" for the top-level admin_token. */
  actor: string;
  /** How: a bearer token or a dashboard session. */
  via: 'token' | 'dashboard';
  ip: string;
  requestId: string;
  method: string;
  route: string;
  /** The key, minting key or budget changed, when there is one. */
  target: string | null;
  status: number;
  /** Route-specific facts, e.g. the kill switch's filter and how many keys it revoked. Never a secret. */
  detail: Record<string, unknown> | null;
}

export interface AdminAuditFilter {
  tenantId?: string;
  actor?: string;
  since?: number;
  until?: number;
}

export interface AdminAuditLog extends SessionRevocations {
  append(r: AdminAuditRecord): Promise<void>;
  /** Newest first. */
  list(filter: AdminAuditFilter, limit: number, cursor: string | null): Promise<{ items: AdminAuditRecord[]; nextCursor: string | null }>;
  close(): Promise<void>;
}

export function newAdminAuditId(): string {
  return `adm_${randomUUID().replace(/-/g, '')}`;
}

export function adminAuditView(r: AdminAuditRecord) {
  return {
    object: 'admin_audit_record' as const,
    id: r.id,
    time: new Date(r.time).toISOString(),
    tenant_id: r.tenantId,
    actor: r.actor,
    via: r.via,
    ip: r.ip,
    request_id: r.requestId,
    method: r.method,
    route: r.route,
    target: r.target,
    status: r.status,
    detail: r.detail,
  };
}

/** For stores with nothing durable to write to (an in-memory SQLite store in tests). */
export class MemoryAdminAudit extends MemorySessionRevocations implements AdminAuditLog {
  private readonly records: AdminAuditRecord[] = [];
  async append(r: AdminAuditRecord): Promise<void> {
    this.records.push(r);
  }
  async list(filter: AdminAuditFilter, limit: number, cursor: string | null) {
    const before = decodeCursor(cursor)?.t ?? Infinity;
    const all = this.records
      .map((r, i) => ({ r, i }))
      .filter(({ r, i }) => i < before && matches(r, filter))
      .reverse();
    const page = all.slice(0, limit);
    const last = page.at(-1);
    return { items: page.map((p) => p.r), nextCursor: all.length > limit && last ? encodeCursor({ t: last.i, id: '' }) : null };
  }
  async close(): Promise<void> {}
}

export function matches(r: AdminAuditRecord, f: AdminAuditFilter): boolean {
  return (
    (f.tenantId === undefined || r.tenantId === f.tenantId) &&
    (f.actor === undefined || r.actor === f.actor) &&
    (f.since === undefined || r.time >= f.since) &&
    (f.until === undefined || r.time < f.until)
  );
}

/** Opens a backend on first use, so SQLite users never load the Postgres driver. */
class LazyAdminAudit implements AdminAuditLog {
  private opened: Promise<AdminAuditLog> | null = null;
  constructor(private readonly open: () => Promise<AdminAuditLog>) {}
  private get log(): Promise<AdminAuditLog> {
    return (this.opened ??= this.open());
  }
  async append(r: AdminAuditRecord): Promise<void> {
    return (await this.log).append(r);
  }
  async list(filter: AdminAuditFilter, limit: number, cursor: string | null) {
    return (await this.log).list(filter, limit, cursor);
  }
  async close(): Promise<void> {
    if (this.opened) await (await this.opened).close();
  }
  async revoke(sid: string, expiresAt: number): Promise<void> {
    return (await this.log).revoke(sid, expiresAt);
  }
  async isRevoked(sid: string): Promise<boolean> {
    return (await this.log).isRevoked(sid);
  }
}

/** The trail beside the configured store: the same SQLite file, or the same Postgres schema. */
export function openAdminAudit(config: Config): AdminAuditLog {
  if (config.store.url !== undefined) {
    const { url, schema } = config.store;
    return new LazyAdminAudit(async () => new (await import('../store/postgres-redis/admin-audit.js')).PgAdminAudit(url, schema));
  }
  if (config.store.path === ':memory:') return new MemoryAdminAudit();
  return new LazyAdminAudit(async () => new (await import('../store/sqlite/admin-audit.js')).SqliteAdminAudit(config.store.path));
}
