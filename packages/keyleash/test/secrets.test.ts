import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, ALL_SECRETS, rawRequest, startGateway, STRIPE_LIVE_SECRET, stripeKey, type TestGateway } from './harness.js';

// Vendor secrets and vault tokens must never reach a response, a log line or the store.

let t: TestGateway;
const seen: string[] = [];
const tokens: string[] = [];

beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t.close();
});

describe('secrets stay secret', () => {
  it('never show a secret or vault token in responses, logs, audit records or the store', async () => {
    const key = await t.issue();
    tokens.push(key.token);
    const live = await t.issue({ ...stripeKey, mode: 'live' });
    tokens.push(live.token);
    seen.push(JSON.stringify({ ...key, token: undefined }));

    // A vendor that echoes the credential it was sent, the way Stripe's 401 names part of the key.
    t.sandbox.respond = (req) =>
      req.path === '/v1/payment_intents/pi_echo'
        ? { status: 401, body: { error: { message: `Invalid API Key provided: ${req.headers.authorization}` } } }
        : undefined;
    const calls = [
      t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 100, currency: 'usd' } }),
      t.proxy('/v1/payment_intents', { token: live.token, body: { amount: 100, currency: 'usd' } }),
      t.proxy('/v1/customers', { token: key.token, method: 'POST', body: {} }),
      t.proxy('/v1/payment_intents', { token: key.token.slice(0, -1) + 'x', body: {} }),
      t.proxy('/v1/payment_intents', { token: ADMIN_TOKEN }),
      t.proxy('/v1/payment_intents', { token: key.token, body: '{bad json' }),
      t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 1.5, currency: 'usd' } }),
    ];
    for (const r of await Promise.all(calls)) seen.push(r.text, JSON.stringify([...r.headers]));
    seen.push((await rawRequest(t.proxyUrl, 'GET', '/v1/payment_intents/../x', { authorization: `Bearer ${key.token}` })).text);
    seen.push((await t.admin('GET', `/v1/keys/${key.id}`)).text);
    seen.push((await t.admin('GET', '/v1/keys?limit=100')).text);
    seen.push((await t.admin('DELETE', `/v1/keys/${key.id}`)).text);
    seen.push((await t.proxy('/v1/payment_intents', { token: key.token })).text);
    const badAdmin = await fetch(`${t.apiUrl}/v1/keys`, { headers: { authorization: `Bearer ${tokens[0]}` } });
    seen.push(await badAdmin.text());
    await t.gw.audit.flush();
    seen.push((await t.admin('GET', '/v1/audit?limit=1000')).text);
    seen.push(...t.logs);

    const db = new Database(join(t.dir, 'keyleash.sqlite'), { readonly: true });
    for (const table of ['keys', 'reservations', 'audit', 'key_spend']) {
      seen.push(JSON.stringify(db.prepare(`SELECT * FROM ${table}`).all()));
    }
    db.close();

    const everything = seen.join('\n');
    expect(everything.length).toBeGreaterThan(1000);
    for (const secret of [...ALL_SECRETS, ...tokens]) {
      expect(everything.includes(secret), `leaked ${secret.slice(0, 10)}…`).toBe(false);
    }
  });

  it('never log, export or expose a secret, vault token, session id or CSRF token through the operator surface', async () => {
    const key = await t.issue({ ...stripeKey, label: 'operator-surface', metadata: { run: 'secrets' } });
    const out: string[] = [];
    await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 100, currency: 'usd' } });
    await t.proxy('/v1/refunds', { token: key.token, method: 'GET' });
    await t.proxy('/v1/payment_intents', { token: ADMIN_TOKEN });

    // Dashboard login with the admin token in the body; then the session and CSRF token in use.
    const login = await fetch(`${t.apiUrl}/dashboard/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: ADMIN_TOKEN }),
    });
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const sessionId = cookie.split('=')[1]!;
    const { csrf_token: csrf } = (await login.json()) as { csrf_token: string };
    await fetch(`${t.apiUrl}/dashboard/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: STRIPE_LIVE_SECRET }) });
    out.push(await (await fetch(`${t.apiUrl}/v1/keys?limit=100`, { headers: { cookie } })).text());
    out.push(await (await fetch(`${t.apiUrl}/v1/keys/revoke`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: '{"all":true}' })).text());
    out.push((await t.admin('POST', '/v1/keys/revoke', { metadata: { run: 'secrets' }, dry_run: true })).text);
    out.push((await t.admin('GET', '/v1/stats/overview')).text);
    out.push((await t.admin('GET', `/v1/keys/${key.id}/spend`)).text);
    out.push((await t.admin('GET', '/v1/vendors')).text);
    out.push((await t.admin('GET', '/v1/audit/export?format=csv')).text);
    out.push((await t.admin('GET', '/v1/audit/export?format=ndjson')).text);
    out.push(await (await fetch(`${t.apiUrl}/metrics`)).text());
    out.push(await (await fetch(`${t.proxyUrl}/metrics`)).text());
    const stream = new AbortController();
    const res = await fetch(`${t.apiUrl}/v1/audit/stream?backfill=50`, { headers: { cookie }, signal: stream.signal });
    const reader = res.body!.getReader();
    let sse = '';
    while (!sse.includes('event: audit')) sse += new TextDecoder().decode((await reader.read()).value);
    stream.abort();
    out.push(sse);
    await fetch(`${t.apiUrl}/v1/keys/${key.id}`, { method: 'DELETE', headers: { cookie, 'x-keyleash-csrf': csrf } });
    await t.gw.audit.flush();

    const answers = out.join('\n');
    const logs = t.logs.join('\n');
    expect(logs).toContain('dashboard session started');
    expect(logs).toContain('proxied call');
    for (const secret of [...ALL_SECRETS, ...tokens, key.token]) {
      expect(answers.includes(secret), `answer leaked ${secret.slice(0, 10)}…`).toBe(false);
      expect(logs.includes(secret), `log leaked ${secret.slice(0, 10)}…`).toBe(false);
    }
    for (const [name, value] of [['session id', sessionId], ['CSRF token', csrf]] as const) {
      expect(logs.includes(value), `log leaked the ${name}`).toBe(false);
    }
  });
});
