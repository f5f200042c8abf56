import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET, startGateway, stripeKey, type TestGateway, CLI } from './harness.js';

// The `keyleash` CLI end to end: the built dist/cli/main.js, spawned as operators run it, against
// a gateway started in this process.


let t: TestGateway;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, KEYLEASH_API_URL: t.apiUrl, KEYLEASH_ADMIN_TOKEN: ADMIN_TOKEN, NO_COLOR: undefined, ...env },
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

const json = (r: Run) => JSON.parse(r.stdout);

beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t?.close();
});

describe('keyleash CLI', { timeout: 30_000 }, () => {
  it('is built', () => {
    expect(existsSync(CLI), `${CLI} missing: run npm run build`).toBe(true);
  });

  it('--help lists every command, examples and the exit codes', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const word of ['serve', 'dev', 'migrate', 'keys create', 'kill', 'audit tail', 'vendors list', 'doctor', 'Examples:', 'Exit codes: 0 ok, 1', '3 not found']) {
      expect(r.stdout).toContain(word);
    }
    for (const cmd of [['keys', '--help'], ['kill', '--help'], ['audit', '--help'], ['vendors', '--help'], ['doctor', '--help']]) {
      const h = await run(cmd);
      expect(h.code, cmd.join(' ')).toBe(0);
      expect(h.stdout).toContain('Exit codes:');
      expect(h.stdout).toMatch(/Examples:|Usage:/);
    }
  });

  it('dev --help describes dev mode (not the global help) and starts nothing', async () => {
    for (const args of [['dev', '--help'], ['dev', '-h']]) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^keyleash dev — /);
      for (const word of ['KEYLEASH_ADMIN_TOKEN', 'KEYLEASH_API_LISTEN', 'KEYLEASH_PROXY_LISTEN', 'sandbox', 'Idempotency-Key']) expect(r.stdout).toContain(word);
      expect(r.stdout).not.toContain('keyleash kill');
    }
  });

  it('minting-keys create shows the secret once; get, list, rotate and revoke work on it', async () => {
    const created = await run(['minting-keys', 'create', '--vendor', 'stripe', '--endpoint', '/v1/payment_intents', '--max-cap', '50', '--max-ttl', '10m', '--allow-budget', 'user:*', '--label', 'cli-mint']);
    expect(created.code, created.stderr).toBe(0);
    const secrets = created.stdout.match(/klm_test_[0-9A-Za-z]{24}_1_[A-Za-z0-9_-]{43}/g);
    expect(secrets).toHaveLength(1);
    const id = /created (mk_[0-9A-Za-z]{24})/.exec(created.stdout)![1]!;
    expect(created.stdout).toContain('$50.00 a day per key');
    const got = await run(['minting-keys', 'get', id]);
    expect(got.stdout).toContain('user:* (may name)');
    expect(got.stdout).not.toContain('klm_');
    expect(json(await run(['minting-keys', 'list', '--json'])).data.map((m: { id: string }) => m.id)).toContain(id);
    const rotated = await run(['minting-keys', 'rotate', id, '--grace', '5m', '--json']);
    expect(json(rotated)).toMatchObject({ id, version: 2 });
    expect(json(rotated).secret).toMatch(/^klm_test_.*_2_/);
    const revoked = await run(['minting-keys', 'revoke', id]);
    expect(revoked.stdout).toContain(`revoked ${id}; 0 minted key(s)`);
    expect((await run(['minting-keys', 'get', 'mk_000000000000000000000000'])).code).toBe(3);
    expect((await run(['minting-keys', 'create', '--vendor', 'stripe'])).code).toBe(2);
    expect((await run(['minting-keys', '--help'])).stdout).toContain('Exit codes:');
  });

  it('keys create issues a key and shows its token once; --json gives the API answer', async () => {
    const human = await run(['keys', 'create', '--vendor', 'stripe', '--endpoint', '/v1/payment_intents', '--cap', '25', '--ttl', '10m', '--label', 'cli-human', '--meta', 'team=cli']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/issued key_/);
    expect(human.stdout.match(/vk_test_[0-9A-Za-z]{38}/g)).toHaveLength(1);
    expect(human.stdout).toContain('$25.00');
    expect(human.stdout).not.toContain('\x1b['); // not a TTY: no colour

    const r = await run(['keys', 'create', '--vendor', 'stripe', '--endpoint', '/v1/payment_intents', '--endpoint', 'GET /v1/customers', '--cap', '10', '--ttl', '600', '--label', 'cli-json', '--meta', 'team=cli', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const k = json(r);
    expect(k).toMatchObject({ label: 'cli-json', vendor: 'stripe', daily_usd_cap: 10, allowed_endpoints: ['/v1/payment_intents', 'GET /v1/customers'], metadata: { team: 'cli' } });
    expect((await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 500, currency: 'usd' } })).status).toBe(200);
  });

  it('keys list filters and prints a table or JSON; keys get reads one key', async () => {
    const list = await run(['keys', 'list', '--label-prefix', 'cli-', '--meta', 'team=cli', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const data = json(list).data;
    expect(data.map((k: any) => k.label).sort()).toEqual(['cli-human', 'cli-json']);
    const table = await run(['keys', 'list', '--label-prefix', 'cli-']);
    expect(table.stdout).toMatch(/^ID\s+LABEL\s+VENDOR\s+MODE\s+STATUS/);
    expect(table.stdout).toContain('$5.00 / $10.00');

    const id = data.find((k: any) => k.label === 'cli-json').id;
    const got = await run(['keys', 'get', id, '--json']);
    expect(got.code).toBe(0);
    expect(json(got)).toMatchObject({ id, spend_today_usd: 5, request_count: 1 });
    expect(got.stdout).not.toContain('vk_test_');
    const human = await run(['keys', 'get', id]);
    expect(human.stdout).toMatch(/spend today\s+\$5\.00/);
  });

  it('keys revoke stops the key at the proxy; an unknown id exits 3', async () => {
    const k = await t.issue({ ...stripeKey, label: 'cli-revoke' });
    const r = await run(['keys', 'revoke', k.id]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`revoked ${k.id}`);
    expect((await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 100, currency: 'usd' } })).body.code).toBe('key_revoked');

    const missing = await run(['keys', 'get', 'key_doesnotexist000000000000']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('key_not_found');
    const mixed = await run(['keys', 'revoke', 'key_doesnotexist000000000000', k.id]);
    expect(mixed.code).toBe(3);
  });

  it('kill counts first, needs --yes off a terminal, and revokes exactly the matching keys', async () => {
    const night = await Promise.all([1, 2, 3].map((n) => t.issue({ ...stripeKey, label: `nightly-${n}`, metadata: { job: 'nightly' } })));
    const day = await t.issue({ ...stripeKey, label: 'daily-1', metadata: { job: 'daily' } });

    const dry = await run(['kill', '--meta', 'job=nightly', '--dry-run', '--json']);
    expect(dry.code).toBe(0);
    expect(json(dry)).toMatchObject({ dry_run: true, matched: 3, revoked: 0 });

    const unconfirmed = await run(['kill', '--meta', 'job=nightly']);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toContain('would revoke 3 active key(s); pass --yes');
    expect((await t.admin('GET', `/v1/keys/${night[0]!.id}`)).body.status).toBe('active');

    const noFilter = await run(['kill', '--yes']);
    expect(noFilter.code).toBe(2);
    expect(noFilter.stderr).toContain('needs a filter');

    const done = await run(['kill', '--label-prefix', 'nightly-', '--meta', 'job=nightly', '--yes']);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toContain('revoked 3 keys');
    for (const k of night) expect((await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 1, currency: 'usd' } })).body.code).toBe('key_revoked');
    expect((await t.admin('GET', `/v1/keys/${day.id}`)).body.status).toBe('active');
  });

  it('audit tail follows the log live until interrupted', async () => {
    const k = await t.issue({ ...stripeKey, label: 'cli-tail' });
    const child = spawn(process.execPath, [CLI, 'audit', 'tail', '--key-id', k.id, '--json'], {
      env: { ...process.env, KEYLEASH_API_URL: t.apiUrl, KEYLEASH_ADMIN_TOKEN: ADMIN_TOKEN },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      // Wait until the stream is subscribed, then make calls.
      for (let i = 0; i < 100 && !(await t.admin('GET', '/metrics')).text.includes('route="/v1/audit/stream"'); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 200));
      await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 700, currency: 'usd' } });
      await t.proxy('/v1/refunds', { token: k.token, method: 'GET' });
      await t.proxy('/v1/payment_intents', { token: (await t.issue()).token, body: { amount: 1, currency: 'usd' } }); // another key: filtered out
      for (let i = 0; i < 100 && stdout.trim().split('\n').filter(Boolean).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
      const lines = stdout.trim().split('\n').map((l) => JSON.parse(l));
      expect(lines.map((l) => [l.key_id, l.decision, l.code])).toEqual([
        [k.id, 'allow', null],
        [k.id, 'deny', 'endpoint_not_allowed'],
      ]);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
  });

  it('vendors list shows the configured vendors, never a secret', async () => {
    const r = await run(['vendors', 'list', '--json']);
    expect(r.code).toBe(0);
    expect(json(r).data).toEqual([expect.objectContaining({ object: 'vendor', name: 'stripe', origin: new URL(t.sandbox.url).origin, modes: ['test', 'live'] })]);
    const human = await run(['vendors', 'list']);
    expect(human.stdout).toMatch(/stripe\s+http:\/\/127\.0\.0\.1:\d+\s+test, live/);
    expect(human.stdout + r.stdout).not.toContain(STRIPE_TEST_SECRET);
  });

  it('exit codes: 2 for bad usage or a wrong admin token, 1 when the API is unreachable', async () => {
    expect((await run(['keys', 'frobnicate'])).code).toBe(2);
    expect((await run(['keys', 'create', '--endpoint', '/v1/x'])).code).toBe(2);
    expect((await run(['keys', 'list', '--bogus-flag'])).code).toBe(2);
    expect((await run(['keys', 'create', '--vendor', 'nope', '--endpoint', '/v1/x'])).code).toBe(2);
    const badToken = await run(['keys', 'list'], { KEYLEASH_ADMIN_TOKEN: 'wrong_admin_token_000000' });
    expect(badToken.code).toBe(2);
    expect(badToken.stderr).toContain('unauthorized');
    expect((await run(['keys', 'list'], { KEYLEASH_ADMIN_TOKEN: undefined })).code).toBe(2);
    const down = await run(['keys', 'list', '--api-url', 'http://127.0.0.1:9']);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('cannot reach the control API');
  });

  it('doctor checks config, store, upstream and the running gateway', async () => {
    const config = join(t.dir, 'doctor.json');
    writeFileSync(
      config,
      JSON.stringify({
        admin_token: ADMIN_TOKEN,
        store: { path: join(t.dir, 'keyleash.sqlite') },
        vendors: { stripe: { base_url: t.sandbox.url, test_secret: STRIPE_TEST_SECRET } },
      }),
    );
    const ok = await run(['doctor', '--config', config, '--api-url', t.apiUrl, '--json'], { KEYLEASH_ADMIN_TOKEN: undefined });
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    const report = json(ok);
    expect(report.ok).toBe(true);
    expect(report.checks.map((c: any) => [c.check, c.status])).toEqual(
      expect.arrayContaining([['config', 'ok'], ['store', 'ok'], ['vendor stripe test', 'ok'], ['gateway', 'ok'], ['mint key', 'warn']]),
    );
    const withMintKey = await run(['doctor', '--config', config, '--json'], { KEYLEASH_ADMIN_TOKEN: undefined, KEYLEASH_MINT_KEY: 'doctor_mint_key_0123456789' });
    expect(json(withMintKey).checks).toContainEqual(expect.objectContaining({ check: 'mint key', status: 'ok' }));
    expect(withMintKey.stdout).not.toContain('doctor_mint_key_0123456789');
    expect(ok.stdout).not.toContain(STRIPE_TEST_SECRET);
    expect(ok.stdout).not.toContain(ADMIN_TOKEN);

    const down = join(t.dir, 'doctor-down.json');
    writeFileSync(down, JSON.stringify({ admin_token: ADMIN_TOKEN, store: { path: join(t.dir, 'new', 'x.sqlite') }, vendors: { stripe: { base_url: 'http://127.0.0.1:9', test_secret: STRIPE_TEST_SECRET } } }));
    const failed = await run(['doctor', '--config', down, '--timeout-ms', '2000'], { KEYLEASH_ADMIN_TOKEN: undefined });
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/vendor stripe test\s+FAIL/);
    expect(failed.stdout).toMatch(/store\s+warn\s+SQLite .* will be created on start/);
    expect(existsSync(join(t.dir, 'new', 'x.sqlite'))).toBe(false);

    const bad = join(t.dir, 'doctor-bad.json');
    writeFileSync(bad, JSON.stringify({ admin_token: 'short' }));
    const invalid = await run(['doctor', '--config', bad], { KEYLEASH_ADMIN_TOKEN: undefined });
    expect(invalid.code).toBe(2);
    expect(invalid.stdout).toMatch(/config\s+FAIL\s+.*admin_token/);
  });

  it('migrate creates the store schema and exits 0', async () => {
    const config = join(t.dir, 'migrate.json');
    const path = join(t.dir, 'migrated', 'store.sqlite');
    writeFileSync(config, JSON.stringify({ admin_token: ADMIN_TOKEN, store: { path }, log_level: 'silent' }));
    const r = await run(['migrate', '--config', config]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(path)).toBe(true);
  });
});
