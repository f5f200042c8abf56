import { randomUUID } from 'node:crypto';
import { errorFromBody, KeyleashConnectionError, KeyleashError, KeyNotFoundError, type KeyleashErrorBody } from './errors.js';

// The control API client: issue, read, list and revoke vault keys, the kill switch, budgets, the audit log.
// Parameters are camelCase; objects come back exactly as the API sends them (snake_case).

export type Mode = 'test' | 'live';
export type KeyStatus = 'active' | 'expired' | 'revoked';

export interface IssueKeyParams {
  /** The vendor the key is for, e.g. `stripe`. */
  vendor: string;
  /** Path patterns; `*` matches one segment; optional method prefix (`"POST /v1/refunds"`). */
  allowedEndpoints: string[];
  /** USD per UTC day; omitted or null means no cap. */
  dailyUsdCap?: number | null;
  /** `"30s"`, `"5m"`, `"1h"`, `"24h"` or seconds. Defaults to the server's default TTL. */
  expiresIn?: string | number;
  label?: string;
  mode?: Mode;
  metadata?: Record<string, string>;
  /** Budget ids every call of the key also reserves against (up to 20; each must exist and not be frozen). */
  budgets?: string[];
  /** Requests per period for this key alone (429 `rate_limited` past it). */
  rateLimit?: RateLimit;
}

/** A key for an MCP server (vendor `mcp:<server>`, docs/mcp.md): it names tools, not endpoints. */
export type IssueMcpKeyParams = Omit<IssueKeyParams, 'allowedEndpoints'> & {
  /** Tool names or globs such as `list_*`. */
  allowedTools: string[];
};

/** A token bucket of `requests`, refilled at `requests` per `per`. */
export interface RateLimit {
  requests: number;
  per: 'second' | 'minute' | 'hour';
}

export type BudgetPeriod = 'day' | 'month' | 'total';

export interface CreateBudgetParams {
  /** The budget name, e.g. `user:u42` (1–100 of `A-Z a-z 0-9 _ . : @ -`). */
  id: string;
  /** USD the budget allows per period (decimal, ≥ 0). */
  limitUsd: number | string;
  /** `day` = UTC day, `month` = UTC calendar month, `total` = forever. */
  period: BudgetPeriod;
  /** A frozen budget refuses every call of its keys and every new key. */
  frozen?: boolean;
  metadata?: Record<string, string>;
  /** Requests per period over all the budget's keys together; null for none. */
  rateLimit?: RateLimit | null;
}

export interface UpdateBudgetParams {
  limitUsd?: number | string;
  frozen?: boolean;
  /** Replaces the metadata. */
  metadata?: Record<string, string>;
  /** Replaces the rate limit; null removes it. */
  rateLimit?: RateLimit | null;
}

/** One page of a list route. */
export interface PageParams {
  /** 1–100 (server default 20). */
  limit?: number;
  cursor?: string;
}

export type ListBudgetsParams = PageParams;

export interface Budget {
  object: 'budget';
  id: string;
  limit_usd: number;
  limit_micros: number;
  period: BudgetPeriod;
  frozen: boolean;
  metadata: Record<string, string>;
  rate_limit: RateLimit | null;
  /** The window the spend is for: YYYY-MM-DD, YYYY-MM or `total`. */
  window: string;
  spend_usd: number;
  spend_micros: number;
  remaining_usd: number;
  remaining_micros: number;
  created_at: string;
  updated_at: string;
  [k: string]: unknown;
}

export interface BudgetDeleted {
  object: 'budget';
  id: string;
  deleted: true;
}

