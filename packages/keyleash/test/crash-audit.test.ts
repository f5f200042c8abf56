import Database from 'better-sqlite3';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { backends } from './backends.js';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET, freePort, startGatewayProcess } from './harness.js';

// SIGKILL between a settlement and its answer, with other calls answered just before: every
// answered call's audit record is in the store, and so is the record of every call whose
// settlement is (the record commits with the settlement, before the answer).

const here = dirname(fileURLToPath(import.meta.url));
const FAILPOINT = join(here, 'failpoint.mjs');

for (const backend of await backends('crash_audit')) {
describe.skipIf(backend.skip)(`crash between settlement and answer (${backend.name})`, () => {
  let storeConfig: Record<string, unknown> | null = null;
  let pgClient: pg.Client | null = null;
  let sandbox: StripeSandbox;
  let dir: string;
  let config: string;
  let api = '';
  let proxy = '';

  beforeAll(async () => {
    sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
    const url = await sandbox.listen();
    dir = mkdtempSync(join(tmpdir(), 'keyleash-crash-audit-'));
    storeConfig = backend.store();
    if (storeConfig) {
      pgClient = new pg.Client({ connectionString: storeConfig.url as string, options: `-c search_path=${storeConfig.schema as string}` });
      await pgClient.connect();
    }
    const [apiPort, proxyPort] = [await freePort(), await freePort()];
    api = `http://127.0.0.1:${apiPort}`;
    proxy = `http://127.0.0.1:${proxyPort}`;
    config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        admin_token: ADMIN_TOKEN,
        listen: { api: { port: apiPort }, proxy: { port: proxyPort } },
        store: storeConfig ?? { path: join(dir, 'store.sqlite') },
        vendors: { stripe: { base_url: url, test_secret: STRIPE_TEST_SECRET } },
        log_level: 'fatal',
      }),
    );
  });

  afterAll(async () => {
    await pgClient?.end();
    await backend.cleanup(storeConfig);
    await sandbox.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function rows(sql: string): Promise<Array<Record<string, unknown>>> {
    if (pgClient) return (await pgClient.query(sql)).rows;
    const db = new Database(join(dir, 'store.sqlite'), { readonly: true });
    try {
      return db.prepare(sql).all() as Array<Record<string, unknown>>;
    } finally {
      db.close();
    }
  }

  it('finds the audit record of every answered call, and of every settled one', async () => {
    // Killed the 12th time a settlement commits, before that call is answered.
    const child: ChildProcess = await startGatewayProcess({
      config,
      readyUrl: `${proxy}/readyz`,
      env: { KEYLEASH_FAILPOINT: 'settled', KEYLEASH_FAILPOINT_AFTER: '12' },
      nodeArgs: ['--import', FAILPOINT],
    });
    const exited = new Promise((r) => child.once('exit', r));
    const key = (await (
      await fetch(`${api}/v1/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ label: 'crash-audit', vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 100, expires_in: '10m' }),
      })
    ).json()) as { id: string; token: string };

    const answered: string[] = [];
    const call = () =>
      fetch(`${proxy}/v1/payment_intents`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.token}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'amount=100&currency=usd',
      }).then(
        async (r) => {
          await r.arrayBuffer();
          if (r.status === 200) answered.push(r.headers.get('x-keyleash-request-id')!);
        },
        () => undefined, // cut off by the kill
      );
    // Several waves of concurrent calls: the kill lands while others are being answered.
    for (let wave = 0; wave < 6 && child.exitCode === null && child.signalCode === null; wave++) {
      await Promise.all(Array.from({ length: 4 }, call));
    }
    await exited;
    expect(child.signalCode).toBe('SIGKILL');
    expect(answered.length).toBeGreaterThan(0);
    expect(answered.length).toBeLessThan(12);

    const audited = new Set((await rows('SELECT request_id FROM audit')).map((r) => r.request_id as string));
    for (const id of answered) expect(audited.has(id), `answered call ${id} has no audit record`).toBe(true);
    // The call killed between its settlement and its answer has its record too: every ended
    // reservation has one.
    const ended = (await rows("SELECT request_id FROM reservations WHERE state <> 'reserved'")).map((r) => r.request_id as string);
    expect(ended.length).toBeGreaterThanOrEqual(12);
    for (const id of ended) expect(audited.has(id), `settled call ${id} has no audit record`).toBe(true);
  }, 30_000);
});
}
