import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { parseConfig, type ConfigInput } from '../src/config/config.js';
import { createGateway, openStore, type Gateway } from '../src/gateway.js';
import { createLogger } from '../src/log.js';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { type AnthropicSandbox, createAnthropicSandbox } from '../src/sandbox/anthropic.js';
import type { Sandbox } from '../src/sandbox/base.js';
import { createEchoSandbox } from '../src/sandbox/echo.js';
import { createOpenAISandbox, type OpenAISandbox } from '../src/sandbox/openai.js';
import { createTwilioSandbox } from '../src/sandbox/twilio.js';

export const ADMIN_TOKEN = 'test_admin_token_0123456789';
export const STRIPE_TEST_SECRET = 'sk_test_harness_secret_1234567890';
export const STRIPE_LIVE_SECRET = 'sk_live_harness_secret_0987654321';
export const TWILIO_TEST_SID = 'AC' + '0a'.repeat(16);
export const TWILIO_TEST_TOKEN = 'twiliotesttoken0123456789abcdef0';
export const TWILIO_LIVE_SID = 'AC' + '1b'.repeat(16);
export const TWILIO_LIVE_TOKEN = 'twiliolivetoken0123456789abcdef1';
export const OPENAI_TEST_SECRET = 'openai-test-harness-secret-0123';
export const OPENAI_LIVE_SECRET = 'sk-live-harness-openai-secret-0123';
export const ANTHROPIC_TEST_SECRET = 'anthropic-test-harness-secret-0123';
export const ANTHROPIC_LIVE_SECRET = 'sk-ant-live-harness-secret-0123';
/** Every secret the suites use; a leak test looks for each in responses, logs and audit records. */
export const ALL_SECRETS = [
  ADMIN_TOKEN,
  STRIPE_TEST_SECRET,
  STRIPE_LIVE_SECRET,
  TWILIO_TEST_TOKEN,
  TWILIO_LIVE_TOKEN,
  OPENAI_TEST_SECRET,
  OPENAI_LIVE_SECRET,
  ANTHROPIC_TEST_SECRET,
  ANTHROPIC_LIVE_SECRET,
];

/** Local stand-ins for the vendors beyond Stripe, started on request (see `startGateway`'s `extra`). */
export interface ExtraSandboxes {
  twilio?: Sandbox;
  openai?: OpenAISandbox;
  anthropic?: AnthropicSandbox;
  /** A generic upstream that echoes what it received; vendors for it are defined by the test. */
  echo?: Sandbox;
}
export type ExtraSandboxName = keyof ExtraSandboxes;

export interface TestGateway {
  gw: Gateway;
  apiUrl: string;
  proxyUrl: string;
  sandbox: StripeSandbox;
  /** The extra sandboxes asked for (empty unless `extra.sandboxes` named some). */
  sandboxes: ExtraSandboxes;
  dir: string;
  /** Every log line the gateway wrote. */
  logs: string[];
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any; headers: Headers; text: string }>;
  /** Issues a key; throws unless the answer is 201. */
  issue(body?: Record<string, unknown>): Promise<{ id: string; token: string; [k: string]: any }>;
  proxy(
    path: string,
    init?: { method?: string; token?: string; headers?: Record<string, string>; body?: unknown; form?: string },
  ): Promise<{ status: number; body: any; headers: Headers; text: string }>;
  close(): Promise<void>;
}

export const stripeKey = {
  label: 'test-key',
  vendor: 'stripe',
  allowed_endpoints: ['/v1/payment_intents', '/v1/payment_intents/*', 'POST /v1/refunds', 'GET /v1/customers'],
  daily_usd_cap: 1000,
  expires_in: '5m',
};

