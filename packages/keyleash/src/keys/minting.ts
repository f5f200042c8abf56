import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { invalidParam as invalid, KeyleashError, type ErrorCode } from '../errors.js';
import { BUDGET_ID, CONTROL_CHAR_REASON, metadataProblem, NO_CONTROL_CHARS } from '../policy/fields.js';
import { compileEndpoints, type EndpointPattern } from '../policy/endpoints.js';
import { checkIssuePolicy } from '../policy/issue-policy.js';
import { microsToUsd, parseUsdToMicros } from '../policy/money.js';
import { parseTtlSeconds } from '../policy/ttl.js';
import type { KeyCache } from '../proxy/key-cache.js';
import { DEFAULT_TENANT, type KeyRecord, type MintingKeyRecord, type Store } from '../store/store.js';
import type { BudgetService } from '../budgets/service.js';
import { ROOT_PRINCIPAL, type Principal } from '../control/principal.js';
import type { VendorCatalog } from '../vendors/vendor.js';
import {
  deriveMintingSecret,
  formatMintingSecret,
  peekMintingKey,
  verifyMintedToken,
  type MintingPolicy,
} from './minted.js';
import { zodToKeyleashError } from './service.js';
import { newId } from './token.js';

// Minting keys (docs/minting.md): the control API that creates, rotates and revokes them, and
// the proxy's first-use path for the keys minted from them.

const BUDGET_PATTERN = /^[A-Za-z0-9_.:@-]{0,99}\*$/;
const DEFAULT_MAX_TTL = 3600;
/** How long a replica trusts its copy of a minting key before reading it again. */
const POLICY_TTL_MS = 30_000;
/** How long an id the store does not know is answered without asking it again. */
const UNKNOWN_TTL_MS = 5_000;

export const createMintingKeySchema = z.strictObject({
  label: z.string().max(200).regex(NO_CONTROL_CHARS, CONTROL_CHAR_REASON).default('').describe('Free text to find the minting key by, e.g. "flask-backend".'),
  mode: z.enum(['test', 'live']).default('test').describe('A test minting key only ever mints test keys.'),
  vendors: z.array(z.string().min(1)).min(1).max(20).describe('The vendors minted keys may be for.'),
  allowed_endpoints: z
    .array(z.string())
    .min(1)
    .max(100)
    .describe('The widest patterns a minted key can have; its own patterns are intersected with these.'),
  max_daily_usd_cap: z
    .union([z.number(), z.string(), z.null()])
    .optional()
    .describe('The highest daily cap a minted key gets (also what a key asking for none gets). Omitted or null: no maximum.'),
  max_ttl: z.union([z.string(), z.number()]).optional().describe('The longest a minted key lives, from its iat. Default "1h".'),
  budgets: z.array(z.string()).max(20).default([]).describe('Budgets every key minted from it counts against, whatever it says.'),
  allowed_budgets: z
    .array(z.string())
    .max(50)
    .default([])
    .describe('Further budgets a minted key may name: exact ids, or a prefix ending in "*" (e.g. "user:*").'),
  metadata: z.record(z.string(), z.string().max(500)).default({}).describe('Up to 50 string pairs.'),
});

export const rotateMintingKeySchema = z.strictObject({
  grace_period: z
    .union([z.string(), z.number()])
    .optional()
    .describe('How long the older secrets keep working, e.g. "1h", or 0 to stop them now. Default: the max_ttl.'),
});

export interface MintingKeyView {
  object: 'minting_key';
  id: string;
  label: string;
  mode: 'test' | 'live';
  vendors: string[];
  allowed_endpoints: string[];
  max_daily_usd_cap: number | null;
  max_daily_cap_micros: number | null;
  max_ttl: number;
  budgets: string[];
  allowed_budgets: string[];
  metadata: Record<string, string>;
  status: 'active' | 'revoked';
  /** The current secret version. */
  version: number;
  versions: Array<{ version: number; created_at: string; retires_at: string | null }>;
  created_at: string;
  revoked_at: string | null;
  secret?: string;
  keys_revoked?: number;
}

export type Resolution = { ok: true; record: KeyRecord } | { ok: false; code: ErrorCode; message: string };

