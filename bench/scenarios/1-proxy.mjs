// 1. Proxy throughput and latency: a small Stripe-style POST with a capped vault key, audit on.
import { FORM, issueKey, PI_BODY, stripeKey } from '../lib/context.mjs';
import { rateLatency, throughput } from '../lib/load.mjs';

export const title = 'Proxy throughput and latency (Stripe POST, capped key, audit on, SQLite)';

export async function run(ctx) {
  const { t } = ctx;
  // One key per connection, as one key per agent run would be.
  const keys = [];
  for (let i = 0; i < 50; i++) keys.push(await issueKey(ctx.keyleash.apiUrl, stripeKey()));
  const auth = keys.map((k) => `Bearer ${k.token}`);
  const load = { path: '/v1/payment_intents', headers: FORM, body: PI_BODY, connections: 50, durationS: t.durationS, warmupS: t.warmupS };

  const bare = await throughput(ctx.bare.proxyUrl, { ...load, auth: auth[0] });
  const kl = await throughput(ctx.keyleash.proxyUrl, { ...load, path: '/stripe/v1/payment_intents', auth });

  // A moderate rate: 1,000/s on the reference machine is ~6 % of bare capacity; on a slower machine
  // that would saturate keyleash and measure queueing, so take a quarter of keyleash's own capacity.
  const rate = Math.max(50, Math.min(t.rate, Math.round((kl.rps * 0.25) / 50) * 50));
  ctx.moderateRate = rate;
  const make = (path) => (i) => ({ path, headers: { ...FORM, authorization: auth[i % auth.length] }, body: PI_BODY });
  const lat = { rate, durationS: t.latencyS, warmupS: t.warmupS };
  const bareLat = await rateLatency(ctx.bare.proxyUrl, { ...lat, make: make('/v1/payment_intents') });
  const klLat = await rateLatency(ctx.keyleash.proxyUrl, { ...lat, make: make('/stripe/v1/payment_intents') });

  return {
    throughput: { bare, keyleash: kl, ratio: kl.rps / bare.rps },
    latency: {
      bare: bareLat,
      keyleash: klLat,
      added_p50_ms: klLat.p50_ms - bareLat.p50_ms,
      added_p99_ms: klLat.p99_ms - bareLat.p99_ms,
    },
    ok: kl.requests > 0 && kl.non2xx === 0 && kl.errors === 0 && klLat.unexpected_status === 0,
  };
}
