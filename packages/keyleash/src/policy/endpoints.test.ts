import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { compileEndpoints, intersectEndpoints, isEndpointAllowed, parseEndpointPattern, restrictMethods, type EndpointPattern } from './endpoints.js';
import { normalizePath } from './path.js';

function compile(...sources: string[]): EndpointPattern[] {
  const r = compileEndpoints(sources);
  if (!Array.isArray(r)) throw new Error(`${r.error} at ${r.index}`);
  return r;
}

function allowed(patterns: EndpointPattern[], method: string, rawTarget: string): boolean {
  const n = normalizePath(rawTarget);
  return n.ok && isEndpointAllowed(patterns, method, n.segments);
}

describe('parseEndpointPattern', () => {
  it.each([
    ['/v1/refunds', null, ['v1', 'refunds']],
    ['POST /v1/refunds', 'POST', ['v1', 'refunds']],
    ['post /v1/refunds', 'POST', ['v1', 'refunds']],
    ['Delete /v1/customers/*', 'DELETE', ['v1', 'customers', '*']],
    ['GET /', 'GET', []],
    ['/v1/*/*', null, ['v1', '*', '*']],
    ['/v1/things:batchGet', null, ['v1', 'things:batchGet']],
  ])('%j', (source, method, segments) => {
    expect(parseEndpointPattern(source)).toEqual({ method, segments, source });
  });

  it.each([
    '',
    'v1/refunds',
    'GET',
    'GET ',
    'GET  /v1/refunds',
    ' /v1/refunds',
    '/v1/refunds ',
    'GET\t/v1/refunds',
    'FETCH /v1/refunds',
    'CONNECT /v1/refunds',
    'TRACE /v1/refunds',
    'GET/v1/refunds',
    'G3T /v1/refunds',
    'GET,POST /v1/refunds',
    '/v1/refunds?limit=1',
    '/v1//refunds',
    '/v1/refunds/',
    '//v1',
    '/v1/./refunds',
    '/v1/../refunds',
    '/v1/%2e%2e',
    '/v1/cus%5F1',
    '/v1/foo*',
    '/v1/*foo',
    '/v1/**',
    '/v1/*/**',
    '/v1/ref unds',
    '/v1/refunds\n',
    '/v1/é',
    '/v1/x#y',
    '/v1\\x',
    '/v1/x;y',
    '/' + 'a'.repeat(512),
    'http://api.stripe.com/v1/refunds',
    '*',
  ])('rejects %j', (source) => {
    expect(parseEndpointPattern(source)).toHaveProperty('error');
  });
});

describe('compileEndpoints', () => {
  it('reports the index of the first bad pattern', () => {
    expect(compileEndpoints(['/v1/refunds', 'GET /v1/x/', '/ok'])).toMatchObject({ index: 1 });
  });
  it('accepts up to 100 patterns and refuses more', () => {
    const many = Array.from({ length: 101 }, (_, i) => `/v1/p${i}`);
    expect(compileEndpoints(many.slice(0, 100))).toHaveLength(100);
    expect(compileEndpoints(many)).toMatchObject({ index: 100 });
  });
  it('an empty list allows nothing', () => {
    expect(compileEndpoints([])).toEqual([]);
    expect(isEndpointAllowed([], 'GET', ['v1'])).toBe(false);
  });
});

describe('isEndpointAllowed', () => {
  const pi = compile('/v1/payment_intents/*');

  it('"*" matches exactly one segment', () => {
    expect(allowed(pi, 'GET', '/v1/payment_intents/pi_1')).toBe(true);
    expect(allowed(pi, 'POST', '/v1/payment_intents/pi_1?expand[]=customer')).toBe(true);
    expect(allowed(pi, 'GET', '/v1/payment_intents')).toBe(false);
    expect(allowed(pi, 'GET', '/v1/payment_intents/')).toBe(false);
    expect(allowed(pi, 'GET', '/v1/payment_intents/pi_1/confirm')).toBe(false);
    expect(allowed(pi, 'GET', '/v1/payment_intents/pi_1%2Fconfirm')).toBe(false);
    expect(allowed(pi, 'GET', '/v1/payment_intents/pi_1/../../refunds')).toBe(false);
    expect(allowed(pi, 'GET', '/v1/payment_intents/..')).toBe(false);
    expect(allowed(pi, 'GET', '/v1/payment_intents/%2e%2e')).toBe(false);
  });

  it('method-scoped patterns match that method only; GET does not imply HEAD', () => {
    const p = compile('POST /v1/refunds', 'get /v1/balance');
    expect(allowed(p, 'POST', '/v1/refunds')).toBe(true);
    for (const m of ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'post']) {
      expect(allowed(p, m, '/v1/refunds')).toBe(false);
    }
    expect(allowed(p, 'GET', '/v1/balance')).toBe(true);
    expect(allowed(p, 'HEAD', '/v1/balance')).toBe(false);
  });

  it('a pattern without a method allows any method', () => {
    const p = compile('/v1/refunds');
    for (const m of ['GET', 'HEAD', 'POST', 'DELETE']) expect(allowed(p, m, '/v1/refunds')).toBe(true);
  });

  it('literals compare case-sensitively against decoded segments', () => {
    const p = compile('/v1/customers/cus_1');
    expect(allowed(p, 'GET', '/v1/customers/cus%5F1')).toBe(true);
    expect(allowed(p, 'GET', '/v1/Customers/cus_1')).toBe(false);
    expect(allowed(p, 'GET', '/V1/customers/cus_1')).toBe(false);
  });

  it('root pattern matches only the root', () => {
    const p = compile('/');
    expect(allowed(p, 'GET', '/')).toBe(true);
    expect(allowed(p, 'GET', '/v1')).toBe(false);
  });

  it('refuses segments that could not come from normalizePath', () => {
    const p = compile('/v1/*/*');
    expect(isEndpointAllowed(p, 'GET', ['v1', 'a', 'b'])).toBe(true);
    for (const bad of ['', '.', '..', 'a/b']) expect(isEndpointAllowed(p, 'GET', ['v1', bad, 'b'])).toBe(false);
  });
});

