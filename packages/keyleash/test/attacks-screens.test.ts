import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { rawRequest, startGateway, STRIPE_TEST_SECRET, stripeKey, type TestGateway } from './harness.js';

// Screens that read a request the way the servers behind a vendor do: every encoding of a
// parameter name, malformed neighbours tolerated, routing headers, the Host header itself.
// Each test asserts the answer and what the vendor saw: nothing, or exactly the sanitized request.

const GENERIC_SECRET = 'passthru-test-secret-0123';

for (const backend of await backends('attacks_screens')) {
describe.skipIf(backend.skip)(`attacks on the screens (${backend.name})`, () => {
let t: TestGateway;
let key: { id: string; token: string };
let generic: { id: string; token: string };
let storeConfig: Record<string, unknown> | null = null;

beforeAll(async () => {
  storeConfig = backend.store();
  t = await startGateway(
    (stripeUrl, _dir, urls) => ({
      ...(storeConfig ? { store: storeConfig as never } : {}),
      vendors: {
        stripe: { base_url: stripeUrl, test_secret: STRIPE_TEST_SECRET },
        generic: { passthru: { base_url: urls.echo!, test_secret: GENERIC_SECRET, unknown_cost: 'free' } },
      },
    }),
    { sandboxes: ['echo'] },
  );
  key = await t.issue({ ...stripeKey, daily_usd_cap: 10_000 });
  generic = await t.issue({ label: 'generic', vendor: 'passthru', allowed_endpoints: ['/v1/things'], daily_usd_cap: 10, expires_in: '5m' });
});
afterAll(async () => {
  await t?.close();
  await backend.cleanup(storeConfig);
});
beforeEach(() => {
  t.sandbox.requests.length = 0;
  t.sandbox.respond = null;
  t.sandboxes.echo!.reset();
});

const form = { 'content-type': 'application/x-www-form-urlencoded' };
const auth = () => ({ authorization: `Bearer ${key.token}`, ...form });

/** Sends bytes exactly as given on a fresh connection; resolves with the answer's status and JSON body. */
function rawExchange(payload: string): Promise<{ status: number; body: any; text: string }> {
  const u = new URL(t.proxyUrl);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname, () => sock.write(payload));
    let data = '';
    const done = () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      const text = data.slice(data.indexOf('\r\n\r\n') + 4);
      let body: any = null;
      try {
        body = JSON.parse(text);
      } catch {
        /* not JSON (e.g. Node's own bare 400) */
      }
      resolve({ status: m ? Number(m[1]) : 0, body, text });
    };
    sock.on('data', (c) => {
      data += c;
      const end = data.indexOf('\r\n\r\n');
      const len = /\r\ncontent-length: *(\d+)/i.exec(data.slice(0, end));
      if (end >= 0 && (!len || data.length - end - 4 >= Number(len[1]))) {
        sock.destroy();
        done();
      }
    });
    sock.on('error', () => resolve({ status: 0, body: null, text: '' }));
    sock.on('close', done);
    sock.setTimeout(5000, () => {
      sock.destroy();
      reject(new Error('no answer'));
    });
  });
}

