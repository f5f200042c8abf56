import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Guard } from '../src/vendors/stripe-endpoints.js';
import { findStripeEndpoint } from '../src/vendors/stripe-pricing.js';
import { stripeSdkWriteEndpoints } from '../src/vendors/stripe-sdk-endpoints.js';
import { backends } from './backends.js';
import { startGateway, type TestGateway } from './harness.js';

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
      t.sandbox.respond = () => ({ status: 200, body: { id: 'obj_1', object: 'thing' } });
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });

    it('forwards a call only when it is priced (and charged that) or moves no money; refuses the rest unforwarded', async () => {
      const key = await t.issue({ label: 'walk', vendor: 'stripe', allowed_endpoints: BROAD, daily_usd_cap: 10_000, expires_in: '1h' });
      const spend = async () => (await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_usd as number;
      // Each call and what must happen: forwarded at a cost in USD, or refused with a code.
      const call = async (method: string, path: string, form: string, expected: { usd: number } | { code: string }) => {
        const before = t.sandbox.requests.length;
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
          expect(t.sandbox.requests.length, `${label} reached the vendor`).toBe(before);
        } else {
          expect(r.status, `${label}: ${r.text}`).toBe(200);
          expect(t.sandbox.requests.length, label).toBe(before + 1);
          const seen = t.sandbox.requests[before]!;
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
          else await call(method, path, 'currency=usd', { code: rule.missingAmount === 'invalid' ? 'invalid_amount' : 'cost_unknown' });
          // An amount without currency is never priced in a guess.
          await call(method, path, 'amount=100', { code: rule.currency === 'required' ? 'invalid_amount' : 'cost_unknown' });
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
      const before = t.sandbox.requests.length;
      for (const [path, form] of [
        ['/v1/subscriptions', 'customer=cus_1&items[0][price]=price_1'],
        ['/v1/quotes/qt_1/accept', ''],
        ['/v1/brand_new_money_mover', 'amount=100&currency=usd'],
        ['/v1/refunds', 'charge=ch_1&amount=100'],
      ] as const) {
        expect((await t.proxy(path, { token: key.token, method: 'POST', form })).status, path).toBe(200);
      }
      expect((await t.proxy('/v1/treasury/outbound_payments', { token: key.token, form: 'amount=250&currency=usd' })).status).toBe(200);
      expect(t.sandbox.requests.length - before).toBe(5);
      expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_usd).toBeCloseTo(2.5, 6);
    });
  });
}
