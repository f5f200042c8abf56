import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { masterKeysFromEnv, unsealTree } from '../secrets/sealed.js';
import { parseTtlSeconds } from '../policy/ttl.js';
import { mcpServersSchema } from '../mcp/config-schema.js';
import { anthropicSchema, genericVendorsSchema, openaiSchema, twilioSchema, VENDOR_ENV } from '../vendors/config-schema.js';

// One schema with its defaults, parsed once at boot, then frozen. A config file (YAML or JSON)
// may refer to environment variables as ${NAME}; a few KEYLEASH_* variables override it directly.

const ttl = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    const r = parseTtlSeconds(v);
    if (!r.ok) {
      ctx.addIssue({ code: 'custom', message: r.reason });
      return z.NEVER;
    }
    return r.seconds;
  });

const listen = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535),
  /** Serve HTTPS from these PEM files instead of plain HTTP. */
  tls: z.strictObject({ cert_file: z.string().min(1), key_file: z.string().min(1) }).optional(),
});

const baseUrl = z
  .string()
  .url()
  .refine((u) => /^https?:$/.test(new URL(u).protocol), 'must be an http(s) URL')
  .refine((u) => {
    const p = new URL(u);
    return (p.pathname === '/' || p.pathname === '') && !p.search && !p.hash && !p.username;
  }, 'must be an origin only (scheme, host, port), with no path, query or credentials')
  .transform((u) => new URL(u).origin);

const stripeVendor = z.strictObject({
  base_url: baseUrl.default('https://api.stripe.com'),
  // Checked by prefix so a live secret can never be configured where a test one belongs.
  test_secret: z
    .string()
    .regex(/^(sk|rk)_test_[0-9A-Za-z_]+$/, 'must be a Stripe test secret (sk_test_… or rk_test_…)')
    .optional(),
  live_secret: z
    .string()
    .regex(/^(sk|rk)_live_[0-9A-Za-z_]+$/, 'must be a Stripe live secret (sk_live_… or rk_live_…)')
    .optional(),
  /** The account's currency: what a refund without `currency` is priced in. */
  default_currency: z.string().regex(/^[a-z]{3}$/).default('usd'),
  /** USD per one major unit of each currency, for pricing non-USD calls. */
  fx: z.record(z.string().regex(/^[a-z]{3}$/), z.union([z.string(), z.number()])).default({}),
});

const vendorsSchema = z.strictObject({
  stripe: stripeVendor.optional(),
  twilio: twilioSchema.optional(),
  openai: openaiSchema.optional(),
  anthropic: anthropicSchema.optional(),
  /** Vendors defined in config alone (see the README's "Vendors" section). */
  generic: genericVendorsSchema,
});

/** What an admin token may issue (see the README's "Budgets, limits and tenants"). */
export const policySchema = z.strictObject({
  max_ttl: ttl.optional(),
  max_daily_usd_cap: z.number().nonnegative().optional(),
  vendors: z.array(z.string().min(1)).optional(),
  endpoints: z.array(z.string().min(1)).optional(),
});

