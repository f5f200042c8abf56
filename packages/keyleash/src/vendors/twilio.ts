import type { Mode } from '../keys/token.js';
import { routeTable } from './routes.js';
import { TWILIO_HEADERS } from './forwarded-headers.js';
import { parseJson } from './sse.js';
import { smsSegments } from './sms.js';
import {
  type CallInfo,
  describePolicy,
  FREE,
  formatMicros,
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
  /** Per minute of an outgoing call; `estimateMinutes` is the TimeLimit given to a call without one. */
  calls: PrefixPrices & { estimateMinutes: number };
  unknownCost: UnknownCostPolicy;
}

/** USD, approximate outbound list prices; override in config. Defaults for unlisted countries err high. */
export const DEFAULT_TWILIO_PRICES = Object.freeze({
  sms: { default: '0.15', prices: { '+1': '0.0083', '+44': '0.05', '+33': '0.09', '+49': '0.09', '+34': '0.09', '+91': '0.09', '+61': '0.06' } },
  mms: { default: '0.25', prices: { '+1': '0.022' } },
  // A call without TimeLimit is given one: Twilio's own default (and longest) call, 4 hours.
  calls: { default: '0.50', prices: { '+1': '0.014', '+44': '0.03' }, estimate_minutes: 240 },
});

const FORM = 'application/x-www-form-urlencoded';
const SID = /^AC[0-9a-fA-F]{32}$/;
const ACCOUNT_IN_PATH = /^(-|AC[0-9a-fA-F]{32})(\.json)?$/;

type TwilioClass = { kind: 'messages' } | { kind: 'calls' } | { kind: 'call-update' } | { kind: 'lookup' } | { kind: 'free' } | { kind: 'unknown' };

const ACCOUNT = '/2010-04-01/Accounts/*';

/** Every Twilio endpoint keyleash knows, first match wins; anything else falls to unknown_cost. */
export const TWILIO_ROUTES = routeTable<TwilioClass>([
  { match: `POST ${ACCOUNT}/Messages.json`, cls: { kind: 'messages' }, cost: 'SMS: segments of Body (GSM-7 160/153, UCS-2 70/67) × price per segment for the To prefix, settled from num_segments; MMS (MediaUrl): price per message; no Body (a content template) or a non-SMS channel (whatsapp:, …) refused on a capped key' },
  { match: `POST ${ACCOUNT}/Calls.json`, cls: { kind: 'calls' }, cost: 'price per minute for the To prefix × ceil(TimeLimit / 60); a call without TimeLimit is given one; on a capped key TimeLimit is lowered to what the cap has left (refused under one minute); stays charged (the call outlives the answer); Record, Transcribe and machine detection refused on a capped key' },
  { match: `POST ${ACCOUNT}/Messages/*.json`, cls: { kind: 'free' }, cost: 'free (update, redact, cancel)' },
  { match: `POST ${ACCOUNT}/Calls/*.json`, cls: { kind: 'call-update' }, cost: 'free to end a call (Status only); new TwiML or Url refused on a capped key (it may dial further, billed legs)' },
  { match: `POST ${ACCOUNT}/Calls/*/**`, cls: { kind: 'unknown' }, cost: 'refused on a capped key: recordings, streams, payments and transcriptions of a call are billed by use' },
  { match: `POST ${ACCOUNT}/IncomingPhoneNumbers.json`, cls: { kind: 'unknown' }, cost: 'refused on a capped key: buying a number is billed monthly by type and country' },
  { match: `POST ${ACCOUNT}/IncomingPhoneNumbers/Local.json`, cls: { kind: 'unknown' }, cost: 'refused on a capped key: buying a number is billed monthly by type and country' },
  { match: `POST ${ACCOUNT}/IncomingPhoneNumbers/Mobile.json`, cls: { kind: 'unknown' }, cost: 'refused on a capped key: buying a number is billed monthly by type and country' },
  { match: `POST ${ACCOUNT}/IncomingPhoneNumbers/TollFree.json`, cls: { kind: 'unknown' }, cost: 'refused on a capped key: buying a number is billed monthly by type and country' },
  { match: `POST ${ACCOUNT}/IncomingPhoneNumbers/*.json`, cls: { kind: 'free' }, cost: 'free (updates a number the account owns)' },
  { match: `POST ${ACCOUNT}/Conferences/*/Participants.json`, cls: { kind: 'unknown' }, cost: 'refused on a capped key: adding a participant dials a new, billed call' },
  { match: 'POST /v2/**', cls: { kind: 'unknown' }, cost: 'refused on a capped key: Verify and other v2 APIs bill per verification and channel' },
  { match: 'GET /v1/PhoneNumbers/*', cls: { kind: 'lookup' }, cost: 'Lookup: free without Type or AddOns; paid data refused on a capped key' },
  { match: 'GET /v2/PhoneNumbers/*', cls: { kind: 'lookup' }, cost: 'Lookup: free without Fields; paid data packages refused on a capped key' },
  { match: 'GET /**', cls: { kind: 'free' }, cost: 'free (reads)' },
  { match: 'DELETE /**', cls: { kind: 'free' }, cost: 'free (deletes, releases)' },
]);

