// 2. Streaming: an SSE chat completion of ~200 chunks through the OpenAI vendor (metered stream).
import { issueKey } from '../lib/context.mjs';
import { streamTimes } from '../lib/load.mjs';

export const title = 'Streaming (OpenAI SSE chat completion, 200 chunks ~1 ms apart)';

export async function run(ctx) {
  const key = await issueKey(ctx.keyleash.apiUrl, {
    label: 'bench-stream',
    vendor: 'openai',
    allowed_endpoints: ['POST /v1/chat/completions'],
    daily_usd_cap: 1000,
    expires_in: '1h',
  });
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: 400,
    messages: [{ role: 'user', content: 'Say tok two hundred times.' }],
  });
  const make = (path) => () => ({ path, body, headers: { 'content-type': 'application/json', authorization: `Bearer ${key.token}` } });
  const n = ctx.t.streamCalls;
  await streamTimes(ctx.bare.proxyUrl, { n: 2, make: make('/v1/chat/completions') });
  await streamTimes(ctx.keyleash.proxyUrl, { n: 2, make: make('/openai/v1/chat/completions') });
  const bare = await streamTimes(ctx.bare.proxyUrl, { n, make: make('/v1/chat/completions') });
  const kl = await streamTimes(ctx.keyleash.proxyUrl, { n, make: make('/openai/v1/chat/completions') });
  return {
    bare,
    keyleash: kl,
    added_ttfb_p50_ms: kl.ttfb_p50_ms - bare.ttfb_p50_ms,
    added_ttfb_p99_ms: kl.ttfb_p99_ms - bare.ttfb_p99_ms,
    total_ratio: kl.total_p50_ms / bare.total_p50_ms,
    // Buffering would put the first byte near the end of the stream.
    first_byte_share_of_total: kl.ttfb_p50_ms / kl.total_p50_ms,
    ok: kl.bad === 0 && bare.bad === 0 && kl.events_per_call >= 200,
  };
}
