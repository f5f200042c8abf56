// 10. The scenario-9 load (one hot key, 50 connections, JSON body converted to form) on one
// Postgres+Redis replica.
import { randomBytes } from 'node:crypto';
import { issueKey, startKeyleash, stripeKey } from '../lib/context.mjs';
import { throughput } from '../lib/load.mjs';
import { cleanupPgRedis, PG_URL, pgRedisUnavailable, REDIS_URL } from './6-backends.mjs';
import { JSON_BODY, JSON_HEADERS } from './9-hot-key.mjs';

export const title = 'One hot key on one Postgres+Redis replica (50 connections, JSON body converted to form)';

export async function run(ctx) {
  const why = await pgRedisUnavailable();
  if (why) return { unavailable: why, ok: true };
  const schema = `kl_bench_${randomBytes(5).toString('hex')}`;
  const store = { url: PG_URL, redis_url: REDIS_URL, schema, redis_prefix: `${schema}:`, pool_size: 20 };
  const gw = await startKeyleash(ctx.upstream.proxyUrl, store);
  try {
    const key = await issueKey(gw.apiUrl, stripeKey());
    const load = { path: '/v1/payment_intents', headers: JSON_HEADERS, body: JSON_BODY, auth: `Bearer ${key.token}`, connections: 50, durationS: ctx.t.durationS, warmupS: ctx.t.warmupS };
    const bare = await throughput(ctx.bare.proxyUrl, load);
    const kl = await throughput(gw.proxyUrl, { ...load, path: '/stripe/v1/payment_intents' });
    return {
      throughput: { bare, keyleash: kl, ratio: kl.rps / bare.rps },
      tail: { p50_ms: kl.p50_ms_coarse, p99_ms: kl.p99_ms_coarse, p99_over_p50: kl.p99_ms_coarse / Math.max(1, kl.p50_ms_coarse) },
      ok: kl.requests > 0 && kl.non2xx === 0 && kl.errors === 0,
    };
  } finally {
    await gw.stop();
    await cleanupPgRedis(schema).catch(() => {});
  }
}
