import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type CallToolResult, McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { ADMIN_TOKEN, CLI, rawRequest, startGateway, type TestGateway } from './harness.js';
import { mint, narrow } from './mint.js';
import { type McpUpstream, startMcpUpstream, UPSTREAM_LIVE_SECRET, UPSTREAM_TEST_SECRET } from './mcp-upstream.js';

// keyleash as an MCP gateway, end to end: the official MCP client as the agent, the real gateway,
// and an upstream MCP server built with the same SDK, on both storage backends.

const ACME_ADMIN = 'acme_admin_token_0123456789';
const LIMITED_ADMIN = 'limited_admin_token_0123456789';

const TOOLS = {
  strict_refund: { amount: { path: 'amount', unit: 'minor', currency: 'usd' } },
  create_refund: { amount: { path: 'amount', unit: 'minor', currency_path: 'currency', currency: 'usd' } },
  create_invoice_charge: { amount: { path: 'amount', unit: 'minor', currency_path: 'currency' }, quantity: 'quantity' },
  failing_refund: { amount: { path: 'amount', unit: 'minor', currency: 'usd' } },
  hang: { amount: { path: 'amount', unit: 'minor', currency: 'usd' } },
  'list_*': 'free',
  debug_echo: 'free',
  slow_report: 'free',
  delete_account: 'free',
} as const;

async function connect(proxyUrl: string, token: string | null, server = 'stub'): Promise<Client> {
  const client = new Client({ name: 'agent', version: '1.0.0' });
  const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
  await client.connect(new StreamableHTTPClientTransport(new URL(`${proxyUrl}/mcp/${server}`), { requestInit: { headers } }));
  return client;
}

function text(r: unknown): string {
  return ((r as CallToolResult).content as Array<{ type: string; text?: string }>).map((c) => c.text ?? '').join('');
}

