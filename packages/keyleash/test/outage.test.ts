import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/config.js';
import { createGateway, openStore, type Gateway } from '../src/gateway.js';
import { createLogger } from '../src/log.js';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET } from './harness.js';
import {
  cable,
  dropSchema,
  flushPrefix,
  pgRedisAvailable,
  TEST_DATABASE_URL,
  TEST_REDIS_URL,
  uniqueName,
  type Cable,
} from './pg-redis-env.js';

// Postgres or Redis goes away under a running gateway. The services themselves keep running:
// the gateway reaches them through TCP forwarders (cables) that the test cuts and restores.

const available = await pgRedisAvailable('outage');

describe.skipIf(!available)('outages of Postgres and Redis', () => {
  const schema = uniqueName('kl_outage');
  const prefix = `${schema}:`;
  let pgCable: Cable;
  let redisCable: Cable;
  let sandbox: StripeSandbox;
  let gw: Gateway;
  let api: string;
  let proxy: string;

  beforeAll(async () => {
    pgCable = await cable(TEST_DATABASE_URL);
    redisCable = await cable(TEST_REDIS_URL);
    sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
    const sandboxUrl = await sandbox.listen();
    const config = parseConfig({
      admin_token: ADMIN_TOKEN,
      listen: { api: { port: 0 }, proxy: { port: 0 } },
      store: {
        url: pgCable.url(TEST_DATABASE_URL),
        redis_url: redisCable.url(TEST_REDIS_URL),
        schema,
        redis_prefix: prefix,
        pool_size: 5,
      },
      vendors: { stripe: { base_url: sandboxUrl, test_secret: STRIPE_TEST_SECRET } },
      log_level: 'silent',
    });
    const log = createLogger(config.log_level, new Writable({ write: (_c, _e, cb) => cb() }));
    gw = createGateway(config, { logger: log, store: await openStore(config, log) });
    ({ apiUrl: api, proxyUrl: proxy } = await gw.listen());
  });

  afterAll(async () => {
    await pgCable?.restore().catch(() => {});
    await redisCable?.restore().catch(() => {});
    await gw?.close();
    await sandbox?.close();
    await pgCable?.close();
    await redisCable?.close();
    if (available) {
      await dropSchema(schema);
      await flushPrefix(prefix);
    }
  });

  const get = async (url: string, init: RequestInit = {}) => {
    const res = await fetch(url, init);
    return { status: res.status, body: (await res.json()) as any };
  };
  const admin = (method: string, path: string, body?: unknown) =>
    get(api + path, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  const pay = (token: string) =>
    get(`${proxy}/v1/payment_intents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ amount: 10_000, currency: 'usd' }),
    });
  const issue = async () => {
    const r = await admin('POST', '/v1/keys', { vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 300 });
    expect(r.status).toBe(201);
    return r.body as { id: string; token: string };
  };
  /** Polls until the gateway serves again by itself; returns how long it took. */
  const recovers = async () => {
    const t0 = Date.now();
    for (let i = 0; i < 100; i++) {
      if ((await fetch(`${proxy}/readyz`)).ok && (await fetch(`${api}/readyz`)).ok) return Date.now() - t0;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('did not recover');
  };

  async function expectDown(component: 'postgres' | 'redis', token: string) {
    const before = sandbox.requests.length;
    const t0 = Date.now();
    const call = await pay(token);
    expect(call.status).toBe(503);
    expect(call.body.code).toBe('store_unavailable');
    expect(Date.now() - t0).toBeLessThan(4_000); // fails fast, not after a long hang
    expect(sandbox.requests.length).toBe(before); // never forwarded unmetered

    for (const base of [api, proxy]) {
      expect(await get(`${base}/readyz`)).toMatchObject({ status: 503, body: { status: 'unavailable', component } });
      expect((await get(`${base}/healthz`)).status).toBe(200); // alive: do not restart it, just stop routing
    }
  }

  it('Redis down: the proxy fails closed with 503, the API says redis, and it comes back by itself', async () => {
    const key = await issue();
    expect((await pay(key.token)).status).toBe(200);

    await redisCable.cut();
    await expectDown('redis', key.token);
    // Revoking must reach Redis (every replica checks it there), so it says so and changes nothing;
    // reading keys needs only Postgres and still works.
    const del = await admin('DELETE', `/v1/keys/${key.id}`);
    expect(del).toMatchObject({ status: 503, body: { code: 'store_unavailable', component: 'redis' } });
    expect((await admin('GET', `/v1/keys/${key.id}`)).body).toMatchObject({ status: 'active', spend_today_usd: 100 });

    await redisCable.restore();
    console.log(`redis outage: serving again ${await recovers()} ms after Redis came back`);
    expect((await pay(key.token)).status).toBe(200);
    expect((await admin('DELETE', `/v1/keys/${key.id}`)).status).toBe(200);
    expect((await pay(key.token)).body.code).toBe('key_revoked');

    const fresh = await issue();
    expect((await pay(fresh.token)).status).toBe(200);
  }, 30_000);

  it('Postgres down: the proxy fails closed with 503, the API says postgres, and no spend leaks', async () => {
    const key = await issue();
    expect((await pay(key.token)).status).toBe(200);

    await pgCable.cut();
    await expectDown('postgres', key.token);
    await expectDown('postgres', key.token);
    const view = await admin('GET', `/v1/keys/${key.id}`);
    expect(view).toMatchObject({ status: 503, body: { code: 'store_unavailable', component: 'postgres' } });

    await pgCable.restore();
    console.log(`postgres outage: serving again ${await recovers()} ms after Postgres came back`);
    // The refused calls were undone in Redis: $200 of the $300 cap remains, exactly.
    expect((await pay(key.token)).status).toBe(200);
    expect((await pay(key.token)).status).toBe(200);
    expect((await pay(key.token)).body.code).toBe('cap_exhausted');
    expect((await admin('GET', `/v1/keys/${key.id}`)).body).toMatchObject({ spend_today_usd: 300, request_count: 3 });
  }, 30_000);
});

if (!available) describe.skip('outages of Postgres and Redis (unreachable)', () => it('skipped', () => {}));
