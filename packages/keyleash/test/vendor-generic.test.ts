import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/config.js';
import {
  ADMIN_TOKEN,
  ALL_SECRETS,
  ANTHROPIC_TEST_SECRET,
  OPENAI_TEST_SECRET,
  startGateway,
  STRIPE_TEST_SECRET,
  type TestGateway,
  TWILIO_TEST_SID,
  TWILIO_TEST_TOKEN,
} from './harness.js';

// Vendors defined in config alone (no code), against the echo sandbox; the unknown-cost policy
// table; and GET /v1/vendors.

const MAILER_TEST = 'SG.mailer-test-secret-0123';
const MAILER_LIVE = 'SG.mailer-live-secret-4567';
const PAYCO_TEST = 'payco-test-secret-0123';
const GH_TEST = 'ghp_githubtestsecret0123';
const METERED_TEST = 'metered-test-secret-0123';
const BASIC_TEST = 'basic-test-password-0123';
const POLICY_SECRET = 'policy-test-secret-0123';
const GENERIC_SECRETS = [MAILER_TEST, MAILER_LIVE, PAYCO_TEST, GH_TEST, METERED_TEST, BASIC_TEST, POLICY_SECRET];

let t: TestGateway;
const echo = () => t.sandboxes.echo!;

beforeAll(async () => {
  t = await startGateway(
    (stripeUrl, _dir, urls) => {
      const base_url = urls.echo!;
      const policy = (unknown_cost: string | number) => ({ base_url, test_secret: POLICY_SECRET, unknown_cost });
      return {
        vendors: {
          stripe: { base_url: stripeUrl, test_secret: STRIPE_TEST_SECRET },
          generic: {
            mailer: {
              base_url,
              test_secret: MAILER_TEST,
              live_secret: MAILER_LIVE,
              auth: 'bearer',
              endpoints: [
                { match: 'POST /v3/mail/send', usd: 0.001 },
                { match: 'POST /v3/mail/batch', count: { path: 'personalizations', usd_each: '0.0005' } },
              ],
            },
            payco: {
              base_url,
              test_secret: PAYCO_TEST,
              auth: { type: 'header', name: 'X-Api-Key' },
              endpoints: [
                { match: 'POST /v1/charges', amount: { path: 'amount', unit: 'minor', currency_path: 'currency' } },
                { match: 'POST /v1/tips', amount: { path: 'tip.value', unit: 'major', currency: 'usd' } },
              ],
              unknown_cost: 'deny',
            },
            gh: { base_url, test_secret: GH_TEST, auth: { type: 'header', name: 'Authorization', prefix: 'token ' }, unknown_cost: 'free' },
            metered: { base_url, test_secret: METERED_TEST, auth: { type: 'query', name: 'api_key' }, unknown_cost: 0.25 },
            basicco: { base_url, test_secret: BASIC_TEST, auth: { type: 'basic', username: 'api' } },
            'pol-auto': policy('auto'),
            'pol-free': policy('free'),
            'pol-deny': policy('deny'),
            'pol-fixed': policy('0.25'),
          },
        },
      };
    },
    { sandboxes: ['echo'] },
  );
});
afterAll(async () => {
  await t.close();
});
beforeEach(() => {
  echo().reset();
});

const keyFor = (vendor: string, extra: Record<string, unknown> = {}) =>
  t.issue({ label: `agent-${vendor}`, vendor, allowed_endpoints: ['/*', '/*/*', '/*/*/*', '/*/*/*/*'], daily_usd_cap: 10, expires_in: '5m', ...extra });

async function spend(id: string): Promise<number> {
  return (await t.admin('GET', `/v1/keys/${id}`)).body.spend_today_micros;
}

