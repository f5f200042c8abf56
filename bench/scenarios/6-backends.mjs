// 6. Storage backends and processes: the scenario-1 load on SQLite with 2 processes sharing one
// file, and on Postgres+Redis with 1 and 2 processes (node:cluster, one port).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FORM, issueKey, PI_BODY, startKeyleash, stripeKey } from '../lib/context.mjs';
import { throughput } from '../lib/load.mjs';
import { BENCH_DIR, freePort, startServer } from '../lib/proc.mjs';

export const title = 'Storage backends and multi-process';

export const PG_URL = process.env.KEYLEASH_BENCH_DATABASE_URL || process.env.KEYLEASH_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.KEYLEASH_BENCH_REDIS_URL || process.env.KEYLEASH_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const GATEWAY = join(BENCH_DIR, '..', 'packages', 'keyleash');
const requireGw = createRequire(join(GATEWAY, 'package.json'));

/** Why Postgres+Redis cannot be measured here, or null when it can. */
export async function pgRedisUnavailable() {
  if (!existsSync(join(GATEWAY, 'dist', 'store', 'postgres-redis', 'index.js'))) return 'not yet available (no postgres-redis store in the build)';
  const pg = requireGw('pg');
  const { Redis } = requireGw('ioredis');
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
  } catch (e) {
    return `Postgres unreachable at ${PG_URL}: ${e.message}`;
  } finally {
    await c.end().catch(() => {});
  }
  const r = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await r.connect();
    await r.ping();
  } catch (e) {
    return `Redis unreachable at ${REDIS_URL}: ${e.message}`;
  } finally {
    r.disconnect();
  }
  return null;
}

export async function cleanupPgRedis(schema) {
  const pg = requireGw('pg');
  const { Redis } = requireGw('ioredis');
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).finally(() => c.end());
  const r = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${schema}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await r.del(...keys);
  } while (cursor !== '0');
  r.disconnect();
}

async function measure(ctx, store, workers) {
  const ports = workers > 1 ? { api: await freePort(), proxy: await freePort() } : undefined;
  const gw = await startKeyleash(ctx.upstream.proxyUrl, store, { workers, ports });
  try {
    const keys = [];
    for (let i = 0; i < 50; i++) keys.push(await issueKey(gw.apiUrl, stripeKey()));
    const r = await throughput(gw.proxyUrl, {
      path: '/stripe/v1/payment_intents',
      headers: FORM,
      body: PI_BODY,
      auth: keys.map((k) => `Bearer ${k.token}`),
      connections: 50,
      durationS: ctx.t.durationS,
      warmupS: ctx.t.warmupS,
    });
    return { workers, ...r };
  } finally {
    await gw.stop();
  }
}

export async function run(ctx) {
  const load = { path: '/v1/payment_intents', headers: FORM, body: PI_BODY, auth: 'Bearer x', connections: 50, durationS: ctx.t.durationS, warmupS: ctx.t.warmupS };
  const bare1 = await throughput(ctx.bare.proxyUrl, load);
  const bare2srv = await startServer('bare', { env: { BENCH_UPSTREAM: ctx.upstream.proxyUrl, BENCH_WORKERS: '2', BENCH_PORT: String(await freePort()) } });
  const bare2 = await throughput(bare2srv.proxyUrl, load);
  await bare2srv.stop();

  const sqlite = {
    w1: await measure(ctx, { path: join(ctx.dir, 'backends-1.sqlite') }, 1),
    w2: await measure(ctx, { path: join(ctx.dir, 'backends-2.sqlite') }, 2),
  };
  const why = await pgRedisUnavailable();
  let pgredis = { unavailable: why };
  if (!why) {
    const schema = `kl_bench_${randomBytes(5).toString('hex')}`;
    const store = { url: PG_URL, redis_url: REDIS_URL, schema, redis_prefix: `${schema}:`, pool_size: 20 };
    try {
      pgredis = { w1: await measure(ctx, store, 1), w2: await measure(ctx, store, 2) };
    } finally {
      await cleanupPgRedis(schema).catch(() => {});
    }
  }
  const good = (r) => r && r.requests > 0 && r.non2xx === 0;
  return {
    bare: { w1: bare1, w2: bare2 },
    sqlite,
    pgredis,
    ok: good(sqlite.w1) && good(sqlite.w2) && (pgredis.unavailable !== null && pgredis.unavailable !== undefined ? true : good(pgredis.w1) && good(pgredis.w2)),
  };
}
