import type { Mode } from '../keys/token.js';
import { STRIPE_HEADERS } from './forwarded-headers.js';
import { jsonToStripeForm } from './stripe-form.js';
import { classOf, describeStripeRule, STRIPE_ENDPOINTS } from './stripe-endpoints.js';
import { priceStripeCall, type StripePricingConfig } from './stripe-pricing.js';
import { type CostRuleView, NO_RETRY_HEADERS, type Outcome, type PreparedBody, type Vendor } from './vendor.js';

export interface StripeVendorConfig extends StripePricingConfig {
  origin: string;
  testSecret: string | undefined;
  liveSecret: string | undefined;
}

const FORM = 'application/x-www-form-urlencoded';

// Only what moves money is listed; every other entry of the table is $0, and an endpoint missing
// from the table is cost_unknown (docs/stripe-endpoints.md lists them all).
const MONEY_RULES: CostRuleView[] = [
  ...STRIPE_ENDPOINTS.filter((e) => classOf(e.rule) !== 'no money' || (e.rule.kind === 'free' && e.rule.guard)).map((e) => ({
    match: e.match.replace(/\{[a-z_]+\}/g, '*'),
    cost: describeStripeRule(e.rule),
  })),
  { match: 'GET *', cost: 'free' },
  { match: '*', cost: 'cost_unknown on a capped key: not in the Stripe endpoint table (the other entries are $0)' },
];

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

export function stripeVendor(cfg: StripeVendorConfig): Vendor {
  return {
    name: 'stripe',
    origin: cfg.origin,
    secret: (mode: Mode) => (mode === 'live' ? cfg.liveSecret : cfg.testSecret),
    authHeaders: (secret) => ({ authorization: `Bearer ${secret}` }),
    ...STRIPE_HEADERS,
    // stripe-node retries some statuses on its own; a refusal by keyleash will not change on retry.
    refusalHeaders: NO_RETRY_HEADERS,
    // Stripe keeps idempotency keys 24 hours per account (connected account or context).
    dedupesIdempotencyKey: true,
    idempotencyScopeHeaders: ['stripe-account', 'stripe-context'],

    // Integrations send JSON; Stripe only reads form bodies, so JSON is re-encoded the way stripe-node would.
    prepareBody(body, contentType, target): PreparedBody {
      if (body.length === 0) return { ok: true, body, contentType };
      const type = mediaType(contentType);
      // API v2 takes JSON itself (stripe-node sends it so); none of its calls is priced from params.
      if (type === 'application/json' && target?.segments[0]?.toLowerCase() === 'v2') return { ok: true, body, contentType: 'application/json' };
      if (type === 'application/json') {
        let parsed: unknown;
        try {
          parsed = JSON.parse(body.toString('utf8'));
        } catch {
          return { ok: false, reason: 'the body is not valid JSON' };
        }
        const r = jsonToStripeForm(parsed);
        if (!r.ok) return { ok: false, reason: r.reason };
        return { ok: true, body: Buffer.from(r.form), contentType: FORM };
      }
      if (type === FORM || type === '') return { ok: true, body, contentType: FORM };
      return { ok: false, reason: `Stripe takes form-encoded or JSON bodies, not ${type}` };
    },

    price: (call) => {
      // A body on a GET/DELETE is not read by Stripe, but a money param hidden there is still refused.
      const form = call.body.length ? call.body.toString('utf8') : '';
      return priceStripeCall(call.method, call.segments, form, cfg, call.query);
    },

    describe: () => ({
      kind: 'builtin',
      auth: 'bearer',
      unknown_cost: 'deny: a write that keyleash cannot price, or that is not in its Stripe endpoint table, is refused on a capped key (cost_unknown)',
      default_currency: cfg.defaultCurrency,
      endpoints: MONEY_RULES,
    }),

    // Stripe answers 4xx only when it did not carry out the call (declined, invalid, rate limited,
    // idempotency conflict); a 5xx may or may not have executed.
    outcome(status): Outcome {
      if (status >= 200 && status < 300) return 'executed';
      if (status >= 400 && status < 500) return 'refused';
      return 'unknown';
    },
  };
}
