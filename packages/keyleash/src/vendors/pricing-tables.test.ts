import { describe, expect, it } from 'vitest';
import { anthropicVendor, DEFAULT_ANTHROPIC_MODELS } from './anthropic.js';
import { modelPrices, usageCost } from './llm.js';
import { DEFAULT_OPENAI_MODELS, openaiVendor } from './openai.js';
import { routeTable } from './routes.js';
import { twilioVendor } from './twilio.js';
import { type CallInfo, type Price, type UnknownCostPolicy, unitsThatFit, type Vendor } from './vendor.js';

// The per-vendor classification tables and pricing rules, as pure functions.

const JSON_TYPE = 'application/json';
const FORM = 'application/x-www-form-urlencoded';

function callOf(method: string, path: string, body?: unknown, query = ''): CallInfo {
  const buf = body === undefined ? Buffer.alloc(0) : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const type = body === undefined ? undefined : typeof body === 'string' ? FORM : JSON_TYPE;
  return { method, segments: path.slice(1).split('/'), query, body: buf, contentType: type, callerBody: buf };
}

const openai = (unknownCost: UnknownCostPolicy = { kind: 'auto' }) =>
  openaiVendor({ origin: 'http://x', testSecret: 't', liveSecret: undefined, models: modelPrices(DEFAULT_OPENAI_MODELS), defaultMaxOutputTokens: 100, unknownCost });
const anthropic = () =>
  anthropicVendor({ origin: 'http://x', testSecret: 't', liveSecret: undefined, models: modelPrices(DEFAULT_ANTHROPIC_MODELS), defaultMaxOutputTokens: 100, unknownCost: { kind: 'auto' } });
const twilio = () =>
  twilioVendor({
    origin: 'http://x',
    test: { accountSid: 'AC' + '0'.repeat(32), authToken: 'x'.repeat(32) },
    live: undefined,
    sms: { default: 150_000, prices: new Map([['+1', 8_300]]) },
    mms: { default: 250_000, prices: new Map() },
    calls: { default: 500_000, prices: new Map([['+1', 14_000]]), estimateMinutes: 240 },
    unknownCost: { kind: 'auto' },
  });

const kind = (v: Vendor, c: CallInfo): Price['kind'] => v.price(c).kind;
const micros = (p: Price): number => (p.kind === 'priced' ? p.micros : NaN);

describe('route tables', () => {
  it('match a method and segments: * is one segment, *.json one ending so, a trailing ** one or more', () => {
    const t = routeTable([
      { match: 'POST /a/*/b.json', cls: 1, cost: '' },
      { match: 'POST /a/*/*.json', cls: 2, cost: '' },
      { match: '* /r/**', cls: 3, cost: '' },
    ]);
    const f = (method: string, path: string) => t.find({ method, segments: path.slice(1).split('/') })?.cls;
    expect(f('POST', '/a/x/b.json')).toBe(1);
    expect(f('POST', '/a/x/c.json')).toBe(2);
    expect(f('POST', '/a/x/.json')).toBeUndefined();
    expect(f('POST', '/a/x/c')).toBeUndefined();
    expect(f('GET', '/a/x/c.json')).toBeUndefined();
    expect(f('DELETE', '/r/1/2/3')).toBe(3);
    expect(f('GET', '/r')).toBeUndefined();
  });

  it('unitsThatFit: the whole units a remainder pays for, only when at least the minimum and fewer than asked', () => {
    const s = { units: 240, unitMicros: 14_000, minUnits: 1, body: () => Buffer.alloc(0) };
    expect(unitsThatFit(s, 100_000)).toBe(7);
    expect(unitsThatFit(s, 13_999)).toBeUndefined();
    expect(unitsThatFit(s, -5)).toBeUndefined();
    expect(unitsThatFit(s, 10_000_000)).toBeUndefined();
    expect(unitsThatFit({ ...s, unitMicros: 0 }, 1)).toBeUndefined();
  });
});

