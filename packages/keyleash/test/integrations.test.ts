import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startGateway, STRIPE_TEST_SECRET, type TestGateway } from './harness.js';

// The integrations CONTRACT.md promises keep working, written as their users write them: plain
// HTTP calls to the control API and the proxy, nothing from keyleash imported.

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t.close();
});

async function issueKey(body: Record<string, unknown>): Promise<Response> {
  return fetch(`${t.apiUrl}/v1/keys`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function revokeKey(id: string): Promise<Response> {
  return fetch(`${t.apiUrl}/v1/keys/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
}

/** A Flask-shaped app: before_request issues a key into `g`, teardown_request revokes it. */
function flaskStyleApp(cap: number, seen: { keyIds: string[] }): Server {
  return createServer(async (req, res) => {
    const g: { vault_key?: string; key_id?: string } = {};
    // before_request
    const issued = await issueKey({
      label: `flask-u42-${req.url}`,
      vendor: 'stripe',
      allowed_endpoints: ['/v1/payment_intents', '/v1/payment_intents/*'],
      daily_usd_cap: cap,
      expires_in: '5m',
    });
    const k = (await issued.json()) as { id: string; token: string };
    g.vault_key = k.token;
    g.key_id = k.id;
    seen.keyIds.push(k.id);
    try {
      // the tool function
      const r = await fetch(`${t.proxyUrl}/stripe/v1/payment_intents`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${g.vault_key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ amount: 5000, currency: 'usd', customer: 'cus_123' }),
      });
      const body = (await r.json()) as { code?: string; id?: string };
      if (r.status === 429 && body.code === 'cap_exhausted') {
        res.writeHead(402, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'spend limit reached for this request' }));
        return;
      }
      res.writeHead(r.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ payment_intent: body.id }));
    } finally {
      // teardown_request
      await revokeKey(g.key_id);
    }
  });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('Flask: a key per request, revoked at teardown', () => {
  it('issues, calls Stripe through the proxy, and revokes', async () => {
    const seen = { keyIds: [] as string[] };
    const app = flaskStyleApp(1000, seen);
    const url = await listen(app);
    try {
      const r = await fetch(`${url}/charge`);
      expect(r.status).toBe(200);
      expect(((await r.json()) as { payment_intent: string }).payment_intent).toMatch(/^pi_/);
      const key = await t.admin('GET', `/v1/keys/${seen.keyIds[0]}`);
      expect(key.body.status).toBe('revoked');
      expect(key.body.spend_today_usd).toBe(50);
      expect(t.sandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
    } finally {
      app.close();
    }
  });

  it("turns the proxy's 429 cap_exhausted into the app's own 402", async () => {
    const before = t.sandbox.requests.length;
    const app = flaskStyleApp(10, { keyIds: [] });
    const url = await listen(app);
    try {
      const r = await fetch(`${url}/charge`);
      expect(r.status).toBe(402);
      expect(t.sandbox.requests.length).toBe(before);
    } finally {
      app.close();
    }
  });
});

describe('Celery: a 30-minute key per task, revoked in finally', () => {
  it('issues at task start and revokes even when the task fails', async () => {
    let id = '';
    const task = async () => {
      const r = await issueKey({ label: 'celery-task-1', vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 50, expires_in: '30m' });
      const k = (await r.json()) as { id: string; token: string; expires_at: string; created_at: string };
      id = k.id;
      expect(Date.parse(k.expires_at) - Date.parse(k.created_at)).toBe(30 * 60 * 1000);
      try {
        throw new Error('task failed midway');
      } finally {
        await revokeKey(k.id);
      }
    };
    await expect(task()).rejects.toThrow('task failed midway');
    expect((await t.admin('GET', `/v1/keys/${id}`)).body.status).toBe('revoked');
  });
});

describe('Go: middleware that expects exactly 201 and defers revoke', () => {
  it('answers 201 on issue, 200 on revoke, and the revoked key stops at once', async () => {
    const r = await issueKey({ label: 'go-mw', vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 100, expires_in: '5m' });
    expect(r.status).toBe(201);
    const k = (await r.json()) as { id: string; token: string };
    const call = () =>
      fetch(`${t.proxyUrl}/stripe/v1/payment_intents`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${k.token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ amount: 100, currency: 'usd' }),
      });
    expect((await call()).status).toBe(200);
    expect((await revokeKey(k.id)).status).toBe(200);
    const after = await call();
    expect(after.status).toBe(401);
    expect(((await after.json()) as { code: string }).code).toBe('key_revoked');
    expect((await revokeKey(k.id)).status).toBe(200);
    expect((await revokeKey('key_doesnotexist')).status).toBe(404);
  });
});

describe('Temporal: one key per activity, TTL = timeout + 20%', () => {
  it('accepts a TTL given as seconds', async () => {
    const activityTimeout = 50;
    const r = await issueKey({ label: 'activity-1', vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 5, expires_in: Math.ceil(activityTimeout * 1.2) });
    expect(r.status).toBe(201);
    const k = (await r.json()) as { expires_at: string; created_at: string };
    expect(Date.parse(k.expires_at) - Date.parse(k.created_at)).toBe(60_000);
  });
});

describe('tests of the integrations: test-mode keys reach only the test environment', () => {
  it('forwards a test key with the test credential', async () => {
    const r = await issueKey({ label: 'ci', vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 5, expires_in: '5m', mode: 'test' });
    const k = (await r.json()) as { token: string; mode: string };
    expect(k.mode).toBe('test');
    await fetch(`${t.proxyUrl}/v1/payment_intents`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${k.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ amount: 100, currency: 'usd' }),
    });
    expect(t.sandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
  });
});
