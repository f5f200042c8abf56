import { createInterface } from 'node:readline/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { jsonLine, makeOut, relative, safeDeep, safeText, table, usd, type Out } from './output.js';

// The operators' commands: they talk to a running gateway's control API over HTTP, with the
// admin token in the Authorization header, exactly as any other client would.

export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

export const ADMIN_COMMANDS = new Set(['keys', 'minting-keys', 'kill', 'audit', 'vendors', 'budgets']);

const CONNECTION_HELP = `Connection (every admin command):
  --api-url URL        control API base (env KEYLEASH_API_URL, default http://127.0.0.1:8080)
  --admin-token T      admin token (env KEYLEASH_ADMIN_TOKEN; prefer the env, argv is visible in ps)
  --timeout-ms N       give up on an answer after N ms (env KEYLEASH_TIMEOUT_MS, default 10000)
  --json               machine-readable output (one JSON document, or NDJSON for audit tail and export)`;

export const EXIT_CODES_HELP = 'Exit codes: 0 ok, 1 runtime or API failure, 2 bad usage, configuration or admin token, 3 not found.';

const HELP: Record<string, string> = {
  keys: `keyleash keys — issue, list, read and revoke vault keys

Usage:
  keyleash keys create --vendor V --endpoint PATTERN [--endpoint …] [--label L] [--cap USD]
                       [--ttl 15m] [--mode test|live] [--meta k=v …]
  keyleash keys create --vendor mcp:SERVER --tool NAME|GLOB [--tool …] [--cap USD] …
                       (a key for an MCP server names tools, e.g. --tool 'list_*')
  keyleash keys list   [--status active|expired|revoked] [--vendor V] [--mode M]
                       [--label-prefix P] [--meta k=v …] [--limit N] [--all]
  keyleash keys get    ID
  keyleash keys revoke ID [ID …]

Examples:
  keyleash keys create --vendor stripe --endpoint /v1/payment_intents --cap 100 --ttl 15m --label run-7
  keyleash keys list --label-prefix flask- --meta user_id=u42
  keyleash keys get key_2x9… --json
  keyleash keys revoke key_2x9…

${CONNECTION_HELP}

${EXIT_CODES_HELP}`,
  'minting-keys': `keyleash minting-keys — minting keys: backends holding one mint vault keys offline

Usage:
  keyleash minting-keys create --vendor V [--vendor …] --endpoint PATTERN [--endpoint …]
                               [--max-cap USD] [--max-ttl 1h] [--budget B …] [--allow-budget B|PREFIX* …]
                               [--mode test|live] [--label L] [--meta k=v …]
  keyleash minting-keys list   [--limit N]
  keyleash minting-keys get    ID
  keyleash minting-keys rotate ID [--grace 1h]
  keyleash minting-keys revoke ID

The secret (klm_…) is printed by create and rotate only: give it to the backend as
KEYLEASH_MINTING_KEY. Revoking a minting key stops every key minted from it. See docs/minting.md.

Examples:
  keyleash minting-keys create --vendor stripe --endpoint /v1/payment_intents --max-cap 100 --max-ttl 1h --allow-budget 'user:*'
  keyleash minting-keys rotate mk_2x9… --grace 10m
  keyleash minting-keys revoke mk_2x9…

${CONNECTION_HELP}

${EXIT_CODES_HELP}`,
  kill: `keyleash kill — the kill switch: revoke every active key matching a filter

Usage:
  keyleash kill [--label-prefix P] [--meta k=v …] [--vendor V] [--mode M] [--dry-run] [--yes]
  keyleash kill --all --yes

Every given filter must match. With no filter it refuses, unless --all. It first counts the
matching keys; without --yes it asks on a terminal and refuses elsewhere.

Examples:
  keyleash kill --label-prefix celery-nightly- --dry-run
  keyleash kill --meta user_id=u42 --yes

${CONNECTION_HELP}

${EXIT_CODES_HELP}`,
  audit: `keyleash audit — follow, query and export the audit log

Usage:
  keyleash audit tail   [--key-id ID] [--vendor V] [--decision allow|deny] [--code C] [--backfill N]
  keyleash audit query  [--key-id ID] [--vendor V] [--decision allow|deny] [--code C]
                        [--since T] [--until T] [--limit N] [--all]
  keyleash audit export [same filters] [--format ndjson|csv]
  keyleash audit verify [--config F]     (reads the store itself; see keyleash audit verify --help)
  keyleash audit admin  [--actor NAME] [--since T] [--until T] [--limit N] [--all] [--format ndjson|csv]

admin reads the admin audit trail: every control-plane change (keys, minting keys, the kill
switch, budgets, dashboard sign-in), with the admin token's name, address and request id;
--format exports every match. tail follows the log live until Ctrl-C. query prints the newest records first (--limit, default
100; --all for every match). export writes every matching record, newest first, as NDJSON (one
audit_record per line) or CSV with a header. --since/--until take an ISO time or date
(2026-01-31, 2026-01-31T12:00:00Z); --since is inclusive, --until exclusive.

Examples:
  keyleash audit tail --decision deny
  keyleash audit tail --key-id key_2x9… --backfill 50 --json | jq .code
  keyleash audit query --decision deny --since 2026-01-31
  keyleash audit export --since 2026-01-01 --until 2026-02-01 --format csv > january.csv

${CONNECTION_HELP}

${EXIT_CODES_HELP}`,
  budgets: `keyleash budgets — budgets above keys (a USD limit per day, month or in total)

Usage:
  keyleash budgets create ID --limit USD --period day|month|total [--rate N/second|minute|hour] [--meta k=v …] [--frozen]
  keyleash budgets list   [--limit N] [--all]
  keyleash budgets get    ID [--window 2026-01-31|2026-01|total]
  keyleash budgets set    ID [--limit USD] [--rate N/minute|none] [--meta k=v …]
  keyleash budgets freeze ID | unfreeze ID
  keyleash budgets delete ID

Examples:
  keyleash budgets create user:u42 --limit 25 --period day
  keyleash budgets set team:billing --limit 500
  keyleash budgets freeze user:u42
  keyleash budgets get user:u42 --window 2026-01-31 --json

${CONNECTION_HELP}

${EXIT_CODES_HELP}`,
  vendors: `keyleash vendors list — the vendors the gateway is configured for

Usage:
  keyleash vendors list

${CONNECTION_HELP}

${EXIT_CODES_HELP}`,
};

