import { AsyncLocalStorage } from 'node:async_hooks';
import type { IssuedKey, IssueKeyParams, Keyleash, Mode, RateLimit } from './client.js';
import { KeyleashConnectionError, NoVaultKeyError } from './errors.js';
import type { Minter } from './mint.js';

// Request-scoped vault keys: issue → run with the key(s) in AsyncLocalStorage → revoke in finally.

export interface Logger {
  warn(message: string, meta?: Record<string, unknown>): void;
}

const consoleLogger: Logger = {
  warn: (message, meta) => console.warn(`[keyleash] ${message}`, meta ?? ''),
};

/** What one key is issued with. */
export interface KeySpec {
  /** The vendor; in a `vendors` map it defaults to the entry's name. */
  vendor?: string;
  allowedEndpoints: string[];
  dailyUsdCap?: number | null;
  expiresIn?: string | number;
  mode?: Mode;
  label?: string;
  metadata?: Record<string, string>;
  /** Budget ids the key reserves against; replaces the common `budgets` for this key. */
  budgets?: string[];
  rateLimit?: RateLimit;
}

interface CommonOptions {
  /** Issues (and revokes) the keys; its `proxyUrl` is the scope's. Optional with a `minter`. */
  client?: Keyleash;
  /**
   * Mint the keys locally from this minting key instead of issuing them: no call to the
   * gateway when the scope starts. They are not revoked when it ends (their TTL does that)
   * unless `revokeMinted` is true and a `client` is given.
   */
  minter?: Minter;
  revokeMinted?: boolean;
  /** The proxy base URL, when there is no `client` (default `KEYLEASH_PROXY_URL`). */
  proxyUrl?: string;
  label?: string;
  metadata?: Record<string, string>;
  /**
   * Budget ids every key is attached to (e.g. `["user:u42"]`): each call also reserves against
   * them, so many runs share one limit. A key spec's own `budgets` replaces these.
   */
  budgets?: string[];
  /** Applies to every key unless its spec says otherwise. Default: the server's default TTL. */
  expiresIn?: string | number;
  mode?: Mode;
  /** Give up issuing after this long (ms). Default 2000. */
  issueTimeoutMs?: number;
  logger?: Logger;
}

/** One key: `vendor` + its scope. */
export interface SingleKeyOptions extends CommonOptions {
  vendor: string;
  allowedEndpoints: string[];
  dailyUsdCap?: number | null;
  vendors?: undefined;
}

/**
 * Several keys, one per entry: `{ stripe: {...}, twilio: {...} }`. The entry's name is how you
 * read the key back (`currentVaultKey('twilio')`); its `vendor` defaults to the name, so two
 * differently scoped keys for one vendor are `{ charges: { vendor: 'stripe', ... }, refunds: {...} }`.
 */
export interface MultiKeyOptions extends CommonOptions {
  vendors: Record<string, Partial<KeySpec> & { allowedEndpoints: string[] }>;
  vendor?: undefined;
}

export type VaultKeyOptions = SingleKeyOptions | MultiKeyOptions;

export interface VaultKeyScope {
  proxyUrl: string;
  /** The client that revokes the scope's keys when it ends; none for keys that are left to expire. */
  client?: Keyleash;
  /** Entry name → key, in the order they were declared. Empty on a fail-open request. */
  keys: Map<string, IssuedKey>;
}

export const DEFAULT_ISSUE_TIMEOUT_MS = 2000;

const storage = new AsyncLocalStorage<VaultKeyScope>();

