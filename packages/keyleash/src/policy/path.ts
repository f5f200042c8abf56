// Turns a raw request target into decoded segments plus one canonical encoding.
// The policy check and the upstream request both use this result, so whatever the
// proxy authorises is exactly what it forwards. Anything that different servers
// could read differently (dot segments, encoded slashes, double encoding, ...) is refused.

export type NormalizedPath =
  | { ok: true; segments: string[]; path: string; query: string }
  | { ok: false; reason: string };

export const MAX_PATH_LENGTH = 2048;
export const MAX_SEGMENTS = 64;

// Sub-delims, ':' and '@' are legal in a segment and some APIs need them raw
// (e.g. "/v1/things:batchGet"). '+' stays encoded because some servers read it as a space.
const SAFE_ESCAPES: Record<string, string> = {
  '%24': '$', '%26': '&', '%2C': ',', '%3D': '=', '%3A': ':', '%40': '@',
};

export function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/%(?:24|26|2C|3D|3A|40)/g, (m) => SAFE_ESCAPES[m]!);
}

const fail = (reason: string): NormalizedPath => ({ ok: false, reason });

export function normalizePath(rawTarget: string): NormalizedPath {
  if (typeof rawTarget !== 'string' || !rawTarget.startsWith('/') || rawTarget.startsWith('//')) {
    return fail('not an origin-form path');
  }
  if (rawTarget.includes('#')) return fail('fragment');

  const q = rawTarget.indexOf('?');
  const rawPath = q === -1 ? rawTarget : rawTarget.slice(0, q);
  const query = q === -1 ? '' : rawTarget.slice(q + 1);

  if (/[^\x21-\x7e]/.test(query)) return fail('invalid character in query');
  if (rawPath.length > MAX_PATH_LENGTH) return fail('path too long');
  if (/[^\x21-\x7e]/.test(rawPath)) return fail('control, whitespace or non-ASCII character');
  if (rawPath.includes('\\') || /%5c/i.test(rawPath)) return fail('backslash');
  if (/%2f/i.test(rawPath)) return fail('encoded slash');
  if (rawPath.includes(';')) return fail('matrix parameter');

  if (rawPath === '/') return { ok: true, segments: [], path: '/', query };
  const rawSegments = rawPath.slice(1).split('/');
  if (rawSegments.length > MAX_SEGMENTS) return fail('too many segments');

  const segments: string[] = [];
  for (const raw of rawSegments) {
    if (raw === '') return fail('empty segment');
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return fail('malformed percent-encoding');
    }
    if (/[\x00-\x1f\x7f]/.test(seg)) return fail('control character');
    if (/[^\x20-\x7e]/.test(seg)) return fail('non-ASCII character');
    if (seg.includes(' ')) return fail('whitespace');
    if (seg.includes('%')) return fail('double encoding');
    // '/', '\' and ';' cannot survive the raw checks above; re-checked after decoding
    // in case those checks ever change. '?' and '#' would cut the path short for any
    // hop that decodes before re-parsing.
    if (/[/\\;?#]/.test(seg)) return fail('reserved character in segment');
    if (seg === '.' || seg === '..') return fail('dot segment');
    segments.push(seg);
  }

  const path = '/' + segments.map(encodeSegment).join('/');
  // Re-encoding can grow the path ('[' -> '%5B'); keep the canonical form within limits
  // so it normalizes to itself.
  if (path.length > MAX_PATH_LENGTH) return fail('path too long');
  return { ok: true, segments, path, query };
}
