import type { FastifyInstance } from 'fastify';
import { decodeCursor, encodeCursor } from '../store/cursor.js';
import { auditFromRow, type AuditRow } from '../store/sqlite/index.js';
import type { AuditFilter, AuditRecord, Page, Store } from '../store/store.js';
import { acquireReader, SqliteWorkerReader, type StatsReader } from './stats-reader.js';

// The audit log as the control API reads it (GET /v1/audit, the tail's backfill, the export). On
// a SQLite file a filter that matches few records scans the table, synchronously: those reads go
// to the statistics worker's read-only connection instead, with the store's own query and row
// shape. Postgres and in-memory stores are read as before.

export interface AuditReads {
  listAudit(filter: AuditFilter, limit: number, cursor: string | null): Promise<Page<AuditRecord>>;
}

/** The same statement as SqliteStore.listAudit, for the worker. */
async function listAuditInWorker(reader: StatsReader, filter: AuditFilter, limit: number, cursor: string | null): Promise<Page<AuditRecord>> {
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
  const [rows] = (await reader.read([{ sql, params: [...args, limit + 1] }])) as unknown as [AuditRow[]];
  const more = rows.length > limit;
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { items: page.map(auditFromRow), nextCursor: more && last ? encodeCursor({ t: last.seq, id: '' }) : null };
}

/** Audit reads for a route plugin, off the event loop where the store allows; released on close. */
export function auditReads(app: FastifyInstance, store: Store): AuditReads {
  const shared = acquireReader(store);
  app.addHook('onClose', () => shared.release());
  if (!(shared.reader instanceof SqliteWorkerReader)) return { listAudit: (f, l, c) => store.listAudit(f, l, c) };
  const reader = shared.reader;
  return { listAudit: (f, l, c) => listAuditInWorker(reader, f, l, c) };
}
