import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CapExhaustedError,
  currentVaultKey,
  EndpointNotAllowedError,
  isCapExhausted,
  Keyleash,
  KeyRevokedError,
  NoVaultKeyError,
  requireVaultKey,
  runWithVaultKey,
  vaultFetch,
  withVaultKey,
} from '../src/index.js';
import { stripeClient } from '../src/stripe.js';
import { ADMIN_TOKEN, eventually, startGateway, STRIPE_TEST_SECRET, stripeSpec, type TestGateway } from './gateway.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t?.close();
});

const spec = () => ({ client: t.client, ...stripeSpec, allowedEndpoints: [...stripeSpec.allowedEndpoints] });

/** "Tool code" deep in the call stack: no key passed in, it reads the scope. */
async function chargeTool(amount: number) {
  const pi = await stripeClient().paymentIntents.create({ amount, currency: 'usd', customer: 'cus_123' });
  return pi.id;
}

describe('withVaultKey: issue → run with the key in scope → revoke', () => {
  it('gives tool code the key through AsyncLocalStorage and revokes it after', async () => {
    const before = t.sandbox.requests.length;
    let id = '';
    const piId = await withVaultKey({ ...spec(), label: 'scope-1' }, async (key) => {
      id = key.id;
      expect(currentVaultKey()?.id).toBe(key.id);
      expect(currentVaultKey('stripe')?.token).toBe(key.token);
      await new Promise((r) => setTimeout(r, 5)); // survives async hops
      return chargeTool(5000);
    });
    expect(piId).toMatch(/^pi_/);
    expect(t.sandbox.requests.length).toBe(before + 1);
    const seen = t.sandbox.requests.at(-1)!;
    expect(seen.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
    expect(seen.form).toMatchObject({ amount: '5000', currency: 'usd' });
    const k = await t.key(id);
    expect(k.status).toBe('revoked');
    expect(k.spend_today_usd).toBe(50);
    expect(currentVaultKey()).toBeUndefined();
  });

  it('revokes the key when the function throws', async () => {
    let id = '';
    await expect(
      withVaultKey(spec(), async (key) => {
        id = key.id;
        throw new Error('agent blew up');
      }),
    ).rejects.toThrow('agent blew up');
    expect((await t.key(id)).status).toBe('revoked');
  });

  it('keeps concurrent scopes apart', async () => {
    const seen = await Promise.all(
      [1, 2, 3].map((i) =>
        withVaultKey({ ...spec(), label: `concurrent-${i}` }, async (key) => {
          await new Promise((r) => setTimeout(r, 10 * (4 - i)));
          return currentVaultKey()!.id === key.id;
        }),
      ),
    );
    expect(seen).toEqual([true, true, true]);
  });

  it('issues one key per vendor entry, each readable by name, all revoked', async () => {
    let ids: string[] = [];
    await withVaultKey(
      {
        client: t.client,
        expiresIn: '5m',
        label: 'multi',
        vendors: {
          stripe: { allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 100 },
          refunds: { vendor: 'stripe', allowedEndpoints: ['POST /v1/refunds'], dailyUsdCap: 10 },
        },
      },
      async (keys) => {
        ids = [keys.stripe!.id, keys.refunds!.id];
        expect(currentVaultKey()!.id).toBe(keys.stripe!.id); // the first declared
        expect(currentVaultKey('refunds')!.allowed_endpoints).toEqual(['POST /v1/refunds']);
        // Each key keeps its own scope: the refunds key cannot create payment intents.
        const f = vaultFetch('refunds');
        await expect(
          f('/v1/payment_intents', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":100,"currency":"usd"}' }),
        ).rejects.toBeInstanceOf(EndpointNotAllowedError);
      },
    );
    expect(new Set(ids).size).toBe(2);
    for (const id of ids) expect((await t.key(id)).status).toBe('revoked');
  });

  it('gives up after issueTimeoutMs and still revokes the key that arrives late', async () => {
    const slow = new Keyleash({
      apiUrl: t.apiUrl,
      proxyUrl: t.proxyUrl,
      adminToken: ADMIN_TOKEN,
      fetch: async (input, init) => {
        if (init?.method === 'POST') await new Promise((r) => setTimeout(r, 300));
        return fetch(input, init);
      },
    });
    let ran = false;
    await expect(
      withVaultKey({ ...spec(), client: slow, label: 'late-issue', issueTimeoutMs: 50 }, () => {
        ran = true;
      }),
    ).rejects.toMatchObject({ code: 'timeout' });
    expect(ran).toBe(false);
    await eventually(async () => {
      const page = await t.client.listKeys({ labelPrefix: 'late-issue' });
      expect(page.data).toHaveLength(1);
      expect(page.data[0]!.status).toBe('revoked');
    });
  });

  it('requireVaultKey explains where the key is missing', () => {
    expect(() => requireVaultKey()).toThrow(NoVaultKeyError);
    expect(() => stripeClient()).toThrow(/withVaultKey/);
  });
});

describe('vaultFetch: a fetch bound to the key, with typed keyleash errors', () => {
  it('the seed flow: issue → call → cap_exhausted (CapExhaustedError) → revoke → key_revoked', async () => {
    const key = await t.client.issueKey({ ...stripeSpec, allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 100 });
    const post = (f: ReturnType<typeof vaultFetch>, amount: number) =>
      f('/stripe/v1/payment_intents', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ amount, currency: 'usd' }),
      });
    await runWithVaultKey(key, t.proxyUrl, async () => {
      const f = vaultFetch();
      const ok = await post(f, 5000);
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as { id: string }).id).toMatch(/^pi_/);

      const err = await post(f, 6000).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CapExhaustedError);
      expect(isCapExhausted(err)).toBe(true);
      expect(err).toMatchObject({ status: 429, code: 'cap_exhausted', remainingUsd: 50, costUsd: 60 });
    });
    await t.client.revokeKey(key.id);
    const f = vaultFetch({ key, proxyUrl: t.proxyUrl });
    await expect(post(f, 100)).rejects.toBeInstanceOf(KeyRevokedError);
  });

  it("passes the vendor's own errors through as responses, and rewrites vendor URLs", async () => {
    const key = await t.client.issueKey({ ...stripeSpec, allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 100 });
    const f = vaultFetch({ key, proxyUrl: t.proxyUrl, vendor: 'stripe' });
    const r = await f('https://api.stripe.com/v1/payment_intents', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'amount=100&currency=usd&payment_method=pm_card_chargeDeclined&confirm=true',
    });
    expect(r.status).toBe(402);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('card_declined');
    expect(t.sandbox.requests.at(-1)!.path).toBe('/v1/payment_intents');
  });

  it('isCapExhausted recognises the stripe client error too', async () => {
    const key = await t.client.issueKey({ ...stripeSpec, allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 1 });
    const err = await stripeClient({ key, proxyUrl: t.proxyUrl })
      .paymentIntents.create({ amount: 500, currency: 'usd' })
      .catch((e: unknown) => e);
    expect((err as { statusCode: number }).statusCode).toBe(429);
    expect(isCapExhausted(err)).toBe(true);
    expect(isCapExhausted(new Error('other'))).toBe(false);
  });
});
