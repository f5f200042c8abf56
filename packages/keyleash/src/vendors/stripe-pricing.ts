import { minorUnitsToMicros } from '../policy/money.js';
import { type Guard, STRIPE_ENDPOINTS, type StripeEndpoint, type StripeRule } from './stripe-endpoints.js';

export interface StripePricingConfig {
  fx: Readonly<Record<string, string | number>>;
  /**
   * The account's currency, shown by GET /v1/vendors. Not used to price: Stripe counts a call
   * without a currency in the object's currency, which a request does not show.
   */
  defaultCurrency: string;
}

import type { Price } from './vendor.js';

export type { Price };

const FREE: Price = { kind: 'priced', micros: 0 };

type Lookup = { ok: true; value: string | undefined } | { ok: false; price: Price };
type Pairs = readonly (readonly [string, string])[];

// Parsers disagree on odd keys ("[amount]", "amount[]", "transfer_data[amount"), so every key is
// reduced to its bracket-free path and anything resembling a money param must be spelled exactly once.
function keyPath(key: string): string[] {
  return key
    .split(/[[\]]/)
    .map((s) => s.trim())
    .filter(Boolean);
}

function paramName(path: readonly string[]): string {
  return path[0] + path.slice(1).map((p) => `[${p}]`).join('');
}

function lookup(pairs: Pairs, path: readonly string[]): Lookup {
  const name = paramName(path);
  const hits = pairs.filter(([k]) => {
    const kp = keyPath(k);
    return path.every((p, i) => kp[i] === p);
  });
  if (hits.length === 0) return { ok: true, value: undefined };
  const [hit] = hits;
  if (hits.length > 1 || hit?.[0] !== name) {
    return { ok: false, price: { kind: 'invalid', reason: `parameter '${name}' must appear exactly once`, param: name } };
  }
  return { ok: true, value: hit[1] };
}

function integerParam(pairs: Pairs, path: readonly string[]): { ok: true; value: bigint | undefined } | { ok: false; price: Price } {
  const r = lookup(pairs, path);
  if (!r.ok) return r;
  if (r.value === undefined) return { ok: true, value: undefined };
  // Length check first so a megabyte of digits never reaches BigInt().
  if (!/^[0-9]{1,16}$/.test(r.value) || BigInt(r.value) > BigInt(Number.MAX_SAFE_INTEGER)) {
    const param = paramName(path);
    return { ok: false, price: { kind: 'invalid', reason: `'${param}' must be a non-negative integer in minor units`, param } };
  }
  return { ok: true, value: BigInt(r.value) };
}

// A raw ';' is a pair separator for some server-side parsers (Rack 2) and raw whitespace is
// stripped by them, so either could hide a second `amount` from URLSearchParams.
function parseForm(text: string): Pairs | null {
  if (/[;\s\x00-\x1f\x7f]/.test(text) || /%(?![0-9a-fA-F]{2})/.test(text)) return null;
  return [...new URLSearchParams(text)];
}

function price(amountMinor: bigint, currency: string, cfg: StripePricingConfig): Price {
  if (currency !== 'usd' && !Object.hasOwn(cfg.fx, currency)) {
    return { kind: 'unknown', reason: `no exchange rate for currency '${currency}'` };
  }
  const r = minorUnitsToMicros(amountMinor, currency, cfg.fx);
  return r.ok ? { kind: 'priced', micros: r.micros } : { kind: 'invalid', reason: r.reason, param: 'amount' };
}

interface CompiledEndpoint {
  method: string;
  /** Literal segments, or null for a `{param}`/`*` segment. */
  segments: readonly (string | null)[];
  entry: StripeEndpoint;
}

function compile(entries: readonly StripeEndpoint[]): Map<string, CompiledEndpoint[]> {
  const byShape = new Map<string, CompiledEndpoint[]>();
  for (const entry of entries) {
    const [method, path] = entry.match.split(' ') as [string, string];
    const segments = path.split('/').slice(1).map((s) => (s === '*' || /^\{[a-z_]+\}$/.test(s) ? null : s));
    const shape = `${method} ${segments.length}`;
    byShape.set(shape, [...(byShape.get(shape) ?? []), { method, segments, entry }]);
  }
  return byShape;
}

