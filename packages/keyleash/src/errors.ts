// The one catalogue of error codes. Every error body keyleash sends is built from an entry here,
// and docs/errors.md documents each code (a test keeps the two in step).

export interface ErrorSpec {
  readonly status: number;
  readonly message: string;
}

export const ERRORS = {
  // control API
  unauthorized: { status: 401, message: 'Missing or invalid admin token.' },
  invalid_request: { status: 400, message: 'The request is invalid.' },
  invalid_json: { status: 400, message: 'The request body is not valid JSON.' },
  unsupported_media_type: { status: 415, message: 'Send the body as application/json.' },
  not_found: { status: 404, message: 'No such resource.' },
  key_not_found: { status: 404, message: 'No key with that id.' },
  mode_unavailable: { status: 400, message: 'The vendor has no credential configured for this mode.' },
  csrf_token_invalid: { status: 403, message: 'A dashboard change needs its CSRF token in the X-Keyleash-CSRF header.' },
  budget_not_found: { status: 404, message: 'No budget with that id.' },
  budget_exists: { status: 409, message: 'A budget with that id already exists.' },
  budget_in_use: { status: 409, message: 'Active keys or a minting key use the budget.' },
  policy_violation: { status: 403, message: 'The key asked for is outside what this admin token may issue.' },
  minting_key_not_found: { status: 404, message: 'No minting key with that id.' },

  // proxy: the key
  invalid_key: { status: 401, message: 'Missing or invalid vault key.' },
  credential_in_url: { status: 400, message: 'A vault key does not belong in a URL; send it in the Authorization header.' },
  key_expired: { status: 401, message: 'The vault key has expired.' },
  key_revoked: { status: 401, message: 'The vault key has been revoked.' },

  // proxy: the call
  endpoint_not_allowed: { status: 403, message: 'The vault key does not allow this endpoint.' },
  invalid_amount: { status: 400, message: 'The call carries an amount keyleash cannot price.' },
  cost_unknown: { status: 403, message: 'keyleash cannot work out what this call costs, and the key has a cap.' },
  header_not_allowed: { status: 403, message: 'The request carries a header that keyleash sets from configuration only.' },
  cap_exhausted: { status: 429, message: 'This call would take the key past its spend cap.' },
  budget_frozen: { status: 403, message: 'A budget of this key is frozen.' },
  idempotency_key_reused: { status: 400, message: 'This Idempotency-Key was already used with a different request.' },
  rate_limited: { status: 429, message: 'Too many requests.' },
  body_too_large: { status: 413, message: 'The request body is too large.' },
  request_timeout: { status: 408, message: 'The request body did not arrive in time.' },
  invalid_body: { status: 400, message: 'The request body cannot be forwarded as sent.' },

  // proxy: the vendor
  upstream_error: { status: 502, message: 'The vendor could not be reached or failed.' },
  upstream_timeout: { status: 504, message: 'The vendor did not answer in time.' },

  // gateway
  store_unavailable: { status: 503, message: 'The store is unavailable; no call is forwarded unmetered.' },
  internal_error: { status: 500, message: 'Internal error.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export const DOCS_BASE = 'docs/errors.md';

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  /**
   * The same code and message in the `error` envelope vendor SDKs read (stripe-node, openai,
   * anthropic): without it they would take a keyleash refusal for a successful answer.
   */
  error: { type: 'keyleash_error'; code: ErrorCode; message: string };
  request_id?: string;
  param?: string;
  docs: string;
  [extra: string]: unknown;
}

/** An error that knows its catalogue code; thrown by routes and turned into a JSON body at the edge. */
export class KeyleashError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly param: string | undefined;
  readonly extra: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, opts?: { param?: string; extra?: Record<string, unknown> }) {
    super(message ?? ERRORS[code].message);
    this.code = code;
    this.status = ERRORS[code].status;
    this.param = opts?.param;
    this.extra = opts?.extra;
  }
}

/** `invalid_request` naming the field at fault: "<param>: <message>". */
export function invalidParam(param: string, message: string): KeyleashError {
  return new KeyleashError('invalid_request', `${param}: ${message}`, { param });
}

export function errorBody(
  code: ErrorCode,
  message?: string,
  opts?: { requestId?: string; param?: string | undefined; extra?: Record<string, unknown> | undefined },
): ErrorBody {
  const text = message ?? ERRORS[code].message;
  const body: ErrorBody = {
    code,
    message: text,
    docs: `${DOCS_BASE}#${code}`,
    error: { type: 'keyleash_error', code, message: text },
  };
  if (opts?.param !== undefined) body.param = opts.param;
  if (opts?.requestId !== undefined) body.request_id = opts.requestId;
  if (opts?.extra) Object.assign(body, opts.extra);
  return body;
}