export interface VaultKey {
  object: 'vault_key';
  id: string;
  label: string;
  vendor: string;
  mode: Mode;
  allowed_endpoints: string[];
  /** On a key for an MCP server: the tools it may list and call. */
  allowed_tools?: string[];
  daily_usd_cap: number | null;
  metadata: Record<string, string>;
  status: KeyStatus;
  created_at: string;
  expires_at: string;
  revoked_at?: string | null;
  spend_today_usd?: number;
  remaining_today_usd?: number | null;
  request_count?: number;
  last_used_at?: string | null;
  budgets?: string[];
  rate_limit?: RateLimit | null;
  /** `issued` through the control API, or `minted` from a minting key. */
  origin?: 'issued' | 'minted';
  minting_key_id?: string | null;
  /** The key a narrowed key was narrowed from. */
  parent_id?: string | null;
  [k: string]: unknown;
}

/** The answer to issuing: the key plus its secret `token`, shown only this once. */
export interface IssuedKey extends VaultKey {
  token: string;
}

export interface ListKeysParams {
  status?: KeyStatus;
  vendor?: string;
  mode?: Mode;
  labelPrefix?: string;
  metadata?: Record<string, string>;
  /** Only keys minted from this minting key. */
  mintingKey?: string;
  /** 1–100 (server default 20). */
  limit?: number;
  cursor?: string;
}

export interface List<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
  next_cursor: string | null;
}

export interface RevokeKeysParams {
  labelPrefix?: string;
  metadata?: Record<string, string>;
  vendor?: string;
  mode?: Mode;
  /** Only keys attached to this budget. */
  budget?: string;
  /** Count what would be revoked without revoking. */
  dryRun?: boolean;
  /** Required (and only) when no filter is given: revoke every active key. */
  all?: boolean;
}

export interface RevokeKeysResult {
  matched: number;
  revoked: number;
  dry_run?: boolean;
  key_ids?: string[];
  [k: string]: unknown;
}

export interface ListAuditParams {
  keyId?: string;
  vendor?: string;
  decision?: 'allow' | 'deny';
  code?: string;
  limit?: number;
  cursor?: string;
}

export interface AuditRecord {
  object: 'audit_record';
  id: string;
  time: string;
  request_id: string;
  key_id: string | null;
  method: string;
  path: string;
  status: number;
  decision: 'allow' | 'deny';
  code: string | null;
  cost_usd: number;
  [k: string]: unknown;
}

export interface KeyleashOptions {
  /** Control API base URL, e.g. `http://127.0.0.1:8080`. Default: `KEYLEASH_API_URL`. */
  apiUrl?: string;
  /** Proxy base URL, e.g. `http://127.0.0.1:8081`. Default: `KEYLEASH_PROXY_URL`. */
  proxyUrl?: string;
  /** Default: `KEYLEASH_ADMIN_TOKEN`. */
  adminToken?: string;
  /** Per-call timeout for control API calls, ms (default 10 000). */
  timeoutMs?: number;
  /** A fetch implementation (default: the global one). */
  fetch?: typeof fetch;
  /**
   * Retries of a control API call that could not reach keyleash or got 429 / 502 / 503 / 504
   * (default 2), with exponential backoff from 100 ms (or the answer's Retry-After, up to 2 s).
   * Only calls that are safe to repeat are retried: reads, revocations, and issuance, which
   * sends an `Idempotency-Key` so a retry answers the key already issued.
   */
  maxRetries?: number;
}

export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Override `KeyleashOptions.maxRetries` for this call. */
  maxRetries?: number;
}

/** Issuing options: `idempotencyKey` defaults to a fresh UUID, reused by this call's retries. */
export interface IssueCallOptions extends CallOptions {
  idempotencyKey?: string;
}

const RETRY_STATUSES = new Set([429, 502, 503, 504]);
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), reject(signal.reason)), { once: true });
  });

