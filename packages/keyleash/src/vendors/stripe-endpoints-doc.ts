import { STRIPE_HEADERS } from './forwarded-headers.js';
import { classOf, describeStripeRule, STRIPE_ENDPOINTS } from './stripe-endpoints.js';

// Renders docs/stripe-endpoints.md from the endpoint table. scripts/stripe-endpoints-doc.mjs
// writes it; stripe-endpoints-doc.test.ts fails when the committed file is out of date.

const escape = (s: string) => s.replace(/\|/g, '\\|');

export function renderStripeEndpointsDoc(sdkVersion: string): string {
  const rows = [...STRIPE_ENDPOINTS].sort((a, b) => {
    const [ma, pa] = a.match.split(' ') as [string, string];
    const [mb, pb] = b.match.split(' ') as [string, string];
    return pa === pb ? ma.localeCompare(mb) : pa < pb ? -1 : 1;
  });
  const count = (c: string) => STRIPE_ENDPOINTS.filter((e) => classOf(e.rule) === c).length;
  return `<!-- Generated from src/vendors/stripe-endpoints.ts by scripts/stripe-endpoints-doc.mjs; do not edit by hand. -->
# How keyleash counts each Stripe endpoint

On a key with a \`daily_usd_cap\`, a Stripe call is forwarded only when keyleash can price it or
knows it moves no money. This page is the table that decides, one row per \`POST\`/\`DELETE\`
endpoint of the official \`stripe\` npm package (${sdkVersion}); a test fails when that package
has a write endpoint the table does not classify.

- **priced**: the amount is read from the request (the params named, in \`currency\`), converted
  to USD and reserved against the cap before the call is forwarded. Amounts must be whole minor
  units, given once.
- **unpriceable**: the call moves money whose size the request does not show (prices, invoices,
  the object's own amount or currency). A capped key is refused with \`403 cost_unknown\`.
- **no money**: forwarded at $0 (some only while the request avoids the params named).
- **not in the table** (an endpoint Stripe adds later, a legacy path, another method):
  \`403 cost_unknown\` on a capped key. \`GET\` and \`HEAD\` are always free.

Keys without a cap forward every call and are charged what can be priced.

Counts: ${count('priced')} priced, ${count('unpriceable')} unpriceable, ${count('no money')} moving no money.

## Choices

- **Subscriptions, subscription schedules and quotes are refused, not priced by lookup.** Their
  first charge depends on price objects, quantities, trials, proration, coupons and tax; reading
  one price with the real secret would still not give the amount Stripe charges, and would put a
  vendor round trip before every such call. A key that must create subscriptions is issued
  without a cap (its spend is then what keyleash can price), or the subscription is created by a
  backend outside the agent's key.
- **An amount is priced in the currency Stripe moves it in, never in a default.** Stripe carries
  out a refund in its charge's currency, and a payment intent update or authorization increment
  without \`currency\` in the intent's (a GBP intent stays GBP). For these keyleash reads the
  charge or intent (\`GET\`, with the real secret, before anything is reserved) and prices the
  amount in its currency; a refund's own \`currency\` param is not trusted. When the object
  cannot be read (unknown id, vendor error, timeout) the call is \`cost_unknown\` on a capped
  key. Other calls with an amount but no \`currency\` (invoice items, Climate orders, Issuing test
  helpers) are \`cost_unknown\` on a capped key: send \`currency\` with the amount.
- **Completing a payment is counted when the payment was created.** Confirming or capturing an
  intent (or a charge created with \`capture=false\`) moves the amount its create reserved through
  keyleash; asking for overcapture, which could move more, is \`cost_unknown\`. An intent created
  outside keyleash and completed through a vault key is not counted again.
- **API v2 money movement is not priced yet**: its JSON amounts are refused on a capped key.
- Stripe's own fees for a call (Identity, Tax, Radar, Financial Connections…) are not counted.

## Headers

Only these request headers reach Stripe, on every key: ${STRIPE_HEADERS.forwardHeaders.map((h) => `\`${h}\``).join(', ')}
(plus the content headers keyleash sets and the real credential). \`Stripe-Account\` and
\`Stripe-Context\`, which would act on a connected account instead of the key's own, are refused
with \`403 header_not_allowed\` in any spelling, repeated or empty.

## The table

| method | path | class | how it is counted |
|---|---|---|---|
${rows
  .map((e) => {
    const [method, path] = e.match.split(' ') as [string, string];
    return `| ${method} | \`${path}\` | ${classOf(e.rule)} | ${escape(describeStripeRule(e.rule))} |`;
  })
  .join('\n')}
`;
}
