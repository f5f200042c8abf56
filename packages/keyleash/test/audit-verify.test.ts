import Database from 'better-sqlite3';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startGateway, stripeKey, type TestGateway, CLI } from './harness.js';

// `keyleash audit verify` finds an edited, a deleted and a reordered audit record.

let t: TestGateway;
let config: string;

async function verify(): Promise<{ code: number; out: { problems: Array<{ problem: string }>; records: number } }> {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'audit', 'verify', '--config', config, '--json']);
    return { code: 0, out: JSON.parse(stdout) };
  } catch (e) {
    const err = e as { code: number; stdout: string };
    return { code: err.code, out: JSON.parse(err.stdout) };
  }
}

function sql(statement: string): void {
  const db = new Database(join(t.dir, 'keyleash.sqlite'));
  try {
    db.exec(statement);
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  t = await startGateway();
  const key = await t.issue(stripeKey);
  for (let i = 0; i < 6; i++) await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 100 + i, currency: 'usd' } });
  await t.proxy('/v1/customers', { token: key.token, method: 'POST', body: {} });
  await t.gw.audit.flush();
  config = join(t.dir, 'verify.json');
  writeFileSync(config, JSON.stringify({ admin_token: ADMIN_TOKEN, store: { path: join(t.dir, 'keyleash.sqlite') } }));
});

afterAll(async () => {
  await t.close();
});

describe('keyleash audit verify', () => {
  it('passes an untouched log', async () => {
    const r = await verify();
    expect(r.code).toBe(0);
    expect(r.out.records).toBe(7);
    expect(r.out.problems).toEqual([]);
  });

  it('finds an edited record', async () => {
    sql("UPDATE audit SET cost_micros = 0 WHERE seq = 3");
    const r = await verify();
    expect(r.code).toBe(1);
    expect(r.out.problems.map((p) => p.problem)).toEqual(['edited']);
    sql('UPDATE audit SET cost_micros = 1020000 WHERE seq = 3');
    expect((await verify()).code).toBe(0);
  });

  it('finds records swapped in place', async () => {
    sql(`UPDATE audit SET seq = -1 WHERE seq = 2; UPDATE audit SET seq = 2, chain_seq = chain_seq - 2 WHERE seq = 4;
         UPDATE audit SET seq = 4, chain_seq = chain_seq + 2 WHERE seq = -1;`);
    const r = await verify();
    expect(r.code).toBe(1);
    expect(r.out.problems.length).toBeGreaterThan(0);
  });

  it('finds a deleted record', async () => {
    sql('DELETE FROM audit WHERE seq = 5');
    const r = await verify();
    expect(r.code).toBe(1);
    expect(r.out.problems.map((p) => p.problem)).toContain('missing');
  });

  it('refuses a chain checked with another key, as a key mismatch rather than tampering', async () => {
    writeFileSync(config, JSON.stringify({ admin_token: 'another_admin_token_123456', store: { path: join(t.dir, 'keyleash.sqlite') } }));
    const r = await verify();
    expect(r.code).toBe(4);
    expect((r.out as unknown as { key_mismatch_chains: string[] }).key_mismatch_chains).toHaveLength(1);
  });
});
