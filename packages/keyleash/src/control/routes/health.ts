import type { FastifyPluginAsync } from 'fastify';
import { errorBody } from '../../errors.js';
import { StoreUnavailableError, type Store } from '../../store/store.js';

export const healthRoutes: FastifyPluginAsync<{ store: Store }> = async (app, { store }) => {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (req, reply) => {
    try {
      await store.ping();
      return { status: 'ready', store: store.kind };
    } catch (err) {
      // `component` tells an operator what is down, e.g. "redis" or "postgres".
      const component = err instanceof StoreUnavailableError ? err.component : store.kind;
      return reply.status(503).send({
        status: 'unavailable',
        store: store.kind,
        component,
        ...errorBody('store_unavailable', `${component} is unavailable.`, { requestId: req.id }),
      });
    }
  });
};