class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

const usage = (message: string, command: string) => new CliError(`${message}\n\n${HELP[command] ?? ''}`, EXIT.usage);

interface Conn {
  apiUrl: string;
  token: string;
  /** Longest wait for an answer (its headers, for a stream). */
  timeoutMs: number;
  /** Human output: every string of every answer has its control characters made visible. */
  escape: boolean;
}

interface Ctx {
  conn: Conn;
  json: boolean;
  out: Out;
  write(s: string): void;
}

const connectionOptions = {
  'api-url': { type: 'string' },
  'admin-token': { type: 'string' },
  'timeout-ms': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O, command: string) {
  try {
    return parseArgs({ args, options: { ...connectionOptions, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw usage((e as Error).message, command);
  }
}

function context(values: { 'api-url'?: string | undefined; 'admin-token'?: string | undefined; 'timeout-ms'?: string | undefined; json?: boolean | undefined }): Ctx {
  const apiUrl = (values['api-url'] ?? process.env.KEYLEASH_API_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
  try {
    const u = new URL(apiUrl);
    if (!/^https?:$/.test(u.protocol)) throw new Error('not http');
  } catch {
    throw new CliError(`--api-url must be an http(s) URL, got ${JSON.stringify(apiUrl)}`, EXIT.usage);
  }
  const token = values['admin-token'] ?? process.env.KEYLEASH_ADMIN_TOKEN;
  if (!token) throw new CliError('no admin token: set KEYLEASH_ADMIN_TOKEN or pass --admin-token', EXIT.usage);
  const rawTimeout = values['timeout-ms'] ?? process.env.KEYLEASH_TIMEOUT_MS ?? '10000';
  const timeoutMs = /^[0-9]{1,9}$/.test(rawTimeout) ? Number(rawTimeout) : NaN;
  if (!(timeoutMs > 0)) throw new CliError(`--timeout-ms must be a positive whole number of milliseconds, got ${JSON.stringify(rawTimeout)}`, EXIT.usage);
  return { conn: { apiUrl, token, timeoutMs, escape: values.json !== true }, json: values.json === true, out: makeOut(), write: (s) => process.stdout.write(s) };
}

function metaPairs(values: string[] | undefined, command: string): Record<string, string> | undefined {
  if (!values?.length) return undefined;
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq <= 0) throw usage(`--meta takes key=value, got ${JSON.stringify(v)}`, command);
    out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

async function call(conn: Conn, method: string, path: string, body?: unknown): Promise<any> {
  let res: Response;
  try {
    res = await fetch(conn.apiUrl + path, {
      method,
      headers: {
        authorization: `Bearer ${conn.token}`,
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(conn.timeoutMs),
    });
  } catch (e) {
    throw unreachable(conn, e);
  }
  let text: string;
  try {
    text = await res.text();
  } catch (e) {
    throw unreachable(conn, e);
  }
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const what = data?.code ? safeText(`${data.code}: ${data.message}`) : `HTTP ${res.status}`;
    const exitCode = res.status === 404 ? EXIT.notFound : res.status === 400 || res.status === 401 ? EXIT.usage : EXIT.failure;
    throw new CliError(`${method} ${path} → ${res.status} ${what}`, exitCode);
  }
  return conn.escape ? safeDeep(data) : data;
}

/** A control API that does not answer (refused, silent past the timeout, cut mid-answer): exit 1. */
function unreachable(conn: Conn, e: unknown): CliError {
  const err = e as { name?: string; cause?: { code?: string; message?: string }; message: string };
  if (err.name === 'TimeoutError') return new CliError(`no answer from the control API at ${conn.apiUrl} within ${conn.timeoutMs} ms (--timeout-ms)`, EXIT.failure);
  return new CliError(`cannot reach the control API at ${conn.apiUrl}: ${err.cause?.code ?? err.cause?.message ?? err.message}`, EXIT.failure);
}

function qs(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

function statusText(out: Out, status: string): string {
  return status === 'active' ? out.green(status) : status === 'revoked' ? out.red(status) : out.dim(status);
}

function keyRows(out: Out, keys: any[]): string[][] {
  const now = Date.now();
  return keys.map((k) => [
    k.id,
    k.label || out.dim('(none)'),
    k.vendor,
    k.mode === 'live' ? out.yellow(k.mode) : k.mode,
    statusText(out, k.status),
    `${usd(k.spend_today_usd)} / ${k.daily_usd_cap === null ? 'no cap' : usd(k.daily_usd_cap)}`,
    k.status === 'active' ? relative(Date.parse(k.expires_at) - now) : '—',
    String(k.request_count),
  ]);
}

const KEY_HEADERS = ['ID', 'LABEL', 'VENDOR', 'MODE', 'STATUS', 'SPEND TODAY / CAP', 'EXPIRES IN', 'CALLS'];

function keyDetail(out: Out, k: any): string {
  const rows: [string, string][] = [
    ['id', k.id],
    ['label', k.label || '(none)'],
    ['vendor', k.vendor],
    ['mode', k.mode],
    ['status', statusText(out, k.status)],
    k.allowed_tools ? ['allowed tools', k.allowed_tools.join(', ')] : ['allowed endpoints', k.allowed_endpoints.join(', ')],
    ['daily cap', k.daily_usd_cap === null ? 'no cap' : usd(k.daily_usd_cap)],
    ['spend today', usd(k.spend_today_usd)],
    ['remaining today', k.remaining_today_usd === null ? '—' : usd(k.remaining_today_usd)],
    ['calls', String(k.request_count)],
    ['last call', k.last_used_at ?? '—'],
    ['created', k.created_at],
    ['expires', k.expires_at],
  ];
  if (k.revoked_at) rows.push(['revoked', k.revoked_at]);
  const meta = Object.entries(k.metadata ?? {}).map(([a, b]) => `${a}=${b}`);
  if (meta.length) rows.push(['metadata', meta.join(' ')]);
  const w = Math.max(...rows.map(([a]) => a.length));
  return rows.map(([a, b]) => `${out.dim(a.padEnd(w))}  ${b}`).join('\n') + '\n';
}

async function keysCommand(args: string[]): Promise<number> {
  const sub = args[0]?.startsWith('-') ? undefined : args[0];
  const rest = sub === undefined ? args : args.slice(1);
  const { values, positionals } = parse(
    rest,
    {
      vendor: { type: 'string' },
      endpoint: { type: 'string', multiple: true },
      tool: { type: 'string', multiple: true },
      label: { type: 'string' },
      cap: { type: 'string' },
      ttl: { type: 'string' },
      mode: { type: 'string' },
      meta: { type: 'string', multiple: true },
      status: { type: 'string' },
      'label-prefix': { type: 'string' },
      limit: { type: 'string' },
      all: { type: 'boolean' },
    },
    'keys',
  );
  if (values.help || sub === undefined || sub === 'help') {
    process.stdout.write(HELP.keys + '\n');
    return sub === undefined && !values.help ? EXIT.usage : EXIT.ok;
  }
  if (!['create', 'list', 'get', 'revoke'].includes(sub)) throw usage(`unknown keys command "${sub}"`, 'keys');
  const ctx = context(values);
  const { out } = ctx;

  if (sub === 'create') {
    if (!values.vendor) throw usage('keys create needs --vendor', 'keys');
    const body: Record<string, unknown> = { vendor: values.vendor };
    if (values.tool?.length) body.allowed_tools = values.tool;
    else if (values.vendor.startsWith('mcp:')) throw usage('keys create for an MCP server needs at least one --tool', 'keys');
    if (values.endpoint?.length) body.allowed_endpoints = values.endpoint;
    else if (!values.tool?.length) throw usage('keys create needs at least one --endpoint', 'keys');
    if (values.label !== undefined) body.label = values.label;
    if (values.cap !== undefined) body.daily_usd_cap = values.cap;
    if (values.ttl !== undefined) body.expires_in = /^[0-9]+$/.test(values.ttl) ? Number(values.ttl) : values.ttl;
    if (values.mode !== undefined) body.mode = values.mode;
    const meta = metaPairs(values.meta, 'keys');
    if (meta) body.metadata = meta;
    const k = await call(ctx.conn, 'POST', '/v1/keys', body);
    if (ctx.json) ctx.write(jsonLine(k));
    else {
      ctx.write(`${out.green('✔')} issued ${out.bold(k.id)}\n${keyDetail(out, k)}`);
      ctx.write(`${out.bold('token')}  ${k.token}\n${out.dim('The token is shown only this once.')}\n`);
    }
    return EXIT.ok;
  }

  if (sub === 'list') {
    const params: Record<string, string | number | undefined> = {
      status: values.status,
      vendor: values.vendor,
      mode: values.mode,
      label_prefix: values['label-prefix'],
      limit: values.limit ?? 100,
    };
    for (const [k, v] of Object.entries(metaPairs(values.meta, 'keys') ?? {})) params[`metadata[${k}]`] = v;
    const all: any[] = [];
    let cursor: string | undefined;
    let more = false;
    do {
      const page = await call(ctx.conn, 'GET', `/v1/keys${qs({ ...params, cursor })}`);
      all.push(...page.data);
      more = page.has_more;
      cursor = page.next_cursor ?? undefined;
    } while (values.all && more);
    if (ctx.json) ctx.write(jsonLine({ object: 'list', data: all, has_more: more && !values.all }));
    else if (all.length === 0) ctx.write(out.dim('No keys match.\n'));
    else {
      ctx.write(table(out, KEY_HEADERS, keyRows(out, all)));
      if (more && !values.all) ctx.write(out.dim(`… more keys match; pass --all to list every one.\n`));
    }
    return EXIT.ok;
  }

  if (positionals.length === 0) throw usage(`keys ${sub} needs a key id`, 'keys');
  if (sub === 'get') {
    if (positionals.length !== 1) throw usage('keys get takes one key id', 'keys');
    const k = await call(ctx.conn, 'GET', `/v1/keys/${encodeURIComponent(positionals[0]!)}`);
    ctx.write(ctx.json ? jsonLine(k) : keyDetail(out, k));
    return EXIT.ok;
  }

  // revoke: every id is tried; the exit code is the worst outcome.
  let code: number = EXIT.ok;
  const results: unknown[] = [];
  for (const id of positionals) {
    try {
      const k = await call(ctx.conn, 'DELETE', `/v1/keys/${encodeURIComponent(id)}`);
      results.push(k);
      if (!ctx.json) ctx.write(`${out.green('✔')} revoked ${out.bold(k.id)} ${k.label ? out.dim(`(${k.label})`) : ''}\n`);
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      code = Math.max(code, e.exitCode === EXIT.notFound ? EXIT.notFound : e.exitCode);
      results.push({ id, error: e.message });
      process.stderr.write(`keyleash: ${e.message}\n`);
    }
  }
  if (ctx.json) ctx.write(jsonLine({ object: 'list', data: results }));
  return code;
}

function mintingKeyDetail(out: Out, m: any): string {
  const rows: [string, string][] = [
    ['id', m.id],
    ['label', m.label || '(none)'],
    ['mode', m.mode],
    ['status', statusText(out, m.status)],
    ['vendors', m.vendors.join(', ')],
    ['endpoints', m.allowed_endpoints.join(', ')],
    ['max cap', m.max_daily_usd_cap === null ? 'no maximum' : `${usd(m.max_daily_usd_cap)} a day per key`],
    ['max ttl', `${m.max_ttl} s`],
    ['budgets', [...m.budgets, ...m.allowed_budgets.map((b: string) => `${b} (may name)`)].join(', ') || '(none)'],
    ['version', `${m.version}${m.versions.length > 1 ? ` (older: ${m.versions.slice(0, -1).map((v: any) => `v${v.version} until ${v.retires_at}`).join(', ')})` : ''}`],
    ['created', m.created_at],
  ];
  if (m.revoked_at) rows.push(['revoked', m.revoked_at]);
  return rows.map(([k, v]) => `${out.dim(k.padEnd(10))} ${v}`).join('\n') + '\n';
}

async function mintingKeysCommand(args: string[]): Promise<number> {
  const sub = args[0]?.startsWith('-') ? undefined : args[0];
  const rest = sub === undefined ? args : args.slice(1);
  const { values, positionals } = parse(
    rest,
    {
      vendor: { type: 'string', multiple: true },
      endpoint: { type: 'string', multiple: true },
      'max-cap': { type: 'string' },
      'max-ttl': { type: 'string' },
      budget: { type: 'string', multiple: true },
      'allow-budget': { type: 'string', multiple: true },
      mode: { type: 'string' },
      label: { type: 'string' },
      meta: { type: 'string', multiple: true },
      limit: { type: 'string' },
      grace: { type: 'string' },
    },
    'minting-keys',
  );
  if (values.help || sub === undefined || sub === 'help') {
    process.stdout.write(HELP['minting-keys'] + '\n');
    return sub === undefined && !values.help ? EXIT.usage : EXIT.ok;
  }
  if (!['create', 'list', 'get', 'rotate', 'revoke'].includes(sub)) throw usage(`unknown minting-keys command "${sub}"`, 'minting-keys');
  const ctx = context(values);
  const { out } = ctx;
  const ttl = (v: string) => (/^[0-9]+$/.test(v) ? Number(v) : v);
  const showSecret = (m: any) => {
    ctx.write(`${out.bold('secret')}  ${m.secret}\n${out.dim('The secret is shown only this once: give it to the backend as KEYLEASH_MINTING_KEY.')}\n`);
  };

  if (sub === 'create') {
    if (!values.vendor?.length) throw usage('minting-keys create needs at least one --vendor', 'minting-keys');
    if (!values.endpoint?.length) throw usage('minting-keys create needs at least one --endpoint', 'minting-keys');
    const body: Record<string, unknown> = { vendors: values.vendor, allowed_endpoints: values.endpoint };
    if (values['max-cap'] !== undefined) body.max_daily_usd_cap = values['max-cap'];
    if (values['max-ttl'] !== undefined) body.max_ttl = ttl(values['max-ttl']);
    if (values.budget?.length) body.budgets = values.budget;
    if (values['allow-budget']?.length) body.allowed_budgets = values['allow-budget'];
    if (values.mode !== undefined) body.mode = values.mode;
    if (values.label !== undefined) body.label = values.label;
    const meta = metaPairs(values.meta, 'minting-keys');
    if (meta) body.metadata = meta;
    const m = await call(ctx.conn, 'POST', '/v1/minting_keys', body);
    if (ctx.json) ctx.write(jsonLine(m));
    else {
      ctx.write(`${out.green('✔')} created ${out.bold(m.id)}\n${mintingKeyDetail(out, m)}`);
      showSecret(m);
    }
    return EXIT.ok;
  }
  if (sub === 'list') {
    const page = await call(ctx.conn, 'GET', `/v1/minting_keys${qs({ limit: values.limit ?? 100 })}`);
    if (ctx.json) ctx.write(jsonLine(page));
    else if (page.data.length === 0) ctx.write(out.dim('No minting keys.\n'));
    else {
      const rows = page.data.map((m: any) => [
        m.id,
        m.label || out.dim('(none)'),
        m.mode === 'live' ? out.yellow(m.mode) : m.mode,
        statusText(out, m.status),
        m.vendors.join(', '),
        m.max_daily_usd_cap === null ? 'no max' : usd(m.max_daily_usd_cap),
        `v${m.version}`,
      ]);
      ctx.write(table(out, ['ID', 'LABEL', 'MODE', 'STATUS', 'VENDORS', 'MAX CAP', 'VERSION'], rows));
    }
    return EXIT.ok;
  }
  if (positionals.length !== 1) throw usage(`minting-keys ${sub} takes one minting key id`, 'minting-keys');
  const path = `/v1/minting_keys/${encodeURIComponent(positionals[0]!)}`;
  if (sub === 'get') {
    const m = await call(ctx.conn, 'GET', path);
    ctx.write(ctx.json ? jsonLine(m) : mintingKeyDetail(out, m));
  } else if (sub === 'rotate') {
    const m = await call(ctx.conn, 'POST', `${path}/rotate`, values.grace === undefined ? {} : { grace_period: ttl(values.grace) });
    if (ctx.json) ctx.write(jsonLine(m));
    else {
      ctx.write(`${out.green('✔')} rotated ${out.bold(m.id)} to version ${m.version}\n`);
      showSecret(m);
    }
  } else {
    const m = await call(ctx.conn, 'DELETE', path);
    if (ctx.json) ctx.write(jsonLine(m));
    else ctx.write(`${out.green('✔')} revoked ${out.bold(m.id)}; ${m.keys_revoked} minted key(s) in use were revoked with it\n`);
  }
  return EXIT.ok;
}

async function killCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      'label-prefix': { type: 'string' },
      meta: { type: 'string', multiple: true },
      vendor: { type: 'string' },
      mode: { type: 'string' },
      all: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      yes: { type: 'boolean', short: 'y' },
    },
    'kill',
  );
  if (values.help) {
    process.stdout.write(HELP.kill + '\n');
    return EXIT.ok;
  }
  if (positionals.length) throw usage(`kill takes no arguments, got ${positionals.join(' ')}`, 'kill');
  const filter: Record<string, unknown> = {};
  if (values['label-prefix'] !== undefined) filter.label_prefix = values['label-prefix'];
  if (values.vendor !== undefined) filter.vendor = values.vendor;
  if (values.mode !== undefined) filter.mode = values.mode;
  const meta = metaPairs(values.meta, 'kill');
  if (meta) filter.metadata = meta;
  if (Object.keys(filter).length === 0 && !values.all) {
    throw usage('kill needs a filter (--label-prefix, --meta, --vendor, --mode) or --all', 'kill');
  }
  if (values.all) filter.all = true;
  const ctx = context(values);
  const { out } = ctx;

  const dry = await call(ctx.conn, 'POST', '/v1/keys/revoke', { ...filter, dry_run: true });
  if (values['dry-run']) {
    if (ctx.json) ctx.write(jsonLine(dry));
    else ctx.write(`${out.bold(String(dry.matched))} active key${dry.matched === 1 ? '' : 's'} match; nothing revoked (dry run).\n`);
    return EXIT.ok;
  }
  if (!values.yes) {
    if (!process.stdin.isTTY || !process.stderr.isTTY) {
      throw new CliError(`kill would revoke ${dry.matched} active key(s); pass --yes to confirm`, EXIT.usage);
    }
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    const answer = await rl.question(`Revoke ${dry.matched} active key${dry.matched === 1 ? '' : 's'}? This cannot be undone. [y/N] `);
    rl.close();
    if (!/^y(es)?$/i.test(answer.trim())) {
      process.stderr.write('Nothing revoked.\n');
      return EXIT.failure;
    }
  }
  const r = await call(ctx.conn, 'POST', '/v1/keys/revoke', filter);
  if (ctx.json) ctx.write(jsonLine(r));
  else ctx.write(`${out.red('✖')} revoked ${out.bold(String(r.revoked))} key${r.revoked === 1 ? '' : 's'} (${r.matched} matched).\n`);
  return EXIT.ok;
}

function auditLine(out: Out, r: any): string {
  const time = String(r.time).slice(11, 23);
  const decision = r.decision === 'deny' ? out.red('deny ') : out.green('allow');
  const code = r.code ? (r.decision === 'deny' ? out.red(r.code) : out.yellow(r.code)) : out.dim('-');
  const who = r.label || r.key_id || out.dim('(no key)');
  return `${out.dim(time)}  ${decision}  ${String(r.status).padEnd(3)}  ${r.vendor ?? '-'}  ${r.method} ${r.path}  ${code}  ${usd(r.cost_usd)}  ${who}  ${out.dim(r.request_id)}\n`;
}

async function auditCommand(args: string[]): Promise<number> {
  const sub = args[0]?.startsWith('-') ? undefined : args[0];
  const rest = sub === undefined ? args : args.slice(1);
  const { values, positionals } = parse(
    rest,
    {
      'key-id': { type: 'string' },
      vendor: { type: 'string' },
      decision: { type: 'string' },
      code: { type: 'string' },
      backfill: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      limit: { type: 'string' },
      all: { type: 'boolean' },
      format: { type: 'string' },
      actor: { type: 'string' },
    },
    'audit',
  );
  if (values.help || sub === undefined || sub === 'help') {
    process.stdout.write(HELP.audit + '\n');
    return sub === undefined && !values.help ? EXIT.usage : EXIT.ok;
  }
  if (sub === 'query' || sub === 'export') return auditRecords(sub, values, positionals);
  if (sub === 'admin') return adminTrail(values, positionals);
  if (sub !== 'tail') throw usage(`unknown audit command "${sub}"`, 'audit');
  if (positionals.length) throw usage(`audit tail takes no arguments, got ${positionals.join(' ')}`, 'audit');
  const ctx = context(values);
  const path = `/v1/audit/stream${qs({ key_id: values['key-id'], vendor: values.vendor, decision: values.decision, code: values.code, backfill: values.backfill })}`;
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let res: Response;
  try {
    // The timeout covers the wait for the stream to open, not the stream itself.
    const opened = setTimeout(() => controller.abort(new DOMException('timed out', 'TimeoutError')), ctx.conn.timeoutMs);
    try {
      res = await fetch(ctx.conn.apiUrl + path, {
        headers: { authorization: `Bearer ${ctx.conn.token}`, accept: 'text/event-stream' },
        signal: controller.signal,
      });
    } finally {
      clearTimeout(opened);
    }
  } catch (e) {
    const reason = controller.signal.reason as { name?: string } | undefined;
    if (controller.signal.aborted && reason?.name !== 'TimeoutError') return EXIT.ok;
    throw unreachable(ctx.conn, reason?.name === 'TimeoutError' ? reason : e);
  }
  if (!res.ok || !res.body) {
    const data = (await res.json().catch(() => null)) as { code?: string; message?: string } | null;
    const exitCode = res.status === 400 || res.status === 401 ? EXIT.usage : EXIT.failure;
    throw new CliError(`GET ${path} → ${res.status} ${data?.code ? safeText(`${data.code}: ${data.message}`) : ''}`, exitCode);
  }
  if (!ctx.json) process.stderr.write(ctx.out.dim(`following the audit log at ${ctx.conn.apiUrl} (Ctrl-C to stop)\n`));
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        const data: string[] = [];
        for (const line of event.split('\n')) {
          if (line.startsWith('event:')) name = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (name !== 'audit' || data.length === 0) continue;
        const record = JSON.parse(data.join('\n'));
        ctx.write(ctx.json ? jsonLine(record) : auditLine(ctx.out, safeDeep(record)));
      }
    }
  } catch (e) {
    if (!controller.signal.aborted) throw new CliError(`the audit stream broke: ${(e as Error).message}`, EXIT.failure);
    return EXIT.ok;
  }
  if (controller.signal.aborted) return EXIT.ok;
  throw new CliError('the gateway closed the audit stream', EXIT.failure);
}

