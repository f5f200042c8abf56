import { createHmac, createSecretKey, randomFillSync, type KeyObject } from 'node:crypto';
import type { IssuedKey, Mode } from './client.js';

// Vault keys minted locally from a minting key, and narrowed by whoever holds one — no network
// call either way. The token format is keyleash's (docs/minting.md): base64url JSON blocks
// joined by dots after `vk_<mode>_m1.`, closed by an HMAC-SHA256 chain signature. The gateway
// verifies the chain and enforces every caveat and the minting key's policy on first use.

const SECRET_RE = /^klm_(test|live)_([0-9A-Za-z]{24})_([1-9][0-9]{0,5})_([A-Za-z0-9_-]{43})$/;
const TOKEN_RE = /^vk_(test|live)_m1\.((?:[A-Za-z0-9_-]+\.)+)([A-Za-z0-9_-]{43})$/;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const METADATA_KEY = /^[A-Za-z0-9_.:-]{1,40}$/;
const BUDGET_ID = /^[A-Za-z0-9_.:@-]{1,100}$/;
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
// C0, DEL, C1 and the bidirectional overrides and isolates: the gateway refuses them in labels and
// metadata (a token holding one fails as `invalid_key`), so they are refused here, at mint time.
// eslint-disable-next-line no-control-regex
const CONTROL_CHAR = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
/** @internal Every such character, for replacing them in labels made from request paths. */
export const CONTROL_CHARS = new RegExp(CONTROL_CHAR.source, 'g');
const CONTROL_CHAR_REASON = 'must not hold control characters (C0, DEL, C1) or bidirectional overrides';
/** What joins a narrowed key's label to its parent's, as the gateway records it. */
export const LABEL_SEPARATOR = '/';
/** The gateway's limits: 16 blocks (a minted key and 15 narrowings), 8 KiB in all. */
export const MAX_CHAIN_BLOCKS = 16;
export const MAX_MINTED_TOKEN_CHARS = 8192;

/** A mint or narrow call was given something the gateway would refuse; `param` names it. */
export class MintError extends TypeError {
  override name = 'MintError';
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(`${param}: ${message}`);
  }
}

export interface MintParams {
  /** The vendor, e.g. `stripe`; the minting key must allow it. */
  vendor: string;
  /** Path patterns, as for issued keys; the gateway intersects them with the minting key's. */
  allowedEndpoints: string[];
  /** Only these methods (uppercase), on top of the patterns. */
  methods?: string[];
  /** USD per UTC day; omitted or null: the minting key's maximum cap (if it has one). */
  dailyUsdCap?: number | string | null;
  /** `"30s"`, `"5m"`, `"1h"`, `"1d"` or seconds. Default 15 minutes; the minting key's max TTL still applies. */
  expiresIn?: string | number;
  label?: string;
  metadata?: Record<string, string>;
  /** Budgets (beyond the minting key's own) the key also counts against. */
  budgets?: string[];
}

export interface NarrowParams {
  /** Fewer endpoints: every pattern must fall within one the key already has. */
  allowedEndpoints?: string[];
  /** Fewer methods. */
  methods?: string[];
  /** A lower cap (USD per UTC day); its spend also counts against every key it came from. */
  dailyUsdCap?: number | string;
  /** An earlier expiry; a later one is cut to the parent's. */
  expiresIn?: string | number;
  /**
   * The new key's own part of its label: the gateway records `<parent's label>/<label>`
   * (`/<label>` under an unlabelled parent). Omitted: the parent's label, unchanged.
   */
  label?: string;
  /** Added to the parent's metadata; a parent's pair cannot be changed. */
  metadata?: Record<string, string>;
}

/** A minted or narrowed key, in the shape the control API gives issued keys. */
export interface MintedKey extends IssuedKey {
  origin: 'minted';
  minting_key_id: string;
  /** The key it was narrowed from; null for a key minted directly. */
  parent_id: string | null;
  /** Micro-dollars, exact (`daily_usd_cap` is the same in USD). */
  daily_cap_micros: number | null;
  methods: string[] | null;
}

