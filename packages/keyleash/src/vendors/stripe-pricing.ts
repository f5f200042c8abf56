import { minorUnitsToMicros } from '../policy/money.js';

export interface StripePricingConfig {
  fx: Readonly<Record<string, string | number>>;
  /** The account's currency, used when a money-moving call has an amount but no currency (refunds). */
  defaultCurrency: string;
}

export type Price =
  | { kind: 'priced'; micros: number }
  | { kind: 'unknown'; reason: string }
  | { kind: 'invalid'; reason: string; param?: string };

const MONEY_CREATES = new Set(['payment_intents', 'charges', 'refunds', 'transfers', 'payouts', 'invoiceitems']);
const FREE: Price = { kind: 'priced', micros: 0 };

/**
 * Calls that move money whose amount is not in the request (it lives in an invoice, a session's
 * line items, a top-up's source…). They are `unknown`, so a capped key refuses them instead of
 * letting them through at $0; an uncapped key may still make them.
 */
function unpricedMoneyMover(version?: string, resource?: string, id?: string, action?: string): string | null {
  if (version === 'v2' && resource === 'money_management') return 'a v2 money-management call';
  if (version !== 'v1' || resource === undefined) return null;
  if (resource === 'checkout' && id === 'sessions' && action === undefined) return 'a checkout session';
  if (resource === 'invoices' && id !== undefined && action === 'pay') return 'paying an invoice';
  if (resource === 'topups' && id === undefined) return 'a top-up';
  if (resource === 'transfers' && id !== undefined && action === 'reversals') return 'a transfer reversal';
  if (resource === 'application_fees' && id !== undefined && action === 'refunds') return 'an application-fee refund';
  if (resource === 'customers' && id !== undefined && action === 'balance_transactions') return 'a customer balance transaction';
  return null;
}

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

function priceCreate(resource: string, pairs: Pairs, cfg: StripePricingConfig): Price {
  const isRefund = resource === 'refunds';
  const amount = integerParam(pairs, ['amount']);
  if (!amount.ok) return amount.price;
  const transfer = integerParam(pairs, ['transfer_data', 'amount']);
  if (!transfer.ok) return transfer.price;
  const cur = lookup(pairs, ['currency']);
  if (!cur.ok) return cur.price;

  let currency = cur.value;
  if (currency === undefined && isRefund) currency = cfg.defaultCurrency;
  if (currency === undefined || !/^[a-zA-Z]{3}$/.test(currency)) {
    return { kind: 'invalid', reason: 'a 3-letter currency is required', param: 'currency' };
  }
  if (amount.value === undefined) {
    return isRefund
      ? { kind: 'unknown', reason: 'refund without amount refunds the full, unknown amount' }
      : { kind: 'invalid', reason: `'amount' is required on ${resource}`, param: 'amount' };
  }
  const t = transfer.value ?? 0n;
  return price(amount.value > t ? amount.value : t, currency.toLowerCase(), cfg);
}

export function priceStripeCall(
  method: string,
  segments: readonly string[],
  form: string,
  cfg: StripePricingConfig,
  query = '',
): Price {
  if (method.toUpperCase() !== 'POST') return FREE;
  if (segments.some((s) => s === '' || s === '.' || s === '..' || /[/\\\s]/.test(s))) {
    return { kind: 'invalid', reason: 'malformed request path' };
  }
  const [version, resource, id, action, ...rest] = segments.map((s) => s.toLowerCase());
  const unpriced = unpricedMoneyMover(version, resource, id, action);
  if (unpriced) return { kind: 'unknown', reason: `${unpriced} moves money keyleash cannot price from the request` };
  if (version !== 'v1' || resource === undefined || rest.length > 0) return FREE;

  const isCreate = id === undefined && MONEY_CREATES.has(resource);
  // Raising a payment intent's amount after creation would dodge the create's price, so an update
  // that names an amount is charged as if it were a new intent of that amount.
  const isUpdate = resource === 'payment_intents' && id !== undefined && action === undefined;
  if (!isCreate && !isUpdate) return FREE;

  // Stripe merges query-string params into POST params, so both are inspected together.
  const fromQuery = parseForm(query);
  const fromForm = parseForm(form);
  if (!fromQuery || !fromForm) return { kind: 'invalid', reason: 'malformed form encoding' };
  const pairs = [...fromQuery, ...fromForm];

  if (isCreate) return priceCreate(resource, pairs, cfg);
  const amount = integerParam(pairs, ['amount']);
  if (!amount.ok) return amount.price;
  if (amount.value === undefined) return FREE;
  const cur = lookup(pairs, ['currency']);
  if (!cur.ok) return cur.price;
  const currency = (cur.value ?? cfg.defaultCurrency).toLowerCase();
  if (!/^[a-z]{3}$/.test(currency)) return { kind: 'invalid', reason: 'a 3-letter currency is required', param: 'currency' };
  return price(amount.value, currency, cfg);
}
