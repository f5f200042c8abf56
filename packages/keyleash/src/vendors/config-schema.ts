import { z } from 'zod';
import { parseEndpointPattern } from '../policy/endpoints.js';
import { parseUsdToMicros } from '../policy/money.js';

// The configuration of the vendors beyond Stripe (src/config/config.ts holds them under
// `vendors`). Validated once at boot: a price, name or secret that is wrong stops the start.

/** Names that are built-in vendors; a generic vendor may not take one. */
export const BUILTIN_VENDORS = ['stripe', 'twilio', 'openai', 'anthropic'] as const;

const origin = (dflt?: string) => {
  const s = z
    .string()
    .url()
    .refine((u) => /^https?:$/.test(new URL(u).protocol), 'must be an http(s) URL')
    .refine((u) => {
      const p = new URL(u);
      return (p.pathname === '/' || p.pathname === '') && !p.search && !p.hash && !p.username;
    }, 'must be an origin only (scheme, host, port), with no path, query or credentials')
    .transform((u) => new URL(u).origin);
  return dflt === undefined ? s : s.default(dflt);
};

/** USD as a number or decimal string, at most 6 decimals. */
export const usd = z.union([z.number(), z.string()]).refine((v) => parseUsdToMicros(v).ok, {
  message: 'must be a non-negative USD amount with at most 6 decimals',
});

/** `auto` (free for GET/HEAD, refused for writes on a capped key), `free`, `deny`, or a fixed USD price per call. */
export const unknownCostSchema = z.union([z.enum(['auto', 'free', 'deny']), usd]).default('auto');

const prefixPrices = z.record(z.string().regex(/^\+[0-9]{1,6}$/, 'prefixes look like "+1" or "+44"'), usd);

const secretsDiffer = (test: string | undefined, live: string | undefined) => test === undefined || live === undefined || test !== live;
const SECRETS_DIFFER = 'the test and live secrets must differ: a test key must never reach a live credential';

const modelPrice = z.strictObject({ input: usd, output: usd, cache_write: usd.optional(), cache_read: usd.optional() });

const tokenVendor = (dfltUrl: string, live: RegExp, liveHint: string) =>
  z
    .strictObject({
      base_url: origin(dfltUrl),
      /** The vendor has no test mode: test keys are forwarded with this secret, whatever it is. */
      test_secret: z.string().min(1).optional(),
      live_secret: z.string().regex(live, liveHint).optional(),
      /** Output tokens reserved for a request that sets no maximum. */
      default_max_output_tokens: z.number().int().positive().max(1_000_000).default(4096),
      /** USD per million tokens, merged over the built-in table. */
      models: z.record(z.string().min(1).max(100), modelPrice).default({}),
      unknown_cost: unknownCostSchema,
    })
    .refine((v) => secretsDiffer(v.test_secret, v.live_secret), { message: SECRETS_DIFFER, path: ['test_secret'] });

export const openaiSchema = tokenVendor('https://api.openai.com', /^sk-[A-Za-z0-9_-]{8,}$/, 'must be an OpenAI secret key (sk-…)').safeExtend({
  /** Sent as OpenAI-Organization on every call; a caller's own is refused. */
  organization: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'must be an OpenAI organization id (org-…)').optional(),
  /** Sent as OpenAI-Project on every call; a caller's own is refused. */
  project: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'must be an OpenAI project id (proj_…)').optional(),
});
export const anthropicSchema = tokenVendor('https://api.anthropic.com', /^sk-ant-[A-Za-z0-9_-]{8,}$/, 'must be an Anthropic API key (sk-ant-…)');

const SID = /^AC[0-9a-fA-F]{32}$/;
const sid = z.string().regex(SID, 'must be a Twilio account SID (AC + 32 hex digits)');
const token = z.string().regex(/^[0-9A-Za-z]{16,64}$/, 'must be a Twilio auth token');

