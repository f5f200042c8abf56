import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET, freePort, CLI } from './harness.js';
import { mint, narrow } from './mint.js';
import { dropSchema, flushPrefix, pgRedisAvailable, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from './pg-redis-env.js';

// Three real gateway processes (built dist/, `keyleash serve`) on one Postgres and one Redis,
// as replicas behind a load balancer would run.

const available = await pgRedisAvailable('replicas');

interface Replica {
  name: string;
  api: string;
  proxy: string;
  child: ChildProcess;
}


async function waitReady(r: Replica): Promise<void> {
  for (let i = 0; i < 150; i++) {
    if (r.child.exitCode !== null) throw new Error(`${r.name} exited with ${r.child.exitCode}`);
    try {
      if ((await fetch(`${r.api}/readyz`)).ok && (await fetch(`${r.proxy}/readyz`)).ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`${r.name} did not become ready`);
}

describe.skipIf(!available)('three gateway replicas on one Postgres + Redis', () => {
  const schema = uniqueName('kl_replicas');
  const prefix = `${schema}:`;
  let sandbox: StripeSandbox;
  let dir: string;
  const replicas: Replica[] = [];

  beforeAll(async () => {
    sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
    const sandboxUrl = await sandbox.listen();
    dir = mkdtempSync(join(tmpdir(), 'keyleash-replicas-'));
    for (const name of ['A', 'B', 'C']) {
      const [apiPort, proxyPort] = [await freePort(), await freePort()];
      const config = join(dir, `${name}.json`);
      writeFileSync(
        config,
        JSON.stringify({
          admin_token: ADMIN_TOKEN,
          listen: { api: { port: apiPort }, proxy: { port: proxyPort } },
          store: { url: TEST_DATABASE_URL, redis_url: TEST_REDIS_URL, schema, redis_prefix: prefix, pool_size: 10 },
          vendors: { stripe: { base_url: sandboxUrl, test_secret: STRIPE_TEST_SECRET } },
          log_level: 'warn',
        }),
      );
      // All three start at once: their start-up migrations race on an advisory lock.
      const child = spawn(process.execPath, [CLI, 'serve', '--config', config], {
        env: { ...process.env, KEYLEASH_DRAIN_SECONDS: '0' },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      replicas.push({ name, api: `http://127.0.0.1:${apiPort}`, proxy: `http://127.0.0.1:${proxyPort}`, child });
    }
    await Promise.all(replicas.map(waitReady));
  }, 30_000);

  afterAll(async () => {
    await Promise.all(
      replicas.map(
        (r) =>
          new Promise<void>((resolve) => {
            if (r.child.exitCode !== null) return resolve();
            r.child.once('exit', () => resolve());
            r.child.kill('SIGTERM');
          }),
      ),
    );
    await sandbox?.close();
    if (available) {
      await dropSchema(schema);
      await flushPrefix(prefix);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const admin = async (r: Replica, method: string, path: string, body?: unknown) => {
    const res = await fetch(r.api + path, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const issue = async (r: Replica, body: Record<string, unknown>) => {
    const res = await admin(r, 'POST', '/v1/keys', { label: 'replica', vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], ...body });
    expect(res.status).toBe(201);
    return res.body as { id: string; token: string; expires_at: string };
  };
  const pay = async (r: Replica, token: string, cents: number) => {
    const res = await fetch(`${r.proxy}/v1/payment_intents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ amount: cents, currency: 'usd' }),
    });
    return { status: res.status, body: (await res.json()) as any, at: performance.now() };
  };

  it('lets exactly 10 of 300 concurrent $100 calls spread over 3 replicas through a $1,000 cap', async () => {
    sandbox.requests.length = 0;
    sandbox.respond = () => ({ status: 200, body: { id: 'pi_x', object: 'payment_intent' }, delayMs: 20 });
    const key = await issue(replicas[0]!, { daily_usd_cap: 1000, expires_in: '10m' });
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => pay(replicas[i % 3]!, key.token, 10_000)));
    const ok = results.filter((r) => r.status === 200);
    expect(ok).toHaveLength(10);
    expect(results.filter((r) => r.status === 429 && r.body.code === 'cap_exhausted')).toHaveLength(290);
    expect(sandbox.requests).toHaveLength(10);
    console.log(`cap: ${ok.length} of 300 calls accepted; per replica ${[0, 1, 2].map((k) => results.filter((r, i) => i % 3 === k && r.status === 200).length).join('/')}`);
    for (const r of replicas) {
      const view = await admin(r, 'GET', `/v1/keys/${key.id}`);
      expect(view.body).toMatchObject({ spend_today_usd: 1000, remaining_today_usd: 0, request_count: 10 });
    }

    // Redis loses everything: the settled spend comes back from the Postgres ledger.
    await flushPrefix(prefix);
    for (const r of replicas) expect((await pay(r, key.token, 100)).body.code).toBe('cap_exhausted');
    expect(sandbox.requests).toHaveLength(10);
  }, 30_000);

  it('refuses a key revoked through replica A on replicas B and C within 100 ms', async () => {
    sandbox.requests.length = 0;
    sandbox.respond = null;
    const key = await issue(replicas[0]!, { daily_usd_cap: 10_000, expires_in: '10m' });
    // Every replica has the key cached and in use.
    for (const r of replicas) expect((await pay(r, key.token, 100)).status).toBe(200);

    // B and C keep calling while A revokes.
    let stop = false;
    const seen: Record<string, Array<{ sent: number; at: number; status: number; code?: string }>> = { B: [], C: [] };
    const hammer = async (r: Replica) => {
      while (!stop) {
        const sent = performance.now();
        const res = await pay(r, key.token, 100);
        seen[r.name]!.push({ sent, at: res.at, status: res.status, code: res.body.code });
      }
    };
    const loops = [hammer(replicas[1]!), hammer(replicas[2]!)];
    await new Promise((r) => setTimeout(r, 50));
    const before = performance.now();
    const del = await admin(replicas[0]!, 'DELETE', `/v1/keys/${key.id}`);
    const returned = performance.now();
    expect(del.status).toBe(200);
    // Probe B and C the moment the DELETE has returned: how long until each refuses the key.
    const probes = await Promise.all([replicas[1]!, replicas[2]!].map((r) => pay(r, key.token, 100)));
    await new Promise((r) => setTimeout(r, 150));
    stop = true;
    await Promise.all(loops);

    for (const [i, name] of ['B', 'C'].entries()) {
      const probe = probes[i]!;
      expect(probe.body.code).toBe('key_revoked');
      const latency = probe.at - returned;
      // From the moment DELETE returned, nothing is let through, on any replica.
      const after = seen[name]!.filter((c) => c.sent >= returned);
      expect(after.length).toBeGreaterThan(0);
      for (const c of after) expect(c).toMatchObject({ status: 401, code: 'key_revoked' });
      console.log(
        `revocation via A → ${name}: refused ${latency.toFixed(1)} ms after the DELETE returned ` +
          `(DELETE itself took ${(returned - before).toFixed(1)} ms; all ${after.length} calls sent after it: 401 key_revoked)`,
      );
      expect(latency).toBeLessThan(100);
    }
    const accepted = seen.B!.concat(seen.C!).filter((c) => c.status === 200).length; // before the revocation
    expect(sandbox.requests).toHaveLength(3 + accepted);
  }, 30_000);

  it('meters a minted key and its narrowed keys exactly across replicas, and a minting key revoked through A stops them on every replica', async () => {
    sandbox.requests.length = 0;
    sandbox.respond = null;
    const mk = await admin(replicas[0]!, 'POST', '/v1/minting_keys', { vendors: ['stripe'], allowed_endpoints: ['/v1/payment_intents'], max_daily_usd_cap: 1000 });
    expect(mk.status).toBe(201);
    const root = mint(mk.body.secret, { cap: 100_000_000, endpoints: ['/v1/payment_intents'] });
    const children = Array.from({ length: 6 }, () => narrow(root.token, mk.body.id));
    // First uses race on every replica at once: each chain is created once, and the root's $100
    // cap holds over all of them ($5 calls: exactly 20 pass).
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => pay(replicas[i % 3]!, children[i % 6]!.token, 500)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(20);
    expect(results.filter((r) => r.status === 429 && r.body.limit?.id === root.id)).toHaveLength(40);
    for (const r of replicas) expect((await admin(r, 'GET', `/v1/keys/${root.id}`)).body.spend_today_usd).toBe(100);
    const unused = mint(mk.body.secret, { endpoints: ['/v1/payment_intents'] });

    const del = await admin(replicas[0]!, 'DELETE', `/v1/minting_keys/${mk.body.id}`);
    expect(del.body).toMatchObject({ status: 'revoked', keys_revoked: 7 });
    const probes = await Promise.all(
      [replicas[1]!, replicas[2]!].flatMap((r) => [pay(r, children[0]!.token, 1), pay(r, root.token, 1), pay(r, unused.token, 1)]),
    );
    for (const p of probes) expect([p.status, p.body.code]).toEqual([401, 'key_revoked']);
    expect(sandbox.requests).toHaveLength(20);
  }, 30_000);

  it('refuses an expired key on every replica', async () => {
    sandbox.respond = null;
    const key = await issue(replicas[1]!, { daily_usd_cap: 100, expires_in: 2 });
    for (const r of replicas) expect((await pay(r, key.token, 100)).status).toBe(200);
    const wait = Date.parse(key.expires_at) - Date.now() + 50;
    await new Promise((r) => setTimeout(r, Math.max(0, wait)));
    for (const r of replicas) expect((await pay(r, key.token, 100)).body.code).toBe('key_expired');
    for (const r of replicas) expect((await admin(r, 'GET', `/v1/keys/${key.id}`)).body.status).toBe('expired');
  }, 30_000);

  it('answers /readyz and /healthz on both listeners of every replica', async () => {
    for (const r of replicas) {
      for (const base of [r.api, r.proxy]) {
        expect((await fetch(`${base}/healthz`)).status).toBe(200);
        const ready = await fetch(`${base}/readyz`);
        expect(ready.status).toBe(200);
        expect(await ready.json()).toMatchObject({ store: 'postgres+redis' });
      }
    }
  });
});

if (!available) describe.skip('three gateway replicas (Postgres/Redis unreachable)', () => it('skipped', () => {}));
