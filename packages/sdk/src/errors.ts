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
/** Proxy: 429 `cap_exhausted` — the key's daily spend cap would be passed. Not retryable today. */
export class CapExhaustedError extends KeyleashError {
  override name = 'CapExhaustedError';
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
