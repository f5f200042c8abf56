import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sseEvent } from '../src/sandbox/base.js';
import { backends } from './backends.js';
import {
  ALL_SECRETS,
  ANTHROPIC_TEST_SECRET,
  OPENAI_TEST_SECRET,
  startGateway,
  STRIPE_LIVE_SECRET,
  STRIPE_TEST_SECRET,
  stripeKey,
  type TestGateway,
  TWILIO_TEST_SID,
  TWILIO_TEST_TOKEN,
} from './harness.js';

// A vendor that echoes the real secret back — in a header, a redirect, a 2xx body, escaped or
// encoded, split across chunks of a stream — never shows it to the caller: each test searches
// the raw answer (every header, the whole body) for the secret in every form, and checks that
// what carries no echo arrives byte for byte.

const GENERIC_SECRET = 'gk_test_generic-echo-secret-0123456789';
const TWILIO_PAIR = `${TWILIO_TEST_SID}:${TWILIO_TEST_TOKEN}`;
const TWILIO_BASIC = Buffer.from(TWILIO_PAIR).toString('base64');
const US = '+14155550100';
const FROM = '+14155550199';

/** Every form a secret must not take in an answer. */
const FORBIDDEN = [
  ...ALL_SECRETS,
  GENERIC_SECRET,
  TWILIO_BASIC.replace(/=+$/, ''),
  TWILIO_BASIC.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_'),
];

/** Undoes the encodings a vendor might use: JSON `\uXXXX` and `\/`, percent-encoding, `+` for space. */
function decoded(text: string): string {
  return text.replace(/\\u([0-9a-fA-F]{4})|\\\/|%([0-9a-fA-F]{2})|\+/g, (m, u: string | undefined, p: string | undefined) =>
    u ? String.fromCharCode(parseInt(u, 16)) : p ? String.fromCharCode(parseInt(p, 16)) : m === '+' ? ' ' : '/',
  );
}

function expectNoEcho(raw: string): void {
  for (const form of [raw, decoded(raw)]) {
    for (const secret of FORBIDDEN) expect(form.includes(secret), `echo of ${secret.slice(0, 6)}… in ${raw.slice(0, 300)}`).toBe(false);
  }
}

const escapeAll = (s: string) => [...s].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
const escapeSome = (s: string) => s.replace(/_/g, '\\u005f').replace(/-/g, '\\u002D').replace(/t/g, '\\u0074');
const percentAll = (s: string) => [...s].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');
const stars = (s: string) => '*'.repeat(s.length);

interface Raw {
  status: number;
  /** Every header line as received: name, value, name, value… */
  rawHeaders: string[];
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
  /** Everything the caller saw, headers and body. */
  all: string;
}

/** A request whose answer is kept byte for byte; `onData` sees the body as it arrives. */
function send(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string; onData?: (soFar: () => string) => void } = {},
): Promise<Raw> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method: opts.method ?? 'GET', path: u.pathname + u.search, headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        opts.onData?.(() => Buffer.concat(chunks).toString('latin1'));
      });
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const text = body.toString('latin1');
        resolve({ status: res.statusCode ?? 0, rawHeaders: res.rawHeaders, headers: res.headers, body, text, all: `${res.rawHeaders.join('\n')}\n\n${text}` });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

