import { describe, expect, it } from 'vitest';
import { deltaTokens, findModelPrice, inputTokenBound, modelPrices, tokenCost, usageCost } from './llm.js';
import { SseReader } from './sse.js';

describe('token pricing', () => {
  it('converts USD per million tokens to exact micros', () => {
    const t = modelPrices({ a: { input: 2.5, output: 10 }, b: { input: '0.15', output: '0.6' }, c: { input: 0.000001, output: 1 } });
    expect(t.get('a')).toEqual({ input: 2_500_000, output: 10_000_000, cacheWrite: 3_125_000, cacheRead: 250_000 });
    expect(t.get('b')).toMatchObject({ input: 150_000, output: 600_000 });
    expect(t.get('c')).toMatchObject({ input: 1 });
    expect(() => modelPrices({ x: { input: 0.0000001, output: 1 } })).toThrow(/6 decimal/);
    expect(() => modelPrices({ x: { input: -1, output: 1 } })).toThrow();
  });

  it('prices tokens exactly, rounding each part up to the micro-dollar', () => {
    expect(tokenCost(0, 2_500_000)).toBe(0);
    expect(tokenCost(1, 2_500_000)).toBe(3); // 2.5 micros → 3
    expect(tokenCost(2, 2_500_000)).toBe(5);
    expect(tokenCost(1_000_000, 2_500_000)).toBe(2_500_000);
    expect(tokenCost(1, 150_000)).toBe(1); // 0.15 micros → 1
    expect(tokenCost(123_456_789, 60_000_000)).toBe(7_407_407_340);
    const gpt4o = modelPrices({ m: { input: 2.5, output: 10 } }).get('m')!;
    expect(usageCost(gpt4o, { input: 1000, output: 500 })).toBe(2_500 + 5_000);
    expect(usageCost(gpt4o, { input: 1000, output: 0, cacheWrite: 1000, cacheRead: 1000 })).toBe(2_500 + 3_125 + 250);
  });

  it('finds a model by exact name, or a dated snapshot of a listed one, never by a prefix; then "*"', () => {
    const t = modelPrices({
      'gpt-4': { input: 30, output: 60 },
      'gpt-4o': { input: 2.5, output: 10 },
      'gpt-4o-mini': { input: 0.15, output: 0.6 },
      o1: { input: 15, output: 60 },
    });
    const snap = /^(.+)-\d{4}-\d{2}-\d{2}$/;
    expect(findModelPrice(t, 'gpt-4o', snap)?.input).toBe(2_500_000);
    expect(findModelPrice(t, 'gpt-4o-2024-08-06', snap)?.input).toBe(2_500_000);
    expect(findModelPrice(t, 'gpt-4o-mini-2024-07-18', snap)?.input).toBe(150_000);
    // A suffix that is not a date never falls back to its cheaper prefix.
    for (const m of ['o1-pro', 'o1-pro-2025-03-19', 'gpt-4-32k', 'gpt-4-0613', 'gpt-4o-mini-tts', 'gpt-4o-2024-08-06-pro', 'gpt-4.5', 'o9']) {
      expect(findModelPrice(t, m, snap), m).toBeUndefined();
    }
    expect(findModelPrice(t, 'gpt-4o-2024-08-06')).toBeUndefined(); // no snapshot rule: exact only
    expect(findModelPrice(t, undefined, snap)).toBeUndefined();
    expect(findModelPrice(t, '', snap)).toBeUndefined();
    const withStar = modelPrices({ '*': { input: 100, output: 100 } });
    expect(findModelPrice(withStar, 'anything')?.input).toBe(100_000_000);
  });

  it('bounds input tokens by body bytes and counts streamed output about 4 characters a token', () => {
    expect(inputTokenBound(Buffer.from(''))).toBe(1);
    expect(inputTokenBound(Buffer.from('héllo'))).toBe(6);
    expect(deltaTokens('')).toBe(0);
    expect(deltaTokens(undefined)).toBe(0);
    expect(deltaTokens('a')).toBe(1);
    expect(deltaTokens('abcd')).toBe(1);
    expect(deltaTokens('abcde')).toBe(2);
  });
});

describe('the SSE reader', () => {
  it('yields events whole, with their exact text, whatever the chunking', () => {
    const text = 'event: a\ndata: {"x":1}\n\ndata: line1\r\ndata: line2\r\n\r\n: comment\n\ndata: [DONE]\n\n';
    const whole = new SseReader().push(Buffer.from(text));
    expect(whole.map((e) => [e.event, e.data, e.empty])).toEqual([
      ['a', '{"x":1}', false],
      [null, 'line1\nline2', false],
      [null, '', true],
      [null, '[DONE]', false],
    ]);
    expect(whole.map((e) => e.raw).join('')).toBe(text);
    // Byte by byte, and with a multi-byte character split across chunks.
    const bytes = Buffer.from(text.replace('line1', 'lïne1'));
    const r = new SseReader();
    const events = [];
    for (let i = 0; i < bytes.length; i++) events.push(...r.push(bytes.subarray(i, i + 1)));
    expect(events.map((e) => e.data)).toEqual(['{"x":1}', 'lïne1\nline2', '', '[DONE]']);
    expect(events.map((e) => e.raw).join('') + r.rest()).toBe(bytes.toString('utf8'));
  });

  it('keeps an unfinished event for rest()', () => {
    const r = new SseReader();
    expect(r.push(Buffer.from('data: partial'))).toEqual([]);
    expect(r.rest()).toBe('data: partial');
  });
});
