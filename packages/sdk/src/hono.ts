import type { Context, MiddlewareHandler } from 'hono';
import type { IssuedKey } from './client.js';
import { begin, keysRecord, unavailableBody, type MiddlewareOptions } from './middleware.js';
import { runInScope } from './scope.js';

export type HonoVaultKeyOptions = MiddlewareOptions<Context>;

interface NodeOutgoing {
  once(event: 'finish' | 'close', fn: () => void): unknown;
  writableEnded: boolean;
  destroyed: boolean;
}

/**
 * Hono middleware: `app.use('*', keyleashHono({...}))`. Issues the request's vault key(s), runs
 * the handler with them in scope (`c.get('vaultKeys')` too), and revokes them when the response
 * is done: on @hono/node-server when the Node response finishes or closes (so streamed bodies
 * keep their key), elsewhere as soon as the handler has returned.
 */
export function keyleashHono(options: HonoVaultKeyOptions): MiddlewareHandler<{ Variables: { vaultKeys: Record<string, IssuedKey> } }> {
  return async (c, next) => {
    const r = await begin(options, c, c.req.method, c.req.path);
    if (r.kind === 'skip') return next();
    if (r.kind === 'failed-closed') return c.json(unavailableBody(r.error), 503);
    c.set('vaultKeys', keysRecord(r.scope));
    const outgoing = (c.env as { outgoing?: NodeOutgoing } | undefined)?.outgoing;
    const onNode = r.kind === 'ok' && outgoing !== undefined && typeof outgoing.once === 'function';
    if (onNode && r.kind === 'ok') {
      outgoing.once('finish', r.end);
      outgoing.once('close', r.end);
      if (outgoing.writableEnded || outgoing.destroyed) void r.end();
    }
    try {
      await runInScope(r.scope, () => next());
    } finally {
      if (!onNode && r.kind === 'ok') await r.end();
    }
  };
}
