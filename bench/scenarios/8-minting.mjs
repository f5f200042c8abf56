// 8. Minted keys: minting and narrowing in this process (the SDK, no I/O), a minted key's first
// call through the proxy against an issued key's first call, and later calls against issued keys.
import { createHmac, randomBytes } from 'node:crypto';
import { Pool, request } from 'undici';
import { Minter, narrowKey } from '../../packages/sdk/dist/index.js';
import { ADMIN_TOKEN, FORM, issueKey, PI_BODY, stripeKey } from '../lib/context.mjs';
import { percentile, throughput } from '../lib/load.mjs';

export const title = 'Minted keys (mint and narrow offline, first use, later uses)';

const r4 = (x) => Math.round(x * 10_000) / 10_000;
const us = (ms) => Math.round(ms * 1000 * 100) / 100;

function stats(lat) {
  const s = Float64Array.from(lat).sort();
  return { count: s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s[s.length - 1] };
}

/** Calls `fn` n times as fast as it goes, then n more times each timed on its own. */
function measure(n, fn) {
  for (let i = 0; i < Math.min(n, 20_000); i++) fn(i);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  const perSecond = Math.round(n / ((performance.now() - t0) / 1000));
  const lat = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    fn(i);
    lat[i] = performance.now() - s;
  }
  const st = stats(lat);
  return { per_second: perSecond, p50_us: us(st.p50), p99_us: us(st.p99), p999_us: us(percentile(Float64Array.from(lat).sort(), 99.9)), max_us: us(st.max), calls: n };
}

