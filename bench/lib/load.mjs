// Load generation. Throughput: autocannon (closed loop, fixed connections). Latency: an open-loop
// client at a fixed rate timing each call with hrtime (autocannon's histogram is whole ms, too
// coarse for a 0.5 ms budget). Streams: sequential calls timing first body byte and end.
import autocannon from 'autocannon';
import { Pool } from 'undici';

/**
 * Closed-loop throughput. `auth` is one Authorization value or an array rotated per request.
 * Returns req/s over the measured window (after `warmupS`), non-2xx and errors.
 */
export async function throughput(url, { path, method = 'POST', headers = {}, body, auth, connections = 50, durationS = 10, warmupS = 2 }) {
  const auths = Array.isArray(auth) ? auth : auth ? [auth] : [];
  let i = 0;
  const request = {
    method,
    path,
    headers: { ...headers, ...(auths.length ? { authorization: auths[0] } : {}) },
    body,
  };
  if (auths.length > 1) {
    request.setupRequest = (req) => ({ ...req, headers: { ...req.headers, authorization: auths[i++ % auths.length] } });
  }
  const opts = { url, connections, requests: [request], pipelining: 1 };
  if (warmupS > 0) await autocannon({ ...opts, duration: warmupS });
  const r = await autocannon({ ...opts, duration: durationS });
  return {
    rps: Math.round(r.requests.total / durationS),
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    p50_ms_coarse: r.latency.p50,
    p99_ms_coarse: r.latency.p99,
    connections,
    duration_s: durationS,
  };
}

export function percentile(sorted, p) {
  if (!sorted.length) return null;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

const r3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);

function summarize(lat) {
  const s = Float64Array.from(lat).sort();
  return { count: s.length, p50_ms: r3(percentile(s, 50)), p90_ms: r3(percentile(s, 90)), p99_ms: r3(percentile(s, 99)), max_ms: r3(s[s.length - 1] ?? null) };
}

/**
 * Open-loop latency at a fixed rate: requests are started on schedule whether or not earlier ones
 * have answered. `make(i)` returns { path, method, headers, body } for call i.
 */
export async function rateLatency(url, { rate = 1000, durationS = 10, warmupS = 2, make, expect = (s) => s >= 200 && s < 300 }) {
  const pool = new Pool(url, { connections: 256, pipelining: 1 });
  const run = async (seconds, record) => {
    const lat = [];
    const bad = { status: 0, errors: 0 };
    const total = Math.round(rate * seconds);
    const inflight = new Set();
    const t0 = performance.now();
    let sent = 0;
    await new Promise((resolve) => {
      const tick = () => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
        while (sent < due) {
          const i = sent++;
          const req = make(i);
          const start = performance.now();
          const p = pool
            .request({ path: req.path, method: req.method ?? 'POST', headers: req.headers, body: req.body })
            .then(async (res) => {
              await res.body.dump();
              if (!expect(res.statusCode)) bad.status++;
              if (record) lat.push(performance.now() - start);
            })
            .catch(() => void bad.errors++)
            .finally(() => inflight.delete(p));
          inflight.add(p);
        }
        if (sent < total) setTimeout(tick, 1);
        else resolve();
      };
      tick();
    });
    await Promise.all(inflight);
    return { ...summarize(lat), unexpected_status: bad.status, errors: bad.errors, rate };
  };
  if (warmupS > 0) await run(warmupS, false);
  const out = await run(durationS, true);
  await pool.close();
  return out;
}

/** Sequential calls with a streamed answer: time to the first body byte and to the end. */
export async function streamTimes(url, { n = 30, make }) {
  const pool = new Pool(url, { connections: 4 });
  const ttfb = [];
  const total = [];
  let events = 0;
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const req = make(i);
    const start = performance.now();
    const res = await pool.request({ path: req.path, method: 'POST', headers: req.headers, body: req.body });
    let first = null;
    let text = '';
    for await (const chunk of res.body) {
      if (first === null) first = performance.now() - start;
      text += chunk;
    }
    const end = performance.now() - start;
    if (res.statusCode !== 200 || !text.includes('[DONE]')) bad++;
    events += (text.match(/^data: /gm) ?? []).length;
    ttfb.push(first ?? end);
    total.push(end);
  }
  await pool.close();
  const a = summarize(ttfb);
  const b = summarize(total);
  return {
    calls: n,
    bad,
    events_per_call: Math.round(events / n),
    ttfb_p50_ms: a.p50_ms,
    ttfb_p99_ms: a.p99_ms,
    total_p50_ms: b.p50_ms,
    total_p99_ms: b.p99_ms,
  };
}

/** Latency of an async function called `n` times in a row (in this process). */
export async function timeCalls(n, fn) {
  const lat = [];
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await fn(i);
    lat.push(performance.now() - s);
  }
  return summarize(lat);
}

/**
 * Side by side: `rounds` × (bare, then keyleash) under the same load, so a neighbour's burst on a
 * shared machine hits both; rates are averaged, tails are the worst round's.
 */
export async function sideBySide(rounds, runBare, runKeyleash) {
  const bare = [];
  const kl = [];
  for (let i = 0; i < rounds; i++) {
    bare.push(await runBare());
    kl.push(await runKeyleash());
  }
  const merge = (rs) => ({
    rps: Math.round(rs.reduce((a, r) => a + r.rps, 0) / rs.length),
    requests: rs.reduce((a, r) => a + r.requests, 0),
    non2xx: rs.reduce((a, r) => a + r.non2xx, 0),
    errors: rs.reduce((a, r) => a + r.errors, 0),
    p50_ms_coarse: Math.max(...rs.map((r) => r.p50_ms_coarse)),
    p99_ms_coarse: Math.max(...rs.map((r) => r.p99_ms_coarse)),
    connections: rs[0].connections,
    duration_s: rs[0].duration_s,
    rounds: rs.map((r) => r.rps),
  });
  const b = merge(bare);
  const k = merge(kl);
  return { bare: b, keyleash: k, ratio: k.rps / b.rps };
}
