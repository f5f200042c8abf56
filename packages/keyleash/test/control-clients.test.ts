import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, rawRequest, startGateway, STRIPE_TEST_SECRET, stripeKey, type TestGateway } from './harness.js';

// What real HTTP clients send the control API: empty bodies under any Content-Type on routes that
// take none, and retried issuance with an Idempotency-Key.

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t?.close();
});

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
let seq = 0;
const uniq = (p: string) => `${p}-${Date.now().toString(36)}-${(seq++).toString(36)}`;

/** Header shapes HTTP wrappers send with no body: declared empty, or chunked with nothing in it. */
const SHAPES: Array<[string, Record<string, string>]> = [
  ['no Content-Type', { 'content-length': '0' }],
  ['application/json, length 0', { 'content-type': 'application/json', 'content-length': '0' }],
  ['application/json; charset=utf-8', { 'content-type': 'application/json; charset=utf-8', 'content-length': '0' }],
  ['form encoding', { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '0' }],
  ['text/plain', { 'content-type': 'text/plain', 'content-length': '0' }],
  ['octet-stream', { 'content-type': 'application/octet-stream', 'content-length': '0' }],
  ['a malformed Content-Type', { 'content-type': 'json', 'content-length': '0' }],
  ['application/json, chunked and empty', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }],
  ['form encoding, chunked and empty', { 'content-type': 'application/x-www-form-urlencoded', 'transfer-encoding': 'chunked' }],
];

/** Routes that read a JSON body (they answer an empty one 400 invalid_json). */
const BODY_ROUTES = new Set(['POST /v1/keys', 'POST /v1/keys/revoke', 'POST /v1/budgets', 'PATCH /v1/budgets/{id}', 'POST /v1/minting_keys']);

