import Stripe from 'stripe';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, STRIPE_TEST_SECRET, stripeKey, type TestGateway } from './harness.js';

// The official stripe package, unchanged, with only host/port/protocol pointed at the proxy and
// the vault token as its API key.

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t.close();
});
beforeEach(() => {
  t.sandbox.requests.length = 0;
  t.sandbox.respond = null;
});

function client(token: string): Stripe {
  const u = new URL(t.proxyUrl);
  return new Stripe(token, { host: u.hostname, port: Number(u.port), protocol: 'http', maxNetworkRetries: 2 });
}

describe('the official stripe npm package through the proxy', () => {
  it('creates, retrieves and updates a payment intent', async () => {
    const key = await t.issue();
    const stripe = client(key.token);
    const pi = await stripe.paymentIntents.create(
      { amount: 4200, currency: 'usd', customer: 'cus_123', metadata: { run: 'r7' }, description: 'order 42' },
      { idempotencyKey: 'order-42' },
    );
    expect(pi.object).toBe('payment_intent');
    expect(pi.amount).toBe(4200);
    const got = await stripe.paymentIntents.retrieve(pi.id);
    expect(got.id).toBe(pi.id);
    const updated = await stripe.paymentIntents.update(pi.id, { metadata: { step: '2' } });
    expect(updated.id).toBe(pi.id);

    const first = t.sandbox.requests[0]!;
    expect(first.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
    expect(first.headers['idempotency-key']).toBe('order-42');
    expect(first.headers['stripe-version']).toBeTruthy();
    expect(first.form).toMatchObject({ amount: '4200', metadata: { run: 'r7' }, description: 'order 42' });

    const view = await t.admin('GET', `/v1/keys/${key.id}`);
    expect(view.body.spend_today_micros).toBe(42_000_000);
    expect(view.body.request_count).toBe(3);
  });

  it("surfaces Stripe's card decline as a StripeCardError", async () => {
    const key = await t.issue();
    await expect(
      client(key.token).paymentIntents.create({ amount: 100, currency: 'usd', payment_method: 'pm_card_chargeDeclined', confirm: true }),
    ).rejects.toMatchObject({ type: 'StripeCardError', code: 'card_declined', statusCode: 402 });
  });

  it('surfaces a spent cap as an error with code cap_exhausted, without retrying it', async () => {
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 10 });
    const err = await client(key.token)
      .paymentIntents.create({ amount: 5000, currency: 'usd' })
      .then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(Stripe.errors.StripeError);
    expect(err).toMatchObject({ statusCode: 429, code: 'cap_exhausted' });
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('surfaces an endpoint outside the key scope as a permission error', async () => {
    const key = await t.issue();
    await expect(client(key.token).customers.create({ email: 'a@b.c' })).rejects.toMatchObject({
      statusCode: 403,
      code: 'endpoint_not_allowed',
    });
  });

  it('surfaces a revoked key as an authentication error', async () => {
    const key = await t.issue();
    await t.admin('DELETE', `/v1/keys/${key.id}`);
    await expect(client(key.token).paymentIntents.retrieve('pi_1')).rejects.toMatchObject({
      type: 'StripeAuthenticationError',
      code: 'key_revoked',
    });
  });
});
