import { createHmac, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { invalidParam as invalid, KeyleashError } from '../errors.js';
import { CONTROL_CHAR_REASON, metadataProblem, NO_CONTROL_CHARS } from '../policy/fields.js';
import { compileEndpoints, type EndpointPattern } from '../policy/endpoints.js';
import { decodeTools, encodeTools, globProblem, MAX_TOOLS, mcpServerOf } from '../mcp/tools.js';
import { microsToUsd, parseUsdToMicros } from '../policy/money.js';
import { parseTtlSeconds, utcDay } from '../policy/ttl.js';
import { rateLimitSchema, rateLimitView, toRateLimit } from '../policy/rate.js';
import type { KeyCache } from '../proxy/key-cache.js';
import { DEFAULT_TENANT, keyStatus, type RevokeResult, type KeyFilter, type KeyRecord, type KeyUsage, type Page, type Store } from '../store/store.js';
import type { VendorCatalog } from '../vendors/vendor.js';
import type { BudgetService } from '../budgets/service.js';
import { ROOT_PRINCIPAL, type Principal } from '../control/principal.js';
import { checkIssuePolicy, defaultTtlWithin } from '../policy/issue-policy.js';
import { derivedId, derivedToken, generateToken, hashesEqual, hashToken, newId, type Mode } from './token.js';
import { MINTED_ID_RE } from './minted.js';

export const issueKeySchema = z.strictObject({
  label: z.string().max(200).regex(NO_CONTROL_CHARS, CONTROL_CHAR_REASON).default('').describe('Free text to find the key by, e.g. "flask-u42-run7".'),
  vendor: z.string().min(1).describe('The one vendor this key may call, e.g. "stripe".'),
  allowed_endpoints: z
    .array(z.string())
    .min(1)
    .max(100)
    .optional()
    .describe('Path patterns; `*` matches one segment; an optional method prefix, e.g. "POST /v1/refunds". Required, except for an MCP server key (vendor "mcp:<server>"), which names tools in allowed_tools instead.'),
  allowed_tools: z
    .array(z.string())
    .min(1)
    .max(MAX_TOOLS)
    .optional()
    .describe('Only for an MCP server key (vendor "mcp:<server>"), and required there: the tools it may list and call, by name or glob ("create_refund", "list_*"). See docs/mcp.md.'),
  daily_usd_cap: z
    .union([z.number(), z.string(), z.null()])
    .optional()
    .describe('USD the key may spend per UTC day, decimal, >= 0. Omitted or null: no cap.'),
  expires_in: z
    .union([z.string(), z.number()])
    .optional()
    .describe('"30s", "5m", "1h", "24h" style, or seconds. Defaults to the server default; capped by the server maximum.'),
  mode: z.enum(['test', 'live']).default('test').describe('test keys only ever use the vendor test credential.'),
  metadata: z
    .record(z.string(), z.string().max(500))
    .default({})
    .describe('Up to 50 string pairs, e.g. {"user_id": "u42", "run_id": "r7"}.'),
  budgets: z
    .array(z.string())
    .max(20)
    .optional()
    .describe('Budget ids (e.g. ["user:u42", "team:billing"]) every call also reserves against; each must exist and not be frozen.'),
  rate_limit: rateLimitSchema.optional().describe('Requests per period for this key (429 rate_limited with Retry-After).'),
}).superRefine((v, ctx) => {
  // A key names endpoints (an HTTP vendor) or tools (an MCP server), never both.
  if (mcpServerOf(v.vendor) !== null) {
    // Tools as globs, or as `/tools/<name>` endpoints (what middleware and minted keys speak).
    if (v.allowed_tools === undefined && v.allowed_endpoints === undefined) {
      ctx.addIssue({ code: 'custom', path: ['allowed_tools'], message: 'is required for an MCP server key (tool names or globs such as "list_*")' });
    } else if (v.allowed_tools !== undefined && v.allowed_endpoints !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['allowed_endpoints'], message: 'give allowed_tools or allowed_endpoints, not both' });
    } else if (v.allowed_endpoints !== undefined) {
      const i = v.allowed_endpoints.findIndex((e) => decodeTools([e]).length === 0);
      if (i >= 0) ctx.addIssue({ code: 'custom', path: ['allowed_endpoints', i], message: 'an MCP server key allows tools: write "/tools/<name>" or "/tools/*", or use allowed_tools' });
    }
  } else if (v.allowed_tools !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['allowed_tools'], message: 'only a key for an MCP server (vendor "mcp:<server>") names tools' });
  } else if (v.allowed_endpoints === undefined) {
    ctx.addIssue({ code: 'custom', path: ['allowed_endpoints'], message: 'Invalid input: expected array, received undefined' });
  }
});

