import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  ANTHROPIC_TEST_SECRET,
  CLI,
  OPENAI_TEST_SECRET,
  STRIPE_TEST_SECRET,
  TWILIO_TEST_SID,
  TWILIO_TEST_TOKEN,
  startGateway,
  stripeKey,
  type TestGateway,
} from './harness.js';

// Operator tools that tell the truth: --version, a timeout on a silent port, closed pipes,
// budgets and audit query/export commands, audit verify refusing a missing store and telling a
// wrong key from tampering, and doctor checking each vendor secret with a harmless read.

let t: TestGateway;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string | undefined> = {}, argv0: string[] = [process.execPath, CLI]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv0[0]!, [...argv0.slice(1), ...args], {
      env: { ...process.env, KEYLEASH_API_URL: t.apiUrl, KEYLEASH_ADMIN_TOKEN: ADMIN_TOKEN, NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  t = await startGateway(undefined, { sandboxes: ['twilio', 'openai', 'anthropic'] });
});
afterAll(async () => {
  await t?.close();
});

describe('CLI basics', { timeout: 60_000 }, () => {
  it('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(join(CLI, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-v', 'version']) {
      const r = await run([flag]);
      expect(r).toMatchObject({ code: 0, stdout: `keyleash ${version}\n` });
    }
  });

  it('gives up on a port that accepts and never answers, with exit code 1', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
      const r = await run(['keys', 'list', '--api-url', url, '--timeout-ms', '300']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`no answer from the control API at ${url} within 300 ms`);
      const env = await run(['vendors', 'list', '--api-url', url], { KEYLEASH_TIMEOUT_MS: '200' });
      expect(env.stderr).toContain('within 200 ms');
      const tail = await run(['audit', 'tail', '--api-url', url, '--timeout-ms', '300']);
      expect(tail.code).toBe(1);
      expect(tail.stderr).toContain('within 300 ms');
      expect((await run(['keys', 'list', '--timeout-ms', 'soon'])).code).toBe(2);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('stops quietly when its output pipe closes early', async () => {
    await Promise.all(Array.from({ length: 250 }, (_, i) => t.issue({ ...stripeKey, label: `pipe-${i}`, metadata: { note: 'x'.repeat(200) } })));
    const r = await run(['-c', `set -o pipefail; "${process.execPath}" "${CLI}" keys list --all --json | head -c 100 > /dev/null`], {}, ['bash']);
    expect(r.stderr).not.toMatch(/EPIPE|at /);
    expect(r.code).toBe(0);
  });
});

describe('keyleash budgets', { timeout: 60_000 }, () => {
  it('creates, lists, reads, changes, freezes and deletes a budget', async () => {
    const created = await run(['budgets', 'create', 'team:cli', '--limit', '25.5', '--period', 'day', '--rate', '100/minute', '--meta', 'owner=ops', '--json']);
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ id: 'team:cli', limit_usd: 25.5, period: 'day', rate_limit: { requests: 100 }, metadata: { owner: 'ops' } });
    const human = await run(['budgets', 'get', 'team:cli']);
    expect(human.stdout).toMatch(/limit\s+\$25\.50 per day/);
    expect(JSON.parse((await run(['budgets', 'list', '--json'])).stdout).data.map((b: { id: string }) => b.id)).toContain('team:cli');
    expect(JSON.parse((await run(['budgets', 'set', 'team:cli', '--limit', '40', '--rate', 'none', '--json'])).stdout)).toMatchObject({ limit_usd: 40, rate_limit: null });
    expect(JSON.parse((await run(['budgets', 'freeze', 'team:cli', '--json'])).stdout).frozen).toBe(true);
    expect(JSON.parse((await run(['budgets', 'unfreeze', 'team:cli', '--json'])).stdout).frozen).toBe(false);
    const day = new Date().toISOString().slice(0, 10);
    expect(JSON.parse((await run(['budgets', 'get', 'team:cli', '--window', day, '--json'])).stdout)).toMatchObject({ window: day, spend_usd: 0 });
    expect((await run(['budgets', 'delete', 'team:cli'])).code).toBe(0);
    expect((await run(['budgets', 'get', 'team:cli'])).code).toBe(3);
    expect((await run(['budgets', 'create', 'x'])).code).toBe(2);
    expect((await run(['budgets', 'set', 'x'])).code).toBe(2);
  });
});

