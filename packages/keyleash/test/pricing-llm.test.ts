import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sseEvent } from '../src/sandbox/base.js';
import { deltaTokens, modelPrices, tokenCost, usageCost } from '../src/vendors/llm.js';
import { DEFAULT_ANTHROPIC_MODELS } from '../src/vendors/anthropic.js';
import { DEFAULT_OPENAI_MODELS } from '../src/vendors/openai.js';
import { backends } from './backends.js';
import { ANTHROPIC_TEST_SECRET, OPENAI_TEST_SECRET, startGateway, type TestGateway } from './harness.js';

// Every OpenAI and Anthropic endpoint family through the real gateway, on both stores: priced
// ones reserve and settle what their params say; the rest are refused on a capped key
// (cost_unknown) before the vendor sees anything. And streams are cut at the cap event by
// event, even when the vendor sends a burst of many events in one chunk.

const openai = modelPrices(DEFAULT_OPENAI_MODELS);
const anthropic = modelPrices(DEFAULT_ANTHROPIC_MODELS);
const DEFAULT_MAX_OUTPUT = 64;
const ANY = ['GET', 'POST', 'DELETE'].flatMap((m) => ['/*', '/*/*', '/*/*/*', '/*/*/*/*', '/*/*/*/*/*'].map((p) => `${m} /v1${p}`));

