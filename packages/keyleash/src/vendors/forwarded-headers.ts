import { BASE_FORWARDED_HEADERS as BASE } from './vendor.js';

// Which caller headers each built-in vendor receives (the allowlist), and which a call may not
// carry at all. What a vendor's official SDK sends is here, so SDKs work through the proxy; any
// other header (X-Original-URL, X-Rewrite-URL, tracing, …) is dropped. Lower case; `*` ends a prefix.

export const STRIPE_HEADERS = {
  forwardHeaders: [
    ...BASE,
    'idempotency-key',
    'stripe-version',
    'x-stripe-client-user-agent',
    'x-stripe-client-telemetry',
    'stripe-request-trigger',
  ],
  // They act on a connected account (or context) instead of the key's own: what a vault key may
  // reach would no longer be what its scope and cap were issued for.
  refusedHeaders: ['stripe-account', 'stripe-context'],
} as const;

export const OPENAI_HEADERS = {
  forwardHeaders: [...BASE, 'openai-beta', 'idempotency-key', 'x-stainless-*'],
  // Set from configuration (vendors.openai.organization / project) instead.
  refusedHeaders: ['openai-organization', 'openai-project'],
} as const;

export const ANTHROPIC_HEADERS = {
  forwardHeaders: [...BASE, 'anthropic-version', 'anthropic-beta', 'x-stainless-*'],
} as const;

export const TWILIO_HEADERS = {
  forwardHeaders: [...BASE, 'accept-charset', 'i-twilio-idempotency-token', 'x-twilio-webhook-enabled'],
} as const;

/** A generic vendor's allowlist when its configuration names none (`forward_headers`). */
export const GENERIC_DEFAULT_FORWARDED: readonly string[] = [...BASE, 'idempotency-key'];
