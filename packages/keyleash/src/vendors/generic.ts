import qs from 'qs';
import type { Mode } from '../keys/token.js';
import { GENERIC_DEFAULT_FORWARDED } from './forwarded-headers.js';
import { type EndpointPattern, isEndpointAllowed } from '../policy/endpoints.js';
import { currencyExponent, minorUnitsToMicros } from '../policy/money.js';
import {
  type CallInfo,
  type CostRuleView,
  describePolicy,
  formatMicros,
  mediaType,
  NO_RETRY_HEADERS,
  type Outcome,
  type PreparedBody,
  type Price,
  type UnknownCostPolicy,
  unknownCost,
  type Vendor,
} from './vendor.js';

// A vendor defined in configuration alone: where it lives, how its secret is injected, and
// what its endpoints cost. Bodies pass through untouched.

export type GenericAuth =
  | { type: 'bearer' }
  /** With `username`, the secret is the password; without, the secret is "user:password". */
  | { type: 'basic'; username?: string | undefined }
  | { type: 'header'; name: string; prefix: string }
  | { type: 'query'; name: string };

export type GenericCostRule =
  | { kind: 'fixed'; micros: number }
  /** A money amount read from the request at `path`, in the currency's major or minor unit. */
  | { kind: 'amount'; path: string[]; unit: 'major' | 'minor'; currency?: string | undefined; currencyPath?: string[] | undefined }
  /** A count read at `path` (a number, or an array's length) × a price each. */
  | { kind: 'count'; path: string[]; microsEach: number };

export interface GenericEndpoint {
  match: string;
  pattern: EndpointPattern;
  rule: GenericCostRule;
}

export interface GenericVendorConfig {
  name: string;
  origin: string;
  testSecret: string | undefined;
  liveSecret: string | undefined;
  auth: GenericAuth;
  endpoints: readonly GenericEndpoint[];
  unknownCost: UnknownCostPolicy;
  fx: Readonly<Record<string, string | number>>;
  /** Configured when the vendor answers a repeated Idempotency-Key with the original result. */
  dedupesIdempotencyKey?: boolean;
  /** The caller headers forwarded (lower case; `*` ends a prefix); default GENERIC_DEFAULT_FORWARDED. */
  forwardHeaders?: readonly string[];
}

type Lookup = { found: false } | { found: true; value: unknown };

function walk(root: unknown, path: readonly string[]): Lookup {
  let node = root;
  for (const part of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, part)) return { found: false };
    node = (node as Record<string, unknown>)[part];
  }
  return node === undefined ? { found: false } : { found: true, value: node };
}

/** The request's params: its JSON or form body, and its query string. */
function sources(call: CallInfo): { body: unknown; query: unknown } | null {
  const type = mediaType(call.contentType);
  let body: unknown = {};
  if (call.body.length > 0) {
    if (type === 'application/json' || type.endsWith('+json')) {
      try {
        body = JSON.parse(call.body.toString('utf8'));
      } catch {
        return null;
      }
    } else if (type === 'application/x-www-form-urlencoded') {
      body = qs.parse(call.body.toString('utf8'), { depth: 10, arrayLimit: 100, parameterLimit: 2000 });
    }
  }
  const query = call.query ? qs.parse(call.query, { depth: 10, arrayLimit: 100, parameterLimit: 2000 }) : {};
  return { body, query };
}

/** A param found exactly once, in the body or in the query string. */
function param(src: { body: unknown; query: unknown }, path: readonly string[]): Lookup | 'ambiguous' {
  const a = walk(src.body, path);
  const b = walk(src.query, path);
  if (a.found && b.found) return 'ambiguous';
  return a.found ? a : b;
}

function invalid(path: readonly string[], reason: string): Price {
  const name = path.join('.');
  return { kind: 'invalid', reason: `'${name}' ${reason}`, param: name };
}

function priceRule(rule: GenericCostRule, call: CallInfo, fx: GenericVendorConfig['fx']): Price | 'no-value' {
  if (rule.kind === 'fixed') return { kind: 'priced', micros: rule.micros };
  const src = sources(call);
  if (!src) return { kind: 'invalid', reason: 'the body is not valid JSON', param: 'body' };
  const v = param(src, rule.path);
  if (v === 'ambiguous') return invalid(rule.path, 'is given both in the body and the query string');
  if (!v.found) return 'no-value';

  if (rule.kind === 'count') {
    let n: number;
    if (Array.isArray(v.value)) n = v.value.length;
    else if (typeof v.value === 'number' || (typeof v.value === 'string' && /^[0-9]{1,12}$/.test(v.value))) n = Number(v.value);
    else return invalid(rule.path, 'must be a whole number or a list');
    if (!Number.isSafeInteger(n) || n < 0 || n > 1e9) return invalid(rule.path, 'must be a whole number or a list');
    return { kind: 'priced', micros: n * rule.microsEach };
  }

  let currency = rule.currency;
  if (rule.currencyPath) {
    const c = param(src, rule.currencyPath);
    if (c === 'ambiguous') return invalid(rule.currencyPath, 'is given both in the body and the query string');
    if (c.found) currency = typeof c.value === 'string' ? c.value : '';
  }
  if (currency === undefined || !/^[a-zA-Z]{3}$/.test(currency)) {
    return invalid(rule.currencyPath ?? ['currency'], 'must be a 3-letter currency');
  }
  currency = currency.toLowerCase();
  const text = typeof v.value === 'number' && Number.isFinite(v.value) ? String(v.value) : typeof v.value === 'string' ? v.value : null;
  if (text === null) return invalid(rule.path, 'must be a number (one value, not a list)');
  let minor: bigint;
  if (rule.unit === 'minor') {
    if (!/^[0-9]{1,16}$/.test(text)) return invalid(rule.path, 'must be a non-negative integer in minor units');
    minor = BigInt(text);
  } else {
    const m = /^([0-9]{1,15})(?:\.([0-9]+))?$/.exec(text);
    const exp = currencyExponent(currency);
    if (!m || (m[2] ?? '').length > exp) return invalid(rule.path, `must be a non-negative decimal with at most ${exp} decimals`);
    minor = BigInt(m[1]! + (m[2] ?? '').padEnd(exp, '0'));
  }
  if (currency !== 'usd' && !Object.hasOwn(fx, currency)) return { kind: 'unknown', reason: `no exchange rate for currency '${currency}'` };
  const r = minorUnitsToMicros(minor, currency, fx);
  return r.ok ? { kind: 'priced', micros: r.micros } : invalid(rule.path, r.reason);
}

