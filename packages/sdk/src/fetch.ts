import { resolveBinding, type BindOptions } from './bind.js';
import { errorFromBody, isKeyleashErrorBody, KeyleashConnectionError } from './errors.js';

export interface VaultFetchOptions extends BindOptions {
  /**
   * Throw the typed error (`CapExhaustedError`, `KeyRevokedError`, …) when keyleash itself refuses
   * the call. Default true. The vendor's own errors (e.g. Stripe's 402) always come back as responses.
   */
  throwOnKeyleashError?: boolean;
  /** The underlying fetch (default: the global one). */
  fetch?: typeof fetch;
}

export type VaultFetch = (input: string | URL, init?: RequestInit) => Promise<Response>;

/**
 * A `fetch` that calls through the keyleash proxy with a vault key. The key is looked up at call
 * time, so a module-level `const stripeFetch = vaultFetch('stripe')` works in any request scope.
 *
 * - A path (`/stripe/v1/payment_intents`, `/v1/payment_intents`) is sent to the proxy as is.
 * - A vendor URL (`https://api.stripe.com/v1/payment_intents`) is sent to `{proxy}/{vendor}/v1/payment_intents`.
 */
export function vaultFetch(options: VaultFetchOptions | string = {}): VaultFetch {
  const opts: VaultFetchOptions = typeof options === 'string' ? { vendor: options } : options;
  const doFetch = opts.fetch ?? globalThis.fetch;
  return async (input, init = {}) => {
    const { token, proxyUrl } = resolveBinding(opts, undefined);
    const url = proxyTarget(input, proxyUrl, opts.vendor);
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${token}`);
    let res: Response;
    try {
      res = await doFetch(url, { ...init, headers });
    } catch (err) {
      // The caller's own abort stays an abort; anything else means the proxy was not reached.
      if (init.signal?.aborted) throw err;
      throw new KeyleashConnectionError(0, { code: 'connection_error', message: `keyleash proxy unreachable (${init.method ?? 'GET'} ${new URL(url).pathname})` }, { cause: err });
    }
    if (res.ok || opts.throwOnKeyleashError === false) return res;
    if (!(res.headers.get('content-type') ?? '').includes('json')) return res;
    let body: unknown;
    try {
      body = await res.clone().json();
    } catch {
      return res;
    }
    if (isKeyleashErrorBody(body)) throw errorFromBody(res.status, body, res.headers);
    return res;
  };
}

function proxyTarget(input: string | URL, proxyUrl: string, vendor: string | undefined): string {
  const s = String(input);
  if (s.startsWith('/')) return proxyUrl + s;
  const u = new URL(s);
  if (u.origin === new URL(proxyUrl).origin) return s;
  const prefix = vendor ? `/${vendor}` : '';
  return `${proxyUrl}${prefix}${u.pathname}${u.search}`;
}