export const twilioSchema = z
  .strictObject({
    base_url: origin('https://api.twilio.com'),
    /** Twilio's test credentials (Console → API keys & tokens → Test credentials). */
    test_account_sid: sid.optional(),
    test_auth_token: token.optional(),
    live_account_sid: sid.optional(),
    live_auth_token: token.optional(),
    /** USD per SMS segment by destination prefix, merged over the built-in table. */
    sms: z.strictObject({ default: usd.optional(), prices: prefixPrices.default({}) }).default({ prices: {} }),
    /** USD per MMS message (a message with MediaUrl). */
    mms: z.strictObject({ default: usd.optional(), prices: prefixPrices.default({}) }).default({ prices: {} }),
    /** USD per minute of a call, and the TimeLimit (in minutes) given to a call without one (default 240, Twilio's own). */
    calls: z
      .strictObject({ default: usd.optional(), prices: prefixPrices.default({}), estimate_minutes: z.number().int().positive().max(1440).optional() })
      .default({ prices: {} }),
    unknown_cost: unknownCostSchema,
  })
  .superRefine((v, ctx) => {
    for (const mode of ['test', 'live'] as const) {
      if ((v[`${mode}_account_sid`] === undefined) !== (v[`${mode}_auth_token`] === undefined)) {
        ctx.addIssue({ code: 'custom', path: [`${mode}_auth_token`], message: `set both ${mode}_account_sid and ${mode}_auth_token, or neither` });
      }
    }
    if (v.test_account_sid !== undefined && v.test_account_sid === v.live_account_sid) {
      ctx.addIssue({ code: 'custom', path: ['test_account_sid'], message: SECRETS_DIFFER });
    }
  });

function pathOf(s: string): string[] {
  return s.split('.');
}
const paramPath = z
  .string()
  .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'a param path looks like "amount" or "data.items.0.price"')
  .transform(pathOf);

const endpointRule = z
  .strictObject({
    /** "METHOD /path" (`*` is one segment), as in allowed_endpoints. */
    match: z.string().refine((m) => !('error' in parseEndpointPattern(m)), { message: 'must be a pattern like "POST /v3/mail/send"' }),
    /** A fixed USD price per call. */
    usd: usd.optional(),
    /** A money amount read from the request body (JSON or form) or query. */
    amount: z
      .strictObject({
        path: paramPath,
        unit: z.enum(['major', 'minor']).default('minor'),
        currency: z.string().regex(/^[A-Za-z]{3}$/).optional(),
        currency_path: paramPath.optional(),
      })
      .refine((a) => a.currency !== undefined || a.currency_path !== undefined, { message: 'give currency or currency_path' })
      .optional(),
    /** A number (or a list's length) read from the request × a USD price each. */
    count: z.strictObject({ path: paramPath, usd_each: usd }).optional(),
  })
  .refine((r) => [r.usd, r.amount, r.count].filter((x) => x !== undefined).length === 1, {
    message: 'give exactly one of usd, amount or count',
  });

const headerName = z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'must be an HTTP header name')
  .refine((n) => !['host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'cookie'].includes(n.toLowerCase()), {
    message: 'cannot carry a secret',
  });

// Credentials, framing and proxy headers are never forwarded, whatever the list says.
const NEVER_FORWARDABLE = /^(authorization|proxy-authorization|cookie|host|content-length|content-type|transfer-encoding|connection|keep-alive|te|trailer|upgrade|expect|forwarded|x-forwarded-.*|x-real-ip|x-http-method.*|x-method-override)$/;
const forwardHeader = z
  .string()
  .regex(/^[A-Za-z0-9-]{1,64}\*?$/, 'must be a header name, or a prefix ending in *')
  .transform((n) => n.toLowerCase())
  .refine((n) => n.length > 1 && !NEVER_FORWARDABLE.test(n.replace(/\*$/, '')), { message: 'is never forwarded (a credential, framing or proxy header)' });

