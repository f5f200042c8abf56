import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { promptTokens } from '../src/sandbox/openai.js';
import { modelPrices, tokenCost } from '../src/vendors/llm.js';
import { DEFAULT_OPENAI_MODELS } from '../src/vendors/openai.js';
import { OPENAI_LIVE_SECRET, OPENAI_TEST_SECRET, startGateway, type TestGateway } from './harness.js';

// The official `openai` package, unchanged but for baseURL and the vault token as its API key,
// against the proxy and the local OpenAI sandbox (which streams).

const DEFAULT_MAX_OUTPUT = 64;
const gpt4o = modelPrices(DEFAULT_OPENAI_MODELS).get('gpt-4o')!;
const cost = (input: number, output: number) => tokenCost(input, gpt4o.input) + tokenCost(output, gpt4o.output);

let t: TestGateway;
const oa = () => t.sandboxes.openai!;

beforeAll(async () => {
  t = await startGateway(
    (_url, _dir, urls) => ({
      vendors: {
        openai: { base_url: urls.openai!, test_secret: OPENAI_TEST_SECRET, live_secret: OPENAI_LIVE_SECRET, default_max_output_tokens: DEFAULT_MAX_OUTPUT },
      },
    }),
    { sandboxes: ['openai'] },
  );
});
afterAll(async () => {
  await t.close();
});
beforeEach(() => {
  oa().reset();
});

const openaiKey = (extra: Record<string, unknown> = {}) => ({
  label: 'agent-llm',
  vendor: 'openai',
  allowed_endpoints: ['POST /v1/chat/completions', 'POST /v1/embeddings', 'GET /v1/models'],
  daily_usd_cap: 1,
  expires_in: '5m',
  ...extra,
});

function client(token: string): OpenAI {
  return new OpenAI({ apiKey: token, baseURL: `${t.proxyUrl}/openai/v1`, maxRetries: 0 });
}

async function spend(id: string): Promise<number> {
  return (await t.admin('GET', `/v1/keys/${id}`)).body.spend_today_micros;
}

async function auditOf(keyId: string) {
  await t.gw.audit.flush();
  return (await t.admin('GET', `/v1/audit?key_id=${keyId}`)).body.data;
}

