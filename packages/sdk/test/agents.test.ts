import type { AddressInfo } from 'node:net';
import { AIMessage, HumanMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import { BaseChatModel } from '@langchain/core/language_models/chat_models';
import type { ChatResult } from '@langchain/core/outputs';
import { tool as lcTool } from '@langchain/core/tools';
import { Agent, run, setTracingDisabled, tool as agentsTool, Usage, type Model, type ModelRequest, type ModelResponse } from '@openai/agents';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { currentVaultKey } from '../src/index.js';
import { keyleashExpress } from '../src/express.js';
import { stripeClient } from '../src/stripe.js';
import { eventually, startGateway, STRIPE_TEST_SECRET, type TestGateway } from './gateway.js';

// Agent frameworks' tools calling Stripe through the proxy with the request's vault key. The
// models are local stubs that ask for the tool call: no network, no LLM.

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
  setTracingDisabled(true);
});
afterAll(async () => {
  await t?.close();
});

/** The agent's tool body: no key in sight, it is the request's (AsyncLocalStorage). */
async function createPaymentIntent(amount: number): Promise<string> {
  const pi = await stripeClient().paymentIntents.create({ amount, currency: 'usd', metadata: { by: 'agent' } });
  return JSON.stringify({ id: pi.id, amount: pi.amount, key_id: currentVaultKey()!.id });
}

// ---- LangChain.js -------------------------------------------------------------------------

const lcChargeTool = lcTool(async ({ amount }) => createPaymentIntent(amount), {
  name: 'create_payment_intent',
  description: 'Charge the customer, amount in cents',
  schema: z.object({ amount: z.number().int().positive() }),
});

/** A chat model that first asks for the tool, then answers with its result. */
class ScriptedChatModel extends BaseChatModel {
  _llmType() {
    return 'scripted';
  }
  async _generate(messages: BaseMessage[]): Promise<ChatResult> {
    const last = messages.at(-1)!;
    const message = ToolMessage.isInstance(last)
      ? new AIMessage(`Done: ${String(last.content)}`)
      : new AIMessage({ content: '', tool_calls: [{ id: 'call_1', name: 'create_payment_intent', args: { amount: 2500 }, type: 'tool_call' }] });
    return { generations: [{ text: typeof message.content === 'string' ? message.content : '', message }] };
  }
}

async function langchainAgent(prompt: string): Promise<string> {
  const model = new ScriptedChatModel({});
  const messages: BaseMessage[] = [new HumanMessage(prompt)];
  for (;;) {
    const ai = (await model.invoke(messages)) as AIMessage;
    messages.push(ai);
    if (!ai.tool_calls?.length) return String(ai.content);
    for (const call of ai.tool_calls) messages.push((await lcChargeTool.invoke({ ...call, type: 'tool_call' })) as ToolMessage);
  }
}

// ---- OpenAI Agents SDK --------------------------------------------------------------------

const agentsChargeTool = agentsTool({
  name: 'create_payment_intent',
  description: 'Charge the customer, amount in cents',
  parameters: z.object({ amount: z.number().int().positive() }),
  execute: async ({ amount }) => createPaymentIntent(amount),
});

/** A Model that asks for the tool call, then answers with the tool's output. */
class ScriptedAgentModel implements Model {
  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    const items = Array.isArray(request.input) ? request.input : [];
    const result = items.find((i) => i.type === 'function_call_result') as { output: unknown } | undefined;
    if (!result) {
      return {
        usage: new Usage(),
        output: [{ type: 'function_call', id: 'fc_1', callId: 'call_1', name: 'create_payment_intent', arguments: JSON.stringify({ amount: 3100 }), status: 'completed' }],
      };
    }
    const out = typeof result.output === 'string' ? result.output : ((result.output as { text?: string }).text ?? JSON.stringify(result.output));
    return {
      usage: new Usage(),
      output: [{ type: 'message', id: 'msg_1', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: `Done: ${out}` }] }],
    };
  }
  // eslint-disable-next-line require-yield
  async *getStreamedResponse(): AsyncIterable<never> {
    throw new Error('streaming is not used in this test');
  }
}

const billingAgent = new Agent({
  name: 'billing',
  instructions: 'Charge the customer when asked.',
  tools: [agentsChargeTool],
  model: new ScriptedAgentModel(),
});

// ---- the app: Express + keyleash middleware, one vault key per request ----------------------

async function startApp() {
  const app = express();
  app.use(
    keyleashExpress({
      client: t.client,
      vendor: 'stripe',
      allowedEndpoints: ['POST /v1/payment_intents'],
      dailyUsdCap: 50,
      expiresIn: '5m',
      label: (req) => `agent ${req.path}`,
    }),
  );
  app.post('/langchain', async (_req, res) => {
    res.json({ answer: await langchainAgent('charge $25'), key_id: currentVaultKey()!.id });
  });
  app.post('/openai-agents', async (_req, res) => {
    const result = await run(billingAgent, 'charge $31');
    res.json({ answer: result.finalOutput, key_id: currentVaultKey()!.id });
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('agent tools call Stripe through the proxy with the request vault key', () => {
  for (const [route, amount] of [
    ['langchain', 2500],
    ['openai-agents', 3100],
  ] as const) {
    it(`${route}: the tool's charge reaches Stripe with the real test secret; the key is revoked after`, async () => {
      const app = await startApp();
      try {
        const before = t.sandbox.requests.length;
        const r = await fetch(`${app.url}/${route}`, { method: 'POST' });
        expect(r.status).toBe(200);
        const body = (await r.json()) as { answer: string; key_id: string };
        const toolResult = JSON.parse(body.answer.replace(/^Done: /, '')) as { id: string; amount: number; key_id: string };
        expect(toolResult.id).toMatch(/^pi_/);
        expect(toolResult.amount).toBe(amount);
        expect(toolResult.key_id).toBe(body.key_id); // the tool used the request's key

        expect(t.sandbox.requests.length).toBe(before + 1);
        const seen = t.sandbox.requests.at(-1)!;
        expect(seen.path).toBe('/v1/payment_intents');
        expect(seen.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
        expect(seen.form).toMatchObject({ amount: String(amount), metadata: { by: 'agent' } });

        await eventually(async () => {
          const k = await t.key(body.key_id);
          expect(k.status).toBe('revoked');
          expect(k.spend_today_usd).toBe(amount / 100);
          expect(k.label).toBe(`agent /${route}`);
        });
      } finally {
        await app.close();
      }
    });
  }
});