for (const backend of await backends('attacks_echoes')) {
  describe.skipIf(backend.skip)(`secret echoes (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;
    const keys: Record<string, string> = {};
    const ids: Record<string, string> = {};

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(
        (stripeUrl, _dir, urls) => ({
          ...(storeConfig ? { store: storeConfig as never } : {}),
          log_level: 'warn',
          vendors: {
            stripe: { base_url: stripeUrl, test_secret: STRIPE_TEST_SECRET, live_secret: STRIPE_LIVE_SECRET },
            openai: { base_url: urls.openai!, test_secret: OPENAI_TEST_SECRET },
            anthropic: { base_url: urls.anthropic!, test_secret: ANTHROPIC_TEST_SECRET },
            generic: { debugco: { base_url: urls.echo!, test_secret: GENERIC_SECRET, auth: 'bearer', unknown_cost: 'free' } },
          },
        }),
        { sandboxes: ['twilio', 'openai', 'anthropic', 'echo'] },
      );
      const issue = async (vendor: string, allowed_endpoints: string[]) => {
        const k = await t.issue({ label: `echo-${vendor}`, vendor, allowed_endpoints, daily_usd_cap: 10, expires_in: '10m' });
        keys[vendor] = k.token;
        ids[vendor] = k.id;
      };
      keys.stripe = (await t.issue({ ...stripeKey, expires_in: '10m' })).token;
      await issue('openai', ['POST /v1/chat/completions']);
      await issue('anthropic', ['POST /v1/messages']);
      await issue('twilio', ['POST /2010-04-01/Accounts/*/Messages.json']);
      await issue('debugco', ['GET /v1/*']);
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });
    beforeEach(() => {
      t.sandbox.respond = null;
      t.sandbox.requests.length = 0;
      for (const s of Object.values(t.sandboxes)) s.reset();
    });

    const auth = (vendor: string) => ({ authorization: `Bearer ${keys[vendor]}` });
    // The record is pushed once the call is settled, which may be just after the caller has the last byte.
    const lastAudit = async (vendor: string) => {
      for (let i = 0; i < 100; i++) {
        await t.gw.audit.flush();
        const [record] = (await t.admin('GET', `/v1/audit?key_id=${ids[vendor]}&limit=1`)).body.data;
        if (record) return record;
        await new Promise((r) => setTimeout(r, 20));
      }
      return undefined;
    };

    describe('stripe', () => {
      it('masks the secret (and the live one) in a debug header, WWW-Authenticate, Set-Cookie, a header name and a 2xx JSON body, raw, JSON-escaped and percent-encoded', async () => {
        const body =
          `{"id":"pi_echo","object":"payment_intent","live":"${escapeSome(STRIPE_LIVE_SECRET)}","debug":{"raw":"${STRIPE_TEST_SECRET}","escaped":"${escapeSome(STRIPE_TEST_SECRET)}",` +
          `"all_escaped":"${escapeAll(STRIPE_TEST_SECRET)}","percent":"${encodeURIComponent(STRIPE_TEST_SECRET)}","percent_all":"${percentAll(STRIPE_TEST_SECRET).toLowerCase()}"}}`;
        t.sandbox.respond = () => ({
          status: 200,
          body,
          headers: {
            'content-length': String(Buffer.byteLength(body)),
            'x-debug-authorization': `Bearer ${STRIPE_TEST_SECRET}`,
            'www-authenticate': `Bearer realm="stripe", error="invalid_token", token="${STRIPE_TEST_SECRET}"`,
            'set-cookie': `dbg=${percentAll(STRIPE_TEST_SECRET)}; Path=/; HttpOnly`,
            [`x-debug-${STRIPE_TEST_SECRET}`]: '1',
          },
        });
        const r = await send(`${t.proxyUrl}/v1/payment_intents/pi_echo`, { headers: auth('stripe') });
        expect(r.status).toBe(200);
        expectNoEcho(r.all);
        // Masked byte for byte: the vendor's Content-Length still holds and the JSON still parses.
        expect(r.body.length).toBe(Buffer.byteLength(body));
        expect(Number(r.headers['content-length'])).toBe(r.body.length);
        const parsed = JSON.parse(r.text);
        expect(parsed.id).toBe('pi_echo');
        expect(parsed.debug.raw).toBe(stars(STRIPE_TEST_SECRET));
        expect(r.headers['x-debug-authorization']).toBe(`Bearer ${stars(STRIPE_TEST_SECRET)}`);
        expect(r.headers['www-authenticate']).toBe(`Bearer realm="stripe", error="invalid_token", token="${stars(STRIPE_TEST_SECRET)}"`);
        expect(r.headers['set-cookie']).toEqual([`dbg=${'*'.repeat(STRIPE_TEST_SECRET.length * 3)}; Path=/; HttpOnly`]);
        expect(Object.keys(r.headers).filter((h) => h.startsWith('x-debug-'))).toEqual(['x-debug-authorization']);
        // The vendor got exactly the real credential, never the vault key.
        expect(t.sandbox.requests).toHaveLength(1);
        expect(t.sandbox.requests[0]!.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
        expect(JSON.stringify(t.sandbox.requests[0]!.headers)).not.toContain(keys.stripe);
      });

      it('masks the secret in the Location of a redirect, which is passed back and not followed', async () => {
        t.sandbox.respond = () => ({
          status: 302,
          body: '',
          headers: { location: `https://dashboard.stripe.test/cb?api_key=${encodeURIComponent(STRIPE_TEST_SECRET)}&k=${STRIPE_TEST_SECRET}` },
        });
        const r = await send(`${t.proxyUrl}/v1/payment_intents/pi_redirect`, { headers: auth('stripe') });
        expect(r.status).toBe(302);
        expectNoEcho(r.all);
        expect(r.headers.location).toBe(`https://dashboard.stripe.test/cb?api_key=${stars(STRIPE_TEST_SECRET)}&k=${stars(STRIPE_TEST_SECRET)}`);
        expect(t.sandbox.requests.map((q) => q.path)).toEqual(['/v1/payment_intents/pi_redirect']);
      });

      it('still rewrites an error that echoes the key whole, escaped, or masked', async () => {
        t.sandbox.respond = () => ({
          status: 401,
          body: `{"error":{"type":"invalid_request_error","message":"Invalid API Key provided: ${escapeSome(STRIPE_TEST_SECRET)} (${STRIPE_TEST_SECRET.slice(0, 8)}****${STRIPE_TEST_SECRET.slice(-4)})"}}`,
        });
        const r = await send(`${t.proxyUrl}/v1/payment_intents/pi_1`, { headers: auth('stripe') });
        expect(r.status).toBe(401);
        expectNoEcho(r.all);
        expect(r.text).not.toContain(STRIPE_TEST_SECRET.slice(-4));
        expect(Number(r.headers['content-length'])).toBe(r.body.length);
        expect(JSON.parse(r.text).error.type).toBe('invalid_request_error');
      });

      it('passes a 2xx without an echo byte for byte, near misses included', async () => {
        // A public prefix, escapes, percent-encoding and slashes: none of them an echo.
        const body =
          `{"id":"pi_plain","note":"keys look like sk_test_\\u2026 or sk_live_…","url":"https:\\/\\/x.test\\/a%20b?c=%5F",` +
          `"almost":"${escapeSome(STRIPE_TEST_SECRET.slice(0, -1))}","tail":"…${STRIPE_TEST_SECRET.slice(-6)}"}`;
        t.sandbox.respond = () => ({ status: 200, body, headers: { 'x-note': 'sk_test_ prefix only' } });
        const r = await send(`${t.proxyUrl}/v1/payment_intents/pi_plain`, { headers: auth('stripe') });
        expect(r.status).toBe(200);
        expect(r.body.equals(Buffer.from(body))).toBe(true);
        expect(r.headers['x-note']).toBe('sk_test_ prefix only');
      });
    });

    describe('openai', () => {
      const chunk = (content: string | null, usage?: unknown) =>
        sseEvent({
          id: 'chatcmpl-echo',
          object: 'chat.completion.chunk',
          created: 0,
          model: 'gpt-4o',
          choices: content === null ? [] : [{ index: 0, delta: { content }, finish_reason: null }],
          ...(usage ? { usage } : {}),
        });

      it('masks an echo split across two chunks of a streamed SSE answer, and still settles from its usage', async () => {
        const first = chunk('Hello ') + 'data: {"id":"chatcmpl-echo","choices":[{"index":0,"delta":{"content":"key ' + OPENAI_TEST_SECRET.slice(0, 12);
        const second = OPENAI_TEST_SECRET.slice(12) + '"},"finish_reason":null}]}\n\n' + chunk(` and ${escapeSome(OPENAI_TEST_SECRET)}`);
        const tail = chunk(null, { prompt_tokens: 10, completion_tokens: 4, total_tokens: 14 }) + 'data: [DONE]\n\n';
        const release = deferred();
        let beforeRelease = '';
        t.sandboxes.openai!.respond = () => ({ status: 200, events: [first, second, tail], afterFirst: release.promise });
        const r = await send(`${t.proxyUrl}/openai/v1/chat/completions`, {
          method: 'POST',
          headers: { ...auth('openai'), 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } }),
          onData: (soFar) => {
            // The first event comes through at once; the event holding the split echo is counted
            // (and masked) only once it is whole, so nothing of it is sent before the rest arrives.
            if (!beforeRelease && soFar().includes('Hello ')) {
              beforeRelease = soFar();
              release.resolve();
            }
          },
        });
        expect(r.status).toBe(200);
        expect(beforeRelease).toBe(chunk('Hello '));
        expectNoEcho(r.all);
        const expected = first + second + tail;
        expect(r.text.length).toBe(expected.length);
        expect(r.text).toBe(
          expected
            .replace(OPENAI_TEST_SECRET.slice(0, 12) + OPENAI_TEST_SECRET.slice(12), stars(OPENAI_TEST_SECRET))
            .replace(escapeSome(OPENAI_TEST_SECRET), stars(escapeSome(OPENAI_TEST_SECRET))),
        );
        expect(t.sandboxes.openai!.requests[0]!.headers.authorization).toBe(`Bearer ${OPENAI_TEST_SECRET}`);
        expect(await lastAudit('openai')).toMatchObject({ status: 200, code: null, cost_micros: expect.any(Number) });
      });

      it('masks an echo in a buffered completion and keeps its Content-Length true', async () => {
        const body = JSON.stringify({
          id: 'chatcmpl-b',
          object: 'chat.completion',
          model: 'gpt-4o',
          choices: [{ index: 0, message: { role: 'assistant', content: `your key is ${OPENAI_TEST_SECRET}` }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 },
        });
        t.sandboxes.openai!.respond = () => ({ status: 200, body, headers: { 'openai-debug': percentAll(OPENAI_TEST_SECRET) } });
        const r = await send(`${t.proxyUrl}/openai/v1/chat/completions`, {
          method: 'POST',
          headers: { ...auth('openai'), 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
        });
        expect(r.status).toBe(200);
        expectNoEcho(r.all);
        expect(r.body.length).toBe(Buffer.byteLength(body));
        expect(Number(r.headers['content-length'])).toBe(r.body.length);
        expect(JSON.parse(r.text).choices[0].message.content).toBe(`your key is ${stars(OPENAI_TEST_SECRET)}`);
      });
    });

    it('anthropic: masks the secret in a header and in a message body, JSON-escaped', async () => {
      const body = JSON.stringify({
        id: 'msg_echo',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-5',
        content: [{ type: 'text', text: `x-api-key was ${ANTHROPIC_TEST_SECRET}` }],
        stop_reason: 'end_turn',
        usage: { input_tokens: 5, output_tokens: 4 },
      }).replace('x-api-key was ', `x-api-key was ${escapeAll(ANTHROPIC_TEST_SECRET)} / `);
      t.sandboxes.anthropic!.respond = () => ({ status: 200, body, headers: { 'x-upstream-key': ANTHROPIC_TEST_SECRET } });
      const r = await send(`${t.proxyUrl}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': keys.anthropic!, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(r.status).toBe(200);
      expectNoEcho(r.all);
      expect(r.headers['x-upstream-key']).toBe(stars(ANTHROPIC_TEST_SECRET));
      expect(JSON.parse(r.text).id).toBe('msg_echo');
      expect(t.sandboxes.anthropic!.requests[0]!.headers['x-api-key']).toBe(ANTHROPIC_TEST_SECRET);
    });

    it('twilio: masks the auth token alone and the Basic credential (Base64, percent-encoded), keeps the public account SID, and settles', async () => {
      const tw = t.sandboxes.twilio!;
      tw.respond = (req) => ({
        status: 201,
        body:
          `{"sid":"SMecho","account_sid":"${TWILIO_TEST_SID}","num_segments":"1","status":"queued","body":"Hi",` +
          `"debug":"token=${TWILIO_TEST_TOKEN}","auth":"${encodeURIComponent(req.headers.authorization ?? '')}","uri":"\\/2010-04-01\\/Accounts\\/${TWILIO_TEST_SID}"}`,
        headers: { 'x-twilio-debug': `${req.headers.authorization}`, 'www-authenticate': `Basic realm="${TWILIO_TEST_TOKEN}"` },
      });
      const r = await send(`${t.proxyUrl}/twilio/2010-04-01/Accounts/-/Messages.json`, {
        method: 'POST',
        headers: { ...auth('twilio'), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ To: US, From: FROM, Body: 'Hi' }).toString(),
      });
      expect(r.status).toBe(201);
      expectNoEcho(r.all);
      const parsed = JSON.parse(r.text);
      expect(parsed.account_sid).toBe(TWILIO_TEST_SID);
      expect(parsed.debug).toBe(`token=${stars(TWILIO_TEST_TOKEN)}`);
      expect(r.headers['x-twilio-debug']).toBe(`Basic ${'*'.repeat(TWILIO_BASIC.replace(/=+$/, '').length)}${TWILIO_BASIC.match(/=*$/)![0]}`);
      expect(tw.requests[0]!.headers.authorization).toBe(`Basic ${TWILIO_BASIC}`);
      expect(tw.requests[0]!.path).toBe(`/2010-04-01/Accounts/${TWILIO_TEST_SID}/Messages.json`);
      // Settled from num_segments, which the meter read from the vendor's own bytes.
      expect((await lastAudit('twilio')).cost_micros).toBe(8300);
    });

    describe('generic vendor', () => {
      it('masks echoes in a 2xx body, JSON-escaped and percent-encoded, under a true Content-Length', async () => {
        const body = `{"echo":"${GENERIC_SECRET}","esc":"${escapeSome(GENERIC_SECRET)}","pct":"${percentAll(GENERIC_SECRET).toUpperCase()}","ok":true}`;
        t.sandboxes.echo!.respond = () => ({
          status: 200,
          body,
          headers: { 'content-length': String(Buffer.byteLength(body)), 'x-debug': `auth=Bearer%20${encodeURIComponent(GENERIC_SECRET)}` },
        });
        const r = await send(`${t.proxyUrl}/debugco/v1/thing`, { headers: auth('debugco') });
        expect(r.status).toBe(200);
        expectNoEcho(r.all);
        expect(Number(r.headers['content-length'])).toBe(Buffer.byteLength(body));
        expect(r.body.length).toBe(Buffer.byteLength(body));
        expect(JSON.parse(r.text)).toMatchObject({ echo: stars(GENERIC_SECRET), ok: true });
        expect(t.sandboxes.echo!.requests[0]!.headers.authorization).toBe(`Bearer ${GENERIC_SECRET}`);
      });

      it('masks an echo split across two chunks of a streamed body, sending what comes before it at once', async () => {
        const release = deferred();
        let beforeRelease = '';
        t.sandboxes.echo!.respond = () => ({
          status: 200,
          headers: { 'content-type': 'application/json' },
          events: [`{"log":"sent Bearer ${GENERIC_SECRET.slice(0, 20)}`, `${GENERIC_SECRET.slice(20)} upstream"}`],
          afterFirst: release.promise,
        });
        const r = await send(`${t.proxyUrl}/debugco/v1/stream`, {
          headers: auth('debugco'),
          onData: (soFar) => {
            if (!beforeRelease && soFar().includes('Bearer ')) {
              beforeRelease = soFar();
              release.resolve();
            }
          },
        });
        expect(beforeRelease).toBe('{"log":"sent Bearer ');
        expect(r.text).toBe(`{"log":"sent Bearer ${stars(GENERIC_SECRET)} upstream"}`);
        expectNoEcho(r.all);
      });

      it('streams a large 2xx without buffering it: the first bytes arrive before the vendor has sent the rest, the echo at its end is masked', async () => {
        const MB = 1024 * 1024;
        const filler = (n: number, seed: string) => (seed + '0123456789abcdef%20\\n\\u00e9 sk_test_ '.repeat(Math.ceil(n / 40))).slice(0, n);
        const events = [filler(MB, '{"a":"'), ...Array.from({ length: 4 }, (_, i) => filler(MB, `part${i}`)), `${escapeSome(GENERIC_SECRET)}"}`];
        const release = deferred();
        let firstSeenAt = -1;
        t.sandboxes.echo!.respond = () => ({ status: 200, headers: { 'content-type': 'application/json' }, events, afterFirst: release.promise });
        const r = await send(`${t.proxyUrl}/debugco/v1/big`, {
          headers: auth('debugco'),
          onData: () => {
            if (firstSeenAt < 0) {
              firstSeenAt = t.sandboxes.echo!.streams[0]!.sent;
              release.resolve();
            }
          },
        });
        expect(r.status).toBe(200);
        expect(firstSeenAt).toBe(1); // the vendor had written one event of six
        const expected = events.join('');
        expect(r.body.length).toBe(Buffer.byteLength(expected));
        const echo = escapeSome(GENERIC_SECRET);
        expect(r.text === expected.replace(echo, stars(echo)), 'the body is the vendor\'s, byte for byte, but for the echo').toBe(true);
        expectNoEcho(r.all);
      }, 30_000);
    });
  });
}
