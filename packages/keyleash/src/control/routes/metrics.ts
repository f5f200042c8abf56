import type { FastifyPluginAsync } from 'fastify';
import type { GatewayMetrics } from '../../observability/metrics.js';

/** Prometheus exposition. No auth, like /healthz: it carries counts, never keys, labels or secrets. */
export const metricsRoutes: FastifyPluginAsync<{ metrics: GatewayMetrics }> = async (app, { metrics }) => {
  app.get('/metrics', async (_req, reply) => {
    const { contentType, body } = await metrics.render();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
};
