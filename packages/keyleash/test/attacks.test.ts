import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { rawRequest, startGateway, STRIPE_TEST_SECRET, stripeKey, type TestGateway } from './harness.js';

// Hostile inputs. Each test asserts the answer and what the vendor saw: nothing, or exactly the
// sanitized request.

for (const backend of await backends('attacks')) {
describe.skipIf(backend.skip)(`attacks (${backend.name})`, () => {
let t: TestGateway;
let key: { id: string; token: string };
let storeConfig: Record<string, unknown> | null = null;

beforeAll(async () => {
  storeConfig = backend.store();
  t = await startGateway(() => (storeConfig ? { store: storeConfig as never } : {}));
  key = await t.issue({ ...stripeKey, daily_usd_cap: 10_000 });
});
afterAll(async () => {
  await t?.close();
  await backend.cleanup(storeConfig);
});
beforeEach(() => {
  t.sandbox.requests.length = 0;
  t.sandbox.respond = null;
});

const auth = () => ({ authorization: `Bearer ${key.token}`, 'content-type': 'application/x-www-form-urlencoded' });

/** Sends bytes exactly as given on a fresh connection and returns the status code answered. */
function rawBytes(payload: string): Promise<number> {
  const u = new URL(t.proxyUrl);
  return new Promise((resolve, reject) => {
    // Written, not ended: a half-closed socket may be dropped before the answer is sent.
    const sock = connect(Number(u.port), u.hostname, () => sock.write(payload));
    let data = '';
    const done = () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      resolve(m ? Number(m[1]) : 0);
    };
    sock.on('data', (c) => {
      data += c;
      if (data.includes('\r\n\r\n')) {
        sock.destroy();
        done();
      }
    });
    sock.on('error', () => resolve(0));
    sock.on('close', done);
    sock.setTimeout(5000, () => {
      sock.destroy();
      reject(new Error('no answer'));
    });
  });
}

describe('path confusion against allowlists', () => {
  const paths: Array<[string, string]> = [
    ['dot-dot', '/v1/payment_intents/../refunds'],
    ['encoded dot-dot', '/v1/payment_intents/%2e%2e/refunds'],
    ['upper-case encoded dot-dot', '/v1/payment_intents/%2E%2E/refunds'],
    ['half-encoded dot-dot', '/v1/payment_intents/.%2e/refunds'],
    ['double-encoded dot-dot', '/v1/payment_intents/%252e%252e/refunds'],
    ['single dot', '/v1/./payment_intents'],
    ['encoded slash', '/v1/payment_intents/pi_1%2Fconfirm'],
    ['lower-case encoded slash', '/v1/payment_intents/pi_1%2fconfirm'],
    ['double-encoded slash', '/v1/payment_intents/pi_1%252Fconfirm'],
    ['backslash', '/v1/payment_intents\\pi_1'],
    ['encoded backslash', '/v1/payment_intents/pi_1%5Cconfirm'],
    ['matrix parameter on the last segment', '/v1/payment_intents;jsessionid=x'],
    ['matrix parameter mid-path', '/v1/payment_intents/pi_1;x=y'],
    ['empty segment', '/v1//payment_intents'],
    ['trailing slash', '/v1/payment_intents/'],
    ['upper case', '/V1/PAYMENT_INTENTS'],
    ['overlong UTF-8 dot', '/v1/payment_intents/%C0%AE%C0%AE/refunds'],
    ['overlong UTF-8 slash', '/v1/payment_intents/pi_1%C0%AFconfirm'],
    ['non-ASCII right-to-left override', '/v1/payment_intents/pi_%E2%80%AE1'],
    ['NUL byte', '/v1/payment_intents/pi_1%00'],
    ['encoded CRLF', '/v1/payment_intents/pi_1%0d%0aX-Injected:%201'],
    ['encoded question mark', '/v1/payment_intents%3F/x'],
    ['encoded hash', '/v1/payment_intents%23x'],
    ['encoded space', '/v1/payment_intents/%20'],
    ['vendor prefix then dot-dot', '/stripe/../v1/refunds'],
    ['another vendor prefix', '/twilio/v1/payment_intents'],
    ['star does not cross a slash', '/v1/payment_intents/pi_1/confirm'],
    ['absolute-form target', 'http://evil.example/v1/payment_intents'],
    ['authority-like target', '//evil.example/v1/payment_intents'],
  ];
  it.each(paths)('refuses %s (%s)', async (_name, path) => {
    const r = await rawRequest(t.proxyUrl, 'POST', path, auth(), 'amount=100&currency=usd');
    expect([400, 403]).toContain(r.status);
    expect(r.body.code).toMatch(/^(endpoint_not_allowed|invalid_request)$/);
    expect(t.sandbox.requests).toHaveLength(0);
  });
});

describe('header tricks', () => {
  it('refuses two Authorization headers', async () => {
    const other = await t.issue({ ...stripeKey, daily_usd_cap: 1 });
    const r = await rawRequest(
      t.proxyUrl,
      'POST',
      '/v1/payment_intents',
      { authorization: [`Bearer ${other.token}`, `Bearer ${key.token}`], 'content-type': 'application/x-www-form-urlencoded' },
      'amount=100&currency=usd',
    );
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('invalid_key');
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('keeps its own credential when Connection names Authorization', async () => {
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', { ...auth(), connection: 'authorization' }, 'amount=100&currency=usd');
    expect(r.status).toBe(200);
    expect(t.sandbox.requests[0]!.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
  });

  it('never forwards Proxy-Authorization or cookies', async () => {
    await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', { ...auth(), 'proxy-authorization': 'Basic eDp5', cookie: 'a=b' }, 'amount=1&currency=usd');
    const h = t.sandbox.requests[0]!.headers;
    expect(h['proxy-authorization']).toBeUndefined();
    expect(h.cookie).toBeUndefined();
  });

  it.each([['x-http-method-override'], ['x-http-method'], ['x-method-override']])('strips %s', async (name) => {
    await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', { ...auth(), [name]: 'DELETE' }, 'amount=1&currency=usd');
    const seen = t.sandbox.requests[0]!;
    expect(seen.method).toBe('POST');
    expect(seen.headers[name]).toBeUndefined();
  });

  it('refuses a _method override in the query', async () => {
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents?_method=DELETE', auth(), 'amount=1&currency=usd');
    expect(r.status).toBe(400);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses a _method override in the form body', async () => {
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', auth(), 'amount=1&currency=usd&_method=DELETE');
    expect(r.status).toBe(400);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('strips forwarded-for headers, including underscore spellings', async () => {
    await rawRequest(
      t.proxyUrl,
      'POST',
      '/v1/payment_intents',
      { ...auth(), 'x-forwarded-for': '10.0.0.1', forwarded: 'for=10.0.0.1', 'x-real-ip': '10.0.0.1', x_forwarded_for: '10.0.0.2' },
      'amount=1&currency=usd',
    );
    const h = t.sandbox.requests[0]!.headers;
    for (const name of ['x-forwarded-for', 'forwarded', 'x-real-ip', 'x_forwarded_for']) expect(h[name]).toBeUndefined();
  });

  it('sends the vendor its own Host, whatever the caller claims', async () => {
    await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', { ...auth(), host: 'evil.example' }, 'amount=1&currency=usd');
    expect(t.sandbox.requests[0]!.headers.host).toBe(new URL(t.sandbox.url).host);
  });

  it('refuses CRLF injected into a header value', async () => {
    const status = await rawBytes(
      `POST /v1/payment_intents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key.token}\r\nX-A: a\rX-Injected: 1\r\nContent-Length: 0\r\n\r\n`,
    );
    expect(status).toBe(400);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses a header far over the size limit', async () => {
    const r = await rawRequest(t.proxyUrl, 'GET', '/v1/payment_intents/pi_1', { ...auth(), 'x-big': 'a'.repeat(40_000) });
    expect([400, 431]).toContain(r.status);
    expect(t.sandbox.requests).toHaveLength(0);
  });
});

describe('framing', () => {
  it('refuses Content-Length together with Transfer-Encoding', async () => {
    const body = 'amount=100&currency=usd';
    const status = await rawBytes(
      `POST /v1/payment_intents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key.token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
    );
    expect(status).toBe(400);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses two different Content-Length headers', async () => {
    const status = await rawBytes(
      `POST /v1/payment_intents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key.token}\r\nContent-Length: 5\r\nContent-Length: 23\r\n\r\namount=100&currency=usd`,
    );
    expect(status).toBe(400);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('re-frames an oddly chunked body with a Content-Length upstream', async () => {
    const parts = ['am', 'ount=1', '00&curr', 'ency=usd'];
    const chunks = parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('');
    const status = await rawBytes(
      `POST /v1/payment_intents HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${key.token}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}0\r\n\r\n`,
    );
    expect(status).toBe(200);
    const seen = t.sandbox.requests[0]!;
    expect(seen.body).toBe('amount=100&currency=usd');
    expect(seen.headers['content-length']).toBe('23');
    expect(seen.headers['transfer-encoding']).toBeUndefined();
  });
});

describe('tokens', () => {
  it('refuses a vault key in the query string and forwards nothing', async () => {
    const r = await rawRequest(t.proxyUrl, 'GET', `/v1/payment_intents/pi_1?api_key=${key.token}`, auth());
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('credential_in_url');
    expect(r.text).not.toContain(key.token);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses a percent-encoded vault key in the query string', async () => {
    const enc = [...key.token].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('');
    const r = await rawRequest(t.proxyUrl, 'GET', `/v1/payment_intents/pi_1?k=${enc}`, auth());
    expect(r.status).toBe(400);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it.each([
    ['one character changed', () => key.token.slice(0, 12) + (key.token[12] === 'A' ? 'B' : 'A') + key.token.slice(13)],
    ['truncated', () => key.token.slice(0, -1)],
    ['extended', () => key.token + 'A'],
    ['mode swapped', () => key.token.replace('vk_test_', 'vk_live_')],
    ['lower-cased', () => key.token.toLowerCase()],
    ['the vendor secret itself', () => STRIPE_TEST_SECRET],
  ])('refuses a near-miss token (%s) with one generic 401 that does not echo it', async (_n, make) => {
    const bad = make();
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', { ...auth(), authorization: `Bearer ${bad}` }, 'amount=1&currency=usd');
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('invalid_key');
    expect(r.text).not.toContain(bad);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('slows down an address that keeps failing authentication', async () => {
    const g = await startGateway();
    try {
      let limited: { status: number; headers: Record<string, unknown>; body: any } | null = null;
      for (let i = 0; i < 200 && !limited; i++) {
        const r = await rawRequest(g.proxyUrl, 'GET', '/v1/payment_intents', { authorization: `Bearer vk_test_${'x'.repeat(38)}` });
        if (r.status === 429) limited = r;
      }
      expect(limited).not.toBeNull();
      expect(limited!.body.code).toBe('rate_limited');
      expect(Number(limited!.headers['retry-after'])).toBeGreaterThan(0);
    } finally {
      await g.close();
    }
  });
});

describe('spend bypass', () => {
  async function spend(): Promise<number> {
    return (await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_micros;
  }

  it.each([
    ['a float amount', 'amount=10.5&currency=usd'],
    ['a negative amount', 'amount=-100&currency=usd'],
    ['an exponent', 'amount=1e3&currency=usd'],
    ['hex', 'amount=0x10&currency=usd'],
    ['beyond 2^53', 'amount=9007199254740993&currency=usd'],
    ['amount given twice', 'amount=1&amount=99999&currency=usd'],
    ['amount as an array', 'amount[]=99999&currency=usd'],
    ['currency given twice', 'amount=100&currency=usd&currency=jpy'],
    ['an empty amount', 'amount=&currency=usd'],
    ['a money-moving create without an amount', 'currency=usd'],
  ])('refuses %s', async (_n, form) => {
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', auth(), form);
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_amount');
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses an amount split between the query and the form', async () => {
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents?amount=999999', auth(), 'amount=1&currency=usd');
    expect(r.status).toBe(400);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('prices money hidden in transfer_data[amount] when it is the larger', async () => {
    const before = await spend();
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', auth(), 'amount=100&currency=usd&transfer_data[amount]=5000&transfer_data[destination]=acct_1');
    expect(r.status).toBe(200);
    expect((await spend()) - before).toBe(50_000_000);
  });

  it('prices nested JSON the same as the form it becomes', async () => {
    const before = await spend();
    const r = await rawRequest(
      t.proxyUrl,
      'POST',
      '/v1/payment_intents',
      { ...auth(), 'content-type': 'application/json' },
      JSON.stringify({ amount: 100, currency: 'usd', transfer_data: { amount: 7000, destination: 'acct_1' } }),
    );
    expect(r.status).toBe(200);
    expect((await spend()) - before).toBe(70_000_000);
  });

  it.each([
    ['a checkout session', '/v1/checkout/sessions', 'mode=payment&line_items[0][price]=price_1&line_items[0][quantity]=100'],
    ['paying an invoice', '/v1/invoices/in_1/pay', ''],
    ['accepting a quote', '/v1/quotes/qt_1/accept', ''],
  ])('refuses %s, whose amount is not in the request, on a capped key', async (_n, path, form) => {
    const wide = await t.issue({ ...stripeKey, allowed_endpoints: ['POST /v1/checkout/sessions', 'POST /v1/invoices/*/pay', 'POST /v1/quotes/*/accept'] });
    const r = await rawRequest(t.proxyUrl, 'POST', path, { ...auth(), authorization: `Bearer ${wide.token}` }, form);
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('cost_unknown');
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses a full refund of unknown size on a capped key', async () => {
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/refunds', auth(), 'payment_intent=pi_1');
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('cost_unknown');
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('charges a payment intent update that raises the amount', async () => {
    const before = await spend();
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents/pi_unknown', auth(), 'amount=2500&currency=usd');
    expect(r.status).toBe(404); // the sandbox has no such intent, so the reservation is released
    expect(await spend()).toBe(before);
    expect(t.sandbox.requests[0]!.body).toBe('amount=2500&currency=usd');
  });
});

describe('leaks', () => {
  it('rewrites a vendor error that echoes part of the real secret', async () => {
    t.sandbox.respond = () => ({
      status: 401,
      body: { error: { type: 'invalid_request_error', message: `Invalid API Key provided: ${STRIPE_TEST_SECRET.slice(0, 8)}****${STRIPE_TEST_SECRET.slice(-4)}` } },
    });
    const r = await rawRequest(t.proxyUrl, 'GET', '/v1/payment_intents/pi_1', auth());
    expect(r.status).toBe(401);
    expect(r.text).not.toContain(STRIPE_TEST_SECRET.slice(-4));
    expect(r.text).not.toContain('sk_test_');
    expect(r.body.error.type).toBe('invalid_request_error');
  });
});

describe('exhaustion', () => {
  it('refuses a body over the limit before reading it all', async () => {
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', { ...auth(), 'content-length': String(50 * 1024 * 1024) });
    expect(r.status).toBe(413);
    expect(t.sandbox.requests).toHaveLength(0);
  });
});
});
}