describe('OpenAI classification', () => {
  const v = openai();
  it('prices pro models at their own, higher price, and refuses a variant that is not listed', () => {
    const body = (model: string) => ({ model, messages: [], max_completion_tokens: 1000 });
    const o1 = micros(v.price(callOf('POST', '/v1/chat/completions', body('o1'))));
    const pro = micros(v.price(callOf('POST', '/v1/chat/completions', body('o1-pro'))));
    expect(pro).toBeGreaterThanOrEqual(10 * o1 - 10);
    expect(micros(v.price(callOf('POST', '/v1/chat/completions', body('gpt-4o-2024-11-20'))))).toBeGreaterThan(0);
    for (const m of ['o1-pro-max', 'gpt-4-32k-0613', 'gpt-5-pro-preview', 'o3-mini-high']) {
      expect(kind(v, callOf('POST', '/v1/chat/completions', body(m))), m).toBe('unknown');
    }
  });

  it('prices a reasoning model only with an output limit (its reasoning tokens never show in a stream)', () => {
    expect(kind(v, callOf('POST', '/v1/chat/completions', { model: 'gpt-5', messages: [] }))).toBe('unknown');
    expect(kind(v, callOf('POST', '/v1/chat/completions', { model: 'o3-2025-04-16', messages: [], stream: true }))).toBe('unknown');
    expect(kind(v, callOf('POST', '/v1/responses', { model: 'o1-pro', input: 'x' }))).toBe('unknown');
    expect(kind(v, callOf('POST', '/v1/chat/completions', { model: 'gpt-5', messages: [], max_completion_tokens: 100 }))).toBe('priced');
    expect(kind(v, callOf('POST', '/v1/responses', { model: 'o1-pro', input: 'x', max_output_tokens: 100 }))).toBe('priced');
    expect(kind(v, callOf('POST', '/v1/chat/completions', { model: 'gpt-4o', messages: [] }))).toBe('priced');
  });

  it('prices a background response only with max_output_tokens', () => {
    expect(kind(v, callOf('POST', '/v1/responses', { model: 'gpt-4o', input: 'x', background: true }))).toBe('unknown');
    const c = callOf('POST', '/v1/responses', { model: 'gpt-4o', input: 'x', background: true, max_output_tokens: 1000 });
    const p = modelPrices(DEFAULT_OPENAI_MODELS).get('gpt-4o')!;
    expect(micros(v.price(c))).toBe(usageCost(p, { input: c.body.length, output: 1000 }));
    expect(v.meter!(c, { status: 200, headers: { 'content-type': JSON_TYPE } })).toBeUndefined();
  });

  it('prices images and speech from their tables', () => {
    expect(micros(v.price(callOf('POST', '/v1/images/generations', { model: 'dall-e-3', prompt: 'x' })))).toBe(40_000);
    expect(micros(v.price(callOf('POST', '/v1/images/generations', { model: 'dall-e-2', prompt: 'x', n: 2, size: '512x512' })))).toBe(36_000);
    expect(kind(v, callOf('POST', '/v1/images/generations', { model: 'dall-e-2', prompt: 'x', n: 11 }))).toBe('invalid');
    expect(kind(v, callOf('POST', '/v1/images/generations', { model: 'dall-e-3', prompt: 'x', quality: 'ultra' }))).toBe('unknown');
    expect(micros(v.price(callOf('POST', '/v1/audio/speech', { model: 'tts-1', input: 'abc', voice: 'alloy' })))).toBe(45);
    expect(kind(v, callOf('POST', '/v1/audio/speech', { model: 'tts-1', voice: 'alloy' }))).toBe('invalid');
  });

  it('classifies every endpoint family: free, refused, or (unlisted) left to unknown_cost', () => {
    const free = ['POST /v1/moderations', 'POST /v1/files', 'POST /v1/batches/b/cancel', 'POST /v1/threads/t/messages', 'GET /v1/models', 'DELETE /v1/files/f'];
    const refused = [
      'POST /v1/batches',
      'POST /v1/fine_tuning/jobs',
      'POST /v1/vector_stores',
      'POST /v1/threads/t/runs',
      'POST /v1/threads/runs',
      'POST /v1/realtime/sessions',
      'GET /v1/realtime',
      'POST /v1/audio/transcriptions',
      'POST /v1/images/edits',
    ];
    for (const r of free) expect(kind(v, callOf(r.split(' ')[0]!, r.split(' ')[1]!, {})), r).toBe('priced');
    for (const r of refused) expect(kind(v, callOf(r.split(' ')[0]!, r.split(' ')[1]!, {})), r).toBe('unknown');
    expect(kind(v, callOf('POST', '/v1/new_thing', {}))).toBe('unknown');
    const withStore = { tool_resources: { file_search: { vector_stores: [{ file_ids: ['file-1'] }] } } };
    expect(kind(v, callOf('POST', '/v1/threads', withStore))).toBe('unknown');
    expect(kind(v, callOf('POST', '/v1/assistants', { model: 'gpt-4o', ...withStore }))).toBe('unknown');
    expect(kind(v, callOf('POST', '/v1/assistants', { model: 'gpt-4o', tool_resources: { file_search: { vector_store_ids: ['vs_1'] } } }))).toBe('priced');
    // An operator's unknown_cost covers only what is not classified: known money-movers stay refused.
    const lax = openai({ kind: 'free' });
    expect(kind(lax, callOf('POST', '/v1/new_thing', {}))).toBe('priced');
    expect(kind(lax, callOf('POST', '/v1/batches', {}))).toBe('unknown');
  });
});