// Random ids without a syscall per key: bytes come from a pool refilled 4 KiB at a time.
const pool = Buffer.alloc(4096);
let poolAt = pool.length;
function randomBase62(n: number): string {
  let out = '';
  while (out.length < n) {
    if (poolAt >= pool.length) {
      randomFillSync(pool);
      poolAt = 0;
    }
    const b = pool[poolAt++]!;
    // Rejection sampling keeps every character uniform (256 is not a multiple of 62).
    if (b < 248) out += ALPHABET[b % 62];
  }
  return out;
}

function ttlSeconds(v: string | number, param: string): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v <= 0) throw new MintError(param, 'must be a positive whole number of seconds');
    return v;
  }
  const m = /^([1-9][0-9]{0,8})(s|m|h|d)$/.exec(v);
  if (!m) throw new MintError(param, 'must look like "30s", "5m", "1h" or "1d", or be a number of seconds');
  return Number(m[1]) * UNIT_SECONDS[m[2]!]!;
}

/** USD (number or decimal string, ≥ 0, at most 6 decimals, under $1bn) to exact micro-dollars. */
export function usdToMicros(v: number | string, param = 'dailyUsdCap'): number {
  const text = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : v;
  // Nine digits of dollars keep every micro-dollar exact in a JSON number (below 2^53).
  const m = /^(\d{1,9})(?:\.(\d{1,6}))?$/.exec(text);
  if (!m) throw new MintError(param, 'must be a decimal USD amount from 0 to 999999999.999999 with at most 6 decimals');
  return Number(m[1]) * 1_000_000 + Number((m[2] ?? '').padEnd(6, '0'));
}

/** Why the gateway would refuse a pattern (the same rules as for issued keys), or null. */
function patternProblem(p: unknown): string | null {
  if (typeof p !== 'string' || p === '' || p.length > 512) return 'must be a non-empty string of at most 512 characters';
  let path = p;
  if (p[0] !== '/') {
    const space = p.indexOf(' ');
    if (space < 0 || !/^[A-Za-z]+$/.test(p.slice(0, space)) || !METHODS.has(p.slice(0, space).toUpperCase())) {
      return `must be "/path" or "METHOD /path" with METHOD one of ${[...METHODS].join(', ')}`;
    }
    path = p.slice(space + 1);
  }
  if (path[0] !== '/') return 'the path must start with "/"';
  if (/[^\x21-\x7e]|[?%#\\;]/.test(path)) return 'the path has whitespace, a control or non-ASCII character, or one of ? % # \\ ;';
  if (path === '/') return null;
  for (const seg of path.slice(1).split('/')) {
    if (seg === '' || seg === '.' || seg === '..') return 'the path has an empty or dot segment';
    if (seg !== '*' && seg.includes('*')) return '"*" must be a whole segment';
  }
  return null;
}

function checkEndpoints(v: unknown, param: string): string[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > 100) throw new MintError(param, 'must be a list of 1-100 path patterns');
  for (const [i, p] of v.entries()) {
    const problem = patternProblem(p);
    if (problem) throw new MintError(`${param}.${i}`, problem);
  }
  return v as string[];
}

function checkMethods(v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0 || v.some((m) => typeof m !== 'string' || !METHODS.has(m))) {
    throw new MintError('methods', `must be a list of ${[...METHODS].join(', ')}`);
  }
  return v as string[];
}

function checkMetadata(v: unknown): Record<string, string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new MintError('metadata', 'must be an object of strings');
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > 50) throw new MintError('metadata', 'may hold at most 50 pairs');
  for (const [k, x] of entries) {
    if (!METADATA_KEY.test(k)) throw new MintError(`metadata.${k}`, 'keys are 1-40 of A-Z a-z 0-9 _ . : -');
    if (typeof x !== 'string' || x.length > 500) throw new MintError(`metadata.${k}`, 'must be a string of at most 500 characters');
    if (CONTROL_CHAR.test(x)) throw new MintError(`metadata.${k}`, CONTROL_CHAR_REASON);
  }
  return v as Record<string, string>;
}

