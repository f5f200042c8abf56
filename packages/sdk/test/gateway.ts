import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGateway, createStripeSandbox, parseConfig, type Gateway, type StripeSandbox } from 'keyleash';
import { Keyleash } from '../src/index.js';

export const ADMIN_TOKEN = 'sdk_test_admin_token_0123456789';
export const STRIPE_TEST_SECRET = 'sk_test_sdk_secret_1234567890';

export interface TestGateway {
  gw: Gateway;
  apiUrl: string;
  proxyUrl: string;
  sandbox: StripeSandbox;
  client: Keyleash;
  /** Reads a key straight from the control API (status, spend). */
  key(id: string): Promise<any>;
  close(): Promise<void>;
}

/** A real gateway on ephemeral ports, its Stripe upstream being the recording sandbox. */
export async function startGateway(): Promise<TestGateway> {
  const sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
  const sandboxUrl = await sandbox.listen();
  const dir = mkdtempSync(join(tmpdir(), 'keyleash-sdk-'));
  const config = parseConfig({
    admin_token: ADMIN_TOKEN,
    listen: { api: { host: '127.0.0.1', port: 0 }, proxy: { host: '127.0.0.1', port: 0 } },
    store: { path: join(dir, 'keyleash.sqlite') },
    vendors: { stripe: { base_url: sandboxUrl, test_secret: STRIPE_TEST_SECRET } },
    log_level: 'silent',
  });
  const gw = createGateway(config);
  const { apiUrl, proxyUrl } = await gw.listen();
  const client = new Keyleash({ apiUrl, proxyUrl, adminToken: ADMIN_TOKEN });
  return {
    gw,
    apiUrl,
    proxyUrl,
    sandbox,
    client,
    async key(id) {
      const r = await fetch(`${apiUrl}/v1/keys/${id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      return r.json();
    },
    async close() {
      await gw.close();
      await sandbox.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A stand-in proxy that records requests and answers `answer` (for vendors the gateway lacks). */
export async function recordingServer(answer: (r: Recorded) => { status: number; body: unknown }): Promise<{ url: string; requests: Recorded[]; close(): Promise<void> }> {
  const requests: Recorded[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(rec);
      const a = answer(rec);
      res.writeHead(a.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(a.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

export const stripeSpec = {
  vendor: 'stripe',
  allowedEndpoints: ['/v1/payment_intents', '/v1/payment_intents/*'],
  dailyUsdCap: 100,
  expiresIn: '5m',
} as const;

/** Waits until `check` passes (revocation on response close runs just after the client has its answer). */
export async function eventually<T>(check: () => Promise<T>, ms = 2000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
