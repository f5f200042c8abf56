import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  currentVaultKey,
  isCapExhausted,
  Keyleash,
  Minter,
  MintingKeyNotFoundError,
  narrowKey,
  withVaultKey,
  type MintedKey,
} from '../src/index.js';
import { keyleashExpress } from '../src/express.js';
import { stripeClient } from '../src/stripe.js';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET, startGateway, type TestGateway } from './gateway.js';

// Minting and narrowing from the TypeScript SDK against the real gateway (docs/minting.md).

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t?.close();
});

const newMintingKey = (o: Partial<Parameters<Keyleash['createMintingKey']>[0]> = {}) =>
  t.client.createMintingKey({
    label: 'express-backend',
    vendors: ['stripe'],
    allowedEndpoints: ['/v1/payment_intents', '/v1/payment_intents/*', 'POST /v1/refunds'],
    maxDailyUsdCap: 50,
    maxTtl: '1h',
    ...o,
  });

/** A control API client that counts its calls, to show minting makes none. */
function countingClient() {
  let calls = 0;
  const client = new Keyleash({
    apiUrl: t.apiUrl,
    proxyUrl: t.proxyUrl,
    adminToken: ADMIN_TOKEN,
    fetch: (input, init) => {
      calls++;
      return fetch(input, init);
    },
  });
  return { client, calls: () => calls };
}

