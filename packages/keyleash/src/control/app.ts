import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { RequestListener, Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/sink.js';
import { errorBody, KeyleashError } from '../errors.js';
import type { KeyService } from '../keys/service.js';
import type { BudgetService } from '../budgets/service.js';
import { DEFAULT_TENANT, StoreUnavailableError, type AuditRecord, type Store } from '../store/store.js';
import type { VendorCatalog } from '../vendors/vendor.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { auditRoutes } from './routes/audit.js';
import { auditStreamRoutes } from './routes/audit-stream.js';
import { budgetRoutes } from './routes/budgets.js';
import { alertRoutes } from './routes/alerts.js';
import type { AlertService } from '../alerts/service.js';
import { bulkRevokeRoutes } from './routes/bulk-revoke.js';
import { addSecurityHeaders, dashboardRoutes } from './routes/dashboard.js';
import { healthRoutes } from './routes/health.js';
import { keyRoutes } from './routes/keys.js';
import { mintingKeyRoutes } from './routes/minting-keys.js';
import type { MintingService } from '../keys/minting.js';
import { metricsRoutes } from './routes/metrics.js';
import { openapiRoutes } from './routes/openapi.js';
import { statsRoutes } from './routes/stats.js';
import { vendorRoutes } from './routes/vendors.js';
import { SessionStore, type SessionRevocations } from './sessions.js';
import { newAdminAuditId, type AdminAuditLog } from './admin-audit.js';
import { adminAuditRoutes } from './routes/admin-audit.js';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
import { AdminTokens, ROOT_PRINCIPAL, type Principal } from './principal.js';
import { targetProblem } from './target.js';
import { TokenBuckets } from './throttle.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling: set by the auth hook on every route not in PUBLIC_ROUTES. */
    principal: Principal;
  }
}

/**
 * The only routes served without an admin token or a dashboard session, by the route the router
 * chose (never by the raw URL). Probes and the API description carry no keys, labels or secrets;
 * the dashboard's files are the same for everyone; its session routes check the session themselves.
 * Everything else, unmatched requests included, must authenticate.
 */
export const PUBLIC_ROUTES: ReadonlySet<string> = new Set([
  '/healthz',
  '/readyz',
  '/openapi.json',
  '/metrics',
  '/dashboard',
  '/dashboard/*',
  '/dashboard/session',
  '/dashboard/vendor/:file',
]);

/** Routes that create credentials, under the per-token issuance quota. */
/**
 * Routes whose handler reads a JSON body; an empty one there is 400 `invalid_json`. Every other
 * route ignores its body, so an empty one is accepted whatever Content-Type came with it: many
 * HTTP wrappers send `Content-Type: application/json` on every call, DELETE included.
 */
const BODY_ROUTES = new Set([
  'POST /v1/keys',
  'POST /v1/keys/revoke',
  'POST /v1/budgets',
  'PATCH /v1/budgets/:id',
  'POST /v1/minting_keys',
  'POST /dashboard/session',
]);
const ISSUE_ROUTES = new Set(['POST /v1/keys', 'POST /v1/minting_keys', 'POST /v1/minting_keys/:id/rotate']);

/** The routes an admin token of a tenant other than "default" may use: all scoped to its tenant. */
const TENANT_ROUTES = new Set([
  'POST /v1/keys',
  'GET /v1/keys',
  'GET /v1/keys/:id',
  'DELETE /v1/keys/:id',
  'POST /v1/keys/revoke',
  'GET /v1/audit',
  'GET /v1/vendors',
  'POST /v1/budgets',
  'GET /v1/budgets',
  'GET /v1/budgets/:id',
  'PATCH /v1/budgets/:id',
  'DELETE /v1/budgets/:id',
  'GET /v1/budgets/:id/spend',
  'POST /v1/budgets/:id/freeze',
  'POST /v1/budgets/:id/unfreeze',
  'GET /v1/alerts/deliveries',
  'POST /v1/minting_keys',
  'GET /v1/minting_keys',
  'GET /v1/minting_keys/:id',
  'POST /v1/minting_keys/:id/rotate',
  'DELETE /v1/minting_keys/:id',
]);

