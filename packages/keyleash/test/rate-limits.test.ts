import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, stripeKey, type TestGateway } from './harness.js';
import { backends } from './backends.js';

// Rate limits per key and per budget through the proxy, on both storage backends.

for (const backend of await backends('rate')) {
  describe.skipIf(backend.skip)(`rate limits (${backend.name})`, () => {
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

    it('answers 429 rate_limited with Retry-After past a key limit, forwarding nothing', async () => {
      const key = await t.issue({ ...stripeKey, rate_limit: { requests: 3, per: 'minute' } });
      expect(key.rate_limit).toEqual({ requests: 3, per: 'minute' });
      for (let i = 0; i < 3; i++) expect((await t.proxy('/v1/customers', { token: key.token })).status).toBe(200);
      const before = t.sandbox.requests.length;
      const limited = await t.proxy('/v1/customers', { token: key.token });
      expect(limited.status).toBe(429);
      expect(limited.body).toMatchObject({ code: 'rate_limited', limit: { kind: 'key', id: key.id } });
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(19);
      expect(Number(limited.headers.get('retry-after'))).toBeLessThanOrEqual(20);
      expect(t.sandbox.requests.length).toBe(before);
    });

    it('limits all keys of a budget together, and the limit can be changed', async () => {
      const created = await t.admin('POST', '/v1/budgets', { id: 'team:rl', limit_usd: 100, period: 'day', rate_limit: { requests: 4, per: 'hour' } });
      expect(created.body.rate_limit).toEqual({ requests: 4, per: 'hour' });
      const keys = await Promise.all(Array.from({ length: 4 }, () => t.issue({ ...stripeKey, budgets: ['team:rl'] })));
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => t.proxy('/v1/customers', { token: keys[i % 4]!.token })));
      expect(results.filter((r) => r.status === 200)).toHaveLength(4);
      const limited = results.filter((r) => r.status === 429);
      expect(limited).toHaveLength(8);
      for (const r of limited) expect(r.body).toMatchObject({ code: 'rate_limited', limit: { kind: 'budget', id: 'team:rl' } });
      expect((await t.admin('PATCH', '/v1/budgets/team:rl', { rate_limit: null })).body.rate_limit).toBeNull();
      expect((await t.proxy('/v1/customers', { token: keys[0]!.token })).status).toBe(200);
    });

    it('refuses a malformed rate limit at issuance', async () => {
      const r = await t.admin('POST', '/v1/keys', { ...stripeKey, rate_limit: { requests: 0, per: 'minute' } });
      expect(r.status).toBe(400);
      expect(r.body.param).toBe('rate_limit.requests');
    });
  });
}