export type IssueKeyInput = z.input<typeof issueKeySchema>;

/** Which active keys the kill switch revokes; every given field must match. */
export type BulkRevokeFilter = Pick<KeyFilter, 'labelPrefix' | 'metadata' | 'vendor' | 'mode' | 'budgetId'>;

export interface BulkRevokeResult {
  object: 'bulk_revoke';
  dry_run: boolean;
  /** Active keys that matched the filter. */
  matched: number;
  /** Keys this call revoked (0 on a dry run). */
  revoked: number;
  /** The revoked keys' ids; on a dry run, the ids that would be revoked. */
  key_ids: string[];
}

export interface KeyServiceOptions {
  store: Store;
  catalog: VendorCatalog;
  cache: KeyCache;
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
  maxDailyUsdCap: number;
  /** Called on revocations, for alerts: `key.revoked` (one key) and `kill_switch.used` (bulk). */
  onEvent?: (tenantId: string, type: 'key.revoked' | 'kill_switch.used', data: Record<string, unknown>) => void;
  /** The vendors of a tenant other than "default" (whose vendors are `catalog`). */
  catalogFor?: (tenantId: string) => VendorCatalog | undefined;
  /** Resolves `budgets` at issuance; without it a key naming budgets is refused. */
  budgets?: BudgetService;
  /**
   * What idempotent issuance derives a retry's key id and token from (every replica needs the
   * same one; the gateway derives it from `mint_key`). Default: random, so one process only.
   */
  idempotencySecret?: Buffer;
  now?: () => number;
}

/** How long `Idempotency-Key` on `POST /v1/keys` answers a retry with the key it first issued. */
export const ISSUE_IDEMPOTENCY_WINDOW_MS = 24 * 3_600_000;

/** The secret idempotent issuance derives from, from the gateway's minting root secret. */
export function issueIdempotencySecretFrom(root: string | Buffer): Buffer {
  return createHmac('sha256', root).update('keyleash idempotent issuance v1').digest();
}

/** JSON with object keys sorted, so two spellings of one request fingerprint alike. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The JSON shape of a key in every control API answer. */
export interface KeyView {
  object: 'vault_key';
  id: string;
  label: string;
  vendor: string;
  mode: Mode;
  allowed_endpoints: string[];
  /** An MCP server key's tool globs (docs/mcp.md); absent on other keys. */
  allowed_tools?: string[];
  daily_usd_cap: number | null;
  daily_cap_micros: number | null;
  metadata: Record<string, string>;
  status: 'active' | 'expired' | 'revoked';
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
  spend_today_usd: number;
  spend_today_micros: number;
  remaining_today_usd: number | null;
  remaining_today_micros: number | null;
  request_count: number;
  last_used_at: string | null;
  budgets: string[];
  rate_limit: { requests: number; per: string } | null;
  /** `issued` through POST /v1/keys, or `minted` from a minting key (docs/minting.md). */
  origin: 'issued' | 'minted';
  minting_key_id: string | null;
  /** The key a narrowed key was narrowed from. */
  parent_id: string | null;
  token?: string;
}