function checkLabel(v: unknown): string {
  if (typeof v !== 'string' || v.length > 200) throw new MintError('label', 'must be a string of at most 200 characters');
  if (CONTROL_CHAR.test(v)) throw new MintError('label', CONTROL_CHAR_REASON);
  return v;
}

const iso = (s: number) => new Date(s * 1000).toISOString();

/** Mints vault keys locally from a minting key's secret (`klm_…`, shown once when it was created). */
export class Minter {
  readonly mintingKeyId: string;
  readonly mode: Mode;
  /** The secret's version: rotating the minting key makes a new one. */
  readonly version: number;
  private readonly key: KeyObject;
  private readonly idPrefix: string;
  private readonly head: string;
  private readonly now: () => number;
  private readonly maxCapMicros: number | null;
  private readonly maxTtl: number | null;

  /**
   * `secret` defaults to `KEYLEASH_MINTING_KEY`. `policy`: the minting key as the API sent it
   * (`max_daily_cap_micros`, `max_ttl`), when known: then minted keys report the scope the gateway
   * enforces, as it clamps a key that asks for a higher cap (or none) or a longer TTL.
   */
  constructor(
    secret: string | undefined = process.env.KEYLEASH_MINTING_KEY,
    options: { now?: () => number; policy?: { max_daily_cap_micros?: number | null; max_ttl?: number } } = {},
  ) {
    const m = typeof secret === 'string' ? SECRET_RE.exec(secret.trim()) : null;
    if (!m) throw new MintError('secret', 'is not a keyleash minting key secret (klm_test_… or klm_live_…)');
    this.mode = m[1] as Mode;
    this.mintingKeyId = `mk_${m[2]}`;
    this.version = Number(m[3]);
    this.key = createSecretKey(Buffer.from(m[4]!, 'base64url'));
    this.idPrefix = `mkey_${m[2]}_`;
    this.head = `vk_${this.mode}_m1.`;
    this.now = options.now ?? Date.now;
    this.maxCapMicros = options.policy?.max_daily_cap_micros ?? null;
    this.maxTtl = options.policy?.max_ttl ?? null;
  }

  /** A new vault key with its own id; nothing is sent anywhere. */
  mint(p: MintParams): MintedKey {
    if (typeof p.vendor !== 'string' || p.vendor.length === 0 || p.vendor.length > 64) throw new MintError('vendor', 'must be a vendor name');
    const endpoints = checkEndpoints(p.allowedEndpoints, 'allowedEndpoints');
    const iat = Math.floor(this.now() / 1000);
    const exp = iat + (p.expiresIn === undefined ? 900 : ttlSeconds(p.expiresIn, 'expiresIn'));
    const asked = p.dailyUsdCap === undefined || p.dailyUsdCap === null ? null : usdToMicros(p.dailyUsdCap);
    const id = this.idPrefix + randomBase62(24);
    const block: Record<string, unknown> = {
      mk: this.mintingKeyId,
      kv: this.version,
      id,
      mode: this.mode,
      vendor: p.vendor,
      endpoints,
      iat,
      exp,
    };
    if (asked !== null) block.cap = asked;
    if (p.methods !== undefined) block.methods = checkMethods(p.methods);
    if (p.label !== undefined) block.label = checkLabel(p.label);
    if (p.metadata !== undefined) block.metadata = checkMetadata(p.metadata);
    if (p.budgets !== undefined) {
      if (!Array.isArray(p.budgets) || p.budgets.length > 20 || !p.budgets.every((b) => typeof b === 'string' && BUDGET_ID.test(b))) {
        throw new MintError('budgets', 'must be a list of at most 20 budget ids');
      }
      block.budgets = p.budgets;
    }
    const token = this.sign(JSON.stringify(block));
    if (token.length > MAX_MINTED_TOKEN_CHARS) throw new MintError('token', `would be longer than ${MAX_MINTED_TOKEN_CHARS} characters (less metadata)`);
    // What the gateway will enforce (it clamps rather than refuses); the token is unchanged.
    const cap = this.maxCapMicros !== null && (asked === null || asked > this.maxCapMicros) ? this.maxCapMicros : asked;
    const effExp = this.maxTtl ? Math.min(exp, iat + this.maxTtl) : exp;
    return {
      object: 'vault_key',
      origin: 'minted',
      id,
      token,
      label: p.label ?? '',
      vendor: p.vendor,
      mode: this.mode,
      allowed_endpoints: endpoints,
      methods: p.methods ?? null,
      daily_usd_cap: cap === null ? null : cap / 1e6,
      daily_cap_micros: cap,
      metadata: p.metadata ?? {},
      budgets: p.budgets ?? [],
      status: 'active',
      created_at: iso(iat),
      expires_at: iso(effExp),
      minting_key_id: this.mintingKeyId,
      parent_id: null,
    };
  }