/** What a minting key may mint (docs/minting.md). */
export interface CreateMintingKeyParams {
  /** The vendors minted keys may be for. */
  vendors: string[];
  /** The widest patterns a minted key can have. */
  allowedEndpoints: string[];
  /** The highest daily cap (USD) a minted key gets; null or omitted: no maximum. */
  maxDailyUsdCap?: number | string | null;
  /** The longest a minted key lives: `"30s"`, `"5m"`, `"1h"`, `"1d"` or seconds. Default `1h`. */
  maxTtl?: string | number;
  /** Budgets every minted key counts against, whatever its caveats say. */
  budgets?: string[];
  /** Further budgets minted keys may name: ids, or prefixes ending in `*` (`user:*`). */
  allowedBudgets?: string[];
  mode?: Mode;
  label?: string;
  metadata?: Record<string, string>;
}

export interface MintingKey {
  object: 'minting_key';
  id: string;
  label: string;
  mode: Mode;
  vendors: string[];
  allowed_endpoints: string[];
  max_daily_usd_cap: number | null;
  max_daily_cap_micros: number | null;
  /** Seconds. */
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
  /** In the answers to create and rotate only: give it to `new Minter(secret)`. */
  secret?: string;
  /** In the answer to revoke only: the minted keys in use it revoked. */
  keys_revoked?: number;
  [k: string]: unknown;
}

const trimSlash = (u: string) => u.replace(/\/+$/, '');
const budgetPath = (id: string) => `/v1/budgets/${encodeURIComponent(id)}`;
const pagePath = (base: string, p: PageParams) => {
  const q = new URLSearchParams();
  if (p.limit !== undefined) q.set('limit', String(p.limit));
  if (p.cursor) q.set('cursor', p.cursor);
  const qs = q.toString();
  return qs ? `${base}?${qs}` : base;
};

export class Keyleash {
  readonly apiUrl: string;
  readonly proxyUrl: string;
  readonly #adminToken: string;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  readonly #maxRetries: number;

  constructor(options: KeyleashOptions = {}) {
    const apiUrl = options.apiUrl ?? process.env.KEYLEASH_API_URL;
    const proxyUrl = options.proxyUrl ?? process.env.KEYLEASH_PROXY_URL;
    const adminToken = options.adminToken ?? process.env.KEYLEASH_ADMIN_TOKEN;
    if (!apiUrl) throw new TypeError('keyleash: apiUrl (or KEYLEASH_API_URL) is required');
    if (!proxyUrl) throw new TypeError('keyleash: proxyUrl (or KEYLEASH_PROXY_URL) is required');
    if (!adminToken) throw new TypeError('keyleash: adminToken (or KEYLEASH_ADMIN_TOKEN) is required');
    this.apiUrl = trimSlash(apiUrl);
    this.proxyUrl = trimSlash(proxyUrl);
    this.#adminToken = adminToken;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#maxRetries = options.maxRetries ?? 2;
  }

  /**
   * Issues a vault key (the API answers 201). The `token` is in this answer only. Sent with an
   * `Idempotency-Key` (a fresh UUID unless given), so the retries never make a second key.
   */
  issueKey(params: IssueKeyParams | IssueMcpKeyParams, opts: IssueCallOptions = {}): Promise<IssuedKey> {
    const body: Record<string, unknown> = { vendor: params.vendor };
    if ('allowedTools' in params) body.allowed_tools = params.allowedTools;
    else body.allowed_endpoints = params.allowedEndpoints;
    if (params.dailyUsdCap !== undefined) body.daily_usd_cap = params.dailyUsdCap;
    if (params.expiresIn !== undefined) body.expires_in = params.expiresIn;
    if (params.label !== undefined) body.label = params.label;
    if (params.mode !== undefined) body.mode = params.mode;
    if (params.metadata !== undefined) body.metadata = params.metadata;
    if (params.budgets !== undefined) body.budgets = params.budgets;
    if (params.rateLimit !== undefined) body.rate_limit = params.rateLimit;
    return this.#call<IssuedKey>('POST', '/v1/keys', body, opts, opts.idempotencyKey ?? randomUUID());
  }

  /** Reads a key with its spend today, remaining cap, status and request count. */
  getKey(id: string, opts?: CallOptions): Promise<VaultKey> {
    return this.#call<VaultKey>('GET', `/v1/keys/${encodeURIComponent(id)}`, undefined, opts);
  }

