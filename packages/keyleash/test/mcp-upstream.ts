import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

// A local upstream MCP server built with the official SDK (McpServer over Streamable HTTP, with
// sessions), standing in for a vendor's MCP server. It records every tools/call it receives and
// the credential each request carried; it answers only requests with the expected credential.

export const UPSTREAM_TEST_SECRET = 'mcp_test_upstream_secret_7f3a9c1e5b';
export const UPSTREAM_LIVE_SECRET = 'mcp_live_upstream_secret_2d8e4b6a0c';

export interface UpstreamCall {
  name: string;
  args: Record<string, unknown>;
  authorization: string | undefined;
}

export interface McpUpstream {
  url: string;
  calls: UpstreamCall[];
  /** Every HTTP request's Authorization header, in order. */
  authorizations: Array<string | undefined>;
  /** Requests refused for a wrong credential. */
  unauthorized: number;
  /** Resolves the next time a call to `tool` arrives. */
  arrived(tool: string): Promise<void>;
  /** Lets every held `slow_report` / `hang` call finish. */
  release(): void;
  /** Forgets every session (the next message on an old one gets 404). */
  dropSessions(): void;
  close(): Promise<void>;
}

export async function startMcpUpstream(opts: { secrets?: string[] } = {}): Promise<McpUpstream> {
  const secrets = opts.secrets ?? [UPSTREAM_TEST_SECRET, UPSTREAM_LIVE_SECRET];
  const calls: UpstreamCall[] = [];
  const authorizations: Array<string | undefined> = [];
  const waiters: Array<{ tool: string; resolve: () => void }> = [];
  let gate!: () => void;
  let gateOpen = new Promise<void>((r) => (gate = r));
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const state = { unauthorized: 0 };

  function build(authorization: () => string | undefined): McpServer {
    const s = new McpServer({ name: 'upstream-stub', version: '1.0.0' });
    const note = (name: string, args: Record<string, unknown>) => {
      calls.push({ name, args, authorization: authorization() });
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.tool === name) waiters.splice(i, 1)[0]!.resolve();
      }
    };
    s.registerTool('list_customers', { description: 'Lists customers.', inputSchema: { limit: z.number().int().optional() } }, async (args) => {
      note('list_customers', args);
      return { content: [{ type: 'text', text: JSON.stringify({ data: [{ id: 'cus_1' }] }) }] };
    });
    s.registerTool(
      'create_refund',
      { description: 'Refunds a payment.', inputSchema: { payment_intent: z.string(), amount: z.number().int().optional(), currency: z.string().optional() } },
      async (args) => {
        note('create_refund', args);
        return { content: [{ type: 'text', text: JSON.stringify({ id: 're_1', amount: args.amount }) }] };
      },
    );
    s.registerTool(
      'create_invoice_charge',
      { description: 'Charges amount × quantity.', inputSchema: { amount: z.number().int(), currency: z.string(), quantity: z.number().int().optional() } },
      async (args) => {
        note('create_invoice_charge', args);
        return { content: [{ type: 'text', text: 'charged' }] };
      },
    );
    s.registerTool('delete_account', { description: 'Deletes the account.', inputSchema: {} }, async (args) => {
      note('delete_account', args);
      return { content: [{ type: 'text', text: 'deleted' }] };
    });
    s.registerTool('mystery_tool', { description: 'No cost rule covers it.', inputSchema: {} }, async (args) => {
      note('mystery_tool', args);
      return { content: [{ type: 'text', text: 'done' }] };
    });
    s.registerTool('debug_echo', { description: 'Echoes the credential it was called with (a careless server).', inputSchema: {} }, async (args) => {
      note('debug_echo', args);
      const auth = authorization() ?? '';
      return { content: [{ type: 'text', text: `called with ${auth}; key=${auth.replace(/^Bearer /, '')}` }] };
    });
    s.registerTool('failing_refund', { description: 'Reports a failure.', inputSchema: { amount: z.number().int() } }, async (args) => {
      note('failing_refund', args);
      return { isError: true, content: [{ type: 'text', text: 'card_declined' }] };
    });
    s.registerTool(
      'slow_report',
      { description: 'Reports progress, waits for release, then answers at length.', inputSchema: { size: z.number().int() } },
      async (args, extra) => {
        note('slow_report', args);
        const token = extra._meta?.progressToken;
        if (token !== undefined) {
          await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: 1, total: 2, message: 'half way' } });
        }
        await gateOpen;
        return { content: [{ type: 'text', text: 'x'.repeat(args.size) }] };
      },
    );
    s.registerTool('hang', { description: 'Holds the call until released.', inputSchema: { amount: z.number().int() } }, async (args) => {
      note('hang', args);
      await gateOpen;
      return { content: [{ type: 'text', text: 'done' }] };
    });
    return s;
  }

  async function readJson(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    return text ? JSON.parse(text) : undefined;
  }

  const http: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const auth = req.headers.authorization;
      authorizations.push(auth);
      if (!secrets.some((s) => auth === `Bearer ${s}`)) {
        state.unauthorized++;
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'bad credential' }));
        return;
      }
      const sessionId = req.headers['mcp-session-id'];
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      // A server that refuses a call with a JSON-RPC error of its own (the SDK's McpServer would
      // answer with a tool error instead).
      const m = body as { id?: number | string; method?: string; params?: { name?: string; arguments?: Record<string, unknown> } } | undefined;
      if (m?.method === 'tools/call' && m.params?.name === 'strict_refund') {
        calls.push({ name: 'strict_refund', args: m.params.arguments ?? {}, authorization: auth });
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, error: { code: -32602, message: 'amount must be positive' } }));
        return;
      }
      let transport = typeof sessionId === 'string' ? transports.get(sessionId) : undefined;
      if (!transport) {
        if (typeof sessionId === 'string' || !isInitializeRequest(body)) {
          res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
          return;
        }
        const t: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => void transports.set(id, t),
        });
        transport = t;
        let current: string | undefined;
        const server = build(() => current);
        await server.connect(t);
        const handle = t.handleRequest.bind(t);
        // Each request's credential, seen by the tool that runs for it.
        t.handleRequest = (r, s, b) => {
          current = r.headers.authorization;
          return handle(r, s, b);
        };
      }
      await transport.handleRequest(req, res, body);
    })().catch((err) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const { port } = http.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/mcp`,
    calls,
    authorizations,
    get unauthorized() {
      return state.unauthorized;
    },
    arrived(tool) {
      return new Promise((resolve) => waiters.push({ tool, resolve }));
    },
    release() {
      gate();
      gateOpen = new Promise<void>((r) => (gate = r));
    },
    dropSessions() {
      transports.clear();
    },
    async close() {
      gate();
      for (const t of transports.values()) await t.close().catch(() => undefined);
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
    },
  };
}