describe('openai through the proxy with the official SDK', () => {
  it('injects the real secret, never forwards the vault token, and settles a completion from its usage', async () => {
    const key = await t.issue(openaiKey());
    const r = await client(key.token).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi there' }], max_tokens: 500 });
    expect(r.choices[0]!.message.content).toContain('You said: hi there');
    const seen = oa().requests[0]!;
    expect(seen.path).toBe('/v1/chat/completions');
    expect(seen.headers.authorization).toBe(`Bearer ${OPENAI_TEST_SECRET}`);
    expect(JSON.stringify(seen.headers)).not.toContain(key.token);
    expect(seen.headers['accept-encoding']).toBe('identity');
    // Reserved input (body size) + 500 output tokens; settled at what the usage says.
    const settled = cost(r.usage!.prompt_tokens, r.usage!.completion_tokens);
    expect(settled).toBeLessThan(cost(seen.body.length, 500));
    expect(await spend(key.id)).toBe(settled);
    const [audit] = await auditOf(key.id);
    expect(audit).toMatchObject({ status: 200, decision: 'allow', code: null, cost_micros: settled });
  });

  it('streams chunk by chunk, asks for usage itself and hides the usage-only chunk from a caller who did not ask', async () => {
    const key = await t.issue(openaiKey());
    const stream = await client(key.token).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'stream please' }], stream: true });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const sent = oa().requests[0]!.json as { stream_options?: { include_usage?: boolean } };
    expect(sent.stream_options).toEqual({ include_usage: true });
    expect(chunks.length).toBeGreaterThan(5);
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(text).toContain('You said: stream please');
    // Settled from the final usage chunk the caller never saw.
    const completion = chunks.filter((c) => c.choices[0]?.delta?.content).length;
    expect(await spend(key.id)).toBe(cost(promptTokens(sent), completion));
    const [audit] = await auditOf(key.id);
    expect(audit.cost_micros).toBe(cost(promptTokens(sent), completion));
  });

  it('passes the usage chunk on to a caller who asked for it', async () => {
    const key = await t.issue(openaiKey());
    const stream = await client(key.token).chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'with usage' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toBeTruthy();
    expect(await spend(key.id)).toBe(cost(last.usage!.prompt_tokens, last.usage!.completion_tokens));
  });

  it('keeps the reserved estimate when the stream never reports usage', async () => {
    const key = await t.issue(openaiKey());
    oa().behaviour.omitUsage = true;
    const stream = await client(key.token).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'no usage' }], stream: true });
    for await (const _ of stream) void _;
    const upstreamBytes = oa().requests[0]!.body.length;
    expect(await spend(key.id)).toBe(cost(upstreamBytes, DEFAULT_MAX_OUTPUT));
  });

  it('ends a stream that outgrows the cap with a final cap_exhausted event and stops reading from the vendor', async () => {
    // The request sets no max_tokens, so 64 output tokens are reserved; the reply is far longer.
    const key = await t.issue(openaiKey({ daily_usd_cap: 0.002 }));
    oa().behaviour.reply = 'word '.repeat(2000);
    oa().behaviour.eventDelayMs = 1;
    const stream = await client(key.token).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'go on forever' }], stream: true });
    let received = 0;
    const err = await (async () => {
      for await (const c of stream) if (c.choices[0]?.delta?.content) received++;
    })().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err).toMatchObject({ code: 'cap_exhausted' });
    expect(received).toBeGreaterThan(DEFAULT_MAX_OUTPUT);
    expect(received).toBeLessThan(2000);
    // The vendor's stream was abandoned: keyleash stopped reading.
    await oa().streams[0]!.done;
    expect(oa().streams[0]!.abandoned).toBe(true);
    expect(oa().streams[0]!.sent).toBeLessThan(oa().streams[0]!.total);
    // Settled at what was counted: past the first reservation, at most one chunk past the cap.
    const spent = await spend(key.id);
    expect(spent).toBeGreaterThan(cost(oa().requests[0]!.body.length, DEFAULT_MAX_OUTPUT));
    expect(spent).toBeLessThanOrEqual(2_000 + tokenCost(2, gpt4o.output));
    const [audit] = await auditOf(key.id);
    expect(audit).toMatchObject({ status: 200, decision: 'allow', code: 'cap_exhausted', cost_micros: spent });
    // And the next call is refused before it reaches the vendor.
    const again = await client(key.token)
      .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'more' }] })
      .then(() => null, (e: unknown) => e);
    expect(again).toMatchObject({ status: 429, code: 'cap_exhausted' });
    expect(oa().requests).toHaveLength(1);
  });

  it('settles embeddings from their usage', async () => {
    const key = await t.issue(openaiKey());
    const r = await client(key.token).embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two'] });
    expect(r.data).toHaveLength(2);
    const small = modelPrices(DEFAULT_OPENAI_MODELS).get('text-embedding-3-small')!;
    expect(await spend(key.id)).toBe(tokenCost(r.usage.prompt_tokens, small.input));
  });

  it('lets reads without a cost rule through for free, and refuses an unpriced model on a capped key', async () => {
    const key = await t.issue(openaiKey());
    const models = await client(key.token).models.list();
    expect(models.data.length).toBeGreaterThan(0);
    const err = await client(key.token)
      .chat.completions.create({ model: 'gpt-unknown-9', messages: [{ role: 'user', content: 'x' }] })
      .then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ status: 403, code: 'cost_unknown' });
    expect(oa().requests.map((r) => r.path)).toEqual(['/v1/models']);
    expect(await spend(key.id)).toBe(0);
  });

  it('refuses a call whose estimate passes the cap before anything reaches the vendor', async () => {
    const key = await t.issue(openaiKey({ daily_usd_cap: 0.001 }));
    const err = await client(key.token)
      .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }], max_tokens: 10_000 })
      .then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ status: 429, code: 'cap_exhausted' });
    expect(oa().requests).toHaveLength(0);
  });

  it('forwards live keys with the live secret and test keys with the test secret', async () => {
    const live = await t.issue(openaiKey({ mode: 'live' }));
    const test = await t.issue(openaiKey());
    await client(live.token).models.list();
    await client(test.token).models.list();
    expect(oa().requests.map((r) => r.headers.authorization)).toEqual([`Bearer ${OPENAI_LIVE_SECRET}`, `Bearer ${OPENAI_TEST_SECRET}`]);
  });
});
