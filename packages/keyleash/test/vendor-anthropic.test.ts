import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sseEvent } from '../src/sandbox/base.js';
import { inputTokens } from '../src/sandbox/anthropic.js';
import { DEFAULT_ANTHROPIC_MODELS } from '../src/vendors/anthropic.js';
import { modelPrices, tokenCost } from '../src/vendors/llm.js';
import { ANTHROPIC_LIVE_SECRET, ANTHROPIC_TEST_SECRET, startGateway, type TestGateway } from './harness.js';

// The official `@anthropic-ai/sdk`, unchanged but for baseURL and the vault token as its API key.

const MODEL = 'claude-sonnet-4-5-20250929';
const sonnet = modelPrices(DEFAULT_ANTHROPIC_MODELS).get('claude-sonnet-4-5')!;
const cost = (input: number, output: number) => tokenCost(input, sonnet.input) + tokenCost(output, sonnet.output);

let t: TestGateway;
const an = () => t.sandboxes.anthropic!;

beforeAll(async () => {
  t = await startGateway(undefined, { sandboxes: ['anthropic'] });
});
afterAll(async () => {
  await t.close();
});
beforeEach(() => {
  an().reset();
});

const anthropicKey = (extra: Record<string, unknown> = {}) => ({
  label: 'agent-claude',
  vendor: 'anthropic',
  allowed_endpoints: ['POST /v1/messages', 'POST /v1/messages/count_tokens'],
  daily_usd_cap: 1,
  expires_in: '5m',
  ...extra,
});

function client(token: string): Anthropic {
  return new Anthropic({ apiKey: token, baseURL: `${t.proxyUrl}/anthropic`, maxRetries: 0 });
}

async function spend(id: string): Promise<number> {
  return (await t.admin('GET', `/v1/keys/${id}`)).body.spend_today_micros;
}

describe('anthropic through the proxy with the official SDK', () => {
  it('injects the real key as x-api-key, never forwards the vault token, and settles from usage', async () => {
    const key = await t.issue(anthropicKey());
    const msg = await client(key.token).messages.create({ model: MODEL, max_tokens: 1024, messages: [{ role: 'user', content: 'hello claude' }] });
    expect(msg.content[0]).toMatchObject({ type: 'text' });
    const seen = an().requests[0]!;
    expect(seen.path).toBe('/v1/messages');
    expect(seen.headers['x-api-key']).toBe(ANTHROPIC_TEST_SECRET);
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['anthropic-version']).toBeTruthy();
    expect(JSON.stringify(seen.headers)).not.toContain(key.token);
    expect(await spend(key.id)).toBe(cost(msg.usage.input_tokens, msg.usage.output_tokens));
  });

  it('accepts the vault token in x-api-key too (older SDKs, curl), and strips it', async () => {
    const key = await t.issue(anthropicKey());
    const r = await fetch(`${t.proxyUrl}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key.token, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(r.status).toBe(200);
    expect(an().requests[0]!.headers['x-api-key']).toBe(ANTHROPIC_TEST_SECRET);
  });

  it('streams message events as they come and settles from message_start + message_delta usage', async () => {
    const key = await t.issue(anthropicKey());
    const stream = client(key.token).messages.stream({ model: MODEL, max_tokens: 1024, messages: [{ role: 'user', content: 'stream to me' }] });
    const deltas: string[] = [];
    stream.on('text', (d) => deltas.push(d));
    const final = await stream.finalMessage();
    expect(deltas.length).toBeGreaterThan(5);
    expect(deltas.join('')).toContain('You said: stream to me');
    const sent = an().requests[0]!.json as Record<string, unknown>;
    expect(final.usage.input_tokens).toBe(inputTokens(sent));
    expect(await spend(key.id)).toBe(cost(inputTokens(sent), deltas.length));
    await t.gw.audit.flush();
    const [audit] = (await t.admin('GET', `/v1/audit?key_id=${key.id}`)).body.data;
    expect(audit).toMatchObject({ status: 200, code: null, cost_micros: cost(inputTokens(sent), deltas.length) });
  });

  it('keeps the reserved estimate when the stream breaks before its usage arrives', async () => {
    const key = await t.issue(anthropicKey());
    an().behaviour.cutBeforeUsage = true;
    const r = await fetch(`${t.proxyUrl}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.token}`, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, max_tokens: 300, stream: true, messages: [{ role: 'user', content: 'cut me' }] }),
    });
    expect(r.status).toBe(200);
    const text = await r.text().catch(() => '');
    expect(text).toContain('content_block_delta');
    expect(text).not.toContain('message_delta');
    const bytes = an().requests[0]!.body.length;
    expect(await spend(key.id)).toBe(cost(bytes, 300));
  });

  it('cuts a stream whose real input outgrows the reservation at the cap, with an Anthropic error event', async () => {
    // An image-heavy prompt can cost more input tokens than its bytes: the vendor says so in message_start.
    const key = await t.issue(anthropicKey({ daily_usd_cap: 0.05 }));
    an().respond = () => ({
      status: 200,
      eventDelayMs: 2,
      events: [
        sseEvent({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: MODEL, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 100_000, output_tokens: 1 } } }, 'message_start'),
        sseEvent({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start'),
        ...Array.from({ length: 50 }, () => sseEvent({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'more ' } }, 'content_block_delta')),
        sseEvent({ type: 'content_block_stop', index: 0 }, 'content_block_stop'),
        sseEvent({ type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 50 } }, 'message_delta'),
        sseEvent({ type: 'message_stop' }, 'message_stop'),
      ],
    });
    const stream = client(key.token).messages.stream({ model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: 'look at this picture' }] });
    const err = await stream.finalMessage().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect((err as { error?: { error?: { type?: string } } }).error?.error?.type).toBe('cap_exhausted');
    await an().streams[0]!.done;
    expect(an().streams[0]!.abandoned).toBe(true);
    // Counted: 100k real input tokens ($0.30) — more than the cap allowed, and charged in full.
    expect(await spend(key.id)).toBeGreaterThanOrEqual(cost(100_000, 1));
    await t.gw.audit.flush();
    const [audit] = (await t.admin('GET', `/v1/audit?key_id=${key.id}`)).body.data;
    expect(audit.code).toBe('cap_exhausted');
  });

  it('counts tokens for free, and uses the live key only for live vault keys', async () => {
    const key = await t.issue(anthropicKey());
    const r = await client(key.token).messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'count me' }] });
    expect(r.input_tokens).toBeGreaterThan(0);
    expect(await spend(key.id)).toBe(0);
    const live = await t.issue(anthropicKey({ mode: 'live' }));
    await client(live.token).messages.create({ model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'x' }] });
    expect(an().requests.map((q) => q.headers['x-api-key'])).toEqual([ANTHROPIC_TEST_SECRET, ANTHROPIC_LIVE_SECRET]);
  });
});
