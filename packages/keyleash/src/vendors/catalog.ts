import type { Config } from '../config/config.js';
import { DEFAULT_FX } from '../policy/money.js';
import { stripeVendor } from './stripe.js';
import type { Vendor, VendorCatalog } from './vendor.js';

/** Builds the configured vendors. A vendor absent from config does not exist for the gateway. */
export function buildCatalog(config: Config): VendorCatalog {
  const catalog = new Map<string, Vendor>();
  const s = config.vendors.stripe;
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
  return catalog;
}

/** Names the proxy treats as a vendor prefix (`/stripe/v1/...`) even when not configured. */
export const KNOWN_VENDOR_NAMES: ReadonlySet<string> = new Set(['stripe', 'twilio', 'openai', 'anthropic']);
