// How keyleash counts every Stripe endpoint that writes (POST, DELETE): the one table the Stripe
// money model reads. An endpoint that is not here is `cost_unknown` on a capped key, so an
// endpoint Stripe adds later is refused until it is classified. GET and HEAD move no money.
//
// The endpoint list comes from the official stripe npm package (its resource files);
// stripe-endpoints.test.ts fails when a write endpoint there has no entry here, and
// docs/stripe-endpoints.md is generated from this table.
//
// Param paths are bracket-free (`transfer_data.amount` is `transfer_data[amount]` on the wire).

/** A condition that turns an otherwise countable call into `cost_unknown`. */
export interface Guard {
  /** Unknown when any of these params is sent at all (nested ones included). */
  ifSent?: readonly string[];
  /** Unknown when one of these is sent with a value other than `false`. */
  ifTrue?: readonly string[];
  /** Unknown unless each param is sent, once, with exactly this value. */
  unless?: Readonly<Record<string, string>>;
  /** Unknown when a top-level param outside this list is sent (`expand` is always fine); `name=value` pins a value. */
  only?: readonly string[];
  /** Why the call cannot be counted when the guard trips. */
  why: string;
}

export type StripeRule =
  /** Moves no money (with `guard`: unless the guard trips). */
  | { kind: 'free'; why: string; guard?: Guard }
  /** Moves money whose amount is not in the request: refused on a capped key. */
  | { kind: 'unpriced'; why: string }
  /** Moves the largest of `amounts`, in `currency`. */
  | {
      kind: 'amount';
      amounts: readonly string[];
      /**
       * `required`: the call names its currency (Stripe requires it; missing is invalid).
       * `object`: Stripe uses the object's or account's currency when none is sent, which the
       * request does not show, so a call without one is unknown rather than priced in a guess.
       */
      currency: 'required' | 'object';
      /** What a call with none of `amounts` is. */
      missingAmount: 'invalid' | 'unknown' | 'free';
      /**
       * The object whose currency Stripe uses, read (GET, the real secret) to price the call:
       * `[from, read]`, where `from` is the param naming the object or `{n}` for path segment n,
       * and `read` the path to read with `{}` for its id. The first one the request names is used.
       */
      objectCurrency?: {
        sources: readonly (readonly [from: string, read: string])[];
        /** Priced in the object's currency even when the request names one (it cannot change it). */
        authoritative: boolean;
      };
      guard?: Guard;
      note?: string;
    };

export interface StripeEndpoint {
  /** "METHOD /path"; `{name}` or `*` is one path segment. */
  readonly match: string;
  readonly rule: StripeRule;
}

const free = (why: string, guard?: Guard): StripeRule => (guard ? { kind: 'free', why, guard } : { kind: 'free', why });
const unpriced = (why: string): StripeRule => ({ kind: 'unpriced', why });

const NONE = 'moves no money';
const SETTINGS = 'configuration; moves no money';
const CANCEL = 'stops or undoes a movement; moves no money';
const METADATA = 'updates descriptive fields; moves no money';
const COUNTED_AT_CREATE =
  'completes a payment whose amount was counted when the intent (or charge) was created through keyleash';
const OVERCAPTURE: Guard = {
  ifSent: ['payment_method_options.card.request_overcapture'],
  why: 'overcapture lets a later capture exceed the counted amount',
};

/** An amount + currency the request names in full (Stripe requires both). */
type AmountRule = Extract<StripeRule, { kind: 'amount' }>;
const moves = (amounts: string[] = ['amount'], guard?: Guard): AmountRule => ({
  kind: 'amount',
  amounts,
  currency: 'required',
  missingAmount: 'invalid',
  ...(guard ? { guard } : {}),
});

/** An amount whose currency Stripe may take from the object or account. */
const movesInObjectCurrency = (missingAmount: 'unknown' | 'free', amounts: string[] = ['amount'], guard?: Guard, note?: string): AmountRule => ({
  kind: 'amount',
  amounts,
  currency: 'object',
  missingAmount,
  ...(guard ? { guard } : {}),
  ...(note ? { note } : {}),
});

