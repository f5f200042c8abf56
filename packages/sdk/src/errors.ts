// Typed errors for everything keyleash answers with `{ code, message, param, request_id }`
// (docs/errors.md), from the control API and from the proxy.

export interface KeyleashErrorBody {
  code: string;
  message?: string;
  param?: string;
  request_id?: string;
  docs?: string;
  [k: string]: unknown;
}

/** Any error keyleash answered with. `code` is stable; branch on it (or on the subclass). */
export class KeyleashError extends Error {
  override name = 'KeyleashError';
  /** HTTP status of keyleash's answer (0 when keyleash could not be reached). */
  readonly status: number;
  readonly code: string;
  readonly param: string | undefined;
  readonly requestId: string | undefined;
  /** The whole JSON body keyleash sent. */
  readonly body: KeyleashErrorBody | undefined;

  constructor(status: number, body: KeyleashErrorBody, options?: { cause?: unknown }) {
    super(body.message ?? body.code, options);
    this.status = status;
    this.code = body.code;
    this.param = body.param;
    this.requestId = body.request_id;
    this.body = body;
  }
}

/** Control API: bad or missing admin token (401 `unauthorized`). */
export class UnauthorizedError extends KeyleashError {
  override name = 'UnauthorizedError';
}
/** Control API: bad input (400 `invalid_request` / `invalid_json` / `mode_unavailable`). */
export class InvalidRequestError extends KeyleashError {
  override name = 'InvalidRequestError';
}
/** Control API: no key with that id (404 `key_not_found`). */
export class KeyNotFoundError extends KeyleashError {
  override name = 'KeyNotFoundError';
}
/** Control API: no budget with that id (404 `budget_not_found`). */
export class BudgetNotFoundError extends KeyleashError {
  override name = 'BudgetNotFoundError';
}
/** Control API: a budget with that id already exists (409 `budget_exists`). */
export class BudgetExistsError extends KeyleashError {
  override name = 'BudgetExistsError';
}
/** Control API: an active key is attached to the budget, so it cannot be deleted (409 `budget_in_use`). */
export class BudgetInUseError extends KeyleashError {
  override name = 'BudgetInUseError';
}
/**
 * 403 `budget_frozen`: from the proxy, one of the key's budgets is frozen (every call is refused);
 * from the control API, a key cannot be issued against a frozen budget.
 */
export class BudgetFrozenError extends KeyleashError {
  override name = 'BudgetFrozenError';
  /** The frozen budget's id. */
  get budgetId(): string | undefined {
    return typeof this.body?.budget === 'string' ? this.body.budget : undefined;
  }
}
/** Control API: no minting key with that id (404 `minting_key_not_found`). */
export class MintingKeyNotFoundError extends KeyleashError {
  override name = 'MintingKeyNotFoundError';
}
/** Control API: the admin token's policy does not allow this (403 `policy_violation`; `param` names the field). */
export class PolicyViolationError extends KeyleashError {
  override name = 'PolicyViolationError';
}
/** Proxy: 400 `idempotency_key_reused` — this key already used that `Idempotency-Key` for a different request. */
export class IdempotencyKeyReusedError extends KeyleashError {
  override name = 'IdempotencyKeyReusedError';
}
/** Proxy: 401 `invalid_key`. */
export class InvalidKeyError extends KeyleashError {
  override name = 'InvalidKeyError';
}
/** Proxy: 401 `key_expired`. */
export class KeyExpiredError extends KeyleashError {
  override name = 'KeyExpiredError';
}
/** Proxy: 401 `key_revoked`. */
export class KeyRevokedError extends KeyleashError {
  override name = 'KeyRevokedError';
}
/** Proxy: 403 `endpoint_not_allowed`. */
export class EndpointNotAllowedError extends KeyleashError {
  override name = 'EndpointNotAllowedError';
}
/** Proxy: 403 `cost_unknown`. */
export class CostUnknownError extends KeyleashError {
  override name = 'CostUnknownError';
}
/** What refused a call: the key's own daily cap (`'key'`), or one of its budgets. */
export type CapLimit = 'key' | { kind: 'budget'; id: string; period?: 'day' | 'month' | 'total'; window?: string };
/** What a rate limit applies to: the key's own, or one of its budgets' (all its keys together). */
export interface RateLimitScope {
  kind: 'key' | 'budget';
  id: string;
}

