import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, stripeKey, type TestGateway } from './harness.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t.close();
});

describe('spend caps under concurrency', () => {
  it('lets exactly 10 of 200 concurrent $100 calls through on a $1,000 key', async () => {
    t.sandbox.requests.length = 0;
    // A little vendor latency keeps many calls in flight at once.
    t.sandbox.respond = () => ({ status: 200, body: { id: 'pi_x', object: 'payment_intent' }, delayMs: 20 });
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 1000 });
    const results = await Promise.all(
      Array.from({ length: 200 }, () =>
        t.proxy('/stripe/v1/payment_intents', { token: key.token, body: { amount: 10_000, currency: 'usd' } }),
      ),
    );
    const ok = results.filter((r) => r.status === 200);
    const capped = results.filter((r) => r.status === 429);
    expect(ok).toHaveLength(10);
    expect(capped).toHaveLength(190);
    for (const r of capped) expect(r.body.code).toBe('cap_exhausted');
    expect(t.sandbox.requests).toHaveLength(10);

    const view = await t.admin('GET', `/v1/keys/${key.id}`);
    expect(view.body.spend_today_usd).toBe(1000);
    expect(view.body.remaining_today_usd).toBe(0);
    expect(view.body.request_count).toBe(10);
  });

  it('counts calls in flight against the cap before they settle', async () => {
    t.sandbox.requests.length = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    t.sandbox.respond = async () => {
      await gate;
      return { status: 200, body: { object: 'payment_intent' } };
    };
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 150 });
    const first = t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 10_000, currency: 'usd' } });
    while (t.sandbox.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    const second = await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 10_000, currency: 'usd' } });
    expect(second.status).toBe(429);
    release();
    expect((await first).status).toBe(200);
    t.sandbox.respond = null;
  });

  it('frees the reserved amount when the vendor refuses the call', async () => {
    t.sandbox.respond = null;
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
    const declined = await t.proxy('/v1/payment_intents', {
      token: key.token,
      body: { amount: 10_000, currency: 'usd', payment_method: 'pm_card_chargeDeclined' },
    });
    expect(declined.status).toBe(402);
    const retry = await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 10_000, currency: 'usd' } });
    expect(retry.status).toBe(200);
    const after = await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 1, currency: 'usd' } });
    expect(after.status).toBe(429);
  });

  it('still allows free calls once the cap is spent', async () => {
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 0 });
    expect((await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 1, currency: 'usd' } })).status).toBe(429);
    expect((await t.proxy('/v1/customers', { token: key.token })).status).toBe(200);
  });
});