  /**
   * Signs an exact block 0 text into a token. For caveats this SDK does not write itself; the
   * gateway still checks every field and the minting key's policy.
   */
  sign(blockJson: string): string {
    const segment = Buffer.from(blockJson).toString('base64url');
    return `${this.head}${segment}.${createHmac('sha256', this.key).update(segment).digest('base64url')}`;
  }
}

/** Appends an exact narrowing block text to a minted token (what `narrowKey` does after its checks). */
export function appendBlock(token: string, blockJson: string): string {
  const cut = token.lastIndexOf('.');
  const segment = Buffer.from(blockJson).toString('base64url');
  const sig = createHmac('sha256', Buffer.from(token.slice(cut + 1), 'base64url')).update(segment).digest('base64url');
  return `${token.slice(0, cut)}.${segment}.${sig}`;
}

/** One block of a minted token, as written (unverified: only the gateway can check the chain). */
export type TokenBlock = Record<string, unknown> & { id: string };

/** The blocks of a minted token, the minted key's first. Throws `MintError` on anything else. */
export function decodeMintedToken(token: string): { mode: Mode; blocks: TokenBlock[] } {
  const m = typeof token === 'string' && token.length <= MAX_MINTED_TOKEN_CHARS ? TOKEN_RE.exec(token) : null;
  if (!m) throw new MintError('token', 'is not a minted vault key (vk_test_m1.… or vk_live_m1.…)');
  const blocks = m[2]!
    .slice(0, -1)
    .split('.')
    .map((s) => {
      try {
        return JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as TokenBlock;
      } catch {
        throw new MintError('token', 'has a block that is not JSON');
      }
    });
  return { mode: m[1] as Mode, blocks };
}

/** Every request `inner` matches is matched by `outer` (both written as patterns). */
function covers(outer: string, inner: string): boolean {
  const split = (p: string) => {
    const sp = p.indexOf(' ');
    const method = p[0] === '/' ? null : p.slice(0, sp).toUpperCase();
    const path = p[0] === '/' ? p : p.slice(sp + 1);
    return { method, segs: path === '/' ? [] : path.slice(1).split('/') };
  };
  const o = split(outer);
  const i = split(inner);
  if (o.method !== null && o.method !== i.method) return false;
  return o.segs.length === i.segs.length && o.segs.every((s, k) => s === '*' || s === i.segs[k]);
}

/**
 * A narrower key from one you hold: appends caveats that can only take rights away, with a new
 * id, without the minting secret or a network call. The new key's spend also counts against
 * every key it came from. Asking for more than the parent has (a pattern outside its
 * endpoints, a higher cap) throws `MintError`; a later expiry is cut to the parent's.
 */
