import { request as httpRequest } from 'node:http';
import type { RouteOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertService } from '../src/alerts/service.js';
import { buildControlApp, PUBLIC_ROUTES } from '../src/control/app.js';
import { targetProblem } from '../src/control/target.js';
import { backends } from './backends.js';
import { ADMIN_TOKEN, startGateway, stripeKey, type TestGateway } from './harness.js';

// Authentication is decided on the route the router serves, and a request target has one
// spelling: no percent-escape, double escape, lowercase escape, dot segment or absolute-form
// target reaches a handler without the admin token (issue 21, item 1).

interface Route {
  method: string;
  url: string;
}

/** Every route of the control app, collected as the gateway builds it (every optional service on). */
async function collectRoutes(t: TestGateway): Promise<Route[]> {
  const routes: Route[] = [];
  const app = buildControlApp({
    adminToken: ADMIN_TOKEN,
    keys: t.gw.keys,
    budgets: t.gw.budgets,
    minting: t.gw.minting,
    alerts: new AlertService({ configFor: () => undefined, log: t.gw.log }),
    metrics: t.gw.metrics,
    store: t.gw.store,
    audit: t.gw.audit,
    catalog: t.gw.catalog,
    log: t.gw.log,
  });
  app.addHook('onRoute', (opts: RouteOptions) => {
    for (const m of Array.isArray(opts.method) ? opts.method : [opts.method]) routes.push({ method: m.toUpperCase(), url: opts.url });
  });
  await app.ready();
  await app.close();
  return routes;
}

/** Escapes the first character of every segment that starts with a letter or digit. */
const escapeFirst = (path: string, hex: (c: string) => string) =>
  path.replace(/\/([A-Za-z0-9])/g, (_m, c: string) => `/%${hex(c)}`);
const upper = (c: string) => c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0');

/** Every non-canonical spelling of a path the review named, and a few more. */
function spellings(path: string, origin: string): Array<[string, string]> {
  const segs = path.split('/');
  const last = segs.length - 1;
  const out: Array<[string, string]> = [
    ['every segment escaped', escapeFirst(path, upper)],
    ['first segment escaped', path.replace(/^\/([A-Za-z0-9])/, (_m, c: string) => `/%${upper(c)}`)],
    ['double-encoded', path.replace(/^\/([A-Za-z0-9])/, (_m, c: string) => `/%25${upper(c)}`)],
    ['lowercase escape', escapeFirst(path, (c) => c.charCodeAt(0).toString(16).toLowerCase())],
    ['absolute-form', origin + path],
    ['dot segment', `/x/..${path}`],
    ['single-dot segment', `/.${path}`],
    ['encoded dot segment', `/x/%2E%2E${path}`],
    ['double slash', `/${path}`],
    ['escaped slash', path.lastIndexOf('/') > 0 ? path.replace(/\/([^/]*)$/, '%2F$1') : `/%2F${path.slice(1)}`],
    ['escaped backslash', `${path}%5C`],
  ];
  if (segs[last]) out.push(['escaped last letter', `${segs.slice(0, last).join('/')}/${segs[last]!.slice(0, -1)}%${upper(segs[last]!.slice(-1))}`]);
  return out;
}

const BODY: Record<string, unknown> = { ...stripeKey, label: 'bypass' };