describe('generic vendors from config', () => {
  it('injects a bearer secret, forwards the body untouched, and charges a fixed price per matching call', async () => {
    const key = await keyFor('mailer');
    const body = { personalizations: [{ to: [{ email: 'a@example.com' }] }], subject: 'hi' };
    const r = await t.proxy('/mailer/v3/mail/send', { token: key.token, body });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ echo: true, method: 'POST', path: '/v3/mail/send', body });
    const seen = echo().requests[0]!;
    expect(seen.headers.authorization).toBe(`Bearer ${MAILER_TEST}`);
    expect(seen.body).toBe(JSON.stringify(body));
    expect(JSON.stringify(seen.headers)).not.toContain(key.token);
    expect(await spend(key.id)).toBe(1_000);
    const live = await keyFor('mailer', { mode: 'live' });
    await t.proxy('/mailer/v3/mail/send', { token: live.token, body });
    expect(echo().requests[1]!.headers.authorization).toBe(`Bearer ${MAILER_LIVE}`);
  });

  it('charges a count read from the body (a list length) × a price each', async () => {
    const key = await keyFor('mailer');
    const personalizations = [1, 2, 3].map((i) => ({ to: [{ email: `u${i}@example.com` }] }));
    expect((await t.proxy('/mailer/v3/mail/batch', { token: key.token, body: { personalizations } })).status).toBe(200);
    expect(await spend(key.id)).toBe(1_500);
    // The rule matches but the value is missing: the unknown-cost policy (auto: a write on a capped key is refused).
    const r = await t.proxy('/mailer/v3/mail/batch', { token: key.token, body: {} });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('cost_unknown');
  });

  it('reads a money amount from JSON or form bodies, in minor or major units, converting currencies', async () => {
    const key = await keyFor('payco', { daily_usd_cap: 100 });
    expect((await t.proxy('/payco/v1/charges', { token: key.token, body: { amount: 1234, currency: 'usd' } })).status).toBe(200);
    expect(await spend(key.id)).toBe(12_340_000);
    const seen = echo().requests[0]!;
    expect(seen.headers['x-api-key']).toBe(PAYCO_TEST);
    expect(seen.headers.authorization).toBeUndefined();
    await t.proxy('/payco/v1/charges', { token: key.token, form: 'amount=100&currency=eur' }); // €1.00 at the built-in 1.20
    expect(await spend(key.id)).toBe(12_340_000 + 1_200_000);
    await t.proxy('/payco/v1/tips', { token: key.token, body: { tip: { value: '2.5' } } });
    expect(await spend(key.id)).toBe(12_340_000 + 1_200_000 + 2_500_000);
    const bad = await t.proxy('/payco/v1/charges', { token: key.token, body: { amount: 10.5, currency: 'usd' } });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: 'invalid_amount', param: 'amount' });
    const twice = await t.proxy('/payco/v1/charges?amount=1', { token: key.token, body: { amount: 999999, currency: 'usd' } });
    expect(twice.status).toBe(400);
    expect(echo().requests).toHaveLength(3);
  });

  it("accepts the vault token in the vendor's own key header and never forwards it", async () => {
    const key = await keyFor('payco');
    const r = await t.proxy('/payco/v1/charges', { headers: { 'X-Api-Key': key.token }, body: { amount: 1, currency: 'usd' } });
    expect(r.status).toBe(200);
    expect(echo().requests[0]!.headers['x-api-key']).toBe(PAYCO_TEST);
  });

  it('injects a secret in a named header with a prefix (GitHub style), or as HTTP Basic', async () => {
    const gh = await keyFor('gh');
    const r = await t.proxy('/gh/repos/o/r/issues', { token: gh.token, body: { title: 'x' } });
    expect(r.status).toBe(200);
    expect(echo().requests[0]!.headers.authorization).toBe(`token ${GH_TEST}`);
    expect(await spend(gh.id)).toBe(0); // unknown_cost: free
    const basic = await keyFor('basicco');
    await t.proxy('/basicco/v1/things', { token: basic.token });
    expect(echo().requests[1]!.headers.authorization).toBe(`Basic ${Buffer.from(`api:${BASIC_TEST}`).toString('base64')}`);
  });

  it("injects a secret as a query parameter, replacing the caller's own", async () => {
    const key = await keyFor('metered');
    const r = await t.proxy('/metered/v1/lookup?q=a%20b&api_key=mine&x=1', { token: key.token });
    expect(r.status).toBe(200);
    expect(echo().requests[0]!.query).toBe(`q=a%20b&x=1&api_key=${METERED_TEST}`);
    expect(await spend(key.id)).toBe(250_000); // unknown_cost: a fixed $0.25
  });
});

describe('the unknown-cost policy', () => {
  // [vendor, method, capped, expected status, expected charge]
  const table: Array<[string, 'GET' | 'POST', boolean, number, number]> = [
    ['pol-auto', 'GET', true, 200, 0],
    ['pol-auto', 'POST', true, 403, 0],
    ['pol-auto', 'POST', false, 200, 0],
    ['pol-free', 'GET', true, 200, 0],
    ['pol-free', 'POST', true, 200, 0],
    ['pol-deny', 'GET', true, 403, 0],
    ['pol-deny', 'POST', true, 403, 0],
    ['pol-deny', 'POST', false, 200, 0],
    ['pol-fixed', 'GET', true, 200, 250_000],
    ['pol-fixed', 'POST', true, 200, 250_000],
  ];
  it.each(table)('%s %s (capped: %s) → %i, charged %i micros', async (vendor, method, capped, status, charge) => {
    const key = await keyFor(vendor, capped ? {} : { daily_usd_cap: null });
    const r = await t.proxy(`/${vendor}/v1/anything`, { token: key.token, method, ...(method === 'POST' ? { body: { a: 1 } } : {}) });
    expect(r.status).toBe(status);
    if (status === 403) expect(r.body.code).toBe('cost_unknown');
    expect(echo().requests).toHaveLength(status === 200 ? 1 : 0);
    expect(await spend(key.id)).toBe(charge);
  });
});

