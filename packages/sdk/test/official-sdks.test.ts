import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Stripe from 'stripe';
import { createAnthropicSandbox, createGateway, createOpenAISandbox, createStripeSandbox, createTwilioSandbox, parseConfig, type Gateway } from 'keyleash';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isCapExhausted,
  isEndpointNotAllowed,
  isKeyExpired,
  isKeyleashUnavailable,
  isKeyRevoked,
  Keyleash,
  KeyleashConnectionError,
  Minter,
  runWithVaultKey,
  vaultFetch,
} from '../src/index.js';
import { anthropicClient } from '../src/anthropic.js';
import { openaiClient } from '../src/openai.js';
import { stripeClient } from '../src/stripe.js';
import { twilioClient } from '../src/twilio.js';

// The official SDKs (stripe, openai, @anthropic-ai/sdk, twilio from npm) against a real gateway
// whose vendors are local sandboxes: keyleash's refusals are recognised by the helpers, and no
// SDK retries one (each refusal is one denial in the audit log).

const ADMIN = 'sdk_official_admin_token_0123456789';
const SECRETS = { stripe: 'sk_test_sdk_official_1234567890', openai: 'openai-sdk-official-test', anthropic: 'anthropic-sdk-official-test' };
const TWILIO = { accountSid: `AC${'2c'.repeat(16)}`, authToken: 'twiliosdkofficialtoken0123456789' };

let gw: Gateway;
let client: Keyleash;
let apiUrl: string;
let proxyUrl: string;
let dir: string;
const sandboxes: Array<{ close(): Promise<void> }> = [];
let openaiSandbox: ReturnType<typeof createOpenAISandbox>;
let anthropicSandbox: ReturnType<typeof createAnthropicSandbox>;

