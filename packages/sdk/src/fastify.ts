import type { FastifyInstance, FastifyPluginCallback, FastifyRequest } from 'fastify';
import type { IssuedKey } from './client.js';
import { begin, keysRecord, unavailableBody, type MiddlewareOptions } from './middleware.js';
import { runInScope, type VaultKeyScope } from './scope.js';

export type FastifyVaultKeyOptions = MiddlewareOptions<FastifyRequest>;

const SCOPE = Symbol('keyleash.scope');

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's vault keys by name (empty when skipped or failed open). */
    vaultKeys: Record<string, IssuedKey>;
  }
}

/**
 * Fastify plugin (not encapsulated, so it covers every route): `app.register(keyleashFastify({...}))`.
 * Issues the request's vault key(s) in `onRequest`, keeps them in scope for the handler, and
 * revokes them when the response finishes or the connection closes.
 */
export function keyleashFastify(options: FastifyVaultKeyOptions): FastifyPluginCallback {
  const plugin: FastifyPluginCallback = (fastify: FastifyInstance, _opts, done) => {
    fastify.decorateRequest('vaultKeys', null as unknown as Record<string, IssuedKey>);
    fastify.addHook('onRequest', (req, reply, hookDone) => {
      const path = req.url.split('?')[0] ?? '/';
      req.vaultKeys = {};
      begin(options, req, req.method, path).then(
        (r) => {
          if (r.kind === 'skip') return hookDone();
          if (r.kind === 'failed-closed') {
            void reply.code(503).send(unavailableBody(r.error));
            return;
          }
          if (r.kind === 'ok') {
            reply.raw.once('finish', r.end);
            reply.raw.once('close', r.end);
            if (reply.raw.writableEnded || reply.raw.destroyed) void r.end();
          }
          req.vaultKeys = keysRecord(r.scope);
          (req as unknown as Record<symbol, VaultKeyScope>)[SCOPE] = r.scope;
          runInScope(r.scope, () => hookDone());
        },
        (err: Error) => hookDone(err),
      );
    });
    // Body parsing can lose the async context; re-enter it right before the handler.
    fastify.addHook('preHandler', (req, _reply, hookDone) => {
      const scope = (req as unknown as Record<symbol, VaultKeyScope | undefined>)[SCOPE];
      if (scope) runInScope(scope, () => hookDone());
      else hookDone();
    });
    done();
  };
  (plugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
  (plugin as unknown as Record<symbol, string>)[Symbol.for('fastify.display-name')] = 'keyleash';
  return plugin;
}
