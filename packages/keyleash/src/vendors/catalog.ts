import type { Config } from '../config/config.js';
import { parseEndpointPattern, type EndpointPattern } from '../policy/endpoints.js';
import { DEFAULT_FX, parseUsdToMicros } from '../policy/money.js';
import { anthropicVendor, DEFAULT_ANTHROPIC_MODELS } from './anthropic.js';
import { BUILTIN_VENDORS } from './config-schema.js';
import { type GenericCostRule, type GenericEndpoint, genericVendor } from './generic.js';
import { modelPrices } from './llm.js';
import { DEFAULT_OPENAI_MODELS, openaiVendor } from './openai.js';
import { stripeVendor } from './stripe.js';
import { DEFAULT_TWILIO_PRICES, type PrefixPrices, twilioVendor } from './twilio.js';
import type { UnknownCostPolicy, Vendor, VendorCatalog } from './vendor.js';

/** Exact micros of a USD value the config schema has already checked. */
function micros(v: string | number): number {
  const r = parseUsdToMicros(v);
  if (!r.ok) throw new RangeError(r.reason);
  return r.micros;
}

export function unknownCostPolicy(v: 'auto' | 'free' | 'deny' | string | number): UnknownCostPolicy {
  if (v === 'auto' || v === 'free' || v === 'deny') return { kind: v };
  return { kind: 'fixed', micros: micros(v) };
}

function prefixPrices(
  dflt: { default: string; prices: Readonly<Record<string, string>> },
  cfg: { default?: string | number | undefined; prices: Readonly<Record<string, string | number>> },
): PrefixPrices {
  const merged = { ...dflt.prices, ...cfg.prices };
  return {
    default: micros(cfg.default ?? dflt.default),
    prices: new Map(Object.entries(merged).map(([p, v]) => [p, micros(v)])),
  };
}

/** Builds the configured vendors. A vendor absent from config does not exist for the gateway. */
export function buildCatalog(config: Config): VendorCatalog {
  const catalog = new Map<string, Vendor>();
  const v = config.vendors;
  const s = v.stripe;
  if (s) {
    catalog.set(
      'stripe',
      stripeVendor({
        origin: s.base_url,
        testSecret: s.test_secret,
        liveSecret: s.live_secret,
        defaultCurrency: s.default_currency,
        fx: { ...DEFAULT_FX, ...s.fx },
      }),
    );
  }
  const t = v.twilio;
  if (t) {
    const d = DEFAULT_TWILIO_PRICES;
    catalog.set(
      'twilio',
      twilioVendor({
        origin: t.base_url,
        test: t.test_account_sid && t.test_auth_token ? { accountSid: t.test_account_sid, authToken: t.test_auth_token } : undefined,
        live: t.live_account_sid && t.live_auth_token ? { accountSid: t.live_account_sid, authToken: t.live_auth_token } : undefined,
        sms: prefixPrices(d.sms, t.sms),
        mms: prefixPrices(d.mms, t.mms),
        calls: { ...prefixPrices(d.calls, t.calls), estimateMinutes: t.calls.estimate_minutes ?? d.calls.estimate_minutes },
        unknownCost: unknownCostPolicy(t.unknown_cost),
      }),
    );
  }
  const o = v.openai;
  if (o) {
    // The organisation and project billed come from configuration, never from the caller.
    const fixed: Record<string, string> = {};
    if (o.organization !== undefined) fixed['openai-organization'] = o.organization;
    if (o.project !== undefined) fixed['openai-project'] = o.project;
    catalog.set('openai', {
      ...openaiVendor({
        origin: o.base_url,
        testSecret: o.test_secret,
        liveSecret: o.live_secret,
        models: modelPrices({ ...DEFAULT_OPENAI_MODELS, ...o.models }),
        defaultMaxOutputTokens: o.default_max_output_tokens,
        unknownCost: unknownCostPolicy(o.unknown_cost),
      }),
      fixedHeaders: fixed,
    });
  }
  const a = v.anthropic;
  if (a) {
    catalog.set(
      'anthropic',
      anthropicVendor({
        origin: a.base_url,
        testSecret: a.test_secret,
        liveSecret: a.live_secret,
        models: modelPrices({ ...DEFAULT_ANTHROPIC_MODELS, ...a.models }),
        defaultMaxOutputTokens: a.default_max_output_tokens,
        unknownCost: unknownCostPolicy(a.unknown_cost),
      }),
    );
  }
  for (const [name, g] of Object.entries(v.generic)) {
    const endpoints: GenericEndpoint[] = g.endpoints.map((e) => {
      let rule: GenericCostRule;
      if (e.usd !== undefined) rule = { kind: 'fixed', micros: micros(e.usd) };
      else if (e.count) rule = { kind: 'count', path: e.count.path, microsEach: micros(e.count.usd_each) };
      else {
        const am = e.amount!;
        rule = { kind: 'amount', path: am.path, unit: am.unit, currency: am.currency?.toLowerCase(), currencyPath: am.currency_path };
      }
      return { match: e.match, pattern: parseEndpointPattern(e.match) as EndpointPattern, rule };
    });
    const auth = g.auth;
    catalog.set(
      name,
      genericVendor({
        name,
        origin: g.base_url,
        testSecret: g.test_secret,
        liveSecret: g.live_secret,
        auth: auth.type === 'header' ? { type: 'header', name: auth.name, prefix: auth.prefix } : auth,
        endpoints,
        unknownCost: unknownCostPolicy(g.unknown_cost),
        fx: { ...DEFAULT_FX, ...g.fx },
        dedupesIdempotencyKey: g.dedupes_idempotency_key,
        ...(g.forward_headers ? { forwardHeaders: g.forward_headers } : {}),
      }),
    );
  }
  return catalog;
}

/** Names the proxy treats as a vendor prefix (`/stripe/v1/...`) even when not configured. */
export const KNOWN_VENDOR_NAMES: ReadonlySet<string> = new Set(BUILTIN_VENDORS);
