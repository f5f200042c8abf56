import type { Mode } from '../keys/token.js';

// What the proxy needs to know about a vendor. Vendors are data plus a few pure functions: the
// proxy never branches on a vendor's name. Built-in vendors are one module each (stripe.ts,
// twilio.ts, openai.ts, anthropic.ts); generic.ts builds a vendor from configuration alone.

/** The caller's body, made ready to send upstream. */
export type PreparedBody =
  | { ok: true; body: Buffer; contentType: string | undefined }
  | { ok: false; reason: string };

export type Price =
  | { kind: 'priced'; micros: number; shrink?: Shrink }
  /**
   * The call may move money, but how much cannot be bounded from the request: refused on a
   * capped key; on an uncapped one `estimate` (else 0) is reserved, and a meter may settle it.
   */
  | { kind: 'unknown'; reason: string; estimate?: number }
  /** The request carries money params that cannot be priced safely; refused, never guessed. */
  | { kind: 'invalid'; reason: string; param?: string }
  /**
   * The cost depends on a vendor object (e.g. the currency of the charge a refund refunds): the
   * proxy reads `path` (GET, the real secret) and prices the call with `resolve`, which gets the
   * parsed JSON answer, or undefined when it could not be read.
   */
  | { kind: 'lookup'; path: string; resolve: (object: unknown) => Price };

/**
 * A priced call the proxy may make smaller to fit what the cap has left (a Twilio call's
 * TimeLimit): `micros` is `units × unitMicros`, and `body(n)` is the body limited to n units.
 */
export interface Shrink {
  units: number;
  unitMicros: number;
  /** Below this the call is refused rather than shrunk. */
  minUnits: number;
  body(units: number): Buffer;
}

/** The units that fit `remaining` micros, or undefined when fewer than the minimum (or no fewer than now) fit. */
export function unitsThatFit(shrink: Shrink, remaining: number): number | undefined {
  if (!(shrink.unitMicros > 0)) return undefined;
  const units = Math.floor(Math.max(0, remaining) / shrink.unitMicros);
  return units >= shrink.minUnits && units < shrink.units ? units : undefined;
}

/** Where a call goes: the method and decoded, normalized vendor-path segments. */
export interface CallTarget {
  method: string;
  segments: readonly string[];
}

export interface CallInfo extends CallTarget {
  query: string;
  /** The body as it goes upstream (after prepareBody). */
  body: Buffer;
  contentType: string | undefined;
  /** The body exactly as the caller sent it (a vendor that adds to a body can tell what was asked for). */
  callerBody: Buffer;
}

/** How a forwarded call ends, judged from the vendor's status code alone. */
export type Outcome = 'executed' | 'refused' | 'unknown';

