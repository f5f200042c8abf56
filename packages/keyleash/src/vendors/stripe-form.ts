import qs from 'qs';

// Stripe's deepest real params are ~6 levels; a bound keeps hostile bodies from blowing the stack.
const MAX_DEPTH = 20;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function checkString(s: string, path: string): string | null {
  return LONE_SURROGATE.test(s) ? `${path}: string is not valid UTF-16` : null;
}

/** Returns a reason if `v` cannot be encoded faithfully, else null. */
function check(v: unknown, path: string, depth: number): string | null {
  if (depth > MAX_DEPTH) return `${path}: nested too deeply`;
  switch (typeof v) {
    case 'boolean':
      return null;
    case 'string':
      return checkString(v, path);
    case 'number':
      // Only numbers whose decimal text is exact: no 1e-7, no 1e+21, no rounded huge integers.
      if (!Number.isFinite(v) || String(v).includes('e') || (Number.isInteger(v) && !Number.isSafeInteger(v))) {
        return `${path}: number ${String(v)} cannot be sent exactly; send it as a string`;
      }
      return null;
    case 'object': {
      if (v === null) return null;
      if (!Array.isArray(v) && !isPlainObject(v)) return `${path}: unsupported object`;
      for (const [k, x] of Object.entries(v)) {
        const sub = path ? `${path}[${k}]` : k;
        const bad = checkString(k, sub) ?? check(x, sub, depth + 1);
        if (bad) return bad;
      }
      return null;
    }
    default:
      return `${path}: unsupported ${typeof v} value`;
  }
}

export function jsonToStripeForm(body: unknown): { ok: true; form: string } | { ok: false; reason: string } {
  if (!isPlainObject(body)) return { ok: false, reason: 'request body must be a JSON object' };
  const bad = check(body, '', 0);
  if (bad) return { ok: false, reason: bad };
  // Same encoding stripe-node has used: qs indices format, brackets left readable.
  const form = qs
    .stringify(body, { arrayFormat: 'indices' })
    .replace(/%5B/g, '[')
    .replace(/%5D/g, ']');
  return { ok: true, form };
}
