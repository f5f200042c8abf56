// 3. Issuance: POST /v1/keys on the control API, saturated and at a moderate fixed rate.
import { ADMIN_TOKEN, stripeKey } from '../lib/context.mjs';
import { rateLatency, throughput } from '../lib/load.mjs';

export const title = 'Issuance (POST /v1/keys)';

export async function run(ctx) {
  const { t } = ctx;
  const body = JSON.stringify({ ...stripeKey(100), metadata: { run: 'bench', user: 'u42' } });
  const headers = { 'content-type': 'application/json' };
  const sat = await throughput(ctx.keyleash.apiUrl, {
    path: '/v1/keys',
    headers,
    body,
    auth: `Bearer ${ADMIN_TOKEN}`,
    connections: 10,
    durationS: t.durationS,
    warmupS: t.warmupS,
  });
  const moderate = await rateLatency(ctx.keyleash.apiUrl, {
    rate: ctx.moderateRate ?? t.rate,
    durationS: t.latencyS,
    warmupS: 0,
    make: () => ({ path: '/v1/keys', body, headers: { ...headers, authorization: `Bearer ${ADMIN_TOKEN}` } }),
  });
  ctx.issuanceKeysPerSecond = sat.rps;
  // p99 of one issue at the saturating load: 10 connections in flight, so ≈ 10 / keys-per-second.
  return { saturated: sat, moderate, keys_per_s: sat.rps, ok: sat.requests > 0 && sat.non2xx === 0 && moderate.unexpected_status === 0 };
}
