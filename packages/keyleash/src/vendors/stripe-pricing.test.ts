import { describe, it, expect } from 'vitest';
import { priceStripeCall, type Price, type StripePricingConfig } from './stripe-pricing.js';

const cfg: StripePricingConfig = { fx: { eur: '1.1', jpy: '0.0067', kwd: '3.25', gbp: '1.333333' }, defaultCurrency: 'usd' };
const seg = (path: string) => path.split('/').slice(1);
const priced = (micros: number): Price => ({ kind: 'priced', micros });

function p(method: string, path: string, form = '', query = '', c = cfg): Price {
  return priceStripeCall(method, seg(path), form, c, query);
}

describe('priceStripeCall: money-moving creates', () => {
  it.each([
    ['/v1/payment_intents', 'amount=5000&currency=usd', 50_000_000],
    ['/v1/charges', 'amount=5000&currency=USD', 50_000_000],
    ['/v1/transfers', 'currency=usd&amount=1&destination=acct_1', 10_000],
    ['/v1/payouts', 'amount=0&currency=usd', 0],
    ['/v1/invoiceitems', 'customer=cus_1&amount=250&currency=eur', 2_750_000],
    ['/v1/payment_intents', 'amount=5000&currency=jpy', 33_500_000],
    ['/v1/payment_intents', 'amount=1000&currency=kwd', 3_250_000],
    ['/v1/payment_intents', 'amount=1&currency=gbp', 13_334],
    ['/v1/refunds', 'payment_intent=pi_1&amount=700', 7_000_000],
    ['/v1/refunds', 'charge=ch_1&amount=700&currency=eur', 7_700_000],
    ['/v1/payment_intents', 'amount=1000&currency=usd&transfer_data[destination]=acct_1&transfer_data[amount]=400', 10_000_000],
    ['/v1/payment_intents', 'amount=1000&currency=usd&transfer_data[amount]=4000', 40_000_000],
    ['/v1/payment_intents', 'amount=1000&currency=usd&transfer_data%5Bamount%5D=4000', 40_000_000],
    ['/v1/payment_intents', 'amount=00012&currency=usd', 120_000],
    ['/v1/payment_intents', 'metadata[amount]=99999&amount=1&currency=usd', 10_000],
    ['/V1/Payment_Intents', 'amount=5000&currency=usd', 50_000_000],
  ])('POST %s %s', (path, form, micros) => {
    expect(p('POST', path, form)).toEqual(priced(micros));
  });

  it('uses the account currency for refunds without currency', () => {
    expect(p('POST', '/v1/refunds', 'charge=ch_1&amount=1000', '', { ...cfg, defaultCurrency: 'EUR' })).toEqual(priced(11_000_000));
  });

  it('full refund (no amount) is unknown', () => {
    expect(p('POST', '/v1/refunds', 'charge=ch_1').kind).toBe('unknown');
  });

  it.each([
    ['xyz', 'amount=100&currency=xyz'],
    ['chf without fx', 'amount=100&currency=chf'],
  ])('unknown currency (%s) is unknown', (_n, form) => {
    expect(p('POST', '/v1/charges', form).kind).toBe('unknown');
  });
});

