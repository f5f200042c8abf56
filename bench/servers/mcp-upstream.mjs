// An upstream MCP server for scenario 11, built with the official SDK (Streamable HTTP, with
// sessions): `create_refund` and `list_customers` answer at once with a small JSON text.
// Checks the bearer credential like a vendor's server. Prints `READY <url>` on stdout.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const SECRET = process.env.BENCH_MCP_SECRET ?? 'mcp_bench_secret_0123456789';
const transports = new Map();

function build() {
  const s = new McpServer({ name: 'bench-upstream', version: '1.0.0' });
  s.registerTool('create_refund', { inputSchema: { payment_intent: z.string(), amount: z.number().int() } }, async (a) => ({
    content: [{ type: 'text', text: JSON.stringify({ id: 're_bench', object: 'refund', amount: a.amount, status: 'succeeded' }) }],
  }));
  s.registerTool('list_customers', { inputSchema: { limit: z.number().int().optional() } }, async () => ({
    content: [{ type: 'text', text: JSON.stringify({ object: 'list', data: [{ id: 'cus_bench' }] }) }],
  }));
  return s;
}

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

const server = createServer(async (req, res) => {
  try {
    if (req.headers.authorization !== `Bearer ${SECRET}`) return res.writeHead(401).end();
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    const sid = req.headers['mcp-session-id'];
    let t = typeof sid === 'string' ? transports.get(sid) : undefined;
    if (!t) {
      if (sid !== undefined || !isInitializeRequest(body)) return res.writeHead(404).end();
      t = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (id) => transports.set(id, t) });
      await build().connect(t);
    }
    await t.handleRequest(req, res, body);
  } catch (e) {
    if (!res.headersSent) res.writeHead(500).end(String(e));
  }
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`READY http://127.0.0.1:${server.address().port}/mcp\n`));
process.on('SIGTERM', () => process.exit(0));