const METHOD_NAMES = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

describe('isEndpointAllowed properties', () => {
  const patternArb = fc.record({
    method: fc.option(fc.constantFrom(...METHOD_NAMES), { nil: null }),
    segments: fc.array(fc.constantFrom('v1', 'a', 'b', 'refunds', '*'), { maxLength: 5 }),
  });
  const pathArb = fc.array(fc.constantFrom('v1', 'a', 'b', 'refunds', 'A', '*', 'x:y'), { maxLength: 5 });

  it('allows exactly when method, segment count and every literal segment match', () => {
    fc.assert(
      fc.property(patternArb, fc.constantFrom(...METHOD_NAMES), pathArb, (pat, method, segments) => {
        const source = (pat.method ? pat.method + ' ' : '') + '/' + pat.segments.join('/');
        const parsed = parseEndpointPattern(source);
        if ('error' in parsed) throw new Error(parsed.error);
        expect(parsed.segments).toEqual(pat.segments);
        const expected =
          (pat.method === null || pat.method === method) &&
          pat.segments.length === segments.length &&
          pat.segments.every((p, i) => p === '*' || p === segments[i]);
        expect(isEndpointAllowed([parsed], method, segments)).toBe(expected);
      }),
      { numRuns: 3000 },
    );
  });

  it('nothing normalized from a hostile target escapes "/v1/payment_intents/*"', () => {
    const pi = compile('/v1/payment_intents/*');
    const fragment = fc.constantFrom(
      '/', '.', '..', '%2e', '%2E', '%2f', '%2F', '%25', '%5c', '\\', ';', '?', '#', '%', '*', '%00', '%20',
      'v1', 'payment_intents', 'pi_1', 'confirm', 'refunds', '%C0%AE', '%E2%80%AE', 'é', '\u0000', '+', ':',
    );
    const raw = fc.oneof(
      fc.array(fragment, { maxLength: 12 }).map((p) => '/v1/payment_intents/' + p.join('')),
      fc.array(fragment, { maxLength: 20 }).map((p) => p.join('')),
      fc.string({ unit: 'binary' }).map((s) => '/v1/payment_intents/' + s),
    );
    fc.assert(
      fc.property(raw, fc.constantFrom(...METHOD_NAMES), (target, method) => {
        const n = normalizePath(target);
        if (!n.ok || !isEndpointAllowed(pi, method, n.segments)) return;
        expect(n.segments).toHaveLength(3);
        expect(n.segments.slice(0, 2)).toEqual(['v1', 'payment_intents']);
        expect(n.segments[2]).not.toBe('');
        expect(n.path.startsWith('/v1/payment_intents/')).toBe(true);
        expect(n.path.slice('/v1/payment_intents/'.length)).not.toContain('/');
      }),
      { numRuns: 5000 },
    );
  });
});

describe('intersectEndpoints and restrictMethods', () => {
  const segment = fc.constantFrom('v1', 'refunds', 'payment_intents', 'pi_1', '*');
  const pattern = fc
    .tuple(fc.option(fc.constantFrom('GET', 'POST', 'DELETE'), { nil: null }), fc.array(segment, { minLength: 1, maxLength: 3 }))
    .map(([m, segs]) => `${m ? `${m} ` : ''}/${segs.join('/')}`);
  const patterns = fc.array(pattern, { minLength: 1, maxLength: 5 }).map((p) => compile(...p));
  const request = fc.tuple(fc.constantFrom('GET', 'POST', 'DELETE'), fc.array(fc.constantFrom('v1', 'refunds', 'payment_intents', 'pi_1', 'x'), { minLength: 1, maxLength: 3 }));

  it('allows exactly the requests both lists allow', () => {
    fc.assert(
      fc.property(patterns, patterns, fc.array(request, { minLength: 20, maxLength: 20 }), (a, b, reqs) => {
        const both = intersectEndpoints(a, b);
        for (const [m, segs] of reqs) {
          expect(isEndpointAllowed(both, m, segs)).toBe(isEndpointAllowed(a, m, segs) && isEndpointAllowed(b, m, segs));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('narrows patterns to methods exactly', () => {
    fc.assert(
      fc.property(patterns, fc.uniqueArray(fc.constantFrom('GET', 'POST', 'DELETE'), { minLength: 1 }), fc.array(request, { minLength: 20, maxLength: 20 }), (a, methods, reqs) => {
        const narrowed = restrictMethods(a, methods);
        for (const [m, segs] of reqs) expect(isEndpointAllowed(narrowed, m, segs)).toBe(methods.includes(m) && isEndpointAllowed(a, m, segs));
      }),
      { numRuns: 300 },
    );
  });

  it('writes the intersection as plain patterns', () => {
    expect(intersectEndpoints(compile('/v1/payment_intents/*', 'POST /v1/refunds'), compile('GET /v1/*/pi_1', '/v1/refunds')).map((p) => p.source)).toEqual([
      'GET /v1/payment_intents/pi_1',
      'POST /v1/refunds',
    ]);
    expect(intersectEndpoints(compile('/v1/*'), compile('/v1/refunds', '/v1/*')).map((p) => p.source)).toEqual(['/v1/*']);
    expect(intersectEndpoints(compile('GET /v1/x'), compile('POST /v1/x'))).toEqual([]);
  });
});