/** Lookup query params that cost nothing; any other (Type, AddOns, Fields…) asks for paid data. */
const FREE_LOOKUP_PARAMS = new Set(['CountryCode']);
/** Call params that add a charge of their own (recording, transcription, answering-machine detection). */
const PAID_CALL_FEATURES: ReadonlyArray<[string, (v: string) => boolean]> = [
  ['Record', (v) => v.toLowerCase() !== 'false'],
  ['MachineDetection', (v) => v !== ''],
  ['AsyncAmd', (v) => v.toLowerCase() !== 'false'],
  ['Transcribe', (v) => v.toLowerCase() !== 'false'],
];
/** Params of a call update that only end it or say where to report. */
const CALL_END_PARAMS = new Set(['Status', 'StatusCallback', 'StatusCallbackMethod']);

type Resource = 'messages' | 'calls';

function resourceOf(call: { method: string; segments: readonly string[] }): Resource | undefined {
  const k = TWILIO_ROUTES.find(call)?.cls.kind;
  return k === 'messages' || k === 'calls' ? k : undefined;
}

/** The body with TimeLimit set to `seconds` (any given is replaced; the rest is kept as it was). */
function withTimeLimit(body: Buffer, seconds: number): Buffer {
  const kept = body
    .toString('utf8')
    .split('&')
    .filter((pair) => pair !== '' && decodeName(pair) !== 'TimeLimit');
  kept.push(`TimeLimit=${seconds}`);
  return Buffer.from(kept.join('&'));
}

function decodeName(pair: string): string {
  const raw = pair.split('=', 1)[0]!.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
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

/** A form body, or a flat JSON object turned into one. */
function formBody(body: Buffer, contentType: string | undefined): PreparedBody {
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
}

export function twilioVendor(cfg: TwilioVendorConfig): Vendor {
  const policy = cfg.unknownCost;
  return {
    name: 'twilio',
    refusalHeaders: NO_RETRY_HEADERS,
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

    prepareBody(body, contentType, target): PreparedBody {
      const prepared = formBody(body, contentType);
      if (!prepared.ok || !target || resourceOf(target) !== 'calls') return prepared;
      // A call always goes with a TimeLimit, so what it can cost is what is reserved.
      const form = prepared.body.toString('utf8');
      if (new URLSearchParams(form).has('TimeLimit')) return prepared;
      return { ok: true, body: Buffer.from(`${form}${form ? '&' : ''}TimeLimit=${cfg.calls.estimateMinutes * 60}`), contentType: FORM };
    },

    price(call: CallInfo): Price {
      const where = `${call.method} /${call.segments.join('/')}`;
      const route = TWILIO_ROUTES.find(call);
      if (!route) return unknownCost(policy, call.method, `no cost rule for ${where}`);
      switch (route.cls.kind) {
        case 'free':
          return FREE;
        case 'unknown':
          return { kind: 'unknown', reason: `${where}: ${route.cost}` };
        case 'lookup': {
          const paid = [...new URLSearchParams(call.query).keys()].find((k) => !FREE_LOOKUP_PARAMS.has(k));
          return paid === undefined ? FREE : { kind: 'unknown', reason: `a Lookup with '${paid.slice(0, 40)}' asks for paid data keyleash has no price for` };
        }
        case 'call-update': {
          const extra = [...new URLSearchParams(call.body.toString('utf8')).keys()].find((k) => !CALL_END_PARAMS.has(k));
          return extra === undefined ? FREE : { kind: 'unknown', reason: `updating a call with '${extra.slice(0, 40)}' may dial further, billed legs` };
        }
      }
      const p = params(call.body);
      if (!p.ok) return p.price;
      const to = p.get('To');
      if (route.cls.kind === 'calls') {
        const extra = PAID_CALL_FEATURES.find(([name, on]) => p.has(name) && on(p.get(name)!));
        if (extra) return { kind: 'unknown', reason: `a call with '${extra[0]}' is billed for a feature keyleash has no price for` };
        const limit = p.get('TimeLimit');
        let minutes = cfg.calls.estimateMinutes;
        if (limit !== undefined) {
          if (!/^[0-9]{1,6}$/.test(limit) || Number(limit) < 1) return { kind: 'invalid', reason: "'TimeLimit' must be whole seconds, at least 1", param: 'TimeLimit' };
          minutes = Math.ceil(Number(limit) / 60);
        }
        const rate = priceFor(cfg.calls, to);
        const body = call.body;
        return { kind: 'priced', micros: minutes * rate, shrink: { units: minutes, unitMicros: rate, minUnits: 1, body: (n) => withTimeLimit(body, n * 60) } };
      }
      if (to !== undefined && /^[a-z]+:/i.test(to)) {
        return { kind: 'unknown', reason: `a message to ${JSON.stringify(to.split(':', 1)[0]).slice(0, 30)} is not an SMS keyleash has a price for` };
      }
      if (p.has('MediaUrl')) return { kind: 'priced', micros: priceFor(cfg.mms, to) };
      const body = p.get('Body');
      if (body === undefined || p.has('ContentSid')) return { kind: 'unknown', reason: 'a message from a content template (no Body, or ContentSid) has no length to price' };
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
      endpoints: TWILIO_ROUTES.routes.map((r) => {
        if (r.cls.kind === 'messages') return { match: r.match, cost: r.cost, sms: describePrices(cfg.sms, 'per segment'), mms: describePrices(cfg.mms, 'per message') };
        if (r.cls.kind === 'calls') return { match: r.match, cost: r.cost, calls: describePrices(cfg.calls, 'per minute'), default_time_limit_seconds: cfg.calls.estimateMinutes * 60 };
        return { match: r.match, cost: r.cost };
      }),
    }),
  };
}
