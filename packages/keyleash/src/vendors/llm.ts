import { parseUsdToMicros } from '../policy/money.js';
import { SseReader, type SseEvent, parseJson } from './sse.js';
import type { ResponseMeter, UnknownCostPolicy } from './vendor.js';

// What the token-priced vendors (OpenAI, Anthropic) share: a per-model price table, exact
// integer pricing, and a meter that reads usage from a JSON answer or an SSE stream.

/** Micro-dollars per million tokens (so USD 2.50 / 1M tokens is 2_500_000). */
export interface ModelPrice {
  input: number;
  output: number;
  /** Prompt-cache writes and reads (Anthropic); default: input × 1.25 and input × 0.1. */
  cacheWrite: number;
  cacheRead: number;
}

export interface TokenUsage {
  input: number;
  output: number;
  cacheWrite?: number;
  /** Cache writes kept an hour (Anthropic's ttl "1h"): twice the input price. */
  cacheWrite1h?: number;
  cacheRead?: number;
}

/** USD per million tokens, as written in config (`{input: 2.5, output: 10}`). */
export type ModelPriceInput = { input: number | string; output: number | string; cache_write?: number | string; cache_read?: number | string };

function perMillion(v: number | string, what: string): number {
  const r = parseUsdToMicros(v, 1_000_000);
  if (!r.ok) throw new RangeError(`${what}: ${r.reason}`);
  return r.micros;
}

/** Converts a table of USD-per-million-token prices to exact micros. Throws on a bad price. */
export function modelPrices(table: Readonly<Record<string, ModelPriceInput>>): Map<string, ModelPrice> {
  const out = new Map<string, ModelPrice>();
  for (const [model, p] of Object.entries(table)) {
    const input = perMillion(p.input, `${model}.input`);
    out.set(model, {
      input,
      output: perMillion(p.output, `${model}.output`),
      cacheWrite: p.cache_write !== undefined ? perMillion(p.cache_write, `${model}.cache_write`) : Math.ceil((input * 5) / 4),
      cacheRead: p.cache_read !== undefined ? perMillion(p.cache_read, `${model}.cache_read`) : Math.ceil(input / 10),
    });
  }
  return out;
}

/**
 * The price of a model: its exact name, else — only when `snapshot` matches the whole name — the
 * exact entry for the base it captures (a dated snapshot such as "gpt-4o-2024-08-06" → "gpt-4o"),
 * else the "*" entry an operator may configure. Never a prefix: "o1-pro" is not "o1", and
 * "gpt-4-32k" is not "gpt-4" (each costs several times its prefix).
 */
export function findModelPrice(table: ReadonlyMap<string, ModelPrice>, model: unknown, snapshot?: RegExp): ModelPrice | undefined {
  if (typeof model !== 'string' || model === '') return undefined;
  const exact = table.get(model);
  if (exact) return exact;
  const base = snapshot?.exec(model)?.[1];
  const viaSnapshot = base !== undefined && base !== '*' ? table.get(base) : undefined;
  return viaSnapshot ?? table.get('*');
}

/** A price scaled by a whole factor (a pricier service tier), rounding nothing away. */
export function scalePrice(p: ModelPrice, factor: number): ModelPrice {
  return factor === 1 ? p : { input: p.input * factor, output: p.output * factor, cacheWrite: p.cacheWrite * factor, cacheRead: p.cacheRead * factor };
}

/** ceil(tokens × microsPerMillion / 1e6), exactly. */
export function tokenCost(tokens: number, microsPerMillion: number): number {
  if (!(tokens > 0)) return 0;
  const n = BigInt(Math.ceil(tokens)) * BigInt(microsPerMillion);
  return Number((n + 999_999n) / 1_000_000n);
}

export function usageCost(price: ModelPrice, u: TokenUsage): number {
  return (
    tokenCost(u.input, price.input) +
    tokenCost(u.output, price.output) +
    tokenCost(u.cacheWrite ?? 0, price.cacheWrite) +
    tokenCost(u.cacheWrite1h ?? 0, price.input * 2) +
    tokenCost(u.cacheRead ?? 0, price.cacheRead)
  );
}

/**
 * An upper bound on a request's input tokens: its body's UTF-8 length. Byte-level BPE tokens
 * cover at least one byte each, and the JSON around the text only adds bytes, so for text this
 * never under-reserves (images are the exception: see the README).
 */
export function inputTokenBound(body: Buffer): number {
  return Math.max(1, body.length);
}

/** Output counted while a stream passes: about four characters a token, at least one per delta. */
export function deltaTokens(text: unknown): number {
  return typeof text === 'string' && text.length > 0 ? Math.max(1, Math.ceil(text.length / 4)) : 0;
}