const TABLE = compile(STRIPE_ENDPOINTS);

/** A literal segment beats a `{param}` at the first place two matching entries differ. */
function moreSpecific(a: CompiledEndpoint, b: CompiledEndpoint): boolean {
  for (let i = 0; i < a.segments.length; i++) {
    const la = a.segments[i] !== null;
    const lb = b.segments[i] !== null;
    if (la !== lb) return la;
  }
  return false;
}

/** The table entry that classifies a call, or undefined when Stripe's endpoint is not in the table. */
export function findStripeEndpoint(method: string, segments: readonly string[]): StripeEndpoint | undefined {
  const lower = segments.map((s) => s.toLowerCase());
  let best: CompiledEndpoint | undefined;
  for (const c of TABLE.get(`${method.toUpperCase()} ${segments.length}`) ?? []) {
    if (!c.segments.every((s, i) => s === null || s === lower[i])) continue;
    if (!best || moreSpecific(c, best)) best = c;
  }
  return best?.entry;
}

const pathOf = (p: string): string[] => p.split('.');
const sent = (pairs: Pairs, path: readonly string[]): boolean => pairs.some(([k]) => {
  const kp = keyPath(k);
  return path.every((p, i) => kp[i] === p);
});

/** Null when the guard lets the call be counted; otherwise the answer for it. */
function checkGuard(g: Guard, pairs: Pairs, where: string): Price | null {
  const tripped: Price = { kind: 'unknown', reason: `${where}: ${g.why}` };
  for (const p of g.ifSent ?? []) if (sent(pairs, pathOf(p))) return tripped;
  for (const p of g.ifTrue ?? []) {
    const r = lookup(pairs, pathOf(p));
    if (!r.ok) return r.price;
    if (r.value !== undefined && r.value !== 'false') return tripped;
  }
  for (const [p, want] of Object.entries(g.unless ?? {})) {
    const r = lookup(pairs, pathOf(p));
    if (!r.ok) return r.price;
    if (r.value !== want) return tripped;
  }
  if (g.only) {
    const names = new Set(g.only.filter((o) => !o.includes('=')));
    const pinned = new Map<string, Set<string>>();
    for (const o of g.only.filter((x) => x.includes('='))) {
      const [n, v] = o.split('=') as [string, string];
      pinned.set(n, (pinned.get(n) ?? new Set()).add(v));
    }
    for (const [k] of pairs) {
      const top = keyPath(k)[0];
      if (top === undefined) return tripped;
      if (top === 'expand' || names.has(top)) continue;
      const values = pinned.get(top);
      if (!values) return tripped;
      const r = lookup(pairs, [top]);
      if (!r.ok) return r.price;
      if (r.value === undefined || !values.has(r.value)) return tripped;
    }
  }
  return null;
}

const OBJECT_ID = /^[A-Za-z0-9_]{1,255}$/;

/** The path of the object whose currency prices the call, null when the request names none. */
function objectToRead(
  oc: NonNullable<Extract<StripeRule, { kind: 'amount' }>['objectCurrency']>,
  pairs: Pairs,
  segments: readonly string[],
): { ok: true; path: string | null } | { ok: false; price: Price } {
  for (const [from, read] of oc.sources) {
    const m = /^\{([0-9])\}$/.exec(from);
    let id: string | undefined;
    if (m) id = segments[Number(m[1])];
    else {
      const r = lookup(pairs, pathOf(from));
      if (!r.ok) return r;
      id = r.value;
    }
    if (id === undefined) continue;
    if (!OBJECT_ID.test(id)) return { ok: false, price: { kind: 'invalid', reason: `'${m ? 'id' : from}' is not a Stripe object id`, param: m ? 'id' : from } };
    return { ok: true, path: read.replace('{}', id) };
  }
  return { ok: true, path: null };
}

