#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, parseConfig, applyEnvOverrides, type Config } from '../config/config.js';
import { createGateway, openStore, type Gateway } from '../gateway.js';
import { runAuditVerify } from './audit-verify.js';
import { runSecretsCommand } from './secrets.js';
import { createLogger } from '../log.js';
import { createStripeSandbox } from '../sandbox/stripe.js';
import { createStripeMcpSandbox } from '../sandbox/stripe-mcp.js';
import { createAnthropicSandbox } from '../sandbox/anthropic.js';
import { createEchoSandbox } from '../sandbox/echo.js';
import { createOpenAISandbox } from '../sandbox/openai.js';
import { createTwilioSandbox } from '../sandbox/twilio.js';
import { SqliteStore } from '../store/sqlite/index.js';
import { NewerSchemaError, assertSqliteSchemaKnown } from '../store/sqlite/schema-guard.js';
import { ADMIN_COMMANDS, EXIT_CODES_HELP, runAdminCommand } from './admin.js';
import { runDoctor } from './doctor.js';
import { runBackup, runRestore, runRetention } from './backup.js';
import { runMcpStdio } from './mcp-stdio.js';

const HELP = `keyleash — scoped, spend-capped vault keys for AI agents

Usage:
  keyleash dev                 Start on the embedded SQLite store with built-in vendor sandboxes
  keyleash serve [--config F]  Start for real from a config file (YAML/JSON) plus KEYLEASH_* env
  keyleash migrate [--config F] Create or upgrade the store schema, then exit
  keyleash doctor [--config F] Check the configuration, the store and upstream reachability
  keyleash backup --to F [--config F]   Copy the SQLite store while it serves (online backup)
  keyleash restore --from F [--config F] [--force]
                               Put a backup in place (gateway stopped); revocations since it stay
  keyleash retention --older-than 90d --export F [--config F]
                               Export, then purge, old audit records and reservations
  keyleash mcp-stdio --url {PROXY}/mcp/{server}
                               A stdio MCP server relaying to the MCP gateway with the vault
                               key in KEYLEASH_VAULT_KEY (docs/mcp.md)
  keyleash help | --version    Show this, or the version

Operating a running gateway (over its control API; see \`keyleash <command> --help\`):
  keyleash keys create|list|get|revoke   Issue, list, read and revoke vault keys
  keyleash minting-keys create|list|get|rotate|revoke
                               Minting keys, from which backends mint vault keys offline
  keyleash kill --label-prefix P | --meta k=v [--dry-run] [--yes]
                               The kill switch: revoke every active key matching a filter
  keyleash budgets create|list|get|set|freeze|unfreeze|delete
                               Budgets above keys
  keyleash audit tail [--decision deny]  Follow the audit log live
  keyleash audit query|export [--since T] [--format csv]
                               Read or export the audit log
  keyleash audit verify [--config F]    Check the audit log's hash chains for tampering
  keyleash vendors list        The configured vendors
  These take --api-url (KEYLEASH_API_URL, default http://127.0.0.1:8080), --admin-token
  (KEYLEASH_ADMIN_TOKEN), --timeout-ms (KEYLEASH_TIMEOUT_MS, default 10000) and --json. Colour only on a terminal, and never with NO_COLOR set.

Examples:
  keyleash dev
  KEYLEASH_ADMIN_TOKEN=… KEYLEASH_STRIPE_TEST_SECRET=sk_test_… keyleash serve
  keyleash serve --config /etc/keyleash/keyleash.yaml
  keyleash keys create --vendor stripe --endpoint /v1/payment_intents --cap 100 --ttl 15m
  keyleash keys list --label-prefix flask- --json
  keyleash kill --meta user_id=u42 --yes
  keyleash audit tail --decision deny

${EXIT_CODES_HELP}`;

export const DEV_ADMIN_TOKEN = 'kl_dev_admin_token_0000';