export function nonNegInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** Largest JSON answer a buffering meter reads before it gives up and lets the estimate stand. */
/** What an LLM vendor (OpenAI, Anthropic) is built from. */
export interface LlmVendorConfig {
  origin: string;
  testSecret: string | undefined;
  liveSecret: string | undefined;
  models: ReadonlyMap<string, ModelPrice>;
  /** Output tokens reserved when the request names no output limit. */
  defaultMaxOutputTokens: number;
  unknownCost: UnknownCostPolicy;
}

export const METER_BUFFER_LIMIT = 8 * 1024 * 1024;

export interface TokenMeterOptions {
  mode: 'stream' | 'buffer';
  price: ModelPrice;
  /** Input tokens the reservation assumed (the upper bound), until the stream says the real number. */
  inputEstimate: number;
  /** Drop events the caller did not ask for (then events are passed whole, not chunk by chunk). */
  filter: boolean;
  /**
   * The request's own output limit, when it set one: the vendor stops there, so output counted
   * past it is a miscount and is not charged or cut for.
   */
  maxOutput?: number | undefined;
}

/** Reads token usage as a response passes. Subclasses know the vendor's shapes. */
export abstract class TokenMeter implements ResponseMeter {
  readonly mode: 'stream' | 'buffer';
  protected readonly price: ModelPrice;
  protected readonly inputEstimate: number;
  /** Real input usage, once the stream has said it (Anthropic's message_start). */
  protected input: Omit<TokenUsage, 'output'> | undefined;
  protected outputCounted = 0;
  /** Complete usage from the vendor: the settled cost. */
  protected final: TokenUsage | undefined;
  private readonly filter: boolean;
  private readonly maxOutput: number;
  private readonly sse = new SseReader();
  private readonly chunks: Buffer[] = [];
  private size = 0;
  /** Events are handed back whole (events()), so an unfinished one is still owed at the end. */
  private byEvent = false;

  constructor(o: TokenMeterOptions) {
    this.mode = o.mode;
    this.price = o.price;
    this.inputEstimate = o.inputEstimate;
    this.filter = o.filter;
    this.maxOutput = o.maxOutput ?? Infinity;
  }

  /** Handles one event; 'drop' keeps it from the caller (only honoured when filtering). */
  protected abstract onEvent(ev: SseEvent): 'drop' | void;
  /** Reads the usage of a complete JSON answer. */
  protected abstract usageOf(body: unknown): TokenUsage | undefined;
  abstract cutEvent(code: string, message: string): Buffer;

  push(chunk: Buffer): Buffer {
    if (this.mode === 'buffer') {
      if (this.size <= METER_BUFFER_LIMIT) this.chunks.push(chunk);
      this.size += chunk.length;
      return chunk;
    }
    const events = this.sse.push(chunk);
    if (!this.filter) {
      for (const ev of events) this.onEvent(ev);
      return chunk;
    }
    let out = '';
    for (const ev of events) if (this.onEvent(ev) !== 'drop') out += ev.raw;
    return Buffer.from(out, 'utf8');
  }

  /**
   * Stream mode, one complete event at a time: each is counted before it is handed back, so the
   * proxy can check the event fits what is reserved before the caller gets it.
   */
  *events(chunk: Buffer): Generator<Buffer> {
    this.byEvent = true;
    for (const ev of this.sse.push(chunk)) {
      if (this.onEvent(ev) === 'drop' && this.filter) continue;
      yield Buffer.from(ev.raw, 'utf8');
    }
  }

  flush(): Buffer {
    if (this.mode === 'buffer') {
      if (this.size <= METER_BUFFER_LIMIT) this.final = this.usageOf(parseJson(Buffer.concat(this.chunks).toString('utf8')));
      return Buffer.alloc(0);
    }
    const rest = this.sse.rest();
    if (!this.filter && !this.byEvent) return Buffer.alloc(0);
    // An event the vendor never ended is counted too, before the proxy decides to pass it on.
    if (rest) for (const ev of new SseReader().push(Buffer.from(rest + '\n\n', 'utf8'))) this.onEvent(ev);
    return Buffer.from(rest, 'utf8');
  }

  counted(): number {
    if (this.final) return usageCost(this.priceOf(this.final), this.final);
    const input = this.input ?? { input: this.inputEstimate };
    const u = { ...input, output: Math.min(this.outputCounted, this.maxOutput) };
    return usageCost(this.priceOf(u), u);
  }

  result(): number | undefined {
    return this.final ? usageCost(this.priceOf(this.final), this.final) : undefined;
  }

  /** The price that applies to a usage (a vendor may charge more past a context size). */
  protected priceOf(_u: TokenUsage): ModelPrice {
    return this.price;
  }
}
