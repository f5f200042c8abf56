import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, ALL_SECRETS, rawRequest, startGateway, stripeKey, type TestGateway } from './harness.js';

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
});
