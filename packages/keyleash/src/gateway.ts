import { hkdfSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AuditChain, auditKeyFrom } from './audit/chain.js';
import { AuditSink } from './audit/sink.js';
import { ConfigError, type Config } from './config/config.js';
import { buildControlApp } from './control/app.js';
import { openAdminAudit, type AdminAuditLog } from './control/admin-audit.js';
import { adminTokensFrom } from './config/tenants.js';
import { issueIdempotencySecretFrom, KeyService } from './keys/service.js';
import { MintingService } from './keys/minting.js';
import { mintRootKeyFrom } from './keys/minted.js';
import { BudgetService } from './budgets/service.js';
import { AlertService } from './alerts/service.js';
import { alertingStore } from './alerts/store-alerts.js';
import { createLogger } from './log.js';
import { GatewayMetrics } from './observability/metrics.js';
import { timedStore } from './observability/store-latency.js';
import { ProxyHandler } from './proxy/handler.js';
import { McpGateway } from './mcp/gateway.js';
import { withMcpServers } from './mcp/servers.js';
import { IDEMPOTENCY_TTL_MS } from './proxy/idempotency.js';
import { KeyCache } from './proxy/key-cache.js';
import { SqliteStore } from './store/sqlite/index.js';
import { assertSqliteSchemaKnown } from './store/sqlite/schema-guard.js';
import { DEFAULT_TENANT, StoreUnavailableError, type AuditRecord, type Store } from './store/store.js';
import { buildCatalog, KNOWN_VENDOR_NAMES } from './vendors/catalog.js';
import type { Vendor, VendorCatalog } from './vendors/vendor.js';

/** Reads a listener's PEM files once at start; a missing file stops the start with its path. */
function readTls(tls: { cert_file: string; key_file: string } | undefined): { cert: Buffer; key: Buffer } | undefined {
  if (!tls) return undefined;
  try {
    return { cert: readFileSync(tls.cert_file), key: readFileSync(tls.key_file) };
  } catch (e) {
    throw new ConfigError(`cannot read a TLS file: ${(e as Error).message}`);
  }
}

export interface GatewayOptions {
  store?: Store;
  /** The admin audit trail; default: beside the configured store. */
  adminAudit?: AdminAuditLog;
  logger?: Logger;
  now?: () => number;
}

export interface Gateway {
  readonly config: Config;
  readonly store: Store;
  readonly catalog: VendorCatalog;
  /** Swaps in the vendors (and their secrets) of a new config; nothing else is reloaded. */
  reloadVendors(config: Config): void;
  readonly keys: KeyService;
  readonly minting: MintingService;
  readonly budgets: BudgetService;
  readonly audit: AuditSink;
  readonly cache: KeyCache;
  readonly api: FastifyInstance;
  readonly proxy: Server;
  readonly log: Logger;
  readonly metrics: GatewayMetrics;
  /** Listens on the configured addresses (port 0 picks one) and returns the base URLs. */
  listen(): Promise<{ apiUrl: string; proxyUrl: string }>;
  /** True from the start of a drain: both /readyz answer 503. */
  readonly draining: boolean;
  /**
   * A graceful stop (SIGTERM): /readyz turns 503 at once while both listeners keep accepting for
   * `drainMs`; then they stop accepting, calls in flight get `deadlineMs` to finish, and what is
   * still open (a long stream) is cut, settled and audited before the store closes.
   * Defaults come from the config's `shutdown` section.
   */
  drain(opts?: { drainMs?: number; deadlineMs?: number }): Promise<void>;
  /** Stops without a drain period: calls in flight still get the deadline (`drain({ drainMs: 0 })`). */
  close(): Promise<void>;
}

/** After streams are cut, how long their settlement and audit may take before the store closes anyway. */
const SETTLE_AFTER_CUT_MS = 5_000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function urlOf(server: Server, host: string, tls: boolean): string {
  const { port } = server.address() as AddressInfo;
  const h = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return `${tls ? 'https' : 'http'}://${h}:${port}`;
}

/**
 * Opens the configured store: Postgres + Redis when `store.url` is set (loaded on demand, so
 * SQLite users never load pg/ioredis; connects and migrates), else the embedded SQLite file.
 */
export async function openStore(config: Config, log?: Logger): Promise<Store> {
  const s = config.store;
  if (s.url === undefined || s.redis_url === undefined) {
    assertSqliteSchemaKnown(s.path);
    return new SqliteStore({ path: s.path, synchronous: s.synchronous });
  }
  const { PgRedisStore } = await import('./store/postgres-redis/index.js');
  return PgRedisStore.open({
    url: s.url,
    redisUrl: s.redis_url,
    schema: s.schema,
    redisPrefix: s.redis_prefix,
    poolSize: s.pool_size,
    log,
  });
}

