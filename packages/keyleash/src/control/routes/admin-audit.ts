import type { FastifyPluginAsync } from 'fastify';
import { KeyleashError } from '../../errors.js';
import { InvalidCursorError } from '../../store/cursor.js';
import { adminAuditView, type AdminAuditFilter, type AdminAuditLog } from '../admin-audit.js';
import { limitParam, one, type Query } from './query.js';

function timeParam(q: Query, name: string): number | undefined {
  const v = one(q, name);
  if (v === undefined) return undefined;
  const t = /^\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2}))?$/.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(t)) throw new KeyleashError('invalid_request', `${name}: must be an ISO date or time`, { param: name });
  return t;
}

/** GET /v1/admin/audit: the admin audit trail, newest first (default tenant's admin tokens only). */
export const adminAuditRoutes: FastifyPluginAsync<{ log: AdminAuditLog }> = async (app, { log }) => {
  app.get('/v1/admin/audit', async (req) => {
    const q = req.query as Query;
    const filter: AdminAuditFilter = {};
    const actor = one(q, 'actor');
    const tenant = one(q, 'tenant_id');
    if (actor !== undefined) filter.actor = actor;
    if (tenant !== undefined) filter.tenantId = tenant;
    const since = timeParam(q, 'since');
    const until = timeParam(q, 'until');
    if (since !== undefined) filter.since = since;
    if (until !== undefined) filter.until = until;
    try {
      const page = await log.list(filter, limitParam(q, 1000, 100), one(q, 'cursor') ?? null);
      return { object: 'list', data: page.items.map(adminAuditView), has_more: page.nextCursor !== null, next_cursor: page.nextCursor };
    } catch (err) {
      if (err instanceof InvalidCursorError) throw new KeyleashError('invalid_request', 'cursor: is malformed', { param: 'cursor' });
      throw err;
    }
  });
};
