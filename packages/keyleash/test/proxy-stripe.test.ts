import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, rawRequest, startGateway, STRIPE_LIVE_SECRET, STRIPE_TEST_SECRET, stripeKey, type TestGateway } from './harness.js';

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

async function spendOf(id: string): Promise<number> {
  return (await t.admin('GET', `/v1/keys/${id}`)).body.spend_today_micros;
}

async function auditFor(requestId: string) {
  await t.gw.audit.flush();
  const r = await t.admin('GET', '/v1/audit?limit=1000');
  return r.body.data.find((a: { request_id: string }) => a.request_id === requestId);
}

describe('forwarding to Stripe', () => {
  it('forwards /stripe/<path> with the real test secret and a form body made from JSON', async () => {
    const key = await t.issue();
    const r = await t.proxy('/stripe/v1/payment_intents', {
      token: key.token,
      body: {
        amount: 5000,
        currency: 'usd',
        customer: 'cus_123',
        confirm: true,
        metadata: { order_id: '42', note: 'a&b=c' },
        payment_method_types: ['card', 'link'],
        shipping: { name: 'Ada', address: { line1: '1 Main St', city: 'Paris' } },
      },
    });
    expect(r.status).toBe(200);
    expect(r.body.object).toBe('payment_intent');
    expect(r.body.amount).toBe(5000);
    expect(t.sandbox.requests).toHaveLength(1);
    const seen = t.sandbox.requests[0]!;
    expect(seen.method).toBe('POST');
    expect(seen.path).toBe('/v1/payment_intents');
    expect(seen.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
    expect(seen.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(seen.body).toContain('metadata[order_id]=42');
    expect(seen.body).toContain('payment_method_types[0]=card');
    expect(seen.body).toContain('shipping[address][city]=Paris');
    expect(seen.body).toContain('confirm=true');
    expect(seen.form).toMatchObject({
      amount: '5000',
      currency: 'usd',
      metadata: { order_id: '42', note: 'a&b=c' },
      payment_method_types: ['card', 'link'],
    });
    expect(JSON.stringify(seen.headers)).not.toContain(key.token);
    expect(await spendOf(key.id)).toBe(50_000_000);
  });

  it('serves vendor-less paths for the key named vendor', async () => {
    const key = await t.issue();
    const r = await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 100, currency: 'usd' } });
    expect(r.status).toBe(200);
    expect(t.sandbox.requests[0]!.path).toBe('/v1/payment_intents');
  });

  it('passes form bodies through byte for byte', async () => {
    const key = await t.issue();
    const form = 'amount=700&currency=eur&metadata[a]=1&expand[]=customer';
    const r = await t.proxy('/v1/payment_intents', { token: key.token, form });
    expect(r.status).toBe(200);
    expect(t.sandbox.requests[0]!.body).toBe(form);
  });

  it('passes vendor headers on and drops credentials, hop-by-hop and unlisted headers', async () => {
    const key = await t.issue();
    await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', {
        authorization: `Bearer ${key.token}`,
        'content-type': 'application/json',
        'Idempotency-Key': 'idem-123',
        'Stripe-Version': '2024-06-20',
        'X-Original-URL': '/v1/payouts',
        'X-Forwarded-For': '10.0.0.1',
        'X-HTTP-Method-Override': 'DELETE',
        Connection: 'keep-alive, X-Secret-Hop',
        'X-Secret-Hop': 'gone',
        Cookie: 'session=abc',
      }, JSON.stringify({ amount: 100, currency: 'usd' }));
    const h = t.sandbox.requests[0]!.headers;
    expect(h['idempotency-key']).toBe('idem-123');
    expect(h['stripe-version']).toBe('2024-06-20');
    expect(h['x-original-url']).toBeUndefined();
    expect(h['x-forwarded-for']).toBeUndefined();
    expect(h['x-http-method-override']).toBeUndefined();
    expect(h['x-secret-hop']).toBeUndefined();
    expect(h.cookie).toBeUndefined();
  });

  it('passes the vendor response headers back with a request id', async () => {
    const key = await t.issue();
    const r = await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 100, currency: 'usd' } });
    expect(r.headers.get('request-id')).toMatch(/^req_/);
    expect(r.headers.get('x-keyleash-request-id')).toMatch(/^req_/);
  });

  it('accepts the vault key as HTTP Basic username, the way curl -u sk_…: sends it', async () => {
    const key = await t.issue();
    const r = await t.proxy('/v1/payment_intents', {
      headers: { authorization: `Basic ${Buffer.from(`${key.token}:`).toString('base64')}` },
      body: { amount: 100, currency: 'usd' },
    });
    expect(r.status).toBe(200);
  });

  it('uses the live secret only for live keys and the test secret only for test keys', async () => {
    const live = await t.issue({ ...stripeKey, mode: 'live' });
    expect(live.token).toMatch(/^vk_live_/);
    expect(live.mode).toBe('live');
    await t.proxy('/v1/payment_intents', { token: live.token, body: { amount: 100, currency: 'usd' } });
    const test = await t.issue();
    expect(test.token).toMatch(/^vk_test_/);
    await t.proxy('/v1/payment_intents', { token: test.token, body: { amount: 100, currency: 'usd' } });
    expect(t.sandbox.requests.map((r) => r.headers.authorization)).toEqual([
      `Bearer ${STRIPE_LIVE_SECRET}`,
      `Bearer ${STRIPE_TEST_SECRET}`,
    ]);
  });

  it('passes vendor redirects back instead of following them', async () => {
    const key = await t.issue();
    t.sandbox.respond = () => ({ status: 302, body: '', headers: { location: 'http://169.254.169.254/latest/meta-data' } });
    const r = await fetch(`${t.proxyUrl}/v1/payment_intents/pi_1`, {
      headers: { authorization: `Bearer ${key.token}` },
      redirect: 'manual',
    });
    expect(r.status).toBe(302);
    expect(r.headers.get('location')).toBe('http://169.254.169.254/latest/meta-data');
    expect(t.sandbox.requests).toHaveLength(1);
  });
});

