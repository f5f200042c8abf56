import { createHash } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Logger } from 'pino';
import type { Mode } from '../keys/token.js';
import type { McpServerDef } from './servers.js';

// keyleash's own sessions with the upstream MCP servers, opened with the real credential. One
// per (tenant, server, mode, credential): every vault key of that scope shares it, since the
// upstream only ever sees the real credential. The agent's session ends at the gateway.

const VERSION = '0.1.0';

export class UpstreamSessions {
  private readonly sessions = new Map<string, Promise<Client>>();
  private readonly opened = new Map<string, Client>();

  constructor(private readonly log: Logger) {}

  private id(def: McpServerDef, tenantId: string, mode: Mode, secret: string): string {
    const s = createHash('sha256').update(secret).digest('hex').slice(0, 16);
    return `${tenantId}\0${def.name}\0${mode}\0${def.url.href}\0${s}`;
  }

  /** The open session for this scope, opened on first use. */
  session(def: McpServerDef, tenantId: string, mode: Mode, secret: string): Promise<Client> {
    const id = this.id(def, tenantId, mode, secret);
    let s = this.sessions.get(id);
    if (!s) {
      s = this.open(def, secret);
      this.sessions.set(id, s);
      s.then((c) => {
        if (this.sessions.get(id) === s) this.opened.set(id, c);
      }, () => undefined);
      // A session that failed to open is forgotten, so the next call tries again.
      s.catch(() => {
        if (this.sessions.get(id) === s) this.sessions.delete(id);
      });
    }
    return s;
  }

  /** Forgets a session the upstream no longer knows (it answered 404), closing it. */
  drop(def: McpServerDef, tenantId: string, mode: Mode, secret: string, client: Client): void {
    const id = this.id(def, tenantId, mode, secret);
    if (this.opened.get(id) !== client) return;
    this.opened.delete(id);
    this.sessions.delete(id);
    client.close().catch(() => undefined);
  }

  private async open(def: McpServerDef, secret: string): Promise<Client> {
    const client = new Client({ name: 'keyleash', version: VERSION }, { capabilities: {} });
    const transport = new StreamableHTTPClientTransport(def.url, {
      // Redirects are not followed (the transport's default): a credential never goes elsewhere.
      requestInit: { headers: def.authHeaders(secret) },
    });
    // Only the kind of error: its message may quote the upstream's answer, which may echo the credential.
    client.onerror = (err) => this.log.debug({ error: err.name, code: (err as { code?: unknown }).code, server: def.name }, 'upstream MCP session error');
    await client.connect(transport);
    return client;
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    this.opened.clear();
    await Promise.all(all.map((s) => s.then((c) => c.close(), () => undefined).catch(() => undefined)));
  }
}

/** True when the upstream refused the message before acting on it (its session is gone). */
export function sessionGone(err: unknown): boolean {
  return err instanceof StreamableHTTPError && err.code === 404;
}
