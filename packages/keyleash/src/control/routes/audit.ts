import type { FastifyPluginAsync } from 'fastify';
import { KeyleashError } from '../../errors.js';
import { microsToUsd } from '../../policy/money.js';
import { InvalidCursorError } from '../../store/cursor.js';
import { auditReads } from '../audit-reader.js';
import type { AuditFilter, AuditRecord, Store } from '../../store/store.js';
import { enumParam, limitParam, one, type Query } from './query.js';

export function auditView(r: AuditRecord) {
  return {
    object: 'audit_record' as const,
    id: r.id,
    time: new Date(r.time).toISOString(),
    request_id: r.requestId,
    key_id: r.keyId,
    label: r.label,
    vendor: r.vendor,
    mode: r.mode,
    method: r.method,
    path: r.path,
    status: r.status,
    decision: r.decision,
    code: r.code,
    cost_usd: microsToUsd(r.costMicros),
    cost_micros: r.costMicros,
    upstream_latency_ms: r.upstreamLatencyMs,
  };
}

export const auditRoutes: FastifyPluginAsync<{ store: Store }> = async (app, { store }) => {
  const reads = auditReads(app, store);
  app.get('/v1/audit', async (req) => {
    const q = req.query as Query;
    const filter: AuditFilter = { tenantId: req.principal.tenantId };
    const keyId = one(q, 'key_id');
    const vendor = one(q, 'vendor');
    const code = one(q, 'code');
    const decision = enumParam(q, 'decision', ['allow', 'deny'] as const);
    if (keyId !== undefined) filter.keyId = keyId;
    if (vendor !== undefined) filter.vendor = vendor;
    if (code !== undefined) filter.code = code;
    if (decision) filter.decision = decision;
    try {
      const page = await reads.listAudit(filter, limitParam(q, 1000, 100), one(q, 'cursor') ?? null);
      return {
        object: 'list',
        data: page.items.map(auditView),
        has_more: page.nextCursor !== null,
        next_cursor: page.nextCursor,
      };
    } catch (err) {
      if (err instanceof InvalidCursorError) throw new KeyleashError('invalid_request', 'cursor: is malformed', { param: 'cursor' });
      throw err;
    }
  });
};
