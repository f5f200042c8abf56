// 9. One hot key: all 50 connections on one capped key, a JSON body converted to a form (the
// stripe-node shape), SQLite. Every call checks and moves the same counters.
import { issueKey, stripeKey } from '../lib/context.mjs';
import { sideBySide, throughput } from '../lib/load.mjs';

export const title = 'One hot key (50 connections on one capped key, JSON body converted to form, SQLite)';

export const JSON_HEADERS = { 'content-type': 'application/json' };
export const JSON_BODY = JSON.stringify({ amount: 100, currency: 'usd' });

/** The hot-key load on `proxyUrl` (a keyleash) and on the bare pass-through, side by side. */
export async function hotKey(ctx, apiUrl, proxyUrl) {
  const key = await issueKey(apiUrl, stripeKey());
  const load = { path: '/v1/payment_intents', headers: JSON_HEADERS, body: JSON_BODY, auth: `Bearer ${key.token}`, connections: 50, durationS: ctx.t.durationS, warmupS: ctx.t.warmupS };
  const tp = await sideBySide(
    ctx.smoke ? 1 : 2,
    () => throughput(ctx.bare.proxyUrl, load),
    () => throughput(proxyUrl, { ...load, path: '/stripe/v1/payment_intents' }),
  );
  const kl = tp.keyleash;
  return {
    throughput: tp,
    tail: { p50_ms: kl.p50_ms_coarse, p99_ms: kl.p99_ms_coarse, p99_over_p50: kl.p99_ms_coarse / Math.max(1, kl.p50_ms_coarse) },
    ok: kl.requests > 0 && kl.non2xx === 0 && kl.errors === 0,
  };
}

export async function run(ctx) {
  return hotKey(ctx, ctx.keyleash.apiUrl, ctx.keyleash.proxyUrl);
}
