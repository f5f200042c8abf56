import { connect, type Socket } from 'node:net';
import { Agent } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { rawRequest, startGateway, stripeKey, type TestGateway } from './harness.js';

// Floods and lockouts: slow bodies, anonymous denial floods in the audit log, and a shared
// address whose bad tokens must not lock out its valid keys. Each test asserts the answer and
// what the vendor saw.

const BAD_TOKEN = `vk_test_${'x'.repeat(38)}`;
const PER_WINDOW = 10;
const WINDOW_MS = 1500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const backend of await backends('attacks_floods')) {
describe.skipIf(backend.skip)(`floods and lockouts (${backend.name})`, () => {
let t: TestGateway;
let storeConfig: Record<string, unknown> | null = null;

beforeAll(async () => {
  storeConfig = backend.store();
  t = await startGateway(() => ({
    ...(storeConfig ? { store: storeConfig as never } : {}),
    log_level: 'warn',
    proxy: { request_timeout_ms: 1000, request_idle_timeout_ms: 600, denial_audit_per_window: PER_WINDOW, denial_audit_window_ms: WINDOW_MS },
  }));
});
afterAll(async () => {
  await t?.close();
  await backend.cleanup(storeConfig);
});
beforeEach(() => {
  t.sandbox.requests.length = 0;
  t.sandbox.respond = null;
});

async function spend(id: string): Promise<number> {
  return (await t.admin('GET', `/v1/keys/${id}`)).body.spend_today_micros;
}

/**
 * Opens a raw connection, sends `head`, then one body byte every `everyMs` (up to `bytes`).
 * Resolves when the server closes the socket, with what it answered and how long it stayed open.
 */
function trickle(head: string, bytes: number, everyMs: number): Promise<{ status: number; body: any; openMs: number; sent: number }> {
  const u = new URL(t.proxyUrl);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let data = '';
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const sock: Socket = connect(Number(u.port), u.hostname, () => {
      sock.write(head);
      timer = setInterval(() => {
        if (sent >= bytes || sock.destroyed) return clearInterval(timer);
        sock.write('a', () => {});
        sent++;
      }, everyMs);
    });
    sock.on('data', (c) => (data += c));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearInterval(timer);
      clearTimeout(guard);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      let body: any = null;
      try {
        body = JSON.parse(data.slice(data.indexOf('\r\n\r\n') + 4));
      } catch {
        /* no JSON body */
      }
      resolve({ status: m ? Number(m[1]) : 0, body, openMs: Date.now() - started, sent });
    });
    // Far beyond the 1 s configured: only a socket held open indefinitely trips it.
    const guard = setTimeout(() => {
      sock.destroy();
      reject(new Error(`socket still open after 20 s (${sent} bytes trickled)`));
    }, 20_000);
  });
}

const post = (token: string, length: number) =>
  `POST /v1/payment_intents HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${length}\r\n\r\n`;

describe('slow request bodies', () => {
  it('answers 408 request_timeout to a body trickled past the deadline, reserving and forwarding nothing', async () => {
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
    // A byte every 200 ms never trips the 600 ms gap limit; the 1 s deadline stops it.
    const r = await trickle(post(key.token, 200), 200, 200);
    expect(r.status).toBe(408);
    expect(r.body.code).toBe('request_timeout');
    expect(r.sent).toBeLessThan(200);
    expect(t.sandbox.requests).toHaveLength(0);
    expect(await spend(key.id)).toBe(0);
    await t.gw.audit.flush();
    const audit = (await t.admin('GET', `/v1/audit?key_id=${key.id}`)).body.data;
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ decision: 'deny', code: 'request_timeout', status: 408, cost_micros: 0 });
  });

  it('answers 408 request_timeout to a body that stops half-way', async () => {
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
    const r = await trickle(post(key.token, 23) + 'amount=100', 0, 1000);
    expect(r.status).toBe(408);
    expect(r.body.code).toBe('request_timeout');
    expect(t.sandbox.requests).toHaveLength(0);
    expect(await spend(key.id)).toBe(0);
  });

  it('closes the connection of an unauthenticated caller that keeps trickling its body', async () => {
    const r = await trickle(post(BAD_TOKEN, 100_000), 100_000, 100);
    expect([401, 429]).toContain(r.status);
    expect(r.sent).toBeLessThan(100_000);
    expect(t.sandbox.requests).toHaveLength(0);
  });

  it('still takes a body that arrives in pieces within the limits', async () => {
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
    const body = 'amount=100&currency=usd';
    const u = new URL(t.proxyUrl);
    const status = await new Promise<number>((resolve) => {
      let data = '';
      const sock = connect(Number(u.port), u.hostname, async () => {
        sock.write(post(key.token, body.length).replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'));
        for (const part of [body.slice(0, 8), body.slice(8, 16), body.slice(16)]) {
          await sleep(150);
          sock.write(part);
        }
      });
      sock.on('data', (c) => (data += c));
      sock.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)));
    });
    expect(status).toBe(200);
    expect(t.sandbox.requests).toHaveLength(1);
    expect(t.sandbox.requests[0]!.body).toBe(body);
  });
});

