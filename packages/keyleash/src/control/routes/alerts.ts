import type { FastifyPluginAsync } from 'fastify';
import type { AlertService } from '../../alerts/service.js';
import { limitParam, type Query } from './query.js';

/** `GET /v1/alerts/deliveries`: the tenant's webhook deliveries, newest first, with every attempt. */
export const alertRoutes: FastifyPluginAsync<{ alerts: AlertService }> = async (app, { alerts }) => {
  app.get('/v1/alerts/deliveries', async (req) => ({
    object: 'list',
    data: alerts.deliveries(req.principal.tenantId, limitParam(req.query as Query, 1000, 100)),
    has_more: false,
    next_cursor: null,
  }));
};