export interface MintingServiceOptions {
  store: Store;
  cache: KeyCache;
  budgets: BudgetService;
  /** The vendors of a tenant. */
  catalogOf: (tenantId: string) => VendorCatalog;
  /** What every minting secret is derived from (`mint_key`). */
  rootKey: Buffer;
  maxTtlSeconds: number;
  maxDailyUsdCap: number;
  now?: () => number;
}

interface Loaded {
  record: MintingKeyRecord;
  policy: MintingPolicy;
  secrets: Map<number, Buffer>;
  loadedAt: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

function notFound(id: string): KeyleashError {
  return new KeyleashError('minting_key_not_found', `No minting key with id ${JSON.stringify(id.slice(0, 64))}.`);
}

export class MintingService {
  private readonly now: () => number;
  private readonly loaded = new Map<string, Loaded>();
  /** Minting key ids recently not found, so made-up tokens cannot send every call to the store. */
  private readonly unknown = new Map<string, number>();

  constructor(private readonly o: MintingServiceOptions) {
    this.now = o.now ?? Date.now;
  }

  // ---- control API ----

  async create(body: unknown, principal: Principal = ROOT_PRINCIPAL): Promise<MintingKeyView> {
    const parsed = createMintingKeySchema.safeParse(body);
    if (!parsed.success) throw zodToKeyleashError(parsed.error);
    const input = parsed.data;
    const catalog = this.o.catalogOf(principal.tenantId);
    const vendors = [...new Set(input.vendors)];
    for (const [i, v] of vendors.entries()) {
      const vendor = catalog.get(v);
      if (!vendor) throw invalid(`vendors.${i}`, `unknown vendor "${v}" (configured: ${[...catalog.keys()].join(', ') || 'none'})`);
      if (vendor.secret(input.mode) === undefined) {
        throw new KeyleashError('mode_unavailable', `No ${input.mode} credential is configured for ${v}.`, { param: `vendors.${i}` });
      }
    }
    const compiled = compileEndpoints(input.allowed_endpoints);
    if (!Array.isArray(compiled)) throw invalid(compiled.index >= 0 ? `allowed_endpoints.${compiled.index}` : 'allowed_endpoints', compiled.error);

    let maxCap: number | null = null;
    if (input.max_daily_usd_cap !== undefined && input.max_daily_usd_cap !== null) {
      const cap = parseUsdToMicros(input.max_daily_usd_cap, this.o.maxDailyUsdCap);
      if (!cap.ok) throw invalid('max_daily_usd_cap', cap.reason);
      maxCap = cap.micros;
    }
    let maxTtl = Math.min(DEFAULT_MAX_TTL, this.o.maxTtlSeconds);
    if (input.max_ttl !== undefined) {
      const r = parseTtlSeconds(input.max_ttl);
      if (!r.ok) throw invalid('max_ttl', r.reason);
      if (r.seconds > this.o.maxTtlSeconds) throw invalid('max_ttl', `is longer than the server maximum of ${this.o.maxTtlSeconds} seconds`);
      maxTtl = r.seconds;
    }
    // A restricted admin token cannot hand out a minting key wider than itself.
    for (const vendor of vendors) {
      const violation = checkIssuePolicy(principal.policies, { vendor, endpoints: compiled, capMicros: maxCap, ttlSeconds: maxTtl });
      if (violation) {
        const param = { vendor: 'vendors', expires_in: 'max_ttl', daily_usd_cap: 'max_daily_usd_cap' }[violation.param] ?? violation.param;
        throw new KeyleashError('policy_violation', `${param}: ${violation.reason}`, { param });
      }
    }
    const bad = metadataProblem(input.metadata);
    if (bad) throw invalid(bad.param, bad.reason);
    const budgetIds = input.budgets.length ? await this.o.budgets.resolveForIssue(input.budgets, principal.tenantId) : [];
    for (const [i, b] of input.allowed_budgets.entries()) {
      if (!BUDGET_ID.test(b) && !BUDGET_PATTERN.test(b)) throw invalid(`allowed_budgets.${i}`, 'must be a budget id or a prefix ending in "*"');
    }

    const now = this.now();
    const salt = randomBytes(32).toString('base64url');
    const record: MintingKeyRecord = {
      id: newId('mk'),
      tenantId: principal.tenantId,
      label: input.label,
      mode: input.mode,
      vendors,
      allowedEndpoints: input.allowed_endpoints,
      maxCapMicros: maxCap,
      maxTtlSeconds: maxTtl,
      budgetIds,
      allowedBudgets: [...new Set(input.allowed_budgets)],
      metadata: input.metadata,
      versions: [{ version: 1, salt, createdAt: now, retiresAt: null }],
      createdAt: now,
      revokedAt: null,
    };
    await this.o.store.createMintingKey(record);
    this.unknown.delete(record.id);
    return { ...this.view(record), secret: this.secretOf(record, 1) };
  }

