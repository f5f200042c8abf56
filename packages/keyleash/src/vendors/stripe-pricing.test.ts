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
    ['/v1/refunds', 'customer=cus_1&origin=customer_balance&amount=700&currency=eur', 7_700_000],
    ['/v1/payment_intents', 'amount=1000&currency=usd&transfer_data[destination]=acct_1&transfer_data[amount]=400', 10_000_000],
    ['/v1/payment_intents', 'amount=1000&currency=usd&transfer_data[amount]=4000', 40_000_000],
    ['/v1/payment_intents', 'amount=1000&currency=usd&transfer_data%5Bamount%5D=4000', 40_000_000],
    ['/v1/payment_intents', 'amount=00012&currency=usd', 120_000],
    ['/v1/payment_intents', 'metadata[amount]=99999&amount=1&currency=usd', 10_000],
    ['/V1/Payment_Intents', 'amount=5000&currency=usd', 50_000_000],
  ])('POST %s %s', (path, form, micros) => {
    expect(p('POST', path, form)).toEqual(priced(micros));
  });

  // Stripe refunds in the charge's currency; a GBP charge priced as USD would be under-counted by a third.
  it.each([
    ['charge=ch_1&amount=1000', '/v1/charges/ch_1'],
    ['payment_intent=pi_1&amount=1000', '/v1/payment_intents/pi_1'],
    // The currency a caller names is not trusted: the charge's is used.
    ['charge=ch_1&amount=1000&currency=jpy', '/v1/charges/ch_1'],
  ])('prices a refund (%s) in the currency of the object it refunds, read from Stripe', (form, path) => {
    const r = p('POST', '/v1/refunds', form, '', { ...cfg, defaultCurrency: 'EUR' });
    expect(r).toMatchObject({ kind: 'lookup', path });
    if (r.kind !== 'lookup') return;
    expect(r.resolve({ id: 'x', currency: 'gbp' })).toEqual(priced(13_333_330));
    expect(r.resolve({ id: 'x', currency: 'usd' })).toEqual(priced(10_000_000));
    expect(r.resolve(undefined).kind).toBe('unknown');
    expect(r.resolve({ currency: 'xx' }).kind).toBe('unknown');
    expect(r.resolve({ currency: 'chf' }).kind).toBe('unknown'); // no exchange rate
  });

  it('does not guess the currency of a refund that names no object and no currency', () => {
    expect(p('POST', '/v1/refunds', 'customer=cus_1&amount=1000', '', { ...cfg, defaultCurrency: 'EUR' }).kind).toBe('unknown');
  });

  it('refuses an object id that is not one', () => {
    expect(p('POST', '/v1/refunds', 'charge=../../v1/x&amount=1000')).toMatchObject({ kind: 'invalid', param: 'charge' });
    expect(p('POST', '/v1/refunds', 'charge=ch_1&charge=ch_2&amount=1000')).toMatchObject({ kind: 'invalid', param: 'charge' });
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
  ])('POST %s', (_name, path, form, micros) => {
    expect(p('POST', path, form)).toEqual(priced(micros));
  });

  it("prices an update that names no currency in the intent's own, read from Stripe, not in a default", () => {
    const r = p('POST', '/v1/payment_intents/pi_1', 'amount=100', '', { ...cfg, defaultCurrency: 'jpy' });
    expect(r).toMatchObject({ kind: 'lookup', path: '/v1/payment_intents/pi_1' });
    if (r.kind === 'lookup') expect(r.resolve({ currency: 'GBP' })).toEqual(priced(1_333_333));
    // An update naming its currency changes the intent to it.
    expect(p('POST', '/v1/payment_intents/pi_1', 'amount=100&currency=gbp')).toEqual(priced(1_333_333));
    expect(p('POST', '/v1/payment_intents/pi_1', 'transfer_data[amount]=100').kind).toBe('lookup');
  });

  it('prices raising an authorization at its new total, in the intent currency', () => {
    const r = p('POST', '/v1/payment_intents/pi_1/increment_authorization', 'amount=5000');
    expect(r).toMatchObject({ kind: 'lookup', path: '/v1/payment_intents/pi_1' });
    if (r.kind === 'lookup') expect(r.resolve({ currency: 'usd' })).toEqual(priced(50_000_000));
    expect(p('POST', '/v1/payment_intents/pi_1/increment_authorization', '').kind).toBe('invalid');
  });

  it.each([['GET'], ['HEAD']])('%s never moves money', (method) => {
    expect(p(method, '/v1/payment_intents', 'amount=5000&currency=usd')).toEqual(priced(0));
    expect(p(method, '/v1/refunds', 'amount=junk')).toEqual(priced(0));
    expect(p(method, '/v1/anything/new', '')).toEqual(priced(0));
  });

  it.each([['DELETE'], ['PUT'], ['PATCH'], ['OPTIONS']])('%s on an endpoint not in the table is unknown', (method) => {
    expect(p(method, '/v1/payment_intents', 'amount=5000&currency=usd').kind).toBe('unknown');
  });

  it('accepts a lowercase method', () => {
    expect(p('post', '/v1/charges', 'amount=100&currency=usd')).toEqual(priced(1_000_000));
  });
});