function timeParam(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const t = /^\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2}))?$/.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(t)) throw usage(`--${name} takes an ISO date or time (2026-01-31 or 2026-01-31T12:00:00Z), got ${JSON.stringify(v)}`, 'audit');
  return t;
}

const CSV_COLUMNS = ['time', 'id', 'request_id', 'key_id', 'label', 'vendor', 'mode', 'method', 'path', 'status', 'decision', 'code', 'cost_micros', 'cost_usd', 'upstream_latency_ms'];

function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  let s = String(v);
  // A spreadsheet would run a cell starting with = + - @ as a formula.
  if (/^[=+\-@\t\r]/.test(s) && typeof v === 'string') s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** audit query / export: pages of GET /v1/audit (newest first), cut to --since/--until here. */
async function auditRecords(
  sub: 'query' | 'export',
  values: Record<string, string | boolean | undefined>,
  positionals: string[],
): Promise<number> {
  if (positionals.length) throw usage(`audit ${sub} takes no arguments, got ${positionals.join(' ')}`, 'audit');
  if (values.backfill !== undefined) throw usage('--backfill is for audit tail', 'audit');
  const format = (values.format as string | undefined) ?? 'ndjson';
  if (sub === 'query' && values.format !== undefined) throw usage('--format is for audit export', 'audit');
  if (!['ndjson', 'csv'].includes(format)) throw usage(`--format is ndjson or csv, got ${JSON.stringify(format)}`, 'audit');
  const since = timeParam(values.since as string | undefined, 'since');
  const until = timeParam(values.until as string | undefined, 'until');
  const limit = values.limit === undefined ? 100 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1) throw usage('--limit must be a positive whole number', 'audit');
  const ctx = context(values as Parameters<typeof context>[0]);
  const everything = sub === 'export' || values.all === true;
  const filter = { key_id: values['key-id'] as string | undefined, vendor: values.vendor as string | undefined, decision: values.decision as string | undefined, code: values.code as string | undefined };
  const found: any[] = [];
  let cursor: string | undefined;
  let more = false;
  let written = 0;
  if (sub === 'export' && format === 'csv') ctx.write(CSV_COLUMNS.join(',') + '\n');
  pages: do {
    const page = await call(ctx.conn, 'GET', `/v1/audit${qs({ ...filter, limit: everything ? 1000 : Math.min(limit, 1000), cursor })}`);
    more = page.has_more;
    cursor = page.next_cursor ?? undefined;
    for (const r of page.data) {
      const t = Date.parse(r.time);
      if (until !== undefined && t >= until) continue;
      // Newest first: once past --since, nothing older can match.
      if (since !== undefined && t < since) {
        more = false;
        break pages;
      }
      if (sub === 'export') {
        ctx.write(format === 'csv' ? CSV_COLUMNS.map((c) => csvCell(r[c])).join(',') + '\n' : jsonLine(r));
        written++;
      } else {
        found.push(r);
        if (!everything && found.length >= limit) break pages;
      }
    }
  } while (more && (everything || found.length < limit));
  if (sub === 'export') {
    process.stderr.write(ctx.out.dim(`exported ${written} audit record${written === 1 ? '' : 's'}\n`));
    return EXIT.ok;
  }
  if (ctx.json) ctx.write(jsonLine({ object: 'list', data: found, has_more: more }));
  else if (found.length === 0) ctx.write(ctx.out.dim('No audit records match.\n'));
  else {
    for (const r of found) ctx.write(auditLine(ctx.out, r));
    if (more && !everything) ctx.write(ctx.out.dim('… more records match; pass --all, a --limit or narrower filters.\n'));
  }
  return EXIT.ok;
}

