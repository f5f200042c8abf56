import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeMcpSandbox, type StripeMcpSandbox } from '../src/sandbox/stripe-mcp.js';
import { STRIPE_TEST_SECRET, startGateway, type TestGateway } from './harness.js';

// The shipped Stripe preset against the Stripe MCP sandbox that `keyleash dev` runs.

describe('the Stripe MCP preset', () => {
  let t: TestGateway;
  let sandbox: StripeMcpSandbox;

  beforeAll(async () => {
    sandbox = createStripeMcpSandbox({ secrets: [STRIPE_TEST_SECRET] });
    const url = await sandbox.listen();
    t = await startGateway(() => ({
      log_level: 'warn',
      mcp_servers: {
        stripe: { url, preset: 'stripe', test_secret: STRIPE_TEST_SECRET },
        // The same server with one preset rule overridden in config.
        stripe_links: { url, preset: 'stripe', test_secret: STRIPE_TEST_SECRET, tools: { create_payment_link: 'free' } },
      },
    }));
  });
  afterAll(async () => {
    await t?.close();
    await sandbox?.close();
  });

  async function session(server: string, cap: number | null): Promise<Client> {
    const key = await t.issue({ vendor: `mcp:${server}`, allowed_tools: ['*'], daily_usd_cap: cap, expires_in: '5m' });
    const client = new Client({ name: 'agent', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${t.proxyUrl}/mcp/${server}`), { requestInit: { headers: { authorization: `Bearer ${key.token}` } } }));
    return client;
  }
  const code = (r: unknown) => ((r as CallToolResult).structuredContent as { code?: string } | undefined)?.code;

  it("prices Stripe's tools: refunds by amount, records free, linked amounts refused on a capped key", async () => {
    const c = await session('stripe', 20);
    try {
      const names = (await c.listTools()).tools.map((x) => x.name);
      expect(names).toEqual(expect.arrayContaining(['create_refund', 'create_payment_link', 'list_customers', 'retrieve_balance']));
      expect((await c.callTool({ name: 'create_customer', arguments: { name: 'Ada' } })).isError).toBeFalsy();
      expect((await c.callTool({ name: 'list_customers', arguments: {} })).isError).toBeFalsy();
      expect((await c.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi_1', amount: 1500 } })).isError).toBeFalsy();
      expect(code(await c.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi_1' } }))).toBe('cost_unknown');
      expect(code(await c.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi_1', amount: 600 } }))).toBe('cap_exhausted');
      expect(code(await c.callTool({ name: 'create_payment_link', arguments: { price: 'price_1', quantity: 2 } }))).toBe('cost_unknown');
    } finally {
      await c.close();
    }
    expect(sandbox.calls.map((x) => x.name)).toEqual(['create_customer', 'list_customers', 'create_refund']);
  });

  it('lets config override a preset rule, and runs unpriced tools on an uncapped key', async () => {
    const c = await session('stripe_links', 5);
    try {
      expect((await c.callTool({ name: 'create_payment_link', arguments: { price: 'price_1', quantity: 2 } })).isError).toBeFalsy();
    } finally {
      await c.close();
    }
    const u = await session('stripe', null);
    try {
      expect((await u.callTool({ name: 'finalize_invoice', arguments: { invoice: 'in_1' } })).isError).toBeFalsy();
    } finally {
      await u.close();
    }
  });
});