describe('keep-alive', () => {
  it('does not cut an idle keep-alive connection: the timeouts apply to a request, not the wait between two', async () => {
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
    const get = `GET /v1/customers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key.token}\r\n\r\n`;
    const u = new URL(t.proxyUrl);
    let data = '';
    const sock = connect(Number(u.port), u.hostname);
    sock.on('data', (c) => (data += c));
    sock.on('error', () => {});
    const answers = () => data.match(/^HTTP\/1\.1 \d{3}/gm) ?? [];
    const until = async (n: number) => {
      for (let i = 0; i < 200 && answers().length < n && !sock.destroyed; i++) await sleep(25);
    };
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write(get);
    await until(1);
    // Idle for well over both the request timeout (1 s) and Node's backstop (2 s).
    await sleep(3000);
    sock.write(get);
    await until(2);
    sock.destroy();
    expect(answers()).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
    expect(t.sandbox.requests).toHaveLength(2);
  }, 30_000);
});

describe('anonymous denial floods in the audit log', () => {
  type Row = { key_id: string | null; code: string; label: string | null };

  /** Denial rows without a key, and how many denials they account for (summaries by their count). */
  async function anonymousDenials(): Promise<{ rows: Row[]; accounted: number }> {
    await t.gw.audit.flush();
    const rows: Row[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { data: Row[]; next_cursor: string | null } } = await t.admin('GET', `/v1/audit?decision=deny&limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
      rows.push(...page.body.data.filter((r) => r.key_id === null));
      cursor = page.body.next_cursor;
    } while (cursor);
    const summaries = rows.filter((r) => r.code === 'denials_suppressed');
    const suppressed = summaries.reduce((n, r) => n + Number(/^count=(\d+) address=\S+$/.exec(r.label ?? '')![1]), 0);
    return { rows, accounted: rows.length - summaries.length + suppressed };
  }

  it('records the first denials per address and window, then one summary with the count', async () => {
    await sleep(WINDOW_MS * 2); // earlier denials' windows end and are summed up
    const before = await anonymousDenials();
    // Concurrent keep-alive connections, as a flooding client would use.
    const agent = new Agent({ connections: 16 });
    const started = Date.now();
    const total = 2000;
    let next = 0;
    const statuses = new Map<number, number>();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < total) {
          next++;
          const r = await fetch(`${t.proxyUrl}/v1/payment_intents`, {
            method: 'POST',
            headers: { authorization: `Bearer ${BAD_TOKEN}`, 'content-type': 'application/x-www-form-urlencoded' },
            body: 'amount=100&currency=usd',
            dispatcher: agent,
          } as RequestInit);
          await r.arrayBuffer();
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        }
      }),
    );
    const elapsed = Date.now() - started;
    await agent.close();
    expect([...statuses.keys()].every((s) => s === 401 || s === 429)).toBe(true);
    expect(t.sandbox.requests).toHaveLength(0);

    // Every window ends within WINDOW_MS of its last denial; its summary is written then.
    let after = await anonymousDenials();
    for (let i = 0; i < 100 && after.accounted < before.accounted + total; i++) {
      await sleep(200);
      after = await anonymousDenials();
    }
    expect(after.accounted - before.accounted).toBe(total);
    const added = after.rows.length - before.rows.length;
    const summaries = after.rows.slice(0, added).filter((r) => r.code === 'denials_suppressed');
    expect(summaries.length).toBeGreaterThan(0);
    for (const s of summaries) expect(s.label).toMatch(/^count=\d+ address=127\.0\.0\.1$/);
    // At most PER_WINDOW rows and one summary per window the flood spanned.
    const windows = Math.floor(elapsed / WINDOW_MS) + 2;
    expect(added).toBeLessThanOrEqual(windows * (PER_WINDOW + 1));
    expect(added).toBeLessThan(total / 4);
  }, 120_000);
});

describe('failed authentications from a shared address', () => {
  it('keeps serving a valid key from an address whose bad tokens are throttled', async () => {
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
    // Warm the key cache; a valid call on the hot path never consults the throttle.
    expect((await rawRequest(t.proxyUrl, 'GET', '/v1/customers', { authorization: `Bearer ${key.token}` })).status).toBe(200);
    const bad: number[] = [];
    for (let i = 0; i < 60; i++) bad.push((await rawRequest(t.proxyUrl, 'GET', '/v1/customers', { authorization: `Bearer ${BAD_TOKEN}` })).status);
    expect(bad).toContain(429);

    const good = await rawRequest(t.proxyUrl, 'POST', '/v1/payment_intents', { authorization: `Bearer ${key.token}`, 'content-type': 'application/x-www-form-urlencoded' }, 'amount=100&currency=usd');
    expect(good.status).toBe(200);
    // A key never seen before (looked up in the store) passes too.
    const fresh = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
    const first = await rawRequest(t.proxyUrl, 'GET', '/v1/customers', { authorization: `Bearer ${fresh.token}` });
    expect(first.status).toBe(200);
    expect(t.sandbox.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/customers', 'POST /v1/payment_intents', 'GET /v1/customers']);

    // The bad tokens are still refused with 429 and a Retry-After.
    const again = await rawRequest(t.proxyUrl, 'GET', '/v1/customers', { authorization: `Bearer ${BAD_TOKEN}` });
    expect(again.status).toBe(429);
    expect(again.body.code).toBe('rate_limited');
    expect(Number(again.headers['retry-after'])).toBeGreaterThan(0);
    expect(t.sandbox.requests).toHaveLength(3);
  }, 30_000);
});
});
}
