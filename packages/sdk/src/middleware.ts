import type { IssuedKey } from './client.js';
import { KeyleashError } from './errors.js';
import { CONTROL_CHARS } from './mint.js';
import {
  acquireScope,
  defaultLogger,
  keySpecs,
  revokeScope,
  scopeProxyUrl,
  type Logger,
  type MultiKeyOptions,
  type SingleKeyOptions,
  type VaultKeyScope,
} from './scope.js';

// What the Express, Fastify and Hono middleware share: decide whether a request gets keys,
// issue them (with a deadline), and revoke them exactly once when the response is done.

/** Paths that never get a key: health probes and metrics scrapes (exact, or a sub-path). */
export const DEFAULT_SKIP_PATHS: readonly string[] = ['/health', '/healthz', '/readyz', '/livez', '/ping', '/metrics', '/favicon.ico'];

type PerRequest<Req, T> = T | ((req: Req) => T);

export type MiddlewareOptions<Req> = (Omit<SingleKeyOptions, 'label' | 'metadata' | 'budgets'> | Omit<MultiKeyOptions, 'label' | 'metadata' | 'budgets'>) & {
  /** The key's label; default `"<METHOD> <path>"`. */
  label?: PerRequest<Req, string>;
  metadata?: PerRequest<Req, Record<string, string>>;
  /** Budget ids the request's keys are attached to, e.g. `(req) => [\`user:${req.user.id}\`]`. */
  budgets?: PerRequest<Req, string[]>;
  /**
   * When issuing fails or times out: false (default) answers 503 `vault_key_unavailable` and the
   * handler does not run; true runs the handler without a key (`currentVaultKey()` is undefined)
   * and logs a warning.
   */
  failOpen?: boolean;
  /** Requests that get no key: a list of paths (exact or prefix of a sub-path) / regexps, or a function. Default `DEFAULT_SKIP_PATHS`. */
  skip?: ReadonlyArray<string | RegExp> | ((req: Req, path: string) => boolean);
  /** Turn the middleware off (e.g. in unit tests): no key is issued. Default false. */
  disabled?: boolean;
};

export const UNAVAILABLE_CODE = 'vault_key_unavailable';

/**
 * The 503 body when a request's keys could not be issued: keyleash's error code as `reason`
 * (`connection_error`, `timeout`, `unauthorized`, …), never hosts, ports or stack details.
 */
export function unavailableBody(err: unknown): { code: string; message: string; reason: string } {
  const reason = err instanceof KeyleashError ? err.code : 'internal_error';
  return { code: UNAVAILABLE_CODE, message: 'could not issue a vault key for this request; try again shortly', reason };
}

export type Begin =
  | { kind: 'skip' }
  | { kind: 'ok'; scope: VaultKeyScope; end: () => Promise<void> }
  | { kind: 'failed-open'; scope: VaultKeyScope; error: unknown }
  | { kind: 'failed-closed'; error: unknown };

/** @internal */
export function shouldSkip<Req>(options: MiddlewareOptions<Req>, req: Req, path: string): boolean {
  if (options.disabled) return true;
  const skip = options.skip ?? DEFAULT_SKIP_PATHS;
  if (typeof skip === 'function') return skip(req, path);
  return skip.some((s) => (typeof s === 'string' ? path === s || path.startsWith(s.endsWith('/') ? s : `${s}/`) : s.test(path)));
}

/** @internal */
export async function begin<Req>(options: MiddlewareOptions<Req>, req: Req, method: string, path: string): Promise<Begin> {
  if (shouldSkip(options, req, path)) return { kind: 'skip' };
  const logger: Logger = defaultLogger(options.logger);
  // A decoded path (Hono decodes) may hold characters no label may: they become U+FFFD in the default.
  const label = typeof options.label === 'function' ? options.label(req) : (options.label ?? `${method} ${path}`.replace(CONTROL_CHARS, '\ufffd'));
  const metadata = typeof options.metadata === 'function' ? options.metadata(req) : options.metadata;
  const budgets = typeof options.budgets === 'function' ? options.budgets(req) : options.budgets;
  try {
    const specs = keySpecs(options as SingleKeyOptions, { label, metadata, budgets });
    const scope: VaultKeyScope = await acquireScope(options, specs, logger);
    let ended: Promise<void> | undefined;
    return { kind: 'ok', scope, end: () => (ended ??= revokeScope(scope, logger)) };
  } catch (error) {
    if (error instanceof TypeError) throw error; // a configuration mistake, not an outage
    if (options.failOpen) {
      logger.warn('could not issue a vault key; failOpen is on, so the request runs without one', {
        method,
        path,
        error: (error as Error)?.message,
      });
      return { kind: 'failed-open', scope: { proxyUrl: scopeProxyUrl(options), keys: new Map() }, error };
    }
    return { kind: 'failed-closed', error };
  }
}

/** The keys of a request as a name → key record. @internal */
export function keysRecord(scope: VaultKeyScope): Record<string, IssuedKey> {
  return Object.fromEntries(scope.keys);
}
