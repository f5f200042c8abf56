import type { Mode } from '../keys/token.js';
import { TWILIO_HEADERS } from './forwarded-headers.js';
import { parseJson } from './sse.js';
import { smsSegments } from './sms.js';
import {
  type CallInfo,
  describePolicy,
  formatMicros,
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

// Twilio's REST API (api.twilio.com/2010-04-01). The credential is the account SID and auth
// token, sent as HTTP Basic; the account in the caller's path (`-` or any SID) is replaced by the
// configured one, so a vault key can only ever act on its own account.

export interface TwilioAccount {
  accountSid: string;
  authToken: string;
}

/** Prices in micros by destination prefix ("+1", "+44", …), longest prefix first, with a default. */
export interface PrefixPrices {
  prices: ReadonlyMap<string, number>;
  default: number;
}

export interface TwilioVendorConfig {
  origin: string;
  test: TwilioAccount | undefined;
  live: TwilioAccount | undefined;
  /** Per SMS segment. */
  sms: PrefixPrices;
  /** Per MMS message (a message with MediaUrl). */
  mms: PrefixPrices;
  /** Per minute of an outgoing call. */
  calls: PrefixPrices & { estimateMinutes: number };
  unknownCost: UnknownCostPolicy;
}

/** USD, approximate outbound list prices; override in config. Defaults for unlisted countries err high. */
export const DEFAULT_TWILIO_PRICES = Object.freeze({
  sms: { default: '0.15', prices: { '+1': '0.0083', '+44': '0.05', '+33': '0.09', '+49': '0.09', '+34': '0.09', '+91': '0.09', '+61': '0.06' } },
  mms: { default: '0.25', prices: { '+1': '0.022' } },
  calls: { default: '0.50', prices: { '+1': '0.014', '+44': '0.03' }, estimate_minutes: 5 },
});

const FORM = 'application/x-www-form-urlencoded';
const SID = /^AC[0-9a-fA-F]{32}$/;
const ACCOUNT_IN_PATH = /^(-|AC[0-9a-fA-F]{32})(\.json)?$/;

type Resource = 'messages' | 'calls';

function resourceOf(call: { method: string; segments: readonly string[] }): Resource | undefined {
  const s = call.segments;
  if (call.method !== 'POST' || s.length !== 4 || s[0] !== '2010-04-01' || s[1] !== 'Accounts') return undefined;
  if (s[3] === 'Messages.json') return 'messages';
  if (s[3] === 'Calls.json') return 'calls';
  return undefined;
}

export function priceFor(table: PrefixPrices, to: string | undefined): number {
  const number = (to ?? '').replace(/^[a-z]+:/i, '');
  if (!/^\+[0-9]{1,15}$/.test(number)) return table.default;
  let best: string | undefined;
  for (const prefix of table.prices.keys()) {
    if (number.startsWith(prefix) && (best === undefined || prefix.length > best.length)) best = prefix;
  }
  return best === undefined ? table.default : table.prices.get(best)!;
}

type Params = { ok: true; get: (name: string) => string | undefined; has: (name: string) => boolean } | { ok: false; price: Price };

/** Form params, refusing a priced param given twice (two parsers could read different ones). */
function params(body: Buffer): Params {
  const pairs = [...new URLSearchParams(body.toString('utf8'))];
  const once = new Map<string, string>();
  const seen = new Set<string>();
  for (const [k, v] of pairs) {
    if (seen.has(k) && ['To', 'Body', 'TimeLimit'].includes(k)) {
      return { ok: false, price: { kind: 'invalid', reason: `parameter '${k}' must appear exactly once`, param: k } };
    }
    seen.add(k);
    once.set(k, v);
  }
  return { ok: true, get: (n) => once.get(n), has: (n) => seen.has(n) };
}

function segmentsIn(response: unknown): number | undefined {
  const n = (response as { num_segments?: unknown } | null)?.num_segments;
  const v = typeof n === 'string' && /^[0-9]{1,4}$/.test(n) ? Number(n) : typeof n === 'number' ? n : NaN;
  return Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

/** Reads num_segments from a created message, priced per segment for its destination. */
class MessageMeter implements ResponseMeter {
  readonly mode = 'buffer' as const;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private cost: number | undefined;
  constructor(
    private readonly perSegment: number,
    private readonly estimate: number,
  ) {}
  push(chunk: Buffer): Buffer {
    this.size += chunk.length;
    if (this.size <= 1024 * 1024) this.chunks.push(chunk);
    return chunk;
  }
  flush(): Buffer {
    if (this.size <= 1024 * 1024) {
      const n = segmentsIn(parseJson(Buffer.concat(this.chunks).toString('utf8')));
      if (n !== undefined) this.cost = n * this.perSegment;
    }
    return Buffer.alloc(0);
  }
  counted(): number {
    return this.cost ?? this.estimate;
  }
  result(): number | undefined {
    return this.cost;
  }
  cutEvent(): Buffer {
    return Buffer.alloc(0);
  }
}

/** Flat JSON (strings, numbers, booleans, arrays of them) as Twilio's form encoding. */
function jsonToForm(obj: Record<string, unknown>): string | null {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) {
    for (const item of Array.isArray(v) ? v : [v]) {
      if (item === null || item === undefined) continue;
      if (!['string', 'number', 'boolean'].includes(typeof item)) return null;
      out.append(k, String(item));
    }
  }
  return out.toString();
}

function describePrices(t: PrefixPrices, unit: string): Record<string, unknown> {
  return { unit, default: formatMicros(t.default), by_prefix: Object.fromEntries([...t.prices].map(([p, m]) => [p, formatMicros(m)])) };
}

export function twilioVendor(cfg: TwilioVendorConfig): Vendor {
  const policy = cfg.unknownCost;
  return {
    name: 'twilio',
    origin: cfg.origin,
    secret: (mode: Mode) => {
      const a = mode === 'live' ? cfg.live : cfg.test;
      return a ? `${a.accountSid}:${a.authToken}` : undefined;
    },
    authHeaders: (secret) => ({ authorization: `Basic ${Buffer.from(secret).toString('base64')}` }),
    ...TWILIO_HEADERS,

    rewriteTarget({ segments, query }, secret) {
      const sid = secret.slice(0, secret.indexOf(':'));
      if (segments[0] !== '2010-04-01' || segments[1] !== 'Accounts' || segments[2] === undefined) return { segments, query };
      const m = ACCOUNT_IN_PATH.exec(segments[2]);
      if (!m || !SID.test(sid)) return { segments, query };
      return { segments: [segments[0], segments[1], sid + (m[2] ?? ''), ...segments.slice(3)], query };
    },

    prepareBody(body, contentType): PreparedBody {
      if (body.length === 0) return { ok: true, body, contentType };
      const type = mediaType(contentType);
      if (type === FORM || type === '') return { ok: true, body, contentType: FORM };
      if (type === 'application/json') {
        const obj = jsonObject(body, contentType);
        const form = obj && jsonToForm(obj);
        if (form === null || form === undefined) return { ok: false, reason: 'Twilio takes form bodies, or flat JSON objects keyleash turns into one' };
        return { ok: true, body: Buffer.from(form), contentType: FORM };
      }
      return { ok: false, reason: `Twilio takes form-encoded or JSON bodies, not ${type}` };
    },

    price(call: CallInfo): Price {
      const resource = resourceOf(call);
      if (!resource) return unknownCost(policy, call.method, `no cost rule for ${call.method} /${call.segments.join('/')}`);
      const p = params(call.body);
      if (!p.ok) return p.price;
      const to = p.get('To');
      if (resource === 'calls') {
        const limit = p.get('TimeLimit');
        let minutes = cfg.calls.estimateMinutes;
        if (limit !== undefined) {
          if (!/^[0-9]{1,6}$/.test(limit)) return { kind: 'invalid', reason: "'TimeLimit' must be whole seconds", param: 'TimeLimit' };
          minutes = Math.max(1, Math.ceil(Number(limit) / 60));
        }
        return { kind: 'priced', micros: minutes * priceFor(cfg.calls, to) };
      }
      if (p.has('MediaUrl')) return { kind: 'priced', micros: priceFor(cfg.mms, to) };
      const body = p.get('Body');
      if (body === undefined) {
        return unknownCost(policy, call.method, 'a message without Body (a content template) has no length to price');
      }
      return { kind: 'priced', micros: smsSegments(body).segments * priceFor(cfg.sms, to) };
    },

    // Twilio does not bill a request it refuses with a 4xx.
    outcome(status): Outcome {
      if (status >= 200 && status < 300) return 'executed';
      if (status >= 400 && status < 500) return 'refused';
      return 'unknown';
    },

    meter(call, response): ResponseMeter | undefined {
      if (resourceOf(call) !== 'messages' || mediaType(headerValue(response.headers, 'content-type')) !== 'application/json') return undefined;
      const p = params(call.body);
      if (!p.ok || p.has('MediaUrl') || p.get('Body') === undefined) return undefined;
      const estimate = this.price(call);
      return new MessageMeter(priceFor(cfg.sms, p.get('To')), estimate.kind === 'priced' ? estimate.micros : 0);
    },

    describe: () => ({
      kind: 'builtin',
      auth: 'basic (account SID : auth token); the account in the path is rewritten to the configured one',
      unknown_cost: describePolicy(policy),
      endpoints: [
        {
          match: 'POST /2010-04-01/Accounts/*/Messages.json',
          cost: 'SMS: segments of Body (GSM-7 160/153, UCS-2 70/67) × price per segment for the To prefix, settled from num_segments; MMS (MediaUrl): price per message',
          sms: describePrices(cfg.sms, 'per segment'),
          mms: describePrices(cfg.mms, 'per message'),
        },
        {
          match: 'POST /2010-04-01/Accounts/*/Calls.json',
          cost: `price per minute for the To prefix × ceil(TimeLimit / 60), or × ${cfg.calls.estimateMinutes} minutes without TimeLimit`,
          calls: describePrices(cfg.calls, 'per minute'),
        },
      ],
    }),
  };
}
