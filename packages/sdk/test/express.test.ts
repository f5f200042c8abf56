import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll } from 'vitest';
import { keyleashExpress } from '../src/express.js';
import { startGateway, type TestGateway } from './gateway.js';
import { boom, middlewareSuite, routes } from './middleware-suite.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t?.close();
});

middlewareSuite('express', () => t, async (options) => {
  const app = express();
  app.use(keyleashExpress(options));
  for (const [path, logic] of Object.entries(routes)) {
    app.all(path, async (req, res) => {
      const r = await logic({ query: req.query as Record<string, string> });
      res.status(r.status).json(r.body);
    });
  }
  app.get('/boom', boom);
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
});
