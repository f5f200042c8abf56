import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { STRIPE_ENDPOINTS } from './stripe-endpoints.js';
import { renderStripeEndpointsDoc } from './stripe-endpoints-doc.js';
import { stripeSdkVersion } from './stripe-sdk-endpoints.js';

const DOC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'docs', 'stripe-endpoints.md');

describe('docs/stripe-endpoints.md', () => {
  it('is up to date with the endpoint table (regenerate: npm run build && node scripts/stripe-endpoints-doc.mjs)', () => {
    expect(readFileSync(DOC, 'utf8')).toBe(renderStripeEndpointsDoc(`stripe ${stripeSdkVersion()}`));
  });

  it('lists every endpoint of the table once', () => {
    const doc = renderStripeEndpointsDoc('x');
    for (const e of STRIPE_ENDPOINTS) {
      const [method, path] = e.match.split(' ');
      expect(doc.split('\n').filter((l) => l.startsWith(`| ${method} | \`${path}\` |`)), e.match).toHaveLength(1);
    }
  });
});
