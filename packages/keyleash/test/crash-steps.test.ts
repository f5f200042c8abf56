import Database from 'better-sqlite3';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpenAISandbox, type OpenAISandbox } from '../src/sandbox/openai.js';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { backends } from './backends.js';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET, freePort, startGatewayProcess } from './harness.js';

// SIGKILL at each durable step of a call, then restart on the same store: every request the
// vendor received is charged, nothing is left open, and the cap is never passed.

const here = dirname(fileURLToPath(import.meta.url));
const FAILPOINT = join(here, 'failpoint.mjs');
const OPENAI_SECRET = 'sk-crashtest0123456789';

for (const backend of await backends('crash_steps')) {
describe.skipIf(backend.skip)(`crash steps (${backend.name})`, () => {
let storeConfig: Record<string, unknown> | null = null;
let pgClient: pg.Client | null = null;
let stripe: StripeSandbox;
let openai: OpenAISandbox;
let dir: string;
let config: string;
let api = '';
let proxy = '';


function start(failpoint?: string): Promise<ChildProcess> {
  return startGatewayProcess({
    config,
    readyUrl: `${proxy}/readyz`,
    env: { KEYLEASH_FAILPOINT: failpoint ?? '' },
    nodeArgs: failpoint ? ['--import', FAILPOINT] : [],
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const admin = (method: string, path: string, body?: unknown) =>
  fetch(`${api}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then((r) => r.json() as Promise<any>);

type Row = { request_id: string; state: string; final_micros: number | null; estimate_micros: number };

async function reservations(): Promise<Row[]> {
  const q = 'SELECT request_id, state, final_micros, estimate_micros FROM reservations';
  if (pgClient) {
    const r = await pgClient.query(q);
    return r.rows.map((x) => ({ ...x, final_micros: x.final_micros === null ? null : Number(x.final_micros), estimate_micros: Number(x.estimate_micros) }));
  }
  const db = new Database(join(dir, 'store.sqlite'), { readonly: true });
  try {
    return db.prepare(q).all() as Row[];
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  stripe = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
  openai = createOpenAISandbox({ secrets: [OPENAI_SECRET] });
  const [stripeUrl, openaiUrl] = [await stripe.listen(), await openai.listen()];
  dir = mkdtempSync(join(tmpdir(), 'keyleash-crash-steps-'));
  storeConfig = backend.store();
  if (storeConfig) {
    pgClient = new pg.Client({ connectionString: storeConfig.url as string, options: `-c search_path=${storeConfig.schema as string}` });
    await pgClient.connect();
  }
  const [apiPort, proxyPort] = [await freePort(), await freePort()];
  api = `http://127.0.0.1:${apiPort}`;
  proxy = `http://127.0.0.1:${proxyPort}`;
  config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      admin_token: ADMIN_TOKEN,
      listen: { api: { port: apiPort }, proxy: { port: proxyPort } },
      store: storeConfig ?? { path: join(dir, 'store.sqlite') },
      proxy: { stale_reservation_after: '1s' },
      vendors: {
        stripe: { base_url: stripeUrl, test_secret: STRIPE_TEST_SECRET },
        openai: { base_url: openaiUrl, test_secret: OPENAI_SECRET },
      },
      log_level: 'warn',
    }),
  );
});

afterAll(async () => {
  await pgClient?.end();
  await backend.cleanup(storeConfig);
  await stripe.close();
  await openai.close();
  rmSync(dir, { recursive: true, force: true });
});

async function crashAt(step: string, call: (token: string) => Promise<unknown>, vendor: 'stripe' | 'openai') {
  const child = await start(step);
  const key = await admin('POST', '/v1/keys', {
    label: `crash-${step}`,
    vendor,
    allowed_endpoints: vendor === 'stripe' ? ['/v1/payment_intents'] : ['POST /v1/chat/completions'],
    daily_usd_cap: 30,
    expires_in: '10m',
  });
  const exited = new Promise((r) => child.once('exit', r));
  await call(key.token).catch(() => undefined);
  await exited;
  expect(child.signalCode).toBe('SIGKILL');
  return key as { id: string; token: string };
}

const stripeCall = (token: string) =>
  fetch(`${proxy}/v1/payment_intents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'amount=1000&currency=usd',
  });

const streamCall = async (token: string) => {
  const r = await fetch(`${proxy}/openai/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, max_tokens: 200, messages: [{ role: 'user', content: 'count slowly to fifty' }] }),
  });
  await r.text();
};

describe('SIGKILL at each step of a call', () => {
  const cases: Array<[string, 'stripe' | 'openai', (token: string) => Promise<unknown>]> = [
    ['reserved', 'stripe', stripeCall], // reserved, nothing sent yet
    ['answered', 'stripe', stripeCall], // the vendor executed it, not yet settled
    ['settled', 'stripe', stripeCall], // settled, the caller not yet answered
    ['streaming', 'openai', streamCall], // mid-stream
  ];

  it.each(cases)('after %s: charged, closed and within the cap after restart', async (step, vendor, call) => {
    openai.behaviour.eventDelayMs = 20;
    const key = await crashAt(step, call, vendor);
    const child = await start();
    try {
      const seen = [...stripe.requests, ...openai.requests].map((r) => r.headers['x-keyleash-request-id']);
      // Open reservations are closed at their estimate once stale (1s here), never dropped.
      let rows = await reservations();
      for (let i = 0; i < 40 && rows.some((r) => r.state === 'reserved'); i++) {
        await new Promise((r) => setTimeout(r, 100));
        rows = await reservations();
      }
      expect(rows.filter((r) => r.state === 'reserved')).toEqual([]);
      const byId = new Map(rows.map((r) => [r.request_id, r]));
      for (const id of seen) {
        const r = byId.get(id as string);
        expect(r, `request ${id} reached the vendor without a reservation`).toBeDefined();
        expect(r!.state).not.toBe('released');
        expect(r!.final_micros).toBeGreaterThan(0);
      }
      // A call whose outcome the crash hid gets its audit record from the reconciler, charged.
      // (A call already settled keeps its charge in the ledger; its own audit record may have been
      // in the batch the kill lost — see SECURITY.md.)
      const unknown = rows.filter((r) => r.state === 'unknown').map((r) => r.request_id);
      let audited = new Map<string, { code: string | null; cost_micros: number }>();
      for (let i = 0; i < 40; i++) {
        const page = await admin('GET', '/v1/audit?limit=1000');
        audited = new Map(page.data.map((a: { request_id: string; code: string | null; cost_micros: number }) => [a.request_id, a]));
        if (unknown.every((id) => audited.has(id))) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      for (const id of unknown) {
        expect(audited.get(id), `request ${id} has no audit record`).toMatchObject({ code: 'outcome_unknown' });
        expect(audited.get(id)!.cost_micros).toBeGreaterThan(0);
      }
      const view = await admin('GET', `/v1/keys/${key.id}`);
      expect(view.spend_today_micros).toBeGreaterThan(0);
      expect(view.spend_today_micros).toBeLessThanOrEqual(30_000_000);
    } finally {
      await stop(child);
    }
  }, 30_000);
});
});
}
