import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { ADMIN_TOKEN, freePort, startGatewayProcess, CLI } from './harness.js';

// Vendor secrets sealed in the config file under a master key from the environment; master-key
// rotation re-seals the file; a vendor secret is rotated with SIGHUP, without reissuing keys.

const OLD_SECRET = 'sk_test_sealed_old_0123456789';
const NEW_SECRET = 'sk_test_sealed_new_9876543210';
const run = promisify(execFile);

let sandbox: StripeSandbox;
let dir: string;
let file: string;
let api = '';
let proxy = '';


async function cli(args: string[], env: Record<string, string>, input?: string): Promise<string> {
  const p = run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
  if (input !== undefined) {
    p.child.stdin!.end(input);
  }
  return (await p).stdout.trim();
}

function serve(env: Record<string, string>): Promise<ChildProcess> {
  return startGatewayProcess({ config: file, readyUrl: `${proxy}/readyz`, env, stderr: 'pipe' });
}

beforeAll(async () => {
  sandbox = createStripeSandbox({ secrets: [OLD_SECRET, NEW_SECRET] });
  await sandbox.listen();
  dir = mkdtempSync(join(tmpdir(), 'keyleash-sealed-'));
  file = join(dir, 'keyleash.yaml');
  const [a, p] = [await freePort(), await freePort()];
  api = `http://127.0.0.1:${a}`;
  proxy = `http://127.0.0.1:${p}`;
});

afterAll(async () => {
  await sandbox.close();
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(sealedSecret: string): void {
  writeFileSync(
    file,
    [
      `admin_token: ${ADMIN_TOKEN}`,
      `listen: { api: { port: ${new URL(api).port} }, proxy: { port: ${new URL(proxy).port} } }`,
      `store: { path: ${join(dir, 'store.sqlite')} }`,
      'vendors:',
      '  stripe:',
      `    base_url: ${sandbox.url}`,
      `    test_secret: ${sealedSecret}`,
      'log_level: warn',
      '',
    ].join('\n'),
  );
}

async function callThrough(token: string): Promise<number> {
  const r = await fetch(`${proxy}/v1/payment_intents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'amount=100&currency=usd',
  });
  await r.text();
  return r.status;
}

describe('sealed vendor secrets', () => {
  it('serves from a sealed config, rotates the master key, and rotates the vendor secret on SIGHUP', async () => {
    const k1 = await cli(['secrets', 'keygen'], {});
    const sealed = await cli(['secrets', 'seal'], { KEYLEASH_MASTER_KEY: k1 }, OLD_SECRET);
    expect(sealed).toMatch(/^enc:v1:[0-9a-f]{8}:/);
    expect(sealed).not.toContain(OLD_SECRET);
    writeConfig(sealed);
    expect(readFileSync(file, 'utf8')).not.toContain(OLD_SECRET);

    // Without the master key the config does not open.
    await expect(cli(['migrate', '--config', file], { KEYLEASH_MASTER_KEY: '' })).rejects.toMatchObject({ code: 2 });

    let child = await serve({ KEYLEASH_MASTER_KEY: k1 });
    let token: string;
    try {
      const key = await fetch(`${api}/v1/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 10, expires_in: '10m' }),
      }).then((r) => r.json() as Promise<{ token: string }>);
      token = key.token;
      expect(await callThrough(token)).toBe(200);
      expect(sandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${OLD_SECRET}`);

      // Vendor secret rotation: a new sealed secret in the file, then SIGHUP; the same vault key goes on working.
      const sealedNew = await cli(['secrets', 'seal'], { KEYLEASH_MASTER_KEY: k1 }, NEW_SECRET);
      writeConfig(sealedNew);
      child.kill('SIGHUP');
      let used = '';
      for (let i = 0; i < 50 && used !== `Bearer ${NEW_SECRET}`; i++) {
        await new Promise((r) => setTimeout(r, 50));
        expect(await callThrough(token)).toBe(200);
        used = sandbox.requests.at(-1)!.headers.authorization as string;
      }
      expect(used).toBe(`Bearer ${NEW_SECRET}`);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }

    // Master key rotation: re-seal under k2 while k1 still opens the old values.
    const k2 = await cli(['secrets', 'keygen'], {});
    const out = await cli(['secrets', 'rotate', '--config', file], { KEYLEASH_MASTER_KEY: k2, KEYLEASH_MASTER_KEY_PREVIOUS: k1 });
    expect(out).toMatch(/re-sealed 1 secret/);
    await expect(cli(['migrate', '--config', file], { KEYLEASH_MASTER_KEY: k1 })).rejects.toMatchObject({ code: 2 });
    child = await serve({ KEYLEASH_MASTER_KEY: k2 });
    try {
      expect(await callThrough(token)).toBe(200);
      expect(sandbox.requests.at(-1)!.headers.authorization).toBe(`Bearer ${NEW_SECRET}`);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }, 60_000);
});
