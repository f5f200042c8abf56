import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { KeyleashError } from '../../errors.js';
import { zodToKeyleashError, type BulkRevokeFilter, type KeyService } from '../../keys/service.js';

export const bulkRevokeSchema = z.strictObject({
  label_prefix: z.string().min(1).max(200).optional().describe('Only keys whose label starts with this.'),
  metadata: z.record(z.string(), z.string().max(500)).optional().describe('Only keys whose metadata holds every pair.'),
  vendor: z.string().min(1).optional().describe('Only keys for this vendor.'),
  mode: z.enum(['test', 'live']).optional().describe('Only keys of this mode.'),
  budget: z.string().min(1).max(100).optional().describe('Only keys attached to this budget.'),
  all: z.boolean().optional().describe('Must be true to revoke every active key when no other filter is given.'),
  dry_run: z.boolean().optional().describe('Count (and list) the matching keys without revoking them.'),
});

/** The kill switch: `POST /v1/keys/revoke` revokes every active key matching a filter. */
export const bulkRevokeRoutes: FastifyPluginAsync<{ keys: KeyService }> = async (app, { keys }) => {
  app.post('/v1/keys/revoke', async (req) => {
    if (req.body === undefined || req.body === null || typeof req.body !== 'object' || Array.isArray(req.body)) {
      throw new KeyleashError('invalid_request', 'body: send a JSON object', { param: 'body' });
    }
    const parsed = bulkRevokeSchema.safeParse(req.body);
    if (!parsed.success) throw zodToKeyleashError(parsed.error);
    const b = parsed.data;
    const filter: BulkRevokeFilter = {};
    if (b.label_prefix !== undefined) filter.labelPrefix = b.label_prefix;
    if (b.metadata !== undefined && Object.keys(b.metadata).length) filter.metadata = b.metadata;
    if (b.vendor !== undefined) filter.vendor = b.vendor;
    if (b.mode !== undefined) filter.mode = b.mode;
    if (b.budget !== undefined) filter.budgetId = b.budget;
    const result = await keys.revokeMatching(filter, { dryRun: b.dry_run === true, all: b.all === true }, req.principal.tenantId);
    req.log.warn(
      { filter: b, dryRun: result.dry_run, matched: result.matched, revoked: result.revoked },
      result.dry_run ? 'kill switch dry run' : 'kill switch revoked keys',
    );
    return result;
  });
};
