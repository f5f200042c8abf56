import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { describe, expect, it } from 'vitest';
import { startGateway } from './harness.js';
import { startMcpUpstream, UPSTREAM_TEST_SECRET } from './mcp-upstream.js';

describe('MCP gateway shutdown', () => {
  it('closes with an HTTP+SSE session still open: the stream is ended, not waited for', async () => {
    const up = await startMcpUpstream();
    const t = await startGateway(() => ({ log_level: 'warn', mcp_servers: { stub: { url: up.url, test_secret: UPSTREAM_TEST_SECRET, tools: { 'list_*': 'free' } } } }));
    const key = await t.issue({ vendor: 'mcp:stub', allowed_tools: ['list_*'] });
    const client = new Client({ name: 'old-agent', version: '1.0.0' });
    let closed = false;
    const transport = new SSEClientTransport(new URL(`${t.proxyUrl}/mcp/stub/sse`), { requestInit: { headers: { authorization: `Bearer ${key.token}` } } });
    await client.connect(transport);
    client.onclose = () => (closed = true);
    expect((await client.listTools()).tools.map((x) => x.name)).toEqual(['list_customers']);
    await t.close(); // would never resolve while the stream held the listener open
    await up.close();
    await client.close().catch(() => undefined);
    expect(closed).toBe(true);
  }, 30_000);
});
