import type { Mode } from '../keys/token.js';
import { ANTHROPIC_HEADERS } from './forwarded-headers.js';
import { deltaTokens, findModelPrice, inputTokenBound, type LlmVendorConfig, type ModelPrice, type ModelPriceInput, nonNegInt, TokenMeter, type TokenUsage, usageCost } from './llm.js';
import { describeModels } from './openai.js';
import { routeTable } from './routes.js';
import { parseJson, type SseEvent } from './sse.js';
import {
  type CallInfo,
  describePolicy,
  FREE,
  headerValue,
  jsonObject,
  mediaType,
  NO_RETRY_HEADERS,
  type Outcome,
  type PreparedBody,
  type Price,
  type ResponseMeter,
  type UnknownCostPolicy,
  unknownCost,
  type Vendor,
} from './vendor.js';

/** USD per million tokens. Approximate list prices; override or extend in config. Cache writes 1.25×, reads 0.1× input. */
export const DEFAULT_ANTHROPIC_MODELS: Readonly<Record<string, ModelPriceInput>> = Object.freeze({
  'claude-opus-4-5': { input: 5, output: 25 },
  'claude-opus-4-1': { input: 15, output: 75 },
  'claude-opus-4': { input: 15, output: 75 },
  'claude-sonnet-4-5': { input: 3, output: 15 },
  'claude-sonnet-4': { input: 3, output: 15 },
  'claude-haiku-4-5': { input: 1, output: 5 },
  'claude-3-7-sonnet': { input: 3, output: 15 },
  'claude-3-5-sonnet': { input: 3, output: 15 },
  'claude-3-5-haiku': { input: 0.8, output: 4 },
  'claude-3-opus': { input: 15, output: 75 },
  'claude-3-haiku': { input: 0.25, output: 1.25 },
});

/** Snapshots ("claude-sonnet-4-5-20250929") and "-latest" aliases are priced as their base; nothing else is. */
export const ANTHROPIC_SNAPSHOT = /^(.+)-(?:\d{8}|latest)$/;

type AnthropicClass = { kind: 'messages' } | { kind: 'batch' } | { kind: 'free' } | { kind: 'unknown' };

/** Every Anthropic endpoint keyleash knows, first match wins; anything else falls to unknown_cost. */
export const ANTHROPIC_ROUTES = routeTable<AnthropicClass>([
  {
    match: 'POST /v1/messages',
    cls: { kind: 'messages' },
    cost: 'tokens: input (reserved as the body size) + max_tokens, settled from usage (cache writes 1.25×, reads 0.1× input); server tools, mcp_servers, Files API documents (file_id) and containers refused on a capped key',
  },
  { match: 'POST /v1/messages/count_tokens', cls: { kind: 'free' }, cost: 'free' },
  { match: 'POST /v1/messages/batches/*/cancel', cls: { kind: 'free' }, cost: 'free' },
  {
    match: 'POST /v1/messages/batches',
    cls: { kind: 'batch' },
    cost: 'each request priced as POST /v1/messages at half price (the batch discount), summed; stays charged (results arrive later)',
  },
  { match: 'POST /v1/files', cls: { kind: 'free' }, cost: 'free' },
  { match: 'GET /**', cls: { kind: 'free' }, cost: 'free (reads)' },
  { match: 'DELETE /**', cls: { kind: 'free' }, cost: 'free (deletes)' },
]);

/** Tools the caller runs (custom, and the client-side bash, text editor, computer, memory tools) cost only tokens. */
const CLIENT_TOOL = /^(custom|bash_|text_editor_|computer_|memory_)/;

function serverTool(params: Record<string, unknown>): string | undefined {
  if (params.mcp_servers !== undefined) return 'mcp_servers';
  if (!Array.isArray(params.tools)) return undefined;
  for (const t of params.tools as unknown[]) {
    if (!t || typeof t !== 'object') return 'tool';
    const type = (t as { type?: unknown }).type;
    if (type === undefined || type === null) continue;
    if (typeof type !== 'string' || !CLIENT_TOOL.test(type)) return String(type);
  }
  return undefined;
}

/** The output limit is max_tokens, which the API requires, so the default is rarely used. */
export type AnthropicVendorConfig = LlmVendorConfig;

function inputUsage(u: Record<string, unknown>): Omit<TokenUsage, 'output'> | undefined {
  const input = nonNegInt(u.input_tokens);
  if (input === undefined) return undefined;
  const writes = nonNegInt(u.cache_creation_input_tokens) ?? 0;
  // Writes kept an hour cost twice the input price, not 1.25×; the breakdown says how many.
  const split = u.cache_creation as Record<string, unknown> | undefined;
  const hour = Math.min(writes, (split && typeof split === 'object' ? nonNegInt(split.ephemeral_1h_input_tokens) : undefined) ?? 0);
  return { input, cacheWrite: writes - hour, cacheWrite1h: hour, cacheRead: nonNegInt(u.cache_read_input_tokens) ?? 0 };
}

