import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET, freePort, startGatewayProcess } from './harness.js';

// A bounded soak: a fixed request rate on loopback against a real gateway process, watching its
// memory and its error count. CI runs it for a few seconds; the full run is
//   KEYLEASH_SOAK_SECONDS=600 npx vitest run test/soak.test.ts   (in packages/keyleash)

const SECONDS = Number(process.env.KEYLEASH_SOAK_SECONDS ?? 8);
const RATE = Number(process.env.KEYLEASH_SOAK_RATE ?? 200);


function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

let sandbox: StripeSandbox;
let child: ChildProcess;
let dir: string;
let api = '';
let proxy = '';

beforeAll(async () => {
  sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
  // Answers only; the sandbox keeps no record, so its own memory stays flat too.
  sandbox.respond = () => ({ status: 200, body: { object: 'payment_intent' } });
  const url = await sandbox.listen();
  dir = mkdtempSync(join(tmpdir(), 'keyleash-soak-'));
  const [apiPort, proxyPort] = [await freePort(), await freePort()];
  api = `http://127.0.0.1:${apiPort}`;
  proxy = `http://127.0.0.1:${proxyPort}`;
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      admin_token: ADMIN_TOKEN,
      listen: { api: { port: apiPort }, proxy: { port: proxyPort } },
      store: { path: join(dir, 'soak.sqlite') },
      vendors: { stripe: { base_url: url, test_secret: STRIPE_TEST_SECRET } },
      log_level: 'warn',
    }),
  );
  child = await startGatewayProcess({ config, readyUrl: `${proxy}/readyz` });
});

afterAll(async () => {
  child?.kill('SIGTERM');
  await sandbox.close();
  rmSync(dir, { recursive: true, force: true });
});

describe(`soak (${SECONDS}s at ${RATE} req/s)`, () => {
  it('keeps memory flat and errors at zero under a steady load', async () => {
    // The sandbox would otherwise keep every request it saw.
    sandbox.requests.length = 0;
    const issued = await fetch(`${api}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ label: 'soak', vendor: 'stripe', allowed_endpoints: ['/v1/payment_intents'], daily_usd_cap: 1_000_000, expires_in: '1h' }),
    });
    const key = (await issued.json()) as { token: string };
    const counts = new Map<number, number>();
    const samples: number[] = [];
    const started = Date.now();
    const inflight = new Set<Promise<void>>();
    let sent = 0;
    while (Date.now() - started < SECONDS * 1000) {
      const due = Math.floor(((Date.now() - started) / 1000) * RATE);
      for (; sent < due; sent++) {
        const p = fetch(`${proxy}/v1/payment_intents`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key.token}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: 'amount=1&currency=usd',
        })
          .then(async (r) => {
            await r.arrayBuffer();
            counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
          })
          .catch(() => {
            counts.set(0, (counts.get(0) ?? 0) + 1);
          })
          .finally(() => inflight.delete(p));
        inflight.add(p);
      }
      sandbox.requests.length = 0;
      if (samples.length < Math.floor((Date.now() - started) / 500)) samples.push(rssKb(child.pid!));
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(inflight);

    const half = samples[Math.floor(samples.length / 2)]!;
    const last = samples[samples.length - 1]!;
    console.log(`soak: ${sent} calls, statuses ${JSON.stringify(Object.fromEntries(counts))}, RSS ${samples[0]} → ${half} → ${last} kB`);
    expect(sent).toBeGreaterThan(RATE * SECONDS * 0.8);
    expect(counts.get(200)).toBe(sent);
    // Flat: the second half of the run may not grow the heap by more than a fifth.
    expect(last).toBeLessThan(half * 1.2);
  }, (SECONDS + 60) * 1000);
});