/**
 * Proxy: 429 `cap_exhausted` — the call would take the key's daily spend cap, or one of its
 * budgets, past its limit (`limit` / `budgetId` say which). Not retryable today.
 */
export class CapExhaustedError extends KeyleashError {
  override name = 'CapExhaustedError';
  /** `'key'` for the key's daily cap, `{ kind: 'budget', id, period, window }` for a budget. */
  get limit(): CapLimit | undefined {
    const l = this.body?.limit;
    if (l === 'key') return 'key';
    if (l && typeof l === 'object' && (l as { kind?: unknown }).kind === 'budget') return l as CapLimit;
    return undefined;
  }
  /** The id of the budget that refused the call; undefined when it was the key's own cap. */
  get budgetId(): string | undefined {
    const l = this.limit;
    return l && l !== 'key' ? l.id : undefined;
  }
  get costUsd(): number | undefined {
    return typeof this.body?.cost_usd === 'number' ? this.body.cost_usd : undefined;
  }
  get remainingUsd(): number | undefined {
    return typeof this.body?.remaining_usd === 'number' ? this.body.remaining_usd : undefined;
  }
}
/** Proxy: 429 `rate_limited`; wait `retryAfterSeconds`. */
export class RateLimitedError extends KeyleashError {
  override name = 'RateLimitedError';
  retryAfterSeconds: number | undefined;
  /** Whose rate limit: `{ kind: 'key' | 'budget', id }`. */
  get limit(): RateLimitScope | undefined {
    const l = this.body?.limit;
    return l && typeof l === 'object' && typeof (l as { kind?: unknown }).kind === 'string' ? (l as RateLimitScope) : undefined;
  }
}
/** Proxy: 502 `upstream_error` / 504 `upstream_timeout`. */
export class UpstreamError extends KeyleashError {
  override name = 'UpstreamError';
}
/** keyleash could not be reached, or did not answer in time (status 0, code `connection_error` / `timeout`). */
export class KeyleashConnectionError extends KeyleashError {
  override name = 'KeyleashConnectionError';
}
/** `currentVaultKey()` found nothing in scope where a key is required. */
export class NoVaultKeyError extends Error {
  override name = 'NoVaultKeyError';
}

const BY_CODE: Record<string, new (status: number, body: KeyleashErrorBody) => KeyleashError> = {
  unauthorized: UnauthorizedError,
  invalid_request: InvalidRequestError,
  invalid_json: InvalidRequestError,
  mode_unavailable: InvalidRequestError,
  key_not_found: KeyNotFoundError,
  minting_key_not_found: MintingKeyNotFoundError,
  budget_not_found: BudgetNotFoundError,
  budget_exists: BudgetExistsError,
  budget_in_use: BudgetInUseError,
  budget_frozen: BudgetFrozenError,
  policy_violation: PolicyViolationError,
  idempotency_key_reused: IdempotencyKeyReusedError,
  invalid_key: InvalidKeyError,
  key_expired: KeyExpiredError,
  key_revoked: KeyRevokedError,
  endpoint_not_allowed: EndpointNotAllowedError,
  cost_unknown: CostUnknownError,
  cap_exhausted: CapExhaustedError,
  rate_limited: RateLimitedError,
  upstream_error: UpstreamError,
  upstream_timeout: UpstreamError,
};

/** Codes only keyleash's proxy sends (none collides with a vendor's own error codes). */
const PROXY_CODES = new Set([
  'invalid_key',
  'key_expired',
  'key_revoked',
  'endpoint_not_allowed',
  'cost_unknown',
  'cap_exhausted',
  'budget_frozen',
  'idempotency_key_reused',
  'invalid_amount',
  'invalid_body',
  'body_too_large',
  'store_unavailable',
]);