describe('vendor answers and settlement', () => {
  it("passes Stripe's 402 card_declined through untouched and releases the reservation", async () => {
    const key = await t.issue();
    const r = await t.proxy('/v1/payment_intents', {
      token: key.token,
      body: { amount: 10_000, currency: 'usd', payment_method: 'pm_card_chargeDeclined', confirm: true },
    });
    expect(r.status).toBe(402);
    expect(r.body.error.code).toBe('card_declined');
    expect(r.body.code).toBeUndefined();
    expect(await spendOf(key.id)).toBe(0);
    const audit = await auditFor(r.headers.get('x-keyleash-request-id')!);
    expect(audit).toMatchObject({ status: 402, decision: 'allow', cost_micros: 0 });
  });

  it('keeps the charge when the vendor fails with a 5xx (it may have executed)', async () => {
    const key = await t.issue();
    t.sandbox.respond = () => ({ status: 500, body: { error: { type: 'api_error', message: 'boom' } } });
    const r = await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 2500, currency: 'usd' } });
    expect(r.status).toBe(500);
    expect(r.body.error.message).toBe('boom');
    expect(await spendOf(key.id)).toBe(25_000_000);
  });

  it('prices non-USD, zero-decimal and three-decimal currencies', async () => {
    const key = await t.issue();
    await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 1000, currency: 'jpy' } });
    const jpy = await spendOf(key.id);
    expect(jpy).toBeGreaterThan(1_000_000); // ¥1000 is a few dollars, not $10
    expect(jpy).toBeLessThan(20_000_000);
    const key2 = await t.issue();
    await t.proxy('/v1/payment_intents', { token: key2.token, body: { amount: 1000, currency: 'kwd' } });
    const kwd = await spendOf(key2.id);
    expect(kwd).toBeGreaterThan(2_000_000); // 1.000 KWD is about $3.3
    expect(kwd).toBeLessThan(5_000_000);
  });

  it('refuses an amount it cannot price, and forwards nothing', async () => {
    const key = await t.issue();
    for (const amount of [10.5, -100, '1e3', 2 ** 60]) {
      const r = await t.proxy('/v1/payment_intents', { token: key.token, body: { amount, currency: 'usd' } });
      expect(r.status, String(amount)).toBe(400);
      // 2^60 cannot even be re-encoded exactly, so it fails as a body before it is priced.
      expect(['invalid_amount', 'invalid_body']).toContain(r.body.code);
    }
    const dup = await t.proxy('/v1/payment_intents', { token: key.token, form: 'amount=1&amount=99999&currency=usd' });
    expect(dup.status).toBe(400);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses a full refund of unknown size on a capped key', async () => {
    const key = await t.issue();
    const r = await t.proxy('/v1/refunds', { token: key.token, body: { payment_intent: 'pi_1' } });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('cost_unknown');
    expect(t.sandbox.requests).toHaveLength(0);
  });
});