describe('Anthropic classification', () => {
  const v = anthropic();
  it('prices a batch at half the sum of its requests, and refuses server tools', () => {
    const params = { model: 'claude-3-5-haiku-20241022', max_tokens: 100, messages: [] };
    const p = modelPrices(DEFAULT_ANTHROPIC_MODELS).get('claude-3-5-haiku')!;
    const one = usageCost(p, { input: JSON.stringify(params).length, output: 100 });
    const batch = { requests: [{ custom_id: 'a', params }, { custom_id: 'b', params }] };
    expect(micros(v.price(callOf('POST', '/v1/messages/batches', batch)))).toBe(Math.ceil((2 * one) / 2));
    expect(kind(v, callOf('POST', '/v1/messages', { ...params, tools: [{ type: 'web_fetch_20250910', name: 'web_fetch' }] }))).toBe('unknown');
    expect(kind(v, callOf('POST', '/v1/messages', { ...params, tools: [{ type: 'text_editor_20250728', name: 'str_replace_based_edit_tool' }] }))).toBe('priced');
    expect(kind(v, callOf('POST', '/v1/messages', { ...params, model: 'claude-3-5-haiku-latest' }))).toBe('priced');
    expect(kind(v, callOf('POST', '/v1/messages', { ...params, model: 'claude-3-5-haiku-2' }))).toBe('unknown');
    expect(kind(v, callOf('POST', '/v1/messages/count_tokens', params))).toBe('priced');
  });
});

describe('Anthropic cache and long-context prices', () => {
  const v = anthropic();
  const sonnet = modelPrices(DEFAULT_ANTHROPIC_MODELS).get('claude-sonnet-4-5')!;
  const settle = (body: object, usage: object): number | undefined => {
    const c = callOf('POST', '/v1/messages', body);
    const m = v.meter!(c, { status: 200, headers: { 'content-type': JSON_TYPE } })!;
    m.push(Buffer.from(JSON.stringify({ usage })));
    m.flush();
    return m.result();
  };

  it('settles hour-long cache writes at twice the input price, and reserves a cached request as such', () => {
    const body = { model: 'claude-sonnet-4-5', max_tokens: 10, system: [{ type: 'text', text: 'x', cache_control: { type: 'ephemeral', ttl: '1h' } }], messages: [] };
    const usage = { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 3000, cache_read_input_tokens: 0, cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 2000 } };
    expect(settle(body, usage)).toBe(30 + 75 + 3750 + 12_000); // input, output, 1000 × $3.75/M, 2000 × $6/M
    const c = callOf('POST', '/v1/messages', body);
    expect(micros(v.price(c))).toBe(Math.ceil((c.body.length * 6_000_000) / 1e6) + 150);
  });

  it('prices Sonnet 4.5 past 200K input tokens at the long-context rate, for the reservation and the settlement', () => {
    const body = { model: 'claude-sonnet-4-5-20250929', max_tokens: 1000, messages: [{ role: 'user', content: 'x'.repeat(210_000) }] };
    const c = callOf('POST', '/v1/messages', body);
    expect(micros(v.price(c))).toBe(Math.ceil((c.body.length * 6_000_000) / 1e6) + 22_500);
    expect(settle(body, { input_tokens: 250_000, output_tokens: 1000 })).toBe(1_500_000 + 22_500);
    expect(settle(body, { input_tokens: 150_000, output_tokens: 1000 })).toBe(usageCost(sonnet, { input: 150_000, output: 1000 }));
    // Opus has no long-context rate.
    expect(settle({ ...body, model: 'claude-opus-4-1' }, { input_tokens: 250_000, output_tokens: 0 })).toBe(3_750_000);
  });
});