const DEV_HELP = `keyleash dev — the gateway on your machine, every vendor replaced by a local sandbox

Usage:
  keyleash dev

Starts the control API on 127.0.0.1:8080 and the proxy on 127.0.0.1:8081, with the embedded
SQLite store in ./.keyleash/dev.sqlite and local stand-ins for Stripe, Twilio, OpenAI, Anthropic
and a generic "echo" vendor, so every vendor can be tried without an account or a real secret.
The admin token is ${DEV_ADMIN_TOKEN} unless KEYLEASH_ADMIN_TOKEN is set. The Stripe sandbox
answers a repeated Idempotency-Key with the original object, as Stripe does. Stops on Ctrl-C.

Environment:
  KEYLEASH_ADMIN_TOKEN      the admin token (default ${DEV_ADMIN_TOKEN})
  KEYLEASH_API_LISTEN       host:port of the control API (default 127.0.0.1:8080)
  KEYLEASH_PROXY_LISTEN     host:port of the proxy (default 127.0.0.1:8081)
  KEYLEASH_DATA             the SQLite file (default ./.keyleash/dev.sqlite)
  KEYLEASH_SANDBOX_PORT     the Stripe sandbox's port (default: any free one)
  KEYLEASH_LOG_LEVEL        log level (default info)
  Vendor variables (KEYLEASH_STRIPE_…, KEYLEASH_OPENAI_…) are ignored: dev never reaches a vendor.

For real credentials and a config file, use \`keyleash serve\` (keyleash help).`;
const DEV_TEST_SECRET = 'sk_test_keyleash_sandbox';
const DEV_LIVE_SECRET = 'sk_live_keyleash_sandbox';
// The other sandboxes' credentials: known to the sandboxes and to nothing else.
const DEV_TWILIO = {
  test: { accountSid: `AC${'0'.repeat(32)}`, authToken: 'keyleashsandboxtwiliotest0000000' },
  live: { accountSid: `AC${'1'.repeat(32)}`, authToken: 'keyleashsandboxtwiliolive1111111' },
};
const DEV_OPENAI = { test: 'keyleash-sandbox-openai-test', live: 'sk-keyleash-sandbox-openai-live' };
const DEV_ANTHROPIC = { test: 'keyleash-sandbox-anthropic-test', live: 'sk-ant-keyleash-sandbox-live' };

function fail(message: string, code = 2): never {
  process.stderr.write(`keyleash: ${message}\n`);
  process.exit(code);
}

/**
 * The first SIGTERM/SIGINT drains (README "Draining"); a second one exits at once, leaving any
 * open reservation to the reconciler, which keeps it charged at its estimate.
 */
