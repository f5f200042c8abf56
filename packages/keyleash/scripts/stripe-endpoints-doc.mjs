#!/usr/bin/env node
// Writes docs/stripe-endpoints.md from the Stripe endpoint table (build first: npm run build).
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderStripeEndpointsDoc } from '../dist/vendors/stripe-endpoints-doc.js';
import { stripeSdkVersion } from '../dist/vendors/stripe-sdk-endpoints.js';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', '..', '..', 'docs', 'stripe-endpoints.md');
writeFileSync(out, renderStripeEndpointsDoc(`stripe ${stripeSdkVersion()}`));
console.log(`wrote ${out}`);