export async function startGateway(
  overrides: (sandboxUrl: string, dir: string, sandboxUrls: Partial<Record<ExtraSandboxName, string>>) => Partial<ConfigInput> = () => ({}),
  extra: { sandboxes?: ExtraSandboxName[] } = {},
): Promise<TestGateway> {
  const sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET, STRIPE_LIVE_SECRET] });
  const sandboxUrl = await sandbox.listen();
  // Extra sandboxes, each configured as its vendor (twilio, openai, anthropic) with test and live secrets.
  const sandboxes: ExtraSandboxes = {};
  const sandboxUrls: Partial<Record<ExtraSandboxName, string>> = {};
  const extraVendors: Record<string, unknown> = {};
  for (const name of extra.sandboxes ?? []) {
    if (name === 'twilio') {
      const accounts = [
        { accountSid: TWILIO_TEST_SID, authToken: TWILIO_TEST_TOKEN },
        { accountSid: TWILIO_LIVE_SID, authToken: TWILIO_LIVE_TOKEN },
      ];
      sandboxes.twilio = createTwilioSandbox({ accounts });
      sandboxUrls.twilio = await sandboxes.twilio.listen();
      extraVendors.twilio = {
        base_url: sandboxUrls.twilio,
        test_account_sid: TWILIO_TEST_SID,
        test_auth_token: TWILIO_TEST_TOKEN,
        live_account_sid: TWILIO_LIVE_SID,
        live_auth_token: TWILIO_LIVE_TOKEN,
      };
    } else if (name === 'openai') {
      sandboxes.openai = createOpenAISandbox({ secrets: [OPENAI_TEST_SECRET, OPENAI_LIVE_SECRET] });
      sandboxUrls.openai = await sandboxes.openai.listen();
      extraVendors.openai = { base_url: sandboxUrls.openai, test_secret: OPENAI_TEST_SECRET, live_secret: OPENAI_LIVE_SECRET };
    } else if (name === 'anthropic') {
      sandboxes.anthropic = createAnthropicSandbox({ secrets: [ANTHROPIC_TEST_SECRET, ANTHROPIC_LIVE_SECRET] });
      sandboxUrls.anthropic = await sandboxes.anthropic.listen();
      extraVendors.anthropic = { base_url: sandboxUrls.anthropic, test_secret: ANTHROPIC_TEST_SECRET, live_secret: ANTHROPIC_LIVE_SECRET };
    } else if (name === 'echo') {
      sandboxes.echo = createEchoSandbox();
      sandboxUrls.echo = await sandboxes.echo.listen();
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'keyleash-test-'));
  const base: ConfigInput = {
    admin_token: ADMIN_TOKEN,
    listen: { api: { host: '127.0.0.1', port: 0 }, proxy: { host: '127.0.0.1', port: 0 } },
    store: { path: join(dir, 'keyleash.sqlite') },
    vendors: { stripe: { base_url: sandboxUrl, test_secret: STRIPE_TEST_SECRET, live_secret: STRIPE_LIVE_SECRET } },
    log_level: 'debug',
  };
  const over = overrides(sandboxUrl, dir, sandboxUrls);
  const merged: ConfigInput = { ...base, ...over };
  if (extra.sandboxes?.length) merged.vendors = { ...extraVendors, ...(over.vendors ?? base.vendors) } as ConfigInput['vendors'];
  const config = parseConfig(merged);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const logger = createLogger(config.log_level, sink);
  // A store.url override (Postgres + Redis) needs the store opened first.
  const gw = createGateway(config, { logger, ...(config.store.url ? { store: await openStore(config, logger) } : {}) });
  const { apiUrl, proxyUrl } = await gw.listen();

  const parse = async (res: Response) => {
    const text = await res.text();
    let body: any = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body, headers: res.headers, text };
  };

  const t: TestGateway = {
    gw,
    apiUrl,
    proxyUrl,
    sandbox,
    sandboxes,
    dir,
    logs,
    async admin(method, path, body) {
      const res = await fetch(apiUrl + path, {
        method,
        headers: {
          authorization: `Bearer ${ADMIN_TOKEN}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      return parse(res);
    },
    async issue(body = stripeKey) {
      const r = await t.admin('POST', '/v1/keys', body);
      if (r.status !== 201) throw new Error(`issue failed: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
    async proxy(path, init = {}) {
      const headers: Record<string, string> = { ...init.headers };
      if (init.token !== undefined) headers.authorization = `Bearer ${init.token}`;
      let body: string | undefined;
      if (init.form !== undefined) {
        headers['content-type'] ??= 'application/x-www-form-urlencoded';
        body = init.form;
      } else if (init.body !== undefined) {
        headers['content-type'] ??= 'application/json';
        body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
      }
      const res = await fetch(proxyUrl + path, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body });
      return parse(res);
    },
    async close() {
      await gw.close();
      await sandbox.close();
      for (const s of Object.values(sandboxes)) await s.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}

/**
 * A request sent exactly as written: fetch would normalize dot segments and drop headers like
 * Connection, which the hostile-input tests need to send.
 */
export function rawRequest(
  baseUrl: string,
  method: string,
  path: string,
  headers: Record<string, string | string[]> = {},
  body?: string | Buffer,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string; body: any }> {
  const u = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers, setHost: true }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: any = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A port free on loopback right now, for tests that start gateway processes on fixed ports. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** The built CLI, for tests that run the gateway as its own process. */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');

/**
 * Starts `keyleash serve --config <config>` as a child process and resolves once `readyUrl`
 * (its API's /readyz) answers 200. Node flags (e.g. a failpoint preload) go in `nodeArgs`.
 */
export async function startGatewayProcess(opts: {
  config: string;
  readyUrl: string;
  env?: Record<string, string>;
  nodeArgs?: string[];
  stderr?: 'inherit' | 'pipe';
}): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), CLI, 'serve', '--config', opts.config], {
    // No drain period unless a test asks for one: a stopped test gateway exits without waiting.
    env: { ...process.env, KEYLEASH_DRAIN_SECONDS: '0', ...opts.env },
    stdio: ['ignore', 'ignore', opts.stderr ?? 'inherit'],
  });
  for (let i = 0; i < 100; i++) {
    if (await fetch(opts.readyUrl).then((r) => r.ok, () => false)) return child;
    if (child.exitCode !== null) throw new Error(`keyleash serve exited with ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error('gateway did not start');
}
