import Database from 'better-sqlite3';
import { execFile, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../src/store/sqlite/migrations.js';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { ADMIN_TOKEN, CLI, freePort, STRIPE_TEST_SECRET, startGatewayProcess } from './harness.js';

// Backup while serving, revoke, restore: the revoked key stays revoked and spend is not undone.
// Retention exports before it purges and leaves a log that still verifies. A binary refuses a
// store written by a newer one. All against real `keyleash` processes.

let dir: string;
let sandbox: StripeSandbox;
let config: string;
let store: string;
let api: string;
let proxy: string;

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, KEYLEASH_CONFIG: config, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function serve(): Promise<ChildProcess> {
  return startGatewayProcess({ config, readyUrl: `${proxy}/readyz` });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

const admin = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json()) as any };
};

const pay = async (token: string) =>
  (
    await fetch(`${proxy}/stripe/v1/payment_intents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'amount=100&currency=usd',
    })
  ).status;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'keyleash-backup-'));
  sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
  await sandbox.listen();
  const [apiPort, proxyPort] = [await freePort(), await freePort()];
  api = `http://127.0.0.1:${apiPort}`;
  proxy = `http://127.0.0.1:${proxyPort}`;
  store = join(dir, 'keyleash.sqlite');
  config = join(dir, 'keyleash.json');
  writeFileSync(
    config,
    JSON.stringify({
      admin_token: ADMIN_TOKEN,
      listen: { api: { port: apiPort }, proxy: { port: proxyPort } },
      store: { path: store },
      vendors: { stripe: { base_url: sandbox.url, test_secret: STRIPE_TEST_SECRET } },
    }),
  );
});

afterAll(async () => {
  await sandbox?.close();
  rmSync(dir, { recursive: true, force: true });
});

const newKey = async (label: string) =>
  (await admin('POST', '/v1/keys', { label, vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 1000, expires_in: '1h' })).body as { id: string; token: string };

describe('backup, restore, retention and the downgrade guard', { timeout: 120_000 }, () => {
  it('a backup taken under load, restored after a revocation, never brings the revoked key back', async () => {
    let child = await serve();
    let a: { id: string; token: string };
    let b: { id: string; token: string };
    try {
      a = await newKey('a');
      b = await newKey('b');
      expect(await pay(a.token)).toBe(200);
      // The backup runs while calls keep landing.
      let loading = true;
      const load = (async () => {
        while (loading) expect(await pay(b.token)).toBe(200);
      })();
      const backup = await cli(['backup', '--to', join(dir, 'backup.sqlite')]);
      loading = false;
      await load;
      expect(backup.code, backup.stderr).toBe(0);
      expect(backup.stdout).toMatch(/backed up .* schema v\d+, 2 keys/);
      expect((await cli(['backup', '--to', join(dir, 'backup.sqlite')])).code).toBe(2); // never overwrites

      // After the backup: A is revoked, B spends more.
      expect((await admin('DELETE', `/v1/keys/${a.id}`)).status).toBe(200);
      for (let i = 0; i < 3; i++) expect(await pay(b.token)).toBe(200);
    } finally {
      await stop(child);
    }
    const spentBefore = (new Database(store, { readonly: true }).prepare('SELECT SUM(spent_micros) AS s FROM key_spend WHERE key_id = ?').get(b.id) as { s: number }).s;

    const restored = await cli(['restore', '--from', join(dir, 'backup.sqlite')]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stdout).toContain('1 key revocation(s)');
    expect(restored.stdout).toMatch(/kept at .*before-restore-/);

    child = await serve();
    try {
      expect(await pay(a.token)).toBe(401);
      const key = await admin('GET', `/v1/keys/${a.id}`);
      expect(key.body.status).toBe('revoked');
      const bView = await admin('GET', `/v1/keys/${b.id}`);
      expect(Math.round(bView.body.spend_today_usd * 1e6)).toBe(spentBefore);
      // The audit log lost nothing written after the backup, and still verifies.
      expect((await cli(['audit', 'verify'])).code).toBe(0);
    } finally {
      await stop(child);
    }
  });

  it('refuses to restore with no current store to carry revocations from, unless forced', async () => {
    const elsewhere = join(dir, 'fresh', 'keyleash.sqlite');
    const refused = await cli(['restore', '--from', join(dir, 'backup.sqlite')], { KEYLEASH_DATA: elsewhere });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--force');
    expect(existsSync(elsewhere)).toBe(false);
    expect((await cli(['restore', '--from', join(dir, 'backup.sqlite'), '--force'], { KEYLEASH_DATA: elsewhere })).code).toBe(0);
    expect(existsSync(elsewhere)).toBe(true);
  });

  it('retention exports, then purges, and the rest of the log still verifies', async () => {
    const before = (new Database(store, { readonly: true }).prepare('SELECT COUNT(*) AS n FROM audit').get() as { n: number }).n;
    expect(before).toBeGreaterThan(3);
    await new Promise((r) => setTimeout(r, 1100));
    const exportFile = join(dir, 'audit-export.ndjson');
    const r = await cli(['retention', '--older-than', '1s', '--export', exportFile]);
    expect(r.code, r.stderr).toBe(0);
    const lines = readFileSync(exportFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(before);
    expect(lines[0]).toMatchObject({ object: 'audit_record', chain: { seq: 1 } });
    expect((new Database(store, { readonly: true }).prepare('SELECT COUNT(*) AS n FROM audit').get() as { n: number }).n).toBe(0);
    expect((await cli(['retention', '--older-than', '1s', '--export', exportFile])).code).toBe(2); // never overwrites

    // New records after the cut continue their chains; the cut chains still verify.
    const child = await serve();
    try {
      const c = await newKey('c');
      for (let i = 0; i < 3; i++) expect(await pay(c.token)).toBe(200);
    } finally {
      await stop(child);
    }
    const verified = await cli(['audit', 'verify', '--json']);
    expect(verified.code, verified.stdout).toBe(0);
    // And a record deleted after the cut is still found.
    const db = new Database(store);
    db.prepare('DELETE FROM audit WHERE seq = (SELECT MIN(seq) FROM audit)').run();
    db.close();
    expect((await cli(['audit', 'verify', '--json'])).code).toBe(1);
  });

  it('a store written by a newer keyleash is refused by migrate, serve and restore', async () => {
    const newer = join(dir, 'newer.sqlite');
    copyFileSync(store, newer);
    const db = new Database(newer);
    db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(MIGRATIONS.length + 1);
    db.close();
    const env = { KEYLEASH_DATA: newer };
    for (const args of [['migrate'], ['serve'], ['restore', '--from', newer, '--force']]) {
      const r = await cli(args, args[0] === 'restore' ? {} : env);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(`newer than this keyleash knows (${MIGRATIONS.length})`);
    }
  });
});
