import type { Mode } from '../keys/token.js';

// What the proxy needs to know about a vendor. Vendors are data plus a few pure functions: the
// proxy never branches on a vendor's name.

/** The caller's body, made ready to send upstream. */
export type PreparedBody =
  | { ok: true; body: Buffer; contentType: string | undefined }
  | { ok: false; reason: string };

export type Price =
  | { kind: 'priced'; micros: number }
  /** The call may move money, but how much cannot be known from the request. */
  | { kind: 'unknown'; reason: string }
  /** The request carries money params that cannot be priced safely; refused, never guessed. */
  | { kind: 'invalid'; reason: string; param?: string };

export interface CallInfo {
  method: string;
  /** Decoded, normalized vendor-path segments. */
  segments: readonly string[];
  query: string;
  body: Buffer;
  contentType: string | undefined;
}

/** How a forwarded call ends, judged from the vendor's status code alone. */
export type Outcome = 'executed' | 'refused' | 'unknown';

export interface Vendor {
  readonly name: string;
  /** Fixed by configuration; never taken from the request. */
  readonly origin: string;
  /** The real secret for a mode, or undefined when none is configured (then keys of that mode cannot be issued). */
  secret(mode: Mode): string | undefined;
  /** Headers that carry the real secret upstream. */
  authHeaders(secret: string): Record<string, string>;
  prepareBody(body: Buffer, contentType: string | undefined): PreparedBody;
  price(call: CallInfo): Price;
  outcome(status: number): Outcome;
  /** Extra headers on keyleash's own refusals, in the vendor's dialect (e.g. "do not retry"). */
  readonly refusalHeaders?: Readonly<Record<string, string>>;
}

export type VendorCatalog = ReadonlyMap<string, Vendor>;