  async get(id: string, tenantId = DEFAULT_TENANT): Promise<MintingKeyView> {
    const record = await this.o.store.getMintingKey(id, tenantId);
    if (!record) throw notFound(id);
    return this.view(record);
  }

  async list(limit: number, cursor: string | null, tenantId = DEFAULT_TENANT) {
    const page = await this.o.store.listMintingKeys(tenantId, limit, cursor);
    return { object: 'list' as const, data: page.items.map((r) => this.view(r)), has_more: page.nextCursor !== null, next_cursor: page.nextCursor };
  }

  async rotate(id: string, body: unknown, tenantId = DEFAULT_TENANT): Promise<MintingKeyView> {
    const parsed = rotateMintingKeySchema.safeParse(body ?? {});
    if (!parsed.success) throw zodToKeyleashError(parsed.error);
    const current = await this.o.store.getMintingKey(id, tenantId);
    if (!current) throw notFound(id);
    let grace = current.maxTtlSeconds;
    const g = parsed.data.grace_period;
    if (g !== undefined) {
      const r = g === 0 || g === '0' ? { ok: true as const, seconds: 0 } : parseTtlSeconds(g);
      if (!r.ok) throw invalid('grace_period', r.reason);
      if (r.seconds > this.o.maxTtlSeconds) throw invalid('grace_period', `is longer than the server maximum of ${this.o.maxTtlSeconds} seconds`);
      grace = r.seconds;
    }
    const now = this.now();
    const r = await this.o.store.rotateMintingKey(tenantId, id, { salt: randomBytes(32).toString('base64url'), createdAt: now }, now + grace * 1000);
    if (!r.ok) {
      if (r.code === 'not_found') throw notFound(id);
      throw new KeyleashError('invalid_request', `id: minting key ${id} is revoked and cannot be rotated`, { param: 'id' });
    }
    this.loaded.delete(id);
    return { ...this.view(r.record), secret: this.secretOf(r.record, r.record.versions[r.record.versions.length - 1]!.version) };
  }

  /** Idempotent: revoking a revoked minting key answers as the first time did (keys_revoked 0). */
  async revoke(id: string, tenantId = DEFAULT_TENANT): Promise<MintingKeyView> {
    const r = await this.o.store.revokeMintingKey(tenantId, id, this.now());
    if (r.result === 'not_found') throw notFound(id);
    for (const k of r.keys) this.o.cache.markRevoked(k.tokenHash, this.now());
    this.loaded.delete(id);
    const record = await this.o.store.getMintingKey(id, tenantId);
    if (!record) throw notFound(id);
    return { ...this.view(record), keys_revoked: r.keys.length };
  }

  view(r: MintingKeyRecord): MintingKeyView {
    return {
      object: 'minting_key',
      id: r.id,
      label: r.label,
      mode: r.mode,
      vendors: r.vendors,
      allowed_endpoints: r.allowedEndpoints,
      max_daily_usd_cap: r.maxCapMicros === null ? null : microsToUsd(r.maxCapMicros),
      max_daily_cap_micros: r.maxCapMicros,
      max_ttl: r.maxTtlSeconds,
      budgets: r.budgetIds,
      allowed_budgets: r.allowedBudgets,
      metadata: r.metadata,
      status: r.revokedAt === null ? 'active' : 'revoked',
      version: r.versions[r.versions.length - 1]!.version,
      versions: r.versions.map((v) => ({ version: v.version, created_at: iso(v.createdAt), retires_at: v.retiresAt === null ? null : iso(v.retiresAt) })),
      created_at: iso(r.createdAt),
      revoked_at: r.revokedAt === null ? null : iso(r.revokedAt),
    };
  }

