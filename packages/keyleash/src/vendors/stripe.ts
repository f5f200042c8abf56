import type { Mode } from '../keys/token.js';
import { jsonToStripeForm } from './stripe-form.js';
import { priceStripeCall, type StripePricingConfig } from './stripe-pricing.js';
import type { CostRuleView, Outcome, PreparedBody, Vendor } from './vendor.js';

export interface StripeVendorConfig extends StripePricingConfig {
  origin: string;
  testSecret: string | undefined;
  liveSecret: string | undefined;
}

const FORM = 'application/x-www-form-urlencoded';

const MONEY_RULES: CostRuleView[] = [
  ...['payment_intents', 'charges', 'refunds', 'transfers', 'payouts', 'invoiceitems'].map((r) => ({
    match: `POST /v1/${r}`,
    cost: 'amount (or transfer_data[amount] when larger) in currency, converted to USD',
  })),
  { match: 'POST /v1/payment_intents/*', cost: 'the new amount, when the update names one' },
  { match: '*', cost: 'free (every other Stripe call moves no money)' },
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
    // stripe-node retries some statuses on its own; a refusal by keyleash will not change on retry.
    refusalHeaders: { 'stripe-should-retry': 'false' },
    // Stripe keeps idempotency keys 24 hours per account (connected account or context).
    dedupesIdempotencyKey: true,
    idempotencyScopeHeaders: ['stripe-account', 'stripe-context'],

    // Integrations send JSON; Stripe only reads form bodies, so JSON is re-encoded the way stripe-node would.
    prepareBody(body, contentType): PreparedBody {
      if (body.length === 0) return { ok: true, body, contentType };
      const type = mediaType(contentType);
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
      unknown_cost: 'deny: a refund without amount on a capped key is refused (cost_unknown)',
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