for (const backend of await backends('mcp')) {
  describe.skipIf(backend.skip)(`MCP gateway (${backend.name})`, () => {
    let t: TestGateway;
    let up: McpUpstream;
    let storeConfig: Record<string, unknown> | null;

    const issue = (over: Record<string, unknown> = {}) =>
      t.issue({ label: 'mcp-agent', vendor: 'mcp:stub', allowed_tools: ['list_*', 'create_refund', 'create_invoice_charge', 'debug_echo', 'slow_report', 'failing_refund', 'mystery_tool', 'hang'], daily_usd_cap: 100, expires_in: '10m', ...over });
    const audit = async (keyId: string) => (await t.admin('GET', `/v1/audit?key_id=${keyId}&limit=500`)).body.data as Array<Record<string, unknown>>;

    beforeAll(async () => {
      up = await startMcpUpstream();
      storeConfig = backend.store();
      t = await startGateway(() => ({
        log_level: 'warn',
        ...(storeConfig ? { store: storeConfig as never } : {}),
        mcp_servers: { stub: { url: up.url, test_secret: UPSTREAM_TEST_SECRET, live_secret: UPSTREAM_LIVE_SECRET, tools: TOOLS as never } },
        admin_tokens: [{ token: LIMITED_ADMIN, policy: { endpoints: ['/tools/list_customers'] } }],
        // Another tenant with its own credential for the same upstream, and a server only it has.
        tenants: {
          acme: {
            admin_tokens: [ACME_ADMIN],
            mcp_servers: {
              stub: { url: up.url, test_secret: UPSTREAM_LIVE_SECRET, tools: { 'list_*': 'free' } },
              acme_only: { url: up.url, test_secret: UPSTREAM_LIVE_SECRET, tools: { 'list_*': 'free' } },
            },
          },
        },
      }));
    });
    afterAll(async () => {
      await t?.close();
      await up?.close();
      await backend.cleanup(storeConfig);
    });
    beforeEach(() => {
      up.calls.length = 0;
    });

    it('issues a key naming tools, and shows them', async () => {
      const key = await issue();
      expect(key.vendor).toBe('mcp:stub');
      expect(key.allowed_tools).toContain('list_*');
      expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.allowed_tools).toEqual(key.allowed_tools);
      const noTools = await t.admin('POST', '/v1/keys', { vendor: 'mcp:stub', daily_usd_cap: 1 });
      expect(noTools.status).toBe(400);
      expect(noTools.body.param).toBe('allowed_tools');
      const badGlob = await t.admin('POST', '/v1/keys', { vendor: 'mcp:stub', allowed_tools: ['list customers'] });
      expect(badGlob.body.param).toBe('allowed_tools.0');
      // Tools as endpoints, the form SDK middleware and minted keys use.
      const asEndpoints = await t.issue({ vendor: 'mcp:stub', allowed_endpoints: ['/tools/create_refund', 'POST /tools/list_customers'] });
      expect(asEndpoints.allowed_tools).toEqual(['create_refund', 'list_customers']);
      const httpPattern = await t.admin('POST', '/v1/keys', { vendor: 'mcp:stub', allowed_endpoints: ['/tools/x', '/v1/refunds'] });
      expect(httpPattern.body.param).toBe('allowed_endpoints.1');
      const both = await t.admin('POST', '/v1/keys', { vendor: 'mcp:stub', allowed_endpoints: ['/tools/x'], allowed_tools: ['x'] });
      expect(both.status).toBe(400);
      const toolsOnHttp = await t.admin('POST', '/v1/keys', { vendor: 'stripe', allowed_endpoints: ['/v1/refunds'], allowed_tools: ['x'] });
      expect(toolsOnHttp.body.param).toBe('allowed_tools');
      const unknown = await t.admin('POST', '/v1/keys', { vendor: 'mcp:nope', allowed_tools: ['x'] });
      expect(unknown.body.param).toBe('vendor');
      // An admin token limited to some endpoints cannot escape them through tools.
      const limited = (tools: string[]) =>
        fetch(`${t.apiUrl}/v1/keys`, {
          method: 'POST',
          headers: { authorization: `Bearer ${LIMITED_ADMIN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ vendor: 'mcp:stub', allowed_tools: tools }),
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as { code?: string } }));
      expect((await limited(['list_customers'])).status).toBe(201);
      expect((await limited(['create_refund'])).body.code).toBe('policy_violation');
      expect((await limited(['list_*'])).body.code).toBe('policy_violation');
      const vendors = (await t.admin('GET', '/v1/vendors')).body;
      expect(JSON.stringify(vendors)).toContain('mcp:stub');
      expect(JSON.stringify(vendors)).not.toContain(UPSTREAM_TEST_SECRET);
    });

    it('issues an MCP key from the CLI with --tool', async () => {
      const run = (args: string[]) =>
        promisify(execFile)(process.execPath, [CLI, ...args], { env: { ...process.env, KEYLEASH_API_URL: t.apiUrl, KEYLEASH_ADMIN_TOKEN: ADMIN_TOKEN, NO_COLOR: '1' } });
      const { stdout } = await run(['keys', 'create', '--vendor', 'mcp:stub', '--tool', 'list_*', '--tool', 'create_refund', '--cap', '5', '--json']);
      const k = JSON.parse(stdout);
      expect(k).toMatchObject({ vendor: 'mcp:stub', allowed_tools: ['list_*', 'create_refund'], daily_usd_cap: 5 });
      const shown = await run(['keys', 'get', k.id]);
      expect(shown.stdout).toMatch(/allowed tools\s+list_\*, create_refund/);
      const noTool = await run(['keys', 'create', '--vendor', 'mcp:stub']).then(() => null, (e: { code: number; stderr: string }) => e);
      expect(noTool?.stderr).toContain('--tool');
    }, 30_000);

    it('lists only the tools the key allows', async () => {
      const key = await issue({ allowed_tools: ['list_*', 'create_refund'] });
      const client = await connect(t.proxyUrl, key.token);
      try {
        const names = (await client.listTools()).tools.map((x) => x.name).sort();
        expect(names).toEqual(['create_refund', 'list_customers']);
      } finally {
        await client.close();
      }
    });

    it('refuses a tool outside the key with endpoint_not_allowed, and never forwards it', async () => {
      const key = await issue({ allowed_tools: ['list_*'] });
      const client = await connect(t.proxyUrl, key.token);
      try {
        const err = await client.callTool({ name: 'delete_account', arguments: {} }).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(McpError);
        expect((err as McpError).data).toMatchObject({ code: 'endpoint_not_allowed' });
        expect(up.calls.find((c) => c.name === 'delete_account')).toBeUndefined();
        // And an allowed one goes through.
        expect(text(await client.callTool({ name: 'list_customers', arguments: {} }))).toContain('cus_1');
        expect(up.calls.map((c) => c.name)).toEqual(['list_customers']);
      } finally {
        await client.close();
      }
      await t.gw.audit.flush();
      const rows = await audit(key.id);
      expect(rows.find((r) => r.code === 'endpoint_not_allowed')).toMatchObject({ decision: 'deny', path: '/tools/call/delete_account', vendor: 'mcp:stub' });
    });

    it('reserves the cost from the arguments, settles it and audits the call', async () => {
      const key = await issue();
      const client = await connect(t.proxyUrl, key.token);
      try {
        const r = await client.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi_1', amount: 1250, currency: 'usd' } });
        expect(r.isError).toBeFalsy();
        const c = await client.callTool({ name: 'create_invoice_charge', arguments: { amount: 300, currency: 'usd', quantity: 3 } });
        expect(c.isError).toBeFalsy();
      } finally {
        await client.close();
      }
      const view = (await t.admin('GET', `/v1/keys/${key.id}`)).body;
      expect(view.spend_today_micros).toBe(12_500_000 + 9_000_000);
      await t.gw.audit.flush();
      const rows = await audit(key.id);
      const refund = rows.find((r) => r.path === '/tools/call/create_refund');
      expect(refund).toMatchObject({ decision: 'allow', cost_micros: 12_500_000, method: 'MCP', vendor: 'mcp:stub', status: 200 });
      expect(rows.find((r) => r.path === '/tools/call/create_invoice_charge')).toMatchObject({ cost_micros: 9_000_000 });
    });

    it('refuses a tool with no cost rule on a capped key (cost_unknown), and a call past the cap (cap_exhausted), as tool errors', async () => {
      const key = await issue({ daily_usd_cap: 10 });
      const client = await connect(t.proxyUrl, key.token);
      try {
        const unknown = (await client.callTool({ name: 'mystery_tool', arguments: {} })) as CallToolResult;
        expect(unknown.isError).toBe(true);
        expect(unknown.structuredContent).toMatchObject({ code: 'cost_unknown' });
        expect(text(unknown)).toContain('cost_unknown');
        const over = (await client.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi_1', amount: 1001 } })) as CallToolResult;
        expect(over.isError).toBe(true);
        expect(over.structuredContent).toMatchObject({ code: 'cap_exhausted' });
        expect(text(over)).toMatch(/cap_exhausted.*\$10\.01/);
        const bad = (await client.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi_1', amount: 'lots' } })) as CallToolResult;
        expect(bad.structuredContent).toMatchObject({ code: 'invalid_amount' });
        expect(up.calls).toEqual([]);
        // The unknown-cost tool runs on an uncapped key.
        const free = await issue({ daily_usd_cap: null });
        const c2 = await connect(t.proxyUrl, free.token);
        try {
          expect((await c2.callTool({ name: 'mystery_tool', arguments: {} })).isError).toBeFalsy();
        } finally {
          await c2.close();
        }
      } finally {
        await client.close();
      }
    });

    it('holds the cap exactly under 200 concurrent tools/call', async () => {
      const key = await issue({ daily_usd_cap: 50 });
      const client = await connect(t.proxyUrl, key.token);
      try {
        // $1 each: exactly 50 fit.
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) => client.callTool({ name: 'create_refund', arguments: { payment_intent: `pi_${i}`, amount: 100 } }) as Promise<CallToolResult>),
        );
        const ok = results.filter((r) => !r.isError).length;
        const capped = results.filter((r) => (r.structuredContent as { code?: string } | undefined)?.code === 'cap_exhausted').length;
        expect(ok).toBe(50);
        expect(capped).toBe(150);
        expect(up.calls.filter((c) => c.name === 'create_refund').length).toBe(50);
      } finally {
        await client.close();
      }
      expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_micros).toBe(50_000_000);
    }, 30_000);

    it('stops a revoked key at once, mid-session', async () => {
      const key = await issue();
      const client = await connect(t.proxyUrl, key.token);
      try {
        expect((await client.callTool({ name: 'list_customers', arguments: {} })).isError).toBeFalsy();
        expect((await t.admin('DELETE', `/v1/keys/${key.id}`)).status).toBe(200);
        const err = await client.callTool({ name: 'list_customers', arguments: {} }).then(
          () => null,
          (e: unknown) => e as Error,
        );
        expect(err).not.toBeNull();
        expect(String(err)).toMatch(/401|key_revoked|Unauthorized/i);
        expect(up.calls.length).toBe(1);
      } finally {
        await client.close().catch(() => undefined);
      }
    });

    it('refuses a wrong, absent or other-vendor key before anything is read', async () => {
      for (const token of [null, 'vk_test_' + 'x'.repeat(40)]) {
        const err = await connect(t.proxyUrl, token).then(
          (c) => (void c.close(), null),
          (e: unknown) => e,
        );
        expect(String(err)).toMatch(/invalid_key/);
      }
      const stripeKey = await t.issue();
      const r = await rawRequest(t.proxyUrl, 'POST', '/mcp/stub', { authorization: `Bearer ${stripeKey.token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('endpoint_not_allowed');
      // And an MCP key is no HTTP key.
      const key = await issue();
      const http = await t.proxy('/stripe/v1/refunds', { token: key.token, body: { amount: 1 } });
      expect(http.status).toBe(403);
      expect(up.calls).toEqual([]);
    });

    it('never shows the upstream credential, even when the server echoes it', async () => {
      const key = await issue();
      const client = await connect(t.proxyUrl, key.token);
      try {
        const r = await client.callTool({ name: 'debug_echo', arguments: {} });
        const all = JSON.stringify(r);
        expect(up.calls[0]!.authorization).toBe(`Bearer ${UPSTREAM_TEST_SECRET}`);
        expect(all).not.toContain(UPSTREAM_TEST_SECRET);
        expect(all).toContain('called with Bearer ****');
      } finally {
        await client.close();
      }
      // A test key only ever reaches the test credential.
      expect(up.authorizations.every((a) => a !== `Bearer ${UPSTREAM_LIVE_SECRET}`)).toBe(true);
      expect(t.logs.join('')).not.toContain(UPSTREAM_TEST_SECRET);
      await t.gw.audit.flush();
      expect(JSON.stringify(await audit(key.id))).not.toContain(UPSTREAM_TEST_SECRET);
    });

    it('relays progress and a long result as they come, without holding them back', async () => {
      const key = await issue();
      const client = await connect(t.proxyUrl, key.token);
      try {
        const progress: Array<{ progress: number; message?: string }> = [];
        // The upstream holds the call until the agent has seen its first progress: only a relay
        // that passes progress on at once lets this call finish.
        const call = client.callTool({ name: 'slow_report', arguments: { size: 2_000_000 } }, undefined, {
          onprogress: (p) => {
            progress.push(p);
            up.release();
          },
          timeout: 30_000,
        });
        const r = await call;
        expect(progress[0]).toMatchObject({ progress: 1, message: 'half way' });
        expect(text(r).length).toBe(2_000_000);
      } finally {
        await client.close();
      }
    });

    it('settles a tool error per the server (charged by default)', async () => {
      const key = await issue();
      const client = await connect(t.proxyUrl, key.token);
      try {
        const r = await client.callTool({ name: 'failing_refund', arguments: { amount: 200 } });
        expect(r.isError).toBe(true);
        expect(text(r)).toBe('card_declined');
      } finally {
        await client.close();
      }
      expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_micros).toBe(2_000_000);
    });

    it("passes the upstream's own error for a tool it does not have, audited as tool_error", async () => {
      const key = await issue({ allowed_tools: ['ghost_tool'], daily_usd_cap: null });
      const client = await connect(t.proxyUrl, key.token);
      try {
        // The SDK's McpServer answers an unknown tool with a tool error, not a JSON-RPC error.
        const r = (await client.callTool({ name: 'ghost_tool', arguments: {} })) as CallToolResult;
        expect(r.isError).toBe(true);
        expect(text(r)).toMatch(/ghost_tool not found/);
      } finally {
        await client.close();
      }
      await t.gw.audit.flush();
      expect((await audit(key.id)).find((x) => x.path === '/tools/call/ghost_tool')).toMatchObject({ decision: 'allow', code: 'tool_error', status: 200 });
    });

    it("passes the upstream's JSON-RPC error on once, releases the charge and audits it", async () => {
      const key = await issue({ allowed_tools: ['strict_refund'] });
      const client = await connect(t.proxyUrl, key.token);
      try {
        const err = await client.callTool({ name: 'strict_refund', arguments: { amount: 500 } }).then(() => null, (e: unknown) => e as McpError);
        expect(err).toBeInstanceOf(McpError);
        expect(err!.code).toBe(-32602);
        expect(err!.message).toBe('MCP error -32602: amount must be positive');
      } finally {
        await client.close();
      }
      expect(up.calls.map((c) => c.name)).toEqual(['strict_refund']);
      expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_micros).toBe(0);
      await t.gw.audit.flush();
      expect((await audit(key.id)).find((x) => x.path === '/tools/call/strict_refund')).toMatchObject({ decision: 'allow', code: 'upstream_error', cost_micros: 0 });
    });

    it('reopens the upstream session when the upstream forgets it', async () => {
      const key = await issue();
      const client = await connect(t.proxyUrl, key.token);
      try {
        expect((await client.callTool({ name: 'list_customers', arguments: {} })).isError).toBeFalsy();
        up.dropSessions();
        const again = await client.callTool({ name: 'list_customers', arguments: {} });
        expect(again.isError, t.logs.slice(-5).join('')).toBeFalsy();
        expect(up.calls.length).toBe(2);
      } finally {
        await client.close();
      }
    });

    it('applies rate limits, budgets and the kill switch to tools/call like HTTP calls', async () => {
      const limited = await issue({ rate_limit: { requests: 2, per: 'hour' } });
      const c1 = await connect(t.proxyUrl, limited.token);
      try {
        expect((await c1.callTool({ name: 'list_customers', arguments: {} })).isError).toBeFalsy();
        expect((await c1.callTool({ name: 'list_customers', arguments: {} })).isError).toBeFalsy();
        const third = (await c1.callTool({ name: 'list_customers', arguments: {} })) as CallToolResult;
        expect(third.structuredContent).toMatchObject({ code: 'rate_limited' });
      } finally {
        await c1.close();
      }
      expect((await t.admin('POST', '/v1/budgets', { id: 'team:mcp', limit_usd: 3, period: 'day' })).status).toBe(201);
      const budgeted = await issue({ budgets: ['team:mcp'], label: 'kill-me' });
      const c2 = await connect(t.proxyUrl, budgeted.token);
      try {
        expect((await c2.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi', amount: 200 } })).isError).toBeFalsy();
        const over = (await c2.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi', amount: 200 } })) as CallToolResult;
        expect(over.structuredContent).toMatchObject({ code: 'cap_exhausted', limit: { kind: 'budget', id: 'team:mcp' } });
        const killed = await t.admin('POST', '/v1/keys/revoke', { label_prefix: 'kill-me' });
        expect(killed.body.revoked).toBe(1);
        const after = await c2.callTool({ name: 'list_customers', arguments: {} }).then(() => null, (e: unknown) => e);
        expect(String(after)).toMatch(/key_revoked/);
      } finally {
        await c2.close().catch(() => undefined);
      }
    });

    it('takes minted and narrowed keys, whose tools are /tools/<name> endpoints', async () => {
      const mk = await t.admin('POST', '/v1/minting_keys', { label: 'agents', vendors: ['mcp:stub'], allowed_endpoints: ['/tools/*'], max_daily_usd_cap: 20, max_ttl: '1h' });
      expect(mk.status).toBe(201);
      const root = mint(mk.body.secret, { vendor: 'mcp:stub', endpoints: ['/tools/*'], cap: 10_000_000 });
      const child = narrow(root.token, mk.body.id, { endpoints: ['POST /tools/create_refund'], cap: 3_000_000 });
      const c = await connect(t.proxyUrl, child.token);
      try {
        expect((await c.listTools()).tools.map((x) => x.name)).toEqual(['create_refund']);
        expect((await c.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi', amount: 250 } })).isError).toBeFalsy();
        const over = (await c.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi', amount: 100 } })) as CallToolResult;
        expect(over.structuredContent).toMatchObject({ code: 'cap_exhausted' });
        const other = await c.callTool({ name: 'list_customers', arguments: {} }).then(() => null, (e: unknown) => e as McpError);
        expect(other?.data).toMatchObject({ code: 'endpoint_not_allowed' });
      } finally {
        await c.close();
      }
      const view = (await t.admin('GET', `/v1/keys/${child.id}`)).body;
      expect(view).toMatchObject({ origin: 'minted', vendor: 'mcp:stub', allowed_tools: ['create_refund'], spend_today_micros: 2_500_000 });
      expect((await t.admin('GET', `/v1/keys/${root.id}`)).body.spend_today_micros).toBe(2_500_000);
      // Its tool patterns allow no HTTP call.
      const http = await t.proxy('/tools/create_refund', { token: child.token, body: { amount: 1 } });
      expect(http.status).toBeGreaterThanOrEqual(400);
      expect(up.calls.length).toBe(1);
    });

    it("uses each tenant's own MCP servers and credentials", async () => {
      const issued = await fetch(`${t.apiUrl}/v1/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ACME_ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ vendor: 'mcp:stub', allowed_tools: ['list_*'], daily_usd_cap: 1 }),
      });
      expect(issued.status).toBe(201);
      const acme = (await issued.json()) as { token: string };
      const c = await connect(t.proxyUrl, acme.token);
      try {
        expect((await c.callTool({ name: 'list_customers', arguments: {} })).isError).toBeFalsy();
      } finally {
        await c.close();
      }
      expect(up.calls.at(-1)!.authorization).toBe(`Bearer ${UPSTREAM_LIVE_SECRET}`);
      // The default tenant has no acme_only server: its keys cannot be issued for it, nor reach it.
      expect((await t.admin('POST', '/v1/keys', { vendor: 'mcp:acme_only', allowed_tools: ['x'] })).body.param).toBe('vendor');
      const mine = await issue();
      const r = await rawRequest(t.proxyUrl, 'POST', '/mcp/acme_only', { authorization: `Bearer ${mine.token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('endpoint_not_allowed');
    });

    it('serves a stdio MCP client through `keyleash mcp-stdio`, with the same checks', async () => {
      const key = await issue({ allowed_tools: ['list_*', 'create_refund'], daily_usd_cap: 5 });
      const client = new Client({ name: 'desktop-agent', version: '1.0.0' });
      await client.connect(
        new StdioClientTransport({
          command: process.execPath,
          args: [CLI, 'mcp-stdio', '--url', `${t.proxyUrl}/mcp/stub`],
          env: { KEYLEASH_VAULT_KEY: key.token, PATH: process.env.PATH ?? '' },
          stderr: 'pipe',
        }),
      );
      try {
        expect((await client.listTools()).tools.map((x) => x.name).sort()).toEqual(['create_refund', 'list_customers']);
        expect((await client.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi', amount: 400 } })).isError).toBeFalsy();
        const over = (await client.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi', amount: 200 } })) as CallToolResult;
        expect(over.structuredContent).toMatchObject({ code: 'cap_exhausted' });
        await t.admin('DELETE', `/v1/keys/${key.id}`);
        const revoked = await client.listTools().then(() => null, (e: unknown) => e as McpError);
        expect(revoked?.data).toMatchObject({ code: 'key_revoked' });
      } finally {
        await client.close();
      }
      expect(up.calls.map((c) => c.name)).toEqual(['create_refund']);
    }, 30_000);

    it('serves older clients over HTTP+SSE, with the same checks, and binds a session to its key', async () => {
      const key = await issue({ allowed_tools: ['list_*', 'create_refund'], daily_usd_cap: 5 });
      const client = new Client({ name: 'old-agent', version: '1.0.0' });
      await client.connect(new SSEClientTransport(new URL(`${t.proxyUrl}/mcp/stub/sse`), { requestInit: { headers: { authorization: `Bearer ${key.token}` } } }));
      try {
        expect((await client.listTools()).tools.map((x) => x.name).sort()).toEqual(['create_refund', 'list_customers']);
        expect((await client.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi', amount: 400 } })).isError).toBeFalsy();
        const over = (await client.callTool({ name: 'create_refund', arguments: { payment_intent: 'pi', amount: 200 } })) as CallToolResult;
        expect(over.structuredContent).toMatchObject({ code: 'cap_exhausted' });
        const refused = await client.callTool({ name: 'delete_account', arguments: {} }).then(() => null, (e: unknown) => e as McpError);
        expect(refused?.data).toMatchObject({ code: 'endpoint_not_allowed' });
        // Another key cannot post into this session.
        const other = await issue();
        const sessionId = (client.transport as unknown as { _endpoint?: URL })._endpoint?.searchParams.get('sessionId');
        expect(sessionId).toBeTruthy();
        const hijack = await rawRequest(t.proxyUrl, 'POST', `/mcp/stub/messages?sessionId=${sessionId}`, { authorization: `Bearer ${other.token}`, 'content-type': 'application/json' }, JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/call', params: { name: 'create_refund', arguments: { payment_intent: 'pi', amount: 1 } } }));
        expect(hijack.status).toBe(400);
        await t.admin('DELETE', `/v1/keys/${key.id}`);
        const revoked = await client.listTools().then(() => null, (e: unknown) => e);
        expect(String(revoked)).toMatch(/key_revoked|401/);
      } finally {
        await client.close().catch(() => undefined);
      }
      expect(up.calls.map((c) => c.name)).toEqual(['create_refund']);
      await t.gw.audit.flush();
      expect((await audit(key.id)).filter((r) => r.path === '/tools/call/create_refund').map((r) => r.code).sort()).toEqual(['cap_exhausted', null].sort());
    });

    describe('malformed JSON-RPC is refused with nothing forwarded', () => {
      let token: string;
      const post = (body: string, headers: Record<string, string> = {}) =>
        rawRequest(t.proxyUrl, 'POST', '/mcp/stub', { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18', ...headers }, body);
      beforeAll(async () => {
        token = (await issue()).token;
      });

      it('refuses batches, bad ids, huge or deep params, responses and unknown or unserved methods', async () => {
        const call = (id: unknown, extra: Record<string, unknown> = {}) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'create_refund', arguments: { payment_intent: 'pi', amount: 1 } }, ...extra });
        const batch = await post(JSON.stringify([JSON.parse(call(1)), JSON.parse(call(2))]));
        expect(batch.status).toBe(400);
        expect(batch.body.error.data.code).toBe('invalid_request');
        expect(batch.body.error.message).toMatch(/Batches/);
        for (const id of [null, { a: 1 }, [1], 1.5, true, '', 'x'.repeat(300)]) {
          const r = await post(call(id));
          expect(r.status, JSON.stringify(id)).toBe(400);
          expect(r.body.error.code).toBe(-32600);
        }
        const huge = await post(call(3, { params: { name: 'create_refund', arguments: { payment_intent: 'x'.repeat(300_000), amount: 1 } } }));
        expect(huge.status).toBe(413);
        expect(huge.body.code).toBe('body_too_large');
        let deep: unknown = 1;
        for (let i = 0; i < 100; i++) deep = { a: deep };
        const nested = await post(call(4, { params: { name: 'create_refund', arguments: { payment_intent: 'pi', amount: 1, x: deep } } }));
        expect(nested.status).toBe(400);
        expect((await post('{"jsonrpc":"2.0","id":5,')).body.error.code).toBe(-32700);
        expect((await post(JSON.stringify({ jsonrpc: '2.0', id: 6, result: {} }))).status).toBe(400);
        const unknown = await post(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/destroy' }));
        expect(unknown.status).toBe(200);
        expect(unknown.body).toMatchObject({ id: 7, error: { code: -32601, data: { code: 'invalid_request' } } });
        const resources = await post(JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'resources/read', params: { uri: 'file:///etc/passwd' } }));
        expect(resources.body).toMatchObject({ id: 8, error: { data: { code: 'endpoint_not_allowed' } } });
        const prompts = await post(JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'prompts/get', params: { name: 'x' } }));
        expect(prompts.body.error.data.code).toBe('endpoint_not_allowed');
        const extraParam = await post(call(10, { params: { name: 'create_refund', arguments: {}, task: { ttl: 1 } } }));
        expect(extraParam.body.error.data.code).toBe('invalid_request');
        const badName = await post(call(11, { params: { name: '../../admin', arguments: {} } }));
        expect(badName.body.error.code).toBe(-32602);
        const notArgs = await post(call(12, { params: { name: 'create_refund', arguments: [1, 2] } }));
        expect(notArgs.body.error.code).toBe(-32602);
        const getStream = await rawRequest(t.proxyUrl, 'GET', '/mcp/stub', { authorization: `Bearer ${token}`, accept: 'text/event-stream' });
        expect(getStream.status).toBe(405);
        expect(up.calls).toEqual([]);
      });
    });
  });
}
