import type { FastifyPluginAsync } from 'fastify';
import { KeyleashError } from '../../errors.js';
import type { MintingService } from '../../keys/minting.js';
import { InvalidCursorError } from '../../store/cursor.js';
import { limitParam, objectBody, one, type Query } from './query.js';

/** Minting keys: create (the secret is shown once), read, list, rotate with a grace period, revoke. */
export const mintingKeyRoutes: FastifyPluginAsync<{ minting: MintingService }> = async (app, { minting }) => {
  app.post('/v1/minting_keys', async (req, reply) => {
    const view = await minting.create(objectBody(req.body), req.principal);
    req.log.info({ mintingKeyId: view.id, tenant: req.principal.tenantId }, 'minting key created');
    return reply.status(201).header('cache-control', 'no-store').send(view);
  });

  app.get('/v1/minting_keys', async (req) => {
    const q = req.query as Query;
    try {
      return await minting.list(limitParam(q), one(q, 'cursor') ?? null, req.principal.tenantId);
    } catch (err) {
      if (err instanceof InvalidCursorError) throw new KeyleashError('invalid_request', 'cursor: is malformed', { param: 'cursor' });
      throw err;
    }
  });

  app.get<{ Params: { id: string } }>('/v1/minting_keys/:id', async (req) => minting.get(req.params.id, req.principal.tenantId));

  app.post<{ Params: { id: string } }>('/v1/minting_keys/:id/rotate', async (req, reply) => {
    const view = await minting.rotate(req.params.id, req.body === undefined ? {} : objectBody(req.body), req.principal.tenantId);
    req.log.warn({ mintingKeyId: view.id, version: view.version }, 'minting key rotated');
    return reply.header('cache-control', 'no-store').send(view);
  });

  app.delete<{ Params: { id: string } }>('/v1/minting_keys/:id', async (req) => {
    const view = await minting.revoke(req.params.id, req.principal.tenantId);
    req.log.warn({ mintingKeyId: view.id, keysRevoked: view.keys_revoked }, 'minting key revoked');
    return view;
  });
};