describe('refusals', () => {
  it('refuses a missing, malformed or unknown vault key with 401 invalid_key', async () => {
    for (const token of [undefined, 'nope', 'vk_test_' + 'A'.repeat(38), ADMIN_TOKEN, STRIPE_TEST_SECRET]) {
      const r = await t.proxy('/v1/payment_intents', { token, body: { amount: 100, currency: 'usd' } });
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('invalid_key');
      if (token) expect(r.text).not.toContain(token);
    }
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses endpoints outside allowed_endpoints with 403 endpoint_not_allowed', async () => {
    const key = await t.issue();
    const cases: Array<[string, string]> = [
      ['POST', '/v1/customers'],
      ['GET', '/v1/refunds'],
      ['POST', '/v1/payment_intents/pi_1/confirm'],
      ['GET', '/v1/payment_intents/pi_1/../../customers'],
      ['POST', '/v1/payment_intents/%2e%2e/refunds'],
      ['POST', '/v1/payment_intents/pi_1%2Fconfirm'],
      ['POST', '/v1/payment_intents/pi_1%252Fconfirm'],
      ['POST', '/v1//payment_intents'],
      ['POST', '/v1/payment_intents/'],
      ['POST', '/V1/PAYMENT_INTENTS'],
      ['POST', '/twilio/v1/payment_intents'],
      ['GET', '/v1/payment_intents/pi_1;x=y'],
      ['GET', '/v1/payment_intents/pi_1%00'],
    ];
    for (const [method, path] of cases) {
      const headers = { authorization: `Bearer ${key.token}`, 'content-type': 'application/json' };
      const r = await rawRequest(t.proxyUrl, method, path, headers, method === 'POST' ? '{"name":"x"}' : undefined);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.body.code).toBe('endpoint_not_allowed');
    }
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('honours method prefixes in patterns', async () => {
    const key = await t.issue();
    const pi = (await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 100, currency: 'usd' } })).body.id;
    expect((await t.proxy('/v1/refunds', { token: key.token, body: { amount: 100, payment_intent: pi } })).status).toBe(200);
    expect((await t.proxy('/v1/customers', { token: key.token })).status).toBe(200);
  });

  it('refuses a body over the limit with 413', async () => {
    const key = await t.issue();
    const r = await t.proxy('/v1/payment_intents', { token: key.token, form: `amount=1&currency=usd&x=${'a'.repeat(1_100_000)}` });
    expect(r.status).toBe(413);
    expect(r.body.code).toBe('body_too_large');
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses a body that is not JSON or form for Stripe', async () => {
    const key = await t.issue();
    const bad = await t.proxy('/v1/payment_intents', { token: key.token, body: '{"amount": 1,' });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('invalid_body');
    const xml = await t.proxy('/v1/payment_intents', { token: key.token, body: '<x/>', headers: { 'content-type': 'text/xml' } });
    expect(xml.status).toBe(400);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('tells stripe-node not to retry a refusal', async () => {
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 1 });
    const r = await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 500, currency: 'usd' } });
    expect(r.status).toBe(429);
    expect(r.headers.get('stripe-should-retry')).toBe('false');
    expect(r.body.error).toMatchObject({ code: 'cap_exhausted' });
  });

  it('audits denied calls with their code', async () => {
    const key = await t.issue();
    const r = await t.proxy('/v1/customers', { method: 'POST', token: key.token, body: { name: 'x' } });
    const audit = await auditFor(r.headers.get('x-keyleash-request-id')!);
    expect(audit).toMatchObject({
      key_id: key.id,
      label: 'test-key',
      vendor: 'stripe',
      mode: 'test',
      method: 'POST',
      path: '/v1/customers',
      status: 403,
      decision: 'deny',
      code: 'endpoint_not_allowed',
      cost_usd: 0,
    });
  });
});

describe('upstream failures', () => {
  it('answers 504 upstream_timeout and keeps the charge when the vendor does not answer', async () => {
    const slow = await startGateway(() => ({ proxy: { headers_timeout_ms: 200 } }));
    try {
      slow.sandbox.respond = () => ({ status: 200, body: {}, delayMs: 1500 });
      const key = await slow.issue();
      const r = await slow.proxy('/v1/payment_intents', { token: key.token, body: { amount: 700, currency: 'usd' } });
      expect(r.status).toBe(504);
      expect(r.body.code).toBe('upstream_timeout');
      expect(slow.sandbox.requests).toHaveLength(1);
      const k = await slow.admin('GET', `/v1/keys/${key.id}`);
      expect(k.body.spend_today_micros).toBe(7_000_000);
    } finally {
      await slow.close();
    }
  });

  it('answers 502 upstream_error and releases the charge when the vendor cannot be reached', async () => {
    const down = await startGateway(() => ({
      vendors: { stripe: { base_url: 'http://127.0.0.1:1', test_secret: STRIPE_TEST_SECRET } },
    }));
    try {
      const key = await down.issue();
      const r = await down.proxy('/v1/payment_intents', { token: key.token, body: { amount: 700, currency: 'usd' } });
      expect(r.status).toBe(502);
      expect(r.body.code).toBe('upstream_error');
      const k = await down.admin('GET', `/v1/keys/${key.id}`);
      expect(k.body.spend_today_micros).toBe(0);
    } finally {
      await down.close();
    }
  });
});