const ADMIN_CSV = ['time', 'id', 'tenant_id', 'actor', 'via', 'ip', 'request_id', 'method', 'route', 'target', 'status', 'detail'];

/** audit admin: the admin audit trail, newest first; --format exports every match. */
async function adminTrail(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number> {
  if (positionals.length) throw usage(`audit admin takes no arguments, got ${positionals.join(' ')}`, 'audit');
  const format = values.format as string | undefined;
  if (format !== undefined && !['ndjson', 'csv'].includes(format)) throw usage(`--format is ndjson or csv, got ${JSON.stringify(format)}`, 'audit');
  timeParam(values.since as string | undefined, 'since');
  timeParam(values.until as string | undefined, 'until');
  const limit = values.limit === undefined ? 100 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1) throw usage('--limit must be a positive whole number', 'audit');
  const ctx = context(values as Parameters<typeof context>[0]);
  const everything = format !== undefined || values.all === true;
  const found: any[] = [];
  let cursor: string | undefined;
  let more = false;
  if (format === 'csv') ctx.write(ADMIN_CSV.join(',') + '\n');
  do {
    const q = { actor: values.actor as string | undefined, since: values.since as string | undefined, until: values.until as string | undefined };
    const page = await call(ctx.conn, 'GET', `/v1/admin/audit${qs({ ...q, limit: everything ? 1000 : limit, cursor })}`);
    more = page.has_more;
    cursor = page.next_cursor ?? undefined;
    for (const r of page.data) {
      if (format === 'ndjson') ctx.write(jsonLine(r));
      else if (format === 'csv') ctx.write(ADMIN_CSV.map((c) => csvCell(c === 'detail' && r.detail ? JSON.stringify(r.detail) : r[c])).join(',') + '\n');
      else found.push(r);
    }
  } while (more && everything);
  if (format !== undefined) return EXIT.ok;
  if (ctx.json) ctx.write(jsonLine({ object: 'list', data: found, has_more: more }));
  else if (found.length === 0) ctx.write(ctx.out.dim('No admin audit records match.\n'));
  else {
    const o = ctx.out;
    for (const r of found) {
      const d = r.detail ? ` ${o.dim(JSON.stringify(r.detail))}` : '';
      ctx.write(`${o.dim(String(r.time).slice(0, 19))}  ${o.bold(r.actor)} ${o.dim(`(${r.via}, ${r.ip})`)}  ${r.method} ${r.route}  ${r.target ?? '-'}  ${r.status}${d}  ${o.dim(r.request_id)}\n`);
    }
    if (more) ctx.write(o.dim('… more records match; pass --all or --format ndjson.\n'));
  }
  return EXIT.ok;
}