/** @internal */
export function keySpecs(
  options: VaultKeyOptions,
  overrides: { label?: string; metadata?: Record<string, string>; budgets?: string[] } = {},
): Array<[string, IssueKeyParams]> {
  const label = overrides.label ?? options.label;
  const metadata = overrides.metadata ?? options.metadata;
  const budgets = 'budgets' in overrides ? overrides.budgets : options.budgets;
  const common = { expiresIn: options.expiresIn, mode: options.mode };
  const build = (name: string, s: Partial<KeySpec> & { allowedEndpoints: string[] }): IssueKeyParams => {
    const p: IssueKeyParams = { vendor: s.vendor ?? name, allowedEndpoints: s.allowedEndpoints };
    if (s.dailyUsdCap !== undefined) p.dailyUsdCap = s.dailyUsdCap;
    const expiresIn = s.expiresIn ?? common.expiresIn;
    if (expiresIn !== undefined) p.expiresIn = expiresIn;
    const mode = s.mode ?? common.mode;
    if (mode !== undefined) p.mode = mode;
    const l = s.label ?? label;
    if (l !== undefined) p.label = l.slice(0, 200);
    const m = s.metadata || metadata ? { ...metadata, ...s.metadata } : undefined;
    if (m !== undefined) p.metadata = m;
    const b = s.budgets ?? budgets;
    if (b !== undefined) p.budgets = [...b];
    if (s.rateLimit !== undefined) p.rateLimit = s.rateLimit;
    return p;
  };
  if (options.vendors) {
    const entries = Object.entries(options.vendors);
    if (entries.length === 0) throw new TypeError('keyleash: `vendors` is empty');
    return entries.map(([name, spec]) => [name, build(name, spec)]);
  }
  if (!options.vendor) throw new TypeError('keyleash: give `vendor` and `allowedEndpoints`, or `vendors`');
  const single: Partial<KeySpec> & { allowedEndpoints: string[] } = { vendor: options.vendor, allowedEndpoints: options.allowedEndpoints };
  if (options.dailyUsdCap !== undefined) single.dailyUsdCap = options.dailyUsdCap;
  return [[options.vendor, build(options.vendor, single)]];
}

/**
 * Issues every key in `specs` in parallel, giving up after `timeoutMs`. All or nothing: when one
 * fails or the time runs out, every key that was (or later gets) issued is revoked, so nothing
 * leaks. Resolves to the keys in declaration order.
 * @internal
 */
