import type { Mode } from '../keys/token.js';
import { OPENAI_HEADERS } from './forwarded-headers.js';
import {
  deltaTokens,
  findModelPrice,
  scalePrice,
  tokenCost,
  inputTokenBound,
  type LlmVendorConfig,
  type ModelPrice,
  type ModelPriceInput,
  nonNegInt,
  TokenMeter,
  type TokenUsage,
  usageCost,
} from './llm.js';
import { routeTable } from './routes.js';
import { parseJson, type SseEvent } from './sse.js';
import {
  type CallInfo,
  type CallTarget,
  describePolicy,
  FREE,
  headerValue,
  jsonObject,
  mediaType,
  NO_RETRY_HEADERS,
  type Outcome,
  type PreparedBody,
  type Price,
  type ResponseInfo,
  type ResponseMeter,
  type UnknownCostPolicy,
  unknownCost,
  type Vendor,
} from './vendor.js';

/**
 * USD per million tokens (input, output). Approximate list prices; override or extend in config.
 * A model is priced by its exact name, or a dated snapshot of a listed one ("gpt-4o-2024-08-06");
 * any other name (a "-pro", "-32k" or other variant not listed) is unknown, never its prefix's price.
 */
export const DEFAULT_OPENAI_MODELS: Readonly<Record<string, ModelPriceInput>> = Object.freeze({
  'gpt-5': { input: 1.25, output: 10 },
  'gpt-5-mini': { input: 0.25, output: 2 },
  'gpt-5-nano': { input: 0.05, output: 0.4 },
  'gpt-4.1': { input: 2, output: 8 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4 },
  'gpt-4o': { input: 2.5, output: 10 },
  'gpt-4o-mini': { input: 0.15, output: 0.6 },
  'gpt-4-turbo': { input: 10, output: 30 },
  'gpt-4': { input: 30, output: 60 },
  'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
  'gpt-5-pro': { input: 15, output: 120 },
  'gpt-4o-2024-05-13': { input: 5, output: 15 },
  'gpt-4-0613': { input: 30, output: 60 },
  'gpt-4-0314': { input: 30, output: 60 },
  'gpt-4-32k': { input: 60, output: 120 },
  'gpt-3.5-turbo-0125': { input: 0.5, output: 1.5 },
  o1: { input: 15, output: 60 },
  'o1-pro': { input: 150, output: 600 },
  'o1-mini': { input: 1.1, output: 4.4 },
  o3: { input: 2, output: 8 },
  'o3-pro': { input: 20, output: 80 },
  'o3-mini': { input: 1.1, output: 4.4 },
  'o4-mini': { input: 1.1, output: 4.4 },
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'text-embedding-ada-002': { input: 0.1, output: 0 },
});

/** The output limit read from max_tokens / max_completion_tokens / max_output_tokens. */
export type OpenAIVendorConfig = LlmVendorConfig;

type Endpoint = 'chat' | 'completions' | 'embeddings' | 'responses';

/** How an endpoint is priced: tokens, a per-image or per-character table, free, or refused on a capped key. */
type OpenAIClass =
  | { kind: 'tokens'; ep: Endpoint }
  | { kind: 'images' }
  | { kind: 'speech' }
  /** `unless`: a body key that makes the call create something billed (refused on a capped key). */
  | { kind: 'free'; unless?: string }
  | { kind: 'unknown' };

/** Creating an assistant or thread with `vector_stores` also creates billed vector storage. */
const NEW_VECTOR_STORE = 'vector_stores';

const UNBOUNDED = 'its cost is not bounded by anything in the request';