describe('empty bodies on the control API', () => {
  it('every route that takes no body answers the same whatever header shape an empty body comes with', async () => {
    const doc = (await t.admin('GET', '/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
    const key = await t.issue({ ...stripeKey, label: uniq('bodies') });
    const mk = await t.admin('POST', '/v1/minting_keys', { vendors: ['stripe'], allowed_endpoints: ['/v1/customers'] });
    expect(mk.status, mk.text).toBe(201);
    const newBudget = async () => {
      const id = uniq('bodies');
      const b = await t.admin('POST', '/v1/budgets', { id, limit_usd: 5, period: 'day' });
      expect(b.status, b.text).toBe(201);
      return id;
    };
    const budget = await newBudget();
    // A live tail never ends; its route takes no body like the others (GET).
    const routes = Object.entries(doc.paths)
      .filter(([template]) => template !== '/v1/audit/stream')
      .flatMap(([template, item]) =>
        Object.keys(item)
          .filter((m) => ['get', 'post', 'delete', 'patch', 'put'].includes(m))
          .map((method) => [method, template] as const),
      )
      .filter(([method, template]) => !BODY_ROUTES.has(`${method.toUpperCase()} ${template}`))
      // Revocations last: a revoked minting key cannot be rotated.
      .sort(([a], [b]) => Number(a === 'delete') - Number(b === 'delete'));
    let checked = 0;
    for (const [method, template] of routes) {
      {
        const route = `${method.toUpperCase()} ${template}`;
        for (const [shape, headers] of SHAPES) {
          let id = template.startsWith('/v1/minting_keys') ? mk.body.id : template.startsWith('/v1/budgets') ? budget : key.id;
          // Deleting a budget is not idempotent: each shape deletes its own.
          if (route === 'DELETE /v1/budgets/{id}') id = await newBudget();
          const path = template.replace('{id}', encodeURIComponent(id));
          const r = await rawRequest(t.apiUrl, method.toUpperCase(), path, { ...auth, ...headers }, headers['transfer-encoding'] ? '' : undefined);
          expect(r.status, `${route} with ${shape}: ${r.text.slice(0, 200)}`).toBeLessThan(300);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(20 * SHAPES.length);
    // The key really was revoked by the DELETEs above.
    expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.status).toBe('revoked');
  });

  it('routes that need a body still answer an empty one 400 invalid_json, declared or chunked', async () => {
    for (const path of ['/v1/keys', '/v1/keys/revoke', '/v1/budgets', '/v1/minting_keys']) {
      const shapes: Array<Record<string, string>> = [
        { 'content-type': 'application/json', 'content-length': '0' },
        { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      ];
      for (const headers of shapes) {
        const r = await rawRequest(t.apiUrl, 'POST', path, { ...auth, ...headers }, headers['transfer-encoding'] ? '' : undefined);
        expect(r.status, `${path}: ${r.text}`).toBe(400);
        expect(r.body.code).toBe('invalid_json');
      }
    }
  });

  it('a body no parser knows is still 415 on a route that needs JSON', async () => {
    const r = await rawRequest(t.apiUrl, 'POST', '/v1/keys', { ...auth, 'content-type': 'application/x-www-form-urlencoded' }, 'vendor=stripe');
    expect(r.status).toBe(415);
    expect(r.body.code).toBe('unsupported_media_type');
  });
});

describe('idempotent issuance', () => {
  const issue = (body: unknown, idem?: string) =>
    rawRequest(
      t.apiUrl,
      'POST',
      '/v1/keys',
      { ...auth, 'content-type': 'application/json', ...(idem !== undefined ? { 'idempotency-key': idem } : {}) },
      JSON.stringify(body),
    );
  const count = async (label: string) => (await t.admin('GET', `/v1/keys?label_prefix=${encodeURIComponent(label)}&limit=100`)).body.data.length;

  it('a retry with the same Idempotency-Key and body answers the same key and token, and issues nothing new', async () => {
    const label = uniq('idem');
    const body = { ...stripeKey, label };
    const first = await issue(body, `idem-${label}`);
    expect(first.status, first.text).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    // The same JSON, keys in another order.
    const reordered = Object.fromEntries(Object.entries(body).reverse());
    const again = await issue(reordered, `idem-${label}`);
    expect(again.status, again.text).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body.id).toBe(first.body.id);
    expect(again.body.token).toBe(first.body.token);
    expect(again.body.expires_at).toBe(first.body.expires_at);
    expect(await count(label)).toBe(1);
    // The replayed token is the working one.
    const call = await t.proxy('/stripe/v1/customers', { method: 'GET', token: again.body.token });
    expect(call.status, call.text).toBe(200);
  });

  it('concurrent retries make one key', async () => {
    const label = uniq('idem-race');
    const answers = await Promise.all(Array.from({ length: 8 }, () => issue({ ...stripeKey, label }, `race-${label}`)));
    for (const a of answers) expect(a.status, a.text).toBe(201);
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    expect(new Set(answers.map((a) => a.body.token)).size).toBe(1);
    expect(await count(label)).toBe(1);
  });

  it('the same Idempotency-Key with a different body is 400 idempotency_key_reused and issues nothing', async () => {
    const label = uniq('idem-diff');
    expect((await issue({ ...stripeKey, label }, `diff-${label}`)).status).toBe(201);
    const r = await issue({ ...stripeKey, label, daily_usd_cap: 5 }, `diff-${label}`);
    expect(r.status, r.text).toBe(400);
    expect(r.body.code).toBe('idempotency_key_reused');
    expect(r.body.param).toBe('Idempotency-Key');
    expect(r.body.token).toBeUndefined();
    expect(await count(label)).toBe(1);
  });

  it('different Idempotency-Keys, or none, issue different keys', async () => {
    const label = uniq('idem-many');
    const a = await issue({ ...stripeKey, label }, `a-${label}`);
    const b = await issue({ ...stripeKey, label }, `b-${label}`);
    const c = await issue({ ...stripeKey, label });
    expect(new Set([a.body.id, b.body.id, c.body.id]).size).toBe(3);
    expect(await count(label)).toBe(3);
  });

  it('a malformed Idempotency-Key is 400 invalid_request naming it', async () => {
    const r = await issue({ ...stripeKey, label: uniq('idem-bad') }, 'x'.repeat(256));
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_request');
    expect(r.body.param).toBe('Idempotency-Key');
  });

  it('is documented in the OpenAPI document', async () => {
    const doc = (await t.admin('GET', '/openapi.json')).body;
    const op = doc.paths['/v1/keys'].post;
    expect(op.parameters.map((p: { name: string }) => p.name)).toContain('Idempotency-Key');
    expect(op.responses['201'].headers['Idempotent-Replayed']).toBeDefined();
  });
});

describe('refusals tell every official SDK not to retry', () => {
  it('the Stripe sandbox answers a repeated Idempotency-Key with the first object, and other parameters with idempotency_error', async () => {
    // Straight to the sandbox: through the proxy, keyleash itself refuses a reused key first.
    const idem = uniq('pi');
    const send = (amount: number) =>
      rawRequest(
        t.sandbox.url,
        'POST',
        '/v1/payment_intents',
        { authorization: `Bearer ${STRIPE_TEST_SECRET}`, 'content-type': 'application/x-www-form-urlencoded', 'idempotency-key': idem },
        `amount=${amount}&currency=usd`,
      );
    const first = await send(500);
    const again = await send(500);
    expect(first.status, first.text).toBe(200);
    expect(again.status, again.text).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    expect(again.headers['idempotent-replayed']).toBe('true');
    const other = await send(700);
    expect(other.status, other.text).toBe(400);
    expect(other.body.error.type).toBe('idempotency_error');
    // Without the header every POST is a new object.
    const plain = await rawRequest(t.sandbox.url, 'POST', '/v1/payment_intents', { authorization: `Bearer ${STRIPE_TEST_SECRET}`, 'content-type': 'application/x-www-form-urlencoded' }, 'amount=500&currency=usd');
    expect(plain.body.id).not.toBe(first.body.id);
  });

  it('a spent cap carries Stripe-Should-Retry: false and x-should-retry: false; a rate limit carries neither', async () => {
    const k = await t.issue({ ...stripeKey, label: uniq('noretry'), daily_usd_cap: 0 });
    const r = await t.proxy('/stripe/v1/payment_intents', { method: 'POST', token: k.token, body: { amount: 5000, currency: 'usd' } });
    expect(r.status, r.text).toBe(429);
    expect(r.body.code).toBe('cap_exhausted');
    expect(r.headers.get('stripe-should-retry')).toBe('false');
    expect(r.headers.get('x-should-retry')).toBe('false');
    const limited = await t.issue({ ...stripeKey, label: uniq('noretry-rate'), rate_limit: { requests: 1, per: 'hour' } });
    await t.proxy('/stripe/v1/customers', { method: 'GET', token: limited.token });
    const second = await t.proxy('/stripe/v1/customers', { method: 'GET', token: limited.token });
    expect(second.body.code).toBe('rate_limited');
    expect(second.headers.get('x-should-retry')).toBeNull();
    expect(second.headers.get('stripe-should-retry')).toBeNull();
  });
});
