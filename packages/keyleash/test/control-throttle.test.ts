import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { ADMIN_TOKEN, startGateway, stripeKey, type TestGateway } from './harness.js';

// Brakes on the control API (issue 21, item 4): failed admin tokens are throttled per client
// address without ever refusing a valid token, and each admin token has an issuance quota.

const SECOND_TOKEN = 'second_admin_token_0123456789';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const backend of await backends('control_throttle')) {
  describe.skipIf(backend.skip)(`control API throttling (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(() => ({
        ...(storeConfig ? { store: storeConfig as never } : {}),
        admin_tokens: [SECOND_TOKEN],
        control: { auth_failure_burst: 5, auth_failures_per_second: 0.2, issue_burst: 4, issue_rate_per_second: 2 },
      }));
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });

    const as = (token: string, method: string, path: string, body?: unknown) =>
      fetch(t.apiUrl + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      }).then(async (r) => ({ status: r.status, headers: r.headers, body: (await r.json()) as any }));
    const countKeys = async () => (await t.admin('GET', '/v1/keys?limit=100')).body.data.length as number;

    it('throttles failed admin tokens from an address with 429 rate_limited, but never a valid token', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await as(`guess_${i}_0123456789abcdef`, 'GET', '/v1/keys')).status);
      expect(statuses).toEqual([401, 401, 401, 401, 401]);
      const throttled = await as('guess_6_0123456789abcdef', 'GET', '/v1/keys');
      expect(throttled.status).toBe(429);
      expect(throttled.body).toMatchObject({ code: 'rate_limited', retry_after: expect.any(Number) });
      expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(JSON.stringify(throttled.body)).not.toContain('guess_6');
      // Failed tokens with a body change nothing, throttled or not.
      const before = await countKeys();
      expect((await as('guess_7_0123456789abcdef', 'POST', '/v1/keys', stripeKey)).status).toBe(429);
      expect(await countKeys()).toBe(before);
      // The same address with a valid token is served at once, every admin token alike.
      expect((await as(ADMIN_TOKEN, 'GET', '/v1/keys')).status).toBe(200);
      expect((await as(SECOND_TOKEN, 'GET', '/v1/keys')).status).toBe(200);
      // Dashboard sign-in shares the same brake: a wrong token is throttled, the right one signs in.
      const wrongLogin = await fetch(`${t.apiUrl}/dashboard/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token: 'guess_8_0123456789abcdef' }),
      });
      expect(wrongLogin.status).toBe(429);
      expect(((await wrongLogin.json()) as any).code).toBe('rate_limited');
      expect(wrongLogin.headers.get('retry-after')).toMatch(/^[1-9][0-9]*$/);
      const login = await fetch(`${t.apiUrl}/dashboard/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token: ADMIN_TOKEN }),
      });
      expect(login.status).toBe(201);
      // Requests with no credential at all are not guesses: still a plain 401.
      expect((await fetch(`${t.apiUrl}/v1/keys`)).status).toBe(401);
    });

    it('refuses key issuance past the admin token\'s quota with 429 and Retry-After, per token, and resumes', async () => {
      const before = await countKeys();
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await as(ADMIN_TOKEN, 'POST', '/v1/keys', { ...stripeKey, label: `quota-${i}` })).status);
      expect(statuses.slice(0, 4)).toEqual([201, 201, 201, 201]);
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(1);
      const refused = await as(ADMIN_TOKEN, 'POST', '/v1/keys', stripeKey);
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({ code: 'rate_limited' });
      const wait = Number(refused.headers.get('retry-after'));
      expect(wait).toBeGreaterThanOrEqual(1);
      expect(await countKeys()).toBe(before + statuses.filter((s) => s === 201).length);
      // Minting keys come out of the same quota.
      expect((await as(ADMIN_TOKEN, 'POST', '/v1/minting_keys', { vendors: ['stripe'], allowed_endpoints: ['/v1/payment_intents'] })).status).toBe(429);
      // Reads and revocations are not issuance.
      expect((await as(ADMIN_TOKEN, 'GET', '/v1/keys')).status).toBe(200);
      // Another admin token has its own quota.
      expect((await as(SECOND_TOKEN, 'POST', '/v1/keys', stripeKey)).status).toBe(201);
      await sleep(wait * 1000 + 100);
      expect((await as(ADMIN_TOKEN, 'POST', '/v1/keys', stripeKey)).status).toBe(201);
    });
  });
}

describe('control API limits by default', () => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startGateway();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('lets 300 keys be issued at once by one token', async () => {
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => t.admin('POST', '/v1/keys', { ...stripeKey, label: `burst-${i}` })));
    expect(results.every((r) => r.status === 201)).toBe(true);
    expect(t.gw.config.control).toEqual({ issue_rate_per_second: 200, issue_burst: 500, auth_failure_burst: 100, auth_failures_per_second: 1 });
  });

});