export async function issueKeys(
  client: Keyleash,
  specs: Array<[string, IssueKeyParams]>,
  timeoutMs: number,
  logger: Logger,
): Promise<Map<string, IssuedKey>> {
  const tasks = specs.map(([name, p]) =>
    // The HTTP call itself may outlive our deadline; if it then succeeds, its key is revoked below.
    client.issueKey(p, { timeoutMs: Math.max(timeoutMs, 10_000) }).then((k) => [name, k] as const),
  );
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new KeyleashConnectionError(0, { code: 'timeout', message: `issuing vault keys took longer than ${timeoutMs} ms` })),
      timeoutMs,
    );
  });
  try {
    const issued = await Promise.race([Promise.all(tasks), deadline]);
    return new Map(issued);
  } catch (err) {
    for (const t of tasks) t.then(([, k]) => revokeQuietly(client, k.id, logger), () => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** The proxy URL a scope's calls go to. @internal */
export function scopeProxyUrl(options: Pick<CommonOptions, 'client' | 'proxyUrl'>): string {
  const url = options.client?.proxyUrl ?? options.proxyUrl ?? process.env.KEYLEASH_PROXY_URL;
  if (!url) throw new TypeError('keyleash: give `client` or `proxyUrl` (or set KEYLEASH_PROXY_URL)');
  return url.replace(/\/+$/, '');
}

/**
 * The keys of a scope: minted on the spot when there is a `minter` (no I/O), else issued.
 * Resolves to the scope, whose `client` is set when its keys are to be revoked at the end.
 * @internal
 */
export async function acquireScope(
  options: Pick<CommonOptions, 'client' | 'minter' | 'revokeMinted' | 'proxyUrl' | 'issueTimeoutMs'>,
  specs: Array<[string, IssueKeyParams]>,
  logger: Logger,
): Promise<VaultKeyScope> {
  const proxyUrl = scopeProxyUrl(options);
  if (options.minter) {
    const minter = options.minter;
    const keys = new Map<string, IssuedKey>();
    for (const [name, p] of specs) {
      if (p.mode !== undefined && p.mode !== minter.mode) throw new TypeError(`keyleash: a ${minter.mode} minting key cannot mint ${p.mode} keys`);
      if (p.rateLimit !== undefined) throw new TypeError('keyleash: minted keys have no rate_limit of their own; put one on a budget');
      const { mode: _mode, rateLimit: _rate, ...rest } = p;
      keys.set(name, minter.mint(rest));
    }
    return { proxyUrl, keys, ...(options.revokeMinted && options.client ? { client: options.client } : {}) };
  }
  if (!options.client) throw new TypeError('keyleash: give `client` (to issue keys) or `minter` (to mint them)');
  const keys = await issueKeys(options.client, specs, options.issueTimeoutMs ?? DEFAULT_ISSUE_TIMEOUT_MS, logger);
  return { proxyUrl, client: options.client, keys };
}

async function revokeQuietly(client: Keyleash, id: string, logger: Logger): Promise<void> {
  try {
    await client.revokeKey(id, { ignoreNotFound: true });
  } catch (err) {
    logger.warn('could not revoke a vault key; it stays usable until it expires', { key_id: id, error: (err as Error).message });
  }
}

/** Revokes every key of a scope; never throws (failures are logged; keys still expire). @internal */
export async function revokeScope(scope: VaultKeyScope, logger: Logger = consoleLogger): Promise<void> {
  if (!scope.client) return;
  const client = scope.client;
  await Promise.all([...scope.keys.values()].map((k) => revokeQuietly(client, k.id, logger)));
}

/** @internal */
export function defaultLogger(l?: Logger): Logger {
  return l ?? consoleLogger;
}

/** @internal */
export function runInScope<T>(scope: VaultKeyScope, fn: () => T): T {
  return storage.run(scope, fn);
}

/**
 * Issues a vault key (or one per entry of `vendors`), runs `fn` with it in scope and revokes it
 * when `fn` settles — also when it throws. Inside, `currentVaultKey()` and the client helpers
 * (`stripeClient()`, `vaultFetch()`, …) find the key anywhere down the call stack.
 * If issuing fails (or takes longer than `issueTimeoutMs`), `fn` does not run and the error is thrown.
 * With a `minter`, the keys are minted locally instead (see `CommonOptions.minter`).
 */
export function withVaultKey<T>(options: SingleKeyOptions, fn: (key: IssuedKey) => T | Promise<T>): Promise<T>;
export function withVaultKey<T>(options: MultiKeyOptions, fn: (keys: Record<string, IssuedKey>) => T | Promise<T>): Promise<T>;
export async function withVaultKey<T>(options: VaultKeyOptions, fn: (arg: any) => T | Promise<T>): Promise<T> {
  const logger = defaultLogger(options.logger);
  const scope = await acquireScope(options, keySpecs(options), logger);
  try {
    const arg = options.vendors ? Object.fromEntries(scope.keys) : scope.keys.values().next().value;
    return await storage.run(scope, () => fn(arg));
  } finally {
    await revokeScope(scope, logger);
  }
}

/**
 * Runs `fn` with keys you already hold in scope (issued elsewhere, e.g. by a parent process).
 * Nothing is issued or revoked. `keys` is one key (stored under its vendor) or a name → key map.
 */
export function runWithVaultKey<T>(keys: IssuedKey | Record<string, IssuedKey>, proxyUrl: string, fn: () => T): T {
  const map = new Map<string, IssuedKey>();
  if (typeof (keys as IssuedKey).token === 'string') map.set((keys as IssuedKey).vendor, keys as IssuedKey);
  else for (const [n, k] of Object.entries(keys as Record<string, IssuedKey>)) map.set(n, k);
  return storage.run({ proxyUrl: proxyUrl.replace(/\/+$/, ''), keys: map }, fn);
}

/** The scope the current call runs in, if any. */
export function currentScope(): VaultKeyScope | undefined {
  return storage.getStore();
}

/**
 * The vault key in scope. With a name, the key of that `vendors` entry (or, failing that, the
 * first key for that vendor); without, the first key declared. Undefined outside a scope and on
 * a fail-open request whose issuing failed.
 */
export function currentVaultKey(name?: string): IssuedKey | undefined {
  const scope = storage.getStore();
  if (!scope) return undefined;
  if (name === undefined) return scope.keys.values().next().value;
  const byName = scope.keys.get(name);
  if (byName) return byName;
  for (const k of scope.keys.values()) if (k.vendor === name) return k;
  return undefined;
}

/** Like `currentVaultKey`, but throws `NoVaultKeyError` when there is none. */
export function requireVaultKey(name?: string): IssuedKey {
  const k = currentVaultKey(name);
  if (!k) {
    throw new NoVaultKeyError(
      storage.getStore()
        ? `no vault key${name ? ` for "${name}"` : ''} in this request (issuing failed and failOpen is on, or the name is wrong)`
        : 'no vault key in scope: call this inside withVaultKey() or a request handled by the keyleash middleware',
    );
  }
  return k;
}

/** The proxy base URL of the current scope. */
export function currentProxyUrl(): string | undefined {
  return storage.getStore()?.proxyUrl;
}