/** Signed webhooks (see the README's "Alerts"). */
const alertsSchema = z.strictObject({
  webhooks: z
    .array(
      z.strictObject({
        url: z.string().regex(/^https?:\/\//, 'must be an http:// or https:// URL'),
        secret: z.string().min(16, 'must be at least 16 characters'),
        events: z.array(z.enum(['*', 'cap.exhausted', 'budget.threshold', 'key.revoked', 'kill_switch.used'])).default(['*']),
      }),
    )
    .default([]),
  /** Tries per delivery, the first included. */
  max_attempts: z.number().int().min(1).max(20).default(6),
  /** Wait before the first retry; doubled for each one after. */
  retry_base_ms: z.number().int().min(1).default(1_000),
});

const adminTokenSchema = z.union([
  z.string().min(16, 'must be at least 16 characters'),
  z.strictObject({
    token: z.string().min(16, 'must be at least 16 characters'),
    name: z.string().max(100).optional(),
    policy: policySchema.optional(),
  }),
]);

export const configSchema = z.strictObject({
  admin_token: z.string().min(16, 'must be at least 16 characters'),
  /**
   * Secret for the audit log's HMAC chain. Defaults to one derived from admin_token; set it (or
   * KEYLEASH_AUDIT_KEY) to keep the chain verifiable across admin-token rotations.
   */
  audit_key: z.string().min(16).optional(),
  /**
   * Secret every minting key's secret is derived from (docs/minting.md). Defaults to one derived
   * from admin_token; set it (or KEYLEASH_MINT_KEY) so rotating the admin token keeps minting
   * keys working. Every replica needs the same one.
   */
  mint_key: z.string().min(16).optional(),
  listen: z
    .strictObject({
      api: listen.default({ host: '127.0.0.1', port: 8080 }),
      proxy: listen.default({ host: '127.0.0.1', port: 8081 }),
    })
    .default({ api: { host: '127.0.0.1', port: 8080 }, proxy: { host: '127.0.0.1', port: 8081 } }),
  store: z
    .strictObject({
      path: z.string().default('./.keyleash/keyleash.sqlite'),
      synchronous: z.enum(['NORMAL', 'FULL']).default('NORMAL'),
      /** postgres://… — with redis_url, selects the scale-out backend instead of SQLite. */
      url: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
      redis_url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional(),
      /** Postgres schema for keyleash's tables (created if missing). */
      schema: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'must be a plain identifier').default('public'),
      /** Prefix of every Redis key and channel. */
      redis_prefix: z.string().min(1).default('keyleash:'),
      /** Postgres connections per replica. */
      pool_size: z.number().int().positive().default(20),
    })
    .refine((s) => (s.url === undefined) === (s.redis_url === undefined), 'url and redis_url must be set together')
    .default({ path: './.keyleash/keyleash.sqlite', synchronous: 'NORMAL', schema: 'public', redis_prefix: 'keyleash:', pool_size: 20 }),
  keys: z
    .strictObject({
      default_ttl: ttl.default(3600),
      max_ttl: ttl.default(86400),
      /** Largest daily cap one key may carry, in USD. */
      max_daily_usd_cap: z.number().positive().default(1_000_000),
    })
    .default({ default_ttl: 3600, max_ttl: 86400, max_daily_usd_cap: 1_000_000 }),
  proxy: z
    .strictObject({
      max_body_bytes: z.number().int().positive().default(1024 * 1024),
      connect_timeout_ms: z.number().int().positive().default(5_000),
      headers_timeout_ms: z.number().int().positive().default(60_000),
      body_timeout_ms: z.number().int().positive().default(120_000),
      /** The caller's whole request body must arrive within this, counted from its headers. */
      request_timeout_ms: z.number().int().positive().default(30_000),
      /** Longest gap allowed between two pieces of the caller's request body. */
      request_idle_timeout_ms: z.number().int().positive().default(10_000),
      /** Denials of calls with no valid key, recorded one by one per address and window; the rest are summed up. */
      denial_audit_per_window: z.number().int().min(0).default(20),
      denial_audit_window_ms: z.number().int().positive().default(60_000),
      connections_per_upstream: z.number().int().positive().default(128),
      /** How long a reservation may stay open before it is settled at its estimate. */
      stale_reservation_after: ttl.default(600),
      key_cache_size: z.number().int().min(0).default(100_000),
    })
    .default({
      max_body_bytes: 1024 * 1024,
      connect_timeout_ms: 5_000,
      headers_timeout_ms: 60_000,
      body_timeout_ms: 120_000,
      request_timeout_ms: 30_000,
      request_idle_timeout_ms: 10_000,
      denial_audit_per_window: 20,
      denial_audit_window_ms: 60_000,
      connections_per_upstream: 128,
      stale_reservation_after: 600,
      key_cache_size: 100_000,
    }),
  /** Brakes on the control API (see docs/errors.md#rate_limited). */
  control: z
    .strictObject({
      /** Keys (and minting keys) one admin token may create per second, sustained… */
      issue_rate_per_second: z.number().positive().default(200),
      /** …and at once, after a quiet spell. */
      issue_burst: z.number().int().positive().default(500),
      /** Failed admin-token attempts one client address may make at once before 429s… */
      auth_failure_burst: z.number().int().positive().default(100),
      /** …and per second after that. A valid token is never refused for its address's failures. */
      auth_failures_per_second: z.number().positive().default(1),
    })
    .default({ issue_rate_per_second: 200, issue_burst: 500, auth_failure_burst: 100, auth_failures_per_second: 1 }),
  /** A graceful stop on SIGTERM/SIGINT (see the README's "Draining"). */
  shutdown: z
    .strictObject({
      /** /readyz answers 503 at once, while both listeners keep accepting for this long… */
      drain_seconds: z.number().min(0).max(3600).default(5),
      /** …then calls in flight get this long to finish before their connections (streams too) are cut. */
      deadline_seconds: z.number().min(0).max(3600).default(25),
    })
    .default({ drain_seconds: 5, deadline_seconds: 25 }),
  vendors: vendorsSchema.default({ generic: {} }),
  /** Upstream MCP servers, each reached at {PROXY}/mcp/{name} with a vault key (docs/mcp.md). */
  mcp_servers: mcpServersSchema,
  /** More admin tokens for the default tenant, each with an optional issuance policy. */
  admin_tokens: z.array(adminTokenSchema).default([]),
  /** Policy of the default tenant's tokens (admin_token included). */
  policy: policySchema.optional(),
  /** The default tenant's alert webhooks. */
  alerts: alertsSchema.optional(),
  /**
   * More tenants (projects) on this gateway, each with its own admin tokens, vendor credentials,
   * keys, budgets and audit log. The top-level admin_token and vendors are tenant "default".
   */
  tenants: z
    .record(
      z.string().regex(/^(?!default$)[a-z0-9][a-z0-9_-]{0,39}$/, 'tenant ids are 1-40 of a-z 0-9 _ - and not "default"'),
      z.strictObject({
        admin_tokens: z.array(adminTokenSchema).min(1),
        vendors: vendorsSchema.default({ generic: {} }),
        mcp_servers: mcpServersSchema,
        policy: policySchema.optional(),
        alerts: alertsSchema.optional(),
      }),
    )
    .default({}),
  log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type ConfigInput = z.input<typeof configSchema>;
export type Config = Readonly<z.output<typeof configSchema>>;

export class ConfigError extends Error {}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** Replaces ${NAME} in every string with the environment variable; a missing one is an error. */
export function interpolateEnv(value: unknown, env: NodeJS.ProcessEnv, path = ''): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const v = env[name];
      if (v === undefined) throw new ConfigError(`${path || 'config'}: environment variable ${name} is not set`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolateEnv(v, env, `${path}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolateEnv(v, env, path ? `${path}.${k}` : k)]),
    );
  }
  return value;
}

function parseListen(v: string, name: string): { host: string; port: number } {
  const m = /^(?:(.*):)?([0-9]{1,5})$/.exec(v);
  if (!m) throw new ConfigError(`${name} must look like "127.0.0.1:8080" or "8080"`);
  return { host: m[1] || '127.0.0.1', port: Number(m[2]) };
}

function setIn(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let o = obj;
  for (const p of path.slice(0, -1)) {
    if (!o[p] || typeof o[p] !== 'object') o[p] = {};
    o = o[p] as Record<string, unknown>;
  }
  o[path[path.length - 1]!] = value;
}

/** The environment variables that override the file (documented in the README). */
export function applyEnvOverrides(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out = structuredClone(raw);
  const str: Array<[string, string[]]> = [
    ['KEYLEASH_ADMIN_TOKEN', ['admin_token']],
    ['KEYLEASH_AUDIT_KEY', ['audit_key']],
    ['KEYLEASH_MINT_KEY', ['mint_key']],
    ['KEYLEASH_DATA', ['store', 'path']],
    ['KEYLEASH_DATABASE_URL', ['store', 'url']],
    ['KEYLEASH_REDIS_URL', ['store', 'redis_url']],
    ['KEYLEASH_LOG_LEVEL', ['log_level']],
    ['KEYLEASH_STRIPE_BASE_URL', ['vendors', 'stripe', 'base_url']],
    ['KEYLEASH_STRIPE_TEST_SECRET', ['vendors', 'stripe', 'test_secret']],
    ['KEYLEASH_STRIPE_LIVE_SECRET', ['vendors', 'stripe', 'live_secret']],
    ...VENDOR_ENV,
  ];
  for (const [name, path] of str) {
    const v = env[name];
    if (v !== undefined && v !== '') setIn(out, path, v);
  }
  const num: Array<[string, string[]]> = [
    ['KEYLEASH_DRAIN_SECONDS', ['shutdown', 'drain_seconds']],
    ['KEYLEASH_SHUTDOWN_DEADLINE_SECONDS', ['shutdown', 'deadline_seconds']],
  ];
  for (const [name, path] of num) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    if (!/^[0-9]+(\.[0-9]+)?$/.test(v.trim())) throw new ConfigError(`${name} must be a number of seconds`);
    setIn(out, path, Number(v));
  }
  if (env.KEYLEASH_API_LISTEN) setIn(out, ['listen', 'api'], parseListen(env.KEYLEASH_API_LISTEN, 'KEYLEASH_API_LISTEN'));
  if (env.KEYLEASH_PROXY_LISTEN) {
    setIn(out, ['listen', 'proxy'], parseListen(env.KEYLEASH_PROXY_LISTEN, 'KEYLEASH_PROXY_LISTEN'));
  }
  return out;
}

export function formatIssues(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`).join('; ');
}

export function parseConfig(raw: unknown): Config {
  const r = configSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`invalid configuration: ${formatIssues(r.error)}`);
  if (r.data.keys.default_ttl > r.data.keys.max_ttl) {
    throw new ConfigError('invalid configuration: keys.default_ttl is longer than keys.max_ttl');
  }
  return deepFreeze(r.data);
}

/** Reads a config file (optional), interpolates ${ENV}, applies KEYLEASH_* overrides, validates, freezes. */
export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Config {
  let raw: unknown = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
    }
    try {
      raw = parseYaml(text) ?? {};
    } catch (e) {
      throw new ConfigError(`config file ${file} is not valid YAML/JSON: ${(e as Error).message}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config file ${file} must hold an object`);
  }
  const withEnv = applyEnvOverrides(interpolateEnv(raw, env) as Record<string, unknown>, env);
  let opened: unknown;
  try {
    opened = unsealTree(withEnv, masterKeysFromEnv(env));
  } catch (e) {
    throw new ConfigError(`cannot open a sealed secret: ${(e as Error).message}`);
  }
  return parseConfig(opened);
}
