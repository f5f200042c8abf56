import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../config/config.js';
import { openStore } from '../gateway.js';
import { buildCatalog } from '../vendors/catalog.js';
import type { Vendor } from '../vendors/vendor.js';
import { withMcpServers } from '../mcp/servers.js';
import { EXIT, EXIT_CODES_HELP } from './admin.js';
import { makeOut, table } from './output.js';

// `keyleash doctor`: checks what a start would need (config, store, each vendor's origin) and,
// when asked, a running gateway, without printing a secret.

export const DOCTOR_HELP = `keyleash doctor — check the configuration, the store and upstream reachability

Usage:
  keyleash doctor [--config F] [--api-url URL] [--timeout-ms N] [--json]

Checks: the configuration parses and validates; the store opens and answers (a SQLite file that
does not exist yet only needs a writable folder); every configured vendor secret is accepted by
its vendor, with one harmless read per secret (Stripe GET /v1/balance, Twilio GET the account,
OpenAI and Anthropic GET /v1/models; a generic vendor's origin is only checked to answer); and,
with --api-url or KEYLEASH_API_URL, that the running gateway is ready.

Examples:
  keyleash doctor --config /etc/keyleash/keyleash.yaml
  keyleash doctor --api-url http://127.0.0.1:8080 --json

${EXIT_CODES_HELP} (1: a check failed; 2: the configuration is invalid)`;

type Status = 'ok' | 'warn' | 'fail';
interface Check {
  check: string;
  status: Status;
  detail: string;
}

