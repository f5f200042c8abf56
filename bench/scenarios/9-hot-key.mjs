// 9. One hot key: all 50 connections on one capped key, a JSON body converted to a form (the
// stripe-node shape), SQLite. Every call checks and moves the same counters.
import { issueKey, stripeKey } from '../lib/context.mjs';
import { throughput } from '../lib/load.mjs';

export const title = 'One hot key (50 connections on one capped key, JSON body converted to form, SQLite)';

export const JSON_HEADERS = { 'content-type': 'application/json' };
export const JSON_BODY = JSON.stringify({ amount: 100, currency: 'usd' });

export async function run(ctx) {
  const key = await issueKey(ctx.keyleash.apiUrl, stripeKey());
  const load = { path: '/v1/payment_intents', headers: JSON_HEADERS, body: JSON_BODY, auth: `Bearer ${key.token}`, connections: 50, durationS: ctx.t.durationS, warmupS: ctx.t.warmupS };
  const bare = await throughput(ctx.bare.proxyUrl, load);
  const kl = await throughput(ctx.keyleash.proxyUrl, { ...load, path: '/stripe/v1/payment_intents' });
  return {
    throughput: { bare, keyleash: kl, ratio: kl.rps / bare.rps },
    tail: { p50_ms: kl.p50_ms_coarse, p99_ms: kl.p99_ms_coarse, p99_over_p50: kl.p99_ms_coarse / Math.max(1, kl.p50_ms_coarse) },
    ok: kl.requests > 0 && kl.non2xx === 0 && kl.errors === 0,
  };
}
