export const MICROS_PER_USD = 1_000_000;

type Result = { ok: true; micros: number } | { ok: false; reason: string };

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** value = int / 10^scale (scale may be negative). */
interface Decimal {
  int: bigint;
  scale: number;
}

// Exponents are only accepted where the input is a JS number (String(1e21) === '1e+21'),
// and bounded so a hostile config string cannot make us build a gigantic BigInt.
function parseDecimal(text: string, allowExponent: boolean): Decimal | null {
  const m = /^(\d+)(?:\.(\d+))?(?:e([+-]?\d{1,3}))?$/i.exec(text);
  if (!m || (m[3] !== undefined && !allowExponent)) return null;
  const whole = m[1] ?? '';
  const frac = m[2] ?? '';
  const exp = Number(m[3] ?? '0');
  // Bounded before BigInt(): long digit strings are either zeros or far above any cap.
  const significant = (whole + frac).replace(/^0+/, '');
  if (significant.length > 40) return null;
  return { int: BigInt(significant || '0'), scale: frac.length - exp };
}

function decimalText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return null;
}

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

/** Exact micros of a decimal with at most 6 fractional digits, else null. */
function decimalToMicros(d: Decimal): bigint | null {
  if (d.scale > 6) return null;
  return d.int * pow10(6 - d.scale);
}

export function parseUsdToMicros(value: unknown, maxUsd = 1_000_000_000): Result {
  const text = decimalText(value);
  if (text === null) return { ok: false, reason: 'amount must be a finite number or decimal string' };
  if (text.startsWith('-')) return { ok: false, reason: 'amount must not be negative' };
  const d = parseDecimal(text, typeof value === 'number');
  if (!d) return { ok: false, reason: `not a plain decimal amount: ${JSON.stringify(text.slice(0, 40))}` };
  const micros = decimalToMicros(d);
  if (micros === null) return { ok: false, reason: 'amount has more than 6 decimal places' };

  const maxText = decimalText(maxUsd);
  const maxDec = maxText === null ? null : parseDecimal(maxText, true);
  const maxMicros = maxDec && decimalToMicros(maxDec);
  if (maxMicros === null || maxMicros === undefined) throw new RangeError(`invalid maxUsd: ${maxUsd}`);
  if (micros > maxMicros || micros > MAX_SAFE) return { ok: false, reason: `amount exceeds ${maxText} USD` };
  return { ok: true, micros: Number(micros) };
}

export function microsToUsd(micros: number): number {
  return micros / MICROS_PER_USD;
}

export function formatUsd(micros: number): string {
  if (!Number.isFinite(micros)) return String(micros);
  const sign = micros < 0 ? '-' : '';
  const abs = BigInt(Math.abs(Math.trunc(micros)));
  const whole = abs / 1_000_000n;
  const frac = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0{1,4}$/, '');
  return `${sign}$${whole}.${frac}`;
}

const ZERO_DECIMAL = new Set(
  'bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf'.split(' '),
);
const THREE_DECIMAL = new Set('bhd jod kwd omr tnd'.split(' '));

export function currencyExponent(currency: string): number {
  const c = currency.toLowerCase();
  if (ZERO_DECIMAL.has(c)) return 0;
  if (THREE_DECIMAL.has(c)) return 3;
  return 2;
}

export function minorUnitsToMicros(
  amountMinor: bigint,
  currency: string,
  fx: Readonly<Record<string, string | number>>,
): Result {
  if (amountMinor < 0n) return { ok: false, reason: 'amount must not be negative' };
  const cur = currency.toLowerCase();
  // hasOwn: a currency named "constructor" must not resolve to Object.prototype members.
  const raw = cur === 'usd' ? '1' : Object.hasOwn(fx, cur) ? fx[cur] : undefined;
  if (raw === undefined) return { ok: false, reason: `no exchange rate for currency '${cur}'` };
  const rateText = decimalText(raw);
  const rate = rateText === null ? null : parseDecimal(rateText, true);
  if (!rate || rate.int === 0n) return { ok: false, reason: `invalid exchange rate for currency '${cur}'` };

  // micros = amountMinor / 10^exponent * rate.int / 10^rate.scale * 10^6, rounded up.
  let num = amountMinor * rate.int * 1_000_000n;
  let den = pow10(currencyExponent(cur));
  if (rate.scale >= 0) den *= pow10(rate.scale);
  else num *= pow10(-rate.scale);
  const micros = (num + den - 1n) / den;
  if (micros > MAX_SAFE) return { ok: false, reason: 'amount too large' };
  return { ok: true, micros: Number(micros) };
}

/**
 * USD per one major unit. Approximate, override in config: these are rough mid-2020s
 * rates rounded slightly up, so a spend cap errs towards over-counting.
 */
export const DEFAULT_FX: Readonly<Record<string, string>> = Object.freeze({
  eur: '1.20',
  gbp: '1.40',
  chf: '1.30',
  cad: '0.76',
  aud: '0.70',
  nzd: '0.63',
  jpy: '0.0072',
  cny: '0.15',
  hkd: '0.13',
  sgd: '0.80',
  krw: '0.00076',
  inr: '0.0125',
  sek: '0.11',
  nok: '0.10',
  dkk: '0.16',
  pln: '0.28',
  czk: '0.048',
  huf: '0.0030',
  mxn: '0.058',
  brl: '0.20',
  zar: '0.058',
  aed: '0.273',
  sar: '0.267',
  ils: '0.30',
  thb: '0.031',
  myr: '0.24',
  php: '0.019',
  idr: '0.000066',
  bhd: '2.66',
  kwd: '3.30',
  jod: '1.42',
  omr: '2.61',
  tnd: '0.34',
});