async function reachable(url: string, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  const started = Date.now();
  try {
    const res = await fetch(url, { method: 'HEAD', redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    // Any HTTP answer proves the origin is reachable; the status only says what it thinks of HEAD /.
    return { ok: true, detail: `HTTP ${res.status} in ${Date.now() - started} ms` };
  } catch (e) {
    const err = e as { name?: string; cause?: { code?: string; message?: string }; message: string };
    if (err.name === 'TimeoutError') return { ok: false, detail: `no answer within ${timeoutMs} ms` };
    return { ok: false, detail: err.cause?.code ?? err.cause?.message ?? err.message };
  }
}

/** A read per vendor that costs nothing and changes nothing, answered 401/403 for a wrong secret. */
const CREDENTIAL_READS: Record<string, (secret: string) => { path: string; headers?: Record<string, string> }> = {
  stripe: () => ({ path: '/v1/balance' }),
  twilio: (secret) => ({ path: `/2010-04-01/Accounts/${encodeURIComponent(secret.slice(0, secret.indexOf(':')))}.json` }),
  openai: () => ({ path: '/v1/models' }),
  anthropic: () => ({ path: '/v1/models', headers: { 'anthropic-version': '2023-06-01' } }),
};

async function checkCredential(v: Vendor, mode: 'test' | 'live', secret: string, timeoutMs: number): Promise<Check> {
  const read = CREDENTIAL_READS[v.name]!(secret);
  const url = v.origin + read.path;
  const check = `vendor ${v.name} ${mode}`;
  try {
    const res = await fetch(url, { headers: { ...v.authHeaders(secret), ...read.headers, accept: 'application/json' }, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    const what = `GET ${read.path} → HTTP ${res.status}`;
    if (res.ok) return { check, status: 'ok', detail: `${v.origin}: the ${mode} secret is accepted (${what})` };
    if (res.status === 401 || res.status === 403) return { check, status: 'fail', detail: `${v.origin}: the ${mode} secret is REFUSED (${what})` };
    return { check, status: 'warn', detail: `${v.origin}: answers, but the ${mode} secret is not confirmed (${what})` };
  } catch (e) {
    const err = e as { name?: string; cause?: { code?: string; message?: string }; message: string };
    const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : err.cause?.code ?? err.cause?.message ?? err.message;
    return { check, status: 'fail', detail: `${v.origin}: unreachable (${why})` };
  }
}

async function checkStore(config: Config): Promise<Check> {
  if (config.store.url === undefined) {
    const path = resolve(config.store.path);
    if (!existsSync(path)) {
      const dir = dirname(path);
      let parent = dir;
      while (!existsSync(parent) && dirname(parent) !== parent) parent = dirname(parent);
      try {
        accessSync(parent, constants.W_OK);
        return { check: 'store', status: 'warn', detail: `SQLite ${path} does not exist yet; it will be created on start` };
      } catch {
        return { check: 'store', status: 'fail', detail: `SQLite ${path} does not exist and ${parent} is not writable` };
      }
    }
  }
  const started = Date.now();
  try {
    const store = await openStore(config);
    try {
      await store.ping();
    } finally {
      await store.close();
    }
    return { check: 'store', status: 'ok', detail: `${config.store.url === undefined ? `SQLite ${resolve(config.store.path)}` : 'Postgres + Redis'} answers (${Date.now() - started} ms)` };
  } catch (e) {
    return { check: 'store', status: 'fail', detail: (e as Error).message };
  }
}

export async function runDoctor(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        'api-url': { type: 'string' },
        'timeout-ms': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (e) {
    process.stderr.write(`keyleash: ${(e as Error).message}\n\n${DOCTOR_HELP}\n`);
    return EXIT.usage;
  }
  if (values.help) {
    process.stdout.write(DOCTOR_HELP + '\n');
    return EXIT.ok;
  }
  const timeoutMs = values['timeout-ms'] === undefined ? 5000 : Number(values['timeout-ms']);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    process.stderr.write('keyleash: --timeout-ms must be a positive whole number\n');
    return EXIT.usage;
  }
  const out = makeOut();
  const checks: Check[] = [];
  const configPath = values.config ?? process.env.KEYLEASH_CONFIG;
  let config: Config | null = null;
  try {
    config = loadConfig(configPath);
    checks.push({ check: 'config', status: 'ok', detail: configPath ? `${configPath} is valid` : 'defaults + KEYLEASH_* environment are valid' });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    checks.push({ check: 'config', status: 'fail', detail: e.message });
  }

  if (config) {
    checks.push(await checkStore(config));
    checks.push(
      config.mint_key !== undefined
        ? { check: 'mint key', status: 'ok', detail: 'mint_key is set: minting keys survive an admin-token rotation' }
        : {
            check: 'mint key',
            status: 'warn',
            detail: 'mint_key is not set: minting secrets derive from admin_token, so rotating it invalidates every minting key (set KEYLEASH_MINT_KEY, the same on every replica)',
          },
    );
    const catalog = withMcpServers(buildCatalog(config), config.mcp_servers);
    if (catalog.size === 0) checks.push({ check: 'vendors', status: 'warn', detail: 'no vendor is configured: no key can be issued' });
    const vendorChecks = await Promise.all(
      [...catalog.values()].map(async (v): Promise<Check[]> => {
        const modes = (['test', 'live'] as const).filter((m) => v.secret(m) !== undefined);
        if (CREDENTIAL_READS[v.name] && modes.length > 0) {
          return Promise.all(modes.map((m) => checkCredential(v, m, v.secret(m)!, timeoutMs)));
        }
        const r = await reachable(v.origin, timeoutMs);
        const why = modes.length === 0 ? 'no secret is configured' : 'its secret is not checked: a generic vendor has no known harmless read';
        return [{ check: `vendor ${v.name}`, status: !r.ok ? 'fail' : 'warn', detail: `${v.origin}: ${r.ok ? 'reachable' : 'unreachable'} (${r.detail}); ${why}` }];
      }),
    );
    checks.push(...vendorChecks.flat());
  }

  const apiUrl = values['api-url'] ?? process.env.KEYLEASH_API_URL;
  if (apiUrl) {
    try {
      const res = await fetch(`${apiUrl.replace(/\/+$/, '')}/readyz`, { signal: AbortSignal.timeout(timeoutMs) });
      const body = (await res.json().catch(() => ({}))) as { status?: string; store?: string };
      checks.push({
        check: 'gateway',
        status: res.ok ? 'ok' : 'fail',
        detail: `${apiUrl}/readyz → ${res.status} ${body.status ?? ''}${body.store ? ` (store ${body.store})` : ''}`,
      });
    } catch (e) {
      const err = e as { cause?: { code?: string }; message: string };
      checks.push({ check: 'gateway', status: 'fail', detail: `${apiUrl}: ${err.cause?.code ?? err.message}` });
    }
  }

  const failed = checks.some((c) => c.status === 'fail');
  if (values.json) {
    process.stdout.write(JSON.stringify({ ok: !failed, checks }) + '\n');
  } else {
    const mark = (s: Status) => (s === 'ok' ? out.green('ok') : s === 'warn' ? out.yellow('warn') : out.red('FAIL'));
    process.stdout.write(table(out, ['CHECK', 'STATUS', 'DETAIL'], checks.map((c) => [c.check, mark(c.status), c.detail])));
    process.stdout.write(failed ? out.red('\nSome checks failed.\n') : out.green('\nAll checks passed.\n'));
  }
  if (config === null) return EXIT.usage;
  return failed ? EXIT.failure : EXIT.ok;
}
