import type { Request, RequestHandler } from 'express';
import type { IssuedKey } from './client.js';
import { begin, keysRecord, unavailableBody, type MiddlewareOptions } from './middleware.js';
import { runInScope } from './scope.js';

export type ExpressVaultKeyOptions = MiddlewareOptions<Request>;

/**
 * Express middleware: issues the request's vault key(s) before the handler, keeps them in scope
 * for `currentVaultKey()` and the client helpers, and revokes them when the response finishes or
 * the connection closes (also when the handler throws). The keys are also in `res.locals.vaultKeys`.
 */
export function keyleashExpress(options: ExpressVaultKeyOptions): RequestHandler {
  return (req, res, next) => {
    const path = new URL(req.originalUrl || req.url, 'http://x').pathname;
    begin(options, req, req.method, path).then(
      (r) => {
        if (r.kind === 'skip') return next();
        if (r.kind === 'failed-closed') {
          res.status(503).json(unavailableBody(r.error));
          return;
        }
        res.locals.vaultKeys = keysRecord(r.scope) satisfies Record<string, IssuedKey>;
        if (r.kind === 'ok') {
          res.once('finish', r.end);
          res.once('close', r.end);
          // The connection may already be gone while we were issuing.
          if (res.writableEnded || res.destroyed) void r.end();
        }
        runInScope(r.scope, () => next());
      },
      (err) => next(err),
    );
  };
}
