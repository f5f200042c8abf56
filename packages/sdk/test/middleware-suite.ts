import { describe, expect, it } from 'vitest';
import { currentVaultKey, isCapExhausted, Keyleash, type MiddlewareOptions } from '../src/index.js';
import { stripeClient } from '../src/stripe.js';
import { ADMIN_TOKEN, eventually, STRIPE_TEST_SECRET, type TestGateway } from './gateway.js';

// The same app written for each framework: the routes' logic is shared, the framework adapts it.

export type Logic = (req: { query: Record<string, string | undefined> }) => Promise<{ status: number; body: unknown }>;

export const routes: Record<string, Logic> = {
  /** The seed flow: a tool charges through the proxy; a spent cap becomes the app's own 402. */
  '/charge': async ({ query }) => {
    const key = currentVaultKey();
    try {
      const pi = await stripeClient().paymentIntents.create({ amount: Number(query.amount ?? 5000), currency: 'usd', customer: 'cus_123' });
      return { status: 200, body: { payment_intent: pi.id, key_id: key?.id } };
    } catch (err) {
      if (isCapExhausted(err)) return { status: 402, body: { error: 'spend limit reached for this request', key_id: key?.id } };
      throw err;
    }
  },
  '/health': async () => ({ status: 200, body: { has_key: currentVaultKey() !== undefined } }),
  '/whoami': async () => ({ status: 200, body: { key_id: currentVaultKey()?.id ?? null } }),
  '/multi': async () => ({
    status: 200,
    body: { stripe: currentVaultKey('stripe')?.id, refunds: currentVaultKey('refunds')?.id, refunds_scope: currentVaultKey('refunds')?.allowed_endpoints },
  }),
};

export const boomKeyIds: string[] = [];
/** A handler that throws after its key was issued. */
export async function boom(): Promise<never> {
  boomKeyIds.push(currentVaultKey()!.id);
  throw new Error('handler failed');
}

export type AppFactory = (options: MiddlewareOptions<any>) => Promise<{ url: string; close(): Promise<void> }>;