export interface ControlAppOptions {
  /** PEM certificate and key: serve HTTPS. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
  adminToken: string;
  /** Every admin token with its tenant and policy; default: `adminToken` alone, unrestricted. */
  adminTokens?: AdminTokens;
  keys: KeyService;
  /** Serves /v1/budgets when given. */
  budgets?: BudgetService;
  /** Serves /v1/alerts/deliveries when given. */
  alerts?: AlertService;
  /** Serves /v1/minting_keys when given. */
  minting?: MintingService;
  store: Store;
  audit: AuditSink;
  catalog: VendorCatalog;
  log: Logger;
  /** Serves GET /metrics when given. */
  metrics?: GatewayMetrics;
  /** The dashboard and its cookie sessions; on unless false. */
  dashboard?: boolean | { sessions: SessionStore };
  /** The config's `control` section: issuance quota and failed-token throttle. */
  control?: Partial<ControlLimits>;
  /** Where every control-plane change is recorded, with who made it (README "Operator identity"); also holds signed-out dashboard sessions. */
  adminAudit?: AdminAuditLog & SessionRevocations;
  /** The live tail's source when replicas share the store: every replica's audit records. */
  auditFeed?: { subscribe(fn: (r: AuditRecord) => void): () => void };
  /** Signs dashboard sessions; the same on every replica so any of them accepts a session. */
  sessionSecret?: Buffer;
  /** True while the gateway drains before stopping: /readyz answers 503. */
  draining?: () => boolean;
  now?: () => number;
}

export interface ControlLimits {
  issue_rate_per_second: number;
  issue_burst: number;
  auth_failure_burst: number;
  auth_failures_per_second: number;
}

const DEFAULT_LIMITS: ControlLimits = { issue_rate_per_second: 200, issue_burst: 500, auth_failure_burst: 100, auth_failures_per_second: 1 };