export function narrowKey(parent: string | Pick<MintedKey, 'token'>, p: NarrowParams, options: { now?: () => number } = {}): MintedKey {
  const now = options.now ?? Date.now;
  const token = typeof parent === 'string' ? parent : parent.token;
  const { mode, blocks } = decodeMintedToken(token);
  if (blocks.length >= MAX_CHAIN_BLOCKS) throw new MintError('token', `is already narrowed ${MAX_CHAIN_BLOCKS - 1} times`);
  const root = blocks[0]!;
  // What the chain so far claims (the gateway may grant less, never more).
  let endpoints = root.endpoints as string[];
  let methods = (root.methods as string[] | undefined) ?? null;
  let cap = (root.cap as number | undefined) ?? null;
  let exp = root.exp as number;
  let label = (root.label as string | undefined) ?? '';
  let meta = (root.metadata as Record<string, string> | undefined) ?? {};
  for (const b of blocks.slice(1)) {
    if (b.endpoints) endpoints = b.endpoints as string[];
    if (b.methods) methods = b.methods as string[];
    if (typeof b.cap === 'number') cap = cap === null ? b.cap : Math.min(cap, b.cap);
    if (typeof b.exp === 'number') exp = Math.min(exp, b.exp);
    // As the gateway records it: each narrowing's label is appended to its parent's.
    if (typeof b.label === 'string') label = `${label}${LABEL_SEPARATOR}${b.label}`;
    if (b.metadata) meta = { ...(b.metadata as Record<string, string>), ...meta };
  }

  const mkSuffix = String(root.mk).slice(3);
  const id = `mkey_${mkSuffix}_${randomBase62(24)}`;
  const block: Record<string, unknown> = { id };
  if (p.allowedEndpoints !== undefined) {
    const wanted = checkEndpoints(p.allowedEndpoints, 'allowedEndpoints');
    for (const [i, w] of wanted.entries()) {
      if (!endpoints.some((e) => covers(e, w))) throw new MintError(`allowedEndpoints.${i}`, `"${w}" is outside the key's endpoints`);
    }
    block.endpoints = wanted;
    endpoints = wanted;
  }
  if (p.methods !== undefined) {
    const wanted = checkMethods(p.methods);
    if (methods && wanted.some((m) => !methods!.includes(m))) throw new MintError('methods', 'asks for a method the key does not have');
    block.methods = wanted;
    methods = wanted;
  }
  if (p.dailyUsdCap !== undefined) {
    const micros = usdToMicros(p.dailyUsdCap);
    if (cap !== null && micros > cap) throw new MintError('dailyUsdCap', 'is higher than the key\'s own cap');
    block.cap = micros;
    cap = micros;
  }
  if (p.expiresIn !== undefined) {
    const want = Math.floor(now() / 1000) + ttlSeconds(p.expiresIn, 'expiresIn');
    if (want < exp) {
      block.exp = want;
      exp = want;
    }
  }
  if (p.label !== undefined) {
    block.label = checkLabel(p.label);
    label = `${label}${LABEL_SEPARATOR}${p.label}`;
  }
  if (p.metadata !== undefined) {
    const add = checkMetadata(p.metadata);
    for (const [k, v] of Object.entries(add)) if (k in meta && meta[k] !== v) throw new MintError(`metadata.${k}`, 'is set by the parent key');
    block.metadata = add;
    meta = { ...add, ...meta };
  }

  const child = appendBlock(token, JSON.stringify(block));
  if (child.length > MAX_MINTED_TOKEN_CHARS) throw new MintError('token', `would be longer than ${MAX_MINTED_TOKEN_CHARS} characters`);
  return {
    object: 'vault_key',
    origin: 'minted',
    id,
    token: child,
    label,
    vendor: root.vendor as string,
    mode,
    allowed_endpoints: endpoints,
    methods,
    daily_usd_cap: cap === null ? null : cap / 1e6,
    daily_cap_micros: cap,
    metadata: meta,
    budgets: (root.budgets as string[] | undefined) ?? [],
    status: 'active',
    created_at: new Date(now()).toISOString(),
    expires_at: iso(exp),
    minting_key_id: String(root.mk),
    parent_id: blocks[blocks.length - 1]!.id,
  };
}
