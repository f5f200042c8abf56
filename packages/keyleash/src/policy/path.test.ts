import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { encodeSegment, normalizePath } from './path.js';

const HOSTILE: Array<[string, string]> = [
  ['/v1/payment_intents/../refunds', 'dot segment'],
  ['/v1/./refunds', 'dot segment'],
  ['/v1/..', 'dot segment'],
  ['/..', 'dot segment'],
  ['/v1/%2e%2e/refunds', 'dot segment'],
  ['/v1/%2E%2E/refunds', 'dot segment'],
  ['/v1/%2E./x', 'dot segment'],
  ['/v1/.%2e/x', 'dot segment'],
  ['/v1/%2e/x', 'dot segment'],
  ['/v1/a%2Fb', 'encoded slash'],
  ['/v1/a%2fb', 'encoded slash'],
  ['/v1/a%252fb', 'double encoding'],
  ['/v1/%252e%252e/x', 'double encoding'],
  ['/v1/%25', 'double encoding'],
  ['/v1//x', 'empty segment'],
  ['/v1/x/', 'empty segment'],
  ['/v1/x//', 'empty segment'],
  ['/v1\\x', 'backslash'],
  ['/v1/%5Cx', 'backslash'],
  ['/v1/%5cx', 'backslash'],
  ['/v1/x;y', 'matrix parameter'],
  ['/v1/refunds;jsessionid=1', 'matrix parameter'],
  ['/v1/x%3By', 'reserved character in segment'],
  ['/v1/x%3Fy', 'reserved character in segment'],
  ['/v1/x%23y', 'reserved character in segment'],
  ['/v1/%00', 'control character'],
  ['/v1/%0d%0aHost:x', 'control character'],
  ['/v1/%7F', 'control character'],
  ['/v1/x\u0000', 'control, whitespace or non-ASCII character'],
  ['/v1/x y', 'control, whitespace or non-ASCII character'],
  ['/v1/x\ty', 'control, whitespace or non-ASCII character'],
  ['/v1/é', 'control, whitespace or non-ASCII character'],
  ['/v1/x%20y', 'whitespace'],
  ['/v1/%C0%AE%C0%AE/x', 'malformed percent-encoding'],
  ['/v1/%C0%AF', 'malformed percent-encoding'],
  ['/v1/%ED%A0%80', 'malformed percent-encoding'],
  ['/v1/%E2%80', 'malformed percent-encoding'],
  ['/v1/%zz', 'malformed percent-encoding'],
  ['/v1/%', 'malformed percent-encoding'],
  ['/v1/%2', 'malformed percent-encoding'],
  ['/v1/%E2%80%AE', 'non-ASCII character'],
  ['/v1/%C3%A9', 'non-ASCII character'],
  ['http://evil/v1/x', 'not an origin-form path'],
  ['https://api.stripe.com/v1/x', 'not an origin-form path'],
  ['//evil/v1', 'not an origin-form path'],
  ['*', 'not an origin-form path'],
  ['api.stripe.com:443', 'not an origin-form path'],
  ['', 'not an origin-form path'],
  ['v1/x', 'not an origin-form path'],
  ['/v1/x#frag', 'fragment'],
  ['/v1/x?a=b#frag', 'fragment'],
  ['/v1/x?a=b c', 'invalid character in query'],
  ['/v1/x?a=\u0001', 'invalid character in query'],
  ['/v1/x?a=é', 'invalid character in query'],
  ['/' + 'a'.repeat(2048), 'path too long'],
  ['/' + Array(65).fill('a').join('/'), 'too many segments'],
];

describe('normalizePath rejects hostile targets', () => {
  it.each(HOSTILE)('%j -> %s', (raw, reason) => {
    expect(normalizePath(raw)).toEqual({ ok: false, reason });
  });
});

describe('normalizePath accepts ordinary targets', () => {
  it.each([
    ['/v1/payment_intents/pi_123/confirm?expand[]=x', ['v1', 'payment_intents', 'pi_123', 'confirm'], '/v1/payment_intents/pi_123/confirm', 'expand[]=x'],
    ['/', [], '/', ''],
    ['/?', [], '/', ''],
    ['/v1/customers/cus%5F1', ['v1', 'customers', 'cus_1'], '/v1/customers/cus_1', ''],
    ['/v1/customers?limit=3&starting_after=cus_1', ['v1', 'customers'], '/v1/customers', 'limit=3&starting_after=cus_1'],
    ['/v1/x?a=%zz?b', ['v1', 'x'], '/v1/x', 'a=%zz?b'],
    ['/v1/things:batchGet', ['v1', 'things:batchGet'], '/v1/things:batchGet', ''],
    ['/v1/a+b', ['v1', 'a+b'], '/v1/a%2Bb', ''],
    ['/v1/[x]', ['v1', '[x]'], '/v1/%5Bx%5D', ''],
    ['/v1/...', ['v1', '...'], '/v1/...', ''],
    ['/' + Array(64).fill('a').join('/'), Array(64).fill('a'), '/' + Array(64).fill('a').join('/'), ''],
  ])('%j', (raw, segments, path, query) => {
    expect(normalizePath(raw)).toEqual({ ok: true, segments, path, query });
  });
});

describe('encodeSegment', () => {
  it('leaves unreserved characters and safe sub-delims raw', () => {
    expect(encodeSegment("aZ09-._~!$&'()*,=:@")).toBe("aZ09-._~!$&'()*,=:@");
  });
  it('encodes everything that could change meaning', () => {
    expect(encodeSegment('a/b?c#d%e;f+g h\\i')).toBe('a%2Fb%3Fc%23d%25e%3Bf%2Bg%20h%5Ci');
  });
});

const FRAGMENTS = [
  '/', '/', '/', '.', '..', '%2e', '%2E', '%2f', '%2F', '%25', '%5c', '%5C', '\\', ';', '%3b', 'v1', 'refunds',
  'payment_intents', 'pi_1', '*', '?', '#', '%', '%00', '%20', ' ', '%C0%AE', '%E2%80%AE', '%C3%A9', 'é', '\u202e',
  '\u0000', '\n', '\u{1F600}', '+', ':', '[', '@', '&',
];
const fragmentString = fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 20 }).map((parts) => parts.join(''));
const rawTarget = fc.oneof(
  fragmentString,
  fragmentString.map((s) => '/' + s),
  fc.string().map((s) => '/' + s),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: 'binary' }).map((s) => '/' + s),
);

describe('normalizePath properties', () => {
  it('accepted paths have clean segments and a canonical form that round-trips', () => {
    fc.assert(
      fc.property(rawTarget, (raw) => {
        const r = normalizePath(raw);
        if (!r.ok) return;
        for (const seg of r.segments) {
          expect(seg).not.toBe('');
          expect(seg).not.toBe('.');
          expect(seg).not.toBe('..');
          expect(seg).not.toMatch(/[/\\%;]|[^\x20-\x7e]/);
        }
        const again = normalizePath(r.path + (r.query ? '?' + r.query : ''));
        expect(again).toEqual(r);
      }),
      { numRuns: 5000 },
    );
  });
});
