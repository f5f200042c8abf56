import type { FastifyPluginAsync } from 'fastify';
import { KeyleashError } from '../../errors.js';
import type { KeyService } from '../../keys/service.js';
import { InvalidCursorError } from '../../store/cursor.js';
import type { KeyFilter } from '../../store/store.js';
import { enumParam, limitParam, metadataParam, one, type Query } from './query.js';

export const keyRoutes: FastifyPluginAsync<{ keys: KeyService }> = async (app, { keys }) => {
  app.post('/v1/keys', async (req, reply) => {
    if (req.body === undefined || req.body === null || typeof req.body !== 'object' || Array.isArray(req.body)) {
      throw new KeyleashError('invalid_request', 'body: send a JSON object', { param: 'body' });
    }
    const idem = req.headers['idempotency-key'];
    if (Array.isArray(idem)) throw new KeyleashError('invalid_request', 'Idempotency-Key: give it once', { param: 'Idempotency-Key' });
    const { replayed, ...view } = await keys.issue(req.body, req.principal, idem);
    reply.header('cache-control', 'no-store');
    // As Stripe marks a replayed idempotent answer.
    if (replayed) reply.header('idempotent-replayed', 'true');
    return reply.status(201).send(view);
  });

  app.get('/v1/keys', async (req) => {
    const q = req.query as Query;
    const filter: KeyFilter = {};
    const status = enumParam(q, 'status', ['active', 'expired', 'revoked'] as const);
    const mode = enumParam(q, 'mode', ['test', 'live'] as const);
    const vendor = one(q, 'vendor');
    const labelPrefix = one(q, 'label_prefix');
    const mintingKey = one(q, 'minting_key');
    if (mintingKey !== undefined) filter.mintingKeyId = mintingKey;
    const metadata = metadataParam(q);
    if (status) filter.status = status;
    if (mode) filter.mode = mode;
    if (vendor !== undefined) filter.vendor = vendor;
    if (labelPrefix !== undefined) filter.labelPrefix = labelPrefix;
    if (metadata) filter.metadata = metadata;
    try {
      return await keys.list(filter, limitParam(q), one(q, 'cursor') ?? null, req.principal.tenantId);
    } catch (err) {
      if (err instanceof InvalidCursorError) throw new KeyleashError('invalid_request', 'cursor: is malformed', { param: 'cursor' });
      throw err;
    }
  });

  app.get<{ Params: { id: string } }>('/v1/keys/:id', async (req) => keys.get(req.params.id, req.principal.tenantId));

  app.delete<{ Params: { id: string } }>('/v1/keys/:id', async (req) => keys.revoke(req.params.id, req.principal.tenantId));
};