/** Builds the typed error for a keyleash error body. */
export function errorFromBody(status: number, body: KeyleashErrorBody, headers?: Headers): KeyleashError {
  const Cls = BY_CODE[body.code] ?? KeyleashError;
  const err = new Cls(status, body);
  if (err instanceof RateLimitedError) {
    const ra = Number(headers?.get('retry-after'));
    err.retryAfterSeconds = Number.isFinite(ra) && ra >= 0 ? ra : undefined;
  }
  return err;
}

/**
 * True when a parsed JSON body is keyleash's own error (not the vendor's): keyleash errors carry a
 * top-level string `code` and, for vendor SDKs, `error.type === "keyleash_error"`.
 */
export function isKeyleashErrorBody(body: unknown): body is KeyleashErrorBody {
  if (!body || typeof body !== 'object') return false;
  const b = body as { code?: unknown; error?: { type?: unknown } };
  if (typeof b.code !== 'string') return false;
  return b.error?.type === 'keyleash_error' || typeof (b as { request_id?: unknown }).request_id === 'string';
}

/**
 * The keyleash error code carried by any error: a KeyleashError, or a vendor SDK's error built
 * from keyleash's answer (stripe-node: `err.code`; openai / anthropic: `err.error.code`;
 * twilio: `err.code` / `err.moreInfo`). Undefined when the error is not one of keyleash's.
 */
export function keyleashErrorCode(err: unknown): string | undefined {
  if (!err || typeof err !== 'object') return undefined;
  if (err instanceof KeyleashError) return err.code;
  const e = err as Record<string, any>;
  const candidates = [e.raw, e.error, e.body, e.error?.error, e.raw?.error, e];
  for (const c of candidates) {
    if (c && typeof c === 'object' && c.type === 'keyleash_error' && typeof c.code === 'string') return c.code;
    if (c && typeof c === 'object' && isKeyleashErrorBody(c)) return c.code;
  }
  // stripe-node and twilio copy the body's `code` onto the error itself.
  if (typeof e.code === 'string' && PROXY_CODES.has(e.code)) return e.code;
  // twilio-node's RestException keeps the parsed body only as `moreInfo` / `details` at times.
  for (const c of [e.moreInfo, e.details]) if (c && typeof c === 'object' && isKeyleashErrorBody(c)) return c.code;
  return undefined;
}

/**
 * True for a spent cap, whatever raised it: `CapExhaustedError` from `vaultFetch`, or the
 * stripe / openai / anthropic / twilio client's error for keyleash's 429 `cap_exhausted`.
 * The reference integrations answer it with their own 402.
 */
export function isCapExhausted(err: unknown): boolean {
  return keyleashErrorCode(err) === 'cap_exhausted';
}

/** True when the vault key is past its TTL (401 `key_expired`), whatever client raised it: issue a new key. */
export function isKeyExpired(err: unknown): boolean {
  return keyleashErrorCode(err) === 'key_expired';
}

/** True when the vault key was revoked (401 `key_revoked`), whatever client raised it: do not retry with it. */
export function isKeyRevoked(err: unknown): boolean {
  return keyleashErrorCode(err) === 'key_revoked';
}

/**
 * True when the key may not call this method and path, or this vendor (403
 * `endpoint_not_allowed`): a bug in the key's scope or the tool, never worth a retry.
 */
export function isEndpointNotAllowed(err: unknown): boolean {
  return keyleashErrorCode(err) === 'endpoint_not_allowed';
}

/**
 * True when keyleash could not be reached (status 0, `connection_error` / `timeout`): a
 * `KeyleashConnectionError` from the control API client or `vaultFetch`, or a vendor SDK's own
 * connection error (stripe-node `StripeConnectionError`, openai / anthropic `APIConnectionError`)
 * for a call that was sent to the proxy.
 */
export function isKeyleashUnavailable(err: unknown): boolean {
  if (err instanceof KeyleashConnectionError) return true;
  if (!err || typeof err !== 'object') return false;
  const e = err as { type?: unknown; name?: unknown; constructor?: { name?: unknown } };
  return (
    e.type === 'StripeConnectionError' ||
    e.name === 'APIConnectionError' ||
    e.name === 'APIConnectionTimeoutError' ||
    e.constructor?.name === 'APIConnectionError' ||
    e.constructor?.name === 'APIConnectionTimeoutError'
  );
}
