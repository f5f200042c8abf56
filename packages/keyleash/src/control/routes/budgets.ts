import type { FastifyPluginAsync } from 'fastify';
import { KeyleashError } from '../../errors.js';
import type { BudgetService } from '../../budgets/service.js';
import { InvalidCursorError } from '../../store/cursor.js';
import { limitParam, objectBody, one, type Query } from './query.js';

/** Budgets: CRUD, spend per window, freeze/unfreeze. */
export const budgetRoutes: FastifyPluginAsync<{ budgets: BudgetService }> = async (app, { budgets }) => {
  app.post('/v1/budgets', async (req, reply) => reply.status(201).send(await budgets.create(objectBody(req.body), req.principal.tenantId)));

  app.get('/v1/budgets', async (req) => {
    const q = req.query as Query;
    try {
      return await budgets.list(limitParam(q), one(q, 'cursor') ?? null, req.principal.tenantId);
    } catch (err) {
      if (err instanceof InvalidCursorError) throw new KeyleashError('invalid_request', 'cursor: is malformed', { param: 'cursor' });
      throw err;
    }
  });

  app.get<{ Params: { id: string } }>('/v1/budgets/:id', async (req) => budgets.get(req.params.id, req.principal.tenantId));

  app.get<{ Params: { id: string } }>('/v1/budgets/:id/spend', async (req) =>
    budgets.spend(req.params.id, one(req.query as Query, 'window'), req.principal.tenantId),
  );

  app.patch<{ Params: { id: string } }>('/v1/budgets/:id', async (req) => budgets.update(req.params.id, objectBody(req.body), req.principal.tenantId));

  app.delete<{ Params: { id: string } }>('/v1/budgets/:id', async (req) => budgets.remove(req.params.id, req.principal.tenantId));

  app.post<{ Params: { id: string } }>('/v1/budgets/:id/freeze', async (req) => {
    const view = await budgets.update(req.params.id, { frozen: true }, req.principal.tenantId);
    req.log.warn({ budget: req.params.id }, 'budget frozen');
    return view;
  });

  app.post<{ Params: { id: string } }>('/v1/budgets/:id/unfreeze', async (req) => budgets.update(req.params.id, { frozen: false }, req.principal.tenantId));
};