describe('priceStripeCall: money movers it cannot price', () => {
  it.each([
    ['/v1/checkout/sessions', 'line_items[0][price]=price_1&line_items[0][quantity]=3&mode=payment'],
    ['/v1/invoices/in_1/pay', ''],
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

describe('priceStripeCall: the endpoint table', () => {
  it.each([
    ['a top-up', '/v1/topups', 'amount=1000&currency=usd', 10_000_000],
    ['a Treasury outbound payment', '/v1/treasury/outbound_payments', 'financial_account=fa_1&amount=2500&currency=usd', 25_000_000],
    ['a Treasury outbound transfer', '/v1/treasury/outbound_transfers', 'financial_account=fa_1&amount=300&currency=eur', 3_300_000],
    ['a Treasury inbound transfer', '/v1/treasury/inbound_transfers', 'amount=100&currency=usd', 1_000_000],
    ['a test-mode issuing authorization', '/v1/test_helpers/issuing/authorizations', 'card=ic_1&amount=700&currency=usd', 7_000_000],
    ['a climate order by amount', '/v1/climate/orders', 'product=p&amount=100&currency=usd', 1_000_000],
    ['a charge with a legacy destination amount', '/v1/charges', 'amount=100&currency=usd&destination[amount]=900', 9_000_000],
    ['an invoice item', '/v1/invoiceitems', 'customer=cus_1&amount=100&currency=usd', 1_000_000],
  ])('prices %s from its amount and currency', (_n, path, form, micros) => {
    expect(p('POST', path, form)).toEqual(priced(micros));
  });

  it.each([
    ['creating a subscription', '/v1/subscriptions', 'customer=cus_1&items[0][price]=price_1'],
    ['creating a subscription schedule', '/v1/subscription_schedules', 'customer=cus_1'],
    ['adding a subscription item', '/v1/subscription_items', 'subscription=sub_1&price=price_1'],
    ['accepting a quote', '/v1/quotes/qt_1/accept', ''],
    ['finalizing a quote', '/v1/quotes/qt_1/finalize', ''],
    ['finalizing an invoice', '/v1/invoices/in_1/finalize', ''],
    ['sending an invoice', '/v1/invoices/in_1/send', ''],
    ['a credit note with a refund amount', '/v1/credit_notes', 'invoice=in_1&refund_amount=500'],
    ['approving an issuing authorization', '/v1/issuing/authorizations/iauth_1/approve', 'amount=100'],
    ['creating an issuing card', '/v1/issuing/cards', 'cardholder=ich_1&currency=usd&type=virtual'],
    ['a payment link', '/v1/payment_links', 'line_items[0][price]=price_1&line_items[0][quantity]=1'],
    ['a forwarding request', '/v1/forwarding/requests', 'payment_method=pm_1&url=https://x'],
    ['a meter event', '/v1/billing/meter_events', 'event_name=x&payload[value]=1'],
    ['a test-clock advance', '/v1/test_helpers/test_clocks/clock_1/advance', 'frozen_time=1'],
    ['a test authorization without currency', '/v1/test_helpers/issuing/authorizations', 'card=ic_1&amount=700'],
    ['an invoice item priced by a price', '/v1/invoiceitems', 'customer=cus_1&price=price_1'],
    ['an invoice item amount with a quantity', '/v1/invoiceitems', 'customer=cus_1&amount=1&currency=usd&quantity=1000'],
    ['an invoice that auto-advances', '/v1/invoices', 'customer=cus_1'],
    ['an invoice with auto_advance=true', '/v1/invoices', 'customer=cus_1&auto_advance=true'],
    ['turning on auto-advance', '/v1/invoices/in_1', 'auto_advance=true'],
    ['a subscription update changing items', '/v1/subscriptions/sub_1', 'items[0][price]=price_2'],
    ['a subscription update with an unknown param', '/v1/subscriptions/sub_1', 'metadata[a]=b&brand_new=1'],
    ['undoing a subscription cancellation', '/v1/subscriptions/sub_1', 'cancel_at_period_end=false'],
    ['cancelling a subscription with invoice_now', '/v1/subscriptions/sub_1', 'invoice_now=true'],
    ['a customer with a balance', '/v1/customers', 'email=a%40b.c&balance=-50000'],
    ['an issuing card re-activated', '/v1/issuing/cards/ic_1', 'status=active'],
    ['an issuing card with new spending limits', '/v1/issuing/cards/ic_1', 'spending_controls[spending_limits][0][amount]=1'],
    ['a wallet token activated', '/v1/issuing/tokens/intok_1', 'status=active'],
    ['an intent that asks for overcapture', '/v1/payment_intents', 'amount=100&currency=usd&payment_method_options[card][request_overcapture]=if_available'],
    ['a v2 outbound payment', '/v2/money_management/outbound_payments', 'amount[value]=100&amount[currency]=usd'],
  ])('%s is unknown, so a capped key refuses it', (_n, path, form) => {
    expect(p('POST', path, form).kind).toBe('unknown');
  });

  it.each([
    ['DELETE', '/v1/subscriptions/sub_1', 'invoice_now=true', 'unknown'],
    ['DELETE', '/v1/subscriptions/sub_1', 'invoice_now=false', 'priced'],
    ['DELETE', '/v1/subscriptions/sub_1', '', 'priced'],
    ['DELETE', '/v1/subscriptions/sub_1/discount', '', 'unknown'],
    ['DELETE', '/v1/customers/cus_1/discount', '', 'unknown'],
    ['DELETE', '/v1/customers/cus_1', '', 'priced'],
    ['POST', '/v1/invoices', 'customer=cus_1&auto_advance=false', 'priced'],
    ['POST', '/v1/invoices', 'customer=cus_1&auto_advance=false&auto_advance=true', 'invalid'],
    ['POST', '/v1/invoices/in_1', 'description=x', 'priced'],
    ['POST', '/v1/subscriptions/sub_1', 'metadata[a]=b&cancel_at_period_end=true&expand[0]=latest_invoice', 'priced'],
    ['POST', '/v1/issuing/cards/ic_1', 'status=canceled', 'priced'],
    ['POST', '/v1/issuing/cards/ic_1', 'status=canceled&status=active', 'invalid'],
    ['POST', '/v1/customers', 'email=a%40b.c', 'priced'],
    ['POST', '/v1/customers/cus_1', 'metadata[balance]=1', 'priced'],
    ['POST', '/v1/payment_intents/pi_1/capture', 'amount_to_capture=100', 'priced'],
    ['POST', '/v1/payment_intents/pi_1/confirm', 'payment_method=pm_card_visa', 'priced'],
    ['POST', '/v1/payment_intents/pi_1/confirm', 'payment_method_options[card][request_overcapture]=if_available', 'unknown'],
    ['POST', '/v1/products', 'name=x', 'priced'],
    ['POST', '/v1/quotes', 'customer=cus_1', 'priced'],
  ])('%s %s %s is %s', (method, path, form, kind) => {
    const r = p(method, path, '', form);
    expect(r.kind).toBe(kind);
    if (kind === 'priced') expect(r).toEqual(priced(0));
  });
});
