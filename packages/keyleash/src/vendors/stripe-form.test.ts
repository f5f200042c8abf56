import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, expect } from 'vitest';
import Stripe from 'stripe';
import { jsonToStripeForm } from './stripe-form.js';

function form(body: unknown): string {
  const r = jsonToStripeForm(body);
  if (!r.ok) throw new Error(r.reason);
  return r.form;
}

describe('jsonToStripeForm', () => {
  it.each<[string, unknown, string]>([
    ['flat scalars', { amount: 2000, currency: 'usd' }, 'amount=2000&currency=usd'],
    ['empty object', {}, ''],
    ['nested metadata', { metadata: { order_id: '6735', note: 'a b&c=d' } }, 'metadata[order_id]=6735&metadata[note]=a%20b%26c%3Dd'],
    ['arrays', { payment_method_types: ['card', 'link'] }, 'payment_method_types[0]=card&payment_method_types[1]=link'],
    ['expand', { expand: ['customer', 'latest_charge.balance_transaction'] }, 'expand[0]=customer&expand[1]=latest_charge.balance_transaction'],
    [
      'arrays of objects',
      { items: [{ price: 'price_1', quantity: 2 }, { price: 'price_2' }] },
      'items[0][price]=price_1&items[0][quantity]=2&items[1][price]=price_2',
    ],
    ['booleans', { capture: false, confirm: true }, 'capture=false&confirm=true'],
    ['null unsets', { description: null, metadata: { k: null } }, 'description=&metadata[k]=' ],
    ['empty array and object are omitted', { a: [], b: {}, c: 1 }, 'c=1'],
    ['decimals', { unit_amount_decimal: 12.5, tiny: 0.000001 }, 'unit_amount_decimal=12.5&tiny=0.000001'],
    ['unicode', { description: 'café ✓ 😀' }, 'description=caf%C3%A9%20%E2%9C%93%20%F0%9F%98%80'],
    ['qs-reserved punctuation', { d: "!*()'~-_." }, "d=%21%2A%28%29%27~-_."],
    ['brackets in keys stay readable', { metadata: { 'a[b]': 'x' } }, 'metadata[a[b]]=x'],
  ])('%s', (_name, body, expected) => {
    expect(form(body)).toBe(expected);
  });

  it.each<[string, unknown]>([
    ['top-level array', [1, 2]],
    ['top-level string', 'amount=1'],
    ['top-level null', null],
    ['NaN', { a: Number.NaN }],
    ['Infinity', { a: Number.POSITIVE_INFINITY }],
    ['exponent float', { a: 1e-7 }],
    ['exponent int', { a: 1e21 }],
    ['unsafe integer', { a: 2 ** 53 + 2 }],
    ['undefined', { a: undefined }],
    ['bigint', { a: 1n }],
    ['function', { a: () => 1 }],
    ['date', { a: new Date(0) }],
    ['class instance', new (class X {})()],
    ['lone surrogate value', { a: '\uD800' }],
    ['lone surrogate key', { ['\uDC00']: 'x' }],
    ['too deep', JSON.parse('{"a":'.repeat(30) + '1' + '}'.repeat(30))],
  ])('rejects %s', (_name, body) => {
    expect(jsonToStripeForm(body).ok).toBe(false);
  });

  it('encodes exactly like stripe-node', async () => {
    const bodies: string[] = [];
    const server = createServer((req, res) => {
      let data = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (data += c));
      req.on('end', () => {
        bodies.push(data);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"id":"pi_123","object":"payment_intent"}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const stripe = new Stripe('sk_test_x', { host: '127.0.0.1', port, protocol: 'http', maxNetworkRetries: 0 });
      const params = {
        amount: 2000,
        currency: 'usd',
        confirm: false,
        description: null,
        automatic_payment_methods: { enabled: true, allow_redirects: 'never' },
        metadata: { order_id: '6735', 'weird key': 'a&b=c;d+e%f', 'a[b]': "!*()'" },
        payment_method_types: ['card', 'link'],
        expand: ['latest_charge', 'customer'],
        shipping: { name: 'Ada', address: { line1: '1 Main St', city: 'Zürich' } },
        transfer_data: { destination: 'acct_1', amount: 1500 },
        payment_method_options: { card: { installments: { plan: { count: 3, interval: 'month', type: 'fixed_count' } } } },
        unit_amount_decimal: 12.345,
        line_items: [
          { price: 'price_1', quantity: 2, tax_rates: ['txr_1', 'txr_2'] },
          { price_data: { currency: 'eur', product_data: { name: 'T 😀', metadata: { k: 'v' } } } },
        ],
      };
      await stripe.paymentIntents.create(params as unknown as Stripe.PaymentIntentCreateParams);
      const sent = bodies[0] ?? '';
      const ours = form(params);
      expect([...new URLSearchParams(ours)]).toEqual([...new URLSearchParams(sent)]);
      expect(ours).toBe(sent);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
