import OpenAI from 'openai';
import Stripe from 'stripe';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import {
  ANTHROPIC_TEST_SECRET,
  OPENAI_TEST_SECRET,
  rawRequest,
  startGateway,
  STRIPE_TEST_SECRET,
  type TestGateway,
  TWILIO_TEST_SID,
  TWILIO_TEST_TOKEN,
} from './harness.js';

// Request headers are an allowlist per vendor, and the headers that choose the account or
// organisation a call acts on are refused on every key (403 header_not_allowed), whatever their
// spelling, value or count. Each attack asserts the answer and what the upstream saw.

const MAILER_TEST = 'mailer-test-secret-0123';

for (const backend of await backends('hdrs')) {
  describe.skipIf(backend.skip)(`forwarded request headers (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;
    const echo = () => t.sandboxes.echo!;

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(
        (stripeUrl, _dir, urls) => ({
          log_level: 'warn',
          ...(storeConfig ? { store: storeConfig as never } : {}),
          vendors: {
            stripe: { base_url: stripeUrl, test_secret: STRIPE_TEST_SECRET },
            openai: { base_url: urls.echo!, test_secret: OPENAI_TEST_SECRET, organization: 'org-configured', project: 'proj_configured' },
            anthropic: { base_url: urls.echo!, test_secret: ANTHROPIC_TEST_SECRET },
            twilio: { base_url: urls.echo!, test_account_sid: TWILIO_TEST_SID, test_auth_token: TWILIO_TEST_TOKEN },
            generic: {
              mailer: { base_url: urls.echo!, test_secret: MAILER_TEST, unknown_cost: 'free', forward_headers: ['X-Mailer-Tag', 'x-trace-*'] },
              plain: { base_url: urls.echo!, test_secret: MAILER_TEST + 'p', unknown_cost: 'free' },
            },
          },
        }),
        { sandboxes: ['echo'] },
      );
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });
    beforeEach(() => {
      t.sandbox.requests.length = 0;
      echo().reset();
    });

    const stripeKey = (cap: number | undefined) =>
      t.issue({
        label: 'hdr',
        vendor: 'stripe',
        allowed_endpoints: ['/v1/payment_intents', '/v1/customers'],
        ...(cap === undefined ? {} : { daily_usd_cap: cap }),
        expires_in: '5m',
      });
    const keyFor = (vendor: string, endpoints: string[]) => t.issue({ label: 'hdr', vendor, allowed_endpoints: endpoints, expires_in: '5m' });

    describe('Stripe-Account and Stripe-Context are refused on every key', () => {
      const cases: Array<[string, Record<string, string | string[]>]> = [
        ['Stripe-Account', { 'Stripe-Account': 'acct_victim' }],
        ['stripe-account', { 'stripe-account': 'acct_victim' }],
        ['STRIPE-ACCOUNT', { 'STRIPE-ACCOUNT': 'acct_victim' }],
        ['sTrIpE-aCcOuNt', { 'sTrIpE-aCcOuNt': 'acct_victim' }],
        ['Stripe_Account (underscore)', { Stripe_Account: 'acct_victim' }],
        ['Stripe-Account with an empty value', { 'Stripe-Account': '' }],
        ['Stripe-Account twice', { 'Stripe-Account': ['acct_victim', 'acct_other'] }],
        ['Stripe-Account twice, same value', { 'Stripe-Account': ['acct_victim', 'acct_victim'] }],
        ['Stripe-Context', { 'Stripe-Context': 'ctx_victim' }],
        ['stripe-context', { 'stripe-context': 'acct_1/acct_2' }],
        ['STRIPE-CONTEXT', { 'STRIPE-CONTEXT': 'acct_victim' }],
        ['STRIPE-CONTEXT empty', { 'STRIPE-CONTEXT': '' }],
        ['Stripe-Context twice', { 'Stripe-Context': ['a', 'b'] }],
        ['both', { 'Stripe-Account': 'acct_1', 'Stripe-Context': 'acct_2' }],
      ];
      for (const capped of [true, false]) {
        it.each(cases)(`${capped ? 'capped' : 'uncapped'} key: %s → 403 header_not_allowed, nothing forwarded`, async (_n, extra) => {
          const key = await stripeKey(capped ? 100 : undefined);
          for (const [method, path, body] of [
            ['POST', '/v1/payment_intents', 'amount=100&currency=usd'],
            ['GET', '/v1/customers', undefined],
          ] as const) {
            const headers = { authorization: `Bearer ${key.token}`, ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}), ...extra };
            const r = await rawRequest(t.proxyUrl, method, path, headers, body);
            expect(r.status, `${method} ${path}`).toBe(403);
            expect(r.body.code).toBe('header_not_allowed');
            expect(r.body.message).not.toContain('acct_victim');
          }
          expect(t.sandbox.requests).toHaveLength(0);
          expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_usd).toBe(0);
        });
      }
    });

    it('refuses the official SDKs acting for another account or organisation (stripeAccount, stripeContext, organization, project)', async () => {
      const key = await stripeKey(100);
      const u = new URL(t.proxyUrl);
      const stripe = new Stripe(key.token, { host: u.hostname, port: Number(u.port), protocol: 'http', maxNetworkRetries: 2 });
      for (const opts of [{ stripeAccount: 'acct_victim' }, { stripeContext: 'acct_victim' }]) {
        const err = await stripe.paymentIntents.create({ amount: 100, currency: 'usd' }, opts).then(() => null, (e: unknown) => e as { statusCode: number; code: string });
        expect(err).toMatchObject({ statusCode: 403, code: 'header_not_allowed' });
      }
      // A client configured for another account sends it on every call, reads included.
      const scoped = new Stripe(key.token, { host: u.hostname, port: Number(u.port), protocol: 'http', stripeAccount: 'acct_victim' });
      await expect(scoped.customers.list()).rejects.toMatchObject({ statusCode: 403, code: 'header_not_allowed' });
      expect(t.sandbox.requests).toHaveLength(0);
      // The same client without it works.
      expect((await stripe.paymentIntents.create({ amount: 100, currency: 'usd' })).object).toBe('payment_intent');
      expect(t.sandbox.requests).toHaveLength(1);

      const oaKey = await keyFor('openai', ['GET /v1/models']);
      for (const opts of [{ organization: 'org-attacker' }, { project: 'proj_attacker' }]) {
        const openai = new OpenAI({ apiKey: oaKey.token, baseURL: `${t.proxyUrl}/openai/v1`, maxRetries: 0, ...opts });
        await expect(openai.models.list()).rejects.toMatchObject({ status: 403 });
      }
      expect(echo().requests).toHaveLength(0);
    });

    it('forwards only the Stripe allowlist: SDK and idempotency headers pass, URL-override and other headers are dropped', async () => {
      const key = await stripeKey(100);
      const r = await rawRequest(
        t.proxyUrl,
        'POST',
        '/v1/payment_intents',
        {
          authorization: `Bearer ${key.token}`,
          'content-type': 'application/x-www-form-urlencoded',
          'Idempotency-Key': 'ik-1',
          'Stripe-Version': '2024-06-20',
          'User-Agent': 'Stripe/v1 NodeBindings/23.1.0',
          'X-Stripe-Client-User-Agent': '{"lang":"node"}',
          Accept: 'application/json',
          'Accept-Language': 'en',
          'X-Original-URL': '/v1/payouts',
          'X-Rewrite-URL': '/v1/payouts',
          'X-Override-Host': 'evil.example',
          'Stripe-Account-Id': 'acct_1',
          'X-Stripe-Account': 'acct_1',
          Traceparent: '00-abc-def-01',
          'X-Anything': 'x',
        },
        'amount=100&currency=usd',
      );
      expect(r.status).toBe(200);
      const h = t.sandbox.requests[0]!.headers;
      expect(h['idempotency-key']).toBe('ik-1');
      expect(h['stripe-version']).toBe('2024-06-20');
      expect(h['user-agent']).toBe('Stripe/v1 NodeBindings/23.1.0');
      expect(h['x-stripe-client-user-agent']).toBe('{"lang":"node"}');
      expect(h.accept).toBe('application/json');
      expect(h['accept-language']).toBe('en');
      expect(h.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
      const expected = [
        'accept', 'accept-encoding', 'accept-language', 'authorization', 'connection', 'content-length', 'content-type', 'host',
        'idempotency-key', 'stripe-version', 'user-agent', 'x-keyleash-request-id', 'x-stripe-client-user-agent',
      ];
      expect(Object.keys(h).sort()).toEqual(expected);
    });

    describe('OpenAI-Organization and OpenAI-Project come from configuration only', () => {
      it.each([
        ['OpenAI-Organization', { 'OpenAI-Organization': 'org-attacker' }],
        ['openai-organization', { 'openai-organization': 'org-attacker' }],
        ['OPENAI-PROJECT', { 'OPENAI-PROJECT': 'proj_attacker' }],
        ['OpenAI-Project empty', { 'OpenAI-Project': '' }],
        ['OpenAI-Organization twice', { 'OpenAI-Organization': ['org-configured', 'org-attacker'] }],
        ['openai_organization (underscore)', { openai_organization: 'org-attacker' }],
      ])('a caller-sent %s is refused (403 header_not_allowed), nothing forwarded', async (_n, extra) => {
        const key = await keyFor('openai', ['GET /v1/models']);
        const r = await rawRequest(t.proxyUrl, 'GET', '/v1/models', { authorization: `Bearer ${key.token}`, ...extra });
        expect(r.status).toBe(403);
        expect(r.body.code).toBe('header_not_allowed');
        expect(echo().requests).toHaveLength(0);
      });

      it('sends the configured organisation and project, and the SDK headers, on every call', async () => {
        const key = await keyFor('openai', ['GET /v1/models']);
        const r = await rawRequest(t.proxyUrl, 'GET', '/v1/models', {
          authorization: `Bearer ${key.token}`,
          'OpenAI-Beta': 'assistants=v2',
          'X-Stainless-Lang': 'js',
          'X-Stainless-Retry-Count': '0',
          'X-Original-URL': '/v1/files',
        });
        expect(r.status).toBe(200);
        const h = echo().requests[0]!.headers;
        expect(h['openai-organization']).toBe('org-configured');
        expect(h['openai-project']).toBe('proj_configured');
        expect(h['openai-beta']).toBe('assistants=v2');
        expect(h['x-stainless-lang']).toBe('js');
        expect(h['x-stainless-retry-count']).toBe('0');
        expect(h['x-original-url']).toBeUndefined();
        expect(h.authorization).toBe(`Bearer ${OPENAI_TEST_SECRET}`);
      });
    });

    it('forwards the Anthropic allowlist only, never the vault token header', async () => {
      const key = await keyFor('anthropic', ['GET /v1/models']);
      const r = await rawRequest(t.proxyUrl, 'GET', '/v1/models', {
        'x-api-key': key.token,
        'anthropic-version': '2023-06-01',
        'anthropic-beta': 'files-api-2025-04-14',
        'anthropic-workspace-id': 'wrkspc_other',
        'X-Stainless-Os': 'Linux',
        'X-Rewrite-URL': '/v1/files',
      });
      expect(r.status).toBe(200);
      const h = echo().requests[0]!.headers;
      expect(h['anthropic-version']).toBe('2023-06-01');
      expect(h['anthropic-beta']).toBe('files-api-2025-04-14');
      expect(h['x-stainless-os']).toBe('Linux');
      expect(h['x-api-key']).toBe(ANTHROPIC_TEST_SECRET);
      expect(h['anthropic-workspace-id']).toBeUndefined();
      expect(h['x-rewrite-url']).toBeUndefined();
    });

    it('forwards the Twilio allowlist only', async () => {
      const key = await keyFor('twilio', ['GET /2010-04-01/Accounts/*/Messages.json']);
      const r = await rawRequest(t.proxyUrl, 'GET', `/2010-04-01/Accounts/${TWILIO_TEST_SID}/Messages.json`, {
        authorization: `Bearer ${key.token}`,
        'Accept-Charset': 'utf-8',
        'User-Agent': 'twilio-node/6.2.0',
        'X-Original-URL': '/2010-04-01/Accounts.json',
        'X-Twilio-Signature': 'forged',
      });
      expect(r.status).toBe(200);
      const h = echo().requests[0]!.headers;
      expect(h['accept-charset']).toBe('utf-8');
      expect(h['user-agent']).toBe('twilio-node/6.2.0');
      expect(h['x-original-url']).toBeUndefined();
      expect(h['x-twilio-signature']).toBeUndefined();
    });

    it('forwards a generic vendor its configured forward_headers (names and prefixes), and a default otherwise', async () => {
      const mailer = await keyFor('mailer', ['GET /v3/ping']);
      await rawRequest(t.proxyUrl, 'GET', '/mailer/v3/ping', {
        authorization: `Bearer ${mailer.token}`,
        'X-Mailer-Tag': 'a',
        'X-Trace-Id': 'b',
        'Idempotency-Key': 'c',
        'X-Original-URL': '/admin',
      });
      const m = echo().requests[0]!.headers;
      expect(m['x-mailer-tag']).toBe('a');
      expect(m['x-trace-id']).toBe('b');
      expect(m['idempotency-key']).toBeUndefined();
      expect(m['x-original-url']).toBeUndefined();

      const plain = await keyFor('plain', ['GET /v3/ping']);
      await rawRequest(t.proxyUrl, 'GET', '/plain/v3/ping', {
        authorization: `Bearer ${plain.token}`,
        'X-Mailer-Tag': 'a',
        'Idempotency-Key': 'c',
        Accept: 'application/json',
        'X-Original-URL': '/admin',
      });
      const p = echo().requests[1]!.headers;
      expect(p['idempotency-key']).toBe('c');
      expect(p.accept).toBe('application/json');
      expect(p['x-mailer-tag']).toBeUndefined();
      expect(p['x-original-url']).toBeUndefined();
    });
  });
}
