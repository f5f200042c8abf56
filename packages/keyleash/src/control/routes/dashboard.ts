import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { errorBody, KeyleashError } from '../../errors.js';
import { SESSION_COOKIE, type SessionStore } from '../sessions.js';
import { ROOT_PRINCIPAL, type Principal } from '../principal.js';

// The operators' dashboard: static files from the package's web/ folder (the same path from
// src/ under vitest and from dist/ under the CLI), the few browser modules it needs served from
// node_modules (no build step, no CDN), and the cookie session it logs in with.

/** The package's web/ folder: src/control/routes and dist/control/routes are both three levels down. */
export const WEB_ROOT = fileURLToPath(new URL('../../../web/', import.meta.url));

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Security headers on every control-plane answer; harmless on JSON, essential on the dashboard. */
export function addSecurityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
    reply.header('x-frame-options', 'DENY');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('x-content-type-options', 'nosniff');
    reply.header('cross-origin-opener-policy', 'same-origin');
    reply.header('cross-origin-resource-policy', 'same-origin');
    return payload;
  });
}

interface VendorFile {
  type: string;
  body: Buffer;
  etag: string;
}

/** Browser modules from node_modules, rewritten where a bare specifier would need an import map. */
function loadVendorFiles(): Map<string, VendorFile> {
  const require = createRequire(import.meta.url);
  const js = 'text/javascript; charset=utf-8';
  const stripMap = (s: string) => s.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
  const sources: [string, string, string, (s: string) => string][] = [
    ['preact.js', require.resolve('preact'), js, stripMap],
    ['hooks.js', require.resolve('preact/hooks'), js, (s) => stripMap(s).replace(/from\s*(["'])preact\1/g, 'from"./preact.js"')],
    ['htm.js', join(dirname(require.resolve('htm')), 'htm.module.js'), js, stripMap],
    ['uplot.js', require.resolve('uplot/dist/uPlot.esm.js'), js, stripMap],
    ['uplot.css', require.resolve('uplot/dist/uPlot.min.css'), 'text/css; charset=utf-8', (s) => s],
  ];
  const out = new Map<string, VendorFile>();
  for (const [name, path, type, transform] of sources) {
    const body = Buffer.from(transform(readFileSync(path, 'utf8')));
    out.set(name, { type, body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` });
  }
  return out;
}

function sessionCookie(req: FastifyRequest, value: string, maxAgeSeconds: number): string {
  const secure = req.protocol === 'https' ? '; Secure' : '';
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure}`;
}

export interface DashboardOptions {
  sessions: SessionStore;
  adminToken: string;
  /** The refusal of a wrong token (counted by the control API's failed-token throttle). */
  failedSignIn?: (req: FastifyRequest) => KeyleashError;
  /** Who a token signs in as (any admin token of the default tenant); default: `adminToken` alone. */
  signIn?: (token: string) => Principal | null;
}

export const dashboardRoutes: FastifyPluginAsync<DashboardOptions> = async (app, { sessions, adminToken, failedSignIn, signIn }) => {
  if (!existsSync(join(WEB_ROOT, 'index.html'))) throw new Error(`dashboard files not found in ${WEB_ROOT}`);
  const vendorFiles = loadVendorFiles();
  const adminHash = createHash('sha256').update(adminToken).digest();

  const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store');

  // Log in: trade the admin token (in the body, never a URL) for a session cookie.
  app.post('/dashboard/session', async (req, reply) => {
    const body = req.body as { token?: unknown } | undefined;
    const token = body && typeof body === 'object' && typeof body.token === 'string' ? body.token : '';
    const principal = signIn
      ? token.length > 0
        ? signIn(token)
        : null
      : token.length > 0 && timingSafeEqual(createHash('sha256').update(token).digest(), adminHash)
        ? ROOT_PRINCIPAL
        : null;
    noStore(reply);
    if (!principal) throw failedSignIn ? failedSignIn(req) : new KeyleashError('unauthorized');
    const session = sessions.create(principal);
    // Attributed: the admin audit trail records the sign-in under this name.
    req.principal = principal;
    req.log.info({ event: 'dashboard_login', actor: principal.name }, 'dashboard session started');
    reply.header('set-cookie', sessionCookie(req, session.id, sessions.maxAgeSeconds));
    return reply.status(201).send({ object: 'dashboard_session', csrf_token: session.csrf, expires_in: sessions.maxAgeSeconds });
  });

  // The page asks for its CSRF token after a reload (it keeps it in memory only).
  app.get('/dashboard/session', async (req, reply) => {
    noStore(reply);
    const session = await sessions.get(req);
    if (!session) return reply.status(401).send(errorBody('unauthorized', 'No dashboard session; log in.', { requestId: req.id }));
    return { object: 'dashboard_session', csrf_token: session.csrf, expires_in: sessions.maxAgeSeconds };
  });

  app.delete('/dashboard/session', async (req, reply) => {
    noStore(reply);
    const check = await sessions.check(req);
    if (!check.ok && check.reason === 'csrf') throw new KeyleashError('csrf_token_invalid');
    if (check.ok) {
      await sessions.destroy(check.session);
      req.principal = check.session.principal ?? ROOT_PRINCIPAL;
    }
    reply.header('set-cookie', sessionCookie(req, '', 0));
    return reply.status(204).send();
  });

  app.get<{ Params: { file: string } }>('/dashboard/vendor/:file', async (req, reply) => {
    const f = vendorFiles.get(req.params.file);
    if (!f) return reply.status(404).send(errorBody('not_found', undefined, { requestId: req.id }));
    reply.header('content-type', f.type).header('etag', f.etag).header('cache-control', 'no-cache');
    if (req.headers['if-none-match'] === f.etag) return reply.status(304).send();
    return reply.send(f.body);
  });

  await app.register(fastifyStatic, {
    root: WEB_ROOT,
    prefix: '/dashboard',
    redirect: true,
    decorateReply: false,
    index: ['index.html'],
    cacheControl: true,
    maxAge: 0,
    dotfiles: 'deny',
  });
};
