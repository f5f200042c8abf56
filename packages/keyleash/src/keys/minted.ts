import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import {
  ENDPOINT_METHODS,
  formatPattern,
  intersectEndpoints,
  MAX_PATTERNS,
  parseEndpointPattern,
  restrictMethods,
  type EndpointPattern,
} from '../policy/endpoints.js';
import { BUDGET_ID, LABEL_SEPARATOR, labelProblem, metadataProblem } from '../policy/fields.js';
import type { KeyRecord } from '../store/store.js';
import type { Mode } from './token.js';

// Minted vault keys (docs/minting.md): `vk_<mode>_m1.<block 0>.<block 1>…<block n>.<signature>`.
// Each block is base64url JSON naming one key and its caveats. The signature is an HMAC chain in
// the manner of macaroons: sig_0 = HMAC-SHA256(minting secret, text of block 0), and
// sig_i = HMAC-SHA256(sig_{i-1}, text of block i). Anyone holding a token can append a block
// (narrowing it) but cannot take one away, because that needs the earlier signature. The HMACs
// cover each block's base64url text, not its decoded bytes, so no two strings verify as one
// token (lenient base64 decoders would otherwise let a holder re-spell an ancestor's block).

export const MINTED_ID_RE = /^mkey_([0-9A-Za-z]{24})_[0-9A-Za-z]{24}$/;
export const MINTING_KEY_ID_RE = /^mk_[0-9A-Za-z]{24}$/;
/** Longest minted token accepted; far below the proxy's 32 KiB header limit. */
export const MAX_MINTED_TOKEN_CHARS = 8192;
/** Blocks in one chain: the minted key and up to 15 narrowings. */
export const MAX_CHAIN_BLOCKS = 16;
/** How far in the future a minter's clock may put `iat`. */
export const CLOCK_SKEW_SECONDS = 60;

const HEAD_LEN = 'vk_test_m1.'.length;
const SEGMENT_RE = /^[A-Za-z0-9_-]+$/;
const SIG_CHARS = 43;

export function isMintedToken(token: string): boolean {
  return token.startsWith('vk_test_m1.') || token.startsWith('vk_live_m1.');
}

interface Split {
  mode: Mode;
  head: string;
  segments: string[];
  sig: string;
}

function split(token: string): Split | null {
  if (token.length > MAX_MINTED_TOKEN_CHARS || !isMintedToken(token)) return null;
  const parts = token.slice(HEAD_LEN).split('.');
  if (parts.length < 2 || parts.length > MAX_CHAIN_BLOCKS + 1) return null;
  for (const p of parts) if (!SEGMENT_RE.test(p)) return null;
  const sig = parts.pop()!;
  if (sig.length !== SIG_CHARS) return null;
  return { mode: token.startsWith('vk_test_') ? 'test' : 'live', head: token.slice(0, HEAD_LEN), segments: parts, sig };
}

function decodeBlock(segment: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function mintingKeyOf(block0: Record<string, unknown> | null): { mintingKeyId: string; version: number } | null {
  if (!block0 || typeof block0.mk !== 'string' || !MINTING_KEY_ID_RE.test(block0.mk)) return null;
  if (!Number.isSafeInteger(block0.kv) || (block0.kv as number) < 1) return null;
  return { mintingKeyId: block0.mk, version: block0.kv as number };
}

/** The minting key and secret version a token names, read before anything is verified. */
export function peekMintingKey(token: string): { mintingKeyId: string; version: number } | null {
  const s = split(token);
  return s && mintingKeyOf(decodeBlock(s.segments[0]!));
}

/** What a minting key allows, as the verifier needs it. */
export interface MintingPolicy {
  id: string;
  tenantId: string;
  mode: Mode;
  vendors: readonly string[];
  endpoints: readonly EndpointPattern[];
  /** null: no maximum. */
  maxCapMicros: number | null;
  maxTtlSeconds: number;
  /** Budgets every minted key counts against, whatever its caveats say. */
  budgetIds: readonly string[];
  /** Further budgets a minted key may name: exact ids, or a prefix ending in `*` (`user:*`). */
  allowedBudgets: readonly string[];
  /** Secret versions still verifying, with when each stops (null: no end set). */
  versions: ReadonlyArray<{ version: number; retiresAt: number | null }>;
}

export type MintedVerification =
  /** Every key of the chain, the minted key first and the token's own key last. */
  | { ok: true; keys: KeyRecord[] }
  | { ok: false; code: 'invalid_key' | 'key_expired'; reason: string };

function fail(reason: string): MintedVerification {
  return { ok: false, code: 'invalid_key', reason };
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

/** A caveat value checked by hand: the hot path imports no validation library. */
type Check<T> = (v: unknown) => T | undefined;

const str = (max: number): Check<string> => (v) => (typeof v === 'string' && v.length <= max ? v : undefined);
const labelText: Check<string> = (v) => (labelProblem(v) === null ? (v as string) : undefined);
const int: Check<number> = (v) => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : undefined);
const patterns: Check<EndpointPattern[]> = (v) => {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_PATTERNS) return undefined;
  const out: EndpointPattern[] = [];
  for (const s of v) {
    const p = typeof s === 'string' ? parseEndpointPattern(s) : { error: '' };
    if ('error' in p) return undefined;
    out.push(p);
  }
  return out;
};
const methods: Check<string[]> = (v) =>
  Array.isArray(v) && v.length > 0 && v.length <= ENDPOINT_METHODS.size && v.every((m) => typeof m === 'string' && ENDPOINT_METHODS.has(m))
    ? (v as string[])
    : undefined;
