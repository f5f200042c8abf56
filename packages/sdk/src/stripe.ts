import Stripe from 'stripe';
import { resolveBinding, type BindOptions } from './bind.js';

export interface StripeClientOptions extends BindOptions {
  /** Extra stripe-node settings (apiVersion, timeout, …); host/port/protocol are set to the proxy. */
  config?: Stripe.StripeConfig;
}

/**
 * A `stripe` client that calls through the keyleash proxy with the vault key in scope (the
 * `stripe` entry, or the first key for Stripe). Errors from keyleash come back as stripe-node
 * errors with `err.code` = keyleash's code (`isCapExhausted(err)` recognises them).
 */
export function stripeClient(options: StripeClientOptions = {}): Stripe {
  const { token, proxyUrl } = resolveBinding(options, 'stripe');
  const u = new URL(proxyUrl);
  const protocol = u.protocol === 'https:' ? 'https' : 'http';
  const port = u.port ? Number(u.port) : protocol === 'https' ? 443 : 80;
  if (u.pathname !== '/' && u.pathname !== '') {
    throw new TypeError(`keyleash: stripe-node takes no path prefix, so the proxy URL must be a bare origin (got ${proxyUrl})`);
  }
  return new Stripe(token, { ...options.config, host: u.hostname, port, protocol });
}
