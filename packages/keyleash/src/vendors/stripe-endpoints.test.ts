import { describe, expect, it } from 'vitest';
import { STRIPE_ENDPOINTS } from './stripe-endpoints.js';
import { findStripeEndpoint, priceStripeCall } from './stripe-pricing.js';
import { stripeSdkWriteEndpoints } from './stripe-sdk-endpoints.js';

const sdk = stripeSdkWriteEndpoints();
const segmentsOf = (path: string) => path.split('/').slice(1).map((s) => (s === '{id}' ? 'obj_123' : s));

describe('the Stripe endpoint table', () => {
  it('reads a few hundred write endpoints from the installed stripe package', () => {
    expect(sdk.length).toBeGreaterThan(300);
    expect(sdk).toContain('POST /v1/treasury/outbound_payments');
    expect(sdk).toContain('POST /v1/test_helpers/issuing/authorizations');
    expect(sdk).toContain('DELETE /v1/subscriptions/{id}');
    expect(sdk).toContain('POST /v2/money_management/outbound_payments');
  });

  it('classifies every POST and DELETE endpoint the official stripe package knows', () => {
    const unclassified = sdk.filter((e) => {
      const [method, path] = e.split(' ') as [string, string];
      const found = findStripeEndpoint(method, segmentsOf(path));
      return !found || found.match.split('/').length !== path.split('/').length;
    });
    expect(unclassified).toEqual([]);
  });

  it('has no entry that matches no endpoint of the stripe package, and none twice', () => {
    const used = new Set(
      sdk.map((e) => {
        const [method, path] = e.split(' ') as [string, string];
        return findStripeEndpoint(method, segmentsOf(path))?.match;
      }),
    );
    expect(STRIPE_ENDPOINTS.map((e) => e.match).filter((m) => !used.has(m))).toEqual([]);
    expect(new Set(STRIPE_ENDPOINTS.map((e) => e.match)).size).toBe(STRIPE_ENDPOINTS.length);
  });

  it('prefers a literal segment over a parameter', () => {
    expect(findStripeEndpoint('POST', ['v1', 'invoices', 'create_preview'])?.match).toBe('POST /v1/invoices/create_preview');
    expect(findStripeEndpoint('POST', ['v1', 'invoices', 'in_1'])?.match).toBe('POST /v1/invoices/{invoice}');
    expect(findStripeEndpoint('POST', ['v1', 'apps', 'secrets', 'delete'])?.match).toBe('POST /v1/apps/secrets/delete');
  });

  // Older API versions still answer these; the current stripe package no longer knows them.
  it.each([
    ['/v1/charges/ch_1/refund', 'amount=100'],
    ['/v1/charges/ch_1/refunds', 'amount=100'],
    ['/v1/application_fees/fee_1/refund', ''],
    ['/v1/customers/cus_1/subscriptions', 'plan=gold'],
    ['/v1/customers/cus_1/subscriptions/sub_1', 'plan=platinum'],
    ['/v1/subscription_items/si_1/usage_records', 'quantity=100000'],
    ['/v1/invoices/in_1/lines', 'amount=100'],
    ['/v1/orders/or_1/pay', ''],
    ['/v1/recipients', ''],
    ['/v1/bitcoin_receivers', 'amount=100&currency=usd'],
  ])('refuses the legacy money mover POST %s on a capped key', (path, form) => {
    expect(priceStripeCall('POST', path.split('/').slice(1), form, { fx: {}, defaultCurrency: 'usd' }).kind).toBe('unknown');
  });

  it('refuses on a capped key what it does not know: a made-up endpoint, a deeper path, another method', () => {
    const cfg = { fx: {}, defaultCurrency: 'usd' };
    for (const [method, path] of [
      ['POST', '/v1/brand_new_money_mover'],
      ['POST', '/v1/payment_intents/pi_1/capture/extra'],
      ['POST', '/v3/anything'],
      ['PUT', '/v1/payment_intents/pi_1'],
      ['PATCH', '/v1/customers/cus_1'],
      ['DELETE', '/v1/payment_intents/pi_1'],
    ] as const) {
      expect(priceStripeCall(method, path.split('/').slice(1), '', cfg).kind, `${method} ${path}`).toBe('unknown');
    }
  });
});