async function createMintingKey(apiUrl) {
  const r = await request(`${apiUrl}/v1/minting_keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ label: 'bench', vendors: ['stripe'], allowed_endpoints: ['POST /v1/payment_intents'], max_daily_usd_cap: 1_000_000, max_ttl: '1h' }),
  });
  const json = await r.body.json();
  if (r.statusCode !== 201) throw new Error(`creating a minting key failed: ${r.statusCode} ${JSON.stringify(json)}`);
  return json;
}

export async function run(ctx) {
  const { smoke } = ctx;
  const mk = await createMintingKey(ctx.keyleash.apiUrl);
  const minter = new Minter(mk.secret);
  const params = { vendor: 'stripe', allowedEndpoints: ['POST /v1/payment_intents'], dailyUsdCap: 1000, expiresIn: '1h', label: 'bench-run', metadata: { run: 'bench', user: 'u42' } };

  // A. In this process: the SDK's mint and narrow, against the bare crypto they cannot avoid
  // (18 random bytes for the id and one HMAC-SHA256), measured back to back.
  const n = smoke ? 50_000 : 500_000;
  const key = randomBytes(32);
  const block = JSON.stringify({ ...params, id: 'x'.repeat(54) });
  const floor = measure(n, () => createHmac('sha256', key).update(block).update(randomBytes(18)).digest('base64url'));
  const mint = measure(n, () => minter.mint(params));
  const parent = minter.mint(params);
  const narrow = measure(Math.round(n / 5), () => narrowKey(parent, { dailyUsdCap: 10, label: 'tool' }));
  const timerOnly = measure(n, () => undefined);

  // B. Through the proxy, one call at a time: a fresh key's first call (issued: looked up;
  // minted: verified and created), then its second call, alternating kinds to share any drift.
  const pool = new Pool(ctx.keyleash.proxyUrl, { connections: 1 });
  const call = async (token) => {
    const s = performance.now();
    const res = await pool.request({ path: '/stripe/v1/payment_intents', method: 'POST', headers: { ...FORM, authorization: `Bearer ${token}` }, body: PI_BODY });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`proxy answered ${res.statusCode}`);
    return performance.now() - s;
  };
  const rounds = smoke ? 30 : 400;
  const first = { issued: [], minted: [], narrowed: [] };
  const second = { issued: [], minted: [], narrowed: [] };
  for (let i = 0; i < 10; i++) await call(minter.mint(params).token); // warm-up
  for (let i = 0; i < rounds; i++) {
    const issued = (await issueKey(ctx.keyleash.apiUrl, stripeKey())).token;
    const minted = minter.mint(params).token;
    const narrowed = narrowKey(minter.mint(params), { dailyUsdCap: 10 }).token;
    for (const [kind, token] of [['issued', issued], ['minted', minted], ['narrowed', narrowed]]) {
      first[kind].push(await call(token));
      second[kind].push(await call(token));
    }
  }
  // Later calls, one at a time, the kinds interleaved call by call over keys used before: the
  // same-moment comparison, free of the drift between separate load runs.
  // Caps as high as the issued keys' ($1,000,000 a day), so no call ends at a cap.
  const loadParams = { ...params, dailyUsdCap: 1_000_000 };
  const used = { issued: [], minted: [], narrowed: [] };
  for (let i = 0; i < 20; i++) {
    used.issued.push((await issueKey(ctx.keyleash.apiUrl, stripeKey())).token);
    used.minted.push(minter.mint(loadParams).token);
    used.narrowed.push(narrowKey(minter.mint(loadParams), { dailyUsdCap: 1_000_000 }).token);
  }
  for (const kind of Object.keys(used)) for (const token of used[kind]) await call(token);
  const later = { issued: [], minted: [], narrowed: [] };
  const order = [['issued', 'minted', 'narrowed'], ['minted', 'narrowed', 'issued'], ['narrowed', 'issued', 'minted']];
  for (let i = 0; i < (smoke ? 300 : 3000); i++) {
    for (const kind of order[i % 3]) later[kind].push(await call(used[kind][i % 20]));
  }
  await pool.close();
  const ms = (l) => {
    const s = stats(l);
    return { p50_ms: r4(s.p50), p90_ms: r4(s.p90), p99_ms: r4(s.p99), mean_ms: r4(l.reduce((a, b) => a + b, 0) / l.length), calls: s.count };
  };
  const interleaved = Object.fromEntries(Object.entries(later).map(([k, l]) => [k, ms(l)]));
  const firstUse = Object.fromEntries(Object.entries(first).map(([k, l]) => [k, ms(l)]));
  const laterUse = Object.fromEntries(Object.entries(second).map(([k, l]) => [k, ms(l)]));

  // C. Later calls under load: 50 keys of each kind, each used once before, rotated per call.
  const load = { path: '/stripe/v1/payment_intents', headers: FORM, body: PI_BODY, connections: 50, durationS: ctx.t.durationS, warmupS: ctx.t.warmupS };
  const issuedKeys = [];
  for (let i = 0; i < 50; i++) issuedKeys.push((await issueKey(ctx.keyleash.apiUrl, stripeKey())).token);
  const mintedKeys = Array.from({ length: 50 }, () => minter.mint(loadParams).token);
  const narrowedKeys = Array.from({ length: 50 }, () => narrowKey(minter.mint(loadParams), { dailyUsdCap: 1_000_000 }).token);
  const p1 = new Pool(ctx.keyleash.proxyUrl, { connections: 4 });
  for (const tk of [...mintedKeys, ...narrowedKeys]) {
    const res = await p1.request({ path: load.path, method: 'POST', headers: { ...FORM, authorization: `Bearer ${tk}` }, body: PI_BODY });
    await res.body.dump();
  }
  await p1.close();
  // A control: issued keys whose requests carry as many more bytes as a minted token does, in a
  // Cookie (read by the proxy's HTTP parser, never forwarded), to tell the token's size from
  // the minted path's own cost.
  const pad = { cookie: `pad=${'x'.repeat(Math.max(0, mintedKeys[0].length - issuedKeys[0].length - 12))}` };
  // Measured in the order A B C D D C B A and averaged, so a drift over the run (the SQLite file
  // and its WAL grow as it goes) weighs on every kind alike.
  const kinds = { issued: [issuedKeys, {}], issued_padded: [issuedKeys, pad], minted: [mintedKeys, {}], narrowed: [narrowedKeys, {}] };
  const runs = { issued: [], issued_padded: [], minted: [], narrowed: [] };
  for (const kind of ['issued', 'issued_padded', 'minted', 'narrowed', 'narrowed', 'minted', 'issued_padded', 'issued']) {
    const [keys, extra] = kinds[kind];
    runs[kind].push(await throughput(ctx.keyleash.proxyUrl, { ...load, headers: { ...FORM, ...extra }, auth: keys.map((k) => `Bearer ${k}`) }));
  }
  const both = ([a, b]) => ({
    rps: Math.round((a.rps + b.rps) / 2),
    requests: a.requests + b.requests,
    non2xx: a.non2xx + b.non2xx,
    errors: a.errors + b.errors,
    rps_each: [a.rps, b.rps],
  });
  const tIssued = both(runs.issued);
  const tPadded = both(runs.issued_padded);
  const tMinted = both(runs.minted);
  const tNarrowed = both(runs.narrowed);

  const issuance = ctx.issuanceKeysPerSecond ?? null;
  return {
    mint: { ...mint, vs_crypto_floor: r4(mint.per_second / floor.per_second), vs_issuance: issuance ? Math.round(mint.per_second / issuance) : null },
    narrow,
    crypto_floor: floor,
    timer_overhead_p50_us: timerOnly.p50_us,
    issuance_keys_per_s: issuance,
    first_use: { ...firstUse, added_p50_ms: r4(firstUse.minted.p50_ms - firstUse.issued.p50_ms), added_p99_ms: r4(firstUse.minted.p99_ms - firstUse.issued.p99_ms), narrowed_added_p50_ms: r4(firstUse.narrowed.p50_ms - firstUse.issued.p50_ms) },
    later_use: { ...laterUse, added_p50_ms: r4(laterUse.minted.p50_ms - laterUse.issued.p50_ms) },
    later_interleaved: {
      ...interleaved,
      minted_mean_ratio: r4(interleaved.minted.mean_ms / interleaved.issued.mean_ms),
      narrowed_mean_ratio: r4(interleaved.narrowed.mean_ms / interleaved.issued.mean_ms),
    },
    later_throughput: {
      issued: tIssued,
      issued_padded: tPadded,
      minted: tMinted,
      narrowed: tNarrowed,
      minted_ratio: r4(tMinted.rps / tIssued.rps),
      padded_ratio: r4(tPadded.rps / tIssued.rps),
      minted_vs_padded: r4(tMinted.rps / tPadded.rps),
      narrowed_ratio: r4(tNarrowed.rps / tIssued.rps),
      token_chars: { issued: issuedKeys[0].length, minted: mintedKeys[0].length },
    },
    ok: mint.per_second > 0 && [tIssued, tPadded, tMinted, tNarrowed].every((x) => x.requests > 0 && x.non2xx === 0 && x.errors === 0),
  };
}