const metadata: Check<Record<string, string>> = (v) =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !metadataProblem(v as Record<string, unknown>) ? (v as Record<string, string>) : undefined;
const budgets: Check<string[]> = (v) =>
  Array.isArray(v) && v.length <= 20 && v.every((b) => typeof b === 'string' && BUDGET_ID.test(b)) ? (v as string[]) : undefined;

const ROOT_FIELDS: Record<string, Check<unknown>> = {
  mk: str(64),
  kv: int,
  id: str(64),
  mode: (v) => (v === 'test' || v === 'live' ? v : undefined),
  vendor: str(64),
  endpoints: patterns,
  methods,
  cap: (v) => (v === null ? null : int(v)),
  iat: int,
  exp: int,
  label: labelText,
  metadata,
  budgets,
};
const ROOT_REQUIRED = ['mk', 'kv', 'id', 'mode', 'vendor', 'endpoints', 'iat', 'exp'];
// A narrowing can only take rights away, so it has no vendor, mode or budgets of its own.
const NARROW_FIELDS: Record<string, Check<unknown>> = {
  id: str(64),
  endpoints: patterns,
  methods,
  cap: int,
  exp: int,
  label: labelText,
  metadata,
};

/**
 * Checks a block against its field table. An unknown field fails the block: ignoring a caveat
 * this gateway does not understand would grant more than its writer meant.
 */
function readBlock(raw: Record<string, unknown>, fields: Record<string, Check<unknown>>, required: readonly string[]): Record<string, any> | string {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    const check = fields[k];
    if (!check) return `unknown caveat "${k.slice(0, 40)}"`;
    const value = check(v);
    if (value === undefined) return `caveat "${k}" is malformed`;
    out[k] = value;
  }
  for (const k of required) if (!(k in out)) return `caveat "${k}" is missing`;
  return out;
}

function budgetAllowed(id: string, policy: MintingPolicy): boolean {
  if (policy.budgetIds.includes(id)) return true;
  return policy.allowedBudgets.some((p) => (p.endsWith('*') ? id.startsWith(p.slice(0, -1)) : p === id));
}

function minCap(a: number | null, b: number | null | undefined): number | null {
  if (b === undefined || b === null) return a;
  return a === null ? b : Math.min(a, b);
}

/**
 * Verifies a minted token against its minting key and works out every key of its chain with
 * the rights it really has: each caveat intersected with everything before it and with the
 * minting key's policy, whatever the caveats claim. Pure: no I/O, `now` in ms.
 */
