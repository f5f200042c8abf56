// Turns a run's results into the Markdown tables of RESULTS.md (between the generated markers;
// the hand-written analysis around them is kept).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const f = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(d));
const n = (x) => (x === null || x === undefined ? '–' : Math.round(x).toLocaleString('en-US'));
const pct = (x) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(0)} %`);
const met = (b) => (b === null ? 'n/a' : b ? '**met**' : '**missed**');

export function evaluateTargets(s) {
  const t = [];
  const s1 = s['1-proxy'];
  if (s1?.throughput) {
    t.push({ target: 'Proxy throughput ≥ 70 % of bare (SQLite, every check on)', value: pct(s1.throughput.ratio), met: s1.throughput.ratio >= 0.7 });
    t.push({ target: 'Added p50 ≤ 0.5 ms at moderate load', value: `${f(s1.latency.added_p50_ms, 3)} ms`, met: s1.latency.added_p50_ms <= 0.5 });
    t.push({ target: 'Added p99 ≤ 2 ms at moderate load', value: `${f(s1.latency.added_p99_ms, 3)} ms`, met: s1.latency.added_p99_ms <= 2 });
  }
  const s2 = s['2-streaming'];
  if (s2?.keyleash) {
    t.push({ target: 'Streaming adds ≤ 1 ms to time to first byte (p50)', value: `${f(s2.added_ttfb_p50_ms, 3)} ms`, met: s2.added_ttfb_p50_ms <= 1 });
    t.push({ target: 'Streaming never buffers the body (first byte ≪ total)', value: `first byte at ${pct(s2.first_byte_share_of_total)} of total`, met: s2.first_byte_share_of_total < 0.2 });
  }
  const s3 = s['3-issuance'];
  if (s3?.saturated) {
    t.push({ target: 'Issuance ≥ 5,000 keys/s', value: `${n(s3.keys_per_s)} keys/s`, met: s3.keys_per_s >= 5000 });
    t.push({ target: 'Issuance p99 ≤ 5 ms (at that load)', value: `${f(s3.saturated.p99_ms_coarse, 0)} ms (moderate load: ${f(s3.moderate.p99_ms, 2)} ms)`, met: s3.saturated.p99_ms_coarse <= 5 });
  }
  const s5 = s['5-scale'];
  if (s5?.large) {
    t.push({ target: `${n(s5.large.keys)} keys: p99 lookup ≤ 1.2× the 1,000-key case (proxy, cold)`, value: `${f(s5.ratio_proxy_cold_p99)}×`, met: s5.ratio_proxy_cold_p99 <= 1.2 });
    t.push({ target: `${n(s5.large.keys)} keys: p99 lookup ≤ 1.2× (proxy, warm cache)`, value: `${f(s5.ratio_proxy_warm_p99)}×`, met: s5.ratio_proxy_warm_p99 <= 1.2 });
    t.push({ target: `${n(s5.large.keys)} keys: RSS ≤ 1 GB`, value: `${n(s5.large.rss_mb_after_lookups)} MB`, met: s5.large.rss_mb_after_lookups <= 1024 });
  }
  const s6 = s['6-backends'];
  if (s6) {
    if (s6.pgredis?.w1) {
      const sc = s6.pgredis.w2.rps / s6.pgredis.w1.rps;
      t.push({ target: 'Postgres+Redis scales with processes (1 → 2 workers)', value: `${n(s6.pgredis.w1.rps)} → ${n(s6.pgredis.w2.rps)} req/s (${f(sc)}×)`, met: sc > 1.1 });
    } else {
      t.push({ target: 'Postgres+Redis scales with processes (1 → 2 workers)', value: s6.pgredis?.unavailable ?? 'not run', met: null });
    }
  }
  const s9 = s['9-hot-key'];
  if (s9?.throughput) {
    t.push({ target: 'One hot key ≥ 65 % of bare (SQLite, JSON body converted to form)', value: pct(s9.throughput.ratio), met: s9.throughput.ratio >= 0.65 });
  }
  const s10 = s['10-pg-redis-hot-key'];
  if (s10?.throughput) {
    t.push({ target: 'One hot key on Postgres+Redis (one replica) ≥ 40 % of bare', value: pct(s10.throughput.ratio), met: s10.throughput.ratio >= 0.4 });
    // Before the group-committed write path this load ran at ≈ 5 % of bare (590 req/s).
    t.push({ target: 'One hot key on Postgres+Redis ≥ 3× the figure before the write path (≈ 5 % of bare)', value: `${f(s10.throughput.ratio / 0.05, 1)}×`, met: s10.throughput.ratio >= 0.15 });
  } else if (s10?.unavailable) {
    t.push({ target: 'One hot key on Postgres+Redis (one replica) ≥ 40 % of bare', value: s10.unavailable, met: null });
  }
  // No stalls: under saturation the tail stays within 10× the median on every keyleash row.
  const tails = [['1', s1?.throughput?.keyleash], ['9', s9?.throughput?.keyleash], ['10', s10?.throughput?.keyleash]].filter(([, r]) => r);
  if (tails.length) {
    const worst = Math.max(...tails.map(([, r]) => r.p99_ms_coarse / Math.max(1, r.p50_ms_coarse)));
    t.push({
      target: 'Under saturation, p99 ≤ 10× p50 on every keyleash row (scenarios 1, 9, 10)',
      value: tails.map(([k, r]) => `${k}: ${f(r.p99_ms_coarse, 0)} / ${f(r.p50_ms_coarse, 0)} ms`).join('; '),
      met: worst <= 10,
    });
  }
  const s8 = s['8-minting'];
  if (s8?.mint) {
    t.push({ target: 'Minting ≥ 100,000 keys/s in one Node process', value: `${n(s8.mint.per_second)} keys/s`, met: s8.mint.per_second >= 100_000 });
    t.push({ target: 'Minting p99 ≤ 50 µs', value: `${f(s8.mint.p99_us, 1)} µs`, met: s8.mint.p99_us <= 50 });
    t.push({ target: "A minted key's first use adds ≤ 1 ms over an issued key's (p50)", value: `${f(s8.first_use.added_p50_ms, 3)} ms (p99 ${f(s8.first_use.added_p99_ms, 3)} ms)`, met: s8.first_use.added_p50_ms <= 1 });
    const li = s8.later_interleaved;
    if (li) {
      t.push({
        target: 'Later uses of a minted key cost the same as an issued key (mean per call within 5 %, calls interleaved)',
        value: `${f(li.minted_mean_ratio, 3)}× (throughput under load: ${pct(s8.later_throughput.minted_ratio)})`,
        met: li.minted_mean_ratio <= 1.05,
      });
    }
  }
  return t;
}

function latRow(name, l) {
  return `| ${name} | ${f(l.p50_ms, 3)} | ${f(l.p90_ms, 3)} | ${f(l.p99_ms, 3)} | ${f(l.max_ms, 2)} | ${n(l.count)} |`;
}
function tpRow(name, r, base) {
  return `| ${name} | ${n(r.rps)} | ${base ? pct(r.rps / base) : '100 %'} | ${f(r.p50_ms_coarse, 0)} / ${f(r.p99_ms_coarse, 0)} | ${n(r.non2xx)} | ${n(r.errors)} |`;
}
const TP_HEAD = '| system | req/s | vs bare | p50 / p99 ms (autocannon, whole ms) | non-2xx | errors |\n|---|---|---|---|---|---|';
const LAT_HEAD = '| system | p50 ms | p90 ms | p99 ms | max ms | calls |\n|---|---|---|---|---|---|';

export function markdown(run) {
  const s = run.scenarios;
  const out = [];
  out.push(`Run: ${run.started} (${run.mode}), ${run.duration_s} s in all. Command: \`${run.command}\`.`, '');
  // Only the latest re-run of each scenario counts; earlier ones were superseded.
  const merges = run.merged ?? [];
  const latest = merges.filter((m, i) => m.scenarios.some((sc) => !merges.slice(i + 1).some((later) => later.scenarios.includes(sc))));
  for (const m of latest) {
    out.push(`Scenarios ${m.scenarios.join(', ')} re-run together at ${m.started} (\`--only … --merge\`) and merged in; each scenario's numbers come from one run.`, '');
  }
  out.push(`Machine: ${run.machine.cpus}× ${run.machine.cpu_model}, ${run.machine.memory}, ${run.machine.os}, Node ${run.machine.node}. `
    + 'Load generator (autocannon / an open-loop undici client), upstream stub and the system under test each run in their own process, '
    + 'all on these 2 cores, unpinned: absolute numbers are lower than on a machine where the load generator has its own cores; the ratios are what to read.', '');
  out.push('### Targets', '', '| target | measured | verdict |', '|---|---|---|');
  for (const t of evaluateTargets(s)) out.push(`| ${t.target} | ${t.value} | ${met(t.met)} |`);
  out.push('');

  const s1 = s['1-proxy'];
  if (s1?.throughput) {
    out.push('### 1. Proxy throughput and latency', '', `Small Stripe POST (\`amount=100&currency=usd\`), 50 keys capped at $1,000,000/day rotated per call, audit on, SQLite. Throughput: 50 connections, ${s1.throughput.bare.duration_s} s after warm-up.`, '', TP_HEAD);
    out.push(tpRow('bare pass-through', s1.throughput.bare), tpRow('keyleash', s1.throughput.keyleash, s1.throughput.bare.rps), '');
    out.push(`Latency at a fixed ${n(s1.latency.bare.rate)} req/s (open loop):`, '', LAT_HEAD, latRow('bare pass-through', s1.latency.bare), latRow('keyleash', s1.latency.keyleash));
    out.push(`| **added by keyleash** | **${f(s1.latency.added_p50_ms, 3)}** | | **${f(s1.latency.added_p99_ms, 3)}** | | |`, '');
  } else if (s1?.error) out.push('### 1. Proxy', '', `Failed: ${s1.error}`, '');

  const s2 = s['2-streaming'];
  if (s2?.keyleash) {
    out.push('### 2. Streaming (SSE)', '', `OpenAI-style chat completion streamed by the stub as ${s2.keyleash.events_per_call} SSE events (200 content chunks ~1 ms apart, then the usage chunk and \`[DONE]\`); keyleash meters it through its OpenAI vendor (counts tokens as they pass, settles from the usage chunk). ${s2.keyleash.calls} sequential calls each.`, '');
    out.push('| system | first byte p50 ms | first byte p99 ms | total p50 ms | total p99 ms |', '|---|---|---|---|---|');
    for (const [name, r] of [['bare pass-through', s2.bare], ['keyleash', s2.keyleash]]) out.push(`| ${name} | ${f(r.ttfb_p50_ms, 3)} | ${f(r.ttfb_p99_ms, 3)} | ${f(r.total_p50_ms, 1)} | ${f(r.total_p99_ms, 1)} |`);
    out.push(`| **added / ratio** | **${f(s2.added_ttfb_p50_ms, 3)}** | ${f(s2.added_ttfb_p99_ms, 3)} | ${f(s2.total_ratio, 3)}× | |`, '');
  } else if (s2?.error) out.push('### 2. Streaming', '', `Failed: ${s2.error}`, '');

  const s3 = s['3-issuance'];
  if (s3?.saturated) {
    out.push('### 3. Issuance', '', `\`POST /v1/keys\` (Stripe key, cap, TTL, two metadata pairs) with the admin token. Saturated: 10 connections; moderate: ${n(s3.moderate.rate)} keys/s open loop.`, '');
    out.push('| load | keys/s | vs target 5,000 | p50 ms | p99 ms |', '|---|---|---|---|---|');
    out.push(`| saturated (10 connections) | ${n(s3.saturated.rps)} | ${pct(s3.saturated.rps / 5000)} | ${f(s3.saturated.p50_ms_coarse, 0)} | ${f(s3.saturated.p99_ms_coarse, 0)} (whole ms) |`);
    out.push(`| moderate (${n(s3.moderate.rate)}/s) | ${n(s3.moderate.count / (s3.moderate.count / s3.moderate.rate))} | – | ${f(s3.moderate.p50_ms, 3)} | ${f(s3.moderate.p99_ms, 3)} |`, '');
    out.push('Hosted vault-key services: 30–80 ms per issue over HTTPS (from the issue; not measured here).', '');
  } else if (s3?.error) out.push('### 3. Issuance', '', `Failed: ${s3.error}`, '');

  const s4 = s['4-contention'];
  if (s4?.throughput) {
    out.push('### 4. Contention (one capped key)', '', 'Every call on the same key, 100 connections.', '', TP_HEAD);
    out.push(tpRow('bare pass-through', s4.throughput.bare), tpRow('keyleash, one key', s4.throughput.keyleash, s4.throughput.bare.rps), '');
    out.push(`At ${n(s4.latency.bare.rate)} req/s on the one key:`, '', LAT_HEAD, latRow('bare pass-through', s4.latency.bare), latRow('keyleash', s4.latency.keyleash));
    out.push(`| **added** | **${f(s4.latency.added_p50_ms, 3)}** | | **${f(s4.latency.added_p99_ms, 3)}** | | |`, '');
    const e = s4.exactness;
    out.push(`Exactness under the same contention: a $${e.cap_usd} cap, $1 calls, 100 connections for 1 s → ${n(e.calls)} calls, **${n(e.allowed)} allowed**, spend $${e.spend_today_usd} (${e.exact ? 'exact' : 'NOT exact'}).`, '');
  } else if (s4?.error) out.push('### 4. Contention', '', `Failed: ${s4.error}`, '');

  const s5 = s['5-scale'];
  if (s5?.large) {
    out.push('### 5. Scale of state', '', 'Keys inserted through `SqliteStore.createKey` in transactions of 10,000 into a fresh file, then a gateway started on it. Lookup through the proxy: a GET the keys do not allow (authenticate → look up → refuse 403 → audit), so no reservation or upstream is in the number; cold = first use of each key (cache miss → SQLite), warm = the same keys again (key cache). Store: `getKeyByHash` called directly in the bench process.', '');
    out.push('| keys | build s | start-up ms (spawn → listening) | RSS at start MB | RSS after MB | store lookup p50 / p99 ms | proxy cold p50 / p99 ms | proxy warm p50 / p99 ms |', '|---|---|---|---|---|---|---|---|');
    for (const r of [s5.small, s5.large]) out.push(`| ${n(r.keys)} | ${f(r.build_s, 1)} | ${n(r.startup_ms)} | ${n(r.rss_mb_at_start)} | ${n(r.rss_mb_after_lookups)} | ${f(r.store_lookup.p50_ms, 4)} / ${f(r.store_lookup.p99_ms, 4)} | ${f(r.proxy_cold.p50_ms, 3)} / ${f(r.proxy_cold.p99_ms, 3)} | ${f(r.proxy_warm.p50_ms, 3)} / ${f(r.proxy_warm.p99_ms, 3)} |`);
    out.push(`| **ratio** | | ${f(s5.large.startup_ms / s5.small.startup_ms)}× | | ${f(s5.large.rss_mb_after_lookups / s5.small.rss_mb_after_lookups)}× | p99 ${f(s5.ratio_store_p99)}× | p99 ${f(s5.ratio_proxy_cold_p99)}× | p99 ${f(s5.ratio_proxy_warm_p99)}× |`, '');
  } else if (s5?.error) out.push('### 5. Scale', '', `Failed: ${s5.error}`, '');

  const s6 = s['6-backends'];
  if (s6?.sqlite) {
    out.push('### 6. Backends and processes', '', 'The scenario-1 load (50 connections, 50 capped keys). Workers are node:cluster processes on one port sharing the store.', '');
    out.push('| system | processes | req/s | vs bare (1 process) | vs bare (same processes) | non-2xx |', '|---|---|---|---|---|---|');
    const b1 = s6.bare.w1.rps;
    out.push(`| bare pass-through | 1 | ${n(b1)} | 100 % | 100 % | ${n(s6.bare.w1.non2xx)} |`);
    out.push(`| bare pass-through | 2 | ${n(s6.bare.w2.rps)} | ${pct(s6.bare.w2.rps / b1)} | 100 % | ${n(s6.bare.w2.non2xx)} |`);
    for (const [name, r] of [['keyleash SQLite', s6.sqlite.w1], ['keyleash SQLite (one file)', s6.sqlite.w2]]) out.push(`| ${name} | ${r.workers} | ${n(r.rps)} | ${pct(r.rps / b1)} | ${pct(r.rps / (r.workers > 1 ? s6.bare.w2.rps : b1))} | ${n(r.non2xx)} |`);
    if (s6.pgredis?.w1) {
      for (const r of [s6.pgredis.w1, s6.pgredis.w2]) out.push(`| keyleash Postgres+Redis | ${r.workers} | ${n(r.rps)} | ${pct(r.rps / b1)} | ${pct(r.rps / (r.workers > 1 ? s6.bare.w2.rps : b1))} | ${n(r.non2xx)} |`);
    } else out.push(`| keyleash Postgres+Redis | 1, 2 | ${s6.pgredis?.unavailable ?? 'not run'} | | | |`);
    out.push('');
  } else if (s6?.error) out.push('### 6. Backends', '', `Failed: ${s6.error}`, '');

  const s7 = s['7-peer'];
  if (s7?.bare) {
    out.push('### 7. Peer: Portkey AI gateway', '', `\`@portkey-ai/gateway\` from npm (bench devDependency), started with its CLI (\`build/start-server.js --headless\`), forwarding with \`x-portkey-provider: openai\` + \`x-portkey-custom-host\` to the same stub. The request is the one all three can proxy: a non-streamed chat completion (keyleash: OpenAI vendor, capped key, metered from the answer's usage). 50 connections; latency open loop at ${n(s7.bare.latency.rate)} req/s.`, '');
    out.push('| system | req/s | vs bare | p50 ms | p99 ms (at fixed rate) | non-2xx |', '|---|---|---|---|---|---|');
    for (const name of ['bare', 'keyleash', 'portkey']) {
      const r = s7[name];
      out.push(`| ${name === 'bare' ? 'bare pass-through' : name} | ${n(r.throughput.rps)} | ${pct(r.throughput.rps / s7.bare.throughput.rps)} | ${f(r.latency.p50_ms, 3)} | ${f(r.latency.p99_ms, 3)} | ${n(r.throughput.non2xx)} |`);
    }
    out.push('', `Portkey streaming through a custom host answered: \`${s7.portkey_stream_answer}\`, so it has no row in scenario 2: Portkey 1.15.2 on Node 20 logs \`TypeError: immutable\` from \`Headers.append\` in its response-header rewrite for a streamed answer (its own bug, seen in its log; non-streamed calls work).`, '');
  } else if (s7) out.push('### 7. Peer: Portkey', '', `Not measured: ${s7.unavailable ?? s7.error}`, '');

  const s8 = s['8-minting'];
  if (s8?.mint) {
    out.push('### 8. Minted keys', '', `Minting and narrowing: the SDK's \`Minter.mint\` / \`narrowKey\` (packages/sdk) called in the bench process, ${n(s8.mint.calls)} times back to back for the rate, then each call timed on its own for the percentiles (the timer alone: ${f(s8.timer_overhead_p50_us, 2)} µs). The floor is what a mint cannot avoid: 18 random bytes and one HMAC-SHA256 over a block of the same size.`, '');
    out.push('| operation | per second | p50 µs | p99 µs | p99.9 µs | max µs |', '|---|---|---|---|---|---|');
    for (const [name, r] of [['crypto floor (random bytes + HMAC)', s8.crypto_floor], ['mint a key (Minter.mint)', s8.mint], ['narrow a key (narrowKey)', s8.narrow]]) {
      out.push(`| ${name} | ${n(r.per_second)} | ${f(r.p50_us, 2)} | ${f(r.p99_us, 2)} | ${f(r.p999_us, 2)} | ${f(r.max_us, 1)} |`);
    }
    out.push('', `Minting runs at ${pct(s8.mint.vs_crypto_floor)} of the crypto floor${s8.mint.vs_issuance ? ` and ${n(s8.mint.vs_issuance)}× the rate of \`POST /v1/keys\` in this run (scenario 3: ${n(s8.issuance_keys_per_s)} keys/s)` : ''}, with no network call and no gateway needed.`, '');
    const fu = s8.first_use;
    const lu = s8.later_use;
    out.push(`Through the proxy, one call at a time (${n(fu.issued.calls)} fresh keys of each kind, kinds alternating): a key's first call — issued: found by hash (the key cache is filled at issuance); minted: chain verified and its record created in the store; narrowed: the same for a key and its parent — then its second call.`, '');
    out.push('| key | first call p50 ms | first call p99 ms | second call p50 ms | second call p99 ms |', '|---|---|---|---|---|');
    for (const k of ['issued', 'minted', 'narrowed']) out.push(`| ${k} | ${f(fu[k].p50_ms, 3)} | ${f(fu[k].p99_ms, 3)} | ${f(lu[k].p50_ms, 3)} | ${f(lu[k].p99_ms, 3)} |`);
    out.push(`| **minted − issued** | **${f(fu.added_p50_ms, 3)}** | ${f(fu.added_p99_ms, 3)} | ${f(lu.added_p50_ms, 3)} | |`, '');
    if (s8.later_interleaved) {
      const li = s8.later_interleaved;
      out.push(`Later calls, one at a time, the three kinds interleaved call by call (${n(li.issued.calls)} calls each over 20 keys of each kind used before):`, '');
      out.push('| key | p50 ms | p90 ms | p99 ms | mean ms | mean vs issued |', '|---|---|---|---|---|---|');
      for (const k of ['issued', 'minted', 'narrowed']) {
        const ratio = k === 'issued' ? 1 : k === 'minted' ? li.minted_mean_ratio : li.narrowed_mean_ratio;
        out.push(`| ${k} | ${f(li[k].p50_ms, 3)} | ${f(li[k].p90_ms, 3)} | ${f(li[k].p99_ms, 3)} | ${f(li[k].mean_ms, 3)} | ${f(ratio, 3)}× |`);
      }
      out.push('');
    }
    const lt = s8.later_throughput;
    out.push('Later calls under load (50 connections, 50 keys of each kind, each used before):', '', '| key | req/s | vs issued keys | non-2xx |', '|---|---|---|---|');
    out.push(`| issued | ${n(lt.issued.rps)} | 100 % | ${n(lt.issued.non2xx)} |`);
    if (lt.issued_padded) out.push(`| issued, request padded to a minted token's size | ${n(lt.issued_padded.rps)} | ${pct(lt.padded_ratio)} | ${n(lt.issued_padded.non2xx)} |`);
    out.push(`| minted | ${n(lt.minted.rps)} | ${pct(lt.minted_ratio)} | ${n(lt.minted.non2xx)} |`, `| narrowed once | ${n(lt.narrowed.rps)} | ${pct(lt.narrowed_ratio)} | ${n(lt.narrowed.non2xx)} |`, '');
    if (lt.token_chars) out.push(`Tokens: issued ${lt.token_chars.issued} characters, minted ${lt.token_chars.minted} (its caveats travel with it). A narrowed key's call also checks and charges its parent in the same reserve.`, '');
  } else if (s8?.error) out.push('### 8. Minted keys', '', `Failed: ${s8.error}`, '');

  for (const [name, label, store] of [['9-hot-key', '9. One hot key', 'SQLite'], ['10-pg-redis-hot-key', '10. One hot key on Postgres+Redis', 'one Postgres+Redis replica']]) {
    const r = s[name];
    if (r?.throughput) {
      out.push(`### ${label}`, '', `All 50 connections on one key capped at $1,000,000/day; the caller sends JSON (\`{"amount":100,"currency":"usd"}\`, as stripe-node's v2 shape would) and keyleash converts it to the form Stripe takes; ${store}. Bare and keyleash measured side by side, ${r.throughput.keyleash.rounds.length} round(s) each alternating (req/s per round: bare ${r.throughput.bare.rounds.map(n).join(', ')}; keyleash ${r.throughput.keyleash.rounds.map(n).join(', ')}), ${r.throughput.bare.duration_s} s per round after warm-up.`, '', TP_HEAD);
      out.push(tpRow('bare pass-through', r.throughput.bare), tpRow('keyleash', r.throughput.keyleash, r.throughput.bare.rps), '');
    } else if (r?.unavailable) out.push(`### ${label}`, '', `Not measured: ${r.unavailable}`, '');
    else if (r?.error) out.push(`### ${label}`, '', `Failed: ${r.error}`, '');
  }
  const s11 = s['11-mcp'];
  if (s11?.latency) {
    const l = s11.latency;
    const tp = s11.throughput;
    out.push('### 11. MCP gateway', '', "`tools/call` with the official MCP client in the bench process, on one session each: directly to an upstream MCP server built with the same SDK (its own process), and through keyleash (`{PROXY}/mcp/bench`: key check, tool allowlist, price from the arguments, reserve, keyleash's own upstream session, settle, audit). Calls alternate in blocks so drift hits both alike.", '');
    out.push(`| path | p50 ms | p99 ms | calls/s at ${tp.concurrency} in flight |`, '|---|---|---|---|');
    out.push(`| direct MCP session | ${f(l.direct_p50_ms, 3)} | ${f(l.direct_p99_ms, 3)} | ${n(tp.direct.calls_per_s)} |`);
    out.push(`| through keyleash | ${f(l.keyleash_p50_ms, 3)} | ${f(l.keyleash_p99_ms, 3)} | ${n(tp.keyleash.calls_per_s)} |`);
    out.push('', `Added at p50: ${f(l.overhead_p50_ms, 3)} ms (${f(l.ratio_p50, 2)}× a direct call); throughput ${pct(tp.ratio)} of direct. Every call through keyleash was metered: ${n(s11.metered.calls)} calls, spend ${s11.metered.exact ? 'exact' : 'NOT exact'}.`, '');
  } else if (s11?.error) out.push('### 11. MCP gateway', '', `Failed: ${s11.error}`, '');

  if (run.profile) {
    out.push('### Profile of the keyleash proxy under the scenario-1 load', '', `\`node --cpu-prof\`, ${run.profile.duration_s} s of load, ${n(run.profile.samples)} samples. Self time by function (top 25) and by component:`, '');
    out.push('| self % | function | where |', '|---|---|---|');
    for (const r of run.profile.top) out.push(`| ${f(r.pct, 1)} | \`${r.fn}\` | ${r.where} |`);
    out.push('', '| self % | component |', '|---|---|');
    for (const r of run.profile.byComponent.slice(0, 12)) out.push(`| ${f(r.pct, 1)} | ${r.component} |`);
    out.push('');
  }
  return out.join('\n');
}

const START = '<!-- bench:generated:start -->';
const END = '<!-- bench:generated:end -->';

export function writeResultsMd(path, run) {
  const generated = `${START}\n${markdown(run)}\n${END}`;
  let text = existsSync(path) ? readFileSync(path, 'utf8') : `# keyleash benchmark results\n\n${START}\n${END}\n`;
  if (!text.includes(START)) text += `\n${START}\n${END}\n`;
  text = text.slice(0, text.indexOf(START)) + generated + text.slice(text.indexOf(END) + END.length);
  writeFileSync(path, text);
}