function runUntilSignal(gw: Gateway, extra: () => Promise<void> = async () => {}): void {
  let closing = false;
  const stop = (signal: NodeJS.Signals) => {
    if (closing) {
      gw.log.warn({ signal }, 'second signal: exiting now');
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    closing = true;
    gw.log.info({ signal }, 'shutting down');
    gw.drain()
      .then(extra)
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        gw.log.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

async function dev(): Promise<void> {
  const sandbox = createStripeSandbox({ secrets: [DEV_TEST_SECRET, DEV_LIVE_SECRET] });
  const sandboxUrl = await sandbox.listen(Number(process.env.KEYLEASH_SANDBOX_PORT ?? 0));
  // Every vendor gets a local stand-in, so each can be tried without an account.
  const twilio = createTwilioSandbox({ accounts: [DEV_TWILIO.test, DEV_TWILIO.live] });
  const openai = createOpenAISandbox({ secrets: [DEV_OPENAI.test, DEV_OPENAI.live] });
  const anthropic = createAnthropicSandbox({ secrets: [DEV_ANTHROPIC.test, DEV_ANTHROPIC.live] });
  const echo = createEchoSandbox();
  const stripeMcp = createStripeMcpSandbox({ secrets: [DEV_TEST_SECRET, DEV_LIVE_SECRET] });
  const [twilioUrl, openaiUrl, anthropicUrl, echoUrl, stripeMcpUrl] = await Promise.all([twilio.listen(), openai.listen(), anthropic.listen(), echo.listen(), stripeMcp.listen()]);
  const raw = applyEnvOverrides(
    {
      admin_token: DEV_ADMIN_TOKEN,
      store: { path: './.keyleash/dev.sqlite' },
      // Ctrl-C in development stops at once; calls in flight still finish.
      shutdown: { drain_seconds: 0, deadline_seconds: 5 },
      vendors: {
        stripe: { base_url: sandboxUrl, test_secret: DEV_TEST_SECRET, live_secret: DEV_LIVE_SECRET },
        twilio: {
          base_url: twilioUrl,
          test_account_sid: DEV_TWILIO.test.accountSid,
          test_auth_token: DEV_TWILIO.test.authToken,
          live_account_sid: DEV_TWILIO.live.accountSid,
          live_auth_token: DEV_TWILIO.live.authToken,
        },
        openai: { base_url: openaiUrl, test_secret: DEV_OPENAI.test, live_secret: DEV_OPENAI.live },
        anthropic: { base_url: anthropicUrl, test_secret: DEV_ANTHROPIC.test, live_secret: DEV_ANTHROPIC.live },
        // A vendor defined in config alone, against an upstream that echoes what it receives.
        generic: {
          echo: {
            base_url: echoUrl,
            test_secret: 'keyleash-sandbox-echo-test',
            endpoints: [
              { match: 'POST /v1/charges', amount: { path: 'amount', unit: 'minor', currency_path: 'currency' } },
              { match: 'POST /v1/messages', usd: 0.01 },
            ],
          },
        },
      },
      // Stripe's MCP server stand-in, priced by the shipped Stripe preset (docs/mcp.md).
      mcp_servers: { stripe: { url: stripeMcpUrl, preset: 'stripe', test_secret: DEV_TEST_SECRET, live_secret: DEV_LIVE_SECRET } },
    },
    // The sandboxes are the point of dev mode: a real vendor URL or secret from the env would defeat them.
    Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^KEYLEASH_(STRIPE|TWILIO|OPENAI|ANTHROPIC)_/.test(k))),
  );
  const config = parseConfig(raw);
  const gw = createGateway(config);
  const { apiUrl, proxyUrl } = await gw.listen();
  const adminNote = config.admin_token === DEV_ADMIN_TOKEN ? `${DEV_ADMIN_TOKEN}  (dev only; set KEYLEASH_ADMIN_TOKEN to change)` : '(from KEYLEASH_ADMIN_TOKEN)';
  process.stdout.write(
    [
      '',
      'keyleash dev is running',
      `  control API   ${apiUrl}     (OpenAPI at ${apiUrl}/openapi.json)`,
      `  proxy         ${proxyUrl}`,
      `  admin token   ${adminNote}`,
      `  store         ${config.store.path}`,
      `  stripe        sandbox at ${sandboxUrl} (no Stripe account needed)`,
      `  twilio        sandbox at ${twilioUrl}`,
      `  openai        sandbox at ${openaiUrl} (streams; SDK baseURL ${proxyUrl}/openai/v1)`,
      `  anthropic     sandbox at ${anthropicUrl} (streams; SDK baseURL ${proxyUrl}/anthropic)`,
      `  echo          a generic vendor from config, at ${echoUrl} (answers with what it received)`,
      `  mcp:stripe    Stripe MCP sandbox at ${stripeMcpUrl}; agents connect to ${proxyUrl}/mcp/stripe`,
      '',
      'Issue a key:',
      `  curl -s ${apiUrl}/v1/keys -H "Authorization: Bearer ${config.admin_token === DEV_ADMIN_TOKEN ? DEV_ADMIN_TOKEN : '$KEYLEASH_ADMIN_TOKEN'}" \\`,
      `    -H "Content-Type: application/json" \\`,
      `    -d '{"label":"try-me","vendor":"stripe","allowed_endpoints":["/v1/payment_intents"],"daily_usd_cap":100,"expires_in":"15m"}'`,
      '',
      '',
    ].join('\n'),
  );
  runUntilSignal(gw, async () => {
    await Promise.all([sandbox, twilio, openai, anthropic, echo, stripeMcp].map((s) => s.close()));
  });
}

async function serve(configPath: string | undefined): Promise<void> {
  const config = loadConfig(configPath);
  const log = createLogger(config.log_level);
  const gw = createGateway(config, { logger: log, store: await openStore(config, log) });
  const { apiUrl, proxyUrl } = await gw.listen();
  gw.log.info({ apiUrl, proxyUrl, store: storeName(config), vendors: [...gw.catalog.keys()] }, 'keyleash is serving');
  // Rotating a vendor secret: edit the config (or its env), then SIGHUP. Calls in flight finish
  // with the secret they started with; vault keys are untouched.
  process.on('SIGHUP', () => {
    try {
      gw.reloadVendors(loadConfig(configPath));
      gw.log.info({ vendors: [...gw.catalog.keys()] }, 'vendor credentials reloaded');
    } catch (err) {
      gw.log.error({ err }, 'reloading vendor credentials failed; keeping the current ones');
    }
  });
  runUntilSignal(gw);
}

async function migrate(configPath: string | undefined): Promise<void> {
  const config = loadConfig(configPath);
  if (config.store.url !== undefined) {
    // Postgres only: Redis holds no schema. The advisory lock makes this safe beside running replicas.
    const { migratePostgres } = await import('../store/postgres-redis/migrations.js');
    const pg = (await import('pg')).default;
    const pool = new pg.Pool({ connectionString: config.store.url, max: 1, options: `-c search_path=${config.store.schema}` });
    try {
      const applied = await migratePostgres(pool, config.store.schema);
      createLogger(config.log_level).info({ store: storeName(config), applied }, 'store schema is up to date');
    } finally {
      await pool.end();
    }
    return;
  }
  assertSqliteSchemaKnown(config.store.path);
  const store = new SqliteStore({ path: config.store.path });
  await store.close();
  createLogger(config.log_level).info({ store: config.store.path }, 'store schema is up to date');
}

/**
 * A SQLite file that cannot be created or opened (a read-only directory, a volume owned by another
 * user) is a setting to fix, not a crash: one line naming the path and the setting.
 */
function storeOpenProblem(err: NodeJS.ErrnoException, configPath: string | undefined): string | null {
  const codes = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'SQLITE_CANTOPEN', 'SQLITE_READONLY', 'SQLITE_PERM']);
  if (typeof err.code !== 'string' || !codes.has(err.code)) return null;
  let path = err.path;
  try {
    const config = loadConfig(configPath);
    if (config.store.url !== undefined) return null;
    path = config.store.path;
  } catch {
    /* the config was readable a moment ago; keep the error's own path */
  }
  return `cannot open the store at ${path ?? 'its path'}: ${err.message}. Point KEYLEASH_DATA (store.path) at a file in a directory this user can write, e.g. a mounted volume.`;
}