export interface ResponseInfo {
  status: number;
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

/**
 * Watches a forwarded call's response body on its way to the caller and reads the real cost
 * from it. Created only for executed (2xx) calls of vendors that meter, so calls that need no
 * metering (Stripe) pay nothing for it.
 */
export interface ResponseMeter {
  /**
   * `stream`: the head is sent at once, chunks pass as they come, and the call is settled when
   * the body ends. `buffer`: the body (a small JSON answer) is read first, up to a limit, the
   * call settled, then the body sent — so the caller never sees an answer that is not settled.
   */
  readonly mode: 'stream' | 'buffer';
  /** Observes a chunk; returns the bytes to pass on (may hold back an incomplete event, or drop one). */
  push(chunk: Buffer): Buffer;
  /**
   * Stream mode: observes a chunk and hands back the complete events it finishes, one at a time,
   * each counted before it is yielded (an unfinished event waits for the next chunk or flush()).
   * When present the proxy uses it instead of push(), to cut a stream before the event that
   * would pass the cap rather than after a whole chunk.
   */
  events?(chunk: Buffer): Iterable<Buffer>;
  /** Whatever was held back, at the end of the body. */
  flush(): Buffer;
  /**
   * Cost so far of what has passed (or been generated), in micros: the request's reserved input
   * estimate (or its real input once known) plus the output counted so far. When it passes what
   * is reserved the proxy extends the reservation, and cuts the stream if the cap refuses.
   */
  counted(): number;
  /** The real cost once the body is complete, or undefined when it cannot be read (the estimate stands). */
  result(): number | undefined;
  /** The last event written when the stream is cut (cap reached), in the vendor's stream dialect. */
  cutEvent(code: string, message: string): Buffer;
}

/** What to charge a call for which there is no cost rule. */
export type UnknownCostPolicy =
  /** free for GET/HEAD; writes are unknown (refused with cost_unknown on a capped key). */
  | { kind: 'auto' }
  | { kind: 'free' }
  /** unknown: refused with 403 cost_unknown on a capped key. */
  | { kind: 'deny' }
  | { kind: 'fixed'; micros: number };

/** One endpoint's cost rule, as GET /v1/vendors shows it. */
export interface CostRuleView {
  /** "METHOD /path" pattern (`*` is one segment). */
  match: string;
  /** What the rule charges, in words. */
  cost: string;
  [detail: string]: unknown;
}

/** A vendor as GET /v1/vendors shows it: never a secret. */
export interface VendorDescription {
  kind: 'builtin' | 'generic' | 'mcp';
  /** How the real credential goes upstream, e.g. "bearer", "basic", "header x-api-key", "query api_key". */
  auth: string;
  unknown_cost: string;
  endpoints: CostRuleView[];
  [detail: string]: unknown;
}

export interface Vendor {
  readonly name: string;
  /** Fixed by configuration; never taken from the request. */
  readonly origin: string;
  /** The real secret for a mode, or undefined when none is configured (then keys of that mode cannot be issued). */
  secret(mode: Mode): string | undefined;
  /** Headers that carry the real secret upstream. */
  authHeaders(secret: string): Record<string, string>;
  /**
   * Headers besides Authorization in which this vendor's SDKs send their API key (Anthropic's
   * `x-api-key`): read as the vault token, and never forwarded.
   */
  readonly tokenHeaders?: readonly string[];
  /**
   * The caller's request headers that go upstream (lower case; `x-stainless-*` is a prefix),
   * besides the body's content headers, which keyleash sets. Every other header is dropped.
   */
  readonly forwardHeaders: readonly string[];
  /**
   * Headers that choose the account, organisation or project a call acts on or bills: a call
   * carrying one, in any spelling and with any value, is refused (403 header_not_allowed).
   */
  readonly refusedHeaders?: readonly string[];
  /** Headers set from configuration on every upstream request (e.g. OpenAI-Organization). */
  readonly fixedHeaders?: Readonly<Record<string, string>>;
  /**
   * The upstream path and query, after authorization (e.g. Twilio's account SID in the path, or
   * a secret carried as a query parameter). Authorization always sees the caller's own path.
   */
  rewriteTarget?(target: { segments: readonly string[]; query: string }, secret: string): { segments: readonly string[]; query: string };
  prepareBody(body: Buffer, contentType: string | undefined, target?: CallTarget): PreparedBody;
  price(call: CallInfo): Price;
  outcome(status: number): Outcome;
  /** Observes an executed call's response to settle its real cost; absent or undefined: the estimate is the cost. */
  meter?(call: CallInfo, response: ResponseInfo): ResponseMeter | undefined;
  /** The vendor and its cost rules for GET /v1/vendors. */
  describe(): VendorDescription;
  /** Extra headers on keyleash's own refusals, in the vendor's dialect (e.g. "do not retry"). */
  readonly refusalHeaders?: Readonly<Record<string, string>>;
  /**
   * The vendor answers a repeated `Idempotency-Key` with the original result instead of running
   * the call again. Only then is a retry forwarded uncharged; absent: every call is charged.
   */
  readonly dedupesIdempotencyKey?: boolean;
  /** Request headers that choose the account an idempotency key is remembered under (`Stripe-Account`). */
  readonly idempotencyScopeHeaders?: readonly string[];
}

export type VendorCatalog = ReadonlyMap<string, Vendor>;

export const FREE: Price = { kind: 'priced', micros: 0 };

/** Applies a vendor's unknown-cost policy to a call that no cost rule prices. */
export function unknownCost(policy: UnknownCostPolicy, method: string, reason: string): Price {
  switch (policy.kind) {
    case 'free':
      return FREE;
    case 'fixed':
      return { kind: 'priced', micros: policy.micros };
    case 'deny':
      return { kind: 'unknown', reason };
    case 'auto':
      return method === 'GET' || method === 'HEAD' ? FREE : { kind: 'unknown', reason };
  }
}

export function describePolicy(policy: UnknownCostPolicy): string {
  switch (policy.kind) {
    case 'auto':
      return 'auto: free for GET/HEAD; other methods refused (cost_unknown) on a capped key';
    case 'free':
      return 'free';
    case 'deny':
      return 'deny: refused (cost_unknown) on a capped key';
    case 'fixed':
      return `fixed: ${formatMicros(policy.micros)} per call`;
  }
}

export function formatMicros(micros: number): string {
  const whole = Math.floor(micros / 1e6);
  const frac = String(micros % 1e6).padStart(6, '0').replace(/0+$/, '');
  return `$${whole}${frac ? '.' + frac : ''}`;
}

export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

/** A JSON object body, or null for anything else (not JSON, not an object). */
export function jsonObject(body: Buffer, contentType: string | undefined): Record<string, unknown> | null {
  const type = mediaType(contentType);
  if (body.length === 0 || (type !== 'application/json' && !type.endsWith('+json'))) return null;
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export function headerValue(headers: ResponseInfo['headers'], name: string): string {
  const v = headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? '';
}

/** Caller headers every vendor receives: content negotiation and client identification. */
export const BASE_FORWARDED_HEADERS: readonly string[] = ['accept', 'accept-language', 'user-agent'];

/**
 * "Do not retry" in every official SDK's dialect, sent on keyleash's own refusals (a spent cap, a
 * revoked key, a refused endpoint do not change on retry): stripe-node / stripe-python read
 * `Stripe-Should-Retry`, the openai and Anthropic SDKs (Node and Python) `x-should-retry`.
 * Rate limits and a store outage go without them: those are worth retrying.
 */
export const NO_RETRY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'stripe-should-retry': 'false',
  'x-should-retry': 'false',
});