  /** One page of keys, newest first. */
  listKeys(params: ListKeysParams = {}, opts?: CallOptions): Promise<List<VaultKey>> {
    const q = new URLSearchParams();
    if (params.status) q.set('status', params.status);
    if (params.vendor) q.set('vendor', params.vendor);
    if (params.mode) q.set('mode', params.mode);
    if (params.labelPrefix !== undefined) q.set('label_prefix', params.labelPrefix);
    if (params.mintingKey !== undefined) q.set('minting_key', params.mintingKey);
    for (const [k, v] of Object.entries(params.metadata ?? {})) q.append(`metadata[${k}]`, v);
    if (params.limit !== undefined) q.set('limit', String(params.limit));
    if (params.cursor) q.set('cursor', params.cursor);
    const qs = q.toString();
    return this.#call<List<VaultKey>>('GET', `/v1/keys${qs ? `?${qs}` : ''}`, undefined, opts);
  }

  /** Every key matching the filter, following `next_cursor` page by page. */
  async *listAllKeys(params: Omit<ListKeysParams, 'cursor'> = {}, opts?: CallOptions): AsyncGenerator<VaultKey> {
    let cursor: string | undefined;
    do {
      const page = await this.listKeys({ ...params, cursor }, opts);
      yield* page.data;
      cursor = page.has_more && page.next_cursor ? page.next_cursor : undefined;
    } while (cursor);
  }

  /**
   * Revokes a key. Idempotent: revoking a revoked key answers it again. An unknown id throws
   * `KeyNotFoundError` unless `ignoreNotFound` (then resolves to undefined) — handy in cleanup code.
   */
  async revokeKey(id: string, opts: CallOptions & { ignoreNotFound?: boolean } = {}): Promise<VaultKey | undefined> {
    try {
      return await this.#call<VaultKey>('DELETE', `/v1/keys/${encodeURIComponent(id)}`, undefined, opts);
    } catch (err) {
      if (opts.ignoreNotFound && err instanceof KeyNotFoundError) return undefined;
      throw err;
    }
  }

  /**
   * The kill switch: revokes every active key matching the filter (`POST /v1/keys/revoke`).
   * With `dryRun` it only counts. A call with no filter needs `all: true`.
   */
  revokeKeys(params: RevokeKeysParams, opts?: CallOptions): Promise<RevokeKeysResult> {
    const body: Record<string, unknown> = {};
    if (params.labelPrefix !== undefined) body.label_prefix = params.labelPrefix;
    if (params.metadata !== undefined) body.metadata = params.metadata;
    if (params.vendor !== undefined) body.vendor = params.vendor;
    if (params.mode !== undefined) body.mode = params.mode;
    if (params.budget !== undefined) body.budget = params.budget;
    if (params.dryRun !== undefined) body.dry_run = params.dryRun;
    if (params.all !== undefined) body.all = params.all;
    return this.#call<RevokeKeysResult>('POST', '/v1/keys/revoke', body, opts);
  }

  /** Creates a minting key (the API answers 201); its `secret` is in this answer only. */
  createMintingKey(params: CreateMintingKeyParams, opts?: CallOptions): Promise<MintingKey & { secret: string }> {
    const body: Record<string, unknown> = { vendors: params.vendors, allowed_endpoints: params.allowedEndpoints };
    if (params.maxDailyUsdCap !== undefined) body.max_daily_usd_cap = params.maxDailyUsdCap;
    if (params.maxTtl !== undefined) body.max_ttl = params.maxTtl;
    if (params.budgets !== undefined) body.budgets = params.budgets;
    if (params.allowedBudgets !== undefined) body.allowed_budgets = params.allowedBudgets;
    if (params.mode !== undefined) body.mode = params.mode;
    if (params.label !== undefined) body.label = params.label;
    if (params.metadata !== undefined) body.metadata = params.metadata;
    return this.#call('POST', '/v1/minting_keys', body, opts);
  }

