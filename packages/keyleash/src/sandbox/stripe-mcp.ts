import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

// A local stand-in for Stripe's MCP server, for `keyleash dev`: the tool names and argument
// shapes of Stripe's agent toolkit (which its remote server serves), answering with made-up
// objects from memory. It takes only the bearer credentials it was given, like the real one.

export interface StripeMcpSandbox {
  url: string;
  /** Every tools/call it ran: name and arguments. */
  readonly calls: Array<{ name: string; args: Record<string, unknown> }>;
  listen(port?: number): Promise<string>;
  close(): Promise<void>;
}

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;

export function createStripeMcpSandbox(opts: { secrets: string[] }): StripeMcpSandbox {
  const calls: Array<{ name: string; args: Record<string, unknown> }> = [];
  const customers: Array<{ id: string; name: string; email?: string | undefined }> = [];
  const products: Array<{ id: string; name: string }> = [];
  const prices: Array<{ id: string; product: string; unit_amount: number; currency: string }> = [];

  function build(): McpServer {
    const s = new McpServer({ name: 'stripe-sandbox', version: '1.0.0' });
    const answer = (name: string, args: Record<string, unknown>, object: unknown) => {
      calls.push({ name, args });
      return { content: [{ type: 'text' as const, text: JSON.stringify(object) }] };
    };
    const limit = z.number().int().min(1).max(100).optional();
    s.registerTool('create_customer', { description: 'Create a customer in Stripe.', inputSchema: { name: z.string(), email: z.string().optional() } }, async (a) => {
      const c = { id: id('cus'), name: a.name, email: a.email };
      customers.push(c);
      return answer('create_customer', a, { object: 'customer', ...c });
    });
    s.registerTool('list_customers', { description: 'List customers.', inputSchema: { limit, email: z.string().optional() } }, async (a) =>
      answer('list_customers', a, { object: 'list', data: customers.filter((c) => !a.email || c.email === a.email).slice(0, a.limit ?? 10) }),
    );
    s.registerTool('create_product', { description: 'Create a product.', inputSchema: { name: z.string(), description: z.string().optional() } }, async (a) => {
      const p = { id: id('prod'), name: a.name };
      products.push(p);
      return answer('create_product', a, { object: 'product', ...p });
    });
    s.registerTool('list_products', { description: 'List products.', inputSchema: { limit } }, async (a) => answer('list_products', a, { object: 'list', data: products.slice(0, a.limit ?? 10) }));
    s.registerTool(
      'create_price',
      { description: 'Create a price for a product.', inputSchema: { product: z.string(), unit_amount: z.number().int(), currency: z.string() } },
      async (a) => {
        const p = { id: id('price'), product: a.product, unit_amount: a.unit_amount, currency: a.currency };
        prices.push(p);
        return answer('create_price', a, { object: 'price', ...p });
      },
    );
    s.registerTool('list_prices', { description: 'List prices.', inputSchema: { product: z.string().optional(), limit } }, async (a) =>
      answer('list_prices', a, { object: 'list', data: prices.filter((p) => !a.product || p.product === a.product).slice(0, a.limit ?? 10) }),
    );
    s.registerTool(
      'create_payment_link',
      { description: 'Create a payment link for a price.', inputSchema: { price: z.string(), quantity: z.number().int(), redirect_url: z.string().optional() } },
      async (a) => {
        const link = id('plink');
        return answer('create_payment_link', a, { object: 'payment_link', id: link, url: `https://buy.stripe.com/test_${link}` });
      },
    );
    s.registerTool(
      'create_refund',
      { description: 'Refund a payment intent, in full or by amount (minor units).', inputSchema: { payment_intent: z.string(), amount: z.number().int().optional(), reason: z.string().optional() } },
      async (a) => answer('create_refund', a, { object: 'refund', id: id('re'), payment_intent: a.payment_intent, amount: a.amount ?? 1000, status: 'succeeded' }),
    );
    s.registerTool('list_payment_intents', { description: 'List payment intents.', inputSchema: { customer: z.string().optional(), limit } }, async (a) =>
      answer('list_payment_intents', a, { object: 'list', data: [] }),
    );
    s.registerTool('retrieve_balance', { description: 'Retrieve the account balance.', inputSchema: {} }, async (a) =>
      answer('retrieve_balance', a, { object: 'balance', available: [{ amount: 100_000, currency: 'usd' }], pending: [] }),
    );
    s.registerTool(
      'create_invoice',
      { description: 'Create a draft invoice for a customer.', inputSchema: { customer: z.string(), days_until_due: z.number().int().optional() } },
      async (a) => answer('create_invoice', a, { object: 'invoice', id: id('in'), customer: a.customer, status: 'draft' }),
    );
    s.registerTool(
      'create_invoice_item',
      { description: 'Add a price to an invoice.', inputSchema: { customer: z.string(), price: z.string(), invoice: z.string() } },
      async (a) => answer('create_invoice_item', a, { object: 'invoiceitem', id: id('ii'), invoice: a.invoice }),
    );
    s.registerTool('finalize_invoice', { description: 'Finalize an invoice.', inputSchema: { invoice: z.string() } }, async (a) =>
      answer('finalize_invoice', a, { object: 'invoice', id: a.invoice, status: 'open' }),
    );
    s.registerTool('list_invoices', { description: 'List invoices.', inputSchema: { customer: z.string().optional(), limit } }, async (a) => answer('list_invoices', a, { object: 'list', data: [] }));
    s.registerTool('list_subscriptions', { description: 'List subscriptions.', inputSchema: { customer: z.string().optional(), limit } }, async (a) =>
      answer('list_subscriptions', a, { object: 'list', data: [] }),
    );
    s.registerTool('cancel_subscription', { description: 'Cancel a subscription.', inputSchema: { subscription: z.string() } }, async (a) =>
      answer('cancel_subscription', a, { object: 'subscription', id: a.subscription, status: 'canceled' }),
    );
    s.registerTool('search_stripe_documentation', { description: 'Search the Stripe documentation.', inputSchema: { question: z.string() } }, async (a) =>
      answer('search_stripe_documentation', a, { results: [{ title: 'Refunds', url: 'https://docs.stripe.com/refunds' }] }),
    );
    return s;
  }

  async function readJson(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    return text ? JSON.parse(text) : undefined;
  }

  // Stateless: each POST gets a fresh server and transport, as the SDK recommends for that mode.
  const http: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      if (!opts.secrets.some((s) => req.headers.authorization === `Bearer ${s}`)) {
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'Invalid API Key provided.' } }));
        return;
      }
      if (req.method !== 'POST') {
        res.writeHead(405, { allow: 'POST' }).end();
        return;
      }
      const body = await readJson(req);
      const server = build();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      res.on('close', () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
    })().catch(() => {
      if (!res.headersSent) res.writeHead(400).end();
    });
  });

  const sandbox: StripeMcpSandbox = {
    url: '',
    calls,
    async listen(port = 0) {
      await new Promise<void>((r) => http.listen(port, '127.0.0.1', r));
      sandbox.url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
      return sandbox.url;
    },
    async close() {
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
    },
  };
  return sandbox;
}
