import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  DEFAULT_FX,
  MICROS_PER_USD,
  currencyExponent,
  formatUsd,
  microsToUsd,
  minorUnitsToMicros,
  parseUsdToMicros,
} from './money.js';

describe('parseUsdToMicros', () => {
  it.each([
    ['12.5', 12_500_000],
    [1000, 1_000_000_000],
    [0.000001, 1],
    ['0.000001', 1],
    [0, 0],
    ['0', 0],
    [-0, 0],
    ['007.10', 7_100_000],
    [0.1, 100_000],
    [1e-6, 1],
    [123456789.123456, 123_456_789_123_456],
    ['1000000000', 1_000_000_000_000_000],
    [1e9, 1_000_000_000_000_000],
  ])('%j -> %d micros', (input, micros) => {
    expect(parseUsdToMicros(input)).toEqual({ ok: true, micros });
  });

  it.each([
    [-1],
    ['-1'],
    ['-0'],
    [Number.NaN],
    [Number.POSITIVE_INFINITY],
    ['0.0000001'],
    [1e-7],
    [1.5e-7],
    [1e21],
    ['1e3'],
    ['1000000000.000001'],
    [1_000_000_001],
    [''],
    [' 1'],
    ['1 '],
    ['.5'],
    ['5.'],
    ['+5'],
    ['0x10'],
    ['1,000'],
    ['9'.repeat(1000)],
    [null],
    [undefined],
    [true],
    [{}],
  ])('rejects %j', (input) => {
    expect(parseUsdToMicros(input).ok).toBe(false);
  });

  it('rejects bigint input', () => {
    expect(parseUsdToMicros(10n).ok).toBe(false);
  });

  it('respects a custom maxUsd', () => {
    expect(parseUsdToMicros('10', 10)).toEqual({ ok: true, micros: 10_000_000 });
    expect(parseUsdToMicros('10.000001', 10).ok).toBe(false);
    expect(parseUsdToMicros('0.5', 0.5)).toEqual({ ok: true, micros: 500_000 });
  });

  it('round-trips integer micros through String(n / 1e6)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e15 }), (n) => {
        expect(parseUsdToMicros(String(n / 1e6))).toEqual({ ok: true, micros: n });
        expect(parseUsdToMicros(microsToUsd(n))).toEqual({ ok: true, micros: n });
      }),
      { numRuns: 2000 },
    );
  });
});

describe('microsToUsd / formatUsd', () => {
  it('converts for JSON output', () => {
    expect(microsToUsd(1_500_000)).toBe(1.5);
    expect(microsToUsd(1)).toBe(0.000001);
    expect(MICROS_PER_USD).toBe(1_000_000);
  });

  it.each([
    [1_500_000, '$1.50'],
    [1, '$0.000001'],
    [0, '$0.00'],
    [1_234_567, '$1.234567'],
    [1_230_000, '$1.23'],
    [1_234_000, '$1.234'],
    [1_000_000_000_000_000, '$1000000000.00'],
    [-2_500_000, '-$2.50'],
  ])('formatUsd(%d) = %s', (micros, text) => {
    expect(formatUsd(micros)).toBe(text);
  });
});

describe('currencyExponent', () => {
  it.each([
    ['usd', 2],
    ['EUR', 2],
    ['jpy', 0],
    ['KRW', 0],
    ['xof', 0],
    ['kwd', 3],
    ['BHD', 3],
    ['tnd', 3],
  ])('%s -> %d', (c, e) => {
    expect(currencyExponent(c)).toBe(e);
  });
});

describe('minorUnitsToMicros', () => {
  const fx = { eur: '1.1', jpy: '0.0067', kwd: 3.25, gbp: '1.333333', zzz: '0', bad: 'abc', tiny: 1e-7 };

  it.each([
    [5000n, 'usd', 50_000_000],
    [5000n, 'USD', 50_000_000],
    [1n, 'usd', 10_000],
    [0n, 'usd', 0],
    [5000n, 'jpy', 33_500_000], // zero-decimal: 5000 JPY * 0.0067
    [1000n, 'kwd', 3_250_000], // three-decimal: 1000 fils = 1 KWD
    [1n, 'kwd', 3_250],
    [1999n, 'eur', 21_989_000],
    [1n, 'gbp', 13_334], // 13_333.33 rounds up
    [1n, 'tiny', 1], // 1e-9 micros rounds up to 1
  ])('%d %s -> %d micros', (amount, cur, micros) => {
    expect(minorUnitsToMicros(amount, cur, fx)).toEqual({ ok: true, micros });
  });

  it('ignores an fx entry for usd', () => {
    expect(minorUnitsToMicros(100n, 'usd', { usd: '2' })).toEqual({ ok: true, micros: 1_000_000 });
  });

  it.each([
    [1n, 'xyz'],
    [1n, 'constructor'],
    [1n, 'zzz'],
    [1n, 'bad'],
    [-1n, 'usd'],
    [BigInt(Number.MAX_SAFE_INTEGER), 'usd'],
  ])('rejects %d %s', (amount, cur) => {
    expect(minorUnitsToMicros(amount, cur, fx).ok).toBe(false);
  });

  it('has a default table covering common currencies', () => {
    for (const c of ['eur', 'gbp', 'cad', 'aud', 'jpy', 'chf', 'sek', 'nok', 'dkk', 'nzd', 'sgd', 'hkd', 'mxn', 'brl', 'inr', 'krw', 'bhd', 'kwd', 'jod', 'omr', 'tnd']) {
      expect(minorUnitsToMicros(100n, c, DEFAULT_FX).ok, c).toBe(true);
    }
  });

  it('never under-counts and never over-counts by a whole micro', () => {
    const rate = fc
      .tuple(fc.bigInt({ min: 1n, max: 10n ** 12n }), fc.integer({ min: 0, max: 12 }))
      .map(([digits, scale]) => {
        const s = digits.toString().padStart(scale + 1, '0');
        return scale === 0 ? s : `${s.slice(0, -scale)}.${s.slice(-scale)}`;
      });
    const currency = fc.constantFrom('usd', 'eur', 'jpy', 'kwd');
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 12n }), currency, rate, (amount, cur, r) => {
        const res = minorUnitsToMicros(amount, cur, { [cur]: r });
        const [whole, frac = ''] = (cur === 'usd' ? '1' : r).split('.');
        // exact = amount * rateNum * 1e6 / (10^exponent * rateDen), compared without division
        const num = amount * BigInt(whole + frac) * 1_000_000n;
        const den = 10n ** BigInt(currencyExponent(cur) + frac.length);
        if (num / den + 1n > BigInt(Number.MAX_SAFE_INTEGER)) return; // may legitimately overflow
        expect(res.ok).toBe(true);
        if (!res.ok) return;
        const m = BigInt(res.micros);
        expect(m * den >= num).toBe(true);
        expect((m - 1n) * den < num).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
