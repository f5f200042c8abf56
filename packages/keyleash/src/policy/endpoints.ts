// allowed_endpoints patterns: "[METHOD ]/literal/*/literal". Matching is done on the
// decoded segments from normalizePath, so a pattern is written the way the path reads,
// with no percent-encoding at all.

export interface EndpointPattern {
  /** Uppercase method, or null for any method. */
  method: string | null;
  /** Literal segments, or '*' for exactly one non-empty segment. */
  segments: string[];
  source: string;
}

export const MAX_PATTERNS = 100;
export const MAX_PATTERN_LENGTH = 512;
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export function parseEndpointPattern(source: string): EndpointPattern | { error: string } {
  if (typeof source !== 'string' || source === '') return { error: 'pattern must be a non-empty string' };
  if (source.length > MAX_PATTERN_LENGTH) return { error: `pattern longer than ${MAX_PATTERN_LENGTH} characters` };

  let method: string | null = null;
  let path = source;
  if (!source.startsWith('/')) {
    const space = source.indexOf(' ');
    const word = space === -1 ? source : source.slice(0, space);
    if (!/^[A-Za-z]+$/.test(word) || !METHODS.has(word.toUpperCase())) {
      return { error: `expected "/path" or "METHOD /path" with METHOD one of ${[...METHODS].join(', ')}` };
    }
    method = word.toUpperCase();
    path = space === -1 ? '' : source.slice(space + 1);
  }

  if (!path.startsWith('/')) return { error: 'path must start with "/" (one space after the method)' };
  if (/[^\x21-\x7e]/.test(path)) return { error: 'path contains whitespace, control or non-ASCII characters' };
  if (path.includes('?')) return { error: 'patterns cannot contain a query string' };
  if (path.includes('%')) return { error: 'write the path decoded, without "%" escapes' };
  // Requests containing these never normalize successfully, so such a pattern is a mistake.
  if (/[#\\;]/.test(path)) return { error: 'path contains "#", "\\" or ";"' };

  const segments = path === '/' ? [] : path.slice(1).split('/');
  for (const seg of segments) {
    if (seg === '') return { error: 'empty segment (double or trailing "/")' };
    if (seg === '.' || seg === '..') return { error: 'dot segment' };
    if (seg !== '*' && seg.includes('*')) return { error: `"*" must be a whole segment (got "${seg}")` };
  }
  return { method, segments, source };
}

export function compileEndpoints(patterns: string[]): EndpointPattern[] | { error: string; index: number } {
  if (!Array.isArray(patterns)) return { error: 'allowed_endpoints must be a list', index: -1 };
  if (patterns.length > MAX_PATTERNS) return { error: `more than ${MAX_PATTERNS} patterns`, index: MAX_PATTERNS };
  const compiled: EndpointPattern[] = [];
  for (const [index, source] of patterns.entries()) {
    const parsed = parseEndpointPattern(source);
    if ('error' in parsed) return { error: parsed.error, index };
    compiled.push(parsed);
  }
  return compiled;
}

export function isEndpointAllowed(
  patterns: readonly EndpointPattern[],
  method: string,
  segments: readonly string[],
): boolean {
  // Callers should pass normalizePath output; refuse anything that could not come from it
  // so a '*' can never swallow a separator or a dot segment.
  if (segments.some((s) => s === '' || s === '.' || s === '..' || s.includes('/'))) return false;
  return patterns.some(
    (p) =>
      (p.method === null || p.method === method) &&
      p.segments.length === segments.length &&
      p.segments.every((ps, i) => ps === '*' || ps === segments[i]),
  );
}

export const ENDPOINT_METHODS: ReadonlySet<string> = METHODS;

/** The pattern as written: `"METHOD /a/*"`, or `"/a/*"` for any method. */
export function formatPattern(p: Pick<EndpointPattern, 'method' | 'segments'>): string {
  const path = '/' + p.segments.join('/');
  return p.method === null ? path : `${p.method} ${path}`;
}

/**
 * The pattern matching exactly the requests both `a` and `b` match, or null when none does.
 * Exact because `*` stands for one whole segment: the meet of `*` and a literal is the literal.
 */
export function meetPatterns(a: EndpointPattern, b: EndpointPattern): EndpointPattern | null {
  if (a.segments.length !== b.segments.length) return null;
  if (a.method !== null && b.method !== null && a.method !== b.method) return null;
  const segments: string[] = [];
  for (let i = 0; i < a.segments.length; i++) {
    const x = a.segments[i]!;
    const y = b.segments[i]!;
    if (x === '*') segments.push(y);
    else if (y === '*' || x === y) segments.push(x);
    else return null;
  }
  const method = a.method ?? b.method;
  return { method, segments, source: formatPattern({ method, segments }) };
}

/** True when every request `inner` matches is also matched by `outer`. */
export function patternCovers(outer: EndpointPattern, inner: EndpointPattern): boolean {
  if (outer.method !== null && outer.method !== inner.method) return false;
  if (outer.segments.length !== inner.segments.length) return false;
  return outer.segments.every((s, i) => s === '*' || s === inner.segments[i]);
}

/** Drops duplicates and patterns another one already covers, keeping the first of equals. */
function minimal(patterns: EndpointPattern[]): EndpointPattern[] {
  return patterns.filter(
    (p, i) => !patterns.some((q, j) => j !== i && patternCovers(q, p) && (!patternCovers(p, q) || j < i)),
  );
}

/** Requests allowed by some pattern of `a` and by some pattern of `b`, as one pattern list. */
export function intersectEndpoints(a: readonly EndpointPattern[], b: readonly EndpointPattern[]): EndpointPattern[] {
  const out: EndpointPattern[] = [];
  for (const p of a) {
    for (const q of b) {
      const m = meetPatterns(p, q);
      if (m) out.push(m);
    }
  }
  return minimal(out);
}

/** The patterns narrowed to the given methods (uppercase): "/a" with [GET, POST] → "GET /a", "POST /a". */
export function restrictMethods(patterns: readonly EndpointPattern[], methods: readonly string[]): EndpointPattern[] {
  const out: EndpointPattern[] = [];
  for (const p of patterns) {
    if (p.method !== null) {
      if (methods.includes(p.method)) out.push(p);
      continue;
    }
    for (const method of methods) out.push({ method, segments: p.segments, source: formatPattern({ method, segments: p.segments }) });
  }
  return minimal(out);
}
