import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCapExhausted, runWithVaultKey, type IssuedKey } from '../src/index.js';
import { anthropicClient } from '../src/anthropic.js';
import { openaiClient } from '../src/openai.js';
import { stripeClient } from '../src/stripe.js';
import { twilioClient } from '../src/twilio.js';
import { recordingServer, startGateway, STRIPE_TEST_SECRET, type TestGateway } from './gateway.js';

// stripe runs against the real gateway. The gateway has no openai / anthropic / twilio vendor
// yet, so those clients are checked against a recording stand-in for the proxy: right URL
// (`{proxy}/{vendor}/…`), the vault key as the credential, and keyleash's errors recognised.

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t?.close();
});

const fakeKey = (vendor: string): IssuedKey =>
  ({ object: 'vault_key', id: `key_${vendor}`, token: `vk_test_${vendor}_token`, vendor, label: '', mode: 'test', allowed_endpoints: ['/*'], daily_usd_cap: 1, metadata: {}, status: 'active', created_at: '', expires_at: '' }) as IssuedKey;

const capBody = { code: 'cap_exhausted', message: 'cap', request_id: 'req_1', error: { type: 'keyleash_error', code: 'cap_exhausted', message: 'cap' } };

describe('client helpers bound to the vault key in scope', () => {
  it('stripe: the official client reaches the sandbox through the proxy with the real test secret', async () => {
    const key = await t.client.issueKey({ vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 100, expiresIn: '5m' });
    const pi = await runWithVaultKey(key, t.proxyUrl, () => stripeClient().paymentIntents.create({ amount: 1234, currency: 'usd' }));
    expect(pi.amount).toBe(1234);
    const seen = t.sandbox.requests.at(-1)!;
    expect(seen.path).toBe('/v1/payment_intents');
    expect(seen.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
  });

  it('openai: baseURL {proxy}/openai/v1 and the vault key as the bearer token', async () => {
    const proxy = await recordingServer((r) =>
      r.url.includes('models') ? { status: 200, body: { object: 'list', data: [{ id: 'gpt-test', object: 'model', created: 0, owned_by: 'x' }] } } : { status: 429, body: capBody },
    );
    try {
      await runWithVaultKey({ openai: fakeKey('openai') }, proxy.url, async () => {
        const models = await openaiClient().models.list();
        expect(models.data[0]!.id).toBe('gpt-test');
        const err = await openaiClient({ config: { maxRetries: 0 } })
          .chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
          .catch((e: unknown) => e);
        expect(isCapExhausted(err)).toBe(true);
      });
      expect(proxy.requests[0]!.url).toBe('/openai/v1/models');
      expect(proxy.requests[0]!.headers.authorization).toBe('Bearer vk_test_openai_token');
      expect(proxy.requests[1]!.url).toBe('/openai/v1/chat/completions');
    } finally {
      await proxy.close();
    }
  });

  it('anthropic: baseURL {proxy}/anthropic and the vault key as Authorization: Bearer', async () => {
    const proxy = await recordingServer(() => ({
      status: 200,
      body: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-test', content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 1, output_tokens: 1 } },
    }));
    try {
      const msg = await runWithVaultKey({ anthropic: fakeKey('anthropic') }, proxy.url, () =>
        anthropicClient().messages.create({ model: 'claude-test', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }),
      );
      expect(msg.content[0]).toMatchObject({ type: 'text', text: 'ok' });
      expect(proxy.requests[0]!.url).toBe('/anthropic/v1/messages');
      expect(proxy.requests[0]!.headers.authorization).toBe('Bearer vk_test_anthropic_token');
      expect(proxy.requests[0]!.headers['x-api-key']).toBeUndefined();
    } finally {
      await proxy.close();
    }
  });

  it('twilio: requests go to {proxy}/twilio/… with the vault key as the Basic-auth password', async () => {
    const sid = 'AC' + '0'.repeat(32);
    const proxy = await recordingServer((r) =>
      r.body.includes('cap') ? { status: 429, body: capBody } : { status: 201, body: { sid: 'SM123', status: 'queued', body: 'hello', account_sid: sid } },
    );
    try {
      await runWithVaultKey({ twilio: fakeKey('twilio') }, proxy.url, async () => {
        const m = await twilioClient({ accountSid: sid }).messages.create({ to: '+15550001111', from: '+15550002222', body: 'hello' });
        expect(m.sid).toBe('SM123');
        const err = await twilioClient({ accountSid: sid })
          .messages.create({ to: '+15550001111', from: '+15550002222', body: 'cap' })
          .catch((e: unknown) => e);
        expect(isCapExhausted(err)).toBe(true);
      });
      const r = proxy.requests[0]!;
      expect(r.method).toBe('POST');
      expect(r.url).toBe(`/twilio/2010-04-01/Accounts/${sid}/Messages.json`);
      expect(Buffer.from(r.headers.authorization!.replace(/^Basic /, ''), 'base64').toString()).toBe(`${sid}:vk_test_twilio_token`);
      expect(new URLSearchParams(r.body).get('Body')).toBe('hello');
    } finally {
      await proxy.close();
    }
  });

  it('picks the key by vendor when several are in scope', async () => {
    await runWithVaultKey({ payments: { ...fakeKey('stripe'), token: 'vk_test_a' }, llm: fakeKey('openai') }, 'http://127.0.0.1:9', () => {
      expect((openaiClient() as unknown as { apiKey: string }).apiKey).toBe('vk_test_openai_token');
      expect(openaiClient().baseURL).toBe('http://127.0.0.1:9/openai/v1');
    });
  });
});
