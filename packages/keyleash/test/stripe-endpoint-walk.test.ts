import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Guard } from '../src/vendors/stripe-endpoints.js';
import { findStripeEndpoint } from '../src/vendors/stripe-pricing.js';
import { stripeSdkWriteEndpoints } from '../src/vendors/stripe-sdk-endpoints.js';
import { backends } from './backends.js';
import { startGateway, STRIPE_TEST_SECRET, type TestGateway } from './harness.js';

// A capped key whose patterns reach every Stripe path walks every write endpoint the official
// stripe package knows (and made-up ones) through the real proxy: a call reaches the stub only
// when keyleash priced it or knows it moves no money, and the key is charged exactly that.

const BROAD = [
  '/oauth/*',
  ...[1, 2, 3, 4, 5, 6, 7].map((n) => '/v1' + '/*'.repeat(n)),
  ...[1, 2, 3, 4, 5, 6, 7].map((n) => '/v2' + '/*'.repeat(n)),
];
const MADE_UP = ['POST /v1/brand_new_money_mover', 'POST /v1/payment_intents/{id}/brand_new_action', 'DELETE /v1/brand_new/{id}', 'POST /v2/money_management/brand_new', 'PUT /v1/customers/{id}'];

const pathOf = (endpoint: string) => endpoint.split(' ')[1]!.replace(/\{id\}/g, 'obj_1');
const wire = (param: string) => {
  const [head, ...rest] = param.split('.');
  return head + rest.map((r) => `[${r}]`).join('');
};

/** A body that trips the guard, and one that does not. */
function guardBodies(g: Guard): { trip: string; clean: string } {
  if (g.ifSent) return { trip: `${wire(g.ifSent[0]!)}=1`, clean: '' };
  if (g.ifTrue) return { trip: `${g.ifTrue[0]}=true`, clean: `${g.ifTrue[0]}=false` };
  if (g.unless) {
    const clean = Object.entries(g.unless).map(([k, v]) => `${k}=${v}`).join('&');
    return { trip: '', clean };
  }
  const first = g.only![0]!;
  return { trip: 'brand_new_param=1', clean: first.includes('=') ? first : `${first}=x` };
}

