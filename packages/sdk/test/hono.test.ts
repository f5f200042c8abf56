import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentVaultKey, Minter, type IssuedKey } from '../src/index.js';
import { keyleashHono } from '../src/hono.js';
import { startGateway, stripeSpec, type TestGateway } from './gateway.js';
import { boom, middlewareSuite, routes } from './middleware-suite.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t?.close();
});

middlewareSuite('hono', () => t, async (options) => {
  const app = new Hono();
  app.use('*', keyleashHono(options));
  for (const [path, logic] of Object.entries(routes)) {
    app.all(path, async (c) => {
      const r = await logic({ query: c.req.query() });
      return c.json(r.body as object, r.status as 200);
    });
  }
  app.get('/boom', boom);
  app.onError((err, c) => c.json({ error: err.message }, 500));
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise<void>((r) => (server.listening ? r() : server.once('listening', () => r())));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
});

describe('hono without a Node server (app.request)', () => {
  it('revokes the key once the handler has returned', async () => {
    const app = new Hono<{ Variables: { vaultKeys: Record<string, IssuedKey> } }>();
    app.use('*', keyleashHono({ client: t.client, ...stripeSpec, allowedEndpoints: ['/v1/payment_intents'] }));
    app.get('/k', (c) => c.json({ id: currentVaultKey()!.id, seen: c.get('vaultKeys').stripe!.id }));
    const body = (await (await app.request('/k')).json()) as { id: string; seen: string };
    expect(body.id).toBe(body.seen);
    expect((await t.key(body.id)).status).toBe('revoked');
  });

  it('mints for a path Hono decodes to a control character, the default label holding U+FFFD instead', async () => {
    const minter = new Minter(`klm_test_${'a'.repeat(24)}_1_${'A'.repeat(43)}`);
    const app = new Hono<{ Variables: { vaultKeys: Record<string, IssuedKey> } }>();
    app.use('*', keyleashHono({ minter, proxyUrl: t.proxyUrl, vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'] }));
    app.get('*', (c) => c.json({ label: c.get('vaultKeys').stripe!.label }));
    const res = await app.request('/k%0Ax%E2%80%AEy');
    expect(res.status).toBe(200);
    expect(((await res.json()) as { label: string }).label).toBe('GET /k\ufffdx\ufffdy');
  });
});