function budgetDetail(out: Out, b: any): string {
  const rows: [string, string][] = [
    ['id', b.id],
    ['limit', `${usd(b.limit_usd)} per ${b.period === 'total' ? 'all time' : b.period}`],
    ['window', b.window],
    ['spent', usd(b.spend_usd)],
    ['remaining', usd(b.remaining_usd)],
    ['frozen', b.frozen ? out.red('yes') : 'no'],
    ['rate limit', b.rate_limit ? `${b.rate_limit.requests} per ${b.rate_limit.per}` : '—'],
    ['created', b.created_at],
    ['updated', b.updated_at],
  ];
  const meta = Object.entries(b.metadata ?? {}).map(([a, v]) => `${a}=${v}`);
  if (meta.length) rows.push(['metadata', meta.join(' ')]);
  const w = Math.max(...rows.map(([a]) => a.length));
  return rows.map(([a, v]) => `${out.dim(a.padEnd(w))}  ${v}`).join('\n') + '\n';
}

function rateParam(v: string | undefined): { requests: number; per: string } | null | undefined {
  if (v === undefined) return undefined;
  if (v === 'none') return null;
  const m = /^([0-9]+)\/(.+)$/.exec(v);
  if (!m) throw usage(`--rate takes N/second, N/minute or N/hour, or none, got ${JSON.stringify(v)}`, 'budgets');
  return { requests: Number(m[1]), per: m[2]! };
}

