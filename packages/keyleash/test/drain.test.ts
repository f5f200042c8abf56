import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, CLI, freePort } from './harness.js';

// SIGTERM under load against the real `keyleash serve` process: /readyz turns 503 at once while
// new connections are still served, then the listener closes, a call in flight finishes, a stream
// still open at the deadline is cut — and settled and audited — and the process exits 0. A second
// signal exits at once.

let upstream: Server;
let upstreamUrl: string;
/** Held /v1/slow calls, answered when the test says so. */
const held: Array<() => void> = [];
let dir: string;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    if (req.url === '/v1/quick') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    if (req.url === '/v1/slow') {
      held.push(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"slow":true}'));
      return;
    }
    if (req.url === '/v1/stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const tick = setInterval(() => res.write('data: tick\n\n'), 20);
      res.on('close', () => clearInterval(tick));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  dir = mkdtempSync(join(tmpdir(), 'keyleash-drain-'));
});

afterAll(async () => {
  upstream.closeAllConnections();
  await new Promise((r) => upstream.close(r));
  rmSync(dir, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  api: string;
  proxy: string;
  proxyPort: number;
  db: string;
  exited: Promise<number | null>;
  token: string;
}

async function serve(name: string, shutdown: { drain_seconds: number; deadline_seconds: number }): Promise<Running> {
  const [apiPort, proxyPort] = [await freePort(), await freePort()];
  const db = join(dir, `${name}.sqlite`);
  const config = join(dir, `${name}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      admin_token: ADMIN_TOKEN,
      listen: { api: { port: apiPort }, proxy: { port: proxyPort } },
      store: { path: db },
      shutdown,
      vendors: {
        generic: {
          up: {
            base_url: upstreamUrl,
            test_secret: 'upstream-test-secret-0000',
            endpoints: [
              { match: 'GET /v1/quick', usd: 0.01 },
              { match: 'GET /v1/slow', usd: 0.01 },
              { match: 'GET /v1/stream', usd: 0.01 },
            ],
          },
        },
      },
    }),
  );
  const child = spawn(process.execPath, [CLI, 'serve', '--config', config], { env: { ...process.env, KEYLEASH_DRAIN_SECONDS: '' }, stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const api = `http://127.0.0.1:${apiPort}`;
  const proxy = `http://127.0.0.1:${proxyPort}`;
  for (let i = 0; i < 200; i++) {
    if (await fetch(`${proxy}/readyz`).then((r) => r.ok, () => false)) break;
    if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const issued = await fetch(`${api}/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ label: name, vendor: 'up', allowed_endpoints: ['/v1/quick', '/v1/slow', '/v1/stream'], daily_usd_cap: 1000, expires_in: '10m' }),
  });
  expect(issued.status).toBe(201);
  const { token } = (await issued.json()) as { token: string };
  return { child, api, proxy, proxyPort, db, exited, token };
}

type Outcome = { status: number; connection?: string; body: string } | { error: string };

/** One call on a connection of its own (no keep-alive pool), as a fresh client would make it. */
function call(r: Running, path: string, onResponse?: (res: IncomingMessage) => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: r.proxyPort, path, agent: false, headers: { authorization: `Bearer ${r.token}` } }, (res) => {
      onResponse?.(res);
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, body }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
      res.on('aborted', () => resolve({ error: 'aborted' }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end();
  });
}

async function until(what: string, check: () => Promise<boolean>, tries = 400): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('draining on SIGTERM', { timeout: 60_000 }, () => {
  it('turns /readyz 503, keeps accepting, finishes calls in flight, cuts and settles a stream, exits 0', async () => {
    const r = await serve('drain', { drain_seconds: 3, deadline_seconds: 3 });
    // A stream that never ends on its own, and a call the upstream holds until told.
    let streamed = 0;
    const stream = call(r, '/up/v1/stream', (res) => res.on('data', () => streamed++));
    await until('the stream to flow', async () => streamed > 2);
    const slow = call(r, '/up/v1/slow');
    await until('the slow call to reach the upstream', async () => held.length === 1);

    // Load: fresh connections, back to back, until the listener refuses them.
    let loading = true;
    const outcomes: Outcome[] = [];
    const workers = Array.from({ length: 4 }, async () => {
      while (loading) {
        const o = await call(r, '/up/v1/quick');
        outcomes.push(o);
        if ('error' in o) await new Promise((res) => setTimeout(res, 10));
      }
    });
    await until('load to flow', async () => outcomes.length > 20);

    r.child.kill('SIGTERM');
    await until('/readyz to answer 503', async () => (await fetch(`${r.proxy}/readyz`, { headers: { connection: 'close' } })).status === 503);
    expect((await fetch(`${r.api}/readyz`)).status).toBe(503);
    // Draining, still accepting: a new connection is served, and told to close.
    const during = await call(r, '/up/v1/quick');
    expect(during).toMatchObject({ status: 200, connection: 'close' });

    // After the drain period the listener stops accepting…
    await until('the listener to close', async () => {
      const o = await call(r, '/up/v1/quick');
      outcomes.push(o);
      return 'error' in o && o.error === 'ECONNREFUSED';
    });
    loading = false;
    await Promise.all(workers);
    // …and the call in flight still finishes.
    held.shift()!();
    expect(await slow).toMatchObject({ status: 200, body: '{"slow":true}' });

    // The stream outlives the deadline: it is cut, then the process exits cleanly.
    const cut = await stream;
    expect(await r.exited).toBe(0);
    expect('error' in cut || (cut as { body: string }).body.length > 0).toBe(true);

    // Under load nothing failed: each call was answered 200 or refused at the door once closed.
    const failed = outcomes.filter((o) => !('error' in o ? ['ECONNREFUSED', 'ECONNRESET'].includes(o.error) : o.status === 200));
    expect(failed).toEqual([]);
    expect(outcomes.filter((o) => 'status' in o && o.connection === 'close').length).toBeGreaterThan(0);

    // Nothing left open in the ledger: the cut stream was settled, and every call is audited.
    const db = new Database(r.db, { readonly: true });
    try {
      expect(db.prepare("SELECT COUNT(*) AS n FROM reservations WHERE state = 'reserved'").get()).toEqual({ n: 0 });
      const streamRows = db.prepare("SELECT status, cost_micros FROM audit WHERE path = '/v1/stream'").all() as Array<{ status: number; cost_micros: number }>;
      expect(streamRows, JSON.stringify(db.prepare('SELECT path, status, code, cost_micros FROM audit GROUP BY path, status, code').all())).toHaveLength(1);
      expect(streamRows[0]!.cost_micros).toBe(10_000);
      const answered = outcomes.filter((o) => 'status' in o).length + 2; // + the slow call and the one during the drain
      const quickAndSlow = db.prepare("SELECT COUNT(*) AS n FROM audit WHERE path IN ('/v1/quick', '/v1/slow') AND status = 200").get() as { n: number };
      expect(quickAndSlow.n).toBe(answered);
    } finally {
      db.close();
    }
  });

  it('exits at once on a second signal, even with a stream open', async () => {
    const r = await serve('twice', { drain_seconds: 30, deadline_seconds: 30 });
    let streamed = 0;
    const stream = call(r, '/up/v1/stream', (res) => res.on('data', () => streamed++));
    await until('the stream to flow', async () => streamed > 2);
    r.child.kill('SIGTERM');
    await until('/readyz to answer 503', async () => (await fetch(`${r.proxy}/readyz`, { headers: { connection: 'close' } })).status === 503);
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(143);
    await stream;
  });
});
