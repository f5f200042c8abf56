import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startGateway, stripeKey, type TestGateway } from './harness.js';

// Issuance policies per admin token: maximum TTL, maximum cap, vendors and endpoint patterns.
// Refusals are 403 policy_violation naming the field and the limit.

const CI_TOKEN = 'ci_admin_token_0123456789abcdef';
const NARROW_TOKEN = 'narrow_admin_token_0123456789ab';

describe('issuance policies per admin token', () => {
  let t: TestGateway;
  const as = async (token: string, body: unknown) => {
    const res = await fetch(`${t.apiUrl}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  beforeAll(async () => {
    t = await startGateway(() => ({
      admin_tokens: [
        { token: CI_TOKEN, name: 'ci', policy: { max_ttl: '10m', max_daily_usd_cap: 50, vendors: ['stripe'] } },
        { token: NARROW_TOKEN, policy: { endpoints: ['/v1/payment_intents', 'POST /v1/refunds', 'GET /v1/customers/*'] } },
      ],
      log_level: 'warn',
    }), { sandboxes: ['openai'] });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('issues within the policy, and the root admin token keeps only the server limits', async () => {
    const ok = await as(CI_TOKEN, { ...stripeKey, daily_usd_cap: 50, expires_in: '10m' });
    expect(ok.status).toBe(201);
    const root = await as(ADMIN_TOKEN, { ...stripeKey, daily_usd_cap: 5000, expires_in: '1h' });
    expect(root.status).toBe(201);
  });

  it('shortens the default TTL to the policy maximum', async () => {
    const r = await as(CI_TOKEN, { ...stripeKey, daily_usd_cap: 10, expires_in: undefined });
    expect(r.status).toBe(201);
    const ttl = Date.parse(r.body.expires_at) - Date.parse(r.body.created_at);
    expect(ttl).toBe(600_000);
  });

  it('refuses a longer TTL, a larger or missing cap and another vendor with 403 saying why', async () => {
    const ttl = await as(CI_TOKEN, { ...stripeKey, daily_usd_cap: 10, expires_in: '11m' });
    expect(ttl.status).toBe(403);
    expect(ttl.body).toMatchObject({ code: 'policy_violation', param: 'expires_in' });
    expect(ttl.body.message).toContain('600 seconds');
    const cap = await as(CI_TOKEN, { ...stripeKey, daily_usd_cap: 50.01 });
    expect(cap.body).toMatchObject({ code: 'policy_violation', param: 'daily_usd_cap' });
    expect(cap.body.message).toContain('50 USD');
    const noCap = await as(CI_TOKEN, { ...stripeKey, daily_usd_cap: null });
    expect(noCap.body).toMatchObject({ code: 'policy_violation', param: 'daily_usd_cap' });
    const vendor = await as(CI_TOKEN, { ...stripeKey, vendor: 'openai', daily_usd_cap: 1 });
    expect(vendor.status).toBe(403);
    expect(vendor.body).toMatchObject({ code: 'policy_violation', param: 'vendor' });
  });

  it('allows only endpoint patterns that fall within the policy patterns', async () => {
    const inside = await as(NARROW_TOKEN, {
      ...stripeKey,
      allowed_endpoints: ['POST /v1/payment_intents', 'POST /v1/refunds', 'GET /v1/customers/cus_1', 'GET /v1/customers/*'],
    });
    expect(inside.status).toBe(201);
    for (const [i, pattern] of [
      [1, '/v1/refunds'], // any method is wider than POST
      [1, 'GET /v1/payment_intents/*'],
      [1, '/v1/customers/*'],
      [1, '/v1/*'],
    ] as const) {
      const r = await as(NARROW_TOKEN, { ...stripeKey, allowed_endpoints: ['/v1/payment_intents', pattern] });
      expect(r.status, pattern).toBe(403);
      expect(r.body).toMatchObject({ code: 'policy_violation', param: `allowed_endpoints.${i}` });
      expect(r.body.message).toContain(pattern);
    }
  });

  it('the extra tokens are admin tokens of the default tenant for everything else', async () => {
    const key = await as(ADMIN_TOKEN, stripeKey);
    const res = await fetch(`${t.apiUrl}/v1/keys/${key.body.id}`, { headers: { authorization: `Bearer ${CI_TOKEN}` } });
    expect(res.status).toBe(200);
    const wrong = await fetch(`${t.apiUrl}/v1/keys`, { headers: { authorization: 'Bearer not_a_token_0123456789' } });
    expect(wrong.status).toBe(401);
  });
});