function describeRule(rule: GenericCostRule): string {
  switch (rule.kind) {
    case 'fixed':
      return `fixed: ${formatMicros(rule.micros)} per call`;
    case 'count':
      return `count: ${formatMicros(rule.microsEach)} × the number (or list length) at ${rule.path.join('.')}`;
    case 'amount': {
      const cur = rule.currencyPath ? `currency at ${rule.currencyPath.join('.')}${rule.currency ? ` (default ${rule.currency})` : ''}` : rule.currency;
      return `amount: ${rule.path.join('.')} in ${rule.unit} units of ${cur}, converted to USD`;
    }
  }
}

function describeAuth(a: GenericAuth): string {
  switch (a.type) {
    case 'bearer':
      return 'bearer';
    case 'basic':
      return a.username ? `basic (username ${a.username})` : 'basic';
    case 'header':
      return `header ${a.name}`;
    case 'query':
      return `query ${a.name}`;
  }
}

export function genericVendor(cfg: GenericVendorConfig): Vendor {
  const auth = cfg.auth;
  const vendor: Vendor = {
    name: cfg.name,
    refusalHeaders: NO_RETRY_HEADERS,
    origin: cfg.origin,
    dedupesIdempotencyKey: cfg.dedupesIdempotencyKey === true,
    secret: (mode: Mode) => (mode === 'live' ? cfg.liveSecret : cfg.testSecret),
    authHeaders(secret) {
      switch (auth.type) {
        case 'bearer':
          return { authorization: `Bearer ${secret}` };
        case 'basic': {
          const pair = auth.username !== undefined ? `${auth.username}:${secret}` : secret;
          return { authorization: `Basic ${Buffer.from(pair).toString('base64')}` };
        }
        case 'header':
          return { [auth.name.toLowerCase()]: auth.prefix + secret };
        case 'query':
          return {};
      }
    },
    forwardHeaders: cfg.forwardHeaders ?? GENERIC_DEFAULT_FORWARDED,
    prepareBody: (body, contentType): PreparedBody => ({ ok: true, body, contentType }),

    price(call): Price {
      for (const e of cfg.endpoints) {
        if (!isEndpointAllowed([e.pattern], call.method, call.segments)) continue;
        const p = priceRule(e.rule, call, cfg.fx);
        if (p === 'no-value') {
          return unknownCost(cfg.unknownCost, call.method, `${e.match} prices ${describeRule(e.rule)}, and the request has no such value`);
        }
        return p;
      }
      return unknownCost(cfg.unknownCost, call.method, `${cfg.name} has no cost rule for ${call.method} /${call.segments.join('/')}`);
    },

    outcome(status): Outcome {
      if (status >= 200 && status < 300) return 'executed';
      if (status >= 400 && status < 500) return 'refused';
      return 'unknown';
    },

    describe: () => ({
      kind: 'generic',
      auth: describeAuth(auth),
      unknown_cost: describePolicy(cfg.unknownCost),
      forward_headers: [...(cfg.forwardHeaders ?? GENERIC_DEFAULT_FORWARDED)],
      endpoints: cfg.endpoints.map((e): CostRuleView => ({ match: e.match, cost: describeRule(e.rule) })),
    }),
  };

  // Callers may send their vault token in the header the vendor's own clients use for the key.
  if (auth.type === 'header' && auth.name.toLowerCase() !== 'authorization') {
    Object.assign(vendor, { tokenHeaders: [auth.name.toLowerCase()] });
  }
  if (auth.type === 'query') {
    vendor.rewriteTarget = ({ segments, query }, secret) => {
      // The caller's own value for the parameter is dropped, so the vendor reads only the real one.
      // The rest of the query goes on byte for byte.
      const kept = query.split('&').filter((pair) => {
        if (pair === '') return false;
        const raw = pair.split('=', 1)[0]!.replace(/\+/g, ' ');
        let name = raw;
        try {
          name = decodeURIComponent(raw);
        } catch {
          /* left as it is */
        }
        return name !== auth.name;
      });
      kept.push(`${encodeURIComponent(auth.name)}=${encodeURIComponent(secret)}`);
      return { segments, query: kept.join('&') };
    };
  }
  return vendor;
}
