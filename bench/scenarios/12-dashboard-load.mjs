// 12. The proxy while the dashboard polls: a keyleash (SQLite) whose audit log holds 300,000
// records of today (30,000 in the smoke run, seeded by direct SQL), the proxy's latency at a fixed
// rate with no dashboard open, then with four "tabs" asking for the heaviest statistics every
// second (today's overview, a month of spend per vendor, a day per budget, a key's series, an
// audit filter that matches nothing, so reads the whole log). The
// statistics are read by a worker thread on a read-only connection, so the ratio of the two p99s
// is what the dashboard costs the data plane.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { request } from 'undici';
import { ADMIN_TOKEN, FORM, issueKey, PI_BODY, startKeyleash, stripeKey } from '../lib/context.mjs';
import { rateLatency } from '../lib/load.mjs';

export const title = 'The proxy while the dashboard polls its heaviest statistics';

const Database = createRequire(new URL('../../packages/keyleash/package.json', import.meta.url))('better-sqlite3');

function seed(path, n) {
  const db = new Database(path);
  try {
    db.pragma('busy_timeout = 10000');
    const now = Date.now();
    const dayStart = Date.parse(`${new Date(now).toISOString().slice(0, 10)}T00:00:00.000Z`);
    db.prepare(
      `WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ? - 1)
       INSERT INTO audit (id, time, request_id, key_id, label, vendor, mode, method, path, status, decision, code,
         cost_micros, upstream_latency_ms, tenant_id)
       SELECT 'aud_seed_' || i, ? + (i * ?) / ?, 'req_seed_' || i, 'key_seed_' || (i % 2000), 'seed-' || (i % 2000),
         CASE i % 3 WHEN 0 THEN 'stripe' WHEN 1 THEN 'openai' ELSE 'twilio' END, 'test', 'POST', '/v1/payment_intents',
         CASE WHEN i % 20 = 0 THEN 429 ELSE 200 END, CASE WHEN i % 20 = 0 THEN 'deny' ELSE 'allow' END,
         CASE WHEN i % 20 = 0 THEN 'cap_exhausted' ELSE NULL END, CASE WHEN i % 20 = 0 THEN 0 ELSE 4200 END, 12.5, 'default'
       FROM c`,
    ).run(n, dayStart, Math.max(0, now - 1 - dayStart), n);
  } finally {
    db.close();
  }
}

async function admin(apiUrl, path) {
  const r = await request(apiUrl + path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const body = await r.body.json();
  if (r.statusCode !== 200) throw new Error(`${path}: ${r.statusCode} ${JSON.stringify(body)}`);
  return body;
}

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const at = (s, p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];

export async function run(ctx) {
  const { t, smoke } = ctx;
  const seeded = smoke ? 30_000 : 300_000;
  const path = join(ctx.dir, 'dashboard.sqlite');
  const gw = await startKeyleash(ctx.upstream.proxyUrl, { path });
  try {
    const s0 = performance.now();
    seed(path, seeded);
    const seedS = (performance.now() - s0) / 1000;
    const key = await issueKey(gw.apiUrl, stripeKey());
    const rate = smoke ? 100 : 200;
    const load = () =>
      rateLatency(gw.proxyUrl, {
        rate,
        durationS: t.latencyS,
        warmupS: t.warmupS,
        make: () => ({ path: '/stripe/v1/payment_intents', headers: { ...FORM, authorization: `Bearer ${key.token}` }, body: PI_BODY }),
      });
    const lagOf = (text) => ({
      p99_ms: Number(/^nodejs_eventloop_lag_p99_seconds (\S+)/m.exec(text)?.[1]) * 1000,
      max_ms: Number(/^nodejs_eventloop_lag_max_seconds (\S+)/m.exec(text)?.[1]) * 1000,
    });
    const scrape = async () => (await request(`${gw.apiUrl}/metrics`)).body.text();
    // Each scrape starts the event-loop figures over: one before each phase, one after.
    await scrape();
    const quiet = await load();
    const quietLag = lagOf(await scrape());

    // Four tabs, each asking for its figures every second (the dashboard polls every 3-5 s).
    let polling = true;
    const statsMs = [];
    const tab = async (paths, delayMs) => {
      await new Promise((r) => setTimeout(r, delayMs));
      while (polling) {
        const round = performance.now();
        for (const p of paths) {
          const s = performance.now();
          await admin(gw.apiUrl, p);
          statsMs.push(performance.now() - s);
        }
        await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (performance.now() - round))));
      }
    };
    const overview = ['/v1/stats/overview', '/v1/stats/spend?range=30d'];
    const detail = ['/v1/stats/spend?range=24h&group_by=budget', `/v1/keys/${key.id}/spend`, '/v1/audit?code=no_such_code&limit=100', '/v1/stats/overview'];
    const tabs = [tab(overview, 0), tab(detail, 250), tab(overview, 500), tab(detail, 750)];
    await scrape();
    const busy = await load();
    const busyLag = lagOf(await scrape());
    polling = false;
    await Promise.all(tabs);

    // Figures are shared for a short while after they are computed: let the pollers' copy age out.
    await new Promise((r) => setTimeout(r, 3000));
    const o = await admin(gw.apiUrl, '/v1/stats/overview');
    const proxied = 2 * (Math.round(rate * t.warmupS) + Math.round(rate * t.latencyS));
    const s = sorted(statsMs);
    const out = {
      seeded_audit_records: seeded,
      seed_s: seedS,
      rate,
      quiet,
      polling: busy,
      p99_ratio: busy.p99_ms / quiet.p99_ms,
      p50_ratio: busy.p50_ms / quiet.p50_ms,
      stats: { answers: s.length, p50_ms: at(s, 0.5), max_ms: s[s.length - 1] },
      eventloop_lag: { quiet: quietLag, polling: busyLag },
      overview: { calls_today: o.calls_today, truncated: o.truncated, proxied },
      exact: o.calls_today === seeded + proxied && o.truncated === false && proxied > 0,
    };
    out.ok = quiet.count > 0 && busy.count > 0 && s.length > 0 && out.exact;
    return out;
  } finally {
    await gw.stop();
  }
}