export function verifyMintedToken(
  token: string,
  policy: MintingPolicy,
  secretOf: (version: number) => Buffer | undefined,
  now: number,
): MintedVerification {
  const s = split(token);
  if (!s) return fail('the token is malformed');
  const block0 = decodeBlock(s.segments[0]!);
  const peek = mintingKeyOf(block0);
  if (!peek || peek.mintingKeyId !== policy.id) return fail('the token names another minting key');
  const version = policy.versions.find((v) => v.version === peek.version);
  const secret = version && secretOf(peek.version);
  if (!version || !secret) return fail('the token was minted with an unknown secret');

  // The chain first, compared in constant time; nothing else is trusted before it holds.
  const sigs: Buffer[] = [];
  let sig = hmac(secret, s.segments[0]!);
  sigs.push(sig);
  for (let i = 1; i < s.segments.length; i++) {
    sig = hmac(sig, s.segments[i]!);
    sigs.push(sig);
  }
  const expected = Buffer.from(sig.toString('base64url'));
  const given = Buffer.from(s.sig);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return fail('the signature does not verify');

  const blocks: Array<Record<string, any>> = [];
  for (const [i, seg] of s.segments.entries()) {
    const raw = i === 0 ? block0 : decodeBlock(seg);
    if (!raw) return fail(`block ${i} is not a JSON object`);
    const b = i === 0 ? readBlock(raw, ROOT_FIELDS, ROOT_REQUIRED) : readBlock(raw, NARROW_FIELDS, ['id']);
    if (typeof b === 'string') return fail(`block ${i}: ${b}`);
    blocks.push(b);
  }

  const root = blocks[0]!;
  const mkSuffix = policy.id.slice(3);
  const ids = new Set<string>();
  for (const b of blocks) {
    const m = MINTED_ID_RE.exec(b.id as string);
    if (!m || m[1] !== mkSuffix) return fail(`key id ${JSON.stringify(String(b.id).slice(0, 64))} is not one of this minting key's`);
    if (ids.has(b.id as string)) return fail('a key id appears twice in the chain');
    ids.add(b.id as string);
  }
  if (root.mode !== s.mode) return fail('the token\'s prefix names another mode than its caveats');
  if (root.mode !== policy.mode) return fail(`a ${policy.mode} minting key cannot mint ${root.mode} keys`);
  if (!policy.vendors.includes(root.vendor as string)) return fail(`the minting key may not mint keys for ${JSON.stringify(root.vendor)}`);
  const iat = root.iat as number;
  if (iat > now / 1000 + CLOCK_SKEW_SECONDS) return fail('the key was minted in the future (check the minter\'s clock)');
  if ((root.exp as number) <= iat) return fail('the key expires before it was minted');
  const named = (root.budgets as string[] | undefined) ?? [];
  for (const b of named) if (!budgetAllowed(b, policy)) return fail(`the minting key may not spend from budget ${JSON.stringify(b)}`);
  const budgetIds = [...new Set([...policy.budgetIds, ...named])];
  if (budgetIds.length > 20) return fail('more than 20 budgets');

  const keys: KeyRecord[] = [];
  let endpoints = intersectEndpoints(policy.endpoints, root.endpoints as EndpointPattern[]);
  let cap = minCap(policy.maxCapMicros, root.cap as number | null | undefined);
  let expiresAt = Math.min((root.exp as number) * 1000, (iat + policy.maxTtlSeconds) * 1000, version.retiresAt ?? Infinity);
  let label = (root.label as string | undefined) ?? '';
  let meta: Record<string, string> = (root.metadata as Record<string, string> | undefined) ?? {};
  let prefix = s.head;
  for (const [i, b] of blocks.entries()) {
    if (i > 0) {
      if (b.endpoints) endpoints = intersectEndpoints(endpoints, b.endpoints as EndpointPattern[]);
      cap = minCap(cap, b.cap as number | undefined);
      if (b.exp !== undefined) expiresAt = Math.min(expiresAt, (b.exp as number) * 1000);
      // The holder names its own part only: a narrowed key's label always begins with its
      // parent's, so it cannot pass for another key, and a prefix filter finds the whole lineage.
      if (b.label !== undefined) label = `${label}${LABEL_SEPARATOR}${b.label as string}`;
      // A narrowing may add metadata, never change what its ancestors set.
      if (b.metadata) meta = { ...(b.metadata as Record<string, string>), ...meta };
    }
    if (b.methods) endpoints = restrictMethods(endpoints, b.methods as string[]);
    if (endpoints.length > MAX_PATTERNS) return fail(`block ${i} leaves more than ${MAX_PATTERNS} endpoint patterns`);
    prefix += (i > 0 ? '.' : '') + s.segments[i]!;
    keys.push({
      id: b.id as string,
      tenantId: policy.tenantId,
      tokenHash: createHash('sha256').update(`${prefix}.${sigs[i]!.toString('base64url')}`).digest('hex'),
      label,
      vendor: root.vendor as string,
      mode: s.mode,
      allowedEndpoints: endpoints.map(formatPattern),
      dailyCapMicros: cap,
      metadata: meta,
      createdAt: i === 0 ? Math.min(iat * 1000, now) : now,
      expiresAt,
      revokedAt: null,
      budgetIds,
      rateLimit: null,
      mintingKeyId: policy.id,
      mintVersion: peek.version,
      ancestorIds: keys.map((k) => k.id),
    });
  }
  if (expiresAt <= now) return { ok: false, code: 'key_expired', reason: 'the minted key has expired' };
  return { ok: true, keys };
}

// ---- minting secrets ----

/** The key every minting secret is derived from (config `mint_key`, default from the admin token). */
export function mintRootKeyFrom(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'keyleash-minting-keys', 'v1', 32));
}

/**
 * A minting key's secret for one version. Only the random salt is stored, so a copy of the
 * store alone mints nothing; the gateway re-derives the secret when it verifies.
 */
export function deriveMintingSecret(root: Buffer, mintingKeyId: string, version: number, salt: string): Buffer {
  return hmac(root, `keyleash/minting-secret/v1\u0000${mintingKeyId}\u0000${version}\u0000${salt}`);
}

/** The string an admin hands to the SDKs: `klm_<mode>_<minting key id>_<version>_<secret>`. */
export function formatMintingSecret(mode: Mode, mintingKeyId: string, version: number, secret: Buffer): string {
  return `klm_${mode}_${mintingKeyId.slice(3)}_${version}_${secret.toString('base64url')}`;
}