export const STRIPE_ENDPOINTS: readonly StripeEndpoint[] = [
  // OAuth (Connect)
  { match: 'POST /oauth/deauthorize', rule: free(NONE) },
  { match: 'POST /oauth/token', rule: free(NONE) },

  // Connect accounts
  { match: 'POST /v1/account_links', rule: free(NONE) },
  { match: 'POST /v1/account_sessions', rule: free(NONE) },
  { match: 'POST /v1/accounts', rule: free(NONE) },
  { match: 'POST /v1/accounts/{account}', rule: free(SETTINGS) },
  { match: 'DELETE /v1/accounts/{account}', rule: free(NONE) },
  { match: 'POST /v1/accounts/{account}/capabilities/{capability}', rule: free(SETTINGS) },
  { match: 'POST /v1/accounts/{account}/external_accounts', rule: free(SETTINGS) },
  { match: 'POST /v1/accounts/{account}/external_accounts/{id}', rule: free(SETTINGS) },
  { match: 'DELETE /v1/accounts/{account}/external_accounts/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/accounts/{account}/login_links', rule: free(NONE) },
  { match: 'POST /v1/accounts/{account}/persons', rule: free(NONE) },
  { match: 'POST /v1/accounts/{account}/persons/{person}', rule: free(NONE) },
  { match: 'DELETE /v1/accounts/{account}/persons/{person}', rule: free(NONE) },
  { match: 'POST /v1/accounts/{account}/reject', rule: free(NONE) },
  { match: 'POST /v1/accounts/{account}/unreject', rule: free(NONE) },
  { match: 'POST /v1/apple_pay/domains', rule: free(SETTINGS) },
  { match: 'DELETE /v1/apple_pay/domains/{domain}', rule: free(SETTINGS) },
  { match: 'POST /v1/application_fees/{fee}/refunds', rule: unpriced('refunds an application fee in its own currency; a missing amount refunds all of it') },
  { match: 'POST /v1/application_fees/{fee}/refunds/{id}', rule: free(METADATA) },
  { match: 'POST /v1/apps/installs', rule: free(SETTINGS) },
  { match: 'POST /v1/apps/installs/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/apps/installs/{id}/uninstall', rule: free(SETTINGS) },
  { match: 'POST /v1/apps/secrets', rule: free(SETTINGS) },
  { match: 'POST /v1/apps/secrets/delete', rule: free(SETTINGS) },
  { match: 'POST /v1/balance_settings', rule: free(SETTINGS) },

  // Billing
  { match: 'POST /v1/billing/alerts', rule: free(SETTINGS) },
  { match: 'POST /v1/billing/alerts/{id}/activate', rule: free(SETTINGS) },
  { match: 'POST /v1/billing/alerts/{id}/archive', rule: free(SETTINGS) },
  { match: 'POST /v1/billing/alerts/{id}/deactivate', rule: free(SETTINGS) },
  { match: 'POST /v1/billing/credit_grants', rule: unpriced('grants a customer credit that pays future invoices') },
  { match: 'POST /v1/billing/credit_grants/{id}', rule: free(METADATA) },
  { match: 'POST /v1/billing/credit_grants/{id}/expire', rule: free(CANCEL) },
  { match: 'POST /v1/billing/credit_grants/{id}/void', rule: free(CANCEL) },
  { match: 'POST /v1/billing/feedback_options', rule: free(SETTINGS) },
  { match: 'POST /v1/billing/feedback_options/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/billing/feedback_options/{id}/deactivate', rule: free(SETTINGS) },
  { match: 'POST /v1/billing/meter_event_adjustments', rule: unpriced('changes metered usage that subscriptions bill') },
  { match: 'POST /v1/billing/meter_events', rule: unpriced('reports metered usage that subscriptions bill') },
  { match: 'POST /v1/billing/meters', rule: free(SETTINGS) },
  { match: 'POST /v1/billing/meters/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/billing/meters/{id}/deactivate', rule: free(SETTINGS) },
  { match: 'POST /v1/billing/meters/{id}/reactivate', rule: free(SETTINGS) },
  { match: 'POST /v1/billing_portal/configurations', rule: free(SETTINGS) },
  { match: 'POST /v1/billing_portal/configurations/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/billing_portal/sessions', rule: free(NONE) },

  // Payments
  { match: 'POST /v1/charges', rule: moves(['amount', 'transfer_data.amount', 'destination.amount']) },
  { match: 'POST /v1/charges/{charge}', rule: free(METADATA) },
  { match: 'POST /v1/charges/{charge}/capture', rule: free(COUNTED_AT_CREATE) },
  { match: 'POST /v1/payment_intents', rule: moves(['amount', 'transfer_data.amount'], OVERCAPTURE) },
  {
    match: 'POST /v1/payment_intents/{intent}',
    rule: {
      ...movesInObjectCurrency('free', ['amount', 'transfer_data.amount'], OVERCAPTURE, 'a new amount is charged as if it were a new intent'),
      objectCurrency: { sources: [['{2}', '/v1/payment_intents/{}']], authoritative: false },
    },
  },
  { match: 'POST /v1/payment_intents/{intent}/apply_customer_balance', rule: free(COUNTED_AT_CREATE) },
  { match: 'POST /v1/payment_intents/{intent}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/payment_intents/{intent}/capture', rule: free(COUNTED_AT_CREATE) },
  { match: 'POST /v1/payment_intents/{intent}/confirm', rule: free(COUNTED_AT_CREATE, OVERCAPTURE) },
  {
    match: 'POST /v1/payment_intents/{intent}/increment_authorization',
    rule: {
      kind: 'amount',
      amounts: ['amount'],
      currency: 'object',
      missingAmount: 'invalid',
      objectCurrency: { sources: [['{2}', '/v1/payment_intents/{}']], authoritative: true },
      note: 'the new total is charged in full, on top of what the create reserved',
    },
  },
  { match: 'POST /v1/payment_intents/{intent}/verify_microdeposits', rule: free(COUNTED_AT_CREATE) },
  {
    match: 'POST /v1/refunds',
    rule: {
      ...movesInObjectCurrency('unknown', ['amount'], undefined, 'a refund without amount refunds the whole remainder'),
      // A refund is in its charge's currency whatever `currency` says.
      objectCurrency: {
        sources: [
          ['payment_intent', '/v1/payment_intents/{}'],
          ['charge', '/v1/charges/{}'],
        ],
        authoritative: true,
      },
    },
  },
  { match: 'POST /v1/refunds/{refund}', rule: free(METADATA) },
  { match: 'POST /v1/refunds/{refund}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/reviews/{review}/approve', rule: free(COUNTED_AT_CREATE) },

  // Checkout and payment links: the customer pays an amount set by prices and line items.
  { match: 'POST /v1/checkout/sessions', rule: unpriced('the customer pays line items priced by price objects') },
  { match: 'POST /v1/checkout/sessions/{session}', rule: unpriced('changes the line items the customer pays') },
  { match: 'POST /v1/checkout/sessions/{session}/expire', rule: free(CANCEL) },
  { match: 'POST /v1/payment_links', rule: unpriced('anyone with the link pays line items priced by price objects') },
  { match: 'POST /v1/payment_links/{link}', rule: unpriced('changes or re-activates what a link charges') },

  { match: 'POST /v1/climate/orders', rule: movesInObjectCurrency('unknown', ['amount'], undefined, 'an order by metric_tons is priced by Stripe') },
  { match: 'POST /v1/climate/orders/{order}', rule: free(METADATA) },
  { match: 'POST /v1/climate/orders/{order}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/coupons', rule: free(NONE) },
  { match: 'POST /v1/coupons/{coupon}', rule: free(METADATA) },
  { match: 'DELETE /v1/coupons/{coupon}', rule: free(NONE) },
  { match: 'POST /v1/credit_notes', rule: unpriced('refunds or credits amounts in the invoice currency, which the request does not name') },
  { match: 'POST /v1/credit_notes/{id}', rule: free(METADATA) },
  { match: 'POST /v1/credit_notes/{id}/void', rule: free(CANCEL) },

  // Customers
  { match: 'POST /v1/customer_sessions', rule: free(NONE) },
  { match: 'POST /v1/customers', rule: free(NONE, { ifSent: ['balance'], why: 'a customer balance is billed or credited on invoices' }) },
  { match: 'POST /v1/customers/{customer}', rule: free(NONE, { ifSent: ['balance'], why: 'a customer balance is billed or credited on invoices' }) },
  { match: 'DELETE /v1/customers/{customer}', rule: free(NONE) },
  { match: 'POST /v1/customers/{customer}/balance_transactions', rule: unpriced("adjusts a customer balance in the customer's currency") },
  { match: 'POST /v1/customers/{customer}/balance_transactions/{id}', rule: free(METADATA) },
  { match: 'POST /v1/customers/{customer}/cash_balance', rule: free(SETTINGS) },
  { match: 'DELETE /v1/customers/{customer}/discount', rule: unpriced("raises what the customer's future invoices charge") },
  { match: 'POST /v1/customers/{customer}/funding_instructions', rule: free(NONE) },
  { match: 'POST /v1/customers/{customer}/sources', rule: free(NONE) },
  { match: 'POST /v1/customers/{customer}/sources/{id}', rule: free(NONE) },
  { match: 'DELETE /v1/customers/{customer}/sources/{id}', rule: free(NONE) },
  { match: 'POST /v1/customers/{customer}/sources/{id}/verify', rule: free(NONE) },
  { match: 'POST /v1/customers/{customer}/tax_ids', rule: free(NONE) },
  { match: 'DELETE /v1/customers/{customer}/tax_ids/{id}', rule: free(NONE) },
  { match: 'POST /v1/disputes/{dispute}', rule: free(NONE) },
  { match: 'POST /v1/disputes/{dispute}/close', rule: free('the disputed amount was already withdrawn when the dispute opened') },
  { match: 'POST /v1/entitlements/features', rule: free(SETTINGS) },
  { match: 'POST /v1/entitlements/features/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/ephemeral_keys', rule: free(NONE) },
  { match: 'DELETE /v1/ephemeral_keys/{key}', rule: free(NONE) },
  { match: 'POST /v1/file_links', rule: free(NONE) },
  { match: 'POST /v1/file_links/{link}', rule: free(NONE) },
  { match: 'POST /v1/files', rule: free(NONE) },
  { match: 'POST /v1/financial_connections/accounts/{account}/disconnect', rule: free(NONE) },
  { match: 'POST /v1/financial_connections/accounts/{account}/refresh', rule: free(NONE) },
  { match: 'POST /v1/financial_connections/accounts/{account}/subscribe', rule: free(NONE) },
  { match: 'POST /v1/financial_connections/accounts/{account}/unsubscribe', rule: free(NONE) },
  { match: 'POST /v1/financial_connections/sessions', rule: free(NONE) },
  { match: 'POST /v1/forwarding/requests', rule: unpriced('sends card details to a third party, which may charge them') },
  { match: 'POST /v1/identity/verification_sessions', rule: free(NONE) },
  { match: 'POST /v1/identity/verification_sessions/{id}', rule: free(NONE) },
  { match: 'POST /v1/identity/verification_sessions/{id}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/identity/verification_sessions/{id}/redact', rule: free(NONE) },
  { match: 'POST /v1/invoice_rendering_templates/{id}/archive', rule: free(SETTINGS) },
  { match: 'POST /v1/invoice_rendering_templates/{id}/unarchive', rule: free(SETTINGS) },

  // Invoicing: money moves when an invoice is finalized and collected.
  {
    match: 'POST /v1/invoiceitems',
    rule: movesInObjectCurrency(
      'unknown',
      ['amount'],
      {
        ifSent: ['price', 'price_data', 'pricing', 'unit_amount_decimal', 'quantity', 'quantity_decimal', 'tax_rates'],
        why: 'an item priced by a price, a unit amount, a quantity or tax rates',
      },
      'counted when added, since a subscription invoice sweeps it up and collects it',
    ),
  },
  {
    match: 'POST /v1/invoiceitems/{item}',
    rule: free(METADATA, {
      only: ['description', 'metadata', 'period', 'discountable', 'tax_code'],
      why: 'an update that may change what the item charges',
    }),
  },
  { match: 'DELETE /v1/invoiceitems/{item}', rule: free(NONE) },
  {
    match: 'POST /v1/invoices',
    rule: free('a draft invoice', {
      unless: { auto_advance: 'false' },
      why: 'an invoice that auto-advances is finalized and collected by Stripe',
    }),
  },
  { match: 'POST /v1/invoices/create_preview', rule: free(NONE) },
  {
    match: 'POST /v1/invoices/{invoice}',
    rule: free(METADATA, { ifTrue: ['auto_advance'], why: 'turning on auto-advance lets Stripe finalize and collect the invoice' }),
  },
  { match: 'DELETE /v1/invoices/{invoice}', rule: free(NONE) },
  { match: 'POST /v1/invoices/{invoice}/add_lines', rule: unpriced('adds lines in the invoice currency, which the request does not name') },
  { match: 'POST /v1/invoices/{invoice}/attach_payment', rule: free('records a payment that moved (and was counted) on its own') },
  { match: 'POST /v1/invoices/{invoice}/finalize', rule: unpriced('finalizing lets Stripe collect the invoice total') },
  { match: 'POST /v1/invoices/{invoice}/lines/{line}', rule: unpriced('changes a line amount in the invoice currency') },
  { match: 'POST /v1/invoices/{invoice}/mark_uncollectible', rule: free(CANCEL) },
  { match: 'POST /v1/invoices/{invoice}/pay', rule: unpriced('collects the invoice total') },
  { match: 'POST /v1/invoices/{invoice}/remove_lines', rule: free('only lowers an invoice') },
  { match: 'POST /v1/invoices/{invoice}/send', rule: unpriced('sends an invoice for the customer to pay its total') },
  { match: 'POST /v1/invoices/{invoice}/update_lines', rule: unpriced('changes line amounts in the invoice currency') },
  { match: 'POST /v1/invoices/{invoice}/void', rule: free(CANCEL) },

  // Issuing: cards spend without an API call, so what lets a card spend is a money mover.
  { match: 'POST /v1/issuing/authorizations/{id}', rule: free(METADATA) },
  { match: 'POST /v1/issuing/authorizations/{id}/approve', rule: unpriced('approves card spending in the card currency') },
  { match: 'POST /v1/issuing/authorizations/{id}/decline', rule: free(CANCEL) },
  { match: 'POST /v1/issuing/cardholders', rule: free('a cardholder without a card cannot spend') },
  {
    match: 'POST /v1/issuing/cardholders/{id}',
    rule: free(METADATA, {
      only: ['metadata', 'email', 'phone_number', 'billing', 'individual', 'company', 'preferred_locales', 'status=inactive'],
      why: 'an update that may raise spending limits or re-activate a cardholder',
    }),
  },
  { match: 'POST /v1/issuing/cards', rule: unpriced('a new card can spend up to its limits') },
  {
    match: 'POST /v1/issuing/cards/{id}',
    rule: free(METADATA, {
      only: ['metadata', 'status=inactive', 'status=canceled', 'cancellation_reason', 'shipping', 'pin'],
      why: 'an update that may raise spending limits or re-activate a card',
    }),
  },
  { match: 'POST /v1/issuing/disputes', rule: free('a dispute can only return money') },
  { match: 'POST /v1/issuing/disputes/{id}', rule: free(METADATA) },
  { match: 'POST /v1/issuing/disputes/{id}/submit', rule: free('a dispute can only return money') },
  { match: 'POST /v1/issuing/personalization_designs', rule: free(SETTINGS) },
  { match: 'POST /v1/issuing/personalization_designs/{id}', rule: free(SETTINGS) },
  {
    match: 'POST /v1/issuing/tokens/{id}',
    rule: free(METADATA, { only: ['status=suspended', 'status=deleted'], why: 'activating a wallet token lets it spend' }),
  },
  { match: 'POST /v1/issuing/transactions/{id}', rule: free(METADATA) },

  { match: 'POST /v1/payment_method_configurations', rule: free(SETTINGS) },
  { match: 'POST /v1/payment_method_configurations/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/payment_method_domains', rule: free(SETTINGS) },
  { match: 'POST /v1/payment_method_domains/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/payment_method_domains/{id}/validate', rule: free(SETTINGS) },
  { match: 'POST /v1/payment_methods', rule: free(NONE) },
  { match: 'POST /v1/payment_methods/{pm}', rule: free(NONE) },
  { match: 'POST /v1/payment_methods/{pm}/attach', rule: free(NONE) },
  { match: 'POST /v1/payment_methods/{pm}/detach', rule: free(NONE) },
  { match: 'POST /v1/payment_records/report_payment', rule: free('records a payment made outside Stripe') },
  { match: 'POST /v1/payment_records/{id}/report_payment_attempt', rule: free('records a payment made outside Stripe') },
  { match: 'POST /v1/payment_records/{id}/report_payment_attempt_canceled', rule: free('records a payment made outside Stripe') },
  { match: 'POST /v1/payment_records/{id}/report_payment_attempt_failed', rule: free('records a payment made outside Stripe') },
  { match: 'POST /v1/payment_records/{id}/report_payment_attempt_guaranteed', rule: free('records a payment made outside Stripe') },
  { match: 'POST /v1/payment_records/{id}/report_payment_attempt_informational', rule: free('records a payment made outside Stripe') },
  { match: 'POST /v1/payment_records/{id}/report_refund', rule: free('records a refund made outside Stripe') },
  { match: 'POST /v1/payouts', rule: moves() },
  { match: 'POST /v1/payouts/{payout}', rule: free(METADATA) },
  { match: 'POST /v1/payouts/{payout}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/payouts/{payout}/reverse', rule: unpriced('moves a paid-out amount back, in its own currency') },

  // Catalogue
  { match: 'POST /v1/plans', rule: free(NONE) },
  { match: 'POST /v1/plans/{plan}', rule: free(METADATA) },
  { match: 'DELETE /v1/plans/{plan}', rule: free(NONE) },
  { match: 'POST /v1/prices', rule: free(NONE) },
  { match: 'POST /v1/prices/{price}', rule: free(METADATA) },
  { match: 'POST /v1/product_catalog/trial_offers', rule: free(NONE) },
  { match: 'POST /v1/product_catalog/trial_offers/{id}', rule: free(NONE) },
  { match: 'POST /v1/products', rule: free(NONE) },
  { match: 'POST /v1/products/{product}', rule: free(METADATA) },
  { match: 'DELETE /v1/products/{product}', rule: free(NONE) },
  { match: 'POST /v1/products/{product}/features', rule: free(NONE) },
  { match: 'DELETE /v1/products/{product}/features/{id}', rule: free(NONE) },
  { match: 'POST /v1/promotion_codes', rule: free(NONE) },
  { match: 'POST /v1/promotion_codes/{id}', rule: free(METADATA) },
  { match: 'POST /v1/shipping_rates', rule: free(NONE) },
  { match: 'POST /v1/shipping_rates/{id}', rule: free(METADATA) },
  { match: 'POST /v1/tax_rates', rule: free(NONE) },
  { match: 'POST /v1/tax_rates/{id}', rule: free(METADATA) },

  // Quotes: accepting one starts its subscription or invoice, priced by price ids.
  { match: 'POST /v1/quotes', rule: free('a draft quote') },
  { match: 'POST /v1/quotes/{quote}', rule: free('a draft quote') },
  { match: 'POST /v1/quotes/{quote}/accept', rule: unpriced('starts a subscription or invoice priced by price objects') },
  { match: 'POST /v1/quotes/{quote}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/quotes/{quote}/finalize', rule: unpriced('lets the customer accept, and pay, a quote priced by price objects') },

  { match: 'POST /v1/radar/payment_evaluations', rule: free(NONE) },
  { match: 'POST /v1/radar/value_list_items', rule: free(SETTINGS) },
  { match: 'DELETE /v1/radar/value_list_items/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/radar/value_lists', rule: free(SETTINGS) },
  { match: 'POST /v1/radar/value_lists/{id}', rule: free(SETTINGS) },
  { match: 'DELETE /v1/radar/value_lists/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/reporting/report_runs', rule: free(NONE) },
  { match: 'POST /v1/setup_intents', rule: free(NONE) },
  { match: 'POST /v1/setup_intents/{id}', rule: free(NONE) },
  { match: 'POST /v1/setup_intents/{id}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/setup_intents/{id}/confirm', rule: free(NONE) },
  { match: 'POST /v1/setup_intents/{id}/verify_microdeposits', rule: free(NONE) },
  { match: 'POST /v1/sources', rule: free(NONE) },
  { match: 'POST /v1/sources/{id}', rule: free(NONE) },
  { match: 'POST /v1/sources/{id}/verify', rule: free(NONE) },

  // Subscriptions: priced by price objects, prorations, trials and tax; refused, not looked up.
  { match: 'POST /v1/subscription_items', rule: unpriced('adds a price to a subscription, billed with prorations') },
  { match: 'POST /v1/subscription_items/{item}', rule: free(METADATA, { only: ['metadata'], why: 'an update that may change what the subscription bills' }) },
  { match: 'DELETE /v1/subscription_items/{item}', rule: free('only lowers what a subscription bills') },
  { match: 'POST /v1/subscription_schedules', rule: unpriced('starts subscriptions priced by price objects') },
  { match: 'POST /v1/subscription_schedules/{id}', rule: free(METADATA, { only: ['metadata'], why: 'changes the phases (prices) a schedule bills' }) },
  { match: 'POST /v1/subscription_schedules/{id}/cancel', rule: free(CANCEL, { ifTrue: ['invoice_now'], why: 'invoice_now bills outstanding usage and prorations' }) },
  { match: 'POST /v1/subscription_schedules/{id}/release', rule: free('leaves the subscription as it is') },
  { match: 'POST /v1/subscriptions', rule: unpriced('bills price objects, with trials, prorations and tax') },
  {
    match: 'POST /v1/subscriptions/{sub}',
    rule: free(METADATA, {
      // cancel_at_period_end=false would undo a cancellation, so its renewals would bill again.
      only: ['metadata', 'description', 'cancel_at_period_end=true', 'cancellation_details', 'default_payment_method', 'default_source'],
      why: 'an update that may change what the subscription bills',
    }),
  },
  { match: 'DELETE /v1/subscriptions/{sub}', rule: free(CANCEL, { ifTrue: ['invoice_now'], why: 'invoice_now bills outstanding usage and prorations' }) },
  { match: 'DELETE /v1/subscriptions/{sub}/discount', rule: unpriced('raises what the subscription bills') },
  { match: 'POST /v1/subscriptions/{sub}/migrate', rule: free(SETTINGS) },
  { match: 'POST /v1/subscriptions/{sub}/pause', rule: unpriced('may bill for the period so far') },
  { match: 'POST /v1/subscriptions/{sub}/resume', rule: unpriced('bills the resumed subscription, with prorations') },

  { match: 'POST /v1/tax/calculations', rule: free(NONE) },
  { match: 'POST /v1/tax/locations', rule: free(SETTINGS) },
  { match: 'POST /v1/tax/registrations', rule: free(SETTINGS) },
  { match: 'POST /v1/tax/registrations/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/tax/settings', rule: free(SETTINGS) },
  { match: 'POST /v1/tax/transactions/create_from_calculation', rule: free('records tax; moves no money') },
  { match: 'POST /v1/tax/transactions/create_reversal', rule: free('records tax; moves no money') },
  { match: 'POST /v1/tax_ids', rule: free(NONE) },
  { match: 'DELETE /v1/tax_ids/{id}', rule: free(NONE) },

  // Terminal
  { match: 'POST /v1/terminal/configurations', rule: free(SETTINGS) },
  { match: 'POST /v1/terminal/configurations/{id}', rule: free(SETTINGS) },
  { match: 'DELETE /v1/terminal/configurations/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/terminal/connection_tokens', rule: free(NONE) },
  { match: 'POST /v1/terminal/locations', rule: free(SETTINGS) },
  { match: 'POST /v1/terminal/locations/{id}', rule: free(SETTINGS) },
  { match: 'DELETE /v1/terminal/locations/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/terminal/onboarding_links', rule: free(NONE) },
  { match: 'POST /v1/terminal/readers', rule: free(SETTINGS) },
  { match: 'POST /v1/terminal/readers/{id}', rule: free(SETTINGS) },
  { match: 'DELETE /v1/terminal/readers/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/terminal/readers/{id}/cancel_action', rule: free(CANCEL) },
  { match: 'POST /v1/terminal/readers/{id}/collect_inputs', rule: free(NONE) },
  { match: 'POST /v1/terminal/readers/{id}/collect_payment_method', rule: free(COUNTED_AT_CREATE) },
  { match: 'POST /v1/terminal/readers/{id}/confirm_payment_intent', rule: free(COUNTED_AT_CREATE) },
  { match: 'POST /v1/terminal/readers/{id}/process_payment_intent', rule: free(COUNTED_AT_CREATE) },
  { match: 'POST /v1/terminal/readers/{id}/process_setup_intent', rule: free(NONE) },
  { match: 'POST /v1/terminal/readers/{id}/refund_payment', rule: unpriced("refunds in the payment's currency, which the request does not name") },
  { match: 'POST /v1/terminal/readers/{id}/set_reader_display', rule: free(NONE) },

  // Test helpers (test mode only), counted like the movements they simulate.
  { match: 'POST /v1/test_helpers/confirmation_tokens', rule: free(NONE) },
  { match: 'POST /v1/test_helpers/customers/{customer}/fund_cash_balance', rule: moves() },
  { match: 'POST /v1/test_helpers/issuing/authorizations', rule: movesInObjectCurrency('unknown') },
  { match: 'POST /v1/test_helpers/issuing/authorizations/{id}/capture', rule: unpriced('captures in the card currency') },
  { match: 'POST /v1/test_helpers/issuing/authorizations/{id}/expire', rule: free(CANCEL) },
  { match: 'POST /v1/test_helpers/issuing/authorizations/{id}/finalize_amount', rule: unpriced('sets a final amount in the card currency') },
  { match: 'POST /v1/test_helpers/issuing/authorizations/{id}/fraud_challenges/respond', rule: free(NONE) },
  { match: 'POST /v1/test_helpers/issuing/authorizations/{id}/increment', rule: unpriced('raises an authorization in the card currency') },
  { match: 'POST /v1/test_helpers/issuing/authorizations/{id}/reverse', rule: free(CANCEL) },
  { match: 'POST /v1/test_helpers/issuing/cards/{id}/shipping/deliver', rule: free(NONE) },
  { match: 'POST /v1/test_helpers/issuing/cards/{id}/shipping/fail', rule: free(NONE) },
  { match: 'POST /v1/test_helpers/issuing/cards/{id}/shipping/return', rule: free(NONE) },
  { match: 'POST /v1/test_helpers/issuing/cards/{id}/shipping/ship', rule: free(NONE) },
  { match: 'POST /v1/test_helpers/issuing/cards/{id}/shipping/submit', rule: free(NONE) },
  { match: 'POST /v1/test_helpers/issuing/personalization_designs/{id}/activate', rule: free(SETTINGS) },
  { match: 'POST /v1/test_helpers/issuing/personalization_designs/{id}/deactivate', rule: free(SETTINGS) },
  { match: 'POST /v1/test_helpers/issuing/personalization_designs/{id}/reject', rule: free(SETTINGS) },
  { match: 'POST /v1/test_helpers/issuing/transactions/create_force_capture', rule: movesInObjectCurrency('unknown') },
  { match: 'POST /v1/test_helpers/issuing/transactions/create_unlinked_refund', rule: movesInObjectCurrency('unknown') },
  { match: 'POST /v1/test_helpers/issuing/transactions/{id}/refund', rule: unpriced('refunds in the card currency') },
  { match: 'POST /v1/test_helpers/refunds/{id}/expire', rule: free(CANCEL) },
  {
    match: 'POST /v1/test_helpers/terminal/readers/{id}/present_payment_method',
    rule: free(COUNTED_AT_CREATE, { ifSent: ['amount_tip'], why: "a tip in the payment's currency" }),
  },
  { match: 'POST /v1/test_helpers/terminal/readers/{id}/succeed_input_collection', rule: free(NONE) },
  { match: 'POST /v1/test_helpers/terminal/readers/{id}/timeout_input_collection', rule: free(NONE) },
  { match: 'POST /v1/test_helpers/test_clocks', rule: free(NONE) },
  { match: 'DELETE /v1/test_helpers/test_clocks/{id}', rule: free(NONE) },
  { match: 'POST /v1/test_helpers/test_clocks/{id}/advance', rule: unpriced('runs the renewals and collections due in the skipped time') },
  { match: 'POST /v1/test_helpers/treasury/inbound_transfers/{id}/fail', rule: free(CANCEL) },
  { match: 'POST /v1/test_helpers/treasury/inbound_transfers/{id}/return', rule: free(CANCEL) },
  { match: 'POST /v1/test_helpers/treasury/inbound_transfers/{id}/succeed', rule: free(COUNTED_AT_CREATE) },
  { match: 'POST /v1/test_helpers/treasury/outbound_payments/{id}', rule: free(METADATA) },
  { match: 'POST /v1/test_helpers/treasury/outbound_payments/{id}/fail', rule: free(CANCEL) },
  { match: 'POST /v1/test_helpers/treasury/outbound_payments/{id}/post', rule: free(COUNTED_AT_CREATE) },
  { match: 'POST /v1/test_helpers/treasury/outbound_payments/{id}/return', rule: free(CANCEL) },
  { match: 'POST /v1/test_helpers/treasury/outbound_transfers/{id}', rule: free(METADATA) },
  { match: 'POST /v1/test_helpers/treasury/outbound_transfers/{id}/fail', rule: free(CANCEL) },
  { match: 'POST /v1/test_helpers/treasury/outbound_transfers/{id}/post', rule: free(COUNTED_AT_CREATE) },
  { match: 'POST /v1/test_helpers/treasury/outbound_transfers/{id}/return', rule: free(CANCEL) },
  { match: 'POST /v1/test_helpers/treasury/received_credits', rule: moves() },
  { match: 'POST /v1/test_helpers/treasury/received_debits', rule: moves() },

  { match: 'POST /v1/three_d_secure/authentications', rule: free(NONE) },
  { match: 'POST /v1/three_d_secure/authentications/{id}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/three_d_secure/authentications/{id}/submit', rule: free(NONE) },
  { match: 'POST /v1/tokens', rule: free(NONE) },
  { match: 'POST /v1/topups', rule: moves() },
  { match: 'POST /v1/topups/{topup}', rule: free(METADATA) },
  { match: 'POST /v1/topups/{topup}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/transfers', rule: moves() },
  { match: 'POST /v1/transfers/{transfer}', rule: free(METADATA) },
  { match: 'POST /v1/transfers/{transfer}/reversals', rule: unpriced("reverses a transfer in its own currency; a missing amount reverses all of it") },
  { match: 'POST /v1/transfers/{transfer}/reversals/{id}', rule: free(METADATA) },

  // Treasury
  { match: 'POST /v1/treasury/credit_reversals', rule: unpriced('sends a received credit back, for its own amount') },
  { match: 'POST /v1/treasury/debit_reversals', rule: free('brings a received debit back in') },
  { match: 'POST /v1/treasury/financial_accounts', rule: free(SETTINGS) },
  { match: 'POST /v1/treasury/financial_accounts/{id}', rule: free(SETTINGS) },
  { match: 'POST /v1/treasury/financial_accounts/{id}/close', rule: free(SETTINGS) },
  { match: 'POST /v1/treasury/financial_accounts/{id}/features', rule: free(SETTINGS) },
  { match: 'POST /v1/treasury/inbound_transfers', rule: moves() },
  { match: 'POST /v1/treasury/inbound_transfers/{id}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/treasury/outbound_payments', rule: moves() },
  { match: 'POST /v1/treasury/outbound_payments/{id}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/treasury/outbound_transfers', rule: moves() },
  { match: 'POST /v1/treasury/outbound_transfers/{id}/cancel', rule: free(CANCEL) },
  { match: 'POST /v1/webhook_endpoints', rule: free(SETTINGS) },
  { match: 'POST /v1/webhook_endpoints/{id}', rule: free(SETTINGS) },
  { match: 'DELETE /v1/webhook_endpoints/{id}', rule: free(SETTINGS) },

  // API v2
  { match: 'POST /v2/billing/meter_event_adjustments', rule: unpriced('changes metered usage that subscriptions bill') },
  { match: 'POST /v2/billing/meter_event_session', rule: free(NONE) },
  { match: 'POST /v2/billing/meter_event_stream', rule: unpriced('reports metered usage that subscriptions bill') },
  { match: 'POST /v2/billing/meter_events', rule: unpriced('reports metered usage that subscriptions bill') },
  { match: 'POST /v2/commerce/product_catalog/imports', rule: free(NONE) },
  { match: 'POST /v2/core/account_links', rule: free(NONE) },
  { match: 'POST /v2/core/account_tokens', rule: free(NONE) },
  { match: 'POST /v2/core/accounts', rule: free(NONE) },
  { match: 'POST /v2/core/accounts/{id}', rule: free(SETTINGS) },
  { match: 'POST /v2/core/accounts/{id}/close', rule: free(NONE) },
  { match: 'POST /v2/core/accounts/{id}/person_tokens', rule: free(NONE) },
  { match: 'POST /v2/core/accounts/{id}/persons', rule: free(NONE) },
  { match: 'POST /v2/core/accounts/{id}/persons/{person}', rule: free(NONE) },
  { match: 'DELETE /v2/core/accounts/{id}/persons/{person}', rule: free(NONE) },
  { match: 'POST /v2/core/event_destinations', rule: free(SETTINGS) },
  { match: 'POST /v2/core/event_destinations/{id}', rule: free(SETTINGS) },
  { match: 'DELETE /v2/core/event_destinations/{id}', rule: free(SETTINGS) },
  { match: 'POST /v2/core/event_destinations/{id}/disable', rule: free(SETTINGS) },
  { match: 'POST /v2/core/event_destinations/{id}/enable', rule: free(SETTINGS) },
  { match: 'POST /v2/core/event_destinations/{id}/ping', rule: free(NONE) },
  { match: 'POST /v2/core/vault/gb_bank_accounts', rule: free(NONE) },
  { match: 'POST /v2/core/vault/gb_bank_accounts/{id}/archive', rule: free(NONE) },
  { match: 'POST /v2/core/vault/gb_bank_accounts/{id}/unarchive', rule: free(NONE) },
  { match: 'POST /v2/core/vault/us_bank_accounts', rule: free(NONE) },
  { match: 'POST /v2/core/vault/us_bank_accounts/{id}', rule: free(NONE) },
  { match: 'POST /v2/core/vault/us_bank_accounts/{id}/archive', rule: free(NONE) },
  { match: 'POST /v2/core/vault/us_bank_accounts/{id}/confirm_microdeposits', rule: free(NONE) },
  { match: 'POST /v2/core/vault/us_bank_accounts/{id}/send_microdeposits', rule: free("Stripe's own verification deposits") },
  { match: 'POST /v2/core/vault/us_bank_accounts/{id}/unarchive', rule: free(NONE) },
  // v2 bodies are JSON objects (`amount: {value, currency}`); v2 money movement is not priced yet.
  { match: 'POST /v2/money_management/financial_accounts/{id}', rule: free(SETTINGS) },
  { match: 'POST /v2/money_management/financial_addresses', rule: free(NONE) },
  { match: 'POST /v2/money_management/inbound_transfers', rule: unpriced('a v2 money movement (not priced yet)') },
  { match: 'POST /v2/money_management/outbound_payments', rule: unpriced('a v2 money movement (not priced yet)') },
  { match: 'POST /v2/money_management/outbound_payments/{id}/cancel', rule: free(CANCEL) },
  { match: 'POST /v2/money_management/outbound_setup_intents', rule: free(NONE) },
  { match: 'POST /v2/money_management/outbound_setup_intents/{id}', rule: free(NONE) },
  { match: 'POST /v2/money_management/outbound_setup_intents/{id}/cancel', rule: free(CANCEL) },
  { match: 'POST /v2/money_management/payout_intents', rule: unpriced('a v2 money movement (not priced yet)') },
  { match: 'POST /v2/money_management/payout_intents/{id}', rule: unpriced('may change a v2 payout amount') },
  { match: 'POST /v2/money_management/payout_intents/{id}/cancel', rule: free(CANCEL) },
  { match: 'POST /v2/money_management/payout_intents/{id}/confirm', rule: unpriced('a v2 money movement (not priced yet)') },
  { match: 'POST /v2/money_management/payout_intents/{id}/refresh_fx_quote', rule: free(NONE) },
  { match: 'POST /v2/money_management/payout_intents/{id}/refresh_recipient_verification', rule: free(NONE) },
  { match: 'POST /v2/money_management/payout_methods/{id}/archive', rule: free(SETTINGS) },
  { match: 'POST /v2/money_management/payout_methods/{id}/unarchive', rule: free(SETTINGS) },
  { match: 'POST /v2/money_management/recipient_verifications', rule: free(NONE) },
  { match: 'POST /v2/money_management/recipient_verifications/{id}/acknowledge', rule: free(NONE) },
  { match: 'POST /v2/money_management/test_helpers/financial_addresses/{id}/credit', rule: unpriced('a v2 money movement (not priced yet)') },
  { match: 'POST /v2/money_management/transactions/{id}', rule: free(METADATA) },
  { match: 'POST /v2/money_management/transactions/{id}/refresh_regulatory_receipt', rule: free(NONE) },
  { match: 'POST /v2/test_helpers/money_management/recipient_verifications', rule: free(NONE) },
];

