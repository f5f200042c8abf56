import Fastify from 'fastify';
import { afterAll, beforeAll } from 'vitest';
import { keyleashFastify } from '../src/fastify.js';
import { startGateway, type TestGateway } from './gateway.js';
import { boom, middlewareSuite, routes } from './middleware-suite.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t?.close();
});

middlewareSuite('fastify', () => t, async (options) => {
  const app = Fastify();
  await app.register(keyleashFastify(options));
  for (const [path, logic] of Object.entries(routes)) {
    app.all(path, async (req, reply) => {
      const r = await logic({ query: req.query as Record<string, string> });
      return reply.code(r.status).send(r.body);
    });
  }
  app.get('/boom', boom);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, close: () => app.close() };
});