async function budgetsCommand(args: string[]): Promise<number> {
  const sub = args[0]?.startsWith('-') ? undefined : args[0];
  const rest = sub === undefined ? args : args.slice(1);
  const { values, positionals } = parse(
    rest,
    {
      limit: { type: 'string' },
      period: { type: 'string' },
      rate: { type: 'string' },
      meta: { type: 'string', multiple: true },
      frozen: { type: 'boolean' },
      window: { type: 'string' },
      all: { type: 'boolean' },
    },
    'budgets',
  );
  if (values.help || sub === undefined || sub === 'help') {
    process.stdout.write(HELP.budgets + '\n');
    return sub === undefined && !values.help ? EXIT.usage : EXIT.ok;
  }
  const subs = ['create', 'list', 'get', 'set', 'freeze', 'unfreeze', 'delete'];
  if (!subs.includes(sub)) throw usage(`unknown budgets command "${sub}"`, 'budgets');
  const ctx = context(values);
  const { out } = ctx;
  const show = (b: any, verb?: string) => ctx.write(ctx.json ? jsonLine(b) : `${verb ? `${out.green('✔')} ${verb} ${out.bold(b.id)}\n` : ''}${budgetDetail(out, b)}`);

  if (sub === 'list') {
    if (positionals.length) throw usage('budgets list takes no arguments', 'budgets');
    const all: any[] = [];
    let cursor: string | undefined;
    let more = false;
    do {
      const page = await call(ctx.conn, 'GET', `/v1/budgets${qs({ limit: values.limit ?? 100, cursor })}`);
      all.push(...page.data);
      more = page.has_more;
      cursor = page.next_cursor ?? undefined;
    } while (values.all && more);
    if (ctx.json) ctx.write(jsonLine({ object: 'list', data: all, has_more: more && !values.all }));
    else if (all.length === 0) ctx.write(out.dim('No budgets.\n'));
    else {
      ctx.write(
        table(
          out,
          ['ID', 'LIMIT', 'PERIOD', 'SPENT', 'REMAINING', 'FROZEN'],
          all.map((b) => [b.id, usd(b.limit_usd), b.period, usd(b.spend_usd), usd(b.remaining_usd), b.frozen ? out.red('frozen') : '']),
        ),
      );
      if (more && !values.all) ctx.write(out.dim('… more budgets exist; pass --all to list every one.\n'));
    }
    return EXIT.ok;
  }

  if (positionals.length !== 1) throw usage(`budgets ${sub} takes one budget id`, 'budgets');
  const id = positionals[0]!;
  const path = `/v1/budgets/${encodeURIComponent(id)}`;
  if (sub === 'create') {
    if (values.limit === undefined || values.period === undefined) throw usage('budgets create needs --limit and --period', 'budgets');
    const body: Record<string, unknown> = { id, limit_usd: values.limit, period: values.period };
    if (values.frozen) body.frozen = true;
    const rate = rateParam(values.rate);
    if (rate) body.rate_limit = rate;
    const meta = metaPairs(values.meta, 'budgets');
    if (meta) body.metadata = meta;
    show(await call(ctx.conn, 'POST', '/v1/budgets', body), 'created');
  } else if (sub === 'get') {
    show(await call(ctx.conn, 'GET', values.window ? `${path}/spend${qs({ window: values.window })}` : path));
  } else if (sub === 'set') {
    const body: Record<string, unknown> = {};
    if (values.limit !== undefined) body.limit_usd = values.limit;
    const rate = rateParam(values.rate);
    if (rate !== undefined) body.rate_limit = rate;
    const meta = metaPairs(values.meta, 'budgets');
    if (meta) body.metadata = meta;
    if (Object.keys(body).length === 0) throw usage('budgets set needs --limit, --rate or --meta', 'budgets');
    show(await call(ctx.conn, 'PATCH', path, body), 'updated');
  } else if (sub === 'freeze' || sub === 'unfreeze') {
    show(await call(ctx.conn, 'POST', `${path}/${sub}`), sub === 'freeze' ? 'froze' : 'unfroze');
  } else {
    const r = await call(ctx.conn, 'DELETE', path);
    ctx.write(ctx.json ? jsonLine(r) : `${out.green('✔')} deleted ${out.bold(id)}\n`);
  }
  return EXIT.ok;
}