/** A minted key revoked before it was ever used: only what its id tells is known. */
export interface UnusedMintedKeyView {
  object: 'vault_key';
  id: string;
  origin: 'minted';
  minting_key_id: string;
  parent_id: null;
  status: 'revoked';
  revoked_at: string;
  /** False: no call was ever made with it, so its scope was never seen. */
  used: false;
  label: null;
  vendor: null;
  mode: null;
  allowed_endpoints: null;
  daily_usd_cap: null;
  metadata: null;
  created_at: null;
  expires_at: null;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function zodToKeyleashError(err: z.ZodError): KeyleashError {
  const issue = err.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? 'body';
    return invalid(key, 'is not a known parameter');
  }
  const param = issue.path.map(String).join('.') || 'body';
  return invalid(param, issue.message);
}

export class KeyService {
  private readonly now: () => number;

  private readonly idempotencySecret: Buffer;

  constructor(private readonly o: KeyServiceOptions) {
    this.now = o.now ?? Date.now;
    this.idempotencySecret = o.idempotencySecret ?? randomBytes(32);
  }

  /**
   * Issues a key. With `idempotencyKey` (the `Idempotency-Key` header) the key's id and token are
   * derived from it, the caller and the request, so a retry of the same request within
   * ISSUE_IDEMPOTENCY_WINDOW_MS answers the key already issued (`replayed: true`) and never makes
   * a second one; the token is recomputed, never stored. The same Idempotency-Key with a
   * different request is 400 `idempotency_key_reused`.
   */
  async issue(body: unknown, principal: Principal = ROOT_PRINCIPAL, idempotencyKey?: string): Promise<KeyView & { token: string; replayed?: true }> {
    const parsed = issueKeySchema.safeParse(body);
    if (!parsed.success) throw zodToKeyleashError(parsed.error);
    const input = parsed.data;

    let derived: { id: string; token: string } | undefined;
    if (idempotencyKey !== undefined) {
      if (idempotencyKey.length === 0 || idempotencyKey.length > 255 || /[\u0000-\u001f\u007f]/.test(idempotencyKey)) {
        throw invalid('Idempotency-Key', 'must be 1-255 characters without control characters');
      }
      const who = `${principal.tenantId}\0${principal.name}\0${idempotencyKey}`;
      derived = {
        id: derivedId('key', this.idempotencySecret, who),
        token: derivedToken(input.mode, this.idempotencySecret, `${who}\0${canonicalJson(body)}`),
      };
      const replay = await this.replayOf(derived, principal.tenantId);
      if (replay) return replay;
    }

    const catalog = this.catalogOf(principal.tenantId);
    const vendor = catalog.get(input.vendor);
    if (!vendor) {
      const known = [...catalog.keys()].join(', ') || 'none';
      throw invalid('vendor', `unknown vendor "${input.vendor}" (configured: ${known})`);
    }
    if (vendor.secret(input.mode) === undefined) {
      throw new KeyleashError('mode_unavailable', `No ${input.mode} credential is configured for ${input.vendor}.`, {
        param: 'mode',
      });
    }

    let allowed: string[];
    let compiled: EndpointPattern[] = [];
    if (input.allowed_tools !== undefined) {
      for (const [i, g] of input.allowed_tools.entries()) {
        const problem = globProblem(g);
        if (problem) throw invalid(`allowed_tools.${i}`, problem);
      }
      allowed = encodeTools(input.allowed_tools);
      // An admin token's endpoint policy judges tools as `/tools/<name>`; a glob within a name
      // counts as `/tools/*`, so a policy can only ever be stricter than the key, never looser.
      const asEndpoints = compileEndpoints(input.allowed_tools.map((g) => `/tools/${g.includes('*') ? '*' : g}`));
      compiled = Array.isArray(asEndpoints) ? asEndpoints : [];
    } else {
      allowed = input.allowed_endpoints ?? [];
      const c = compileEndpoints(allowed);
      if (!Array.isArray(c)) {
        const where = c.index >= 0 ? `allowed_endpoints.${c.index}` : 'allowed_endpoints';
        throw invalid(where, c.error);
      }
      compiled = c;
    }

    let capMicros: number | null = null;
    if (input.daily_usd_cap !== undefined && input.daily_usd_cap !== null) {
      const cap = parseUsdToMicros(input.daily_usd_cap, this.o.maxDailyUsdCap);
      if (!cap.ok) throw invalid('daily_usd_cap', cap.reason);
      capMicros = cap.micros;
    }

    let ttl = defaultTtlWithin(principal.policies, this.o.defaultTtlSeconds);
    if (input.expires_in !== undefined) {
      const r = parseTtlSeconds(input.expires_in);
      if (!r.ok) throw invalid('expires_in', r.reason);
      if (r.seconds > this.o.maxTtlSeconds) {
        throw invalid('expires_in', `is longer than the server maximum of ${this.o.maxTtlSeconds} seconds`);
      }
      ttl = r.seconds;
    }

    const violation = checkIssuePolicy(principal.policies, { vendor: input.vendor, endpoints: compiled, capMicros, ttlSeconds: ttl });
    if (violation) {
      throw new KeyleashError('policy_violation', `${violation.param}: ${violation.reason}`, { param: violation.param });
    }

    const bad = metadataProblem(input.metadata);
    if (bad) throw invalid(bad.param, bad.reason);

    let budgetIds: string[] = [];
    if (input.budgets?.length) {
      if (!this.o.budgets) throw invalid('budgets', 'budgets are not available');
      budgetIds = await this.o.budgets.resolveForIssue(input.budgets, principal.tenantId);
    }

    const now = this.now();
    const token = derived?.token ?? generateToken(input.mode);
    const record: KeyRecord = {
      id: derived?.id ?? newId('key'),
      tenantId: principal.tenantId,
      tokenHash: hashToken(token),
      label: input.label,
      vendor: input.vendor,
      mode: input.mode,
      allowedEndpoints: allowed,
      dailyCapMicros: capMicros,
      metadata: input.metadata,
      createdAt: now,
      expiresAt: now + ttl * 1000,
      revokedAt: null,
      budgetIds,
      rateLimit: input.rate_limit ? toRateLimit(input.rate_limit) : null,
    };
    try {
      await this.o.store.createKey(record);
    } catch (err) {
      // A concurrent retry (on any replica) inserted the same derived id first.
      const replay = derived ? await this.replayOf(derived, principal.tenantId) : undefined;
      if (replay) return replay;
      throw err;
    }
    this.o.cache.put(record);
    return { ...this.view(record, { requestCount: 0, lastUsedAt: null, spentMicros: 0 }), token };
  }

