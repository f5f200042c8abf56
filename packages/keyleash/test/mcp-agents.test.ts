import { Agent, MCPServerStreamableHttp, type Model, type ModelRequest, type ModelResponse, run, setTracingDisabled, Usage } from '@openai/agents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from './harness.js';
import { type McpUpstream, startMcpUpstream, UPSTREAM_TEST_SECRET } from './mcp-upstream.js';

// The OpenAI Agents SDK's own MCP client (MCPServerStreamableHttp) against keyleash's MCP
// gateway, with a scripted model standing in for the LLM: nothing leaves loopback.

setTracingDisabled(true);

/** Asks for one create_refund call, then answers with what the tool returned. */
class ScriptedModel implements Model {
  seen: string[] = [];
  tools: string[] = [];
  constructor(private readonly amount: number) {}
  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    this.tools = (request.tools ?? []).map((t) => (t as { name: string }).name);
    const items = Array.isArray(request.input) ? request.input : [];
    const result = items.find((i) => i.type === 'function_call_result') as { output: unknown } | undefined;
    if (!result) {
      return {
        usage: new Usage(),
        output: [{ type: 'function_call', id: 'fc_1', callId: 'call_1', name: 'create_refund', arguments: JSON.stringify({ payment_intent: 'pi_42', amount: this.amount }), status: 'completed' }],
      };
    }
    const out = typeof result.output === 'string' ? result.output : JSON.stringify(result.output);
    this.seen.push(out);
    return { usage: new Usage(), output: [{ type: 'message', id: 'msg_1', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: `Tool said: ${out}` }] }] };
  }
  // eslint-disable-next-line require-yield
  async *getStreamedResponse(): AsyncIterable<never> {
    throw new Error('streaming is not used in this test');
  }
}

describe('OpenAI Agents SDK through the MCP gateway', () => {
  let t: TestGateway;
  let up: McpUpstream;

  beforeAll(async () => {
    up = await startMcpUpstream();
    t = await startGateway(() => ({
      log_level: 'warn',
      mcp_servers: { stub: { url: up.url, test_secret: UPSTREAM_TEST_SECRET, tools: { create_refund: { amount: { path: 'amount', currency: 'usd' } }, 'list_*': 'free' } } },
    }));
  });
  afterAll(async () => {
    await t?.close();
    await up?.close();
  });

  async function runAgent(cap: number, amount: number) {
    const key = await t.issue({ label: 'agents-sdk', vendor: 'mcp:stub', allowed_tools: ['create_refund', 'list_*'], daily_usd_cap: cap, expires_in: '5m' });
    const server = new MCPServerStreamableHttp({ url: `${t.proxyUrl}/mcp/stub`, name: 'stripe-via-keyleash', requestInit: { headers: { authorization: `Bearer ${key.token}` } } });
    await server.connect();
    try {
      const model = new ScriptedModel(amount);
      const agent = new Agent({ name: 'refunds', instructions: 'Refund when asked.', model, mcpServers: [server] });
      const result = await run(agent, 'refund pi_42');
      return { key, model, output: String(result.finalOutput) };
    } finally {
      await server.close();
    }
  }

  it('lists only the allowed tools to the model and runs the refund, metered', async () => {
    const { key, model, output } = await runAgent(10, 700);
    expect(model.tools.sort()).toEqual(['create_refund', 'list_customers']);
    expect(output).toContain('re_1');
    expect(up.calls.at(-1)).toMatchObject({ name: 'create_refund', args: { payment_intent: 'pi_42', amount: 700 }, authorization: `Bearer ${UPSTREAM_TEST_SECRET}` });
    expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.spend_today_micros).toBe(7_000_000);
  });

  it('shows the model a cap refusal as the tool result, and nothing reaches the upstream', async () => {
    const before = up.calls.length;
    const { model, output } = await runAgent(5, 700);
    expect(model.seen[0]).toContain('cap_exhausted');
    expect(output).toContain('cap_exhausted');
    expect(up.calls.length).toBe(before);
  });
});
