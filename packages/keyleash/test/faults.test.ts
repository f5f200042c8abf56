import Database from 'better-sqlite3';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { startGateway, STRIPE_TEST_SECRET, stripeKey, type TestGateway } from './harness.js';

// Fault injection: whatever the vendor or the caller does, every call's reservation ends in
// exactly one terminal state — settled (real cost), released (only when the vendor provably did
// not execute the call) or unknown (kept charged). An unknown outcome never becomes $0.

type Behaviour = (req: IncomingMessage, res: ServerResponse) => void;

for (const backend of await backends('faults')) {
describe.skipIf(backend.skip)(`faults (${backend.name})`, () => {
let upstream: Server;
let t: TestGateway;
let storeConfig: Record<string, unknown> | null = null;
let pgClient: pg.Client | null = null;
const behaviours = new Map<string, Behaviour>();
const received: string[] = [];

const ok = (res: ServerResponse) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end('{"object":"payment_intent"}');
};

beforeAll(async () => {
  upstream = createServer((req, res) => {
    received.push(req.headers['x-keyleash-request-id'] as string);
    req.resume();
    req.on('end', () => (behaviours.get(req.headers['idempotency-key'] as string) ?? ((_q, r) => ok(r)))(req, res));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  storeConfig = backend.store();
  t = await startGateway(() => ({
    vendors: { stripe: { base_url: url, test_secret: STRIPE_TEST_SECRET } },
    proxy: { headers_timeout_ms: 300, body_timeout_ms: 300 },
    ...(storeConfig ? { store: storeConfig as never } : {}),
  }));
  if (storeConfig) {
    pgClient = new pg.Client({ connectionString: storeConfig.url as string, options: `-c search_path=${storeConfig.schema as string}` });
    await pgClient.connect();
  }
});

afterAll(async () => {
  await pgClient?.end();
  await t?.close();
  upstream.closeAllConnections();
  await new Promise((r) => upstream.close(r));
  await backend.cleanup(storeConfig);
});

type Row = { state: string; estimate_micros: number; final_micros: number | null };

async function reservationOf(requestId: string): Promise<Row | undefined> {
  const q = 'SELECT state, estimate_micros, final_micros FROM reservations WHERE request_id = ';
  if (pgClient) {
    const r = await pgClient.query(`${q}$1`, [requestId]);
    const row = r.rows[0];
    return row && { state: row.state, estimate_micros: Number(row.estimate_micros), final_micros: row.final_micros === null ? null : Number(row.final_micros) };
  }
  const db = new Database(join(t.dir, 'keyleash.sqlite'), { readonly: true });
  try {
    return db.prepare(`${q}?`).get(requestId) as Row | undefined;
  } finally {
    db.close();
  }
}

/** A $25 charge with the given fault; resolves with the request id once the gateway is done with it. */
async function charge(name: string, behaviour: Behaviour): Promise<{ status: number; requestId: string }> {
  behaviours.set(name, behaviour);
  const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
  const before = received.length;
  const r = await fetch(`${t.proxyUrl}/v1/payment_intents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key.token}`, 'content-type': 'application/x-www-form-urlencoded', 'idempotency-key': name },
    body: 'amount=2500&currency=usd',
  }).then(
    async (res) => {
      await res.text().catch(() => '');
      return res.status;
    },
    () => 0,
  );
  // The reservation may end a moment after the caller hears back (e.g. a body cut mid-way).
  const requestId = received[before]!;
  for (let i = 0; i < 50 && (await reservationOf(requestId))?.state === 'reserved'; i++) await new Promise((res) => setTimeout(res, 20));
  return { status: r, requestId };
}

describe('each fault ends in exactly one terminal state', () => {
  it('a 2xx answer settles at the real cost', async () => {
    const r = await charge('ok', (_req, res) => ok(res));
    expect(r.status).toBe(200);
    expect(await reservationOf(r.requestId)).toEqual({ state: 'settled', estimate_micros: 25_000_000, final_micros: 25_000_000 });
  });

  it("a vendor refusal (402) releases: the vendor did not execute the call", async () => {
    const r = await charge('declined', (_req, res) => {
      res.writeHead(402, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"card_declined"}}');
    });
    expect(r.status).toBe(402);
    expect(await reservationOf(r.requestId)).toMatchObject({ state: 'released', final_micros: 0 });
  });

  it('a 5xx keeps the charge: the call may have executed', async () => {
    const r = await charge('5xx', (_req, res) => {
      res.writeHead(503);
      res.end();
    });
    expect(r.status).toBe(503);
    expect(await reservationOf(r.requestId)).toMatchObject({ state: 'unknown', final_micros: 25_000_000 });
  });

  it('a connection reset before any answer keeps the charge', async () => {
    const r = await charge('reset', (req) => req.socket.destroy());
    expect(r.status).toBe(502);
    expect(await reservationOf(r.requestId)).toMatchObject({ state: 'unknown', final_micros: 25_000_000 });
  });

  it('a vendor that never answers keeps the charge (504)', async () => {
    const r = await charge('silent', () => {});
    expect(r.status).toBe(504);
    expect(await reservationOf(r.requestId)).toMatchObject({ state: 'unknown', final_micros: 25_000_000 });
  });

  it('a slow vendor inside the timeout settles normally', async () => {
    const r = await charge('slow', (_req, res) => setTimeout(() => ok(res), 150));
    expect(r.status).toBe(200);
    expect(await reservationOf(r.requestId)).toMatchObject({ state: 'settled', final_micros: 25_000_000 });
  });

  it('a body cut after a 2xx head stays settled: the vendor executed the call', async () => {
    const r = await charge('cut-body', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"object":"payment_');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    expect(await reservationOf(r.requestId)).toMatchObject({ state: 'settled', final_micros: 25_000_000 });
  });

  it('a vendor body that stalls after a 2xx head stays settled', async () => {
    const r = await charge('stall-body', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{');
    });
    expect(await reservationOf(r.requestId)).toMatchObject({ state: 'settled', final_micros: 25_000_000 });
  });
});

describe('callers that disconnect', () => {
  it('a caller gone while the vendor works does not stop the settlement', async () => {
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
    behaviours.set('caller-gone', (_req, res) => setTimeout(() => ok(res), 200));
    const before = received.length;
    const u = new URL(t.proxyUrl);
    await new Promise<void>((resolve) => {
      const req = request(
        {
          host: u.hostname,
          port: u.port,
          method: 'POST',
          path: '/v1/payment_intents',
          headers: { authorization: `Bearer ${key.token}`, 'content-type': 'application/x-www-form-urlencoded', 'idempotency-key': 'caller-gone' },
        },
        () => {},
      );
      req.on('error', () => resolve());
      req.end('amount=2500&currency=usd');
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 50);
    });
    for (let i = 0; i < 50 && received.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    const requestId = received[before]!;
    for (let i = 0; i < 50 && (await reservationOf(requestId))?.state !== 'settled'; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await reservationOf(requestId)).toMatchObject({ state: 'settled', final_micros: 25_000_000 });
  });

  it('a caller gone mid-upload reserves and forwards nothing', async () => {
    const key = await t.issue({ ...stripeKey, daily_usd_cap: 100 });
    const before = received.length;
    const u = new URL(t.proxyUrl);
    await new Promise<void>((resolve) => {
      const req = request({
        host: u.hostname,
        port: u.port,
        method: 'POST',
        path: '/v1/payment_intents',
        headers: { authorization: `Bearer ${key.token}`, 'content-type': 'application/x-www-form-urlencoded', 'content-length': '1000' },
      });
      req.on('error', () => resolve());
      req.write('amount=2500&curr');
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 50);
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(received.length).toBe(before);
    const view = await t.admin('GET', `/v1/keys/${key.id}`);
    expect(view.body.spend_today_micros).toBe(0);
  });
});
});
}