for (const backend of await backends('pricing_llm')) {
  describe.skipIf(backend.skip)(`LLM pricing (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;
    const oa = () => t.sandboxes.openai!;
    const an = () => t.sandboxes.anthropic!;

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(
        (_url, _dir, urls) => ({
          ...(storeConfig ? { store: storeConfig as never } : {}),
          log_level: 'warn',
          vendors: {
            openai: { base_url: urls.openai!, test_secret: OPENAI_TEST_SECRET, default_max_output_tokens: DEFAULT_MAX_OUTPUT },
            anthropic: { base_url: urls.anthropic!, test_secret: ANTHROPIC_TEST_SECRET },
          },
        }),
        { sandboxes: ['openai', 'anthropic'] },
      );
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });
    beforeEach(() => {
      oa().reset();
      an().reset();
    });

    const key = (vendor: 'openai' | 'anthropic', cap = 5) =>
      t.issue({ label: `pricing-${vendor}`, vendor, allowed_endpoints: ANY, daily_usd_cap: cap, expires_in: '5m' });
    const spend = async (id: string): Promise<number> => (await t.admin('GET', `/v1/keys/${id}`)).body.spend_today_micros;
    const call = (vendor: string, token: string, path: string, body?: unknown, method?: string) =>
      t.proxy(`/${vendor}${path}`, { token, ...(body === undefined ? {} : { body }), ...(method ? { method } : {}) });

    async function refused(vendor: 'openai' | 'anthropic', path: string, body: unknown, reason: RegExp) {
      const k = await key(vendor);
      const r = await call(vendor, k.token, path, body);
      expect(r.status, `${path} ${JSON.stringify(r.body)}`).toBe(403);
      expect(r.body.code).toBe('cost_unknown');
      expect(r.body.message).toMatch(reason);
      expect((vendor === 'openai' ? oa() : an()).requests).toHaveLength(0);
      expect(await spend(k.id)).toBe(0);
    }

    it('shows each vendor\'s classification table in GET /v1/vendors', async () => {
      const list = (await t.admin('GET', '/v1/vendors')).body.data as Array<{ name: string; endpoints: Array<{ match: string; cost: string }> }>;
      const rule = (vendor: string, match: string) => list.find((v) => v.name === vendor)!.endpoints.find((e) => e.match === match)?.cost;
      expect(rule('openai', 'POST /v1/batches')).toMatch(/refused on a capped key/);
      expect(rule('openai', 'POST /v1/moderations')).toBe('free');
      expect(rule('openai', 'POST /v1/images/generations')).toMatch(/per image/);
      expect(rule('anthropic', 'POST /v1/messages/batches')).toMatch(/half price/);
    });

    describe('OpenAI models', () => {
      it('prices the pro models at their own price, never as the cheaper model they extend', async () => {
        for (const model of ['o1-pro', 'gpt-5-pro', 'o3-pro', 'gpt-4-32k']) {
          oa().reset();
          const k = await key('openai', 50);
          const r = await call('openai', k.token, '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 50 });
          expect(r.status, model).toBe(200);
          const price = openai.get(model)!;
          expect(price.output).toBeGreaterThan(openai.get(model.replace(/-(pro|32k)$/, ''))!.output);
          expect(await spend(k.id)).toBe(usageCost(price, { input: r.body.usage.prompt_tokens, output: r.body.usage.completion_tokens }));
        }
      });

      it('prices a dated snapshot as its base, and refuses an unlisted variant of a listed model', async () => {
        const k = await key('openai');
        const r = await call('openai', k.token, '/v1/chat/completions', { model: 'gpt-4o-2024-08-06', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20 });
        expect(r.status).toBe(200);
        expect(await spend(k.id)).toBe(usageCost(openai.get('gpt-4o')!, { input: r.body.usage.prompt_tokens, output: r.body.usage.completion_tokens }));
        oa().reset();
        for (const model of ['o1-pro-preview', 'gpt-4-32k-0613', 'gpt-5-pro-max', 'gpt-4o-mini-tts']) {
          await refused('openai', '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 }, /no price for model/);
        }
      });

      it('refuses a reasoning model without an output limit: its hidden reasoning tokens cannot be cut off mid-stream', async () => {
        await refused('openai', '/v1/chat/completions', { model: 'gpt-5', messages: [{ role: 'user', content: 'think' }], stream: true }, /max_completion_tokens/);
        await refused('openai', '/v1/responses', { model: 'o3', input: 'think' }, /max_output_tokens/);
      });

      it('on an uncapped key, forwards a call it cannot bound and settles it from its usage', async () => {
        const k = await t.issue({ label: 'uncapped', vendor: 'openai', allowed_endpoints: ANY, daily_usd_cap: null, expires_in: '5m' });
        const r = await call('openai', k.token, '/v1/chat/completions', { model: 'gpt-5', messages: [{ role: 'user', content: 'think' }] });
        expect(r.status).toBe(200);
        expect(oa().requests).toHaveLength(1);
        expect(await spend(k.id)).toBe(usageCost(openai.get('gpt-5')!, { input: r.body.usage.prompt_tokens, output: r.body.usage.completion_tokens }));
      });

      it('reserves and settles twice the price for the priority service tier', async () => {
        const k = await key('openai');
        const r = await call('openai', k.token, '/v1/chat/completions', { model: 'gpt-4o', service_tier: 'priority', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20 });
        expect(r.status).toBe(200);
        expect(await spend(k.id)).toBe(2 * usageCost(openai.get('gpt-4o')!, { input: r.body.usage.prompt_tokens, output: r.body.usage.completion_tokens }));
      });
    });

    describe('OpenAI async jobs', () => {
      it('refuses a background response without max_output_tokens, and keeps one with it charged at its reservation', async () => {
        await refused('openai', '/v1/responses', { model: 'gpt-4o', input: 'long job', background: true }, /max_output_tokens/);
        const k = await key('openai');
        oa().respond = (req) => (req.path === '/v1/responses' ? { status: 200, body: { id: 'resp_1', object: 'response', status: 'queued', usage: null } } : undefined);
        const r = await call('openai', k.token, '/v1/responses', { model: 'gpt-4o', input: 'long job', background: true, max_output_tokens: 5000 });
        expect(r.status).toBe(200);
        const seen = oa().requests[0]!;
        expect(seen.json).toMatchObject({ background: true, max_output_tokens: 5000 });
        const gpt4o = openai.get('gpt-4o')!;
        expect(await spend(k.id)).toBe(tokenCost(seen.body.length, gpt4o.input) + tokenCost(5000, gpt4o.output));
      });

      it('refuses batches, fine-tuning, vector stores, assistant runs, realtime sessions and containers; their cancels are free', async () => {
        for (const path of [
          '/v1/batches',
          '/v1/fine_tuning/jobs',
          '/v1/fine_tuning/jobs/ftjob-1/resume',
          '/v1/vector_stores',
          '/v1/vector_stores/vs_1/files',
          '/v1/vector_stores/vs_1/search',
          '/v1/threads/runs',
          '/v1/threads/thread_1/runs',
          '/v1/threads/thread_1/runs/run_1/submit_tool_outputs',
          '/v1/realtime/sessions',
          '/v1/realtime/client_secrets',
          '/v1/containers',
          '/v1/something_new',
        ]) {
          await refused('openai', path, { model: 'gpt-4o', input_file_id: 'file-1' }, /capped key|no cost rule/);
        }
        // Free to create, unless it also creates (billed) vector storage.
        await refused('openai', '/v1/threads', { tool_resources: { file_search: { vector_stores: [{ file_ids: ['file-1'] }] } } }, /vector_stores/);
        const k = await key('openai');
        oa().respond = () => ({ status: 200, body: { ok: true } });
        for (const path of ['/v1/batches/batch_1/cancel', '/v1/fine_tuning/jobs/ftjob-1/cancel', '/v1/threads/thread_1/runs/run_1/cancel', '/v1/moderations', '/v1/files', '/v1/assistants', '/v1/threads', '/v1/threads/thread_1/messages', '/v1/responses/input_tokens']) {
          expect((await call('openai', k.token, path, { input: 'x' })).status, path).toBe(200);
        }
        expect((await call('openai', k.token, '/v1/files/file-1', undefined, 'DELETE')).status).toBe(200);
        expect(oa().requests).toHaveLength(10);
        expect(await spend(k.id)).toBe(0);
      });

      it('refuses a response that continues stored state or reads an input file (input the request does not show)', async () => {
        const base = { model: 'gpt-4o', max_output_tokens: 10 };
        await refused('openai', '/v1/responses', { ...base, input: 'next', previous_response_id: 'resp_1' }, /previous_response_id/);
        await refused('openai', '/v1/responses', { ...base, input: 'next', conversation: 'conv_1' }, /stored state/);
        await refused('openai', '/v1/responses', { ...base, prompt: { id: 'pmpt_1' } }, /stored state/);
        const file = { role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] };
        await refused('openai', '/v1/responses', { ...base, input: [file] }, /input file/);
        await refused('openai', '/v1/chat/completions', { model: 'gpt-4o', max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-1' } }] }] }, /input file/);
      });

      it('refuses hosted tools (billed per call) but prices function tools', async () => {
        await refused('openai', '/v1/responses', { model: 'gpt-4o', input: 'x', max_output_tokens: 10, tools: [{ type: 'web_search' }] }, /hosted tool "web_search"/);
        await refused('openai', '/v1/chat/completions', { model: 'gpt-4o', messages: [], max_tokens: 10, web_search_options: {} }, /hosted tool/);
        const k = await key('openai');
        const r = await call('openai', k.token, '/v1/chat/completions', {
          model: 'gpt-4o',
          messages: [{ role: 'user', content: 'hi' }],
          max_tokens: 10,
          tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
        });
        expect(r.status).toBe(200);
      });
    });

    describe('OpenAI images and audio', () => {
      it('prices image generations per image from model, quality and size, and refuses what the table lacks', async () => {
        oa().respond = (req) => (req.path === '/v1/images/generations' ? { status: 200, body: { created: 1, data: [{ url: 'https://example.com/i.png' }] } } : undefined);
        const k = await key('openai');
        expect((await call('openai', k.token, '/v1/images/generations', { model: 'dall-e-3', prompt: 'a cat', quality: 'hd', size: '1792x1024' })).status).toBe(200);
        expect(await spend(k.id)).toBe(120_000);
        expect((await call('openai', k.token, '/v1/images/generations', { model: 'dall-e-2', prompt: 'a cat', n: 3, size: '256x256' })).status).toBe(200);
        expect(await spend(k.id)).toBe(120_000 + 3 * 16_000);
        // gpt-image-1 with quality and size left to "auto": the dearest, plus the prompt's tokens.
        const body = { model: 'gpt-image-1', prompt: 'a dog' };
        expect((await call('openai', k.token, '/v1/images/generations', body)).status).toBe(200);
        expect(await spend(k.id)).toBe(168_000 + 250_000 + tokenCost(JSON.stringify(body).length, 5_000_000));
        oa().reset();
        await refused('openai', '/v1/images/generations', { prompt: 'no model' }, /no image price/);
        await refused('openai', '/v1/images/generations', { model: 'gpt-image-2', prompt: 'x' }, /no image price/);
        await refused('openai', '/v1/images/generations', { model: 'dall-e-3', prompt: 'x', size: '4096x4096' }, /no image price for size/);
        await refused('openai', '/v1/images/edits', { model: 'dall-e-2' }, /capped key/);
        await refused('openai', '/v1/images/variations', { model: 'dall-e-2' }, /capped key/);
      });

      it('prices speech per character of input, and refuses transcriptions and translations', async () => {
        oa().respond = () => ({ status: 200, body: 'ID3-audio', headers: { 'content-type': 'audio/mpeg' } });
        const k = await key('openai');
        expect((await call('openai', k.token, '/v1/audio/speech', { model: 'tts-1-hd', input: 'héllo world', voice: 'alloy' })).status).toBe(200);
        expect(oa().requests[0]!.json).toMatchObject({ input: 'héllo world' });
        expect(await spend(k.id)).toBe(11 * 30);
        oa().reset();
        await refused('openai', '/v1/audio/speech', { model: 'gpt-4o-mini-tts', input: 'x', voice: 'alloy' }, /no speech price/);
        await refused('openai', '/v1/audio/transcriptions', { model: 'whisper-1' }, /minute of audio/);
        await refused('openai', '/v1/audio/translations', { model: 'whisper-1' }, /minute of audio/);
      });
    });

    describe('Anthropic', () => {
      it('prices a message batch request by request at half price, keeps it charged, and refuses one it cannot price', async () => {
        an().respond = (req) => (req.path === '/v1/messages/batches' ? { status: 200, body: { id: 'msgbatch_1', type: 'message_batch', processing_status: 'in_progress' } } : undefined);
        const k = await key('anthropic');
        const params = [
          { model: 'claude-sonnet-4-5', max_tokens: 1000, messages: [{ role: 'user', content: 'one' }] },
          { model: 'claude-opus-4-1-20250805', max_tokens: 200, messages: [{ role: 'user', content: 'two' }] },
        ];
        const r = await call('anthropic', k.token, '/v1/messages/batches', { requests: params.map((p, i) => ({ custom_id: `r${i}`, params: p })) });
        expect(r.status).toBe(200);
        const full =
          usageCost(anthropic.get('claude-sonnet-4-5')!, { input: JSON.stringify(params[0]).length, output: 1000 }) +
          usageCost(anthropic.get('claude-opus-4-1')!, { input: JSON.stringify(params[1]).length, output: 200 });
        expect(await spend(k.id)).toBe(Math.ceil(full / 2));
        an().reset();
        await refused('anthropic', '/v1/messages/batches', { requests: [{ custom_id: 'a', params: { model: 'claude-opus-5-pro', max_tokens: 10, messages: [] } }] }, /no price for model/);
        await refused(
          'anthropic',
          '/v1/messages/batches',
          { requests: [{ custom_id: 'a', params: { model: 'claude-sonnet-4-5', max_tokens: 10, messages: [], tools: [{ type: 'web_search_20250305', name: 'web_search' }] } }] },
          /server tool/,
        );
        const bad = await call('anthropic', (await key('anthropic')).token, '/v1/messages/batches', { requests: [{ custom_id: 'a', params: { model: 'claude-sonnet-4-5', messages: [] } }] });
        expect(bad.body).toMatchObject({ code: 'invalid_amount', param: 'requests' });
        expect(an().requests).toHaveLength(0);
      });

      it('refuses server tools and MCP servers, unlisted models and unknown writes; count_tokens, files and cancels are free', async () => {
        const msg = { model: 'claude-sonnet-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };
        await refused('anthropic', '/v1/messages', { ...msg, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, /"web_search_20250305" is billed/);
        await refused('anthropic', '/v1/messages', { ...msg, tools: [{ type: 'code_execution_20250825', name: 'code_execution' }] }, /"code_execution_20250825" is billed/);
        const doc = { type: 'document', source: { type: 'file', file_id: 'file_1' } };
        await refused('anthropic', '/v1/messages', { ...msg, messages: [{ role: 'user', content: [doc] }] }, /Files API/);
        await refused('anthropic', '/v1/messages', { ...msg, mcp_servers: [{ type: 'url', url: 'https://example.com', name: 'x' }] }, /mcp_servers/);
        await refused('anthropic', '/v1/messages', { ...msg, model: 'claude-opus-4-1-fast' }, /no price for model/);
        await refused('anthropic', '/v1/complete', { model: 'claude-2.1', prompt: 'x', max_tokens_to_sample: 5 }, /no cost rule/);
        await refused('anthropic', '/v1/skills', { name: 'x' }, /no cost rule/);
        const k = await key('anthropic');
        const ok = await call('anthropic', k.token, '/v1/messages', { ...msg, tools: [{ name: 'get_weather', input_schema: { type: 'object' } }, { type: 'bash_20250124', name: 'bash' }] });
        expect(ok.status).toBe(200);
        const charged = await spend(k.id);
        expect(charged).toBeGreaterThan(0);
        an().respond = () => ({ status: 200, body: { ok: true } });
        for (const path of ['/v1/messages/count_tokens', '/v1/files', '/v1/messages/batches/msgbatch_1/cancel']) {
          expect((await call('anthropic', k.token, path, { model: 'claude-sonnet-4-5', messages: [] })).status, path).toBe(200);
        }
        expect(await spend(k.id)).toBe(charged);
      });
    });

    describe('streams cut at the cap event by event', () => {
      it('OpenAI: a 64 KB burst in one chunk is cut at the event that would pass the cap', async () => {
        const CAP = 50_000;
        const text = 'abcd'.repeat(100); // 100 output tokens = $0.001 at gpt-4o's $10/M
        const chunk = (content: string) => sseEvent({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: { content }, finish_reason: null }] });
        const burst = Array.from({ length: 200 }, () => chunk(text)).join('') + sseEvent('[DONE]');
        expect(burst.length).toBeGreaterThan(64 * 1024);
        oa().respond = () => ({ status: 200, events: [burst] });
        const k = await key('openai', CAP / 1e6);
        const res = await fetch(`${t.proxyUrl}/openai/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${k.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'burst' }], stream: true }),
        });
        const got = await res.text();
        expect(oa().streams[0]!.total).toBe(1);
        const events = got.split('\n\n').filter((e) => e.startsWith('data: {'));
        const contents = events.map((e) => JSON.parse(e.slice(6))).filter((o) => o.choices?.[0]?.delta?.content);
        expect(events.at(-1)).toContain('"code":"cap_exhausted"');
        const gpt4o = openai.get('gpt-4o')!;
        const one = tokenCost(deltaTokens(text), gpt4o.output);
        const received = tokenCost(oa().requests[0]!.body.length, gpt4o.input) + contents.length * one;
        // What the caller got fits the cap, and the next event would not have.
        expect(received).toBeLessThanOrEqual(CAP);
        expect(received + one).toBeGreaterThan(CAP);
        expect(contents.length).toBeLessThan(200);
        // Charged for what the vendor produced up to the cut: at most one event past the cap.
        expect(await spend(k.id)).toBeLessThanOrEqual(CAP + one);
      });

      it('OpenAI: an event the vendor never ends is counted too, and held back when it would pass the cap', async () => {
        const chunk = (content: string) => sseEvent({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: { content }, finish_reason: null }] });
        const huge = 'z'.repeat(8000); // 2000 tokens = $0.02
        oa().respond = () => ({ status: 200, events: [chunk('small '), chunk(huge).trimEnd()] });
        const k = await key('openai', 0.005);
        const res = await fetch(`${t.proxyUrl}/openai/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${k.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'tail' }], stream: true }),
        });
        const got = await res.text();
        expect(got).toContain('small ');
        expect(got).not.toContain('zzzz');
        expect(got).toContain('"code":"cap_exhausted"');
      });

      it('Anthropic: a burst in one chunk is cut at the event that would pass the cap', async () => {
        const CAP = 50_000;
        const text = 'abcd'.repeat(100); // 100 tokens = $0.0015 at $15/M
        const events = [
          sseEvent({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], usage: { input_tokens: 5000, output_tokens: 1 } } }, 'message_start'),
          sseEvent({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start'),
          ...Array.from({ length: 150 }, () => sseEvent({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }, 'content_block_delta')),
          sseEvent({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 15000 } }, 'message_delta'),
        ].join('');
        expect(events.length).toBeGreaterThan(64 * 1024);
        an().respond = () => ({ status: 200, events: [events] });
        const k = await key('anthropic', CAP / 1e6);
        const res = await fetch(`${t.proxyUrl}/anthropic/v1/messages`, {
          method: 'POST',
          headers: { 'x-api-key': k.token, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
          body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 3000, messages: [{ role: 'user', content: 'burst' }], stream: true }),
        });
        const got = await res.text();
        expect(an().streams[0]!.total).toBe(1);
        const deltas = got.split('\n\n').filter((e) => e.includes('content_block_delta')).length;
        expect(got).toContain('event: error');
        const sonnet = anthropic.get('claude-sonnet-4-5')!;
        const one = tokenCost(deltaTokens(text), sonnet.output);
        const received = tokenCost(5000, sonnet.input) + tokenCost(1 + deltas * deltaTokens(text), sonnet.output);
        expect(received).toBeLessThanOrEqual(CAP);
        expect(received + one).toBeGreaterThan(CAP);
        expect(await spend(k.id)).toBeLessThanOrEqual(CAP + one);
      });
    });
  });
}