describe('_method overrides in any encoding', () => {
  it.each([
    ['percent-encoded underscore', '%5Fmethod=DELETE'],
    ['lower-case percent-encoded underscore', '%5fmethod=DELETE'],
    ['double-encoded underscore', '%255Fmethod=DELETE'],
    ['fully encoded name', '%5F%6D%65%74%68%6F%64=DELETE'],
    ['upper case', '_METHOD=delete'],
    ['a bracketed name', '_method[]=DELETE'],
    ['encoded brackets', '_method%5B%5D=DELETE'],
    ['a leading plus (space)', '+_method=DELETE'],
    ['after a malformed parameter', 'x=%zz&_method=DELETE'],
    ['after a semicolon', 'x=1;_method=DELETE'],
    ['without a value', '_method'],
  ])('refuses %s in the query (%s)', async (_n, query) => {
    const r = await rawRequest(t.proxyUrl, 'POST', `/v1/payment_intents?${query}`, auth(), 'amount=1&currency=usd');
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_request');
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it.each([
    ['percent-encoded underscore', 'amount=1&currency=usd&%5Fmethod=DELETE'],
    ['lower-case percent-encoded underscore', 'amount=1&currency=usd&%5fmethod=DELETE'],
    ['double-encoded underscore', 'amount=1&currency=usd&%255Fmethod=DELETE'],
    ['upper case', 'amount=1&currency=usd&_Method=DELETE'],
    ['a bracketed name', 'amount=1&currency=usd&_method[0]=DELETE'],
    ['a leading plus (space)', 'amount=1&currency=usd&+_method=DELETE'],
    ['after a malformed parameter', 'amount=1&currency=usd&x=%zz&_method=DELETE'],
    ['first', '_method=DELETE&amount=1&currency=usd'],
  ])('refuses %s in a form body (%s)', async (_n, body) => {
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', auth(), body);
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_request');
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it.each([
    ['a plain key', '{"amount":1,"currency":"usd","_method":"DELETE"}'],
    ['an escaped key', '{"amount":1,"currency":"usd","\\u005fmethod":"DELETE"}'],
  ])('refuses a JSON body with %s that becomes a Stripe form', async (_n, body) => {
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', { ...auth(), 'content-type': 'application/json' }, body);
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_request');
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses a top-level _method in a JSON body to a generic vendor', async () => {
    const r = await rawRequest(
      t.proxyUrl,
      'POST',
      '/passthru/v1/things',
      { authorization: `Bearer ${generic.token}`, 'content-type': 'application/json' },
      '{"name":"x","_method":"DELETE"}',
    );
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_request');
    expect(t.sandboxes.echo!.requests).toHaveLength(0);
  });

  it('refuses a _method field in a multipart body to a generic vendor', async () => {
    const boundary = 'XyZ';
    const body = `--${boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--${boundary}\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--${boundary}--\r\n`;
    const r = await rawRequest(
      t.proxyUrl,
      'POST',
      '/passthru/v1/things',
      { authorization: `Bearer ${generic.token}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
      body,
    );
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_request');
    expect(t.sandboxes.echo!.requests).toHaveLength(0);
  });

  it('forwards parameters that only contain "method" exactly as sent', async () => {
    const body = 'amount=100&currency=usd&payment_method=pm_card_visa&metadata[_method]=note&payment_method_types[]=card';
    const r = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', auth(), body);
    expect(r.status).toBe(200);
    expect(t.sandbox.requests).toHaveLength(1);
    expect(t.sandbox.requests[0]!.method).toBe('POST');
    expect(t.sandbox.requests[0]!.body).toBe(body);
  });
});

describe('routing headers', () => {
  it('never forwards X-Original-URL, X-Rewrite-URL or X-Original-Method', async () => {
    const r = await rawRequest(
      t.proxyUrl,
      'POST',
      '/v1/payment_intents',
      { ...auth(), 'x-original-url': '/v1/refunds', 'x-rewrite-url': '/v1/refunds', 'x-original-method': 'DELETE', 'x-http-method': 'DELETE' },
      'amount=1&currency=usd',
    );
    expect(r.status).toBe(200);
    expect(t.sandbox.requests).toHaveLength(1);
    const seen = t.sandbox.requests[0]!;
    expect(seen.method).toBe('POST');
    expect(seen.path).toBe('/v1/payment_intents');
    for (const name of ['x-original-url', 'x-rewrite-url', 'x-original-method', 'x-http-method']) expect(seen.headers[name]).toBeUndefined();
  });
});

describe('vault keys in the query string', () => {
  const pct = (s: string) => [...s].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');
  const cases: Array<[string, () => string]> = [
    ['after a malformed parameter', () => `x=%zz&k=${key.token}`],
    ['percent-encoded after a malformed parameter', () => `x=%zz&k=${pct(key.token)}`],
    ['double-encoded', () => `k=${pct(key.token).replace(/%/g, '%25')}`],
    ['double-encoded after a malformed parameter', () => `k=%&x=%zz&k2=${pct(key.token).replace(/%/g, '%25')}`],
    ['upper-cased prefix', () => `k=${key.token.replace('vk_test_', 'VK_TEST_')}`],
    ['encoded underscores only', () => `k=${key.token.replace(/_/g, '%5F')}&x=%`],
    ['as a parameter name', () => `${key.token}=1&x=%zz`],
    ['after a semicolon', () => `x=%zz;k=${pct(key.token)}`],
    ['a minted key', () => `x=%zz&k=vk_test_m1.${'A'.repeat(40)}.${'B'.repeat(43)}`],
    ['a live key', () => `x=%zz&k=${pct('vk_live_' + 'a'.repeat(38))}`],
  ];
  it.each(cases)('refuses a vault key %s, echoing nothing', async (_n, make) => {
    const query = make();
    const r = await rawRequest(t.proxyUrl, 'GET', `/v1/payment_intents/pi_1?${query}`, auth());
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('credential_in_url');
    expect(r.text).not.toContain(key.token);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('still forwards a query with a malformed parameter and no key', async () => {
    const r = await rawRequest(t.proxyUrl, 'GET', '/v1/customers?limit=3&x=%zz', auth());
    expect(r.status).toBe(200);
    expect(t.sandbox.requests).toHaveLength(1);
    expect(t.sandbox.requests[0]!.path).toBe('/v1/customers');
  });
});

describe('repeated headers', () => {
  it('refuses Idempotency-Key sent twice, forwarding nothing', async () => {
    const r = await rawExchange(
      `POST /v1/payment_intents HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key.token}\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 21\r\nConnection: close\r\n\r\namount=1&currency=usd`,
    );
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_request');
    expect(t.sandbox.requests).toHaveLength(0);
  });
});

describe('the Host header', () => {
  const request = (hostLines: string) =>
    `POST /v1/payment_intents HTTP/1.1\r\n${hostLines}Authorization: Bearer ${key.token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 21\r\nConnection: close\r\n\r\namount=1&currency=usd`;

  it.each([
    ['two Host headers', 'Host: 127.0.0.1\r\nHost: evil.example\r\n'],
    ['two Host headers, the same', 'Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n'],
    ['a Host with a space', 'Host: evil.example 127.0.0.1\r\n'],
    ['a Host with userinfo', 'Host: user@evil.example\r\n'],
    ['a Host with a path', 'Host: evil.example/v1\r\n'],
    ['a quoted Host', 'Host: "evil.example"\r\n'],
    ['a Host with a backslash', 'Host: evil.example\\x\r\n'],
    ['a Host with a non-numeric port', 'Host: evil.example:80x\r\n'],
  ])('refuses %s with 400 invalid_request, forwarding nothing', async (_n, hostLines) => {
    const r = await rawExchange(request(hostLines));
    expect(r.status).toBe(400);
    // Node itself may refuse some before the proxy sees them, with no body.
    if (r.body !== null) expect(r.body.code).toBe('invalid_request');
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('refuses two Host headers through the proxy itself (stable code)', async () => {
    const r = await rawExchange(request('Host: 127.0.0.1\r\nHost: evil.example\r\n'));
    expect(r.status).toBe(400);
    expect(r.body?.code).toBe('invalid_request');
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('forwards a call with one valid Host, sending the vendor its own', async () => {
    const r = await rawExchange(request('Host: 127.0.0.1:8081\r\n'));
    expect(r.status).toBe(200);
    expect(t.sandbox.requests).toHaveLength(1);
    expect(t.sandbox.requests[0]!.headers.host).toBe(new URL(t.sandbox.url).host);
    expect(t.sandbox.requests[0]!.body).toBe('amount=1&currency=usd');
  });
});
});
}
