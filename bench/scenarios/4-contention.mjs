// 4. Contention: every call on ONE capped key (each reservation serializes on that key's row),
// then exactness: a $50 cap under 100 concurrent $1 calls must allow exactly 50.
import { FORM, getKey, issueKey, PI_BODY, stripeKey } from '../lib/context.mjs';
import { rateLatency, throughput } from '../lib/load.mjs';

export const title = 'Contention (one capped key, 100 connections)';

export async function run(ctx) {
  const { t } = ctx;
  const key = await issueKey(ctx.keyleash.apiUrl, stripeKey());
  const auth = `Bearer ${key.token}`;
  const load = { path: '/v1/payment_intents', headers: FORM, body: PI_BODY, auth, connections: 100, durationS: t.durationS, warmupS: t.warmupS };
  const bare = await throughput(ctx.bare.proxyUrl, load);
  const kl = await throughput(ctx.keyleash.proxyUrl, { ...load, path: '/stripe/v1/payment_intents' });
  const make = (path) => () => ({ path, headers: { ...FORM, authorization: auth }, body: PI_BODY });
  const lat = { rate: ctx.moderateRate ?? t.rate, durationS: t.latencyS, warmupS: t.warmupS };
  const bareLat = await rateLatency(ctx.bare.proxyUrl, { ...lat, make: make('/v1/payment_intents') });
  const klLat = await rateLatency(ctx.keyleash.proxyUrl, { ...lat, make: make('/stripe/v1/payment_intents') });

  // Exactness under the same contention: $50 cap, $1 per call.
  const small = await issueKey(ctx.keyleash.apiUrl, stripeKey(50));
  const burst = await throughput(ctx.keyleash.proxyUrl, {
    ...load,
    path: '/stripe/v1/payment_intents',
    auth: `Bearer ${small.token}`,
    durationS: 1,
    warmupS: 0,
  });
  const allowed = burst.requests - burst.non2xx;
  const after = await getKey(ctx.keyleash.apiUrl, small.id);
  return {
    throughput: { bare, keyleash: kl, ratio: kl.rps / bare.rps },
    latency: { bare: bareLat, keyleash: klLat, added_p50_ms: klLat.p50_ms - bareLat.p50_ms, added_p99_ms: klLat.p99_ms - bareLat.p99_ms },
    exactness: { cap_usd: 50, calls: burst.requests, allowed, spend_today_usd: after.spend_today_usd, exact: allowed === 50 && after.spend_today_usd === 50 },
    ok: kl.requests > 0 && kl.non2xx === 0 && allowed === 50 && after.spend_today_usd === 50,
  };
}