for (const backend of await backends('control_auth')) {
  describe.skipIf(backend.skip)(`control API authentication (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;
    let routes: Route[];
    let ids: { key: string; budget: string; mintingKey: string };

    const fill = (url: string) =>
      url
        .replace(/^\/v1\/keys\/:id/, `/v1/keys/${ids.key}`)
        .replace(/^\/v1\/budgets\/:id/, `/v1/budgets/${encodeURIComponent(ids.budget)}`)
        .replace(/^\/v1\/minting_keys\/:id/, `/v1/minting_keys/${ids.mintingKey}`)
        .replace('/dashboard/vendor/:file', '/dashboard/vendor/preact.js')
        .replace('/dashboard/*', '/dashboard/app.js');
    const send = (method: string, path: string, headers: Record<string, string> = {}) => {
      const withBody = method === 'POST' || method === 'PATCH';
      return request(method, path, withBody ? { ...headers, 'content-type': 'application/json' } : headers, withBody ? JSON.stringify(BODY) : undefined);
    };
    /** The target sent as written, each on a fresh connection (Node's parser closes one it cannot parse). */
    const request = (method: string, path: string, headers: Record<string, string>, body?: string) =>
      new Promise<{ status: number; text: string; body: any }>((resolve, reject) => {
        const u = new URL(t.apiUrl);
        const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers, agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: any = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              /* not JSON */
            }
            resolve({ status: res.statusCode ?? 0, text, body: parsed });
          });
        });
        req.on('error', reject);
        req.end(body);
      });
    const state = async () => ({
      key: (await t.admin('GET', `/v1/keys/${ids.key}`)).body.status,
      keys: (await t.admin('GET', '/v1/keys?limit=100')).body.data.length,
      budget: (await t.admin('GET', `/v1/budgets/${encodeURIComponent(ids.budget)}`)).body.frozen,
      mintingKey: (await t.admin('GET', `/v1/minting_keys/${ids.mintingKey}`)).body.status,
    });

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(() => (storeConfig ? { store: storeConfig as never } : {}));
      routes = await collectRoutes(t);
      const budget = await t.admin('POST', '/v1/budgets', { id: 'user:bypass', limit_usd: 10, period: 'day' });
      expect(budget.status).toBe(201);
      const mk = await t.admin('POST', '/v1/minting_keys', { vendors: ['stripe'], allowed_endpoints: ['/v1/payment_intents'] });
      expect(mk.status).toBe(201);
      ids = { key: (await t.issue()).id, budget: budget.body.id, mintingKey: mk.body.id };
      // Some audit records, so an export that leaked would have something to leak.
      await t.proxy('/stripe/v1/customers', { token: 'vk_test_nope' });
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });

    it('the collected routes are the ones the gateway serves, and cover the whole API', () => {
      for (const r of routes) expect(t.gw.api.hasRoute({ method: r.method as 'GET', url: r.url }), `${r.method} ${r.url}`).toBe(true);
      const urls = new Set(routes.map((r) => r.url));
      for (const u of ['/v1/keys', '/v1/keys/:id/spend', '/v1/audit/export', '/v1/audit/stream', '/v1/stats/overview', '/v1/vendors', '/v1/budgets/:id', '/v1/minting_keys/:id/rotate', '/v1/alerts/deliveries', '/dashboard/session']) {
        expect(urls.has(u), u).toBe(true);
      }
      expect(routes.length).toBeGreaterThan(40);
    });

    it('the spellings from the review are refused with 400, never answered', async () => {
      const origin = new URL(t.apiUrl).origin;
      const cases: Array<[string, string]> = [
        ['GET', '/%761/audit/export'],
        ['GET', '/v%31/stats/overview'],
        ['GET', `/%76%31/keys/${ids.key}/spend`],
        ['GET', '/%761/audit/stream'],
        ['GET', '/%761/vendors'],
        ['GET', `${origin}/v1/audit/export`],
        ['GET', 'http://example.com/v1/audit/export'],
        ['POST', '/%761/keys'],
        ['DELETE', `/%761/keys/${ids.key}`],
        ['POST', '/%761/keys/revoke'],
        ['POST', '/%761/minting_keys'],
        ['GET', '/v1/%zz'],
        ['GET', '/v1/%C3'],
      ];
      const before = await state();
      for (const [method, path] of cases) {
        const r = await send(method, path);
        expect(r.status, `${method} ${path}: ${r.text.slice(0, 200)}`).toBe(400);
        expect(r.body).toMatchObject({ code: 'invalid_request', param: 'path' });
        expect(r.text).not.toContain(ids.key + '"');
        expect(r.text).not.toContain('audit_record');
      }
      expect(await state()).toEqual(before);
    });

    it('walks every route in every non-canonical spelling, without a token: 400, never 2xx or 5xx', async () => {
      const origin = new URL(t.apiUrl).origin;
      const before = await state();
      const seen: string[] = [];
      for (const r of routes) {
        for (const [how, path] of spellings(fill(r.url), origin)) {
          const res = await send(r.method, path).catch((e: Error) => {
            throw new Error(`${r.method} ${path} (${how}): ${e.message}`);
          });
          const what = `${r.method} ${path} (${how} of ${r.url}): ${res.status} ${res.text.slice(0, 160)}`;
          expect([400, 401], what).toContain(res.status);
          // Every one of these spellings is refused before routing is trusted, so always 400.
          expect(res.status, what).toBe(400);
          seen.push(what);
        }
      }
      expect(seen.length).toBeGreaterThan(400);
      expect(await state()).toEqual(before);
    });

    it('with the admin token too, a non-canonical spelling is refused rather than served', async () => {
      for (const path of ['/%761/keys', `/v1/keys/${ids.key}/%73pend`, '/v1/./keys', `${new URL(t.apiUrl).origin}/v1/keys`]) {
        const r = await send('GET', path, { authorization: `Bearer ${ADMIN_TOKEN}` });
        expect(r.status, path).toBe(400);
        expect(r.body.code).toBe('invalid_request');
      }
    });

    it('every route that is not public answers 401 without a token, and 401 with a wrong one', async () => {
      const before = await state();
      const guarded = routes.filter((r) => !PUBLIC_ROUTES.has(r.url));
      expect(guarded.length).toBeGreaterThan(30);
      for (const r of guarded) {
        for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong_admin_token_0123456789' }, { authorization: `Bearer ${ADMIN_TOKEN}x` }]) {
          const res = await send(r.method, fill(r.url), headers);
          expect(res.status, `${r.method} ${fill(r.url)} ${JSON.stringify(headers)}: ${res.text.slice(0, 160)}`).toBe(401);
          if (r.method !== 'HEAD') expect(res.body.code).toBe('unauthorized');
          expect(res.text).not.toContain('wrong_admin_token');
        }
      }
      expect(await state()).toEqual(before);
    });

    it('unmatched paths reveal nothing: 401 without a token, 404 with it', async () => {
      for (const path of ['/nope', '/v1/nope', '/v1/keys/', '/v1/keys/x/y/z', '/dashboardx', '/v2/keys']) {
        const anon = await send('GET', path);
        expect(anon.status, path).toBe(401);
        const authed = await send('GET', path, { authorization: `Bearer ${ADMIN_TOKEN}` });
        expect(authed.status, path).toBe(404);
        expect(authed.body.code).toMatch(/not_found$/);
      }
    });

    it('the public routes stay public, and only those', async () => {
      expect((await send('GET', '/healthz')).status).toBe(200);
      expect((await send('GET', '/readyz')).status).toBe(200);
      expect((await send('GET', '/openapi.json')).status).toBe(200);
      expect((await send('GET', '/metrics')).status).toBe(200);
      expect((await send('GET', '/dashboard/')).status).toBe(200);
      expect((await send('GET', '/dashboard/app.js')).status).toBe(200);
      expect((await send('GET', '/dashboard/vendor/preact.js')).status).toBe(200);
      expect((await send('GET', '/dashboard/session')).status).toBe(401);
      expect([...PUBLIC_ROUTES].every((u) => routes.some((r) => r.url === u))).toBe(true);
      // The API description marks exactly these as needing no token.
      const doc = (await send('GET', '/openapi.json')).body;
      for (const [path, item] of Object.entries<any>(doc.paths)) {
        for (const op of Object.values<any>(item)) {
          const open = Array.isArray(op.security) && op.security.length === 0;
          expect(open, path).toBe(PUBLIC_ROUTES.has(path));
        }
      }
    });

    it('canonical paths still work with the admin token (escaped budget ids included)', async () => {
      const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
      for (const r of routes.filter((x) => x.method === 'GET' && x.url.startsWith('/v1/') && x.url !== '/v1/audit/stream')) {
        const res = await send('GET', fill(r.url), auth);
        expect(res.status, `GET ${fill(r.url)}: ${res.text.slice(0, 200)}`).toBe(200);
      }
      // `:` in a budget id, escaped as encodeURIComponent does (uppercase) and raw.
      expect((await send('GET', '/v1/budgets/user%3Abypass', auth)).status).toBe(200);
      expect((await send('GET', '/v1/budgets/user:bypass', auth)).status).toBe(200);
      const issued = await send('POST', '/v1/keys', auth);
      expect(issued.status).toBe(201);
      expect((await send('DELETE', `/v1/keys/${issued.body.id}`, auth)).status).toBe(200);
      // The live tail answers with its event stream.
      const controller = new AbortController();
      const stream = await fetch(`${t.apiUrl}/v1/audit/stream`, { headers: auth, signal: controller.signal });
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toContain('text/event-stream');
      controller.abort();
    });
  });
}

describe('targetProblem', () => {
  it.each([
    '/v1/keys',
    '/v1/keys?label_prefix=%76%31&metadata%5Bx%5D=1',
    '/v1/budgets/user%3Au42',
    '/v1/budgets/team%40acme',
    '/dashboard/',
    '/',
  ])('accepts %s', (url) => expect(targetProblem(url)).toBeNull());

  it.each([
    'http://h/v1/keys',
    '*',
    'v1/keys',
    '/%761/keys',
    '/v1/%6beys',
    '/v1/%6Beys',
    '/v1/keys/%2e%2e',
    '/v1/keys/%252E',
    '/v1/keys%2Fx',
    '/v1/keys%5Cx',
    '/v1/../keys',
    '/v1/./keys',
    '//v1/keys',
    '/v1//keys',
    '/v1/keys/%3a',
    '/v1/keys/%',
    '/v1/keys/%4',
    '/v1/keys/%C3%A9',
    '/v1/ke ys',
    '/v1/k\\eys',
    '/v1/kéys',
  ])('refuses %s', (url) => expect(targetProblem(url)).not.toBeNull());
});
