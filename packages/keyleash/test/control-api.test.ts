import type { RouteOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildControlApp } from '../src/control/app.js';
import { ADMIN_TOKEN, ALL_SECRETS, startGateway, stripeKey, type TestGateway } from './harness.js';

// The control API end to end over real HTTP: a real gateway on port 0, a local Stripe sandbox.

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let seq = 0;
const uniq = (p: string) => `${p}-${Date.now().toString(36)}-${(seq++).toString(36)}-`;

/** Counts every key the gateway holds, following the cursor through all pages. */
async function countKeys(t: TestGateway): Promise<number> {
  let n = 0;
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const r = await t.admin('GET', `/v1/keys?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(r.status).toBe(200);
    n += r.body.data.length;
    if (!r.body.has_more) return n;
    cursor = r.body.next_cursor;
  }
  throw new Error('pagination did not end');
}

/** Every key matching `query`, following the cursor; fails if an id shows up twice. */
async function listAll(t: TestGateway, query: string, limit = 100): Promise<any[]> {
  const out: any[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const r = await t.admin('GET', `/v1/keys?${query}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    out.push(...r.body.data);
    if (!r.body.has_more) {
      expect(r.body.next_cursor).toBeNull();
      return out;
    }
    expect(typeof r.body.next_cursor).toBe('string');
    cursor = r.body.next_cursor;
  }
  throw new Error('pagination did not end');
}

async function raw(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body, text, headers: res.headers };
}

/** The raw answer text (the harness returns it, its `admin()` type does not declare it). */
const textOf = (r: { body: unknown }): string => {
  const text = (r as { text?: unknown }).text;
  return typeof text === 'string' ? text : JSON.stringify(r.body);
};

function expectErrorShape(body: any, code: string) {
  expect(body.code).toBe(code);
  expect(typeof body.message).toBe('string');
  expect(body.request_id).toMatch(/^req_/);
  expect(body.docs).toBe(`docs/errors.md#${code}`);
}