async function vendorsCommand(args: string[]): Promise<number> {
  const sub = args[0]?.startsWith('-') ? undefined : args[0];
  const rest = sub === undefined ? args : args.slice(1);
  const { values } = parse(rest, {}, 'vendors');
  if (values.help || sub === undefined || sub === 'help') {
    process.stdout.write(HELP.vendors + '\n');
    return sub === undefined && !values.help ? EXIT.usage : EXIT.ok;
  }
  if (sub !== 'list') throw usage(`unknown vendors command "${sub}"`, 'vendors');
  const ctx = context(values);
  const list = await call(ctx.conn, 'GET', '/v1/vendors');
  if (ctx.json) ctx.write(jsonLine(list));
  else if (list.data.length === 0) ctx.write(ctx.out.dim('No vendors are configured.\n'));
  else ctx.write(table(ctx.out, ['VENDOR', 'ORIGIN', 'MODES'], list.data.map((v: any) => [v.name, v.origin, v.modes.join(', ')])));
  return EXIT.ok;
}

/** Runs an admin command; returns the exit code. Never throws for expected failures. */
export async function runAdminCommand(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'keys') return await keysCommand(rest);
    if (command === 'minting-keys') return await mintingKeysCommand(rest);
    if (command === 'kill') return await killCommand(rest);
    if (command === 'audit') return await auditCommand(rest);
    if (command === 'vendors') return await vendorsCommand(rest);
    if (command === 'budgets') return await budgetsCommand(rest);
    throw new CliError(`unknown command "${command}"`, EXIT.usage);
  } catch (e) {
    if (e instanceof CliError) {
      process.stderr.write(`keyleash: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
}