/** Wires a gateway from a config. Nothing listens until `listen()`. */
export function createGateway(config: Config, opts: GatewayOptions = {}): Gateway {
  const log = opts.logger ?? createLogger(config.log_level);
  if (!opts.store && config.store.url !== undefined) {
    throw new Error('store.url is set: open the store with openStore(config) and pass it as opts.store');
  }
  if (!opts.store) assertSqliteSchemaKnown(config.store.path);
  // Timed where it is wired, so every store call feeds keyleash_store_operation_seconds.
  const timed = timedStore<Store>(opts.store ?? new SqliteStore({ path: config.store.path, synchronous: config.store.synchronous }));
  const store: Store = timed.store;
  // MCP servers are vendors too (`mcp:<name>`), each tenant's its own (docs/mcp.md).
  const catalog = withMcpServers(buildCatalog(config), config.mcp_servers);
  // Each tenant's own vendor credentials; a key is always forwarded with its tenant's.
  const tenantCatalogs = new Map(Object.entries(config.tenants).map(([id, t]) => [id, withMcpServers(buildCatalog({ ...config, vendors: t.vendors }), t.mcp_servers)]));
  const catalogFor = (tenantId: string) => (tenantId === DEFAULT_TENANT ? catalog : tenantCatalogs.get(tenantId) ?? new Map());
  const vendorNames = new Set([...KNOWN_VENDOR_NAMES, ...[...tenantCatalogs.values()].flatMap((c) => [...c.keys()])]);
  const cache = new KeyCache(config.proxy.key_cache_size);
  // Another replica revoked a key: drop it from this replica's cache too.
  store.onRevoked?.((hash, at) => cache.markRevoked(hash, at));
  const audit = new AuditSink(store, log, undefined, new AuditChain(auditKeyFrom(config.audit_key ?? config.admin_token)));
  const now = opts.now ?? Date.now;
  const budgets = new BudgetService({ store, now });
  const alertConfigs = new Map([[DEFAULT_TENANT, config.alerts], ...Object.entries(config.tenants).map(([id, t]) => [id, t.alerts] as const)]);
  const alerts = new AlertService({ configFor: (t) => alertConfigs.get(t), log, now });
  const alerting = [...alertConfigs.values()].some((a) => a && a.webhooks.length > 0);
  const keys = new KeyService({
    store,
    budgets,
    catalogFor,
    onEvent: (tenantId, type, data) => alerts.emit(tenantId, type, data),
    catalog,
    cache,
    defaultTtlSeconds: config.keys.default_ttl,
    maxTtlSeconds: config.keys.max_ttl,
    maxDailyUsdCap: config.keys.max_daily_usd_cap,
    idempotencySecret: issueIdempotencySecretFrom(config.mint_key ?? config.admin_token),
    now,
  });
  const minting = new MintingService({
    store,
    cache,
    budgets,
    catalogOf: (tenantId) => keys.catalogOf(tenantId),
    rootKey: mintRootKeyFrom(config.mint_key ?? config.admin_token),
    maxTtlSeconds: config.keys.max_ttl,
    maxDailyUsdCap: config.keys.max_daily_usd_cap,
    now,
  });
  const handler = new ProxyHandler({
    minting,
    // With webhooks configured, reservation results raise cap/budget alerts on the way back.
    store: alerting ? alertingStore(store, alerts) : store,
    catalog,
    vendorNames,
    catalogFor,
    extraCatalogs: [...tenantCatalogs.values()],
    cache,
    audit,
    log,
    maxBodyBytes: config.proxy.max_body_bytes,
    connectTimeoutMs: config.proxy.connect_timeout_ms,
    headersTimeoutMs: config.proxy.headers_timeout_ms,
    bodyTimeoutMs: config.proxy.body_timeout_ms,
    requestTimeoutMs: config.proxy.request_timeout_ms,
    requestIdleTimeoutMs: config.proxy.request_idle_timeout_ms,
    anonymousDenials: { perWindow: config.proxy.denial_audit_per_window, windowMs: config.proxy.denial_audit_window_ms },
    connectionsPerUpstream: config.proxy.connections_per_upstream,
    now,
  });
  const mcpServerNames = new Set([...Object.keys(config.mcp_servers), ...Object.values(config.tenants).flatMap((t) => Object.keys(t.mcp_servers))]);
  const mcp = new McpGateway({
    minting,
    store: alerting ? alertingStore(store, alerts) : store,
    catalogFor,
    serverNames: mcpServerNames,
    cache,
    audit,
    log,
    requestTimeoutMs: config.proxy.request_timeout_ms,
    requestIdleTimeoutMs: config.proxy.request_idle_timeout_ms,
    anonymousDenials: { perWindow: config.proxy.denial_audit_per_window, windowMs: config.proxy.denial_audit_window_ms },
    now,
  });
  const metrics = new GatewayMetrics({ audit, cache, log, storeTimer: timed.observe });
  let draining = false;
  const adminAudit = opts.adminAudit ?? openAdminAudit(config);
  // Every replica derives the same session key from the shared admin token, so a dashboard
  // session signed by one is accepted by all.
  const sessionSecret = Buffer.from(hkdfSync('sha256', config.admin_token, 'keyleash-dashboard-session', 'v1', 32));
  // Scaled out: the live tail shows every replica's calls (Redis pub/sub), loaded only then.
  let auditFeed: { subscribe(fn: (r: AuditRecord) => void): () => void; close(): Promise<void> } | undefined;
  const feedReady =
    config.store.redis_url !== undefined
      ? import('./store/postgres-redis/audit-feed.js').then((m) => {
          auditFeed = new m.RedisAuditFeed(config.store.redis_url!, config.store.redis_prefix, audit, log);
        })
      : Promise.resolve();
  const feed = {
    subscribe(fn: (r: AuditRecord) => void) {
      return auditFeed ? auditFeed.subscribe(fn) : audit.subscribe(fn);
    },
  };
  const api = buildControlApp({ auditFeed: feed, adminAudit, sessionSecret, draining: () => draining, tls: readTls(config.listen.api.tls), adminToken: config.admin_token, adminTokens: adminTokensFrom(config), keys, minting, budgets, alerts, store, audit, catalog, log, metrics, control: config.control, now });

  // The handler times a call's body itself (answering request_timeout); Node's own request
  // timeout is the backstop for what it does not see, e.g. a body held back while a key is looked up.
  const backstopMs = 2 * config.proxy.request_timeout_ms;
  const serverOptions = {
    requestTimeout: backstopMs,
    headersTimeout: Math.min(30_000, backstopMs),
    connectionsCheckingInterval: Math.min(30_000, config.proxy.request_timeout_ms),
    maxHeaderSize: 32 * 1024,
  };
  const proxyTls = readTls(config.listen.proxy.tls);
  const proxy = (proxyTls ? createHttpsServer({ ...serverOptions, ...proxyTls }) : createServer(serverOptions)) as Server;
  proxy.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // Draining: each answer closes its connection, so keep-alive clients reconnect elsewhere.
    if (draining) res.setHeader('connection', 'close');
    // Health probes for a load balancer in front of the proxy; a vault-key call never lands here.
    // /healthz: the process is alive. /readyz: it can meter calls now (the store answers).
    if (!req.headers.authorization && req.method === 'GET' && (req.url === '/healthz' || req.url === '/readyz')) {
      const send = (status: number, payload: object) => {
        const body = JSON.stringify(payload);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      if (req.url === '/healthz') return send(200, { status: 'ok' });
      if (draining) return send(503, { status: 'draining', store: store.kind });
      store.ping().then(
        () =>
          audit.accepting
            ? send(200, { status: 'ready', store: store.kind })
            : send(503, { status: 'unavailable', store: store.kind, code: 'store_unavailable', component: 'audit log' }),
        (err: unknown) =>
          send(503, {
            status: 'unavailable',
            store: store.kind,
            code: 'store_unavailable',
            component: err instanceof StoreUnavailableError ? err.component : store.kind,
          }),
      );
      return;
    }
    if (!req.headers.authorization && req.method === 'GET' && req.url === '/metrics') {
      metrics.render().then(
        ({ contentType, body }) => {
          res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
          res.end(body);
        },
        (err: unknown) => {
          log.error({ err }, 'rendering metrics failed');
          res.writeHead(500).end();
        },
      );
      return;
    }
    const mcpServer = mcp.serverOf(req.url);
    if (mcpServer !== null) return mcp.handle(req, res, mcpServer);
    handler.handle(req, res);
  });
  proxy.keepAliveTimeout = 65_000;

  // Reservations left open by a crash (or a lost settlement) are kept charged, then closed.
  const staleMs = config.proxy.stale_reservation_after * 1000;
  const reconcile = () =>
    Promise.all([
      store.reconcileStale(now() - staleMs, now()),
      // Idempotency records older than their 24 hours are ignored already; this frees the rows.
      store.purgeIdempotency(now() - IDEMPOTENCY_TTL_MS),
    ])
      .then(async ([stale]) => {
        if (!stale.length) return;
        log.warn({ reservations: stale.length }, 'settled stale reservations at their estimate');
        // A call whose process died mid-way left no audit record; the reconciler writes one, so
        // every call the vendor may have seen is in the log, charged.
        for (const r of stale) {
          const key = await store.getKeyById(r.keyId);
          audit.push({
            id: `aud_${randomUUID().replace(/-/g, '')}`,
            tenantId: key?.tenantId,
            time: r.createdAt,
            requestId: r.requestId,
            keyId: r.keyId,
            label: key?.label ?? null,
            vendor: key?.vendor ?? null,
            mode: key?.mode ?? null,
            method: r.method,
            path: r.path,
            status: 0,
            decision: 'allow',
            code: 'outcome_unknown',
            costMicros: r.estimateMicros,
            upstreamLatencyMs: null,
          });
        }
      })
      .catch((err: unknown) => log.error({ err }, 'reconciling stale reservations failed'));
  let reconcileTimer: NodeJS.Timeout | null = null;
  let drained: Promise<void> | undefined;

  return {
    config,
    store,
    catalog,
    keys,
    minting,
    budgets,
    audit,
    cache,
    api,
    proxy,
    log,
    metrics,
    async listen() {
      await feedReady;
      await reconcile();
      reconcileTimer = setInterval(reconcile, Math.min(staleMs, 60_000));
      reconcileTimer.unref();
      await api.listen({ host: config.listen.api.host, port: config.listen.api.port });
      await new Promise<void>((resolve, reject) => {
        proxy.once('error', reject);
        proxy.listen(config.listen.proxy.port, config.listen.proxy.host, () => {
          proxy.off('error', reject);
          resolve();
        });
      });
      const apiServer = api.server;
      return { apiUrl: urlOf(apiServer, config.listen.api.host, config.listen.api.tls !== undefined), proxyUrl: urlOf(proxy, config.listen.proxy.host, config.listen.proxy.tls !== undefined) };
    },
    reloadVendors(next: Config) {
      // Swapped in place: the proxy and key services hold these very maps. A tenant added or
      // removed by the new config needs a restart (its admin tokens are not reloaded either).
      const swap = (live: Map<string, Vendor>, fresh: VendorCatalog) => {
        live.clear();
        for (const [name, v] of fresh) live.set(name, v);
      };
      swap(catalog as Map<string, Vendor>, withMcpServers(buildCatalog(next), next.mcp_servers));
      for (const name of Object.keys(next.mcp_servers)) mcpServerNames.add(name);
      for (const [id, live] of tenantCatalogs) {
        const t = next.tenants[id];
        if (!t) continue;
        swap(live as Map<string, Vendor>, withMcpServers(buildCatalog({ ...next, vendors: t.vendors }), t.mcp_servers));
        for (const name of Object.keys(t.mcp_servers)) mcpServerNames.add(name);
      }
    },
    get draining() {
      return draining;
    },
    drain(opts = {}) {
      drained ??= (async () => {
        const drainMs = opts.drainMs ?? config.shutdown.drain_seconds * 1000;
        const deadlineMs = opts.deadlineMs ?? config.shutdown.deadline_seconds * 1000;
        draining = true;
        if (reconcileTimer) clearInterval(reconcileTimer);
        log.info({ drainMs, deadlineMs, inFlight: handler.inFlight }, 'draining: /readyz answers 503, still accepting');
        if (drainMs > 0) await sleep(drainMs);
        // Open MCP session streams would hold the listener open.
        await mcp.endStreams();
        // Stop accepting; idle keep-alive connections close now, busy ones after their answer.
        const proxyClosed = new Promise<void>((resolve) => (proxy.listening ? proxy.close(() => resolve()) : resolve()));
        proxy.closeIdleConnections();
        const apiClosed = api.close();
        let timer: NodeJS.Timeout | undefined;
        const finished = await Promise.race([
          handler.idle().then(() => true),
          new Promise<false>((r) => (timer = setTimeout(() => r(false), deadlineMs))),
        ]);
        clearTimeout(timer);
        if (!finished) log.warn({ inFlight: handler.inFlight }, 'drain deadline passed: cutting the calls still open');
        // Streams (and the dashboard's live tail) are cut; each cut call is settled for what was
        // delivered and audited as usual.
        proxy.closeAllConnections();
        api.server.closeAllConnections();
        await Promise.race([handler.idle(), new Promise((r) => setTimeout(r, SETTLE_AFTER_CUT_MS).unref())]);
        await Promise.all([proxyClosed, apiClosed]);
        await handler.close();
        await mcp.close();
        await audit.flush();
        metrics.close();
        await alerts.close();
        await adminAudit.close();
        await feedReady.catch(() => undefined);
        await auditFeed?.close();
        await store.close();
      })();
      return drained;
    },
    close() {
      return this.drain({ drainMs: 0 });
    },
  };
}