  /** The key an earlier request with this Idempotency-Key issued, answered again; undefined if none. */
  private async replayOf(derived: { id: string; token: string }, tenantId: string): Promise<(KeyView & { token: string; replayed: true }) | undefined> {
    const existing = await this.o.store.getKeyById(derived.id, tenantId);
    if (!existing) return undefined;
    if (!hashesEqual(existing.tokenHash, hashToken(derived.token))) {
      throw new KeyleashError('idempotency_key_reused', 'This Idempotency-Key was already used to issue a key with a different request.', {
        param: 'Idempotency-Key',
      });
    }
    if (this.now() - existing.createdAt > ISSUE_IDEMPOTENCY_WINDOW_MS) {
      throw new KeyleashError('idempotency_key_reused', 'This Idempotency-Key issued a key more than 24 hours ago; use a new one.', {
        param: 'Idempotency-Key',
      });
    }
    const view = this.view(await this.withLineage(existing), await this.o.store.keyUsage(existing.id, utcDay(this.now())));
    return { ...view, token: derived.token, replayed: true };
  }

  /** The vendors of a tenant: its own credentials, never another tenant's. */
  catalogOf(tenantId: string): VendorCatalog {
    if (tenantId === DEFAULT_TENANT) return this.o.catalog;
    return this.o.catalogFor?.(tenantId) ?? new Map();
  }

