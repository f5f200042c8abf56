// The control API's request targets, checked before anything else reads them. The router decodes
// a path before it matches it, so `/%761/keys` and `/v1/keys` reach one handler, and a check
// made on the raw text would see two paths where the router sees one. Spellings that serve only
// to look different are refused: only origin-form, no dot or empty segments, and percent-escapes
// only of the reserved characters an id may hold (`:` and `@` in budget ids), in uppercase hex.

const PCHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%]*$/;
/** Reserved characters that a path segment may carry escaped (encodeURIComponent escapes these). */
const ESCAPABLE = new Set(":@!$&'()*+,;=".split(''));

/** Why a request target is not the one canonical spelling of a control-API path, or null when it is. */
export function targetProblem(url: string): string | null {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (!path.startsWith('/')) return 'send the path alone (origin-form), not an absolute URL';
  const segments = path.slice(1).split('/');
  for (const [i, seg] of segments.entries()) {
    if (seg === '' && i < segments.length - 1) return 'empty path segments are not allowed';
    if (seg === '.' || seg === '..') return 'dot segments are not allowed';
    if (!PCHAR.test(seg)) return 'the path holds a character that must not appear in it';
    for (let p = seg.indexOf('%'); p >= 0; p = seg.indexOf('%', p + 1)) {
      const hex = seg.slice(p + 1, p + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) return 'percent-escapes must be two uppercase hex digits';
      if (!ESCAPABLE.has(String.fromCharCode(parseInt(hex, 16)))) return `"%${hex}" escapes a character that is sent as it is`;
    }
  }
  return null;
}
