import type { IncomingMessage } from 'node:http';
import { jsonObject, mediaType } from '../vendors/vendor.js';

// Request features that make a call ambiguous or leak a credential. Each is refused before the
// key is even looked up, so a hostile request costs no store work. Parameters are read the way
// the lenient servers behind a vendor read them: every encoding, malformed neighbours tolerated.

export type Screened = { code: 'invalid_key' | 'credential_in_url' | 'invalid_request'; message: string } | null;

const TOKEN_IN_URL = /vk_(test|live)_/i;
/** `_method` as a parameter name, alone or as the head of a bracketed name (`_method[]`). */
const METHOD_KEY = /^_method(\[|$)/i;
/** A Host value: a reg-name or IP literal, then an optional port (RFC 3986 §3.2.2). */
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?$/;
/** Decoding rounds tried on one parameter: more than any real client encodes. */
const MAX_DECODES = 4;

export const METHOD_OVERRIDE = '`_method` overrides are not accepted.';

/** Counts a header in the raw list: Node keeps only the first of a duplicated Authorization. */
function count(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) n++;
  return n;
}

/** One round of form-urlencoded decoding that leaves malformed escapes (`%zz`) as they are. */
function decodeOnce(s: string): string {
  return s.replace(/\+/g, ' ').replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** The text and each of its decodings, up to a fixed point (double encoding included). */
function decodings(s: string): string[] {
  const out = [s];
  for (let i = 0; i < MAX_DECODES; i++) {
    const next = decodeOnce(out[out.length - 1]!);
    if (next === out[out.length - 1]) break;
    out.push(next);
  }
  return out;
}

/** `name=value` pairs split on `&` and `;` (some frameworks split on both), each kept raw. */
function params(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const part of text.split(/[&;]/)) {
    if (!part) continue;
    const eq = part.indexOf('=');
    out.push(eq < 0 ? [part, ''] : [part.slice(0, eq), part.slice(eq + 1)]);
  }
  return out;
}

function namesMethod(text: string): boolean {
  for (const [name] of params(text)) if (decodings(name).some((d) => METHOD_KEY.test(d.trim()))) return true;
  return false;
}

/** A vault key anywhere in the query: in a name or value, in any encoding. */
function carriesToken(query: string): boolean {
  if (TOKEN_IN_URL.test(query)) return true;
  for (const [name, value] of params(query)) {
    if (decodings(name).some((d) => TOKEN_IN_URL.test(d)) || decodings(value).some((d) => TOKEN_IN_URL.test(d))) return true;
  }
  return false;
}

function hostProblem(req: IncomingMessage): string | null {
  const hosts: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'host') hosts.push(req.rawHeaders[i + 1]!);
  if (hosts.length > 1) return 'Send exactly one Host header.';
  if (hosts.length === 1 && !HOST.test(hosts[0]!)) return 'The Host header is not a valid host.';
  return null;
}

export function screenRequest(req: IncomingMessage, query: string): Screened {
  if (count(req.rawHeaders, 'authorization') > 1) {
    return { code: 'invalid_key', message: 'Send exactly one Authorization header.' };
  }
  const host = hostProblem(req);
  if (host) return { code: 'invalid_request', message: host };
  // Node joins a repeated Idempotency-Key into one value the vendor would read as a new key.
  if (count(req.rawHeaders, 'idempotency-key') > 1) return { code: 'invalid_request', message: 'Send Idempotency-Key once.' };
  if (query) {
    if (carriesToken(query)) {
      return {
        code: 'credential_in_url',
        message: 'A vault key does not belong in a URL (URLs end up in logs); send it in the Authorization header. Nothing was forwarded.',
      };
    }
    // Frameworks that honour `_method` would run another method than the one authorized.
    if (namesMethod(query)) return { code: 'invalid_request', message: METHOD_OVERRIDE };
  }
  return null;
}

/**
 * A body naming `_method`, which some frameworks honour as the real method: a form field (in
 * any encoding), a multipart field, or a top-level JSON key.
 */
export function bodyOverridesMethod(body: Buffer, contentType: string | undefined): boolean {
  if (!body.length) return false;
  const type = mediaType(contentType);
  if (type === 'application/x-www-form-urlencoded') return namesMethod(body.toString('latin1'));
  if (type === 'multipart/form-data') return /content-disposition:[^\r\n]*\bname\s*=\s*"?_method["\[;\s\r]/i.test(body.toString('latin1'));
  // Only bodies that mention `method` at all (or hide it in an escape) are parsed.
  if (!/method|\\u/i.test(body.toString('latin1'))) return false;
  const json = jsonObject(body, contentType);
  return json !== null && Object.keys(json).some((k) => METHOD_KEY.test(k.trim()));
}
