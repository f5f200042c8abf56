import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET, startGateway, stripeKey, type TestGateway } from './harness.js';
import { backends } from './backends.js';
import { parseConfig } from '../src/config/config.js';

// Several tenants on one gateway, on both storage backends: each has its own admin tokens,
// vendor credentials, keys, budgets and audit log, and no admin token reaches another
// tenant's anything — a stranger's id answers 404 exactly like a missing one.

const ACME_TOKEN = 'acme_admin_token_0123456789abcd';
const GLOBEX_TOKEN = 'globex_admin_token_0123456789ab';
const ACME_SECRET = 'sk_test_acme_secret_000000000001';
const GLOBEX_SECRET = 'sk_test_globex_secret_0000000002';
const ACME_SECRET_NEXT = 'sk_test_acme_secret_rotated_0003';

for (const backend of await backends('tenants')) {
  describe.skipIf(backend.skip)(`tenants (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;
    let acmeSandbox: StripeSandbox;
    let globexSandbox: StripeSandbox;
    let globexUrl: string;
    let acmeUrl: string;
    let rootUrl: string;

    const as = async (token: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(t.apiUrl + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? (JSON.parse(text) as any) : null };
    };
    const pay = (token: string, usd = 1) => t.proxy('/v1/payment_intents', { token, body: { amount: usd * 100, currency: 'usd' } });

    beforeAll(async () => {
      acmeSandbox = createStripeSandbox({ secrets: [ACME_SECRET, ACME_SECRET_NEXT] });
      globexSandbox = createStripeSandbox({ secrets: [GLOBEX_SECRET] });
      acmeUrl = await acmeSandbox.listen();
      globexUrl = await globexSandbox.listen();
      storeConfig = backend.store();
      t = await startGateway((sandboxUrl) => {
        rootUrl = sandboxUrl;
        return {
          ...(storeConfig ? { store: storeConfig as never } : {}),
          log_level: 'warn',
          tenants: {
            acme: { admin_tokens: [ACME_TOKEN], vendors: { stripe: { base_url: acmeUrl, test_secret: ACME_SECRET }, generic: {} } },
            globex: {
              admin_tokens: [{ token: GLOBEX_TOKEN, name: 'globex-ci' }],
              vendors: { stripe: { base_url: globexUrl, test_secret: GLOBEX_SECRET }, generic: {} },
              policy: { max_daily_usd_cap: 100 },
            },
          },
        };
      });
    });
    afterAll(async () => {
      await t?.close();
      await acmeSandbox?.close();
      await globexSandbox?.close();
      await backend.cleanup(storeConfig);
    });

    it("forwards each tenant's keys with that tenant's own vendor credential", async () => {
      const acme = (await as(ACME_TOKEN, 'POST', '/v1/keys', stripeKey)).body;
      const globex = (await as(GLOBEX_TOKEN, 'POST', '/v1/keys', { ...stripeKey, daily_usd_cap: 50 })).body;
      const root = await t.issue(stripeKey);
      expect((await pay(acme.token)).status).toBe(200);
      expect((await pay(globex.token)).status).toBe(200);
      expect((await pay(root.token)).status).toBe(200);
      expect(acmeSandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${ACME_SECRET}`);
      expect(globexSandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${GLOBEX_SECRET}`);
      expect(t.sandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
      // Each tenant's vendor list is its own.
      const vendors = (await as(GLOBEX_TOKEN, 'GET', '/v1/vendors')).body.data;
      expect(vendors.map((v: { origin: string }) => v.origin)).toEqual([new URL(globexUrl).origin]);
      // The tenant's policy applies to its tokens.
      const capped = await as(GLOBEX_TOKEN, 'POST', '/v1/keys', { ...stripeKey, daily_usd_cap: 101 });
      expect(capped).toMatchObject({ status: 403, body: { code: 'policy_violation' } });
    });

    it("no admin token can read, list, revoke or kill-switch another tenant's key", async () => {
      const acme = (await as(ACME_TOKEN, 'POST', '/v1/keys', { ...stripeKey, label: 'acme-run-1', metadata: { user_id: 'u1' } })).body;
      for (const token of [GLOBEX_TOKEN, ADMIN_TOKEN]) {
        const read = await as(token, 'GET', `/v1/keys/${acme.id}`);
        expect(read).toMatchObject({ status: 404, body: { code: 'key_not_found' } });
        const ghost = await as(token, 'GET', '/v1/keys/key_does_not_exist');
        expect(read.body.message.replace(acme.id, 'X')).toBe(ghost.body.message.replace('key_does_not_exist', 'X'));
        expect((await as(token, 'DELETE', `/v1/keys/${acme.id}`)).status).toBe(404);
        const list = await as(token, 'GET', '/v1/keys?limit=100');
        expect(list.body.data.map((k: { id: string }) => k.id)).not.toContain(acme.id);
        const kill = await as(token, 'POST', '/v1/keys/revoke', { label_prefix: 'acme-run' });
        expect(kill.body).toMatchObject({ matched: 0, revoked: 0 });
        expect((await as(token, 'POST', '/v1/keys/revoke', { metadata: { user_id: 'u1' } })).body.revoked).toBe(0);
        const all = await as(token, 'POST', '/v1/keys/revoke', { all: true, dry_run: true });
        expect(all.body.key_ids).not.toContain(acme.id);
      }
      // Still alive and spending.
      expect((await pay(acme.token)).status).toBe(200);
      expect((await as(ACME_TOKEN, 'GET', `/v1/keys/${acme.id}`)).body.status).toBe('active');
      // Its own tenant can.
      expect((await as(ACME_TOKEN, 'POST', '/v1/keys/revoke', { label_prefix: 'acme-run' })).body.revoked).toBe(1);
      expect((await pay(acme.token)).body.code).toBe('key_revoked');
    });

    it("no admin token can see, change, freeze, delete or spend from another tenant's budget", async () => {
      expect((await as(ACME_TOKEN, 'POST', '/v1/budgets', { id: 'user:u42', limit_usd: 10, period: 'day' })).status).toBe(201);
      for (const token of [GLOBEX_TOKEN, ADMIN_TOKEN]) {
        for (const [method, path, body] of [
          ['GET', '/v1/budgets/user:u42'],
          ['GET', '/v1/budgets/user:u42/spend'],
          ['PATCH', '/v1/budgets/user:u42', { limit_usd: 1000 }],
          ['POST', '/v1/budgets/user:u42/freeze'],
          ['DELETE', '/v1/budgets/user:u42'],
        ] as const) {
          const r = await as(token, method, path, body);
          expect(r.status, `${method} ${path}`).toBe(404);
          expect(r.body.code).toBe('budget_not_found');
        }
        expect((await as(token, 'GET', '/v1/budgets?limit=100')).body.data.map((b: { id: string }) => b.id)).not.toContain('user:u42');
        const attach = await as(token, 'POST', '/v1/keys', { ...stripeKey, daily_usd_cap: 10, budgets: ['user:u42'] });
        expect(attach).toMatchObject({ status: 400, body: { param: 'budgets.0' } });
        expect((await as(token, 'POST', '/v1/keys/revoke', { budget: 'user:u42' })).body.matched).toBe(0);
      }
      // The same name in another tenant is another budget.
      expect((await as(GLOBEX_TOKEN, 'POST', '/v1/budgets', { id: 'user:u42', limit_usd: 99, period: 'day' })).status).toBe(201);
      const view = await as(ACME_TOKEN, 'GET', '/v1/budgets/user:u42');
      expect(view.body).toMatchObject({ limit_usd: 10, frozen: false });
      const key = (await as(ACME_TOKEN, 'POST', '/v1/keys', { ...stripeKey, budgets: ['user:u42'] })).body;
      expect((await pay(key.token, 10)).status).toBe(200);
      expect((await pay(key.token, 1)).body).toMatchObject({ code: 'cap_exhausted', limit: { id: 'user:u42' } });
      expect((await as(GLOBEX_TOKEN, 'GET', '/v1/budgets/user:u42')).body.spend_usd).toBe(0);
    });

    it("no admin token can read another tenant's audit log, and operator-only routes do not exist for tenants", async () => {
      const acme = (await as(ACME_TOKEN, 'POST', '/v1/keys', stripeKey)).body;
      await pay(acme.token);
      await t.gw.audit.flush();
      const own = await as(ACME_TOKEN, 'GET', `/v1/audit?key_id=${acme.id}`);
      expect(own.body.data.length).toBeGreaterThan(0);
      for (const token of [GLOBEX_TOKEN, ADMIN_TOKEN]) {
        expect((await as(token, 'GET', `/v1/audit?key_id=${acme.id}`)).body.data).toEqual([]);
        const all = await as(token, 'GET', '/v1/audit?limit=1000');
        expect(all.body.data.some((r: { key_id: string }) => r.key_id === acme.id)).toBe(false);
      }
      for (const path of ['/v1/audit/export', '/v1/stats/overview', `/v1/keys/${acme.id}/spend`, '/v1/audit/stream']) {
        expect((await as(GLOBEX_TOKEN, 'GET', path)).status, path).toBe(404);
      }
      const exported = await fetch(`${t.apiUrl}/v1/audit/export?format=ndjson`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(await exported.text()).not.toContain(acme.id);
    });

    it("a reload (SIGHUP) swaps every tenant's vendor secrets, not only the default tenant's", async () => {
      const acme = (await as(ACME_TOKEN, 'POST', '/v1/keys', stripeKey)).body;
      const globex = (await as(GLOBEX_TOKEN, 'POST', '/v1/keys', { ...stripeKey, daily_usd_cap: 50 })).body;
      const root = await t.issue(stripeKey);
      expect((await pay(acme.token)).status).toBe(200);
      expect(acmeSandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${ACME_SECRET}`);
      const configWith = (acmeSecret: string) =>
        parseConfig({
          admin_token: ADMIN_TOKEN,
          vendors: { stripe: { base_url: rootUrl, test_secret: STRIPE_TEST_SECRET } },
          tenants: {
            acme: { admin_tokens: [ACME_TOKEN], vendors: { stripe: { base_url: acmeUrl, test_secret: acmeSecret }, generic: {} } },
            globex: { admin_tokens: [GLOBEX_TOKEN], vendors: { stripe: { base_url: globexUrl, test_secret: GLOBEX_SECRET }, generic: {} } },
          },
        });
      t.gw.reloadVendors(configWith(ACME_SECRET_NEXT));
      try {
        // The same vault keys go on working, each now forwarded with its tenant's current secret.
        expect((await pay(acme.token)).status).toBe(200);
        expect(acmeSandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${ACME_SECRET_NEXT}`);
        const g = await pay(globex.token);
        expect(g.status, g.text).toBe(200);
        expect(globexSandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${GLOBEX_SECRET}`);
        expect((await pay(root.token)).status).toBe(200);
        expect(t.sandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
      } finally {
        t.gw.reloadVendors(configWith(ACME_SECRET));
      }
    });
  });
}
