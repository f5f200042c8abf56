// 5. Scale of state: a SQLite file with 1,000,000 active keys (20,000 in the smoke run) against
// one with 1,000: start-up time, RSS, and key lookup latency (cold: first use of a key, from the
// store; warm: from the proxy's key cache), through the proxy and straight on the store.
import { join } from 'node:path';
import { generateToken, hashToken, newId } from '../../packages/keyleash/dist/keys/token.js';
import { SqliteStore } from '../../packages/keyleash/dist/store/sqlite/index.js';
import { issueKey, startKeyleash, stripeKey } from '../lib/context.mjs';
import { rateLatency, timeCalls } from '../lib/load.mjs';

export const title = 'Scale of state (active keys in SQLite)';

const SAMPLE = 2000;

/**
 * A key record exactly as the running gateway stores it today (the record grows: tenants,
 * budgets…): one key issued through the control API on this file, read back from the store.
 */
async function templateRecord(ctx, path) {
  const gw = await startKeyleash(ctx.upstream.proxyUrl, { path });
  const key = await issueKey(gw.apiUrl, { ...stripeKey(100), allowed_endpoints: ['POST /v1/payment_intents', 'POST /v1/refunds'] });
  await gw.stop();
  const store = new SqliteStore({ path });
  const record = await store.getKeyById(key.id);
  return { store, record, token: key.token };
}

/** Fills a store through its own createKey, in transactions of 10,000. Resolves to sample tokens. */
async function build(ctx, path, n) {
  const { store, record, token: warmupToken } = await templateRecord(ctx, path);
  // The store group-commits the writes of one event-loop turn: a batch of 10,000 createKey calls
  // made in one turn is one transaction instead of a commit per key.
  const pending = [];
  const batch = async (records) => {
    const batchPending = records.map((r) => store.createKey(r));
    pending.push(...batchPending);
    await Promise.all(batchPending);
  };
  const now = Date.now();
  const every = Math.max(1, Math.floor(n / (2 * SAMPLE)));
  const samples = [];
  const started = performance.now();
  for (let i = 1; i < n; ) {
    const records = [];
    for (let j = 0; j < 10_000 && i < n; j++, i++) {
      const token = generateToken('test');
      if (i % every === 0 && samples.length < 2 * SAMPLE) samples.push(token);
      records.push({
        ...record,
        id: newId('key'),
        tokenHash: hashToken(token),
        label: `bench-${i}`,
        metadata: { run: `r${i}` },
        createdAt: now,
        expiresAt: now + 23 * 3600_000,
      });
    }
    await batch(records);
  }
  return Promise.all(pending).then(() => ({ store, samples, warmupToken, buildS: (performance.now() - started) / 1000 }));
}

async function measure(ctx, n) {
  const path = join(ctx.dir, `scale-${n}.sqlite`);
  const { store, samples, warmupToken, buildS } = await build(ctx, path, n);
  // Straight on the store: random sampled hashes, then random misses.
  const hashes = samples.map(hashToken);
  const storeLookup = await timeCalls(20_000, (i) => store.getKeyByHash(hashes[(i * 7919) % hashes.length]));
  await store.close();

  const gw = await startKeyleash(ctx.upstream.proxyUrl, { path });
  const rssStart = gw.rssBytes();
  // A GET the keys do not allow: authenticate + look up + refuse (403) + audit, no reservation or upstream.
  const make = (tokens) => (i) => ({ path: '/v1/customers', method: 'GET', headers: { authorization: `Bearer ${tokens[i % tokens.length]}` } });
  const expect = (s) => s === 403;
  // The moderate rate of scenario 1 (a quarter of keyleash's capacity), else 250/s.
  const rate = ctx.moderateRate ?? (ctx.smoke ? 200 : 250);
  const tokens = samples.slice(0, SAMPLE);
  // Warm the JIT on the same path with a key outside the sample (cold store lookups stay cold).
  await rateLatency(gw.proxyUrl, { rate, durationS: ctx.smoke ? 0.5 : 2, warmupS: 0, make: make([warmupToken]), expect });
  // Cold: each sampled key used once, so every lookup misses the cache. Warm: the same keys again.
  const cold = await rateLatency(gw.proxyUrl, { rate, durationS: tokens.length / rate, warmupS: 0, make: make(tokens), expect });
  const warm = await rateLatency(gw.proxyUrl, { rate, durationS: ctx.smoke ? 1 : 4, warmupS: 0, make: make(tokens), expect });
  const rssAfter = gw.rssBytes();
  await gw.stop();
  return {
    keys: n,
    build_s: Math.round(buildS * 10) / 10,
    startup_ms: Math.round(gw.readyMs),
    startup_in_process_ms: gw.startupMs,
    rss_mb_at_start: Math.round(rssStart / 2 ** 20),
    rss_mb_after_lookups: Math.round(rssAfter / 2 ** 20),
    store_lookup: storeLookup,
    proxy_cold: cold,
    proxy_warm: warm,
  };
}

export async function run(ctx) {
  const big = ctx.smoke ? 20_000 : 1_000_000;
  const small = await measure(ctx, 1000);
  const large = await measure(ctx, big);
  return {
    small,
    large,
    ratio_proxy_cold_p99: large.proxy_cold.p99_ms / small.proxy_cold.p99_ms,
    ratio_proxy_warm_p99: large.proxy_warm.p99_ms / small.proxy_warm.p99_ms,
    ratio_store_p99: large.store_lookup.p99_ms / small.store_lookup.p99_ms,
    ok: large.proxy_cold.unexpected_status === 0 && large.proxy_warm.unexpected_status === 0 && large.proxy_cold.count > 0,
  };
}
