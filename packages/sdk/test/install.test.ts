import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startGateway, type TestGateway } from './gateway.js';

// The README's install, done the way a user does it, offline: the SDK as an `npm pack` tarball
// installed into a fresh app next to the app's own `stripe` and `hono`. The app type-checks
// (Hono's types come from the app's hono) and, against a real gateway, a spent cap raised by
// `stripeClient()` is an instance of the app's own `Stripe.errors.StripeError`.

const sdkDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(sdkDir, '..', '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

let t: TestGateway;
let work: string;
beforeAll(async () => {
  t = await startGateway();
  work = mkdtempSync(join(tmpdir(), 'keyleash-install-'));
});
afterAll(async () => {
  await t?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const APP_TS = `
import Stripe from 'stripe';
import { Hono } from 'hono';
import { Keyleash, isCapExhausted, withVaultKey, type IssuedKey } from '@keyleash/sdk';
import { keyleashHono } from '@keyleash/sdk/hono';
import { stripeClient } from '@keyleash/sdk/stripe';

const client = new Keyleash();

// Hono: declare the variable the middleware sets, so c.get('vaultKeys') is typed.
const app = new Hono<{ Variables: { vaultKeys: Record<string, IssuedKey> } }>();
app.use('*', keyleashHono({ client, vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 0, expiresIn: '5m' }));
app.post('/pay', async (c) => {
  const keys = c.get('vaultKeys');
  try {
    await stripeClient().paymentIntents.create({ amount: 500, currency: 'usd' });
    return c.json({ ok: true });
  } catch (err) {
    if (isCapExhausted(err)) {
      return c.json({ code: 'cap_exhausted', stripeError: err instanceof Stripe.errors.StripeError, vendor: keys.stripe?.vendor }, 402);
    }
    throw err;
  }
});

const res = await app.request('/pay', { method: 'POST' });
const direct = await withVaultKey({ client, vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 0, expiresIn: '5m' }, () =>
  stripeClient().paymentIntents.create({ amount: 500, currency: 'usd' }).catch((e: unknown) => e),
);
console.log(JSON.stringify({ status: res.status, body: await res.json(), direct: direct instanceof Stripe.errors.StripeError && isCapExhausted(direct) }));
`;

const run = (cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) =>
  execFileSync(cmd, args, { cwd, env: { ...process.env, npm_config_update_notifier: 'false', ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });

describe('installing @keyleash/sdk as the README says', { timeout: 180_000 }, () => {
  it('an npm pack tarball installs offline into a fresh app, which type-checks and runs against the gateway', async () => {
    const tarballs = join(work, 'tarballs');
    mkdirSync(tarballs);
    // The SDK as published (its dist is built by the test script), and the app's own stripe and hono.
    for (const dir of [sdkDir, join(repo, 'node_modules', 'stripe'), join(repo, 'node_modules', 'hono')]) {
      run(npm, ['pack', dir, '--ignore-scripts', '--pack-destination', tarballs], work);
    }
    const tgz = (prefix: string) => join(tarballs, readdirSync(tarballs).find((f) => f.startsWith(prefix))!);
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({
        name: 'tiny-app',
        private: true,
        type: 'module',
        dependencies: { '@keyleash/sdk': `file:${tgz('keyleash-sdk-')}`, stripe: `file:${tgz('stripe-')}`, hono: `file:${tgz('hono-')}` },
      }),
    );
    run(npm, ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], app);
    // A real copy, not a symlink into this repository.
    expect(lstatSync(join(app, 'node_modules', '@keyleash', 'sdk')).isSymbolicLink()).toBe(false);
    // Optional peers the app did not ask for are not installed.
    expect(() => lstatSync(join(app, 'node_modules', 'openai'))).toThrow();

    writeFileSync(join(app, 'app.ts'), APP_TS);
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          skipLibCheck: false,
          outDir: 'dist',
          typeRoots: [join(repo, 'node_modules', '@types')],
          types: ['node'],
        },
        files: ['app.ts'],
      }),
    );
    // skipLibCheck off: the SDK's declarations must type-check against the app's own hono and stripe.
    run(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], app);
    // Not execFileSync: the gateway runs in this process and must keep answering.
    const { stdout: out } = await promisify(execFile)(process.execPath, [join('dist', 'app.js')], {
      cwd: app,
      env: { ...process.env, KEYLEASH_API_URL: t.apiUrl, KEYLEASH_PROXY_URL: t.proxyUrl, KEYLEASH_ADMIN_TOKEN: ADMIN_TOKEN },
      timeout: 60_000,
    });
    const result = JSON.parse(out.trim().split('\n').at(-1)!);
    expect(result).toEqual({ status: 402, body: { code: 'cap_exhausted', stripeError: true, vendor: 'stripe' }, direct: true });
  });
});