/**
 * Models that charge more for a request past 200K input tokens (the 1M-context beta): input
 * (and cache) ×2, output ×1.5, for the whole request.
 */
const LONG_CONTEXT_MODELS = new Set(['claude-sonnet-4', 'claude-sonnet-4-5']);
const LONG_CONTEXT_TOKENS = 200_000;

function longContextPrice(p: ModelPrice): ModelPrice {
  return { input: p.input * 2, output: Math.ceil((p.output * 3) / 2), cacheWrite: p.cacheWrite * 2, cacheRead: p.cacheRead * 2 };
}

function inputTotal(u: Omit<TokenUsage, 'output'>): number {
  return u.input + (u.cacheWrite ?? 0) + (u.cacheWrite1h ?? 0) + (u.cacheRead ?? 0);
}

/**
 * What a request is reserved at: its body size as input tokens — priced as hour-long cache
 * writes (2× input, the dearest input) when it asks for caching — plus its output limit.
 */
function reserveCost(price: ModelPrice, long: ModelPrice | undefined, body: Buffer, output: number): number {
  const bound = inputTokenBound(body);
  const p = long && bound > LONG_CONTEXT_TOKENS ? long : price;
  const cached = body.includes('cache_control');
  return usageCost(p, cached ? { input: 0, cacheWrite1h: bound, output } : { input: bound, output });
}

function usageOf(body: unknown): TokenUsage | undefined {
  const u = (body as { usage?: Record<string, unknown> } | null)?.usage;
  if (!u || typeof u !== 'object') return undefined;
  const input = inputUsage(u);
  const output = nonNegInt(u.output_tokens);
  return input && output !== undefined ? { ...input, output } : undefined;
}

class AnthropicMeter extends TokenMeter {
  constructor(
    o: ConstructorParameters<typeof TokenMeter>[0],
    private readonly long: ModelPrice | undefined,
  ) {
    super(o);
  }

  protected override priceOf(u: TokenUsage): ModelPrice {
    return this.long && inputTotal(u) > LONG_CONTEXT_TOKENS ? this.long : this.price;
  }

  protected onEvent(ev: SseEvent): void {
    if (ev.empty || ev.data === '') return;
    const obj = parseJson(ev.data) as Record<string, unknown> | undefined;
    if (!obj || typeof obj !== 'object') return;
    switch (obj.type) {
      case 'message_start': {
        const u = (obj.message as { usage?: Record<string, unknown> } | undefined)?.usage;
        if (u && typeof u === 'object') {
          this.input = inputUsage(u) ?? this.input;
          this.outputCounted = Math.max(this.outputCounted, nonNegInt(u.output_tokens) ?? 0);
        }
        return;
      }
      case 'content_block_delta': {
        const d = obj.delta as Record<string, unknown> | undefined;
        if (d && typeof d === 'object') this.outputCounted += deltaTokens(d.text) + deltaTokens(d.partial_json) + deltaTokens(d.thinking);
        return;
      }
      case 'message_delta': {
        const u = obj.usage as Record<string, unknown> | undefined;
        if (!u || typeof u !== 'object') return;
        const output = nonNegInt(u.output_tokens);
        if (output === undefined) return;
        this.outputCounted = Math.max(this.outputCounted, output);
        // Newer API versions repeat the input usage here; older ones said it in message_start.
        const input = inputUsage(u) ?? this.input;
        if (input) this.final = { ...input, output };
        return;
      }
    }
  }

  protected usageOf(body: unknown): TokenUsage | undefined {
    return usageOf(body);
  }

  cutEvent(code: string, message: string): Buffer {
    return Buffer.from(`event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: code, message } })}\n\n`);
  }
}