function priceAmount(
  rule: Extract<StripeRule, { kind: 'amount' }>,
  pairs: Pairs,
  segments: readonly string[],
  cfg: StripePricingConfig,
  where: string,
): Price {
  let largest: bigint | undefined;
  for (const p of rule.amounts) {
    const r = integerParam(pairs, pathOf(p));
    if (!r.ok) return r.price;
    if (r.value !== undefined && (largest === undefined || r.value > largest)) largest = r.value;
  }
  const cur = lookup(pairs, ['currency']);
  if (!cur.ok) return cur.price;
  if (largest === undefined) {
    if (rule.missingAmount === 'free') return FREE;
    if (rule.missingAmount === 'unknown') return { kind: 'unknown', reason: `${where} without an amount moves an amount the request does not show` };
    return { kind: 'invalid', reason: `'amount' is required on ${where}`, param: 'amount' };
  }
  if (rule.objectCurrency && (rule.objectCurrency.authoritative || cur.value === undefined)) {
    const obj = objectToRead(rule.objectCurrency, pairs, segments);
    if (!obj.ok) return obj.price;
    const path = obj.path;
    if (path !== null) {
      const amount = largest;
      return {
        kind: 'lookup',
        path,
        resolve: (o) => {
          const c = o && typeof o === 'object' ? (o as { currency?: unknown }).currency : undefined;
          if (typeof c !== 'string' || !/^[a-zA-Z]{3}$/.test(c)) {
            return { kind: 'unknown', reason: `${where}: the currency of ${path} could not be read from Stripe` };
          }
          return price(amount, c.toLowerCase(), cfg);
        },
      };
    }
  }
  if (cur.value === undefined) {
    // Stripe would use the object's (or account's) currency: pricing in a default could take a
    // GBP amount for USD, so the call is not counted in a guess.
    if (rule.currency === 'object') {
      return { kind: 'unknown', reason: `${where} names no currency, so Stripe uses the object's, which the request does not show; send 'currency'` };
    }
    return { kind: 'invalid', reason: 'a 3-letter currency is required', param: 'currency' };
  }
  if (!/^[a-zA-Z]{3}$/.test(cur.value)) return { kind: 'invalid', reason: 'a 3-letter currency is required', param: 'currency' };
  return price(largest, cur.value.toLowerCase(), cfg);
}

/**
 * What a Stripe call costs, from the request alone, by the endpoint table: GET and HEAD are
 * free; a write that the table does not know is `unknown` (refused on a capped key).
 */
export function priceStripeCall(
  method: string,
  segments: readonly string[],
  form: string,
  cfg: StripePricingConfig,
  query = '',
): Price {
  const m = method.toUpperCase();
  if (m === 'GET' || m === 'HEAD') return FREE;
  if (segments.some((s) => s === '' || s === '.' || s === '..' || /[/\\\s]/.test(s))) {
    return { kind: 'invalid', reason: 'malformed request path' };
  }
  const entry = findStripeEndpoint(m, segments);
  if (!entry) {
    return { kind: 'unknown', reason: `${m} /${segments.join('/')} is not in keyleash's table of Stripe endpoints, so what it moves is unknown` };
  }
  const rule = entry.rule;
  const where = entry.match;
  if (rule.kind === 'unpriced') return { kind: 'unknown', reason: `${where} ${rule.why}; keyleash cannot price it from the request` };
  if (rule.kind === 'free' && !rule.guard) return FREE;

  // Stripe merges query-string params into POST params, so both are inspected together.
  const fromQuery = parseForm(query);
  const fromForm = parseForm(form);
  if (!fromQuery || !fromForm) return { kind: 'invalid', reason: 'malformed form encoding' };
  const pairs = [...fromQuery, ...fromForm];

  const guarded = rule.guard ? checkGuard(rule.guard, pairs, where) : null;
  if (guarded) return guarded;
  return rule.kind === 'free' ? FREE : priceAmount(rule, pairs, segments, cfg, where);
}
