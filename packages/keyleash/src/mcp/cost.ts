import { currencyExponent, minorUnitsToMicros, parseUsdToMicros } from '../policy/money.js';
import { formatMicros, type Price, type UnknownCostPolicy, unknownCost } from '../vendors/vendor.js';
import type { ToolRuleConfig } from './config-schema.js';
import { globMatches } from './tools.js';

// What a tools/call costs, from the tool's name and arguments alone. Pure: the proxy reserves
// this before the call goes upstream, exactly as it does for an HTTP call.

export type ToolCostRule =
  | { kind: 'free' }
  | { kind: 'fixed'; micros: number }
  | { kind: 'amount'; path: string[]; unit: 'major' | 'minor'; currency?: string | undefined; currencyPath?: string[] | undefined; quantity?: string[] | undefined }
  | { kind: 'count'; path: string[]; microsEach: number }
  | { kind: 'unpriced'; reason: string };

export interface ToolRule {
  /** A tool name or glob. */
  match: string;
  rule: ToolCostRule;
}

export interface ToolPricing {
  /** Exact names first, then globs, each in the order given. */
  rules: readonly ToolRule[];
  unknownCost: UnknownCostPolicy;
  defaultCurrency: string;
  fx: Readonly<Record<string, string | number>>;
}

function micros(v: string | number): number {
  const r = parseUsdToMicros(v);
  if (!r.ok) throw new RangeError(r.reason);
  return r.micros;
}

export function toolRuleFrom(c: ToolRuleConfig): ToolCostRule {
  if ('unpriced' in c && c.unpriced !== undefined) return { kind: 'unpriced', reason: c.unpriced };
  if ('usd' in c && c.usd !== undefined) return { kind: 'fixed', micros: micros(c.usd) };
  if ('count' in c && c.count !== undefined) return { kind: 'count', path: c.count.path, microsEach: micros(c.count.usd_each) };
  if ('amount' in c && c.amount !== undefined) {
    const a = c.amount;
    return { kind: 'amount', path: a.path, unit: a.unit, currency: a.currency?.toLowerCase(), currencyPath: a.currency_path, quantity: c.quantity };
  }
  return { kind: 'free' };
}

/** Orders rules so an exact name always beats a glob, whatever order they were written in. */
export function orderRules(rules: readonly ToolRule[]): ToolRule[] {
  return [...rules.filter((r) => !r.match.includes('*')), ...rules.filter((r) => r.match.includes('*'))];
}

export function ruleFor(pricing: ToolPricing, tool: string): ToolRule | undefined {
  return pricing.rules.find((r) => globMatches(r.match, tool));
}

type Lookup = { found: false } | { found: true; value: unknown };

function walk(root: unknown, path: readonly string[]): Lookup {
  let node = root;
  for (const part of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, part)) return { found: false };
    node = (node as Record<string, unknown>)[part];
  }
  return node === undefined || node === null ? { found: false } : { found: true, value: node };
}

function invalid(path: readonly string[], reason: string): Price {
  const name = path.join('.');
  return { kind: 'invalid', reason: `argument '${name}' ${reason}`, param: name };
}

function wholeNumber(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^[0-9]{1,12}$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) && n >= 0 && n <= 1e9 ? n : null;
}

export function describeToolRule(rule: ToolCostRule): string {
  switch (rule.kind) {
    case 'free':
      return 'free';
    case 'fixed':
      return `fixed: ${formatMicros(rule.micros)} per call`;
    case 'count':
      return `count: ${formatMicros(rule.microsEach)} × the number (or list length) at ${rule.path.join('.')}`;
    case 'unpriced':
      return `unpriced: ${rule.reason}`;
    case 'amount': {
      const cur = rule.currencyPath ? `the currency at ${rule.currencyPath.join('.')}` : (rule.currency ?? 'the default currency');
      return `amount: ${rule.path.join('.')}${rule.quantity ? ` × ${rule.quantity.join('.')}` : ''} in ${rule.unit} units of ${cur}, converted to USD`;
    }
  }
}

/** The price of one tools/call. Arguments that cannot be priced safely are refused, never guessed. */
export function priceToolCall(pricing: ToolPricing, tool: string, args: Readonly<Record<string, unknown>>): Price {
  const found = ruleFor(pricing, tool);
  if (!found) return unknownCost(pricing.unknownCost, 'POST', `no cost rule covers tool '${tool}'`);
  const rule = found.rule;
  switch (rule.kind) {
    case 'free':
      return { kind: 'priced', micros: 0 };
    case 'fixed':
      return { kind: 'priced', micros: rule.micros };
    case 'unpriced':
      return { kind: 'unknown', reason: `tool '${tool}' cannot be priced from its arguments: ${rule.reason}` };
    case 'count': {
      const v = walk(args, rule.path);
      if (!v.found) return unknownCost(pricing.unknownCost, 'POST', `tool '${tool}' is priced by '${rule.path.join('.')}', which the arguments lack`);
      const n = Array.isArray(v.value) ? v.value.length : wholeNumber(v.value);
      if (n === null) return invalid(rule.path, 'must be a whole number or a list');
      return { kind: 'priced', micros: n * rule.microsEach };
    }
    case 'amount': {
      const v = walk(args, rule.path);
      if (!v.found) return unknownCost(pricing.unknownCost, 'POST', `tool '${tool}' is priced by '${rule.path.join('.')}', which the arguments lack`);
      let currency = rule.currency ?? pricing.defaultCurrency;
      if (rule.currencyPath) {
        const c = walk(args, rule.currencyPath);
        if (c.found) {
          if (typeof c.value !== 'string' || !/^[a-zA-Z]{3}$/.test(c.value)) return invalid(rule.currencyPath, 'must be a 3-letter currency');
          currency = c.value.toLowerCase();
        }
      }
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
      if (rule.quantity) {
        const q = walk(args, rule.quantity);
        const n = q.found ? wholeNumber(q.value) : 1;
        if (n === null) return invalid(rule.quantity, 'must be a whole number');
        minor *= BigInt(n);
      }
      if (currency !== 'usd' && !Object.hasOwn(pricing.fx, currency)) return { kind: 'unknown', reason: `no exchange rate for currency '${currency}'` };
      const r = minorUnitsToMicros(minor, currency, pricing.fx);
      return r.ok ? { kind: 'priced', micros: r.micros } : invalid(rule.path, r.reason);
    }
  }
}