export function middlewareSuite(name: string, gateway: () => TestGateway, makeApp: AppFactory) {
  const base = () => ({
    client: gateway().client,
    vendor: 'stripe' as string,
    allowedEndpoints: ['/v1/payment_intents', '/v1/payment_intents/*'],
    dailyUsdCap: 100,
    expiresIn: '5m',
  });
  const withApp = async (options: MiddlewareOptions<any>, fn: (url: string) => Promise<void>) => {
    const app = await makeApp(options);
    try {
      await fn(app.url);
    } finally {
      await app.close();
    }
  };

  describe(`${name} middleware`, () => {
    it('issues a key per request, the tool charges Stripe with it, and it is revoked after the response', async () => {
      const t = gateway();
      await withApp({ ...base(), label: (req: unknown) => `${name}-charge`, metadata: { app: name } }, async (url) => {
        const a = (await (await fetch(`${url}/charge?amount=5000`, { method: 'POST' })).json()) as { payment_intent: string; key_id: string };
        const b = (await (await fetch(`${url}/charge?amount=1000`, { method: 'POST' })).json()) as { payment_intent: string; key_id: string };
        expect(a.payment_intent).toMatch(/^pi_/);
        expect(a.key_id).not.toBe(b.key_id);
        expect(t.sandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
        await eventually(async () => {
          const k = await t.key(a.key_id);
          expect(k.status).toBe('revoked');
          expect(k.label).toBe(`${name}-charge`);
          expect(k.metadata).toEqual({ app: name });
          expect(k.spend_today_usd).toBe(50);
          expect((await t.key(b.key_id)).status).toBe('revoked');
        });
      });
    });

    it("answers the proxy's 429 cap_exhausted with the app's own 402, and nothing reaches Stripe", async () => {
      const t = gateway();
      await withApp({ ...base(), dailyUsdCap: 10 }, async (url) => {
        const before = t.sandbox.requests.length;
        const r = await fetch(`${url}/charge?amount=5000`, { method: 'POST' });
        expect(r.status).toBe(402);
        const body = (await r.json()) as { key_id: string };
        expect(t.sandbox.requests.length).toBe(before);
        await eventually(async () => expect((await t.key(body.key_id)).status).toBe('revoked'));
      });
    });

    it('attaches the request\'s keys to the budgets named per request', async () => {
      const t = gateway();
      const budget = `mw:${name.toLowerCase().replace(/[^a-z0-9]/g, '')}`;
      await t.client.createBudget({ id: budget, limitUsd: 1, period: 'total' });
      await withApp({ ...base(), budgets: () => [budget] }, async (url) => {
        const r = await fetch(`${url}/charge?amount=5000`, { method: 'POST' });
        expect(r.status).toBe(402); // the $1 budget refuses the $50 charge, the key's $100 cap would not
        const body = (await r.json()) as { key_id: string };
        const k = await t.key(body.key_id);
        expect(k.budgets).toEqual([budget]);
        await eventually(async () => expect((await t.key(body.key_id)).status).toBe('revoked'));
      });
      expect((await t.client.deleteBudget(budget)).deleted).toBe(true);
    });

    it('skips health and metrics routes', async () => {
      const t = gateway();
      await withApp({ ...base(), label: `${name}-skip` }, async (url) => {
        const r = await fetch(`${url}/health`);
        expect(await r.json()).toEqual({ has_key: false });
        expect((await t.client.listKeys({ labelPrefix: `${name}-skip` })).data).toHaveLength(0);
      });
    });

    it('revokes the key when the handler throws', async () => {
      const t = gateway();
      await withApp(base(), async (url) => {
        const n = boomKeyIds.length;
        const r = await fetch(`${url}/boom`);
        expect(r.status).toBe(500);
        expect(boomKeyIds.length).toBe(n + 1);
        await eventually(async () => expect((await t.key(boomKeyIds.at(-1)!)).status).toBe('revoked'));
      });
    });

    it('fails closed by default: 503 vault_key_unavailable when keyleash is down, handler not run', async () => {
      const down = new Keyleash({ apiUrl: 'http://127.0.0.1:1', proxyUrl: 'http://127.0.0.1:1', adminToken: ADMIN_TOKEN });
      await withApp({ ...base(), client: down, logger: { warn() {} } }, async (url) => {
        const r = await fetch(`${url}/whoami`);
        expect(r.status).toBe(503);
        expect(await r.json()).toMatchObject({ code: 'vault_key_unavailable' });
      });
    });

    it('fails closed on the issuance timeout too', async () => {
      const t = gateway();
      const slow = new Keyleash({
        apiUrl: t.apiUrl,
        proxyUrl: t.proxyUrl,
        adminToken: ADMIN_TOKEN,
        fetch: async (input, init) => {
          await new Promise((r) => setTimeout(r, 500));
          return fetch(input, init);
        },
      });
      await withApp({ ...base(), client: slow, issueTimeoutMs: 50, logger: { warn() {} } }, async (url) => {
        const started = Date.now();
        const r = await fetch(`${url}/whoami`);
        expect(r.status).toBe(503);
        expect(Date.now() - started).toBeLessThan(450);
      });
    });

    it('fails open when asked: the handler runs without a key and a warning is logged', async () => {
      const down = new Keyleash({ apiUrl: 'http://127.0.0.1:1', proxyUrl: 'http://127.0.0.1:1', adminToken: ADMIN_TOKEN });
      const warnings: string[] = [];
      await withApp({ ...base(), client: down, failOpen: true, logger: { warn: (m) => warnings.push(m) } }, async (url) => {
        const r = await fetch(`${url}/whoami`);
        expect(r.status).toBe(200);
        expect(await r.json()).toEqual({ key_id: null });
        expect(warnings.join('\n')).toMatch(/failOpen/);
      });
    });

    it('issues one key per vendor entry for a request, and revokes them all', async () => {
      const t = gateway();
      await withApp(
        {
          client: t.client,
          expiresIn: '5m',
          vendors: {
            stripe: { allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 100 },
            refunds: { vendor: 'stripe', allowedEndpoints: ['POST /v1/refunds'], dailyUsdCap: 20 },
          },
        },
        async (url) => {
          const body = (await (await fetch(`${url}/multi`)).json()) as { stripe: string; refunds: string; refunds_scope: string[] };
          expect(body.stripe).toMatch(/^key_/);
          expect(body.refunds).toMatch(/^key_/);
          expect(body.stripe).not.toBe(body.refunds);
          expect(body.refunds_scope).toEqual(['POST /v1/refunds']);
          await eventually(async () => {
            expect((await t.key(body.stripe)).status).toBe('revoked');
            expect((await t.key(body.refunds)).status).toBe('revoked');
          });
        },
      );
    });
  });
}