beforeAll(async () => {
  const stripe = createStripeSandbox({ secrets: [SECRETS.stripe] });
  openaiSandbox = createOpenAISandbox({ secrets: [SECRETS.openai] });
  anthropicSandbox = createAnthropicSandbox({ secrets: [SECRETS.anthropic] });
  const twilio = createTwilioSandbox({ accounts: [TWILIO] });
  sandboxes.push(stripe, openaiSandbox, anthropicSandbox, twilio);
  const [s, o, a, tw] = await Promise.all([stripe.listen(), openaiSandbox.listen(), anthropicSandbox.listen(), twilio.listen()]);
  dir = mkdtempSync(join(tmpdir(), 'keyleash-sdk-official-'));
  gw = createGateway(
    parseConfig({
      admin_token: ADMIN,
      listen: { api: { host: '127.0.0.1', port: 0 }, proxy: { host: '127.0.0.1', port: 0 } },
      store: { path: join(dir, 'keyleash.sqlite') },
      vendors: {
        stripe: { base_url: s, test_secret: SECRETS.stripe },
        openai: { base_url: o, test_secret: SECRETS.openai },
        anthropic: { base_url: a, test_secret: SECRETS.anthropic },
        twilio: { base_url: tw, test_account_sid: TWILIO.accountSid, test_auth_token: TWILIO.authToken },
      },
      log_level: 'silent',
    }),
  );
  ({ apiUrl, proxyUrl } = await gw.listen());
  client = new Keyleash({ apiUrl, proxyUrl, adminToken: ADMIN });
});
afterAll(async () => {
  await gw?.close();
  await Promise.all(sandboxes.map((s) => s.close()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** keyleash's denials of one key, from the audit log. */
async function denials(keyId: string): Promise<Array<{ code: string }>> {
  // The audit log is written in batches just after the answer.
  for (let i = 0; i < 50; i++) {
    const page = await client.listAudit({ keyId, decision: 'deny' });
    if (page.data.length > 0) {
      await new Promise((r) => setTimeout(r, 100));
      return (await client.listAudit({ keyId, decision: 'deny' })).data as Array<{ code: string }>;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return [];
}

describe('official SDKs and keyleash refusals', () => {
  it('openai (default maxRetries) does not retry 429 cap_exhausted: one denial, isCapExhausted', async () => {
    const key = await client.issueKey({ vendor: 'openai', allowedEndpoints: ['POST /v1/chat/completions'], dailyUsdCap: 0, expiresIn: '5m' });
    const before = openaiSandbox.requests.length;
    const err = await runWithVaultKey(key, proxyUrl, () =>
      openaiClient().chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 }),
    ).catch((e: unknown) => e);
    expect(isCapExhausted(err), String(err)).toBe(true);
    expect((await denials(key.id)).map((d) => d.code)).toEqual(['cap_exhausted']);
    expect(openaiSandbox.requests.length).toBe(before);
  });

  it('@anthropic-ai/sdk (default maxRetries) does not retry 429 cap_exhausted either', async () => {
    const key = await client.issueKey({ vendor: 'anthropic', allowedEndpoints: ['POST /v1/messages'], dailyUsdCap: 0, expiresIn: '5m' });
    const err = await runWithVaultKey(key, proxyUrl, () =>
      anthropicClient().messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
    ).catch((e: unknown) => e);
    expect(isCapExhausted(err), String(err)).toBe(true);
    expect((await denials(key.id)).map((d) => d.code)).toEqual(['cap_exhausted']);
    expect(anthropicSandbox.requests.length).toBe(0);
  });

  it('stripe-node: the error is the app’s own Stripe.errors.StripeError, one denial, isCapExhausted', async () => {
    const key = await client.issueKey({ vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 0, expiresIn: '5m' });
    const err = await runWithVaultKey(key, proxyUrl, () => stripeClient({ config: { maxNetworkRetries: 2 } }).paymentIntents.create({ amount: 500, currency: 'usd' })).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Stripe.errors.StripeError);
    expect(isCapExhausted(err)).toBe(true);
    expect((await denials(key.id)).map((d) => d.code)).toEqual(['cap_exhausted']);
  });

  it('a revoked key, a refused endpoint: isKeyRevoked / isEndpointNotAllowed for openai, anthropic, stripe and twilio errors', async () => {
    const openaiKey = await client.issueKey({ vendor: 'openai', allowedEndpoints: ['GET /v1/models'], expiresIn: '5m' });
    const refused = await runWithVaultKey(openaiKey, proxyUrl, () =>
      openaiClient().chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 }),
    ).catch((e: unknown) => e);
    expect(isEndpointNotAllowed(refused), String(refused)).toBe(true);
    expect(isKeyRevoked(refused)).toBe(false);

    const keys = {
      openai: await client.issueKey({ vendor: 'openai', allowedEndpoints: ['GET /v1/models'], expiresIn: '5m' }),
      anthropic: await client.issueKey({ vendor: 'anthropic', allowedEndpoints: ['POST /v1/messages'], dailyUsdCap: 1, expiresIn: '5m' }),
      stripe: await client.issueKey({ vendor: 'stripe', allowedEndpoints: ['GET /v1/customers'], expiresIn: '5m' }),
      twilio: await client.issueKey({ vendor: 'twilio', allowedEndpoints: ['POST /2010-04-01/Accounts/*/Messages.json'], dailyUsdCap: 1, expiresIn: '5m' }),
    };
    for (const k of Object.values(keys)) await client.revokeKey(k.id);
    await runWithVaultKey(keys, proxyUrl, async () => {
      const errors = await Promise.all([
        openaiClient().models.list().catch((e: unknown) => e),
        anthropicClient().messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e),
        stripeClient().customers.list().catch((e: unknown) => e),
        twilioClient({ accountSid: TWILIO.accountSid }).messages.create({ to: '+15005550006', from: '+15005550001', body: 'hi' }).catch((e: unknown) => e),
      ]);
      for (const e of errors) {
        expect(isKeyRevoked(e), String(e)).toBe(true);
        expect(isKeyExpired(e)).toBe(false);
        expect(isCapExhausted(e)).toBe(false);
      }
    });
  });

  it('key_expired is recognised from every client’s error shape', () => {
    const body = { code: 'key_expired', message: 'expired', request_id: 'req_1', error: { type: 'keyleash_error', code: 'key_expired', message: 'expired' } };
    expect(isKeyExpired(Stripe.errors.StripeError.generate({ ...body.error, type: 'invalid_request_error', raw: body } as never))).toBe(true);
    expect(isKeyExpired({ status: 401, error: body })).toBe(true); // openai / anthropic APIError
    expect(isKeyExpired({ status: 401, code: 'key_expired', moreInfo: undefined })).toBe(true); // twilio RestException
    expect(isKeyExpired(new Error('key_expired'))).toBe(false);
  });
});

describe('minted keys over their minting key’s policy', () => {
  it('are clamped by the gateway, and a Minter that knows the policy reports the same effective cap and expiry', async () => {
    const mk = await client.createMintingKey({ vendors: ['stripe'], allowedEndpoints: ['GET /v1/customers'], maxDailyUsdCap: 5, maxTtl: '10m' });
    const minter = new Minter(mk.secret, { policy: mk });
    const key = minter.mint({ vendor: 'stripe', allowedEndpoints: ['GET /v1/customers'], dailyUsdCap: 100, expiresIn: '1h' });
    expect(key.daily_usd_cap).toBe(5);
    expect(Date.parse(key.expires_at) - Date.parse(key.created_at)).toBe(600_000);
    const uncapped = minter.mint({ vendor: 'stripe', allowedEndpoints: ['GET /v1/customers'] });
    expect(uncapped.daily_usd_cap).toBe(5);
    const r = await runWithVaultKey(key, proxyUrl, () => vaultFetch('stripe')('/stripe/v1/customers'));
    expect(r.status).toBe(200);
    const seen = await client.getKey(key.id);
    expect(seen.daily_usd_cap).toBe(key.daily_usd_cap);
    expect(seen.expires_at).toBe(key.expires_at);
    // Without the policy the object shows what was asked for.
    expect(new Minter(mk.secret).mint({ vendor: 'stripe', allowedEndpoints: ['GET /v1/customers'], dailyUsdCap: 100 }).daily_usd_cap).toBe(100);
  });
});