for (const backend of await backends('walk')) {
  describe.skipIf(backend.skip)(`every Stripe write endpoint on a capped key (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(() => (storeConfig ? { store: storeConfig as never, log_level: 'warn' } : { log_level: 'warn' }));
      // GETs are keyleash reading an object's currency to price a call.
      t.sandbox.respond = (req) => ({ status: 200, body: { id: 'obj_1', object: 'thing', ...(req.method === 'GET' ? { currency: 'usd' } : {}) } });
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });

    it('forwards a call only when it is priced (and charged that) or moves no money; refuses the rest unforwarded', async () => {
      const key = await t.issue({ label: 'walk', vendor: 'stripe', allowed_endpoints: BROAD, daily_usd_cap: 10_000, expires_in: '1h' });
      const spend = async () => (await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_usd as number;
      // The calls the stub saw, less keyleash's own reads of an object's currency (GETs).
      const writes = () => t.sandbox.requests.filter((r) => r.method !== 'GET');
      // Each call and what must happen: forwarded at a cost in USD, or refused with a code.
      const call = async (method: string, path: string, form: string, expected: { usd: number } | { code: string }) => {
        const before = writes().length;
        const spentBefore = await spend();
        const sendInQuery = method === 'DELETE';
        const r = await t.proxy(sendInQuery && form ? `${path}?${form}` : path, {
          token: key.token,
          method,
          ...(sendInQuery ? {} : { form }),
        });
        const label = `${method} ${path} ${form}`;
        if ('code' in expected) {
          expect(r.body.code, label).toBe(expected.code);
          expect(writes().length, `${label} reached the vendor`).toBe(before);
        } else {
          expect(r.status, `${label}: ${r.text}`).toBe(200);
          expect(writes().length, label).toBe(before + 1);
          const seen = writes()[before]!;
          expect(`${seen.method} ${seen.path}`, label).toBe(`${method} ${path}`);
          expect(await spend(), `${label} charged`).toBeCloseTo(spentBefore + expected.usd, 6);
        }
        return r;
      };

      const counted = { priced: 0, unpriceable: 0, guarded: 0, free: 0 };
      for (const endpoint of stripeSdkWriteEndpoints()) {
        const [method] = endpoint.split(' ') as [string];
        const path = pathOf(endpoint);
        const entry = findStripeEndpoint(method, path.split('/').slice(1));
        expect(entry, endpoint).toBeDefined();
        const rule = entry!.rule;
        if (rule.kind === 'unpriced') {
          counted.unpriceable++;
          await call(method, path, 'amount=100&currency=usd', { code: 'cost_unknown' });
        } else if (rule.kind === 'amount') {
          counted.priced++;
          // Without any amount: refused (or, for an update, a call that moves nothing).
          if (rule.missingAmount === 'free') await call(method, path, 'metadata[a]=b', { usd: 0 });
          else if (rule.missingAmount === 'invalid' && rule.currency === 'object') await call(method, path, 'metadata[a]=b', { code: 'invalid_amount' });
          else await call(method, path, 'currency=usd', { code: rule.missingAmount === 'invalid' ? 'invalid_amount' : 'cost_unknown' });
          // An amount without currency is never priced in a guess: in the object's own, read from
          // Stripe (here USD), or refused.
          const readsFromPath = rule.objectCurrency?.sources.some(([from]) => from.startsWith('{'));
          await call(method, path, 'amount=100', readsFromPath ? { usd: 1 } : { code: rule.currency === 'required' ? 'invalid_amount' : 'cost_unknown' });
          if (readsFromPath) counted.priced++;
          await call(method, path, 'amount=100&currency=usd', { usd: 1 });
          await call(method, path, 'amount=100&currency=usd&amount=99999999', { code: 'invalid_amount' });
          if (rule.guard) {
            const { trip } = guardBodies(rule.guard);
            await call(method, path, `amount=100&currency=usd&${trip}`, { code: 'cost_unknown' });
          }
        } else if (rule.guard) {
          counted.guarded++;
          const { trip, clean } = guardBodies(rule.guard);
          await call(method, path, trip, { code: 'cost_unknown' });
          await call(method, path, clean, { usd: 0 });
        } else {
          counted.free++;
          await call(method, path, 'metadata[a]=b', { usd: 0 });
        }
      }
      for (const endpoint of MADE_UP) {
        await call(endpoint.split(' ')[0]!, pathOf(endpoint), 'amount=100&currency=usd', { code: 'cost_unknown' });
      }
      expect(counted.priced).toBeGreaterThanOrEqual(15);
      expect(counted.unpriceable).toBeGreaterThanOrEqual(40);
      expect(counted.guarded).toBeGreaterThanOrEqual(10);
      expect(await spend()).toBeCloseTo(counted.priced, 6);
    }, 120_000);

    it('lets an uncapped key make the calls a capped key may not, still charging what it can price', async () => {
      const key = await t.issue({ label: 'walk-uncapped', vendor: 'stripe', allowed_endpoints: BROAD, expires_in: '1h' });
      const writes = () => t.sandbox.requests.filter((r) => r.method !== 'GET').length;
      const before = writes();
      for (const [path, form] of [
        ['/v1/subscriptions', 'customer=cus_1&items[0][price]=price_1'],
        ['/v1/quotes/qt_1/accept', ''],
        ['/v1/brand_new_money_mover', 'amount=100&currency=usd'],
        ['/v1/refunds', 'charge=ch_1&amount=100'],
      ] as const) {
        expect((await t.proxy(path, { token: key.token, method: 'POST', form })).status, path).toBe(200);
      }
      expect((await t.proxy('/v1/treasury/outbound_payments', { token: key.token, form: 'amount=250&currency=usd' })).status).toBe(200);
      expect(writes() - before).toBe(5);
      // The refund is priced in its charge's currency (the stub says USD), the outbound payment from its amount.
      expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_usd).toBeCloseTo(3.5, 6);
    });
  });
}

for (const backend of await backends('walkfx')) {
  describe.skipIf(backend.skip)(`an amount without currency is priced in the object's currency (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(() => (storeConfig ? { store: storeConfig as never, log_level: 'warn' } : { log_level: 'warn' }));
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });

    it('charges a refund and an update of a GBP intent in GBP, reading the intent with the real secret; refuses when it cannot be read', async () => {
      const key = await t.issue({
        label: 'gbp',
        vendor: 'stripe',
        allowed_endpoints: ['POST /v1/payment_intents', 'POST /v1/payment_intents/*', 'POST /v1/refunds'],
        daily_usd_cap: 1000,
        expires_in: '5m',
      });
      const spend = async () => (await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_usd as number;
      const created = await t.proxy('/v1/payment_intents', { token: key.token, form: 'amount=10000&currency=gbp' });
      expect(created.status).toBe(200);
      expect(await spend()).toBeCloseTo(140, 6); // £100 at 1.40
      const pi = created.body.id as string;

      // £50 refunded, though the caller names USD: the refund is in the charge's currency.
      const before = t.sandbox.requests.length;
      const refund = await t.proxy('/v1/refunds', { token: key.token, form: `payment_intent=${pi}&amount=5000&currency=usd` });
      expect(refund.status).toBe(200);
      expect(await spend()).toBeCloseTo(210, 6);
      const seen = t.sandbox.requests.slice(before);
      expect(seen.map((r) => `${r.method} ${r.path}`)).toEqual([`GET /v1/payment_intents/${pi}`, 'POST /v1/refunds']);
      expect(seen[0]!.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
      expect(seen[0]!.body).toBe('');

      // An update to £200 without currency: charged as a new £200 intent.
      expect((await t.proxy(`/v1/payment_intents/${pi}`, { token: key.token, form: 'amount=20000' })).status).toBe(200);
      expect(await spend()).toBeCloseTo(490, 6);

      // An intent Stripe does not know: its currency cannot be read, so nothing is forwarded.
      const n = t.sandbox.requests.filter((r) => r.method === 'POST').length;
      for (const [path, form] of [
        ['/v1/refunds', 'payment_intent=pi_missing&amount=100'],
        ['/v1/payment_intents/pi_missing', 'amount=100'],
      ] as const) {
        const r = await t.proxy(path, { token: key.token, form });
        expect(r.status, path).toBe(403);
        expect(r.body.code).toBe('cost_unknown');
      }
      expect(t.sandbox.requests.filter((r) => r.method === 'POST').length).toBe(n);
      expect(await spend()).toBeCloseTo(490, 6);
    });
  });
}

describe('Stripe API v2 through the proxy', () => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startGateway(() => ({ log_level: 'warn' }));
    t.sandbox.respond = () => ({ status: 200, body: { id: 'acct_v2', object: 'v2.core.account' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('passes a v2 JSON body on as JSON, and refuses v2 money movement on a capped key', async () => {
    const key = await t.issue({ label: 'v2', vendor: 'stripe', allowed_endpoints: ['POST /v2/*/*', 'POST /v2/*/*/*'], daily_usd_cap: 100, expires_in: '5m' });
    const body = { display_name: 'Acme', identity: { country: 'us' } };
    expect((await t.proxy('/v2/core/accounts', { token: key.token, body })).status).toBe(200);
    const seen = t.sandbox.requests[0]!;
    expect(seen.headers['content-type']).toBe('application/json');
    expect(JSON.parse(seen.body)).toEqual(body);
    const pay = await t.proxy('/v2/money_management/outbound_payments', { token: key.token, body: { amount: { value: 100, currency: 'usd' } } });
    expect(pay.body.code).toBe('cost_unknown');
    expect(t.sandbox.requests).toHaveLength(1);
  });
});
