import type { ToolRuleInput } from './config-schema.js';

// Cost rules shipped for known MCP servers, as data. A server's own `tools` entries come before
// its preset's, so any rule here can be overridden in config.

/**
 * Stripe's MCP server (the tools of Stripe's agent toolkit, which its remote server serves) with
 * the judgement of the HTTP table in vendors/stripe-endpoints.ts: money that leaves the account
 * is priced from the arguments; calls that only describe, list or create records are free; calls
 * whose amount lives in an object the arguments only name are unpriced (cost_unknown on a capped key).
 */
export const STRIPE_MCP_TOOLS: Readonly<Record<string, ToolRuleInput>> = {
  // A refund moves its `amount` (minor units of the payment's currency) back out of the account;
  // without `amount` it refunds the whole remainder, which the arguments do not tell.
  create_refund: { amount: { path: 'amount', unit: 'minor', currency_path: 'currency' } },
  create_payment_link: { unpriced: 'the amount is that of the price object the arguments name, times quantity' },
  create_invoice_item: { unpriced: 'adds the amount of a price object the arguments only name' },
  finalize_invoice: { unpriced: 'finalizing lets Stripe collect the invoice total' },
  update_subscription: { unpriced: 'changing items or quantities changes what the subscription bills' },
  cancel_subscription: 'free',
  create_customer: 'free',
  create_product: 'free',
  create_price: 'free',
  create_coupon: 'free',
  create_invoice: 'free',
  update_dispute: 'free',
  retrieve_balance: 'free',
  get_stripe_account_info: 'free',
  search_stripe_documentation: 'free',
  search_documentation: 'free',
  'list_*': 'free',
  'search_stripe_resources': 'free',
  'fetch_stripe_resources': 'free',
};

export const PRESETS: Readonly<Record<'stripe', Readonly<Record<string, ToolRuleInput>>>> = { stripe: STRIPE_MCP_TOOLS };