const genericAuth = z
  .union([
    z.enum(['bearer', 'basic']).transform((type) => ({ type })),
    z.strictObject({ type: z.literal('bearer') }),
    z.strictObject({ type: z.literal('basic'), username: z.string().min(1).regex(/^[^:]*$/, 'must not contain ":"').optional() }),
    z.strictObject({ type: z.literal('header'), name: headerName, prefix: z.string().max(32).default('') }),
    z.strictObject({ type: z.literal('query'), name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/) }),
  ])
  .default({ type: 'bearer' });

export const genericVendorSchema = z
  .strictObject({
    /** Required: where the vendor lives. */
    base_url: origin(),
    test_secret: z.string().min(1).optional(),
    live_secret: z.string().min(1).optional(),
    auth: genericAuth,
    /** First matching rule prices the call. */
    endpoints: z.array(endpointRule).max(200).default([]),
    unknown_cost: unknownCostSchema,
    /** USD per major unit, for amounts in other currencies (merged over the built-in rates). */
    fx: z.record(z.string().regex(/^[a-z]{3}$/), z.union([z.string(), z.number()])).default({}),
    /** The vendor answers a repeated Idempotency-Key with the original result: retries go uncharged. */
    dedupes_idempotency_key: z.boolean().default(false),
    /** Caller headers forwarded to the vendor (a trailing `*` is a prefix); all others are dropped. */
    forward_headers: z.array(forwardHeader).max(50).optional(),
  })
  .refine((v) => secretsDiffer(v.test_secret, v.live_secret), { message: SECRETS_DIFFER, path: ['test_secret'] });

const RESERVED_NAMES = new Set<string>([...BUILTIN_VENDORS, 'api', 'healthz', 'readyz', 'metrics']);

export const genericVendorsSchema = z
  .record(z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'vendor names are 1-32 of a-z 0-9 _ -, starting with a letter'), genericVendorSchema)
  .default({})
  .superRefine((v, ctx) => {
    for (const name of Object.keys(v)) {
      // The proxy reads a first path segment naming a vendor as its prefix (/sendgrid/v3/…), so a
      // name must never look like the start of some vendor's own path (/v1/…).
      if (RESERVED_NAMES.has(name) || /^v[0-9]+$/.test(name)) {
        ctx.addIssue({ code: 'custom', path: [name], message: `"${name}" is reserved${RESERVED_NAMES.has(name) ? '' : ' (it reads like an API version)'}` });
      }
    }
  });

/** Environment variables for the built-in vendors (in addition to KEYLEASH_STRIPE_*). */
export const VENDOR_ENV: ReadonlyArray<[string, string[]]> = [
  ['KEYLEASH_TWILIO_BASE_URL', ['vendors', 'twilio', 'base_url']],
  ['KEYLEASH_TWILIO_TEST_ACCOUNT_SID', ['vendors', 'twilio', 'test_account_sid']],
  ['KEYLEASH_TWILIO_TEST_AUTH_TOKEN', ['vendors', 'twilio', 'test_auth_token']],
  ['KEYLEASH_TWILIO_LIVE_ACCOUNT_SID', ['vendors', 'twilio', 'live_account_sid']],
  ['KEYLEASH_TWILIO_LIVE_AUTH_TOKEN', ['vendors', 'twilio', 'live_auth_token']],
  ['KEYLEASH_OPENAI_BASE_URL', ['vendors', 'openai', 'base_url']],
  ['KEYLEASH_OPENAI_TEST_SECRET', ['vendors', 'openai', 'test_secret']],
  ['KEYLEASH_OPENAI_LIVE_SECRET', ['vendors', 'openai', 'live_secret']],
  ['KEYLEASH_ANTHROPIC_BASE_URL', ['vendors', 'anthropic', 'base_url']],
  ['KEYLEASH_ANTHROPIC_TEST_SECRET', ['vendors', 'anthropic', 'test_secret']],
  ['KEYLEASH_ANTHROPIC_LIVE_SECRET', ['vendors', 'anthropic', 'live_secret']],
];