describe('GET /v1/vendors', () => {
  it('lists every configured vendor with its endpoints and cost rules, never a secret', async () => {
    const g = await startGateway(
      (stripeUrl, _dir, urls) => ({
        vendors: {
          stripe: { base_url: stripeUrl, test_secret: STRIPE_TEST_SECRET },
          twilio: { base_url: urls.echo!, test_account_sid: TWILIO_TEST_SID, test_auth_token: TWILIO_TEST_TOKEN },
          openai: { base_url: urls.echo!, test_secret: OPENAI_TEST_SECRET },
          anthropic: { base_url: urls.echo!, test_secret: ANTHROPIC_TEST_SECRET },
          generic: { mailer: { base_url: urls.echo!, test_secret: MAILER_TEST, endpoints: [{ match: 'POST /v3/mail/send', usd: 0.001 }] } },
        },
      }),
      { sandboxes: ['echo'] },
    );
    try {
      const r = await g.admin('GET', '/v1/vendors');
      expect(r.status).toBe(200);
      const byName = Object.fromEntries(r.body.data.map((v: { name: string }) => [v.name, v]));
      expect(Object.keys(byName).sort()).toEqual(['anthropic', 'mailer', 'openai', 'stripe', 'twilio']);
      expect(byName.mailer).toMatchObject({
        object: 'vendor',
        kind: 'generic',
        origin: g.sandboxes.echo!.url,
        modes: ['test'],
        auth: 'bearer',
        endpoints: [{ match: 'POST /v3/mail/send', cost: 'fixed: $0.001 per call' }],
      });
      expect(byName.mailer.unknown_cost).toMatch(/^auto/);
      expect(byName.openai).toMatchObject({ kind: 'builtin', auth: 'bearer' });
      expect(byName.openai.endpoints.map((e: { match: string }) => e.match)).toContain('POST /v1/chat/completions');
      expect(byName.openai.models_usd_per_million_tokens['gpt-4o']).toEqual({ input: 2.5, output: 10 });
      expect(byName.anthropic.auth).toBe('header x-api-key');
      expect(byName.twilio.endpoints[0].sms.by_prefix['+1']).toBe('$0.0083');
      expect(byName.stripe.endpoints.map((e: { match: string }) => e.match)).toContain('POST /v1/payment_intents');
      for (const s of [...ALL_SECRETS, ...GENERIC_SECRETS, TWILIO_TEST_TOKEN]) expect(r.text).not.toContain(s);
      expect((await fetch(`${g.apiUrl}/v1/vendors`)).status).toBe(401);
      // A key's vendor must exist when it is issued.
      const bad = await g.admin('POST', '/v1/keys', { vendor: 'sendgrid', allowed_endpoints: ['/v3/mail/send'] });
      expect(bad.status).toBe(400);
      expect(bad.body).toMatchObject({ code: 'invalid_request', param: 'vendor' });
    } finally {
      await g.close();
    }
  });
});

describe('generic vendor configuration is validated at start', () => {
  const base = (generic: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    admin_token: ADMIN_TOKEN,
    vendors: { generic, ...extra },
  });
  const ok = { base_url: 'https://api.example.com', test_secret: 'x-test' };
  it.each([
    ['a built-in name', { openai: ok }, /reserved/],
    ['an API-version-like name', { v1: ok }, /reserved/],
    ['an upper-case name', { SendGrid: ok }, /vendors\.generic/],
    ['one secret for test and live', { mailer: { ...ok, live_secret: 'x-test' } }, /must differ/],
    ['a base URL with a path', { mailer: { ...ok, base_url: 'https://api.example.com/v3' } }, /origin only/],
    ['a rule with two prices', { mailer: { ...ok, endpoints: [{ match: 'POST /x', usd: 1, count: { path: 'n', usd_each: 1 } }] } }, /exactly one/],
    ['a bad pattern', { mailer: { ...ok, endpoints: [{ match: 'POST x', usd: 1 }] } }, /pattern/],
    ['a price with 7 decimals', { mailer: { ...ok, endpoints: [{ match: 'POST /x', usd: '0.0000001' }] } }, /6 decimals/],
    ['an amount without currency', { mailer: { ...ok, endpoints: [{ match: 'POST /x', amount: { path: 'amount' } }] } }, /currency/],
    ['a secret in the Host header', { mailer: { ...ok, auth: { type: 'header', name: 'Host' } } }, /cannot carry/],
  ])('refuses %s', (_what, generic, message) => {
    expect(() => parseConfig(base(generic))).toThrow(ConfigError);
    expect(() => parseConfig(base(generic))).toThrow(message);
  });

  it('refuses built-in secrets that cross modes', () => {
    expect(() => parseConfig(base({}, { openai: { test_secret: 'sk-samekey012345', live_secret: 'sk-samekey012345' } }))).toThrow(/must differ/);
    expect(() => parseConfig(base({}, { anthropic: { live_secret: 'not-an-anthropic-key' } }))).toThrow(/sk-ant-/);
    expect(() => parseConfig(base({}, { twilio: { test_account_sid: TWILIO_TEST_SID } }))).toThrow(/set both/);
    expect(() => parseConfig(base({}, { twilio: { unknown_cost: 'sometimes' } }))).toThrow(ConfigError);
  });
});
