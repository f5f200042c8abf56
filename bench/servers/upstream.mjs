// The upstream stub every system under test forwards to: a Stripe-style JSON answer for any
// POST/GET, and an OpenAI-style chat completion, streamed as SSE (~200 chunks) when asked.
// Runs in its own process; prints `READY <url>` on stdout.
import { createServer } from 'node:http';

const chunks = Number(process.env.BENCH_SSE_CHUNKS ?? 200);
const gapMs = Number(process.env.BENCH_SSE_GAP_MS ?? 1);

const PI = JSON.stringify({
  id: 'pi_3PbenchBENCHbench0000',
  object: 'payment_intent',
  amount: 100,
  currency: 'usd',
  status: 'requires_payment_method',
  livemode: false,
});

function chatChunk(i, delta, finish) {
  return `data: ${JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion.chunk',
    created: 1700000000,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
}

function streamChat(res) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i < chunks) {
      res.write(chatChunk(i, i === 0 ? { role: 'assistant', content: 'tok ' } : { content: 'tok ' }, null));
      i++;
      if (gapMs > 0) setTimeout(next, gapMs);
      else setImmediate(next);
      return;
    }
    res.write(chatChunk(i, {}, 'stop'));
    res.write(
      `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 12, completion_tokens: chunks, total_tokens: 12 + chunks } })}\n\n`,
    );
    res.end('data: [DONE]\n\n');
  };
  next();
}

const server = createServer((req, res) => {
  const bodyParts = [];
  req.on('data', (c) => bodyParts.push(c));
  req.on('end', () => {
    const path = (req.url ?? '/').split('?')[0];
    if (path.endsWith('/chat/completions')) {
      let body = {};
      try {
        body = JSON.parse(Buffer.concat(bodyParts).toString('utf8'));
      } catch {
        /* not JSON */
      }
      if (body.stream === true) return streamChat(res);
      const answer = JSON.stringify({
        id: 'chatcmpl-bench',
        object: 'chat.completion',
        created: 1700000000,
        model: body.model ?? 'gpt-4o-mini',
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 12, completion_tokens: 1, total_tokens: 13 },
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
      return res.end(answer);
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(PI), 'request-id': 'req_bench' });
    res.end(PI);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY http://127.0.0.1:${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.on('SIGINT', () => process.exit(0));
