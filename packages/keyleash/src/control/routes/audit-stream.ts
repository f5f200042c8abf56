import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import type { AuditSink } from '../../audit/sink.js';
import { KeyleashError } from '../../errors.js';
import { auditReads } from '../audit-reader.js';
import { InvalidCursorError } from '../../store/cursor.js';
import type { AuditFilter, AuditRecord, Store } from '../../store/store.js';
import { auditView } from './audit.js';
import { enumParam, one, type Query } from './query.js';

// The audit log's live tail (server-sent events) and its export (CSV or NDJSON), with the same
// filters as GET /v1/audit.

const HEARTBEAT_MS = 15_000;
/** A client this far behind is dropped rather than buffered without bound. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
const EXPORT_PAGE = 1000;

export function auditFilterFromQuery(q: Query): AuditFilter {
  // Only the default tenant reaches these routes; other tenants' records are not its to see.
  const filter: AuditFilter = { tenantId: 'default' };
  const keyId = one(q, 'key_id');
  const vendor = one(q, 'vendor');
  const code = one(q, 'code');
  const decision = enumParam(q, 'decision', ['allow', 'deny'] as const);
  const since = one(q, 'since');
  if (keyId !== undefined) filter.keyId = keyId;
  if (vendor !== undefined) filter.vendor = vendor;
  if (code !== undefined) filter.code = code;
  if (decision) filter.decision = decision;
  if (since !== undefined) {
    const t = /^[0-9]{1,16}$/.test(since) ? Number(since) * 1000 : Date.parse(since);
    if (!Number.isFinite(t)) throw new KeyleashError('invalid_request', 'since: give an RFC 3339 time or Unix seconds', { param: 'since' });
    filter.since = t;
  }
  return filter;
}

export function auditMatches(f: AuditFilter, r: AuditRecord): boolean {
  return (
    (f.tenantId === undefined || (r.tenantId ?? 'default') === f.tenantId) &&
    (f.keyId === undefined || r.keyId === f.keyId) &&
    (f.vendor === undefined || r.vendor === f.vendor) &&
    (f.code === undefined || r.code === f.code) &&
    (f.decision === undefined || r.decision === f.decision) &&
    (f.since === undefined || r.time >= f.since)
  );
}

export const CSV_COLUMNS = [
  'time',
  'id',
  'request_id',
  'key_id',
  'label',
  'vendor',
  'mode',
  'method',
  'path',
  'status',
  'decision',
  'code',
  'cost_usd',
  'cost_micros',
  'upstream_latency_ms',
] as const;

/** One CSV field: quoted when needed, and defused when a spreadsheet would read it as a formula. */
export function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  let s = String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n']/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function csvRow(r: AuditRecord): string {
  const view = auditView(r) as Record<string, unknown>;
  return CSV_COLUMNS.map((c) => csvField(view[c])).join(',') + '\r\n';
}

/** Writes and waits for the socket to drain when it asks to; false once the client has gone. */
async function write(res: ServerResponse, chunk: string): Promise<boolean> {
  if (res.destroyed) return false;
  if (res.write(chunk)) return true;
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

export const auditStreamRoutes: FastifyPluginAsync<{ store: Store; audit: AuditSink; feed?: { subscribe(fn: (r: AuditRecord) => void): () => void } }> = async (
  app,
  { store, audit, feed },
) => {
  const reads = auditReads(app, store);
  const open = new Set<ServerResponse>();
  // A server closing with live tails would wait for them forever; end them first.
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
    open.clear();
  });

  app.get('/v1/audit/stream', async (req, reply) => {
    const q = req.query as Query;
    const filter = auditFilterFromQuery(q);
    const backfillRaw = one(q, 'backfill');
    let backfill = 0;
    if (backfillRaw !== undefined) {
      if (!/^[0-9]{1,4}$/.test(backfillRaw) || Number(backfillRaw) > 1000) {
        throw new KeyleashError('invalid_request', 'backfill: must be a whole number from 0 to 1000', { param: 'backfill' });
      }
      backfill = Number(backfillRaw);
    }

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
      connection: 'keep-alive',
    });
    res.write(`retry: 2000\n: keyleash audit stream ${req.id}\n\n`);
    open.add(res);

    const send = (r: AuditRecord) => {
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        req.log.warn({ buffered: res.writableLength }, 'audit stream client too slow; closing');
        res.destroy();
        return;
      }
      res.write(`event: audit\nid: ${r.id}\ndata: ${JSON.stringify(auditView(r))}\n\n`);
    };
    // Records queued during the backfill read are held and sent after it, without duplicates.
    const held: AuditRecord[] = [];
    let live = false;
    // With replicas, the feed carries every replica's records, not only this one's.
    const unsubscribe = (feed ?? audit).subscribe((r) => {
      if (!auditMatches(filter, r)) return;
      if (live) send(r);
      else held.push(r);
    });
    const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), HEARTBEAT_MS);
    heartbeat.unref();
    res.on('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
      open.delete(res);
    });

    const seen = new Set<string>();
    if (backfill > 0) {
      try {
        await audit.flush();
        const page = await reads.listAudit(filter, backfill, null);
        for (const r of page.items.reverse()) {
          seen.add(r.id);
          send(r);
        }
      } catch (err) {
        req.log.error({ err }, 'audit stream backfill failed');
      }
    }
    for (const r of held) if (!seen.has(r.id)) send(r);
    held.length = 0;
    live = true;
  });

  app.get('/v1/audit/export', async (req, reply) => {
    const q = req.query as Query;
    const filter = auditFilterFromQuery(q);
    const format = enumParam(q, 'format', ['csv', 'ndjson'] as const) ?? 'ndjson';
    const limitRaw = one(q, 'limit');
    let limit = Number.POSITIVE_INFINITY;
    if (limitRaw !== undefined) {
      if (!/^[0-9]{1,9}$/.test(limitRaw) || Number(limitRaw) < 1) {
        throw new KeyleashError('invalid_request', 'limit: must be a whole number of at least 1', { param: 'limit' });
      }
      limit = Number(limitRaw);
    }
    await audit.flush();
    // Read the first page before answering, so a store failure is still a proper error answer.
    let page;
    try {
      page = await reads.listAudit(filter, Math.min(EXPORT_PAGE, limit), one(q, 'cursor') ?? null);
    } catch (err) {
      if (err instanceof InvalidCursorError) throw new KeyleashError('invalid_request', 'cursor: is malformed', { param: 'cursor' });
      throw err;
    }

    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
      'content-disposition': `attachment; filename="keyleash-audit-${stamp}.${format === 'csv' ? 'csv' : 'ndjson'}"`,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    open.add(res);
    res.on('close', () => open.delete(res));
    let sent = 0;
    try {
      if (format === 'csv' && !(await write(res, CSV_COLUMNS.join(',') + '\r\n'))) return;
      for (;;) {
        let chunk = '';
        for (const r of page.items) {
          if (sent >= limit) break;
          chunk += format === 'csv' ? csvRow(r) : JSON.stringify(auditView(r)) + '\n';
          sent++;
        }
        if (chunk && !(await write(res, chunk))) return;
        if (page.nextCursor === null || sent >= limit) break;
        page = await reads.listAudit(filter, Math.min(EXPORT_PAGE, limit - sent), page.nextCursor);
      }
      res.end();
    } catch (err) {
      // Headers are gone; cutting the body short is the only honest signal left.
      req.log.error({ err, sent }, 'audit export failed mid-stream');
      res.destroy();
    }
  });
};
