import type { Mode } from '../keys/token.js';
import { OPENAI_HEADERS } from './forwarded-headers.js';
import {
  deltaTokens,
  findModelPrice,
  inputTokenBound,
  type LlmVendorConfig,
  type ModelPrice,
  type ModelPriceInput,
  nonNegInt,
  TokenMeter,
  type TokenUsage,
  usageCost,
} from './llm.js';
import { parseJson, type SseEvent } from './sse.js';
import {
  type CallInfo,
  type CallTarget,
  describePolicy,
  headerValue,
  jsonObject,
  mediaType,
  type Outcome,
  type PreparedBody,
  type Price,
  type ResponseInfo,
  type ResponseMeter,
  type UnknownCostPolicy,
  unknownCost,
  type Vendor,
} from './vendor.js';

/** USD per million tokens (input, output). Approximate list prices; override or extend in config. */
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
  o1: { input: 15, output: 60 },
  'o1-mini': { input: 1.1, output: 4.4 },
  o3: { input: 2, output: 8 },
  'o3-mini': { input: 1.1, output: 4.4 },
  'o4-mini': { input: 1.1, output: 4.4 },
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'text-embedding-ada-002': { input: 0.1, output: 0 },
});

/** The output limit read from max_tokens / max_completion_tokens / max_output_tokens. */
export type OpenAIVendorConfig = LlmVendorConfig;

type Endpoint = 'chat' | 'completions' | 'embeddings' | 'responses';

function endpointOf(t: CallTarget): Endpoint | undefined {
  if (t.method !== 'POST') return undefined;
  const p = t.segments.join('/');
  if (p === 'v1/chat/completions') return 'chat';
  if (p === 'v1/completions') return 'completions';
  if (p === 'v1/embeddings') return 'embeddings';
  if (p === 'v1/responses') return 'responses';
  return undefined;
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

  function priced(call: CallInfo): { ep: Endpoint; price: ModelPrice; body: Record<string, unknown> } | { fail: Price } {
    const ep = endpointOf(call);
    const where = `${call.method} /${call.segments.join('/')}`;
    if (!ep) return { fail: unknownCost(policy, call.method, `no cost rule for ${where}`) };
    const body = jsonObject(call.body, call.contentType);
    if (!body) return { fail: unknownCost(policy, call.method, `${where} needs a JSON body to be priced`) };
    const price = findModelPrice(cfg.models, body.model);
    if (!price) {
      return { fail: unknownCost(policy, call.method, `no price for model ${JSON.stringify(String(body.model ?? '')).slice(0, 80)}`) };
    }
    return { ep, price, body };
  }

  return {
    name: 'openai',
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
      return { kind: 'priced', micros: usageCost(p.price, { input, output }) };
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
      endpoints: [
        { match: 'POST /v1/chat/completions', cost: 'tokens: input (reserved as the body size) + output (max_completion_tokens or max_tokens, else the default, × n), settled from usage' },
        { match: 'POST /v1/completions', cost: 'tokens: input + max_tokens × max(n, best_of), settled from usage' },
        { match: 'POST /v1/responses', cost: 'tokens: input + max_output_tokens, settled from usage' },
        { match: 'POST /v1/embeddings', cost: 'tokens: input, settled from usage' },
      ],
      models_usd_per_million_tokens: describeModels(cfg.models),
    }),
  };
}

export function describeModels(models: ReadonlyMap<string, ModelPrice>): Record<string, { input: number; output: number }> {
  return Object.fromEntries([...models].map(([m, p]) => [m, { input: p.input / 1e6, output: p.output / 1e6 }]));
}
