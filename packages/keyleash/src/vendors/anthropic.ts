import type { Mode } from '../keys/token.js';
import { ANTHROPIC_HEADERS } from './forwarded-headers.js';
import { deltaTokens, findModelPrice, inputTokenBound, type LlmVendorConfig, type ModelPrice, type ModelPriceInput, nonNegInt, TokenMeter, type TokenUsage, usageCost } from './llm.js';
import { describeModels } from './openai.js';
import { parseJson, type SseEvent } from './sse.js';
import {
  type CallInfo,
  describePolicy,
  FREE,
  headerValue,
  jsonObject,
  mediaType,
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

/** The output limit is max_tokens, which the API requires, so the default is rarely used. */
export type AnthropicVendorConfig = LlmVendorConfig;

function inputUsage(u: Record<string, unknown>): Omit<TokenUsage, 'output'> | undefined {
  const input = nonNegInt(u.input_tokens);
  if (input === undefined) return undefined;
  return { input, cacheWrite: nonNegInt(u.cache_creation_input_tokens) ?? 0, cacheRead: nonNegInt(u.cache_read_input_tokens) ?? 0 };
}

function usageOf(body: unknown): TokenUsage | undefined {
  const u = (body as { usage?: Record<string, unknown> } | null)?.usage;
  if (!u || typeof u !== 'object') return undefined;
  const input = inputUsage(u);
  const output = nonNegInt(u.output_tokens);
  return input && output !== undefined ? { ...input, output } : undefined;
}

class AnthropicMeter extends TokenMeter {
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

  function priced(call: CallInfo): { price: ModelPrice; body: Record<string, unknown> } | { fail: Price } {
    const path = call.segments.join('/');
    const where = `${call.method} /${path}`;
    if (call.method === 'POST' && path === 'v1/messages/count_tokens') return { fail: FREE };
    if (call.method !== 'POST' || path !== 'v1/messages') return { fail: unknownCost(policy, call.method, `no cost rule for ${where}`) };
    const body = jsonObject(call.body, call.contentType);
    if (!body) return { fail: unknownCost(policy, call.method, `${where} needs a JSON body to be priced`) };
    const price = findModelPrice(cfg.models, body.model);
    if (!price) {
      return { fail: unknownCost(policy, call.method, `no price for model ${JSON.stringify(String(body.model ?? '')).slice(0, 80)}`) };
    }
    return { price, body };
  }

  return {
    name: 'anthropic',
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
      return { kind: 'priced', micros: usageCost(p.price, { input: inputTokenBound(call.body), output }) };
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
      if (type === 'text/event-stream') return new AnthropicMeter({ ...options, mode: 'stream' });
      if (type === 'application/json') return new AnthropicMeter({ ...options, mode: 'buffer' });
      return undefined;
    },

    describe: () => ({
      kind: 'builtin',
      auth: 'header x-api-key',
      unknown_cost: describePolicy(policy),
      default_max_output_tokens: cfg.defaultMaxOutputTokens,
      endpoints: [
        {
          match: 'POST /v1/messages',
          cost: 'tokens: input (reserved as the body size) + max_tokens, settled from usage (cache writes 1.25×, reads 0.1× input)',
        },
        { match: 'POST /v1/messages/count_tokens', cost: 'free' },
      ],
      models_usd_per_million_tokens: describeModels(cfg.models),
    }),
  };
}