describe('outages', () => {
  it('a proxy that cannot be reached is one typed error: KeyleashConnectionError from vaultFetch, isKeyleashUnavailable for vendor SDKs', async () => {
    const dead = await closedPort();
    const key = await client.issueKey({ vendor: 'stripe', allowedEndpoints: ['GET /v1/customers'], expiresIn: '5m' });
    await runWithVaultKey(key, `http://127.0.0.1:${dead}`, async () => {
      const viaFetch = await vaultFetch('stripe')('/stripe/v1/customers').catch((e: unknown) => e);
      expect(viaFetch).toBeInstanceOf(KeyleashConnectionError);
      expect((viaFetch as KeyleashConnectionError).code).toBe('connection_error');
      expect((viaFetch as Error).message).not.toContain(String(dead));
      const viaStripe = await stripeClient({ config: { maxNetworkRetries: 0 } }).customers.list().catch((e: unknown) => e);
      expect(isKeyleashUnavailable(viaStripe), String(viaStripe)).toBe(true);
      const viaOpenAI = await openaiClient({ key: key.token, config: { maxRetries: 0 } }).models.list().catch((e: unknown) => e);
      expect(isKeyleashUnavailable(viaOpenAI), String(viaOpenAI)).toBe(true);
    });
    await client.revokeKey(key.id);
  });

  it('issuance retried after a lost answer makes one key: the retry carries the same Idempotency-Key', async () => {
    // A front that forwards the first issuance to the gateway, then drops the connection unanswered.
    const seen: Array<string | undefined> = [];
    const front = await lossyFront(apiUrl, seen);
    try {
      const flaky = new Keyleash({ apiUrl: front.url, proxyUrl, adminToken: ADMIN });
      const label = `lost-answer-${Date.now()}`;
      const key = await flaky.issueKey({ vendor: 'stripe', allowedEndpoints: ['GET /v1/customers'], label, expiresIn: '5m' });
      expect(seen.length).toBe(2);
      expect(seen[0]).toMatch(/^[0-9a-f-]{36}$/);
      expect(seen[1]).toBe(seen[0]);
      const all = await client.listKeys({ labelPrefix: label });
      expect(all.data.map((k) => k.id)).toEqual([key.id]);
      // The replayed token is the key's working token.
      const r = await runWithVaultKey(key, proxyUrl, () => vaultFetch('stripe')('/stripe/v1/customers'));
      expect(r.status).toBe(200);
    } finally {
      await front.close();
    }
  });

  it('reads are retried; a call that is not safe to repeat is not', async () => {
    const seen: Array<string | undefined> = [];
    const front = await lossyFront(apiUrl, seen, 'POST /v1/keys/revoke');
    try {
      const flaky = new Keyleash({ apiUrl: front.url, proxyUrl, adminToken: ADMIN });
      const err = await flaky.revokeKeys({ labelPrefix: `nothing-${Date.now()}`, dryRun: true }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyleashConnectionError);
      expect(seen.length).toBe(1);
    } finally {
      await front.close();
    }
  });
});

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Forwards to `target`; the first request matching `drop` is forwarded, then its connection is cut. */
async function lossyFront(target: string, seen: Array<string | undefined>, drop = 'POST /v1/keys'): Promise<{ url: string; close(): Promise<void> }> {
  let dropped = false;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const matches = `${req.method} ${req.url}` === drop;
      if (matches) seen.push(req.headers['idempotency-key'] as string | undefined);
      const u = new URL(target);
      const out = httpRequest({ host: u.hostname, port: u.port, method: req.method, path: req.url, headers: { ...req.headers, host: u.host } }, (up) => {
        const body: Buffer[] = [];
        up.on('data', (c: Buffer) => body.push(c));
        up.on('end', () => {
          if (matches && !dropped) {
            dropped = true;
            req.socket.destroy();
            return;
          }
          res.writeHead(up.statusCode ?? 502, up.headers);
          res.end(Buffer.concat(body));
        });
      });
      out.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