/** 429 rate_limited; the error handler turns `retry_after` into the Retry-After header too. */
function rateLimited(retryAfter: number, message: string): KeyleashError {
  return new KeyleashError('rate_limited', message, { extra: { retry_after: retryAfter } });
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** The admin API. Builds the app and never listens: callers (CLI, tests) decide where. */
export function buildControlApp(o: ControlAppOptions): FastifyInstance {
  const app = Fastify({
    ...(o.tls ? { serverFactory: (handler: RequestListener) => createHttpsServer(o.tls!, handler) as unknown as Server } : {}),
    loggerInstance: o.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    genReqId: () => `req_${randomUUID().replace(/-/g, '')}`,
    routerOptions: { ignoreTrailingSlash: false },
    // A path the router cannot decode (`%zz`, a lone `%C3`): the same 400 as any other bad path.
    frameworkErrors: (_err, req, reply: FastifyReply) => {
      void reply.status(400).send(errorBody('invalid_request', 'path: is not a valid URL path', { requestId: req.id, param: 'path' }));
    },
  });

  const takesBody = (req: FastifyRequest) => BODY_ROUTES.has(`${req.method} ${req.routeOptions.url ?? ''}`);
  // A body declared empty needs no parser at all (even for a Content-Type no parser knows).
  app.addHook('onRequest', async (req) => {
    const h = req.headers;
    if (h['content-type'] !== undefined && h['transfer-encoding'] === undefined && h['content-length'] === '0' && !takesBody(req)) {
      delete h['content-type'];
    }
  });
  // A chunked body that turns out empty: the same, decided once it has been read.
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '' && !takesBody(req)) return done(null, undefined);
    return defaultJson(req, body as string, done);
  });
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => {
    if ((body as Buffer).length === 0 && !takesBody(req)) return done(null, undefined);
    const err = new Error('Unsupported Media Type') as FastifyError;
    (err as { code: string }).code = 'FST_ERR_CTP_INVALID_MEDIA_TYPE';
    return done(err, undefined);
  });

  const tokens = o.adminTokens ?? new AdminTokens([{ token: o.adminToken, principal: ROOT_PRINCIPAL }]);
  app.decorateRequest('principal', null as unknown as Principal);
  const adminHash = sha256(o.adminToken);
  const isAdmin = (header: string | undefined): boolean => {
    if (!header) return false;
    const m = /^bearer (.+)$/i.exec(header);
    // Hash both sides so the comparison is constant-time whatever the lengths.
    return m !== null && timingSafeEqual(sha256(m[1]!), adminHash);
  };

  const sessions =
    o.dashboard === false
      ? null
      : typeof o.dashboard === 'object'
        ? o.dashboard.sessions
        : new SessionStore({
            ...(o.now ? { now: o.now } : {}),
            ...(o.sessionSecret ? { secret: o.sessionSecret } : {}),
            ...(o.adminAudit ? { revocations: o.adminAudit } : {}),
            principalOf: (tenantId, name) => tokens.byName(tenantId, name),
          });
  // A session is signed in with the admin token, so it acts as that token, under its policy.
  const sessionPrincipal = tokens.find(`Bearer ${o.adminToken}`) ?? ROOT_PRINCIPAL;
  /** Requests authenticated by a dashboard session rather than a bearer token. */
  const viaSession = new WeakSet<FastifyRequest>();

  const limits = { ...DEFAULT_LIMITS, ...o.control };
  const now = o.now ?? Date.now;
  const failures = new TokenBuckets<string>(limits.auth_failure_burst, limits.auth_failures_per_second);
  const issuance = new TokenBuckets<Principal>(limits.issue_burst, limits.issue_rate_per_second, 10_000);
  /**
   * A wrong admin token from this address: 401, or 429 once its failures pass the burst. Only
   * failures are counted, so a valid token from the same address is never refused for them.
   */
  const failedToken = (req: FastifyRequest): KeyleashError => {
    const wait = failures.take(req.ip, now());
    if (wait === 0) return new KeyleashError('unauthorized');
    // Debug only: under a guessing flood one line per refusal would be the flood again (429s are in the metrics).
    req.log.debug({ event: 'admin_auth_throttled' }, 'failed admin tokens throttled');
    return rateLimited(wait, 'Too many failed admin tokens from this address; retry later.');
  };

  const authenticate = async (req: FastifyRequest): Promise<Principal> => {
    const principal = tokens.find(req.headers.authorization);
    if (principal) return principal;
    if (isAdmin(req.headers.authorization)) return ROOT_PRINCIPAL;
    // The dashboard's cookie session, only when no Authorization header is sent at all: a wrong
    // bearer token is never rescued by a cookie.
    if (req.headers.authorization === undefined) {
      if (sessions) {
        const check = await sessions.check(req);
        if (check.ok) {
          viaSession.add(req);
          return check.session.principal ?? sessionPrincipal;
        }
        if (check.reason === 'csrf') throw new KeyleashError('csrf_token_invalid');
      }
      throw new KeyleashError('unauthorized');
    }
    throw failedToken(req);
  };

  app.addHook('onRequest', async (req) => {
    // Before the route is trusted for anything: one spelling per path (see target.ts).
    const problem = targetProblem(req.url);
    if (problem) throw new KeyleashError('invalid_request', `path: ${problem}`, { param: 'path' });
    // Decided on the route the router chose, so no spelling of a URL can reach a handler unchecked.
    const route = req.routeOptions.url;
    if (route !== undefined && PUBLIC_ROUTES.has(route)) return;
    req.principal = await authenticate(req);
    const key = `${req.method} ${route ?? ''}`;
    // Another tenant sees only the routes that are scoped to a tenant; the rest do not exist for it.
    if (req.principal.tenantId !== DEFAULT_TENANT && !TENANT_ROUTES.has(key)) {
      throw new KeyleashError('not_found', `No route ${req.method} ${req.url.split('?')[0]}.`);
    }
    if (ISSUE_ROUTES.has(key)) {
      const wait = issuance.take(req.principal, now());
      if (wait > 0) throw rateLimited(wait, 'This admin token is creating keys faster than control.issue_rate_per_second allows; retry later.');
    }
  });

  addSecurityHeaders(app);
  // The admin audit trail: each change, written before its answer is sent, so a change the
  // caller saw succeed is on record.
  app.addHook('onSend', async (req, reply, payload) => {
    const route = req.routeOptions.url;
    if (!o.adminAudit || SAFE_METHODS.has(req.method) || route === undefined || !req.principal) return payload;
    if (!route.startsWith('/v1/') && route !== '/dashboard/session') return payload;
    const body = (req.body && typeof req.body === 'object' ? req.body : {}) as Record<string, unknown>;
    let answer: Record<string, unknown> = {};
    if (typeof payload === 'string' && reply.statusCode < 400) {
      try {
        answer = JSON.parse(payload) as Record<string, unknown>;
      } catch {
        /* not JSON */
      }
    }
    const params = (req.params ?? {}) as Record<string, string>;
    const str = (v: unknown) => (typeof v === 'string' ? v.slice(0, 200) : null);
    const target = str(params.id) ?? (route === '/dashboard/session' ? null : str(answer.id) ?? str(body.id));
    let detail: Record<string, unknown> | null = null;
    if (route === '/v1/keys/revoke') {
      // The kill switch: its filter and what it did. Only these known, secret-free fields.
      const filter = Object.fromEntries(['label_prefix', 'metadata', 'vendor', 'mode', 'budget', 'all', 'dry_run'].filter((k) => body[k] !== undefined).map((k) => [k, body[k]]));
      detail = { filter, matched: answer.matched ?? null, revoked: answer.revoked ?? null };
    }
    try {
      await o.adminAudit.append({
        id: newAdminAuditId(),
        time: now(),
        tenantId: req.principal.tenantId,
        actor: req.principal.name,
        via: viaSession.has(req) || route === '/dashboard/session' ? 'dashboard' : 'token',
        ip: req.ip,
        requestId: req.id,
        method: req.method,
        route,
        target,
        status: reply.statusCode,
        detail,
      });
    } catch (err) {
      req.log.error({ err, route, actor: req.principal.name }, 'writing the admin audit trail failed');
    }
    return payload;
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    o.metrics?.apiRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    // Paths only: query strings stay out of the logs. The actor is the admin token's name.
    const entry = { method: req.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100, actor: req.principal?.name };
    if (route.startsWith('/v1/') || route === '/dashboard/session') req.log.info(entry, 'control API request');
    else req.log.debug(entry, 'control API request');
  });

  app.setErrorHandler((err: FastifyError | KeyleashError, req, reply) => {
    if (err instanceof KeyleashError) {
      if (typeof err.extra?.retry_after === 'number') reply.header('retry-after', String(err.extra.retry_after));
      return reply
        .status(err.status)
        .send(errorBody(err.code, err.message, { requestId: req.id, param: err.param, extra: err.extra }));
    }
    if (err instanceof StoreUnavailableError) {
      req.log.error({ err }, 'store unavailable');
      return reply.status(503).send(
        errorBody('store_unavailable', `${err.message}; try again shortly.`, { requestId: req.id, extra: { component: err.component } }),
      );
    }
    const code = (err as FastifyError).code ?? '';
    if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.status(413).send(errorBody('body_too_large', undefined, { requestId: req.id }));
    if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply.status(415).send(errorBody('unsupported_media_type', undefined, { requestId: req.id }));
    }
    if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err instanceof SyntaxError || code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
      return reply.status(400).send(errorBody('invalid_json', undefined, { requestId: req.id, param: 'body' }));
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.status(400).send(errorBody('invalid_request', err.message, { requestId: req.id }));
    }
    req.log.error({ err }, 'control API error');
    return reply.status(500).send(errorBody('internal_error', undefined, { requestId: req.id }));
  });

  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send(errorBody('not_found', `No route ${req.method} ${req.url.split('?')[0]}.`, { requestId: req.id }));
  });

  app.register(healthRoutes, { store: o.store, audit: o.audit, draining: o.draining ?? (() => false) });
  app.register(openapiRoutes);
  app.register(keyRoutes, { keys: o.keys });
  app.register(auditRoutes, { store: o.store });
  app.register(bulkRevokeRoutes, { keys: o.keys });
  if (o.budgets) app.register(budgetRoutes, { budgets: o.budgets });
  if (o.alerts) app.register(alertRoutes, { alerts: o.alerts });
  if (o.minting) app.register(mintingKeyRoutes, { minting: o.minting });
  app.register(auditStreamRoutes, { store: o.store, audit: o.audit, ...(o.auditFeed ? { feed: o.auditFeed } : {}) });
  app.register(statsRoutes, { store: o.store, audit: o.audit, keys: o.keys, ...(o.now ? { now: o.now } : {}) });
  app.register(vendorRoutes, { catalog: o.catalog, catalogOf: (t: string) => o.keys.catalogOf(t) });
  if (o.metrics) app.register(metricsRoutes, { metrics: o.metrics });
  if (o.adminAudit) app.register(adminAuditRoutes, { log: o.adminAudit });
  if (sessions) {
    app.register(dashboardRoutes, {
      sessions,
      adminToken: o.adminToken,
      failedSignIn: failedToken,
      // Any admin token of the default tenant signs in as itself, so dashboard changes are attributed.
      signIn: (token) => {
        const p = tokens.find(`Bearer ${token}`) ?? (isAdmin(`Bearer ${token}`) ? ROOT_PRINCIPAL : null);
        return p && p.tenantId === DEFAULT_TENANT ? p : null;
      },
    });
  }
  return app;
}