describe('keyleash audit query and export', { timeout: 60_000 }, () => {
  it('queries with filters and a limit, and exports every match as NDJSON or CSV', async () => {
    const key = await t.issue({ ...stripeKey, label: 'audit-cli' });
    for (let i = 0; i < 5; i++) await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 100 + i, currency: 'usd' } });
    await t.proxy('/v1/charges', { token: key.token, body: {} }); // denied: not allowed
    await t.gw.audit.flush();

    const q = await run(['audit', 'query', '--key-id', key.id, '--limit', '2', '--json']);
    const page = JSON.parse(q.stdout);
    expect(page.data).toHaveLength(2);
    expect(page.has_more).toBe(true);
    const denied = JSON.parse((await run(['audit', 'query', '--key-id', key.id, '--decision', 'deny', '--json'])).stdout);
    expect(denied.data.map((r: { code: string }) => r.code)).toEqual(['endpoint_not_allowed']);

    const nd = await run(['audit', 'export', '--key-id', key.id]);
    expect(nd.code).toBe(0);
    const lines = nd.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(6);
    expect(nd.stderr).toContain('exported 6 audit records');
    const csv = await run(['audit', 'export', '--key-id', key.id, '--format', 'csv']);
    const rows = csv.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^time,id,request_id,key_id/);
    expect(rows).toHaveLength(7);

    const future = await run(['audit', 'export', '--key-id', key.id, '--since', '2999-01-01']);
    expect(future.stdout).toBe('');
    const past = await run(['audit', 'export', '--key-id', key.id, '--until', '2000-01-01']);
    expect(past.stdout).toBe('');
    expect((await run(['audit', 'export', '--since', 'yesterday'])).code).toBe(2);
  });
});

describe('keyleash audit verify', { timeout: 60_000 }, () => {
  it('refuses a store that does not exist, and does not create one', async () => {
    const missing = join(t.dir, 'nowhere', 'keyleash.sqlite');
    const r = await run(['audit', 'verify'], { KEYLEASH_DATA: missing, KEYLEASH_CONFIG: undefined });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`no store at ${missing}`);
    expect(r.stdout).not.toContain('intact');
    expect(existsSync(missing)).toBe(false);
  });

  it('tells a different audit key from tampering', async () => {
    const key = await t.issue(stripeKey);
    await t.proxy('/v1/payment_intents', { token: key.token, body: { amount: 100, currency: 'usd' } });
    await t.gw.audit.flush();
    const env = { KEYLEASH_DATA: join(t.dir, 'keyleash.sqlite'), KEYLEASH_CONFIG: undefined };
    const right = await run(['audit', 'verify', '--json'], env);
    expect(right.code, right.stdout + right.stderr).toBe(0);
    const wrong = await run(['audit', 'verify', '--json'], { ...env, KEYLEASH_AUDIT_KEY: 'another_audit_key_0123456789' });
    expect(wrong.code).toBe(4);
    const out = JSON.parse(wrong.stdout);
    expect(out.problems).toEqual([]);
    expect(out.key_mismatch_chains.length).toBeGreaterThan(0);
    const human = await run(['audit', 'verify'], { ...env, KEYLEASH_AUDIT_KEY: 'another_audit_key_0123456789' });
    expect(human.stdout).toContain('KEY MISMATCH');
    expect(human.stdout).not.toContain('TAMPERED');
  });
});

describe('keyleash doctor', { timeout: 60_000 }, () => {
  it('checks every vendor secret with a harmless read: accepted, or refused', async () => {
    const config = (stripe: string) => {
      const file = join(t.dir, `doctor-${stripe.length}.json`);
      writeFileSync(
        file,
        JSON.stringify({
          admin_token: ADMIN_TOKEN,
          store: { path: join(t.dir, 'keyleash.sqlite') },
          vendors: {
            stripe: { base_url: t.sandbox.url, test_secret: stripe },
            twilio: { base_url: t.sandboxes.twilio!.url, test_account_sid: TWILIO_TEST_SID, test_auth_token: TWILIO_TEST_TOKEN },
            openai: { base_url: t.sandboxes.openai!.url, test_secret: OPENAI_TEST_SECRET },
            anthropic: { base_url: t.sandboxes.anthropic!.url, test_secret: ANTHROPIC_TEST_SECRET },
          },
        }),
      );
      return file;
    };
    const good = await run(['doctor', '--config', config(STRIPE_TEST_SECRET), '--json'], { KEYLEASH_ADMIN_TOKEN: undefined, KEYLEASH_API_URL: undefined });
    const checks = JSON.parse(good.stdout).checks as Array<{ check: string; status: string; detail: string }>;
    for (const v of ['stripe', 'twilio', 'openai', 'anthropic']) {
      expect(checks.find((c) => c.check === `vendor ${v} test`), v).toMatchObject({ status: 'ok' });
    }
    expect(good.code).toBe(0);
    const wrong = await run(['doctor', '--config', config('sk_test_not_the_right_secret_0000'), '--json'], { KEYLEASH_ADMIN_TOKEN: undefined, KEYLEASH_API_URL: undefined });
    expect(wrong.code).toBe(1);
    const stripe = (JSON.parse(wrong.stdout).checks as typeof checks).find((c) => c.check === 'vendor stripe test')!;
    expect(stripe.status).toBe('fail');
    expect(stripe.detail).toContain('REFUSED (GET /v1/balance → HTTP 401)');
    expect(wrong.stdout).not.toContain('sk_test_not_the_right_secret_0000');
  });
});