  async get(id: string, tenantId: string = DEFAULT_TENANT): Promise<KeyView | UnusedMintedKeyView> {
    const record = await this.o.store.getKeyById(id, tenantId);
    if (!record) {
      const early = MINTED_ID_RE.test(id) ? await this.o.store.getMintedRevocation(id, tenantId) : null;
      if (early) return unusedMintedView(id, early.mintingKeyId, early.revokedAt);
      throw keyNotFound(id);
    }
    return this.view(await this.withLineage(record), await this.o.store.keyUsage(id, utcDay(this.now())));
  }

  /**
   * A narrowed key as its status really is: revoked or expired with any key it came from (the
   * proxy checks each one on every call).
   */
  private async withLineage(k: KeyRecord): Promise<KeyRecord> {
    if (!k.ancestorIds?.length || k.revokedAt !== null) return k;
    let out = k;
    for (const id of k.ancestorIds) {
      const a = await this.o.store.getKeyById(id);
      if (!a) continue;
      if (a.revokedAt !== null && out.revokedAt === null) out = { ...out, revokedAt: a.revokedAt };
      if (a.expiresAt < out.expiresAt) out = { ...out, expiresAt: a.expiresAt };
    }
    return out;
  }

  async list(filter: KeyFilter, limit: number, cursor: string | null, tenantId: string = DEFAULT_TENANT) {
    const now = this.now();
    const page = await this.o.store.listKeys({ ...filter, tenantId }, limit, cursor, now);
    const day = utcDay(now);
    const data = await Promise.all(
      page.items.map(async (k) => this.view(await this.withLineage(k), await this.o.store.keyUsage(k.id, day))),
    );
    return { object: 'list' as const, data, has_more: page.nextCursor !== null, next_cursor: page.nextCursor };
  }

  /**
   * Idempotent: revoking a revoked key answers as the first time did. A minted key that was
   * never used is revoked by id too: its first use then finds it revoked.
   */
  async revoke(id: string, tenantId: string = DEFAULT_TENANT): Promise<KeyView | UnusedMintedKeyView> {
    const now = this.now();
    const minted = MINTED_ID_RE.exec(id);
    let r: RevokeResult;
    if (minted) {
      // The store marks its record, or, before its first use, records the revocation for it.
      const mintingKeyId = `mk_${minted[1]}`;
      const m = await this.o.store.revokeMintedKey(tenantId, id, mintingKeyId, now);
      if (m.result === 'not_found') throw keyNotFound(id);
      if (m.tokenHash === null) {
        if (m.result === 'revoked') this.o.onEvent?.(tenantId, 'key.revoked', { key_id: id, label: null, vendor: null });
        const rec = await this.o.store.getMintedRevocation(id, tenantId);
        return unusedMintedView(id, mintingKeyId, rec?.revokedAt ?? now);
      }
      r = m.result;
    } else {
      r = await this.o.store.revokeKey(id, now, tenantId);
      if (r === 'not_found') throw keyNotFound(id);
    }
    const record = await this.o.store.getKeyById(id, tenantId);
    if (!record) throw keyNotFound(id);
    this.o.cache.markRevoked(record.tokenHash, record.revokedAt ?? now);
    if (r === 'revoked') this.o.onEvent?.(tenantId, 'key.revoked', { key_id: id, label: record.label, vendor: record.vendor });
    return this.view(record, await this.o.store.keyUsage(id, utcDay(now)));
  }

