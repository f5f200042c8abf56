import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, stripeKey, type TestGateway } from './harness.js';
import { backends } from './backends.js';

// Idempotency-Key through the proxy, on both storage backends: a retry is not charged twice;
// a different request under a used key is refused the way Stripe does.

for (const backend of await backends('idem')) {
  describe.skipIf(backend.skip)(`idempotency (${backend.name})`, () => {
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

    it('forwards a retry with the same Idempotency-Key and body without charging it again', async () => {
      await t.admin('POST', '/v1/budgets', { id: 'user:idem', limit_usd: 100, period: 'day' });
      const key = await t.issue({ ...stripeKey, daily_usd_cap: 15, budgets: ['user:idem'] });
      const call = (ik: string, amount = 1000) =>
        t.proxy('/v1/payment_intents', { token: key.token, headers: { 'idempotency-key': ik }, body: { amount, currency: 'usd' } });
      const before = t.sandbox.requests.length;
      expect((await call('order-1')).status).toBe(200);
      // $10 charged of a $15 cap: a second $10 charge would be refused, the retries are not.
      for (let i = 0; i < 3; i++) expect((await call('order-1')).status).toBe(200);
      expect(t.sandbox.requests.length - before).toBe(4);
      expect(t.sandbox.requests.slice(-1)[0]!.headers['idempotency-key']).toBe('order-1');
      const view = await t.admin('GET', `/v1/keys/${key.id}`);
      expect(view.body.spend_today_usd).toBe(10);
      expect((await t.admin('GET', '/v1/budgets/user:idem')).body.spend_usd).toBe(10);
      // A new operation is charged and refused at the cap.
      expect((await call('order-2')).body.code).toBe('cap_exhausted');
    });

    it('refuses a reused Idempotency-Key with a different body (400 idempotency_key_reused), forwarding nothing', async () => {
      const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
      const call = (amount: number, path = '/v1/payment_intents') =>
        t.proxy(path, { token: key.token, headers: { 'idempotency-key': 'reuse-me' }, body: { amount, currency: 'usd' } });
      expect((await call(500)).status).toBe(200);
      const before = t.sandbox.requests.length;
      const reused = await call(600);
      expect(reused.status).toBe(400);
      expect(reused.body.code).toBe('idempotency_key_reused');
      expect(t.sandbox.requests.length).toBe(before);
      expect((await call(500, '/v1/payment_intents/pi_123')).body.code).toBe('idempotency_key_reused');
      expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_usd).toBe(5);
    });

    it('charges once among concurrent duplicates', async () => {
      const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
      const results = await Promise.all(
        Array.from({ length: 10 }, () =>
          t.proxy('/v1/payment_intents', { token: key.token, headers: { 'idempotency-key': 'dup' }, body: { amount: 2000, currency: 'usd' } }),
        ),
      );
      expect(results.every((r) => r.status === 200)).toBe(true);
      expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_usd).toBe(20);
    });
  });
}