  private secretOf(r: MintingKeyRecord, version: number): string {
    const v = r.versions.find((x) => x.version === version)!;
    return formatMintingSecret(r.mode, r.id, version, deriveMintingSecret(this.o.rootKey, r.id, version, v.salt));
  }

  // ---- the proxy's first use of a minted key ----

  private async load(id: string, version: number, now: number): Promise<Loaded | null> {
    const hit = this.loaded.get(id);
    // A version this replica has not seen means a rotation elsewhere: read again at once.
    if (hit && now - hit.loadedAt < POLICY_TTL_MS && hit.secrets.has(version)) return hit;
    const missedAt = this.unknown.get(id);
    if (missedAt !== undefined && now - missedAt < UNKNOWN_TTL_MS) return null;
    const record = await this.o.store.getMintingKey(id);
    if (!record) {
      this.loaded.delete(id);
      if (this.unknown.size > 10_000) this.unknown.clear();
      this.unknown.set(id, now);
      return null;
    }
    this.unknown.delete(id);
    const compiled = compileEndpoints(record.allowedEndpoints);
    const policy: MintingPolicy = {
      id: record.id,
      tenantId: record.tenantId,
      mode: record.mode,
      vendors: record.vendors,
      endpoints: Array.isArray(compiled) ? compiled : ([] as EndpointPattern[]),
      maxCapMicros: record.maxCapMicros,
      maxTtlSeconds: record.maxTtlSeconds,
      budgetIds: record.budgetIds,
      allowedBudgets: record.allowedBudgets,
      versions: record.versions.map((v) => ({ version: v.version, retiresAt: v.retiresAt })),
    };
    const secrets = new Map(record.versions.map((v) => [v.version, deriveMintingSecret(this.o.rootKey, record.id, v.version, v.salt)]));
    const loaded = { record, policy, secrets, loadedAt: now };
    if (this.loaded.size > 10_000) this.loaded.clear();
    this.loaded.set(id, loaded);
    return loaded;
  }

  /**
   * The record of a minted token the key cache does not hold: verified against its minting
   * key, found in the store, or created there on its first use (with every key it was narrowed
   * from). Refusals carry the proxy's error code; store trouble throws.
   */
  async resolve(token: string, tokenHash: string, now: number): Promise<Resolution> {
    const peek = peekMintingKey(token);
    if (!peek) return { ok: false, code: 'invalid_key', message: 'The minted vault key is malformed.' };
    const loaded = await this.load(peek.mintingKeyId, peek.version, now);
    if (!loaded) return { ok: false, code: 'invalid_key', message: 'The minted vault key names no minting key of this gateway.' };
    const v = verifyMintedToken(token, loaded.policy, (n) => loaded.secrets.get(n), now);
    if (!v.ok) return { ok: false, code: v.code, message: `The minted vault key is refused: ${v.reason}.` };
    if (loaded.record.revokedAt !== null && loaded.record.revokedAt <= now) {
      return { ok: false, code: 'key_revoked', message: 'The minting key of this vault key has been revoked.' };
    }
    const known = await this.o.store.getKeyByHash(tokenHash);
    if (known) return { ok: true, record: known };
    const created = await this.o.store.createMintedKeys(v.keys);
    if (created.ok) return { ok: true, record: created.keys[created.keys.length - 1]! };
    if (created.code === 'budget_not_found') {
      return { ok: false, code: 'invalid_key', message: `The minted vault key names budget ${JSON.stringify(created.id)}, which does not exist.` };
    }
    if (created.code === 'conflict') {
      return { ok: false, code: 'invalid_key', message: `Key id ${created.id ?? ''} already belongs to another vault key.` };
    }
    this.loaded.delete(peek.mintingKeyId);
    return { ok: false, code: 'invalid_key', message: 'The minted vault key names no minting key of this gateway.' };
  }
}
