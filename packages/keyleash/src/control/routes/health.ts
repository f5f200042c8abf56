import type { FastifyPluginAsync } from 'fastify';
import { errorBody } from '../../errors.js';
import type { AuditSink } from '../../audit/sink.js';
import { StoreUnavailableError, type Store } from '../../store/store.js';

export const healthRoutes: FastifyPluginAsync<{ store: Store; audit: AuditSink; draining: () => boolean }> = async (app, { store, audit, draining }) => {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (req, reply) => {
    // Stopping: a balancer takes this replica out while it still answers (README "Draining").
    if (draining()) return reply.status(503).send({ status: 'draining', store: store.kind });
    try {
      await store.ping();
      // The proxy refuses calls it cannot audit, so a stuck audit log means not ready.
      if (!audit.accepting) throw new StoreUnavailableError('audit log');
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