  getMintingKey(id: string, opts?: CallOptions): Promise<MintingKey> {
    return this.#call('GET', `/v1/minting_keys/${encodeURIComponent(id)}`, undefined, opts);
  }

  /** One page of minting keys, newest first. */
  listMintingKeys(params: PageParams = {}, opts?: CallOptions): Promise<List<MintingKey>> {
    return this.#call('GET', pagePath('/v1/minting_keys', params), undefined, opts);
  }

  /**
   * A new secret (version + 1). Keys minted under older versions keep working for
   * `gracePeriod` (default: the minting key's max TTL; 0 stops them now).
   */
  rotateMintingKey(id: string, params: { gracePeriod?: string | number } = {}, opts?: CallOptions): Promise<MintingKey & { secret: string }> {
    const body = params.gracePeriod === undefined ? {} : { grace_period: params.gracePeriod };
    return this.#call('POST', `/v1/minting_keys/${encodeURIComponent(id)}/rotate`, body, opts);
  }

  /** Revokes a minting key and every key minted from it, used or not. Idempotent. */
  revokeMintingKey(id: string, opts?: CallOptions): Promise<MintingKey> {
    return this.#call('DELETE', `/v1/minting_keys/${encodeURIComponent(id)}`, undefined, opts);
  }

  /** Creates a budget (the API answers 201). A taken id throws `BudgetExistsError`. */
  createBudget(params: CreateBudgetParams, opts?: CallOptions): Promise<Budget> {
    const body: Record<string, unknown> = { id: params.id, limit_usd: params.limitUsd, period: params.period };
    if (params.frozen !== undefined) body.frozen = params.frozen;
    if (params.metadata !== undefined) body.metadata = params.metadata;
    if (params.rateLimit !== undefined) body.rate_limit = params.rateLimit;
    return this.#call<Budget>('POST', '/v1/budgets', body, opts);
  }

  /** Reads a budget with its spend and remaining limit in the current window (`BudgetNotFoundError` if none). */
  getBudget(id: string, opts?: CallOptions): Promise<Budget> {
    return this.#call<Budget>('GET', budgetPath(id), undefined, opts);
  }

  /** One page of budgets by id, each with its spend in the current window. */
  listBudgets(params: ListBudgetsParams = {}, opts?: CallOptions): Promise<List<Budget>> {
    return this.#call<List<Budget>>('GET', pagePath('/v1/budgets', params), undefined, opts);
  }

  /** Every budget, following `next_cursor` page by page. */
  async *listAllBudgets(params: Omit<ListBudgetsParams, 'cursor'> = {}, opts?: CallOptions): AsyncGenerator<Budget> {
    let cursor: string | undefined;
    do {
      const page = await this.listBudgets({ ...params, cursor }, opts);
      yield* page.data;
      cursor = page.has_more && page.next_cursor ? page.next_cursor : undefined;
    } while (cursor);
  }

  /** Changes a budget's limit, frozen state, metadata (replaced) or rate limit (null removes it); effective for the next call. */
  updateBudget(id: string, params: UpdateBudgetParams, opts?: CallOptions): Promise<Budget> {
    const body: Record<string, unknown> = {};
    if (params.limitUsd !== undefined) body.limit_usd = params.limitUsd;
    if (params.frozen !== undefined) body.frozen = params.frozen;
    if (params.metadata !== undefined) body.metadata = params.metadata;
    if (params.rateLimit !== undefined) body.rate_limit = params.rateLimit;
    return this.#call<Budget>('PATCH', budgetPath(id), body, opts);
  }

  /** Deletes a budget. While an active key is attached it throws `BudgetInUseError` (409). */
  deleteBudget(id: string, opts?: CallOptions): Promise<BudgetDeleted> {
    return this.#call<BudgetDeleted>('DELETE', budgetPath(id), undefined, opts);
  }

