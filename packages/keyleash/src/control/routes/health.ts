import type { FastifyPluginAsync } from 'fastify';
import { errorBody } from '../../errors.js';
import type { Store } from '../../store/store.js';

export const healthRoutes: FastifyPluginAsync<{ store: Store }> = async (app, { store }) => {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (req, reply) => {
    try {
      await store.ping();
      return { status: 'ready', store: store.kind };
    } catch {
      return reply
        .status(503)
        .send({ status: 'unavailable', store: store.kind, ...errorBody('store_unavailable', undefined, { requestId: req.id }) });
    }
  });
};
