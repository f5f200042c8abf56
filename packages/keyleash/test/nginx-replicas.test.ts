import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { ADMIN_TOKEN, CLI, freePort, STRIPE_TEST_SECRET } from './harness.js';
import { dropSchema, flushPrefix, pgRedisAvailable, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from './pg-redis-env.js';

// The shipped deploy/nginx.conf in front of two replicas on one Postgres + Redis: a dashboard
// session signed in through the balancer works on both (round robin, no stickiness), signing out
// ends it on both, and the live tail shows the calls of both replicas.

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
const available = await pgRedisAvailable('nginx-replicas');
if (!NGINX && process.env.CI === 'true') throw new Error('nginx is not installed (.ci/run installs nginx-light)');

describe.skipIf(!available || !NGINX)('two replicas behind the shipped nginx config', { timeout: 90_000 }, () => {
  const schema = uniqueName('kl_nginx');
  const prefix = `${schema}:`;
  let dir: string;
  let sandbox: StripeSandbox;
  let nginx: ChildProcess;
  let lbApi: string;
  const replicas: Array<{ api: string; proxy: string; child: ChildProcess }> = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keyleash-nginx-'));
    sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
    const sandboxUrl = await sandbox.listen();
    for (const name of ['A', 'B']) {
      const [apiPort, proxyPort] = [await freePort(), await freePort()];
      const config = join(dir, `${name}.json`);
      writeFileSync(
        config,
        JSON.stringify({
          admin_token: ADMIN_TOKEN,
          listen: { api: { port: apiPort }, proxy: { port: proxyPort } },
          store: { url: TEST_DATABASE_URL, redis_url: TEST_REDIS_URL, schema, redis_prefix: prefix, pool_size: 5 },
          vendors: { stripe: { base_url: sandboxUrl, test_secret: STRIPE_TEST_SECRET } },
          log_level: 'warn',
        }),
      );
      const child = spawn(process.execPath, [CLI, 'serve', '--config', config], { env: { ...process.env, KEYLEASH_DRAIN_SECONDS: '0' }, stdio: ['ignore', 'ignore', 'inherit'] });
      replicas.push({ api: `http://127.0.0.1:${apiPort}`, proxy: `http://127.0.0.1:${proxyPort}`, child });
    }
    for (const r of replicas) {
      for (let i = 0; i < 150 && !(await fetch(`${r.api}/readyz`).then((x) => x.ok, () => false)); i++) await new Promise((res) => setTimeout(res, 100));
    }
    // deploy/nginx.conf as shipped, with the replicas' addresses for "keyleash" and loopback ports.
    const [lbApiPort, lbProxyPort] = [await freePort(), await freePort()];
    const shipped = readFileSync(join(REPO, 'deploy', 'nginx.conf'), 'utf8');
    const port = (u: string) => new URL(u).port;
    const conf = shipped
      .replace('server keyleash:8080;', replicas.map((r) => `server 127.0.0.1:${port(r.api)};`).join(' '))
      .replace('server keyleash:8081;', replicas.map((r) => `server 127.0.0.1:${port(r.proxy)};`).join(' '))
      .replace('listen 8080;', `listen 127.0.0.1:${lbApiPort};`)
      .replace('listen 8081;', `listen 127.0.0.1:${lbProxyPort};`)
      .replace(
        'http {',
        `http {\n  access_log off;\n  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
      );
    expect(conf).not.toContain('keyleash:80');
    writeFileSync(join(dir, 'nginx.conf'), conf);
    nginx = spawn(NGINX!, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', `daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;`], { stdio: ['ignore', 'ignore', 'inherit'] });
    lbApi = `http://127.0.0.1:${lbApiPort}`;
    for (let i = 0; i < 100 && !(await fetch(`${lbApi}/readyz`).then((x) => x.ok, () => false)); i++) await new Promise((res) => setTimeout(res, 100));
  }, 60_000);

  afterAll(async () => {
    nginx?.kill('SIGQUIT');
    await Promise.all(
      replicas.map((r) => new Promise<void>((res) => (r.child.exitCode !== null ? res() : (r.child.once('exit', () => res()), r.child.kill('SIGTERM'))))),
    );
    await sandbox?.close();
    await dropSchema(schema);
    await flushPrefix(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a dashboard session works on every replica, and signing out ends it on every replica', async () => {
    const signIn = await fetch(`${lbApi}/dashboard/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: ADMIN_TOKEN }) });
    expect(signIn.status).toBe(201);
    const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
    const { csrf_token: csrf } = (await signIn.json()) as { csrf_token: string };
    // Round robin: consecutive requests land on alternate replicas; every one is signed in.
    const statuses = [];
    for (let i = 0; i < 8; i++) statuses.push((await fetch(`${lbApi}/v1/keys`, { headers: { cookie } })).status);
    expect(statuses).toEqual(Array(8).fill(200));
    // Each replica on its own accepts the session, too.
    for (const r of replicas) expect((await fetch(`${r.api}/v1/keys`, { headers: { cookie } })).status).toBe(200);
    // A change through the balancer, with the CSRF token, works whichever replica takes it.
    for (let i = 0; i < 2; i++) {
      const made = await fetch(`${lbApi}/v1/keys`, {
        method: 'POST',
        headers: { cookie, 'x-keyleash-csrf': csrf, 'content-type': 'application/json' },
        body: JSON.stringify({ label: `lb-${i}`, vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 10, expires_in: '5m' }),
      });
      expect(made.status).toBe(201);
    }
    const out = await fetch(`${lbApi}/dashboard/session`, { method: 'DELETE', headers: { cookie, 'x-keyleash-csrf': csrf } });
    expect(out.status).toBe(204);
    for (const r of replicas) expect((await fetch(`${r.api}/v1/keys`, { headers: { cookie } })).status).toBe(401);
    // Whichever replica took each change, the admin audit trail in Postgres has all of them.
    const trail = (await (await fetch(`${replicas[1]!.api}/v1/admin/audit`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
      data: Array<{ actor: string; via: string; method: string; route: string }>;
    };
    expect(trail.data.map((r) => `${r.actor} ${r.via} ${r.method} ${r.route}`).reverse()).toEqual([
      'admin dashboard POST /dashboard/session',
      'admin dashboard POST /v1/keys',
      'admin dashboard POST /v1/keys',
      'admin dashboard DELETE /dashboard/session',
    ]);
  });

  it('the live tail through the balancer shows the calls of both replicas', async () => {
    const issue = async (label: string) =>
      (
        await (
          await fetch(`${replicas[0]!.api}/v1/keys`, {
            method: 'POST',
            headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
            body: JSON.stringify({ label, vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 100, expires_in: '5m' }),
          })
        ).json()
      ) as { id: string; token: string };
    const keys = [await issue('tail-a'), await issue('tail-b')];
    const seen = new Set<string>();
    const tail = request(`${lbApi}/v1/audit/stream`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, accept: 'text/event-stream' } });
    tail.on('response', (res) => {
      let buf = '';
      res.on('data', (c: Buffer) => {
        buf += c;
        for (const m of buf.matchAll(/"key_id":"(key_[A-Za-z0-9]+)"/g)) seen.add(m[1]!);
      });
    });
    tail.on('error', () => undefined);
    tail.end();
    try {
      // Each key calls through its own replica, until the one tail has seen both.
      for (let i = 0; i < 100 && !(seen.has(keys[0]!.id) && seen.has(keys[1]!.id)); i++) {
        for (const [n, r] of replicas.entries()) {
          await fetch(`${r.proxy}/stripe/v1/payment_intents`, {
            method: 'POST',
            headers: { authorization: `Bearer ${keys[n]!.token}`, 'content-type': 'application/x-www-form-urlencoded' },
            body: 'amount=100&currency=usd',
          });
        }
        await new Promise((res) => setTimeout(res, 150));
      }
      expect([...seen].filter((k) => k === keys[0]!.id || k === keys[1]!.id).sort()).toEqual([keys[0]!.id, keys[1]!.id].sort());
    } finally {
      tail.destroy();
    }
  });
});
