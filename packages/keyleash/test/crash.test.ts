import Database from 'better-sqlite3';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET, startGatewayProcess } from './harness.js';

// A real gateway process, killed with SIGKILL mid-traffic and restarted on the same store.

const API_PORT = 18_000 + Math.floor(Math.random() * 1000);
const PROXY_PORT = API_PORT + 1000;
const api = `http://127.0.0.1:${API_PORT}`;
const proxy = `http://127.0.0.1:${PROXY_PORT}`;

let sandbox: StripeSandbox;
let dir: string;
let configPath: string;

beforeAll(async () => {
  sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
  const url = await sandbox.listen();
  // Every call sits at the vendor a while, so a kill always catches some mid-flight.
  sandbox.respond = () => ({ status: 200, body: { object: 'payment_intent' }, delayMs: 150 });
  dir = mkdtempSync(join(tmpdir(), 'keyleash-crash-'));
  configPath = join(dir, 'keyleash.yaml');
  writeFileSync(
    configPath,
    JSON.stringify({
      admin_token: ADMIN_TOKEN,
      listen: { api: { port: API_PORT }, proxy: { port: PROXY_PORT } },
      store: { path: join(dir, 'store.sqlite') },
      proxy: { stale_reservation_after: '1s' },
      vendors: { stripe: { base_url: url, test_secret: '${STRIPE_SECRET}' } },
      log_level: 'warn',
    }),
  );
});

afterAll(async () => {
  await sandbox.close();
  rmSync(dir, { recursive: true, force: true });
});

function startProcess(): Promise<ChildProcess> {
  return startGatewayProcess({ config: configPath, readyUrl: `${proxy}/readyz`, env: { STRIPE_SECRET: STRIPE_TEST_SECRET } });
}

function call(token: string): Promise<number> {
  return fetch(`${proxy}/v1/payment_intents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ amount: 100, currency: 'usd' }),
  }).then(
    (r) => r.status,
    () => 0, // connection dropped by the kill
  );
}

describe('crash safety', () => {
  it('keeps every charge across a SIGKILL mid-traffic and never overshoots the cap', async () => {
    let child = await startProcess();
    const issued = await fetch(`${api}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ label: 'crash', vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 40, expires_in: '10m' }),
    });
    const key = (await issued.json()) as { id: string; token: string };

    // $1 calls on a $40 key: 30 in flight when the process dies.
    const inflight = Array.from({ length: 30 }, () => call(key.token));
    while (sandbox.requests.length < 20) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const before = await Promise.all(inflight);
    const reachedVendorBeforeKill = sandbox.requests.length;
    expect(before.filter((s) => s === 0).length).toBeGreaterThan(0); // some calls really were cut off

    child = await startProcess();
    try {
      // Every request the vendor saw is charged, answered or not.
      const view = (await (await fetch(`${api}/v1/keys/${key.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
        spend_today_micros: number;
      };
      expect(view.spend_today_micros).toBeGreaterThanOrEqual(reachedVendorBeforeKill * 1_000_000);

      // Spend the rest: the vendor never sees more than the cap allows in total.
      const after = await Promise.all(Array.from({ length: 60 }, () => call(key.token)));
      expect(after.filter((s) => s === 200).length).toBeGreaterThan(0);
      expect(after.filter((s) => s === 429).length).toBeGreaterThan(0);
      expect(sandbox.requests.length).toBeLessThanOrEqual(40);

      // Reservations the crash left open are closed at their estimate, not dropped.
      await new Promise((r) => setTimeout(r, 2_500));
      const db = new Database(join(dir, 'store.sqlite'), { readonly: true });
      try {
        const states = db.prepare('SELECT state, COUNT(*) AS n FROM reservations GROUP BY state').all() as Array<{ state: string; n: number }>;
        const byState = Object.fromEntries(states.map((s) => [s.state, s.n]));
        expect(byState.reserved ?? 0).toBe(0);
        expect(byState.unknown ?? 0).toBeGreaterThan(0);
        const seenIds = sandbox.requests.map((r) => r.headers['x-keyleash-request-id']);
        const reserved = new Set(
          (db.prepare('SELECT request_id FROM reservations').all() as Array<{ request_id: string }>).map((r) => r.request_id),
        );
        for (const id of seenIds) expect(reserved.has(id as string)).toBe(true);
        const total = db.prepare("SELECT SUM(final_micros) AS s FROM reservations WHERE state != 'released'").get() as { s: number };
        expect(total.s).toBeLessThanOrEqual(40_000_000);
        expect(total.s).toBeGreaterThanOrEqual(sandbox.requests.length * 1_000_000);
      } finally {
        db.close();
      }
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }, 60_000);
});
