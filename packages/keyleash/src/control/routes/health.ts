import type { FastifyPluginAsync } from 'fastify';
import type { Store } from '../../store/store.js';

export const healthRoutes: FastifyPluginAsync<{ store: Store }> = async (app, { store }) => {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    try {
      await store.ping();
      return { status: 'ready', store: store.kind };
    } catch {
      return reply.status(503).send({ status: 'unavailable', code: 'store_unavailable', store: store.kind });
    }
  });
};
