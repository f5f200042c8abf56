import { createHmac, randomBytes } from 'node:crypto';

// A bare minter for the gateway's tests: signs whatever blocks it is given, including ones the
// SDKs would refuse to write (widening caveats, foreign ids), so the gateway's checks can be hit.

const SECRET_RE = /^klm_(test|live)_([0-9A-Za-z]{24})_([0-9]+)_([A-Za-z0-9_-]{43})$/;

export interface ParsedSecret {
  mode: 'test' | 'live';
  mintingKeyId: string;
  version: number;
  key: Buffer;
}

export function parseSecret(secret: string): ParsedSecret {
  const m = SECRET_RE.exec(secret);
  if (!m) throw new Error(`not a minting secret: ${secret.slice(0, 12)}…`);
  return { mode: m[1] as 'test' | 'live', mintingKeyId: `mk_${m[2]}`, version: Number(m[3]), key: Buffer.from(m[4]!, 'base64url') };
}

const b64 = (block: object | string) => Buffer.from(typeof block === 'string' ? block : JSON.stringify(block)).toString('base64url');
const mac = (key: Buffer, text: string) => createHmac('sha256', key).update(text).digest();

/** A random id of the minting key, as the SDKs make them. */
export function mintedId(mintingKeyId: string): string {
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  let out = '';
  for (const b of randomBytes(48)) if (b < 248 && out.length < 24) out += alphabet[b % 62];
  return `mkey_${mintingKeyId.slice(3)}_${out}`;
}

/** Signs block 0 (and any further blocks) into a token; `mode` overrides the prefix. */
export function signChain(key: Buffer, mode: string, blocks: Array<object | string>): string {
  const segments = blocks.map(b64);
  let sig = mac(key, segments[0]!);
  for (const s of segments.slice(1)) sig = mac(sig, s);
  return `vk_${mode}_m1.${segments.join('.')}.${sig.toString('base64url')}`;
}

/** Appends a block to a token, exactly as any holder can. */
export function narrowToken(token: string, block: object | string): string {
  const cut = token.lastIndexOf('.');
  const segment = b64(block);
  const sig = mac(Buffer.from(token.slice(cut + 1), 'base64url'), segment);
  return `${token.slice(0, cut)}.${segment}.${sig.toString('base64url')}`;
}

export interface RootCaveats {
  vendor?: string;
  endpoints?: string[];
  methods?: string[];
  cap?: number | null;
  iat?: number;
  exp?: number;
  ttl?: number;
  label?: string;
  metadata?: Record<string, string>;
  budgets?: string[];
  mode?: string;
  id?: string;
  [extra: string]: unknown;
}

/** Mints a key from a minting secret with the given caveats (defaults: Stripe payment intents, 5 minutes). */
export function mint(secret: string, c: RootCaveats = {}): { token: string; id: string } {
  const s = parseSecret(secret);
  const iat = c.iat ?? Math.floor(Date.now() / 1000);
  const { ttl, ...rest } = c;
  const block: Record<string, unknown> = {
    mk: s.mintingKeyId,
    kv: s.version,
    id: c.id ?? mintedId(s.mintingKeyId),
    mode: c.mode ?? s.mode,
    vendor: 'stripe',
    endpoints: ['/v1/payment_intents', '/v1/payment_intents/*'],
    ...rest,
    iat,
    exp: c.exp ?? iat + (ttl ?? 300),
  };
  if (block.cap === undefined || block.cap === null) delete block.cap;
  return { token: signChain(s.key, String(block.mode), [block]), id: block.id as string };
}

/** Narrows a token with a new id and the given caveats. */
export function narrow(token: string, mintingKeyId: string, caveats: Record<string, unknown> = {}): { token: string; id: string } {
  const id = (caveats.id as string | undefined) ?? mintedId(mintingKeyId);
  return { token: narrowToken(token, { id, ...caveats }), id };
}