describe('Twilio classification', () => {
  const v = twilio();
  const acc = '/2010-04-01/Accounts/-';
  it('gives a call a TimeLimit and prices it per minute, shrinkable to what the cap has left', () => {
    const target = { method: 'POST', segments: `${acc}/Calls.json`.slice(1).split('/') };
    const prepared = v.prepareBody(Buffer.from('To=%2B14155550100&From=%2B15005550006'), FORM, target);
    expect(prepared.ok && prepared.body.toString()).toBe('To=%2B14155550100&From=%2B15005550006&TimeLimit=14400');
    const kept = v.prepareBody(Buffer.from('To=%2B1&TimeLimit=61'), FORM, target);
    expect(kept.ok && kept.body.toString()).toBe('To=%2B1&TimeLimit=61');
    const p = v.price(callOf('POST', `${acc}/Calls.json`, 'To=%2B14155550100&TimeLimit=61&Url=u'));
    expect(p).toMatchObject({ kind: 'priced', micros: 28_000, shrink: { units: 2, unitMicros: 14_000, minUnits: 1 } });
    expect(p.kind === 'priced' && p.shrink!.body(1).toString()).toBe('To=%2B14155550100&Url=u&TimeLimit=60');
    expect(kind(v, callOf('POST', `${acc}/Calls.json`, 'To=%2B1&TimeLimit=0'))).toBe('invalid');
    for (const extra of ['Record=true', 'MachineDetection=Enable', 'AsyncAmd=true', 'Transcribe=true']) {
      expect(kind(v, callOf('POST', `${acc}/Calls.json`, `To=%2B1&TimeLimit=60&${extra}`)), extra).toBe('unknown');
    }
    expect(kind(v, callOf('POST', `${acc}/Calls.json`, 'To=%2B1&TimeLimit=60&Record=false'))).toBe('priced');
  });

  it('classifies numbers, Verify, Lookup and call updates', () => {
    expect(kind(v, callOf('POST', `${acc}/IncomingPhoneNumbers.json`, 'PhoneNumber=1'))).toBe('unknown');
    expect(kind(v, callOf('POST', `${acc}/IncomingPhoneNumbers/Mobile.json`, 'AreaCode=1'))).toBe('unknown');
    expect(kind(v, callOf('POST', `${acc}/IncomingPhoneNumbers/PN1.json`, 'FriendlyName=x'))).toBe('priced');
    expect(kind(v, callOf('POST', '/v2/Services/VA1/Verifications', 'To=1'))).toBe('unknown');
    expect(kind(v, callOf('GET', '/v2/PhoneNumbers/+1415', undefined, 'Fields=caller_name'))).toBe('unknown');
    expect(kind(v, callOf('GET', '/v2/PhoneNumbers/+1415', undefined, 'CountryCode=US'))).toBe('priced');
    expect(kind(v, callOf('POST', `${acc}/Calls/CA1.json`, 'Status=completed'))).toBe('priced');
    expect(kind(v, callOf('POST', `${acc}/Calls/CA1.json`, 'Url=https%3A%2F%2Fx'))).toBe('unknown');
    expect(kind(v, callOf('POST', `${acc}/Messages.json`, 'To=whatsapp%3A%2B1&Body=hi'))).toBe('unknown');
    expect(kind(v, callOf('POST', `${acc}/Queues.json`, 'FriendlyName=q'))).toBe('unknown');
  });
});
