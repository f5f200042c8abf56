import type { IssuedKey } from './client.js';
import { NoVaultKeyError } from './errors.js';
import { currentProxyUrl, requireVaultKey } from './scope.js';

/** How a helper finds its key and the proxy. Everything defaults to the current scope. */
export interface BindOptions {
  /** The key (or its token) to use instead of the one in scope. */
  key?: IssuedKey | string;
  /** Which key in scope: a `vendors` entry name or a vendor. Defaults to the helper's vendor. */
  vendor?: string;
  /** The proxy base URL; defaults to the scope's (the client's `proxyUrl`). */
  proxyUrl?: string;
}

/** @internal */
export function resolveBinding(opts: BindOptions, defaultVendor: string | undefined): { token: string; proxyUrl: string } {
  let token: string;
  if (typeof opts.key === 'string') token = opts.key;
  else if (opts.key) token = opts.key.token;
  else token = requireVaultKey(opts.vendor ?? defaultVendor).token;
  const proxyUrl = opts.proxyUrl ?? currentProxyUrl();
  if (!proxyUrl) throw new NoVaultKeyError('keyleash: no proxy URL: pass `proxyUrl`, or call inside withVaultKey() / the middleware');
  return { token, proxyUrl: proxyUrl.replace(/\/+$/, '') };
}
