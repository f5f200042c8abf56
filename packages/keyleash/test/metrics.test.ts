import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, stripeKey, type TestGateway } from './harness.js';

// /metrics in Prometheus format, per gateway: two gateways in one process never count each
// other's calls, although the proxy's diagnostics channel is process-wide.

let a: TestGateway;
let b: TestGateway;

beforeAll(async () => {
  [a, b] = await Promise.all([startGateway(), startGateway()]);
});
afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

/** The value of one sample line, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z0-9_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('metrics', () => {
  it('counts requests by vendor, decision and status, spend, latency, overhead, cache and audit queue', async () => {
    const k = await a.issue({ ...stripeKey, daily_usd_cap: 60 });
    for (const amount of [2000, 3000]) expect((await a.proxy('/v1/payment_intents', { token: k.token, body: { amount, currency: 'usd' } })).status).toBe(200);
    expect((await a.proxy('/v1/payment_intents', { token: k.token, body: { amount: 2000, currency: 'usd' } })).body.code).toBe('cap_exhausted');
    expect((await a.proxy('/v1/payment_intents', { token: 'vk_test_' + 'x'.repeat(38) })).body.code).toBe('invalid_key');
    // A well-formed token this gateway never issued: a cache miss, then the store says no.
    const foreign = await b.issue();
    expect((await a.proxy('/v1/payment_intents', { token: foreign.token })).body.code).toBe('invalid_key');

    const res = await fetch(`${a.apiUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(sample(text, 'keyleash_proxy_requests_total', { vendor: 'stripe', decision: 'allow', code: 'none', status: '200' })).toBe(2);
    expect(sample(text, 'keyleash_proxy_requests_total', { vendor: 'stripe', decision: 'deny', code: 'cap_exhausted', status: '429' })).toBe(1);
    expect(sample(text, 'keyleash_proxy_requests_total', { vendor: 'unknown', decision: 'deny', code: 'invalid_key', status: '401' })).toBe(2);
    expect(sample(text, 'keyleash_spend_usd_total', { vendor: 'stripe', mode: 'test' })).toBe(50);
    expect(sample(text, 'keyleash_upstream_latency_seconds_count', { vendor: 'stripe' })).toBe(2);
    expect(sample(text, 'keyleash_gateway_overhead_seconds_count', { vendor: 'stripe', decision: 'allow' })).toBe(2);
    expect(sample(text, 'keyleash_gateway_overhead_seconds_count', { vendor: 'stripe', decision: 'deny' })).toBe(1);
    // Issuing puts the key in the cache, so every call with it is a hit; the foreign token is a miss
    // (a malformed token is refused before any lookup).
    expect(sample(text, 'keyleash_key_cache_hits_total')).toBe(3);
    expect(sample(text, 'keyleash_key_cache_misses_total')).toBe(1);
    expect(sample(text, 'keyleash_key_cache_hit_ratio')).toBe(0.75);
    expect(sample(text, 'keyleash_audit_queue_depth')).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'keyleash_api_requests_total', { method: 'POST', route: '/v1/keys', status: '201' })).toBe(1);
    // Store latency per operation: the proxy's reserve and the audit writes are timed.
    expect(sample(text, 'keyleash_store_operation_seconds_count', { op: 'reserve', outcome: 'ok' })).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'keyleash_store_operation_seconds_count', { op: 'createKey', outcome: 'ok' })).toBe(1);
    // Event-loop delay under prom-client's default names.
    for (const q of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99']) {
      expect(sample(text, `nodejs_eventloop_lag_${q}_seconds`)).toBeGreaterThanOrEqual(0);
    }
    for (const line of text.split('\n')) if (line && !line.startsWith('#')) expect(line).toMatch(/^(keyleash_|nodejs_eventloop_lag_)/);

    // The other gateway saw none of it.
    const other = await (await fetch(`${b.apiUrl}/metrics`)).text();
    expect(sample(other, 'keyleash_proxy_requests_total', { vendor: 'stripe', decision: 'allow', code: 'none', status: '200' })).toBeUndefined();
    expect(sample(other, 'keyleash_key_cache_hits_total')).toBe(0);
  });

  it('is also served on the proxy listener to requests without Authorization, like /healthz', async () => {
    const r = await fetch(`${a.proxyUrl}/metrics`);
    expect(r.status).toBe(200);
    expect(await r.text()).toContain('keyleash_proxy_requests_total');
    // With a vault key it is a proxied call like any other (here: not in the key's endpoints).
    const k = await a.issue();
    const proxied = await a.proxy('/metrics', { token: k.token });
    expect(proxied.body.code).toBe('endpoint_not_allowed');
    for (const path of ['/healthz', '/readyz']) expect((await fetch(a.apiUrl + path)).status).toBe(200);
  });

  it('logs one structured line per proxied call with its request id, and none with a token', async () => {
    const k = await a.issue();
    const r = await a.proxy('/v1/payment_intents', { token: k.token, body: { amount: 100, currency: 'usd' } });
    const requestId = r.headers.get('x-keyleash-request-id');
    expect(requestId).toMatch(/^req_/);
    const line = a.logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'proxied call' && l.reqId === requestId);
    expect(line).toMatchObject({ level: 30, keyId: k.id, vendor: 'stripe', status: 200, decision: 'allow', costMicros: 1_000_000 });
    expect(typeof line.overheadMs).toBe('number');
    expect(a.logs.join('\n')).not.toContain(k.token);
    // Control API requests are logged with their request id too.
    expect(a.logs.map((l) => JSON.parse(l)).some((l) => l.msg === 'control API request' && /^req_/.test(l.reqId) && l.route === '/v1/keys')).toBe(true);
  });
});