describe('minting from the TypeScript SDK', () => {
  it('creates, reads, lists, rotates and revokes minting keys', async () => {
    const mk = await newMintingKey({ metadata: { team: 'billing' } });
    expect(mk.secret).toMatch(/^klm_test_/);
    expect(await t.client.getMintingKey(mk.id)).toMatchObject({ id: mk.id, status: 'active', version: 1, metadata: { team: 'billing' } });
    expect((await t.client.getMintingKey(mk.id)).secret).toBeUndefined();
    expect((await t.client.listMintingKeys({ limit: 100 })).data.map((m) => m.id)).toContain(mk.id);
    const rotated = await t.client.rotateMintingKey(mk.id, { gracePeriod: '5m' });
    expect(rotated.version).toBe(2);
    expect(new Minter(rotated.secret).version).toBe(2);
    expect((await t.client.revokeMintingKey(mk.id)).status).toBe('revoked');
    await expect(t.client.getMintingKey('mk_000000000000000000000000')).rejects.toBeInstanceOf(MintingKeyNotFoundError);
  });

  it('mints a key offline and charges Stripe with it through the proxy, with no admin token at all', async () => {
    const mk = await newMintingKey();
    const minter = new Minter(mk.secret);
    const seen = t.sandbox.requests.length;
    const pi = await withVaultKey(
      { minter, proxyUrl: t.proxyUrl, vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 10, label: 'run-7' },
      async (key) => {
        expect(key).toMatchObject({ origin: 'minted', minting_key_id: mk.id, daily_usd_cap: 10 });
        return stripeClient().paymentIntents.create({ amount: 400, currency: 'usd' });
      },
    );
    expect(pi.id).toMatch(/^pi_/);
    const upstream = t.sandbox.requests.slice(seen);
    expect(upstream.map((r) => r.headers.authorization)).toEqual([`Bearer ${STRIPE_TEST_SECRET}`]);
    const listed = (await t.client.listKeys({ mintingKey: mk.id })).data;
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ origin: 'minted', label: 'run-7', spend_today_usd: 4, status: 'active' });
  });

  it('narrows the request key for a sub-agent: its own lower cap and endpoints, its spend counted against the parent', async () => {
    const mk = await newMintingKey();
    const minter = new Minter(mk.secret);
    const parent = minter.mint({ vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents', 'POST /v1/refunds'], dailyUsdCap: 20 });
    const child: MintedKey = narrowKey(parent, { allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 5, label: 'sub-agent' });
    const sub = stripeClient({ key: child, proxyUrl: t.proxyUrl });
    await sub.paymentIntents.create({ amount: 300, currency: 'usd' });
    const over = await sub.paymentIntents.create({ amount: 201, currency: 'usd' }).catch((e: unknown) => e);
    expect(isCapExhausted(over)).toBe(true);
    const refund = await sub.refunds.create({ payment_intent: 'pi_1', amount: 100 }).catch((e: { code?: string }) => e);
    expect((refund as { code?: string }).code).toBe('endpoint_not_allowed');
    expect((await t.client.getKey(parent.id)).spend_today_usd).toBe(3);
    expect(await t.client.getKey(child.id)).toMatchObject({ parent_id: parent.id, daily_usd_cap: 5, label: '/sub-agent', spend_today_usd: 3 });
    expect(child.label).toBe('/sub-agent');
    // The parent's own cap binds the siblings together.
    const sibling = stripeClient({ key: narrowKey(parent, { dailyUsdCap: 20 }), proxyUrl: t.proxyUrl });
    await sibling.paymentIntents.create({ amount: 1700, currency: 'usd' });
    const shared = await sibling.paymentIntents.create({ amount: 1, currency: 'usd' }).catch((e: unknown) => e);
    expect(isCapExhausted(shared)).toBe(true);
  });

  it('reports the label the gateway records for every key of a lineage', async () => {
    const mk = await newMintingKey();
    const minter = new Minter(mk.secret);
    const root = minter.mint({ vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'], label: 'flask-u42-run7' });
    const tool = narrowKey(root, { label: 'refund-tool' });
    const kept = narrowKey(tool, { dailyUsdCap: 1 });
    const step = narrowKey(kept, { label: 'step 2' });
    const bare = narrowKey(minter.mint({ vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'] }), { label: 'sub' });
    expect([root, tool, kept, step, bare].map((k) => k.label)).toEqual([
      'flask-u42-run7',
      'flask-u42-run7/refund-tool',
      'flask-u42-run7/refund-tool',
      'flask-u42-run7/refund-tool/step 2',
      '/sub',
    ]);
    for (const k of [root, tool, kept, step, bare]) {
      await stripeClient({ key: k, proxyUrl: t.proxyUrl }).paymentIntents.create({ amount: 1, currency: 'usd' });
      expect((await t.client.getKey(k.id)).label).toBe(k.label);
    }
  });

  it('revokes a minted key before its first use, and a revoked parent stops its narrowed keys', async () => {
    const mk = await newMintingKey();
    const minter = new Minter(mk.secret);
    const unused = minter.mint({ vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'] });
    expect(await t.client.revokeKey(unused.id)).toMatchObject({ id: unused.id, status: 'revoked' });
    const err = await stripeClient({ key: unused, proxyUrl: t.proxyUrl })
      .paymentIntents.create({ amount: 100, currency: 'usd' })
      .catch((e: { code?: string; statusCode?: number }) => e);
    expect(err).toMatchObject({ statusCode: 401, code: 'key_revoked' });

    const parent = minter.mint({ vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'] });
    const child = narrowKey(parent, {});
    await stripeClient({ key: child, proxyUrl: t.proxyUrl }).paymentIntents.create({ amount: 100, currency: 'usd' });
    await t.client.revokeKey(parent.id);
    const after = await stripeClient({ key: child, proxyUrl: t.proxyUrl })
      .paymentIntents.create({ amount: 100, currency: 'usd' })
      .catch((e: { code?: string }) => e);
    expect((after as { code?: string }).code).toBe('key_revoked');
  });

  it('refuses options a minted key cannot honour before anything runs', async () => {
    const minter = new Minter((await newMintingKey()).secret);
    await expect(withVaultKey({ minter, proxyUrl: t.proxyUrl, vendor: 'stripe', allowedEndpoints: ['/v1/x'], mode: 'live' }, () => 1)).rejects.toThrow(TypeError);
    await expect(
      withVaultKey({ minter, proxyUrl: t.proxyUrl, vendors: { stripe: { allowedEndpoints: ['/v1/x'], rateLimit: { requests: 1, per: 'second' } } } }, () => 1),
    ).rejects.toThrow(/rate_limit/);
    await expect(withVaultKey({ vendor: 'stripe', allowedEndpoints: ['/v1/x'], proxyUrl: t.proxyUrl }, () => 1)).rejects.toThrow(/client.*minter/);
  });
});

describe('express middleware minting a key per request', () => {
  async function app(options: Parameters<typeof keyleashExpress>[0]) {
    const a = express();
    a.use(keyleashExpress(options));
    a.post('/charge', async (req, res) => {
      try {
        const pi = await stripeClient().paymentIntents.create({ amount: Number(req.query.amount), currency: 'usd' });
        res.json({ pi: pi.id, key_id: currentVaultKey()?.id });
      } catch (err) {
        if (isCapExhausted(err)) res.status(402).json({ error: 'spend limit reached', key_id: currentVaultKey()?.id });
        else res.status(500).json({ error: String(err) });
      }
    });
    const server = a.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () => new Promise<void>((r) => (server.close(() => r()), server.closeAllConnections())),
    };
  }

  it('mints each request its own key without calling the control API, and a spent cap becomes the app\'s 402', async () => {
    const minter = new Minter((await newMintingKey()).secret);
    const counting = countingClient();
    const server = await app({ client: counting.client, minter, vendor: 'stripe', allowedEndpoints: ['POST /v1/payment_intents'], dailyUsdCap: 5, expiresIn: '1m' });
    try {
      const a = (await (await fetch(`${server.url}/charge?amount=400`, { method: 'POST' })).json()) as { key_id: string };
      const b = await fetch(`${server.url}/charge?amount=450`, { method: 'POST' });
      expect(b.status).toBe(200);
      const bKey = ((await b.json()) as { key_id: string }).key_id;
      expect(bKey).not.toBe(a.key_id);
      const c = await fetch(`${server.url}/charge?amount=501`, { method: 'POST' });
      expect(c.status).toBe(402);
      expect(counting.calls()).toBe(0);
      expect((await t.client.getKey(a.key_id)).spend_today_usd).toBe(4);
    } finally {
      await server.close();
    }
  });

  it('revokes the minted keys after the response when asked to', async () => {
    const minter = new Minter((await newMintingKey()).secret);
    const counting = countingClient();
    const server = await app({ client: counting.client, minter, revokeMinted: true, vendor: 'stripe', allowedEndpoints: ['POST /v1/payment_intents'], dailyUsdCap: 5 });
    try {
      const r = (await (await fetch(`${server.url}/charge?amount=100`, { method: 'POST' })).json()) as { key_id: string };
      await expect.poll(async () => (await t.client.getKey(r.key_id)).status).toBe('revoked');
      expect(counting.calls()).toBe(1);
    } finally {
      await server.close();
    }
  });
});