export function anthropicVendor(cfg: AnthropicVendorConfig): Vendor {
  const policy = cfg.unknownCost;

  /** The long-context price of a model that has one (by its name or snapshot base). */
  function longOf(model: unknown, price: ModelPrice): ModelPrice | undefined {
    if (typeof model !== 'string') return undefined;
    const base = LONG_CONTEXT_MODELS.has(model) ? model : ANTHROPIC_SNAPSHOT.exec(model)?.[1];
    return base !== undefined && LONG_CONTEXT_MODELS.has(base) ? longContextPrice(price) : undefined;
  }

  /** One Messages request's model price, or why it cannot be priced. */
  function modelOf(params: Record<string, unknown>): ModelPrice | Price {
    const tool = serverTool(params);
    if (tool !== undefined) return { kind: 'unknown', reason: `server tool ${JSON.stringify(tool).slice(0, 60)} is billed per use, which keyleash cannot bound` };
    const price = findModelPrice(cfg.models, params.model, ANTHROPIC_SNAPSHOT);
    return price ?? { kind: 'unknown', reason: `no price for model ${JSON.stringify(String(params.model ?? '')).slice(0, 80)}` };
  }

  /** A batch: every request priced as a Messages call (max_tokens required) at half price. */
  function batchPrice(body: Record<string, unknown>): Price {
    const requests = body.requests;
    if (!Array.isArray(requests) || requests.length === 0) return { kind: 'invalid', reason: "'requests' must be a non-empty list", param: 'requests' };
    let full = 0;
    for (const r of requests as unknown[]) {
      const params = r && typeof r === 'object' ? (r as { params?: unknown }).params : undefined;
      if (!params || typeof params !== 'object' || Array.isArray(params)) return { kind: 'invalid', reason: "each request needs 'params'", param: 'requests' };
      const p = params as Record<string, unknown>;
      const price = modelOf(p);
      if ('kind' in price) return price;
      if (JSON.stringify(p).includes('"file_id"') || p.container != null) {
        return { kind: 'unknown', reason: 'a batch request with a Files API document or a container is billed for input it does not show' };
      }
      const output = nonNegInt(p.max_tokens);
      if (output === undefined) return { kind: 'invalid', reason: "each request needs 'max_tokens'", param: 'requests' };
      full += reserveCost(price, longOf(p.model, price), Buffer.from(JSON.stringify(p)), output);
    }
    return { kind: 'priced', micros: Math.ceil(full / 2) };
  }

  function priced(call: CallInfo): { price: ModelPrice; body: Record<string, unknown>; unbounded?: string } | { fail: Price } {
    const where = `${call.method} /${call.segments.join('/')}`;
    const route = ANTHROPIC_ROUTES.find(call);
    if (!route) return { fail: unknownCost(policy, call.method, `no cost rule for ${where}`) };
    if (route.cls.kind === 'free') return { fail: FREE };
    if (route.cls.kind === 'unknown') return { fail: { kind: 'unknown', reason: `${where}: ${route.cost}` } };
    const body = jsonObject(call.body, call.contentType);
    if (!body) return { fail: { kind: 'unknown', reason: `${where} needs a JSON body to be priced` } };
    if (route.cls.kind === 'batch') return { fail: batchPrice(body) };
    // A server tool, a Files API document or a container leaves the call unbounded (refused on a capped key) but still metered on others.
    const tool = serverTool(body) ?? (call.body.includes('"file_id"') ? 'document from the Files API (file_id)' : body.container != null ? 'container' : undefined);
    const price = modelOf({ ...body, tools: undefined, mcp_servers: undefined });
    if ('kind' in price) return { fail: price };
    return { price, body, ...(tool !== undefined ? { unbounded: `${JSON.stringify(tool).slice(0, 60)} is billed for use or input the request does not show` } : {}) };
  }

  return {
    name: 'anthropic',
    refusalHeaders: NO_RETRY_HEADERS,
    origin: cfg.origin,
    secret: (mode: Mode) => (mode === 'live' ? cfg.liveSecret : cfg.testSecret),
    authHeaders: (secret) => ({ 'x-api-key': secret }),
    tokenHeaders: ['x-api-key'],
    ...ANTHROPIC_HEADERS,
    prepareBody: (body, contentType): PreparedBody => ({ ok: true, body, contentType }),

    price(call): Price {
      const p = priced(call);
      if ('fail' in p) return p.fail;
      const output = nonNegInt(p.body.max_tokens) ?? cfg.defaultMaxOutputTokens;
      const micros = reserveCost(p.price, longOf(p.body.model, p.price), call.body, output);
      return p.unbounded ? { kind: 'unknown', reason: p.unbounded, estimate: micros } : { kind: 'priced', micros };
    },

    outcome(status): Outcome {
      if (status >= 200 && status < 300) return 'executed';
      if (status >= 400 && status < 500) return 'refused';
      return 'unknown';
    },

    meter(call, response): ResponseMeter | undefined {
      const p = priced(call);
      if ('fail' in p) return undefined;
      const type = mediaType(headerValue(response.headers, 'content-type'));
      const options = { price: p.price, inputEstimate: inputTokenBound(call.body), filter: false, maxOutput: nonNegInt(p.body.max_tokens) };
      const long = longOf(p.body.model, p.price);
      if (type === 'text/event-stream') return new AnthropicMeter({ ...options, mode: 'stream' }, long);
      if (type === 'application/json') return new AnthropicMeter({ ...options, mode: 'buffer' }, long);
      return undefined;
    },

    describe: () => ({
      kind: 'builtin',
      auth: 'header x-api-key',
      unknown_cost: describePolicy(policy),
      default_max_output_tokens: cfg.defaultMaxOutputTokens,
      endpoints: ANTHROPIC_ROUTES.routes.map((r) => ({ match: r.match, cost: r.cost })),
      model_snapshots: 'a model is priced by its exact name, or as its base when the name is the base plus -YYYYMMDD or -latest',
      models_usd_per_million_tokens: describeModels(cfg.models),
    }),
  };
}