describe('priceStripeCall: hostile or incomplete input is invalid', () => {
  it.each([
    ['10.5'],
    ['-1'],
    ['1e3'],
    ['0x10'],
    [''],
    ['+1'],
    ['1+'],
    ['%201'],
    ['1%0A'],
    ['９'],
    ['9007199254740992'],
    ['99999999999999999999999'],
    ['1'.repeat(100_000)],
  ])('amount=%j', (amount) => {
    const r = p('POST', '/v1/payment_intents', `amount=${amount}&currency=usd`);
    expect(r).toMatchObject({ kind: 'invalid', param: 'amount' });
  });

  it.each([
    ['missing amount', '/v1/payment_intents', 'currency=usd', 'amount'],
    ['missing amount on transfer', '/v1/transfers', 'currency=usd&destination=acct_1', 'amount'],
    ['missing currency', '/v1/payment_intents', 'amount=100', 'currency'],
    ['missing currency on payout', '/v1/payouts', 'amount=100', 'currency'],
    ['bad currency', '/v1/charges', 'amount=100&currency=us', 'currency'],
    ['bad currency on refund', '/v1/refunds', 'amount=100&currency=us%24', 'currency'],
    ['amount twice', '/v1/payment_intents', 'amount=1&amount=99999&currency=usd', 'amount'],
    ['currency twice', '/v1/payment_intents', 'amount=1&currency=jpy&currency=kwd', 'currency'],
    ['amount and amount[]', '/v1/payment_intents', 'amount=1&amount[]=99999&currency=usd', 'amount'],
    ['only amount[]', '/v1/payment_intents', 'amount[]=99999&currency=usd', 'amount'],
    ['amount[0]', '/v1/payment_intents', 'amount[0]=99999&currency=usd', 'amount'],
    ['[amount]', '/v1/payment_intents', 'amount=1&[amount]=99999&currency=usd', 'amount'],
    ['encoded amount twice', '/v1/payment_intents', 'amount=1&%61mount=99999&currency=usd', 'amount'],
    ['bad transfer amount', '/v1/payment_intents', 'amount=1&currency=usd&transfer_data[amount]=1.5', 'transfer_data[amount]'],
    ['transfer amount twice', '/v1/payment_intents', 'amount=1&currency=usd&transfer_data[amount]=1&transfer_data[amount]=2', 'transfer_data[amount]'],
    ['unclosed transfer bracket', '/v1/payment_intents', 'amount=1&currency=usd&transfer_data[amount=2', 'transfer_data[amount]'],
    ['bad update amount', '/v1/payment_intents/pi_1', 'amount=-5', 'amount'],
    ['update amount twice', '/v1/payment_intents/pi_1', 'amount=5&amount=6', 'amount'],
    ['too large in usd', '/v1/payment_intents', 'amount=9007199254740991&currency=usd', 'amount'],
    ['too large after fx', '/v1/payment_intents', 'amount=9007199254740991&currency=jpy', 'amount'],
  ])('%s', (_name, path, form, param) => {
    expect(p('POST', path, form)).toMatchObject({ kind: 'invalid', param });
  });

  it.each([
    ['semicolon separator', 'amount=1&x=y;amount=99999&currency=usd'],
    ['raw space', 'amount=1& amount=99999&currency=usd'],
    ['raw newline', 'amount=1\n&currency=usd'],
    ['malformed percent escape', 'amount=1&currency=usd&metadata[x]=%zz'],
  ])('malformed form: %s', (_name, form) => {
    expect(p('POST', '/v1/payment_intents', form).kind).toBe('invalid');
  });

  it('counts query-string params together with the form', () => {
    expect(p('POST', '/v1/payment_intents', 'amount=1&currency=usd', 'amount=99999').kind).toBe('invalid');
    expect(p('POST', '/v1/payment_intents', 'currency=usd', 'amount=300')).toEqual(priced(3_000_000));
  });

  it.each([['/v1//payment_intents'], ['/v1/payment_intents/'], ['/v1/./payment_intents'], ['/v1/pay ment_intents']])(
    'malformed path %s',
    (path) => {
      expect(p('POST', path, 'amount=1&currency=usd').kind).toBe('invalid');
    },
  );

  it('rejects a path segment containing a decoded slash', () => {
    expect(priceStripeCall('POST', ['v1', 'payment_intents/x'], '', cfg).kind).toBe('invalid');
  });
});

describe('priceStripeCall: payment intent follow-ups and other calls', () => {
  it.each([
    // The create already counted the authorized amount; a capture cannot exceed it.
    ['capture with amount', '/v1/payment_intents/pi_1/capture', 'amount_to_capture=250', 0],
    ['capture without amount', '/v1/payment_intents/pi_1/capture', '', 0],
    ['update raising the amount', '/v1/payment_intents/pi_1', 'amount=999999&currency=usd', 9_999_990_000],
    ['update without amount', '/v1/payment_intents/pi_1', 'metadata[a]=b', 0],
    ['confirm', '/v1/payment_intents/pi_1/confirm', '', 0],
    ['customer create', '/v1/customers', 'email=a%40b.c', 0],
    ['charge update', '/v1/charges/ch_1', 'description=x', 0],
    ['refund update', '/v1/refunds/re_1', 'metadata[a]=b', 0],
    ['v2 path', '/v2/core/events', '', 0],
    ['unknown deep path', '/v1/payment_intents/pi_1/capture/extra', 'amount_to_capture=5', 0],
  ])('POST %s', (_name, path, form, micros) => {
    expect(p('POST', path, form)).toEqual(priced(micros));
  });

  it('prices an update without currency in the account currency', () => {
    expect(p('POST', '/v1/payment_intents/pi_1', 'amount=100', '', { ...cfg, defaultCurrency: 'jpy' })).toEqual(priced(670_000));
  });

  it.each([['GET'], ['DELETE'], ['PUT'], ['PATCH'], ['HEAD']])('%s never moves money', (method) => {
    expect(p(method, '/v1/payment_intents', 'amount=5000&currency=usd')).toEqual(priced(0));
    expect(p(method, '/v1/refunds', 'amount=junk')).toEqual(priced(0));
  });

  it('accepts a lowercase method', () => {
    expect(p('post', '/v1/charges', 'amount=100&currency=usd')).toEqual(priced(1_000_000));
  });
});

describe('priceStripeCall: money movers it cannot price', () => {
  it.each([
    ['/v1/checkout/sessions', 'line_items[0][price]=price_1&line_items[0][quantity]=3&mode=payment'],
    ['/v1/invoices/in_1/pay', ''],
    ['/v1/topups', 'amount=1000&currency=usd'],
    ['/v1/transfers/tr_1/reversals', 'amount=100'],
    ['/v1/application_fees/fee_1/refunds', ''],
    ['/v1/customers/cus_1/balance_transactions', 'amount=-500&currency=usd'],
    ['/v2/money_management/outbound_payments', ''],
  ])('POST %s is unknown, so a capped key refuses it', (path, form) => {
    expect(p('POST', path, form).kind).toBe('unknown');
  });

  it('still reads them for free', () => {
    expect(p('GET', '/v1/checkout/sessions', '')).toEqual(priced(0));
  });
});