/** Every OpenAI endpoint keyleash knows, first match wins; anything else falls to unknown_cost. */
export const OPENAI_ROUTES = routeTable<OpenAIClass>([
  { match: 'POST /v1/chat/completions', cls: { kind: 'tokens', ep: 'chat' }, cost: 'tokens: input (reserved as the body size) + output (max_completion_tokens or max_tokens, else the default, × n), settled from usage; hosted tools (web_search_options), and reasoning models without an output limit, refused on a capped key' },
  { match: 'POST /v1/completions', cls: { kind: 'tokens', ep: 'completions' }, cost: 'tokens: input + max_tokens × max(n, best_of), settled from usage' },
  { match: 'POST /v1/responses/input_tokens', cls: { kind: 'free' }, cost: 'free (counts tokens)' },
  { match: 'POST /v1/responses/*/cancel', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/responses', cls: { kind: 'tokens', ep: 'responses' }, cost: 'tokens: input + max_output_tokens, settled from usage; background: true (and a reasoning model) needs max_output_tokens on a capped key; a background response stays charged at its reservation (its usage is not in the answer); stored state (previous_response_id, conversation, prompt), input files and hosted tools (any tool but function/custom) refused on a capped key' },
  { match: 'POST /v1/embeddings', cls: { kind: 'tokens', ep: 'embeddings' }, cost: 'tokens: input, settled from usage' },
  { match: 'POST /v1/moderations', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/images/generations', cls: { kind: 'images' }, cost: 'per image: n × the price for model, quality and size (+ prompt tokens and partial images for gpt-image-1); model required' },
  { match: 'POST /v1/audio/speech', cls: { kind: 'speech' }, cost: 'per character of input (tts-1, tts-1-hd); other models refused on a capped key' },
  { match: 'POST /v1/audio/transcriptions', cls: { kind: 'unknown' }, cost: 'refused on a capped key: billed per minute of audio, which the request does not state' },
  { match: 'POST /v1/audio/translations', cls: { kind: 'unknown' }, cost: 'refused on a capped key: billed per minute of audio, which the request does not state' },
  { match: 'POST /v1/images/edits', cls: { kind: 'unknown' }, cost: 'refused on a capped key: priced by input images keyleash does not measure' },
  { match: 'POST /v1/images/variations', cls: { kind: 'unknown' }, cost: 'refused on a capped key: priced by input images keyleash does not measure' },
  { match: 'POST /v1/batches/*/cancel', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/batches', cls: { kind: 'unknown' }, cost: 'refused on a capped key: the requests are in an uploaded file keyleash does not see' },
  { match: 'POST /v1/fine_tuning/jobs/*/cancel', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/fine_tuning/jobs/*/pause', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/fine_tuning/**', cls: { kind: 'unknown' }, cost: `refused on a capped key: training ${UNBOUNDED}` },
  { match: 'POST /v1/files', cls: { kind: 'free' }, cost: 'free (file storage is not billed)' },
  { match: 'POST /v1/uploads', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/uploads/**', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/vector_stores', cls: { kind: 'unknown' }, cost: 'refused on a capped key: storage is billed per GB-day' },
  { match: 'POST /v1/vector_stores/**', cls: { kind: 'unknown' }, cost: 'refused on a capped key: storage is billed per GB-day, searches per call' },
  { match: 'POST /v1/assistants', cls: { kind: 'free', unless: NEW_VECTOR_STORE }, cost: 'free; with tool_resources creating vector_stores, refused on a capped key (storage is billed)' },
  { match: 'POST /v1/assistants/*', cls: { kind: 'free', unless: NEW_VECTOR_STORE }, cost: 'free; with tool_resources creating vector_stores, refused on a capped key (storage is billed)' },
  { match: 'POST /v1/threads/runs', cls: { kind: 'unknown' }, cost: `refused on a capped key: a run spends tokens over a whole thread; ${UNBOUNDED}` },
  { match: 'POST /v1/threads/*/runs/*/cancel', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/threads/*/runs/**', cls: { kind: 'unknown' }, cost: `refused on a capped key: a run spends tokens over a whole thread; ${UNBOUNDED}` },
  { match: 'POST /v1/threads/*/runs', cls: { kind: 'unknown' }, cost: `refused on a capped key: a run spends tokens over a whole thread; ${UNBOUNDED}` },
  { match: 'POST /v1/threads', cls: { kind: 'free', unless: NEW_VECTOR_STORE }, cost: 'free; with tool_resources creating vector_stores, refused on a capped key (storage is billed)' },
  { match: 'POST /v1/threads/*', cls: { kind: 'free', unless: NEW_VECTOR_STORE }, cost: 'free; with tool_resources creating vector_stores, refused on a capped key (storage is billed)' },
  { match: 'POST /v1/threads/*/messages', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/threads/*/messages/*', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/conversations', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/conversations/**', cls: { kind: 'free' }, cost: 'free' },
  { match: 'GET /v1/realtime', cls: { kind: 'unknown' }, cost: 'refused on a capped key: a realtime session is billed outside the proxy' },
  { match: '* /v1/realtime/**', cls: { kind: 'unknown' }, cost: 'refused on a capped key: a realtime session (or its client secret) is billed outside the proxy' },
  { match: 'POST /v1/containers', cls: { kind: 'unknown' }, cost: 'refused on a capped key: containers are billed per session' },
  { match: 'POST /v1/containers/**', cls: { kind: 'unknown' }, cost: 'refused on a capped key: containers are billed per session' },
  { match: 'GET /**', cls: { kind: 'free' }, cost: 'free (reads)' },
  { match: 'DELETE /**', cls: { kind: 'free' }, cost: 'free (deletes)' },
]);

/** Micros per image by model, quality and size; a model, quality or size not listed is unknown. */
export const OPENAI_IMAGE_PRICES: Readonly<Record<string, { defaultQuality: string; defaultSize?: string; quality: Readonly<Record<string, Readonly<Record<string, number>>>> }>> = {
  'dall-e-2': { defaultQuality: 'standard', defaultSize: '1024x1024', quality: { standard: { '256x256': 16_000, '512x512': 18_000, '1024x1024': 20_000 } } },
  'dall-e-3': {
    defaultQuality: 'standard',
    defaultSize: '1024x1024',
    quality: {
      standard: { '1024x1024': 40_000, '1024x1792': 80_000, '1792x1024': 80_000 },
      hd: { '1024x1024': 80_000, '1024x1792': 120_000, '1792x1024': 120_000 },
    },
  },
  'gpt-image-1': {
    defaultQuality: 'high',
    quality: {
      low: { '1024x1024': 11_000, '1024x1536': 16_000, '1536x1024': 16_000 },
      medium: { '1024x1024': 42_000, '1024x1536': 63_000, '1536x1024': 63_000 },
      high: { '1024x1024': 167_000, '1024x1536': 250_000, '1536x1024': 250_000 },
    },
  },
};
/** gpt-image-1: text input per million tokens, and a partial image (100 output tokens at $40/M). */
const GPT_IMAGE_TEXT_INPUT = 5_000_000;
const GPT_IMAGE_PARTIAL = 4_000;

/** Micros per character of speech input. */
export const OPENAI_SPEECH_PRICES: Readonly<Record<string, number>> = { 'tts-1': 15, 'tts-1-hd': 30 };

/** Dated snapshots ("gpt-4o-2024-08-06") are priced as their base model; nothing else is. */
export const OPENAI_SNAPSHOT = /^(.+)-\d{4}-\d{2}-\d{2}$/;

/**
 * Reasoning models bill hidden reasoning tokens as output: a stream never shows them, so they
 * cannot be counted (or cut) as they pass, and only an output limit the vendor enforces bounds them.
 */
export const OPENAI_REASONING_MODELS: ReadonlySet<string> = new Set(['o1', 'o1-pro', 'o1-mini', 'o3', 'o3-pro', 'o3-mini', 'o4-mini', 'gpt-5', 'gpt-5-mini', 'gpt-5-nano', 'gpt-5-pro']);

function isReasoning(model: unknown): boolean {
  if (typeof model !== 'string') return false;
  return OPENAI_REASONING_MODELS.has(model) || OPENAI_REASONING_MODELS.has(OPENAI_SNAPSHOT.exec(model)?.[1] ?? '');
}

/** Tools the caller runs itself cost only tokens; hosted ones (search, code, files…) are billed per call. */
const CLIENT_TOOLS = new Set(['function', 'custom']);

function hostedTool(body: Record<string, unknown>): string | undefined {
  if (body.web_search_options !== undefined) return 'web_search_options';
  if (!Array.isArray(body.tools)) return undefined;
  for (const t of body.tools as unknown[]) {
    const type = t && typeof t === 'object' ? (t as { type?: unknown }).type : undefined;
    if (typeof type !== 'string' || !CLIENT_TOOLS.has(type)) return String(type);
  }
  return undefined;
}

/** Priority processing is billed at up to twice the standard price; reserved and settled at twice. */
function tierFactor(body: Record<string, unknown>): number {
  return body.service_tier === 'priority' ? 2 : 1;
}

function imagePrice(body: Record<string, unknown>, bodyBytes: number): Price {
  const model = body.model;
  const table = typeof model === 'string' && Object.hasOwn(OPENAI_IMAGE_PRICES, model) ? OPENAI_IMAGE_PRICES[model]! : undefined;
  if (!table) return { kind: 'unknown', reason: `no image price for model ${JSON.stringify(String(model ?? '(none)')).slice(0, 80)}` };
  const quality = body.quality === undefined || body.quality === null || body.quality === 'auto' ? table.defaultQuality : body.quality;
  const sizes = typeof quality === 'string' && Object.hasOwn(table.quality, quality) ? table.quality[quality]! : undefined;
  if (!sizes) return { kind: 'unknown', reason: `no image price for quality ${JSON.stringify(String(quality)).slice(0, 40)}` };
  // A size left out is the model's default; "auto" (or no default) is priced as the dearest.
  const size = body.size === undefined || body.size === null ? table.defaultSize : body.size;
  const each =
    size === undefined || size === 'auto'
      ? Math.max(...Object.values(sizes))
      : typeof size === 'string' && Object.hasOwn(sizes, size)
        ? sizes[size]!
        : undefined;
  if (each === undefined) return { kind: 'unknown', reason: `no image price for size ${JSON.stringify(String(size)).slice(0, 40)}` };
  const n = body.n === undefined || body.n === null ? 1 : nonNegInt(body.n);
  if (n === undefined || n < 1 || n > 10) return { kind: 'invalid', reason: "'n' must be a whole number from 1 to 10", param: 'n' };
  let micros = n * each;
  if (model === 'gpt-image-1') {
    const partial = body.partial_images === undefined || body.partial_images === null ? 0 : nonNegInt(body.partial_images);
    if (partial === undefined || partial > 3) return { kind: 'invalid', reason: "'partial_images' must be 0 to 3", param: 'partial_images' };
    micros += tokenCost(bodyBytes, GPT_IMAGE_TEXT_INPUT) + n * partial * GPT_IMAGE_PARTIAL;
  }
  return { kind: 'priced', micros };
}

function speechPrice(body: Record<string, unknown>): Price {
  const model = body.model;
  const each = typeof model === 'string' && Object.hasOwn(OPENAI_SPEECH_PRICES, model) ? OPENAI_SPEECH_PRICES[model]! : undefined;
  if (each === undefined) return { kind: 'unknown', reason: `no speech price for model ${JSON.stringify(String(model ?? '(none)')).slice(0, 80)}` };
  if (typeof body.input !== 'string') return { kind: 'invalid', reason: "'input' must be the text to speak", param: 'input' };
  return { kind: 'priced', micros: [...body.input].length * each };
}

function endpointOf(t: CallTarget): Endpoint | undefined {
  const r = OPENAI_ROUTES.find(t);
  return r?.cls.kind === 'tokens' ? r.cls.ep : undefined;
}

/** Streams that can carry usage only when asked for it with stream_options.include_usage. */
const ASKS_FOR_USAGE = new Set<Endpoint>(['chat', 'completions']);

function wantsUsage(body: Record<string, unknown> | null): boolean {
  const o = body?.stream_options;
  return !!o && typeof o === 'object' && (o as Record<string, unknown>).include_usage === true;
}

/** The output limit the request sets itself (the vendor enforces it), else undefined. */
function explicitMaxOutput(ep: Endpoint, body: Record<string, unknown>): number | undefined {
  const limit =
    ep === 'responses' ? nonNegInt(body.max_output_tokens) : ep === 'embeddings' ? 0 : (nonNegInt(body.max_completion_tokens) ?? nonNegInt(body.max_tokens));
  return limit === undefined ? undefined : outputTokens(ep, body, limit);
}

function outputTokens(ep: Endpoint, body: Record<string, unknown>, dflt: number): number {
  const choices = Math.min(128, Math.max(1, nonNegInt(body.n) ?? 1));
  switch (ep) {
    case 'embeddings':
      return 0;
    case 'responses':
      return nonNegInt(body.max_output_tokens) ?? dflt;
    case 'completions':
      return (nonNegInt(body.max_tokens) ?? 16) * Math.max(choices, Math.min(128, nonNegInt(body.best_of) ?? 1));
    case 'chat':
      return (nonNegInt(body.max_completion_tokens) ?? nonNegInt(body.max_tokens) ?? dflt) * choices;
  }
}

function usageOf(body: unknown): TokenUsage | undefined {
  const u = (body as { usage?: Record<string, unknown> } | null)?.usage;
  if (!u || typeof u !== 'object') return undefined;
  const prompt = nonNegInt(u.prompt_tokens) ?? nonNegInt(u.input_tokens);
  if (prompt === undefined) return undefined;
  const completion = nonNegInt(u.completion_tokens) ?? nonNegInt(u.output_tokens);
  // Embeddings report no completion tokens; anything else must say how many it produced.
  if (completion === undefined && u.total_tokens !== prompt) return undefined;
  return { input: prompt, output: completion ?? 0 };
}

class OpenAIMeter extends TokenMeter {
  constructor(
    o: ConstructorParameters<typeof TokenMeter>[0],
    private readonly hideUsageChunk: boolean,
  ) {
    super(o);
  }

  protected onEvent(ev: SseEvent): 'drop' | void {
    if (ev.empty || ev.data === '' || ev.data.startsWith('[DONE]')) return;
    const obj = parseJson(ev.data) as Record<string, unknown> | undefined;
    if (!obj || typeof obj !== 'object') return;
    // Responses API: typed events; the last one carries the response with its usage.
    if (typeof obj.type === 'string') {
      if (obj.type.endsWith('.delta')) this.outputCounted += deltaTokens(obj.delta);
      if (obj.type === 'response.completed') this.final = usageOf(obj.response) ?? this.final;
      return;
    }
    const choices = Array.isArray(obj.choices) ? (obj.choices as Array<Record<string, unknown>>) : [];
    for (const c of choices) {
      this.outputCounted += deltaTokens(c?.text);
      const d = c?.delta as Record<string, unknown> | undefined;
      if (!d || typeof d !== 'object') continue;
      this.outputCounted += deltaTokens(d.content) + deltaTokens(d.refusal) + deltaTokens(d.reasoning_content);
      const fc = d.function_call as { arguments?: unknown } | undefined;
      this.outputCounted += deltaTokens(fc?.arguments);
      if (Array.isArray(d.tool_calls)) {
        for (const tc of d.tool_calls as Array<{ function?: { arguments?: unknown } }>) this.outputCounted += deltaTokens(tc?.function?.arguments);
      }
    }
    const usage = usageOf(obj);
    if (usage) {
      this.final = usage;
      // The usage-only chunk exists because keyleash asked for it; a caller who did not is not shown it.
      if (this.hideUsageChunk && choices.length === 0) return 'drop';
    }
  }

  protected usageOf(body: unknown): TokenUsage | undefined {
    return usageOf(body);
  }

  cutEvent(code: string, message: string): Buffer {
    return Buffer.from(`data: ${JSON.stringify({ error: { message, type: 'keyleash_error', code, param: null } })}\n\n`);
  }
}

export function openaiVendor(cfg: OpenAIVendorConfig): Vendor {
  const policy = cfg.unknownCost;

  /** `unbounded`: why the call cannot be held to a cap (refused on a capped key; metered on others). */
  type Priced = { ep: Endpoint; price: ModelPrice; body: Record<string, unknown>; unbounded?: string };
  /** A token-priced call's model price and body, or the price of any other call. */
  function priced(call: CallInfo): Priced | { fail: Price } {
    const where = `${call.method} /${call.segments.join('/')}`;
    const route = OPENAI_ROUTES.find(call);
    if (!route) return { fail: unknownCost(policy, call.method, `no cost rule for ${where}`) };
    const cls = route.cls;
    if (cls.kind === 'free') {
      if (cls.unless === undefined || !call.body.includes(`"${cls.unless}"`)) return { fail: FREE };
      return { fail: { kind: 'unknown', reason: `${where} with ${cls.unless}: ${route.cost}` } };
    }
    if (cls.kind === 'unknown') return { fail: { kind: 'unknown', reason: `${where}: ${route.cost}` } };
    const body = jsonObject(call.body, call.contentType);
    if (!body) return { fail: { kind: 'unknown', reason: `${where} needs a JSON body to be priced` } };
    if (cls.kind === 'images') return { fail: imagePrice(body, call.body.length) };
    if (cls.kind === 'speech') return { fail: speechPrice(body) };
    const price = findModelPrice(cfg.models, body.model, OPENAI_SNAPSHOT);
    if (!price) {
      return { fail: { kind: 'unknown', reason: `no price for model ${JSON.stringify(String(body.model ?? '')).slice(0, 80)}` } };
    }
    const p: Priced = { ep: cls.ep, price: scalePrice(price, tierFactor(body)), body };
    const tool = hostedTool(body);
    if (tool !== undefined) {
      p.unbounded = `hosted tool ${JSON.stringify(tool).slice(0, 60)} is billed per call, which keyleash cannot bound`;
    } else if (cls.ep === 'responses' && body.background === true && nonNegInt(body.max_output_tokens) === undefined) {
      p.unbounded = 'a background response needs max_output_tokens: its usage is not in the answer, so the reservation is the charge';
    } else if (cls.ep === 'responses' && (body.previous_response_id != null || body.conversation != null || body.prompt != null)) {
      p.unbounded = 'a response that continues stored state (previous_response_id, conversation, prompt) is billed for input the request does not show';
    } else if (call.body.includes('"file_id"') || call.body.includes('"file_url"')) {
      p.unbounded = 'an input file (file_id, file_url) is billed for tokens the request does not show';
    } else if ((cls.ep === 'chat' || cls.ep === 'responses') && isReasoning(body.model) && explicitMaxOutput(cls.ep, body) === undefined) {
      const param = cls.ep === 'chat' ? 'max_completion_tokens' : 'max_output_tokens';
      p.unbounded = `a reasoning model needs ${param}: its hidden reasoning tokens cannot be counted as they stream`;
    }
    return p;
  }

  return {
    name: 'openai',
    refusalHeaders: NO_RETRY_HEADERS,
    origin: cfg.origin,
    secret: (mode: Mode) => (mode === 'live' ? cfg.liveSecret : cfg.testSecret),
    authHeaders: (secret) => ({ authorization: `Bearer ${secret}` }),
    ...OPENAI_HEADERS,

    // Streams only report usage when asked; keyleash always asks, and hides the extra chunk.
    prepareBody(body, contentType, target): PreparedBody {
      const ep = target && endpointOf(target);
      if (!ep || !ASKS_FOR_USAGE.has(ep)) return { ok: true, body, contentType };
      const obj = jsonObject(body, contentType);
      if (!obj || obj.stream !== true || wantsUsage(obj)) return { ok: true, body, contentType };
      const options = obj.stream_options && typeof obj.stream_options === 'object' ? obj.stream_options : {};
      const out = { ...obj, stream_options: { ...options, include_usage: true } };
      return { ok: true, body: Buffer.from(JSON.stringify(out)), contentType };
    },

    price(call): Price {
      const p = priced(call);
      if ('fail' in p) return p.fail;
      const input = inputTokenBound(call.body);
      const output = outputTokens(p.ep, p.body, cfg.defaultMaxOutputTokens);
      const micros = usageCost(p.price, { input, output });
      return p.unbounded ? { kind: 'unknown', reason: p.unbounded, estimate: micros } : { kind: 'priced', micros };
    },

    outcome(status): Outcome {
      if (status >= 200 && status < 300) return 'executed';
      // OpenAI bills nothing for a request it refuses (400, 401, 404, 429 …).
      if (status >= 400 && status < 500) return 'refused';
      return 'unknown';
    },

    meter(call, response: ResponseInfo): ResponseMeter | undefined {
      const p = priced(call);
      if ('fail' in p) return undefined;
      // A background response answers at once, queued, and runs on: its reservation (input +
      // max_output_tokens, which the vendor enforces) stays the charge.
      if (p.ep === 'responses' && p.body.background === true) return undefined;
      const type = mediaType(headerValue(response.headers, 'content-type'));
      const options = { price: p.price, inputEstimate: inputTokenBound(call.body), maxOutput: explicitMaxOutput(p.ep, p.body) };
      if (type === 'text/event-stream') {
        const hide = ASKS_FOR_USAGE.has(p.ep) && !wantsUsage(jsonObject(call.callerBody, call.contentType));
        return new OpenAIMeter({ ...options, mode: 'stream', filter: hide }, hide);
      }
      if (type === 'application/json') return new OpenAIMeter({ ...options, mode: 'buffer', filter: false }, false);
      return undefined;
    },

    describe: () => ({
      kind: 'builtin',
      auth: 'bearer',
      unknown_cost: describePolicy(policy),
      default_max_output_tokens: cfg.defaultMaxOutputTokens,
      endpoints: OPENAI_ROUTES.routes.map((r) => ({ match: r.match, cost: r.cost })),
      models_usd_per_million_tokens: describeModels(cfg.models),
      model_snapshots: 'a model is priced by its exact name, or as its base when the name is the base plus a date (-YYYY-MM-DD); service_tier priority at twice the price',
      images_usd_each: Object.fromEntries(
        Object.entries(OPENAI_IMAGE_PRICES).map(([m, t]) => [m, Object.fromEntries(Object.entries(t.quality).map(([q, sz]) => [q, Object.fromEntries(Object.entries(sz).map(([k, v]) => [k, v / 1e6]))]))]),
      ),
      speech_usd_per_character: Object.fromEntries(Object.entries(OPENAI_SPEECH_PRICES).map(([m, v]) => [m, v / 1e6])),
    }),
  };
}

export function describeModels(models: ReadonlyMap<string, ModelPrice>): Record<string, { input: number; output: number }> {
  return Object.fromEntries([...models].map(([m, p]) => [m, { input: p.input / 1e6, output: p.output / 1e6 }]));
}