describe('happy', () => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startGateway();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('POST /v1/keys answers 201 with the key and its token', async () => {
    const before = Date.now();
    const r = await t.admin('POST', '/v1/keys', stripeKey);
    expect(r.status).toBe(201);
    const k = r.body;
    expect(k.id).toMatch(/^key_[0-9A-Za-z]+$/);
    expect(k.token).toMatch(/^vk_test_[0-9A-Za-z]{38}$/);
    expect(k.label).toBe(stripeKey.label);
    expect(k.vendor).toBe('stripe');
    expect(k.allowed_endpoints).toEqual(stripeKey.allowed_endpoints);
    expect(k.daily_usd_cap).toBe(1000);
    expect(k.mode).toBe('test');
    expect(k.status).toBe('active');
    expect(k.expires_at).toMatch(RFC3339);
    expect(k.created_at).toMatch(RFC3339);
    expect(Math.abs(Date.parse(k.created_at) - before)).toBeLessThan(2000);
    expect(Math.abs(Date.parse(k.expires_at) - (before + 300_000))).toBeLessThan(2000);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(r.headers.get('cache-control')).toBe('no-store');
  });

  it('mode live issues a vk_live_ token', async () => {
    const k = await t.issue({ ...stripeKey, mode: 'live' });
    expect(k.token).toMatch(/^vk_live_/);
    expect(k.mode).toBe('live');
  });

  it('cap as a decimal string, and no cap at all', async () => {
    const a = await t.issue({ ...stripeKey, daily_usd_cap: '12.50' });
    expect(a.daily_usd_cap).toBe(12.5);
    const { daily_usd_cap: _omit, ...noCap } = stripeKey;
    const b = await t.issue(noCap);
    expect(b.daily_usd_cap).toBeNull();
  });

  it.each<[string | number, number]>([
    ['30s', 30],
    ['5m', 300],
    ['15m', 900],
    ['30m', 1800],
    ['1h', 3600],
    ['24h', 86400],
    [90, 90],
    [86400, 86400],
  ])('expires_in %j sets expires_at %i seconds ahead', async (expires_in, seconds) => {
    const before = Date.now();
    const k = await t.issue({ ...stripeKey, expires_in });
    const after = Date.now();
    const exp = Date.parse(k.expires_at);
    expect(exp).toBeGreaterThanOrEqual(before + seconds * 1000 - 2000);
    expect(exp).toBeLessThanOrEqual(after + seconds * 1000 + 2000);
    expect(Math.abs(exp - Date.parse(k.created_at) - seconds * 1000)).toBeLessThanOrEqual(2000);
  });

  it('without expires_in the server default TTL (1h) applies', async () => {
    const { expires_in: _omit, ...body } = stripeKey;
    const k = await t.issue(body);
    expect(Math.abs(Date.parse(k.expires_at) - Date.parse(k.created_at) - 3600_000)).toBeLessThanOrEqual(2000);
  });

  it('GET /v1/keys/{id} shows a fresh key with no spend', async () => {
    const k = await t.issue();
    const r = await t.admin('GET', `/v1/keys/${k.id}`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      id: k.id,
      status: 'active',
      spend_today_usd: 0,
      remaining_today_usd: stripeKey.daily_usd_cap,
      request_count: 0,
      daily_usd_cap: stripeKey.daily_usd_cap,
      label: stripeKey.label,
      vendor: 'stripe',
      mode: 'test',
    });
    expect(r.body.created_at).toBe(k.created_at);
    expect(r.body.expires_at).toBe(k.expires_at);
    expect(r.body.revoked_at).toBeNull();
  });

  it('DELETE /v1/keys/{id} revokes (idempotently) and the proxy then refuses the key', async () => {
    const k = await t.issue();
    const ok = await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 100, currency: 'usd' } });
    expect(ok.status, ok.text).toBe(200);

    const first = await t.admin('DELETE', `/v1/keys/${k.id}`);
    expect(first.status).toBe(200);
    expect(first.body.id).toBe(k.id);
    expect(first.body.status).toBe('revoked');
    expect(first.body.revoked_at).toMatch(RFC3339);

    const second = await t.admin('DELETE', `/v1/keys/${k.id}`);
    expect(second.status).toBe(200);
    expect(second.body.status).toBe('revoked');
    expect(second.body.revoked_at).toBe(first.body.revoked_at);

    const refused = await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 100, currency: 'usd' } });
    expect(refused.status).toBe(401);
    expect(refused.body.code).toBe('key_revoked');
    const alsoRefused = await t.proxy('/stripe/v1/payment_intents', { token: k.token, body: { amount: 100, currency: 'usd' } });
    expect(alsoRefused.body.code).toBe('key_revoked');

    const got = await t.admin('GET', `/v1/keys/${k.id}`);
    expect(got.body.status).toBe('revoked');
  });

  it('a key issued with expires_in "1s" expires: the proxy answers key_expired', async () => {
    const k = await t.issue({ ...stripeKey, expires_in: '1s' });
    await sleep(1200);
    const r = await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 100, currency: 'usd' } });
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('key_expired');
    const got = await t.admin('GET', `/v1/keys/${k.id}`);
    expect(got.body.status).toBe('expired');
    const expired = await listAll(t, 'status=expired');
    expect(expired.map((x) => x.id)).toContain(k.id);
  });

  describe('listing', () => {
    it('GET /v1/keys answers a list object', async () => {
      await t.issue();
      const r = await t.admin('GET', '/v1/keys');
      expect(r.status).toBe(200);
      expect(r.body.object).toBe('list');
      expect(Array.isArray(r.body.data)).toBe(true);
      expect(typeof r.body.has_more).toBe('boolean');
      expect('next_cursor' in r.body).toBe(true);
      expect(r.body.data.length).toBeGreaterThan(0);
      for (const k of r.body.data) expect(k.object).toBe('vault_key');
    });

    it('limit=2 over 5 keys visits every key exactly once', async () => {
      const prefix = uniq('page');
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await t.issue({ ...stripeKey, label: `${prefix}${i}` })).id);

      const pages: string[][] = [];
      let cursor: string | null = null;
      do {
        const q: string = `/v1/keys?limit=2&label_prefix=${encodeURIComponent(prefix)}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const r = await t.admin('GET', q);
        expect(r.status).toBe(200);
        expect(r.body.data.length).toBeLessThanOrEqual(2);
        pages.push(r.body.data.map((k: any) => k.id));
        cursor = r.body.has_more ? r.body.next_cursor : null;
        if (!r.body.has_more) expect(r.body.next_cursor).toBeNull();
      } while (cursor !== null && pages.length < 10);

      expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
      const seen = pages.flat();
      expect(new Set(seen).size).toBe(5);
      expect([...seen].sort()).toEqual([...ids].sort());
      // Newest first (keys issued in the same millisecond may come in either order).
      const all = await listAll(t, `label_prefix=${encodeURIComponent(prefix)}`);
      const created = all.map((k) => Date.parse(k.created_at));
      expect(created).toEqual([...created].sort((x, y) => y - x));
    });

    it('filters: status, vendor, mode, label_prefix, metadata', async () => {
      const prefix = uniq('filt');
      const a = await t.issue({ ...stripeKey, label: `${prefix}a`, metadata: { user_id: 'u42', run_id: 'r1' } });
      const b = await t.issue({ ...stripeKey, label: `${prefix}b`, metadata: { user_id: 'u7' } });
      const c = await t.issue({ ...stripeKey, label: `${prefix}c`, mode: 'live', metadata: { user_id: 'u42' } });
      const other = await t.issue({ ...stripeKey, label: `other-${prefix}`, metadata: { user_id: 'u42' } });
      expect((await t.admin('DELETE', `/v1/keys/${b.id}`)).status).toBe(200);

      const lp = `label_prefix=${encodeURIComponent(prefix)}`;
      const ids = async (q: string) => (await listAll(t, q)).map((k) => k.id).sort();

      expect(await ids(lp)).toEqual([a.id, b.id, c.id].sort());
      expect(await ids(`${lp}&status=revoked`)).toEqual([b.id]);
      expect(await ids(`${lp}&status=active`)).toEqual([a.id, c.id].sort());
      expect(await ids(`${lp}&vendor=stripe`)).toEqual([a.id, b.id, c.id].sort());
      expect(await ids(`${lp}&vendor=twilio`)).toEqual([]);
      expect(await ids(`${lp}&mode=live`)).toEqual([c.id]);
      expect(await ids(`${lp}&mode=test`)).toEqual([a.id, b.id].sort());
      expect(await ids(`${lp}&metadata[user_id]=u42`)).toEqual([a.id, c.id].sort());
      expect(await ids(`${lp}&metadata%5Buser_id%5D=u42&metadata%5Brun_id%5D=r1`)).toEqual([a.id]);
      expect(await ids(`${lp}&metadata[user_id]=u42&mode=test`)).toEqual([a.id]);

      // Across all keys (not only this prefix), every answer really matches its filter.
      for (const k of await listAll(t, 'status=revoked')) expect(k.status).toBe('revoked');
      for (const k of await listAll(t, 'status=active')) expect(k.status).toBe('active');
      for (const k of await listAll(t, 'mode=live')) expect(k.mode).toBe('live');
      for (const k of await listAll(t, 'vendor=stripe')) expect(k.vendor).toBe('stripe');
      const u42 = await listAll(t, 'metadata[user_id]=u42');
      for (const k of u42) expect(k.metadata.user_id).toBe('u42');
      expect(u42.map((k) => k.id)).toContain(other.id);
    });
  });

  describe('openapi', () => {
    it('GET /openapi.json needs no auth and is an OpenAPI 3.1 document', async () => {
      const r = await raw(`${t.apiUrl}/openapi.json`);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
      const doc = r.body;
      expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
      expect(typeof doc.info?.title).toBe('string');
      expect(typeof doc.info?.version).toBe('string');
      expect(typeof doc.paths).toBe('object');
      expect(doc.components?.securitySchemes?.admin).toMatchObject({ type: 'http', scheme: 'bearer' });
      // Every operation answers something, and every $ref resolves inside the document.
      const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
      for (const ref of refs) {
        const pointer = JSON.parse(`{${ref}}`).$ref as string;
        expect(pointer.startsWith('#/')).toBe(true);
        let node: any = doc;
        for (const part of pointer.slice(2).split('/')) node = node?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
        expect(node, `unresolved ${pointer}`).toBeDefined();
      }
      for (const [path, item] of Object.entries<any>(doc.paths)) {
        expect(path.startsWith('/')).toBe(true);
        for (const m of ['get', 'post', 'put', 'patch', 'delete']) {
          if (item[m]) expect(Object.keys(item[m].responses ?? {}).length, `${m} ${path}`).toBeGreaterThan(0);
        }
      }
      expect(doc.paths['/v1/keys'].post.responses['201']).toBeDefined();
      expect(doc.paths['/v1/keys'].post.responses['200']).toBeUndefined();
    });

    it('documents every route the control app serves', async () => {
      // Collect the routes with an onRoute hook on an app built the way the gateway builds its
      // own (routes are registered by plugins, which load at ready(), after the hook is added).
      const routes: { method: string; url: string }[] = [];
      const app = buildControlApp({
        adminToken: ADMIN_TOKEN,
        keys: t.gw.keys,
        store: t.gw.store,
        audit: t.gw.audit,
        catalog: t.gw.catalog,
        log: t.gw.log,
      });
      app.addHook('onRoute', (opts: RouteOptions) => {
        const methods = Array.isArray(opts.method) ? opts.method : [opts.method];
        for (const method of methods) routes.push({ method: method.toUpperCase(), url: opts.url });
      });
      await app.ready();
      await app.close();

      const served = routes.filter((r) => r.method !== 'HEAD');
      expect(served.length).toBeGreaterThan(0);
      // The collected routes are the ones the running gateway serves.
      for (const r of served) {
        expect(t.gw.api.hasRoute({ method: r.method as 'GET', url: r.url }), `${r.method} ${r.url}`).toBe(true);
      }
      const printed = t.gw.api.printRoutes({ commonPrefix: false });
      expect(printed).toContain('/v1/keys');

      const doc = (await raw(`${t.apiUrl}/openapi.json`)).body;
      const toOpenApi = (url: string) => url.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
      const missing = served
        .filter((r) => r.url.startsWith('/v1'))
        .filter((r) => !doc.paths[toOpenApi(r.url)]?.[r.method.toLowerCase()])
        .map((r) => `${r.method} ${r.url}`);
      expect(missing, `served but not documented: ${missing.join(', ')}`).toEqual([]);
      expect(served.filter((r) => r.url.startsWith('/v1')).length).toBeGreaterThanOrEqual(4);

      // And the other way round: every documented operation is served.
      const fromOpenApi = (path: string) => path.replace(/\{([^}]+)\}/g, ':$1');
      for (const [path, item] of Object.entries<any>(doc.paths)) {
        for (const m of ['get', 'post', 'put', 'patch', 'delete']) {
          if (!item[m]) continue;
          const url = fromOpenApi(path);
          expect(t.gw.api.hasRoute({ method: m.toUpperCase() as 'GET', url }), `${m.toUpperCase()} ${path} documented but not served`).toBe(true);
        }
      }
    });
  });

  describe('health', () => {
    it.each(['/healthz', '/readyz'])('%s answers 200 on the API and on the proxy listener', async (path) => {
      const api = await raw(`${t.apiUrl}${path}`);
      expect(api.status).toBe(200);
      const proxy = await raw(`${t.proxyUrl}${path}`);
      expect(proxy.status).toBe(200);
    });
  });
});

describe('errors', () => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startGateway();
    // A few keys so "nothing written" is checked against a non-empty store.
    await t.issue();
    await t.issue({ ...stripeKey, mode: 'live' });
  });
  afterAll(async () => {
    await t?.close();
  });

  const overMax: [string, unknown][] = [
    ['"25h"', '25h'],
    ['90000', 90000],
    ['"2d"', '2d'],
    ['"1441m"', '1441m'],
  ];
  it.each(overMax)('expires_in %s over the server maximum (24h) is 400 with param expires_in', async (_name, expires_in) => {
    const before = await countKeys(t);
    const r = await t.admin('POST', '/v1/keys', { ...stripeKey, expires_in });
    expect(r.status).toBe(400);
    expectErrorShape(r.body, 'invalid_request');
    expect(r.body.param).toBe('expires_in');
    expect(await countKeys(t)).toBe(before);
  });

  const without = (field: keyof typeof stripeKey) => {
    const copy: Record<string, unknown> = { ...stripeKey };
    delete copy[field];
    return copy;
  };

  // [case, body (a string is sent as-is), code, param: exact string or a pattern]
  const badInputs: [string, unknown, string, string | RegExp][] = [
    ['invalid JSON', '{"vendor": "stripe",', 'invalid_json', 'body'],
    ['a JSON array body', [stripeKey], 'invalid_request', 'body'],
    ['a JSON string body', '"stripe"', 'invalid_request', 'body'],
    ['JSON null body', 'null', 'invalid_request', 'body'],
    ['unknown vendor', { ...stripeKey, vendor: 'paypal' }, 'invalid_request', 'vendor'],
    ['missing vendor', without('vendor'), 'invalid_request', 'vendor'],
    ['vendor not a string', { ...stripeKey, vendor: 42 }, 'invalid_request', 'vendor'],
    ['missing allowed_endpoints', without('allowed_endpoints'), 'invalid_request', 'allowed_endpoints'],
    ['empty allowed_endpoints', { ...stripeKey, allowed_endpoints: [] }, 'invalid_request', 'allowed_endpoints'],
    ['allowed_endpoints not a list', { ...stripeKey, allowed_endpoints: '/v1/x' }, 'invalid_request', 'allowed_endpoints'],
    ['endpoint "v1/x"', { ...stripeKey, allowed_endpoints: ['v1/x'] }, 'invalid_request', /^allowed_endpoints(\.0)?$/],
    ['endpoint "/v1/../x"', { ...stripeKey, allowed_endpoints: ['/v1/../x'] }, 'invalid_request', /^allowed_endpoints(\.0)?$/],
    ['endpoint "/v1/a*"', { ...stripeKey, allowed_endpoints: ['/v1/a*'] }, 'invalid_request', /^allowed_endpoints(\.0)?$/],
    ['second endpoint bad', { ...stripeKey, allowed_endpoints: ['/v1/ok', 'FETCH /v1/x'] }, 'invalid_request', /^allowed_endpoints(\.1)?$/],
    ['negative cap', { ...stripeKey, daily_usd_cap: -5 }, 'invalid_request', 'daily_usd_cap'],
    ['negative cap string', { ...stripeKey, daily_usd_cap: '-5' }, 'invalid_request', 'daily_usd_cap'],
    ['cap "abc"', { ...stripeKey, daily_usd_cap: 'abc' }, 'invalid_request', 'daily_usd_cap'],
    ['cap with 7 decimals', { ...stripeKey, daily_usd_cap: 1.1234567 }, 'invalid_request', 'daily_usd_cap'],
    ['cap with 7 decimals as a string', { ...stripeKey, daily_usd_cap: '1.1234567' }, 'invalid_request', 'daily_usd_cap'],
    ['cap as a boolean', { ...stripeKey, daily_usd_cap: true }, 'invalid_request', 'daily_usd_cap'],
    ['TTL "5 minutes"', { ...stripeKey, expires_in: '5 minutes' }, 'invalid_request', 'expires_in'],
    ['TTL "-5m"', { ...stripeKey, expires_in: '-5m' }, 'invalid_request', 'expires_in'],
    ['TTL 0', { ...stripeKey, expires_in: 0 }, 'invalid_request', 'expires_in'],
    ['TTL "1y"', { ...stripeKey, expires_in: '1y' }, 'invalid_request', 'expires_in'],
    ['TTL -5', { ...stripeKey, expires_in: -5 }, 'invalid_request', 'expires_in'],
    ['TTL 1.5', { ...stripeKey, expires_in: 1.5 }, 'invalid_request', 'expires_in'],
    ['bad mode', { ...stripeKey, mode: 'prod' }, 'invalid_request', 'mode'],
    ['unknown top-level field', { ...stripeKey, ttl: '5m' }, 'invalid_request', 'ttl'],
    ['metadata with a non-string value', { ...stripeKey, metadata: { user_id: 42 } }, 'invalid_request', /^metadata(\.user_id)?$/],
    ['metadata not an object', { ...stripeKey, metadata: 'u42' }, 'invalid_request', 'metadata'],
    ['label not a string', { ...stripeKey, label: 7 }, 'invalid_request', 'label'],
  ];

  it.each(badInputs)('%s → 400 naming the field, nothing written', async (_name, body, code, param) => {
    const before = await countKeys(t);
    const r = await t.admin('POST', '/v1/keys', body);
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expectErrorShape(r.body, code);
    expect(typeof r.body.param, JSON.stringify(r.body)).toBe('string');
    if (typeof param === 'string') expect(r.body.param).toBe(param);
    else expect(r.body.param).toMatch(param);
    expect(r.body.token).toBeUndefined();
    expect(await countKeys(t)).toBe(before);
  });

  it('an empty JSON body is 400 invalid_json', async () => {
    const before = await countKeys(t);
    const r = await raw(`${t.apiUrl}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: '',
    });
    expect(r.status).toBe(400);
    expectErrorShape(r.body, 'invalid_json');
    expect(r.body.param).toBe('body');
    expect(await countKeys(t)).toBe(before);
  });

  it('a body over 64 KiB is 413 body_too_large', async () => {
    const before = await countKeys(t);
    const r = await t.admin('POST', '/v1/keys', { ...stripeKey, label: 'x'.repeat(65 * 1024) });
    expect(r.status).toBe(413);
    expectErrorShape(r.body, 'body_too_large');
    expect(await countKeys(t)).toBe(before);
  });

  it.each(['text/plain', 'application/x-www-form-urlencoded', 'application/xml'])(
    'content type %s is refused with a code',
    async (contentType) => {
      const before = await countKeys(t);
      const r = await raw(`${t.apiUrl}/v1/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': contentType },
        body: contentType.includes('form') ? 'vendor=stripe&allowed_endpoints=/v1/x' : JSON.stringify(stripeKey),
      });
      expect([400, 415]).toContain(r.status);
      expect(typeof r.body.code).toBe('string');
      if (r.status === 415) expectErrorShape(r.body, 'unsupported_media_type');
      expect(await countKeys(t)).toBe(before);
    },
  );

  it('GET and DELETE of an unknown id are 404 key_not_found', async () => {
    for (const method of ['GET', 'DELETE']) {
      const r = await t.admin(method, '/v1/keys/key_doesnotexist000000000000');
      expect(r.status).toBe(404);
      expectErrorShape(r.body, 'key_not_found');
    }
  });

  it('an unknown /v1 route is 404 not_found', async () => {
    const r = await t.admin('GET', '/v1/nothing-here');
    expect(r.status).toBe(404);
    expectErrorShape(r.body, 'not_found');
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=abc', 'limit'],
    ['limit=101', 'limit'],
    ['limit=-1', 'limit'],
    ['limit=2.5', 'limit'],
    ['cursor=garbage', 'cursor'],
    ['cursor=%E2%9C%93not-a-cursor', 'cursor'],
    [`cursor=${Buffer.from('{"a":1}').toString('base64url')}`, 'cursor'],
    ['status=deleted', 'status'],
    ['mode=prod', 'mode'],
    ['limit=1&limit=2', 'limit'],
  ])('GET /v1/keys?%s is 400 naming %s', async (query, param) => {
    const r = await t.admin('GET', `/v1/keys?${query}`);
    expect(r.status).toBe(400);
    expectErrorShape(r.body, 'invalid_request');
    expect(r.body.param).toBe(param);
  });
});

describe('security', () => {
  let t: TestGateway;
  let key: { id: string; token: string };
  beforeAll(async () => {
    t = await startGateway();
    key = await t.issue();
  });
  afterAll(async () => {
    await t?.close();
  });

  const ATTACKER = 'attacker_guess_token_5f2d9c81e7';
  const badHeaders: [string, Record<string, string>, string | null][] = [
    ['missing', {}, null],
    ['wrong token', { authorization: `Bearer ${ATTACKER}` }, ATTACKER],
    ['empty bearer', { authorization: 'Bearer ' }, null],
    ['admin token without a scheme', { authorization: ADMIN_TOKEN }, ADMIN_TOKEN],
    ['admin token as Basic', { authorization: `Basic ${Buffer.from(`${ADMIN_TOKEN}:`).toString('base64')}` }, ADMIN_TOKEN],
    ['admin token as Token', { authorization: `Token ${ADMIN_TOKEN}` }, ADMIN_TOKEN],
    ['admin token with a prefix', { authorization: `Bearer x${ADMIN_TOKEN}` }, ADMIN_TOKEN],
    ['admin token truncated', { authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}` }, ADMIN_TOKEN.slice(0, -1)],
    ['admin token in another header', { 'x-api-key': ADMIN_TOKEN }, ADMIN_TOKEN],
  ];
  const routes: [string, (id: string) => string][] = [
    ['POST', () => '/v1/keys'],
    ['GET', () => '/v1/keys'],
    ['GET', (id) => `/v1/keys/${id}`],
    ['DELETE', (id) => `/v1/keys/${id}`],
    ['GET', () => '/v1/audit'],
    ['GET', () => '/v1/keys/key_doesnotexist000000000000'],
    ['GET', () => '/v1/not-a-route'],
  ];

  describe.each(routes)('%s %s', (method, path) => {
    it.each(badHeaders)('%s admin token → 401 unauthorized, token not echoed', async (_name, headers, sent) => {
      const isPost = method === 'POST';
      const r = await raw(t.apiUrl + path(key.id), {
        method,
        headers: { ...headers, ...(isPost ? { 'content-type': 'application/json' } : {}) },
        body: isPost ? JSON.stringify(stripeKey) : undefined,
      });
      expect(r.status).toBe(401);
      expectErrorShape(r.body, 'unauthorized');
      if (sent) expect(r.text).not.toContain(sent);
      expect(r.text).not.toContain(ADMIN_TOKEN);
    });

    it('a vault key is not an admin token', async () => {
      const r = await raw(t.apiUrl + path(key.id), {
        method,
        headers: { authorization: `Bearer ${key.token}` },
      });
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('unauthorized');
      expect(r.text).not.toContain(key.token);
    });
  });

  it('unauthorized requests change nothing', async () => {
    const before = await countKeys(t);
    await raw(`${t.apiUrl}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ATTACKER}`, 'content-type': 'application/json' },
      body: JSON.stringify(stripeKey),
    });
    await raw(`${t.apiUrl}/v1/keys/${key.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ATTACKER}` } });
    expect(await countKeys(t)).toBe(before);
    const got = await t.admin('GET', `/v1/keys/${key.id}`);
    expect(got.body.status).toBe('active');
  });

  it('auth is checked before the body is parsed', async () => {
    const r = await raw(`${t.apiUrl}/v1/keys`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{not json',
    });
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('unauthorized');
  });

  it('the token is only in the issue answer, never in GET or list', async () => {
    const k = await t.issue({ ...stripeKey, label: 'secret-check' });
    const got = await t.admin('GET', `/v1/keys/${k.id}`);
    expect(got.status).toBe(200);
    expect(got.body.token).toBeUndefined();
    expect(textOf(got)).not.toContain(k.token);

    const list = await t.admin('GET', '/v1/keys?limit=100');
    expect(list.status).toBe(200);
    expect(list.body.data.some((x: any) => x.id === k.id)).toBe(true);
    for (const x of list.body.data) expect(x.token).toBeUndefined();
    expect(textOf(list)).not.toContain(k.token);
    expect(textOf(list)).not.toContain(key.token);

    const revoked = await t.admin('DELETE', `/v1/keys/${k.id}`);
    expect(revoked.body.token).toBeUndefined();
    expect(textOf(revoked)).not.toContain(k.token);
  });

  it('no control API answer carries a configured secret', async () => {
    const answers = [
      await t.admin('POST', '/v1/keys', stripeKey),
      await t.admin('POST', '/v1/keys', { ...stripeKey, mode: 'live' }),
      await t.admin('GET', '/v1/keys?limit=100'),
      await t.admin('GET', `/v1/keys/${key.id}`),
      await t.admin('GET', '/v1/audit'),
      await t.admin('POST', '/v1/keys', { ...stripeKey, vendor: 'nope' }),
      await raw(`${t.apiUrl}/openapi.json`),
    ];
    for (const a of answers) for (const s of ALL_SECRETS) expect(textOf(a)).not.toContain(s);
  });
});

describe('modes without a credential', () => {
  it('refuses to issue a live key when no live secret is configured, and writes nothing', async () => {
    const g = await startGateway((url) => ({ vendors: { stripe: { base_url: url, test_secret: 'sk_test_only_0123456789' } } }));
    try {
      const r = await g.admin('POST', '/v1/keys', { ...stripeKey, mode: 'live' });
      expect(r.status).toBe(400);
      expect(r.body).toMatchObject({ code: 'mode_unavailable', param: 'mode' });
      expect((await g.admin('GET', '/v1/keys')).body.data).toHaveLength(0);
      expect((await g.admin('POST', '/v1/keys', stripeKey)).status).toBe(201);
    } finally {
      await g.close();
    }
  });
});
