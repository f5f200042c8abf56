import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, CLI, startGateway, stripeKey, type TestGateway } from './harness.js';

// Operator identity: named admin tokens and dashboard sign-ins are attributed, and every
// control-plane change lands in the admin audit trail with actor, address and request id —
// readable over the API and exportable from the CLI.

const ALICE = 'alice_admin_token_0123456789';
const BOB = 'bob_admin_token_0123456789ab';
const ACME = 'acme_admin_token_0123456789a';

let t: TestGateway;

beforeAll(async () => {
  t = await startGateway(() => ({
    admin_tokens: [
      { token: ALICE, name: 'alice' },
      { token: BOB, name: 'bob' },
    ],
    tenants: { acme: { admin_tokens: [{ token: ACME, name: 'acme-ops' }] } },
  }));
});
afterAll(async () => {
  await t?.close();
});

async function as(token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${t.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json().catch(() => null)) as any };
}

async function signIn(token: string) {
  const r = await fetch(`${t.apiUrl}/dashboard/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  if (r.status !== 201) return null;
  return { cookie: r.headers.get('set-cookie')!.split(';')[0]!, csrf: ((await r.json()) as { csrf_token: string }).csrf_token };
}

describe('operator identity and the admin audit trail', { timeout: 60_000 }, () => {
  it('attributes every change, by token or dashboard session, and never records a secret', async () => {
    const issued = await as(ALICE, 'POST', '/v1/keys', { ...stripeKey, label: 'who-1' });
    expect(issued.status).toBe(201);
    expect((await as(BOB, 'DELETE', `/v1/keys/${issued.body.id}`)).status).toBe(200);
    await as(ALICE, 'POST', '/v1/keys', { ...stripeKey, label: 'who-kill-1' });
    const kill = await as(ALICE, 'POST', '/v1/keys/revoke', { label_prefix: 'who-kill-' });
    expect(kill.body.revoked).toBe(1);
    expect((await as(BOB, 'POST', '/v1/budgets', { id: 'team:who', limit_usd: 10, period: 'day' })).status).toBe(201);
    const minted = await as(ALICE, 'POST', '/v1/minting_keys', { vendors: ['stripe'], allowed_endpoints: ['/v1/payment_intents'], max_daily_usd_cap: 5, max_ttl: '10m' });
    expect(minted.status).toBe(201);

    // Bob signs in to the dashboard with his own token; what he does there is his.
    const session = await signIn(BOB);
    expect(session).not.toBeNull();
    const k2 = await as(ALICE, 'POST', '/v1/keys', { ...stripeKey, label: 'who-2' });
    const viaDash = await fetch(`${t.apiUrl}/v1/keys/${k2.body.id}`, { method: 'DELETE', headers: { cookie: session!.cookie, 'x-keyleash-csrf': session!.csrf } });
    expect(viaDash.status).toBe(200);
    // A tenant's token cannot sign in to the dashboard, nor read the trail.
    expect(await signIn(ACME)).toBeNull();
    expect((await as(ACME, 'GET', '/v1/admin/audit')).status).toBe(404);

    const trail = await as(ADMIN_TOKEN, 'GET', '/v1/admin/audit?limit=100');
    expect(trail.status).toBe(200);
    const rows = (trail.body.data as any[]).reverse();
    const summary = rows.map((r) => [r.actor, r.via, r.method, r.route, r.status]);
    expect(summary).toEqual([
      ['alice', 'token', 'POST', '/v1/keys', 201],
      ['bob', 'token', 'DELETE', '/v1/keys/:id', 200],
      ['alice', 'token', 'POST', '/v1/keys', 201],
      ['alice', 'token', 'POST', '/v1/keys/revoke', 200],
      ['bob', 'token', 'POST', '/v1/budgets', 201],
      ['alice', 'token', 'POST', '/v1/minting_keys', 201],
      ['bob', 'dashboard', 'POST', '/dashboard/session', 201],
      ['alice', 'token', 'POST', '/v1/keys', 201],
      ['bob', 'dashboard', 'DELETE', '/v1/keys/:id', 200],
    ]);
    expect(rows[1]).toMatchObject({ target: issued.body.id, ip: '127.0.0.1', tenant_id: 'default' });
    expect(rows[3].detail).toEqual({ filter: { label_prefix: 'who-kill-' }, matched: 1, revoked: 1 });
    expect(rows[4].target).toBe('team:who');
    expect(rows[5].target).toBe(minted.body.id);
    for (const r of rows) expect(r.request_id).toMatch(/^req_[0-9a-f]{32}$/);
    const text = JSON.stringify(trail.body);
    for (const secret of [ALICE, BOB, issued.body.token, minted.body.secret]) expect(text).not.toContain(secret);

    expect((await as(ADMIN_TOKEN, 'GET', '/v1/admin/audit?actor=bob')).body.data).toHaveLength(4);
    expect((await as(ADMIN_TOKEN, 'GET', '/v1/admin/audit?since=yesterday')).status).toBe(400);
  });

  it('keyleash audit admin lists and exports the trail', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string }>((resolve) =>
        execFile(process.execPath, [CLI, 'audit', 'admin', ...args], { env: { ...process.env, KEYLEASH_API_URL: t.apiUrl, KEYLEASH_ADMIN_TOKEN: ADMIN_TOKEN, NO_COLOR: '1' } }, (err, stdout) =>
          resolve({ code: err ? 1 : 0, stdout }),
        ),
      );
    const nd = await run(['--format', 'ndjson', '--actor', 'alice']);
    expect(nd.code).toBe(0);
    const lines = nd.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThanOrEqual(5);
    expect(lines.every((l) => l.actor === 'alice' && l.object === 'admin_audit_record')).toBe(true);
    const csv = await run(['--format', 'csv']);
    expect(csv.stdout.split('\n')[0]).toBe('time,id,tenant_id,actor,via,ip,request_id,method,route,target,status,detail');
    const human = await run(['--actor', 'bob']);
    expect(human.stdout).toMatch(/bob \(dashboard, 127\.0\.0\.1\)\s+DELETE \/v1\/keys\/:id/);
  });
});