/** Where the data lives, for logs; never the URL itself, which may hold a password. */
function storeName(config: Config): string {
  if (config.store.url === undefined) return config.store.path;
  const u = new URL(config.store.url);
  return `postgres ${u.host}${u.pathname} schema ${config.store.schema} + redis`;
}

/** The package's version, from its package.json (two levels above dist/cli). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--version' || argv[0] === '-v' || argv[0] === 'version') {
    process.stdout.write(`keyleash ${version()}\n`);
    return;
  }
  // Operator commands parse their own options (see ./admin.ts and ./doctor.ts).
  if (argv[0] === 'audit' && argv[1] === 'verify') {
    process.exitCode = await runAuditVerify(argv.slice(2));
    return;
  }
  if (argv[0] !== undefined && ADMIN_COMMANDS.has(argv[0])) {
    process.exitCode = await runAdminCommand(argv);
    return;
  }
  if (argv[0] === 'backup') {
    process.exitCode = await runBackup(argv.slice(1));
    return;
  }
  if (argv[0] === 'restore') {
    process.exitCode = await runRestore(argv.slice(1));
    return;
  }
  if (argv[0] === 'retention') {
    process.exitCode = await runRetention(argv.slice(1));
    return;
  }
  if (argv[0] === 'secrets') {
    process.exitCode = await runSecretsCommand(argv.slice(1));
    return;
  }
  if (argv[0] === 'mcp-stdio') {
    process.exitCode = await runMcpStdio(argv.slice(1));
    return;
  }
  if (argv[0] === 'doctor') {
    process.exitCode = await runDoctor(argv.slice(1));
    return;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (e) {
    fail(`${(e as Error).message}\n\n${HELP}`);
  }
  const [command] = parsed.positionals;
  const configPath = parsed.values.config ?? process.env.KEYLEASH_CONFIG;
  if (command === 'dev' && (parsed.values.help || parsed.positionals[1] === 'help')) {
    process.stdout.write(`${DEV_HELP}\n`);
    return;
  }
  if (parsed.values.help || command === 'help' || command === undefined) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  try {
    if (command === 'dev') return await dev();
    if (command === 'serve') return await serve(configPath);
    if (command === 'migrate') return await migrate(configPath);
  } catch (e) {
    if (e instanceof ConfigError || e instanceof NewerSchemaError) fail(e.message);
    if (e instanceof Error && /newer than this keyleash knows/.test(e.message)) fail(e.message);
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE') fail(`address in use: ${err.message}`, 1);
    const storeProblem = storeOpenProblem(err, configPath);
    if (storeProblem) fail(storeProblem);
    throw e;
  }
  fail(`unknown command "${command}"\n\n${HELP}`);
}

// Output piped into `head` (or any reader that leaves): stop quietly, as other CLI tools do.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`keyleash: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
