import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, stripeKey, type TestGateway } from './harness.js';
import { backends } from './backends.js';

// Budgets above keys, end to end through the real gateway, on both storage backends.

const pay = (usd: number) => ({ amount: Math.round(usd * 100), currency: 'usd' });

for (const backend of await backends('budgets')) {
  describe.skipIf(backend.skip)(`budgets (${backend.name})`, () => {
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

    it('creates, reads, lists, updates and deletes budgets', async () => {
      const created = await t.admin('POST', '/v1/budgets', { id: 'team:billing', limit_usd: 250.5, period: 'month', metadata: { owner: 'ana' } });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({
        object: 'budget',
        id: 'team:billing',
        limit_usd: 250.5,
        period: 'month',
        frozen: false,
        spend_usd: 0,
        remaining_usd: 250.5,
        metadata: { owner: 'ana' },
      });
      expect(created.body.window).toMatch(/^\d{4}-\d{2}$/);
      const dup = await t.admin('POST', '/v1/budgets', { id: 'team:billing', limit_usd: 1, period: 'day' });
      expect(dup.status).toBe(409);
      expect(dup.body.code).toBe('budget_exists');
      const bad = await t.admin('POST', '/v1/budgets', { id: 'no spaces', limit_usd: 1, period: 'day' });
      expect(bad.status).toBe(400);
      expect(bad.body.param).toBe('id');
      expect((await t.admin('POST', '/v1/budgets', { id: 'x', limit_usd: -1, period: 'day' })).body.param).toBe('limit_usd');
      expect((await t.admin('POST', '/v1/budgets', { id: 'x', limit_usd: 1, period: 'week' })).body.param).toBe('period');

      expect((await t.admin('GET', '/v1/budgets/team:billing')).body.limit_usd).toBe(250.5);
      const patched = await t.admin('PATCH', '/v1/budgets/team:billing', { limit_usd: '300' });
      expect(patched.status).toBe(200);
      expect(patched.body.limit_usd).toBe(300);
      const list = await t.admin('GET', '/v1/budgets?limit=100');
      expect(list.body.data.map((b: { id: string }) => b.id)).toContain('team:billing');

      const missing = await t.admin('GET', '/v1/budgets/team:nobody');
      expect(missing.status).toBe(404);
      expect(missing.body.code).toBe('budget_not_found');
      expect((await t.admin('DELETE', '/v1/budgets/team:billing')).body).toEqual({ object: 'budget', id: 'team:billing', deleted: true });
      expect((await t.admin('GET', '/v1/budgets/team:billing')).status).toBe(404);
    });

    it('attaches budgets at issuance; an unknown or frozen budget is refused', async () => {
      await t.admin('POST', '/v1/budgets', { id: 'user:attach', limit_usd: 100, period: 'day' });
      const key = await t.issue({ ...stripeKey, budgets: ['user:attach', 'user:attach'] });
      expect(key.budgets).toEqual(['user:attach']);
      expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.budgets).toEqual(['user:attach']);

      const unknown = await t.admin('POST', '/v1/keys', { ...stripeKey, budgets: ['user:attach', 'user:ghost'] });
      expect(unknown.status).toBe(400);
      expect(unknown.body.param).toBe('budgets.1');

      await t.admin('POST', '/v1/budgets/user:attach/freeze');
      const frozen = await t.admin('POST', '/v1/keys', { ...stripeKey, budgets: ['user:attach'] });
      expect(frozen.status).toBe(403);
      expect(frozen.body).toMatchObject({ code: 'budget_frozen', param: 'budgets.0', budget: 'user:attach' });
    });

    it('refuses a call that would overflow a budget with 429 naming it, reserving nothing', async () => {
      await t.admin('POST', '/v1/budgets', { id: 'user:u42', limit_usd: 30, period: 'day' });
      const a = await t.issue({ ...stripeKey, daily_usd_cap: 1000, budgets: ['user:u42'] });
      const b = await t.issue({ ...stripeKey, daily_usd_cap: 1000, budgets: ['user:u42'] });
      expect((await t.proxy('/v1/payment_intents', { token: a.token, body: pay(20) })).status).toBe(200);
      const before = t.sandbox.requests.length;
      const refused = await t.proxy('/v1/payment_intents', { token: b.token, body: pay(15) });
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({
        code: 'cap_exhausted',
        limit: { kind: 'budget', id: 'user:u42', period: 'day' },
        cost_usd: 15,
        remaining_usd: 10,
      });
      expect(t.sandbox.requests.length).toBe(before);
      // Nothing was reserved on the key either.
      expect((await t.admin('GET', `/v1/keys/${b.id}`)).body.spend_today_usd).toBe(0);
      expect((await t.proxy('/v1/payment_intents', { token: b.token, body: pay(10) })).status).toBe(200);
      const view = await t.admin('GET', '/v1/budgets/user:u42');
      expect(view.body).toMatchObject({ spend_usd: 30, remaining_usd: 0 });
      const spend = await t.admin('GET', `/v1/budgets/user:u42/spend?window=${view.body.window}`);
      expect(spend.body.spend_usd).toBe(30);
      expect((await t.admin('GET', '/v1/budgets/user:u42/spend?window=2020-01-01')).body.spend_usd).toBe(0);
      expect((await t.admin('GET', '/v1/budgets/user:u42/spend?window=2020-01')).status).toBe(400);
      // The key-cap case keeps its original body.
      const small = await t.issue({ ...stripeKey, daily_usd_cap: 5 });
      const capped = await t.proxy('/v1/payment_intents', { token: small.token, body: pay(6) });
      expect(capped.body).toMatchObject({ code: 'cap_exhausted', limit: 'key', cost_usd: 6, remaining_usd: 5 });
    });

    it('lets exactly 50 of 300 concurrent $10 calls over 20 keys under one $500 user budget reach the vendor', async () => {
      await t.admin('POST', '/v1/budgets', { id: 'user:race', limit_usd: 500, period: 'day' });
      const keys = await Promise.all(Array.from({ length: 20 }, () => t.issue({ ...stripeKey, daily_usd_cap: 1000, budgets: ['user:race'] })));
      const tokens = new Set(keys.map((k) => k.token));
      t.sandbox.respond = () => ({ status: 200, body: { id: 'pi_x', object: 'payment_intent' }, delayMs: 10 });
      const before = t.sandbox.requests.length;
      const results = await Promise.all(
        Array.from({ length: 300 }, (_, i) => t.proxy('/v1/payment_intents', { token: keys[i % 20]!.token, body: pay(10) })),
      );
      t.sandbox.respond = null;
      expect(results.filter((r) => r.status === 200)).toHaveLength(50);
      const refused = results.filter((r) => r.status !== 200);
      expect(refused).toHaveLength(250);
      for (const r of refused) expect(r.body).toMatchObject({ code: 'cap_exhausted', limit: { kind: 'budget', id: 'user:race' } });
      expect(t.sandbox.requests.length - before).toBe(50);
      expect(tokens.size).toBe(20);
      expect((await t.admin('GET', '/v1/budgets/user:race')).body).toMatchObject({ spend_usd: 500, remaining_usd: 0 });
    });

    it('kill switch by budget revokes every active key attached to it, and only those', async () => {
      await t.admin('POST', '/v1/budgets', { id: 'run:r7', limit_usd: 100, period: 'total' });
      const attached = await Promise.all(Array.from({ length: 5 }, () => t.issue({ ...stripeKey, budgets: ['run:r7'] })));
      const other = await t.issue(stripeKey);
      const dry = await t.admin('POST', '/v1/keys/revoke', { budget: 'run:r7', dry_run: true });
      expect(dry.body).toMatchObject({ dry_run: true, matched: 5, revoked: 0 });
      const r = await t.admin('POST', '/v1/keys/revoke', { budget: 'run:r7' });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ object: 'bulk_revoke', matched: 5, revoked: 5 });
      expect(r.body.key_ids.sort()).toEqual(attached.map((k) => k.id).sort());
      for (const k of attached) {
        expect((await t.proxy('/v1/payment_intents', { token: k.token, body: pay(1) })).body.code).toBe('key_revoked');
      }
      expect((await t.proxy('/v1/payment_intents', { token: other.token, body: pay(1) })).status).toBe(200);
      // With no active key left it can be deleted.
      expect((await t.admin('DELETE', '/v1/budgets/run:r7')).status).toBe(200);
    });

    it('freezing a budget stops every call of its keys at once, free ones too; unfreezing resumes', async () => {
      await t.admin('POST', '/v1/budgets', { id: 'team:frozen', limit_usd: 100, period: 'month' });
      const key = await t.issue({ ...stripeKey, budgets: ['team:frozen'] });
      expect((await t.proxy('/v1/payment_intents', { token: key.token, body: pay(1) })).status).toBe(200);
      const frozen = await t.admin('POST', '/v1/budgets/team:frozen/freeze');
      expect(frozen.body.frozen).toBe(true);
      const before = t.sandbox.requests.length;
      const paid = await t.proxy('/v1/payment_intents', { token: key.token, body: pay(1) });
      expect(paid.status).toBe(403);
      expect(paid.body).toMatchObject({ code: 'budget_frozen', budget: 'team:frozen' });
      expect((await t.proxy('/v1/customers', { token: key.token })).body.code).toBe('budget_frozen');
      expect(t.sandbox.requests.length).toBe(before);
      const inUse = await t.admin('DELETE', '/v1/budgets/team:frozen');
      expect(inUse.status).toBe(409);
      expect(inUse.body.code).toBe('budget_in_use');
      expect((await t.admin('POST', '/v1/budgets/team:frozen/unfreeze')).body.frozen).toBe(false);
      expect((await t.proxy('/v1/payment_intents', { token: key.token, body: pay(1) })).status).toBe(200);
    });
  });
}
