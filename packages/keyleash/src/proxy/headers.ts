import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { EchoPatterns } from './leaks.js';

// Hop-by-hop headers (RFC 9110 §7.6.1) and the caller's own credentials never cross the proxy.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

const NEVER_FORWARDED = new Set([
  ...HOP_BY_HOP,
  'host',
  'authorization',
  'cookie',
  'content-length',
  'content-type',
  'expect',
  // The caller may not rewrite the method behind the allowlist's back.
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-method',
  // Some servers route on these instead of the request line, behind the allowlist's back.
  'x-original-url',
  'x-rewrite-url',
  // The vendor has no business with our callers' network details.
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-real-ip',
]);

function connectionListed(value: string | string[] | undefined): Set<string> {
  const out = new Set<string>();
  for (const v of Array.isArray(value) ? value : value ? [value] : []) {
    for (const name of v.split(',')) out.add(name.trim().toLowerCase());
  }
  return out;
}

function forwarded(name: string, allow: readonly string[]): boolean {
  return allow.some((a) => (a.endsWith('*') ? name.startsWith(a.slice(0, -1)) : name === a));
}

/**
 * A header of the request that `refused` names, compared in lower case with `_` read as `-`
 * (some servers do), or null. Raw headers are read, so a duplicate or an empty value counts too.
 */
export function refusedHeader(rawHeaders: readonly string[], refused: readonly string[]): string | null {
  if (refused.length === 0) return null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase().replace(/_/g, '-');
    if (refused.includes(name)) return name;
  }
  return null;
}

/**
 * The headers sent upstream: only the caller's headers on the vendor's `forward` allowlist
 * (never credentials, hop-by-hop or `drop`, e.g. a vendor API-key header that carried the vault
 * token), plus the real credential. Answers are asked for uncompressed, because meters and the
 * secret-echo check read them.
 */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  auth: Record<string, string>,
  contentType: string | undefined,
  bodyLength: number,
  requestId: string,
  drop: readonly string[] = [],
  forward: readonly string[] = [],
): Record<string, string | string[]> {
  const listed = connectionListed(incoming.connection);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    // Some servers read `x_forwarded_for` as `x-forwarded-for`; no legitimate vendor header has `_`.
    if (value === undefined || NEVER_FORWARDED.has(name) || listed.has(name) || name.includes('_')) continue;
    if (!forwarded(name, forward)) continue;
    out[name] = value;
  }
  for (const name of drop) delete out[name];
  out['accept-encoding'] = 'identity';
  Object.assign(out, auth);
  if (contentType !== undefined) out['content-type'] = contentType;
  if (bodyLength > 0 || contentType !== undefined) out['content-length'] = String(bodyLength);
  out['x-keyleash-request-id'] = requestId;
  return out;
}

/**
 * The vendor's answer headers for the caller, less hop-by-hop ones, with every echo of the real
 * secret masked (`echoes`): a debug header, a WWW-Authenticate challenge or a redirect's
 * Location may carry it. A header whose name carries one is left out.
 */
export function downstreamResponseHeaders(
  upstream: Record<string, string | string[] | undefined>,
  requestId: string,
  echoes?: Pick<EchoPatterns, 'scrubString' | 'hasEcho'>,
): OutgoingHttpHeaders {
  const listed = connectionListed(upstream.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue;
    if (!echoes) out[name] = value;
    else if (!echoes.hasEcho(name)) out[name] = Array.isArray(value) ? value.map((v) => echoes.scrubString(v)) : echoes.scrubString(value);
  }
  out['x-keyleash-request-id'] = requestId;
  return out;
}
