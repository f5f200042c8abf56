import Database from 'better-sqlite3';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET, freePort, startGatewayProcess } from './harness.js';

// Another process holding the SQLite write lock never freezes the gateway's event loop: health
// answers while calls wait for the lock, a call that waits too long gets 503 store_unavailable,
// and the cap stays exact afterwards. (The lock is held by this test process, a second
// connection on the gateway's file, while the gateway runs as its own process.)

let sandbox: StripeSandbox;
let dir: string;
let file: string;
let child: ChildProcess;
let api = '';
let proxy = '';

beforeAll(async () => {
  sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
  const url = await sandbox.listen();
  dir = mkdtempSync(join(tmpdir(), 'keyleash-sqlite-lock-'));
  file = join(dir, 'store.sqlite');
  const [apiPort, proxyPort] = [await freePort(), await freePort()];
  api = `http://127.0.0.1:${apiPort}`;
  proxy = `http://127.0.0.1:${proxyPort}`;
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      admin_token: ADMIN_TOKEN,
      listen: { api: { port: apiPort }, proxy: { port: proxyPort } },
      store: { path: file },
      vendors: { stripe: { base_url: url, test_secret: STRIPE_TEST_SECRET } },
      log_level: 'fatal',
    }),
  );
  child = await startGatewayProcess({ config, readyUrl: `${proxy}/readyz` });
});

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  await sandbox?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A $1 Stripe call; resolves to its status and error code. */
const call = (token: string) =>
  fetch(`${proxy}/v1/payment_intents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'amount=100&currency=usd',
  }).then(async (r) => ({ status: r.status, code: ((await r.json()) as { error?: { code?: string } }).error?.code ?? null }));

/** Holds the write lock on the gateway's file from another connection until the returned release. */
function holdLock(): () => void {
  const db = new Database(file);
  db.exec('BEGIN IMMEDIATE');
  return () => {
    db.exec('COMMIT');
    db.close();
  };
}

describe('another process holding the SQLite lock', () => {
  it('never freezes the event loop: health answers, calls wait or get 503, caps stay exact after', async () => {
    const issued = await fetch(`${api}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ label: 'lock', vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 5, expires_in: '10m' }),
    });
    const key = (await issued.json()) as { id: string; token: string };

    // 1. A short hold: calls wait for the lock while health and readiness keep answering.
    let release = holdLock();
    let settled = 0;
    const waiting = Array.from({ length: 3 }, () => call(key.token).finally(() => settled++));
    // Let the calls reach the gateway and queue on the lock.
    await new Promise((r) => setTimeout(r, 300));
    const health = await fetch(`${proxy}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${proxy}/readyz`);
    expect(ready.status).toBe(200);
    // Answered while every call was still held back by the lock: nothing could be reserved yet.
    expect(settled).toBe(0);
    expect(sandbox.requests.length).toBe(0);
    release();
    const first = await Promise.all(waiting);
    for (const r of first) expect([200, 503]).toContain(r.status);

    // 2. A hold longer than a write may wait: the calls are refused with 503 while the lock is
    // still held (nothing can be reserved without it), and health answers meanwhile.
    release = holdLock();
    const sentBefore = sandbox.requests.length;
    const refused = Array.from({ length: 2 }, () => call(key.token));
    await new Promise((r) => setTimeout(r, 100));
    expect((await fetch(`${proxy}/healthz`)).status).toBe(200);
    const second = await Promise.all(refused);
    expect(second).toEqual([
      { status: 503, code: 'store_unavailable' },
      { status: 503, code: 'store_unavailable' },
    ]);
    expect(sandbox.requests.length).toBe(sentBefore);
    release();

    // 3. The cap is exact afterwards: exactly $5 of $1 calls went through in all.
    const rest: Array<{ status: number; code: string | null }> = [];
    for (let i = 0; i < 10; i++) rest.push(await call(key.token));
    const ok = [...first, ...rest].filter((r) => r.status === 200).length;
    expect(ok).toBe(5);
    expect(rest.filter((r) => r.status !== 200).every((r) => r.code === 'cap_exhausted')).toBe(true);
    expect(sandbox.requests.length).toBe(5);
    const view = (await (await fetch(`${api}/v1/keys/${key.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
      spend_today_micros: number;
    };
    expect(view.spend_today_micros).toBe(5_000_000);
    const db = new Database(file, { readonly: true });
    try {
      const open = db.prepare("SELECT COUNT(*) AS n FROM reservations WHERE state = 'reserved'").get() as { n: number };
      expect(open.n).toBe(0);
    } finally {
      db.close();
    }
  }, 30_000);
});