  /**
   * A budget's spend in one window: `YYYY-MM-DD` (day budgets), `YYYY-MM` (month) or `total`.
   * Without `window`, the current one.
   */
  budgetSpend(id: string, params: { window?: string } = {}, opts?: CallOptions): Promise<Budget> {
    const qs = params.window !== undefined ? `?${new URLSearchParams({ window: params.window })}` : '';
    return this.#call<Budget>('GET', `${budgetPath(id)}/spend${qs}`, undefined, opts);
  }

  /** Freezes a budget: every call of every attached key is refused (403 `budget_frozen`) and no key can be issued against it. */
  freezeBudget(id: string, opts?: CallOptions): Promise<Budget> {
    return this.#call<Budget>('POST', `${budgetPath(id)}/freeze`, undefined, opts);
  }

  /** Unfreezes a budget. */
  unfreezeBudget(id: string, opts?: CallOptions): Promise<Budget> {
    return this.#call<Budget>('POST', `${budgetPath(id)}/unfreeze`, undefined, opts);
  }

  /** One page of the audit log, newest first. */
  listAudit(params: ListAuditParams = {}, opts?: CallOptions): Promise<List<AuditRecord>> {
    const q = new URLSearchParams();
    if (params.keyId) q.set('key_id', params.keyId);
    if (params.vendor) q.set('vendor', params.vendor);
    if (params.decision) q.set('decision', params.decision);
    if (params.code) q.set('code', params.code);
    if (params.limit !== undefined) q.set('limit', String(params.limit));
    if (params.cursor) q.set('cursor', params.cursor);
    const qs = q.toString();
    return this.#call<List<AuditRecord>>('GET', `/v1/audit${qs ? `?${qs}` : ''}`, undefined, opts);
  }

  async #call<T>(method: string, path: string, body: unknown, opts: CallOptions = {}, idempotencyKey?: string): Promise<T> {
    const retryable = method === 'GET' || method === 'DELETE' || idempotencyKey !== undefined;
    const maxRetries = retryable ? Math.max(0, opts.maxRetries ?? this.#maxRetries) : 0;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#callOnce<T>(method, path, body, opts, idempotencyKey);
      } catch (err) {
        const again = err instanceof KeyleashConnectionError ? !opts.signal?.aborted : err instanceof KeyleashError && RETRY_STATUSES.has(err.status);
        if (!again || attempt >= maxRetries) throw err;
        const retryAfter = Number((err as KeyleashError).body?.retry_after ?? (err as { retryAfterSeconds?: number }).retryAfterSeconds);
        const backoff = 100 * 2 ** attempt * (0.5 + Math.random() / 2);
        await sleep(Math.min(2000, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : backoff), opts.signal);
      }
    }
  }

  async #callOnce<T>(method: string, path: string, body: unknown, opts: CallOptions, idempotencyKey: string | undefined): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(this.apiUrl + path, {
        method,
        headers: {
          authorization: `Bearer ${this.#adminToken}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
      text = await res.text();
    } catch (err) {
      const timedOut = timeout.aborted && !opts.signal?.aborted;
      throw new KeyleashConnectionError(
        0,
        {
          code: timedOut ? 'timeout' : 'connection_error',
          message: timedOut
            ? `keyleash control API did not answer ${method} ${path.split('?')[0]} within ${timeoutMs} ms`
            : `keyleash control API unreachable (${method} ${path.split('?')[0]}): ${(err as Error).message}`,
        },
        { cause: err },
      );
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (res.ok) return parsed as T;
    const errBody: KeyleashErrorBody =
      parsed && typeof parsed === 'object' && typeof (parsed as { code?: unknown }).code === 'string'
        ? (parsed as KeyleashErrorBody)
        : { code: `http_${res.status}`, message: `keyleash answered ${res.status}: ${text.slice(0, 200)}` };
    throw errorFromBody(res.status, errBody, res.headers);
  }
}
