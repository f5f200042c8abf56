// 10. The scenario-9 load (one hot key, 50 connections, JSON body converted to form) on one
// Postgres+Redis replica.
import { randomBytes } from 'node:crypto';
import { startKeyleash } from '../lib/context.mjs';
import { cleanupPgRedis, PG_URL, pgRedisUnavailable, REDIS_URL } from './6-backends.mjs';
import { hotKey } from './9-hot-key.mjs';

export const title = 'One hot key on one Postgres+Redis replica (50 connections, JSON body converted to form)';

export async function run(ctx) {
  const why = await pgRedisUnavailable();
  if (why) return { unavailable: why, ok: true };
  const schema = `kl_bench_${randomBytes(5).toString('hex')}`;
  const store = { url: PG_URL, redis_url: REDIS_URL, schema, redis_prefix: `${schema}:`, pool_size: 20 };
  const gw = await startKeyleash(ctx.upstream.proxyUrl, store);
  try {
    return await hotKey(ctx, gw.apiUrl, gw.proxyUrl);
  } finally {
    await gw.stop();
    await cleanupPgRedis(schema).catch(() => {});
  }
}