const list = (xs: readonly string[]): string => xs.map((x) => `\`${x}\``).join(', ');
/** A bracket-free param path as it is spelled on the wire (`transfer_data[amount]`). */
const wire = (path: string): string => {
  const [head, ...rest] = path.split('.');
  return head + rest.map((r) => `[${r}]`).join('');
};

function describeGuard(g: Guard): string {
  const parts: string[] = [];
  if (g.ifSent) parts.push(`${list(g.ifSent.map(wire))} is sent`);
  if (g.ifTrue) parts.push(`${list(g.ifTrue)} is not \`false\``);
  if (g.unless) parts.push(`it is not sent with ${list(Object.entries(g.unless).map(([k, v]) => `${k}=${v}`))}`);
  if (g.only) parts.push(`a param other than ${list(g.only)} is sent`);
  return `cost_unknown when ${parts.join(' or ')} (${g.why})`;
}

/** The class of an entry as the docs name it. */
export function classOf(rule: StripeRule): 'priced' | 'unpriceable' | 'no money' {
  return rule.kind === 'amount' ? 'priced' : rule.kind === 'unpriced' ? 'unpriceable' : 'no money';
}

/** How an entry is counted, in words (GET /v1/vendors and docs/stripe-endpoints.md). */
export function describeStripeRule(rule: StripeRule): string {
  if (rule.kind === 'unpriced') return `cost_unknown on a capped key: ${rule.why}`;
  if (rule.kind === 'free') return rule.guard ? `$0 (${rule.why}); ${describeGuard(rule.guard)}` : `$0: ${rule.why}`;
  const amounts = rule.amounts.map(wire);
  const what = amounts.length > 1 ? `the largest of ${list(amounts)}` : list(amounts);
  const oc = rule.objectCurrency;
  const objects = oc ? oc.sources.map(([from, read]) => (from.startsWith('{') ? `the \`${read.replace('{}', '{id}')}\` of the path` : `the \`${from}\``)) : [];
  const currency =
    rule.currency === 'required'
      ? 'in `currency` (required), converted to USD'
      : oc
        ? `in the currency of ${objects.join(' or ')}, read from Stripe with the real secret${oc.authoritative ? '' : ' when the call names no `currency`'}, converted to USD; ${oc.authoritative ? 'naming none of them' : 'otherwise'}: in \`currency\`, and without it cost_unknown`
        : "in `currency`, converted to USD; without `currency` cost_unknown (Stripe would use the object's)";
  const missing = { invalid: 'invalid_amount', unknown: 'cost_unknown', free: '$0' }[rule.missingAmount];
  const extra = [rule.note, rule.guard ? describeGuard(rule.guard) : undefined].filter(Boolean);
  return `${what} ${currency}; without an amount ${missing}${extra.length ? '; ' + extra.join('; ') : ''}`;
}
