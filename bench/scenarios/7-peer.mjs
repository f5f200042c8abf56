// 7. A peer row: the Portkey AI gateway (npm, devDependency) proxying the same request to the same
// upstream. Portkey is an LLM gateway, so the request is a non-streamed OpenAI chat completion,
// which keyleash also meters (OpenAI vendor, capped key). Its own docs' way to reach a custom
// upstream: `x-portkey-provider: openai` + `x-portkey-custom-host`.
import { issueKey } from '../lib/context.mjs';
import { rateLatency, throughput } from '../lib/load.mjs';
import { freePort, startServer } from '../lib/proc.mjs';
import { request } from 'undici';

export const title = 'Peer: Portkey AI gateway (same chat completion, same upstream)';

export async function run(ctx) {
  const { t } = ctx;
  let portkey;
  try {
    portkey = await startServer('portkey', { env: { BENCH_PORT: String(await freePort()) }, timeoutMs: 30_000 });
  } catch (e) {
    return { unavailable: `Portkey did not start: ${e.message.slice(0, 300)}`, ok: true };
  }
  try {
    const key = await issueKey(ctx.keyleash.apiUrl, {
      label: 'bench-peer',
      vendor: 'openai',
      allowed_endpoints: ['POST /v1/chat/completions'],
      daily_usd_cap: 100_000,
      expires_in: '1h',
    });
    const body = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
    const json = { 'content-type': 'application/json' };
    const pkHeaders = { ...json, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${ctx.upstream.proxyUrl}/v1` };
    const targets = {
      bare: { url: ctx.bare.proxyUrl, path: '/v1/chat/completions', headers: json, auth: 'Bearer sk-bench-upstream' },
      keyleash: { url: ctx.keyleash.proxyUrl, path: '/openai/v1/chat/completions', headers: json, auth: `Bearer ${key.token}` },
      portkey: { url: portkey.proxyUrl, path: '/v1/chat/completions', headers: pkHeaders, auth: 'Bearer sk-bench-upstream' },
    };
    // Portkey cannot stream from this upstream on Node 20 (see RESULTS.md): record what it answers.
    const s = await request(`${portkey.proxyUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...pkHeaders, authorization: 'Bearer sk-bench-upstream' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const streamAnswer = `${s.statusCode} ${(await s.body.text()).slice(0, 120)}`;

    const out = { portkey_stream_answer: streamAnswer };
    const tps = {};
    for (const [name, tg] of Object.entries(targets)) {
      tps[name] = await throughput(tg.url, { path: tg.path, headers: tg.headers, body, auth: tg.auth, connections: 50, durationS: t.durationS, warmupS: t.warmupS });
    }
    // One moderate rate for all three: a quarter of the slowest one's capacity, at most 1,000/s.
    const slowest = Math.min(...Object.values(tps).map((r) => r.rps));
    const rate = Math.max(50, Math.min(1000, Math.round((slowest * 0.25) / 50) * 50));
    for (const [name, tg] of Object.entries(targets)) {
      const tp = tps[name];
      const lat = await rateLatency(tg.url, {
        rate,
        durationS: t.latencyS,
        warmupS: t.warmupS,
        make: () => ({ path: tg.path, body, headers: { ...tg.headers, authorization: tg.auth } }),
      });
      out[name] = { throughput: tp, latency: lat };
    }
    out.ratio_keyleash = out.keyleash.throughput.rps / out.bare.throughput.rps;
    out.ratio_portkey = out.portkey.throughput.rps / out.bare.throughput.rps;
    out.ok = [out.bare, out.keyleash, out.portkey].every((r) => r.throughput.requests > 0 && r.throughput.non2xx === 0);
    return out;
  } finally {
    await portkey.stop();
  }
}
