import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { rawRequest, startGateway, STRIPE_TEST_SECRET, stripeKey, type TestGateway } from './harness.js';

// "Replays" that the vendor does not dedupe must be charged: a retry is free only when the
// gateway forwarded the same Idempotency-Key, to a vendor that dedupes it, under the same
// account. Each test asserts the spend counted and what the vendor stubs received.

const US = '+14155550100';
const FROM = '+15005550006';

for (const backend of await backends('attacks_idem')) {
describe.skipIf(backend.skip)(`idempotent replays the vendor does not dedupe (${backend.name})`, () => {
let t: TestGateway;
let storeConfig: Record<string, unknown> | null = null;

beforeAll(async () => {
  storeConfig = backend.store();
  t = await startGateway(
    (stripeUrl, _dir, urls) => {
      const generic = (dedupes: boolean) => ({
        base_url: urls.echo!,
        test_secret: `generic-secret-${dedupes}-0123`,
        endpoints: [{ match: 'POST /v1/orders', usd: 90 }],
        ...(dedupes ? { dedupes_idempotency_key: true } : {}),
      });
      return {
        ...(storeConfig ? { store: storeConfig as never } : {}),
        log_level: 'warn',
        vendors: {
          stripe: { base_url: stripeUrl, test_secret: STRIPE_TEST_SECRET },
          generic: { deduping: generic(true), plain: generic(false) },
        },
      };
    },
    { sandboxes: ['twilio', 'openai', 'echo'] },
  );
});
afterAll(async () => {
  await t?.close();
  await backend.cleanup(storeConfig);
});
beforeEach(() => {
  t.sandbox.requests.length = 0;
  t.sandboxes.twilio!.reset();
  t.sandboxes.openai!.reset();
  t.sandboxes.echo!.reset();
});

async function spend(id: string): Promise<number> {
  return (await t.admin('GET', `/v1/keys/${id}`)).body.spend_today_micros;
}

/** Five identical $90 payment intents under one Idempotency-Key, with extra headers per call. */
async function fiveIntents(token: string, headers: (i: number) => Record<string, string>): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await rawRequest(
      t.proxyUrl,
      'POST',
      '/v1/payment_intents',
      { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded', 'idempotency-key': 'order-90', ...headers(i) },
      'amount=9000&currency=usd',
    );
    statuses.push(r.status);
  }
  return statuses;
}

it('charges each call when Connection names Idempotency-Key (the vendor never sees the key)', async () => {
  const key = await t.issue({ ...stripeKey, daily_usd_cap: 1000 });
  const statuses = await fiveIntents(key.token, () => ({ connection: 'close, Idempotency-Key' }));
  expect(statuses).toEqual([200, 200, 200, 200, 200]);
  expect(t.sandbox.requests).toHaveLength(5);
  for (const seen of t.sandbox.requests) expect(seen.headers['idempotency-key']).toBeUndefined();
  expect(await spend(key.id)).toBe(450_000_000);
});

it('refuses at the cap once the uncharged "replays" would pass it', async () => {
  const key = await t.issue({ ...stripeKey, daily_usd_cap: 200 });
  const statuses = await fiveIntents(key.token, () => ({ connection: 'close, Idempotency-Key' }));
  expect(statuses).toEqual([200, 200, 429, 429, 429]);
  expect(t.sandbox.requests).toHaveLength(2);
  expect(await spend(key.id)).toBe(180_000_000);
});

it('refuses "replays" under another Stripe-Account or Stripe-Context: no account switch, nothing forwarded or charged', async () => {
  // Context headers are refused on every key (header_not_allowed), so a replay can never be
  // moved into another account's idempotency scope; the account is part of the fingerprint too.
  const key = await t.issue({ ...stripeKey, daily_usd_cap: 1000 });
  const first = await fiveIntents(key.token, () => ({}));
  expect(first).toEqual([200, 200, 200, 200, 200]);
  const accounts = await fiveIntents(key.token, (i) => ({ 'stripe-account': `acct_${i}` }));
  const contexts = await fiveIntents(key.token, (i) => ({ 'stripe-context': `ctx_${i}` }));
  expect([...accounts, ...contexts]).toEqual(Array(10).fill(403));
  expect(t.sandbox.requests).toHaveLength(5);
  for (const seen of t.sandbox.requests) {
    expect(seen.headers['stripe-account']).toBeUndefined();
    expect(seen.headers['stripe-context']).toBeUndefined();
  }
  expect(await spend(key.id)).toBe(90_000_000);
});

it('keeps a genuine Stripe replay free: same key, same request, forwarded with its Idempotency-Key', async () => {
  const key = await t.issue({ ...stripeKey, daily_usd_cap: 1000 });
  const statuses = await fiveIntents(key.token, () => ({}));
  expect(statuses).toEqual([200, 200, 200, 200, 200]);
  expect(t.sandbox.requests).toHaveLength(5);
  for (const seen of t.sandbox.requests) expect(seen.headers['idempotency-key']).toBe('order-90');
  expect(await spend(key.id)).toBe(90_000_000);
});

it('charges each Twilio call: Twilio ignores Idempotency-Key', async () => {
  const key = await t.issue({
    label: 'sms',
    vendor: 'twilio',
    allowed_endpoints: ['POST /2010-04-01/Accounts/*/Messages.json'],
    daily_usd_cap: 1,
    expires_in: '5m',
  });
  const costs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const before = await spend(key.id);
    const r = await rawRequest(
      t.proxyUrl,
      'POST',
      '/twilio/2010-04-01/Accounts/-/Messages.json',
      { authorization: `Bearer ${key.token}`, 'content-type': 'application/x-www-form-urlencoded', 'idempotency-key': 'sms-1' },
      `To=${encodeURIComponent(US)}&From=${encodeURIComponent(FROM)}&Body=hello`,
    );
    expect(r.status).toBe(201);
    costs.push((await spend(key.id)) - before);
  }
  expect(t.sandboxes.twilio!.requests).toHaveLength(5);
  expect(costs[0]).toBeGreaterThan(0);
  expect(costs).toEqual(Array(5).fill(costs[0]));
});

it('charges each OpenAI call: OpenAI does not dedupe Idempotency-Key', async () => {
  const key = await t.issue({ label: 'llm', vendor: 'openai', allowed_endpoints: ['POST /v1/chat/completions'], daily_usd_cap: 1, expires_in: '5m' });
  const costs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const before = await spend(key.id);
    const r = await rawRequest(
      t.proxyUrl,
      'POST',
      '/openai/v1/chat/completions',
      { authorization: `Bearer ${key.token}`, 'content-type': 'application/json', 'idempotency-key': 'chat-1' },
      JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20 }),
    );
    expect(r.status).toBe(200);
    costs.push((await spend(key.id)) - before);
  }
  expect(t.sandboxes.openai!.requests).toHaveLength(5);
  expect(costs[0]).toBeGreaterThan(0);
  expect(costs).toEqual(Array(5).fill(costs[0]));
});
it.each([
  ['charges each call to a generic vendor not configured to dedupe', 'plain', 450_000_000],
  ['keeps replays free on a generic vendor configured with dedupes_idempotency_key', 'deduping', 90_000_000],
])('%s', async (_n, vendor, spent) => {
  const key = await t.issue({ label: 'orders', vendor, allowed_endpoints: ['POST /v1/orders'], daily_usd_cap: 1000, expires_in: '5m' });
  for (let i = 0; i < 5; i++) {
    const r = await rawRequest(
      t.proxyUrl,
      'POST',
      `/${vendor}/v1/orders`,
      { authorization: `Bearer ${key.token}`, 'content-type': 'application/json', 'idempotency-key': 'order-1' },
      '{"sku":"x"}',
    );
    expect(r.status).toBe(200);
  }
  expect(t.sandboxes.echo!.requests).toHaveLength(5);
  for (const seen of t.sandboxes.echo!.requests) expect(seen.headers['idempotency-key']).toBe('order-1');
  expect(await spend(key.id)).toBe(spent);
});
});
}
