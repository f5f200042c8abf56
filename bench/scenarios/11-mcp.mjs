// 11. The MCP gateway: tools/call through keyleash ({PROXY}/mcp/{server}: key check, tool
// allowlist, price from arguments, reserve, upstream session, settle, audit) against a direct
// MCP session with the upstream, both driven by the official MCP client in this process.
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { getKey, issueKey, keyleashConfig } from '../lib/context.mjs';
import { timeCalls } from '../lib/load.mjs';
import { startServer } from '../lib/proc.mjs';

export const title = 'MCP gateway (tools/call through keyleash vs a direct MCP session)';

const SECRET = 'mcp_bench_secret_0123456789';
const r3 = (x) => Math.round(x * 1000) / 1000;

async function session(url, token) {
  const client = new Client({ name: 'bench-agent', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  return client;
}

/** `concurrency` loops calling for `seconds`; calls per second and failures. */
async function loops(client, { concurrency, seconds, args }) {
  const until = performance.now() + seconds * 1000;
  let calls = 0;
  let failures = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = 0; performance.now() < until; i++) {
        const r = await client.callTool({ name: 'create_refund', arguments: args(w, i) }).catch(() => ({ isError: true }));
        if (r.isError) failures++;
        else calls++;
      }
    }),
  );
  return { calls_per_s: Math.round(calls / seconds), calls, failures };
}

export async function run(ctx) {
  const { smoke } = ctx;
  const upstream = await startServer('mcp-upstream', { env: { BENCH_MCP_SECRET: SECRET } });
  const cfg = keyleashConfig(ctx.upstream.proxyUrl, { path: join(ctx.dir, 'mcp.sqlite') });
  cfg.mcp_servers = { bench: { url: upstream.proxyUrl, test_secret: SECRET, tools: { create_refund: { amount: { path: 'amount', currency: 'usd' } }, 'list_*': 'free' } } };
  const gw = await startServer('keyleash', { env: { BENCH_CONFIG: JSON.stringify(cfg), BENCH_WORKERS: '1' } });
  try {
    const key = await issueKey(gw.apiUrl, { label: 'bench-mcp', vendor: 'mcp:bench', allowed_tools: ['create_refund', 'list_*'], daily_usd_cap: 1_000_000, expires_in: '1h' });
    const direct = await session(upstream.proxyUrl, SECRET);
    const via = await session(`${gw.proxyUrl}/mcp/bench`, key.token);
    const args = (w, i) => ({ payment_intent: `pi_${w}_${i}`, amount: 1 });

    // A. One call at a time, alternating direct and through keyleash so drift hits both alike.
    const n = smoke ? 40 : 1000;
    for (let i = 0; i < 20; i++) {
      await direct.callTool({ name: 'create_refund', arguments: args(0, i) });
      await via.callTool({ name: 'create_refund', arguments: args(0, i) });
    }
    const seqDirect = [];
    const seqVia = [];
    for (let round = 0; round < 4; round++) {
      seqDirect.push(await timeCalls(n / 4, (i) => direct.callTool({ name: 'create_refund', arguments: args(1, i) })));
      seqVia.push(await timeCalls(n / 4, (i) => via.callTool({ name: 'create_refund', arguments: args(2, i) })));
    }
    const med = (xs, k) => xs.map((x) => x[k]).sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const latency = {
      direct_p50_ms: med(seqDirect, 'p50_ms'),
      direct_p99_ms: med(seqDirect, 'p99_ms'),
      keyleash_p50_ms: med(seqVia, 'p50_ms'),
      keyleash_p99_ms: med(seqVia, 'p99_ms'),
    };
    latency.overhead_p50_ms = r3(latency.keyleash_p50_ms - latency.direct_p50_ms);
    latency.ratio_p50 = r3(latency.keyleash_p50_ms / latency.direct_p50_ms);

    // B. Concurrent tools/call on one session each.
    const seconds = smoke ? 1 : 8;
    const concurrency = 32;
    const tDirect = await loops(direct, { concurrency, seconds, args });
    const tVia = await loops(via, { concurrency, seconds, args });
    const throughput = { concurrency, direct: tDirect, keyleash: tVia, ratio: r3(tVia.calls_per_s / tDirect.calls_per_s) };

    // Every call through keyleash was metered: 1 cent each.
    const view = await getKey(gw.apiUrl, key.id);
    const throughKeyleash = 20 + n + tVia.calls;
    const metered = view.spend_today_micros === throughKeyleash * 10_000;
    await direct.close();
    await via.close();
    return {
      ok: metered && tDirect.failures === 0 && tVia.failures === 0 && tVia.calls > 0 && latency.keyleash_p50_ms > 0,
      latency,
      throughput,
      metered: { calls: throughKeyleash, spend_micros: view.spend_today_micros, exact: metered },
    };
  } finally {
    await gw.stop();
    await upstream.stop();
  }
}