  /**
   * The kill switch: revokes every active key matching the filter. Ids are collected first and
   * revoked after, so paging is never disturbed by the revocations themselves. An empty filter
   * is refused unless `all` says so, so nobody revokes every key by accident.
   */
  async revokeMatching(
    filter: BulkRevokeFilter,
    opts: { dryRun?: boolean; all?: boolean } = {},
    tenantId: string = DEFAULT_TENANT,
  ): Promise<BulkRevokeResult> {
    const hasFilter =
      filter.labelPrefix !== undefined ||
      filter.vendor !== undefined ||
      filter.mode !== undefined ||
      filter.budgetId !== undefined ||
      (filter.metadata !== undefined && Object.keys(filter.metadata).length > 0);
    if (!hasFilter && !opts.all) {
      throw new KeyleashError(
        'invalid_request',
        'body: give label_prefix, metadata, vendor, mode or budget to choose keys, or "all": true to revoke every active key',
        { param: 'body' },
      );
    }
    const now = this.now();
    const matched: KeyRecord[] = [];
    let cursor: string | null = null;
    do {
      const page: Page<KeyRecord> = await this.o.store.listKeys({ ...filter, tenantId, status: 'active' }, 100, cursor, now);
      matched.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor !== null);
    if (opts.dryRun) return { object: 'bulk_revoke', dry_run: true, matched: matched.length, revoked: 0, key_ids: matched.map((k) => k.id) };
    const revokedIds: string[] = [];
    for (const k of matched) {
      const r = await this.o.store.revokeKey(k.id, now, tenantId);
      // 'already_revoked' means a concurrent revoke won; the key is revoked either way.
      if (r !== 'not_found') this.o.cache.markRevoked(k.tokenHash, now);
      if (r === 'revoked') revokedIds.push(k.id);
    }
    this.o.onEvent?.(tenantId, 'kill_switch.used', {
      filter: { label_prefix: filter.labelPrefix, metadata: filter.metadata, vendor: filter.vendor, mode: filter.mode, budget: filter.budgetId, all: opts.all === true },
      matched: matched.length,
      revoked: revokedIds.length,
      key_ids: revokedIds,
    });
    return { object: 'bulk_revoke', dry_run: false, matched: matched.length, revoked: revokedIds.length, key_ids: revokedIds };
  }

  view(k: KeyRecord, usage: KeyUsage): KeyView {
    const now = this.now();
    const remaining = k.dailyCapMicros === null ? null : Math.max(0, k.dailyCapMicros - usage.spentMicros);
    return {
      object: 'vault_key',
      id: k.id,
      label: k.label,
      vendor: k.vendor,
      mode: k.mode,
      allowed_endpoints: k.allowedEndpoints,
      ...(mcpServerOf(k.vendor) !== null ? { allowed_tools: decodeTools(k.allowedEndpoints) } : {}),
      daily_usd_cap: k.dailyCapMicros === null ? null : microsToUsd(k.dailyCapMicros),
      daily_cap_micros: k.dailyCapMicros,
      metadata: k.metadata,
      status: keyStatus(k, now),
      created_at: iso(k.createdAt),
      expires_at: iso(k.expiresAt),
      revoked_at: k.revokedAt === null ? null : iso(k.revokedAt),
      spend_today_usd: microsToUsd(usage.spentMicros),
      spend_today_micros: usage.spentMicros,
      remaining_today_usd: remaining === null ? null : microsToUsd(remaining),
      remaining_today_micros: remaining,
      request_count: usage.requestCount,
      last_used_at: usage.lastUsedAt === null ? null : iso(usage.lastUsedAt),
      budgets: k.budgetIds,
      rate_limit: rateLimitView(k.rateLimit),
      origin: k.mintingKeyId ? 'minted' : 'issued',
      minting_key_id: k.mintingKeyId ?? null,
      parent_id: k.ancestorIds?.length ? k.ancestorIds[k.ancestorIds.length - 1]! : null,
    };
  }
}

function keyNotFound(id: string): KeyleashError {
  return new KeyleashError('key_not_found', `No key with id ${JSON.stringify(id.slice(0, 64))}.`);
}

function unusedMintedView(id: string, mintingKeyId: string, revokedAt: number): UnusedMintedKeyView {
  return {
    object: 'vault_key',
    id,
    origin: 'minted',
    minting_key_id: mintingKeyId,
    parent_id: null,
    status: 'revoked',
    revoked_at: iso(revokedAt),
    used: false,
    label: null,
    vendor: null,
    mode: null,
    allowed_endpoints: null,
    daily_usd_cap: null,
    metadata: null,
    created_at: null,
    expires_at: null,
  };
}
