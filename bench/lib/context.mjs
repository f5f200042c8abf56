// What every scenario shares: the upstream stub, the bare pass-through and a keyleash (SQLite)
// started once per run, each in its own process, plus helpers to configure and issue keys.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startServer } from './proc.mjs';

export const ADMIN_TOKEN = 'bench_admin_token_0123456789';
export const STRIPE_SECRET = 'sk_test_bench_secret_1234567890';
export const OPENAI_SECRET = 'bench-openai-test-secret-0123';
export const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
export const PI_BODY = 'amount=100&currency=usd';

export function keyleashConfig(upstreamUrl, store) {
  return {
    admin_token: ADMIN_TOKEN,
    listen: { api: { host: '127.0.0.1', port: 0 }, proxy: { host: '127.0.0.1', port: 0 } },
    store,
    vendors: {
      stripe: { base_url: upstreamUrl, test_secret: STRIPE_SECRET },
      openai: { base_url: upstreamUrl, test_secret: OPENAI_SECRET },
    },
    // The issuance scenarios measure the control API itself, not its default per-token quota.
    control: { issue_rate_per_second: 1_000_000, issue_burst: 1_000_000 },
    log_level: 'warn',
  };
}

export async function startKeyleash(upstreamUrl, store, { workers = 1, nodeArgs = [], ports } = {}) {
  const cfg = keyleashConfig(upstreamUrl, store);
  if (ports) cfg.listen = { api: { host: '127.0.0.1', port: ports.api }, proxy: { host: '127.0.0.1', port: ports.proxy } };
  return startServer('keyleash', { env: { BENCH_CONFIG: JSON.stringify(cfg), BENCH_WORKERS: String(workers) }, nodeArgs });
}

export async function issueKey(apiUrl, body) {
  const r = await request(`${apiUrl}/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await r.body.json();
  if (r.statusCode !== 201) throw new Error(`issuing a key failed: ${r.statusCode} ${JSON.stringify(json)}`);
  return json;
}

export async function getKey(apiUrl, id) {
  const r = await request(`${apiUrl}/v1/keys/${id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return r.body.json();
}

export const stripeKey = (cap = 1_000_000) => ({
  label: 'bench',
  vendor: 'stripe',
  allowed_endpoints: ['POST /v1/payment_intents'],
  daily_usd_cap: cap,
  expires_in: '1h',
});

export async function createContext({ smoke }) {
  const dir = mkdtempSync(join(tmpdir(), 'keyleash-bench-'));
  const upstream = await startServer('upstream', { env: { BENCH_SSE_CHUNKS: '200', BENCH_SSE_GAP_MS: '1' } });
  const bare = await startServer('bare', { env: { BENCH_UPSTREAM: upstream.proxyUrl } });
  const keyleash = await startKeyleash(upstream.proxyUrl, { path: join(dir, 'main.sqlite') });
  return {
    smoke,
    dir,
    upstream,
    bare,
    keyleash,
    // Short but real: the smoke run (CI) proves each scenario runs, not how fast it is.
    t: smoke ? { durationS: 1, warmupS: 1, latencyS: 1, rate: 300, streamCalls: 3 } : { durationS: 8, warmupS: 2, latencyS: 8, rate: 1000, streamCalls: 30 },
    async close() {
      for (const s of [keyleash, bare, upstream]) await s.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
