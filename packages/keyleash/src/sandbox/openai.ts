import { createSandbox, type Sandbox, type SandboxAnswer, type SandboxRequest, sandboxId, sseEvent, tokensOf } from './base.js';

// A local stand-in for api.openai.com: chat completions (plain and streamed, with the usage chunk
// when stream_options.include_usage asks for it), embeddings and the model list — enough for the
// official `openai` package. Each word of a reply counts as one completion token.

export interface OpenAISandboxOptions {
  /** Secrets the sandbox accepts as `Authorization: Bearer …`. */
  secrets: string[];
}

export interface OpenAIBehaviour {
  /** The assistant's reply (default: a greeting that quotes the last user message). */
  reply?: string;
  /** Leave out the usage chunk even when it is asked for. */
  omitUsage?: boolean;
  /** Milliseconds between two streamed chunks. */
  eventDelayMs?: number;
}

export interface OpenAISandbox extends Sandbox {
  behaviour: OpenAIBehaviour;
}

function error(status: number, message: string, type: string, code: string | null = null): SandboxAnswer {
  return { status, body: { error: { message, type, param: null, code } } };
}

function lastUserText(messages: unknown): string {
  if (!Array.isArray(messages)) return '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as { role?: string; content?: unknown };
    if (m?.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    if (Array.isArray(m.content)) return m.content.map((p: { text?: string }) => p?.text ?? '').join(' ');
  }
  return '';
}

export function promptTokens(body: unknown): number {
  return Math.max(1, Math.ceil(JSON.stringify((body as { messages?: unknown })?.messages ?? body ?? '').length / 4));
}

function chat(req: SandboxRequest, b: OpenAIBehaviour): SandboxAnswer {
  const body = req.json as Record<string, unknown> | undefined;
  if (!body || typeof body.model !== 'string' || !Array.isArray(body.messages)) {
    return error(400, "Missing required parameters: 'model' and 'messages'.", 'invalid_request_error');
  }
  const model = body.model;
  const max = (body.max_completion_tokens ?? body.max_tokens) as number | undefined;
  let words = tokensOf(b.reply ?? `Hello from the keyleash OpenAI sandbox. You said: ${lastUserText(body.messages)}`);
  let finish = 'stop';
  if (typeof max === 'number' && words.length > max) {
    words = words.slice(0, max);
    finish = 'length';
  }
  const usage = { prompt_tokens: promptTokens(body), completion_tokens: words.length, total_tokens: promptTokens(body) + words.length };
  const id = sandboxId('chatcmpl-', 24);
  const created = Math.floor(Date.now() / 1000);

  if (body.stream !== true) {
    return {
      status: 200,
      body: {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: words.join(''), refusal: null }, logprobs: null, finish_reason: finish }],
        usage,
        system_fingerprint: 'fp_keyleash',
      },
    };
  }
  const withUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
  const chunk = (delta: Record<string, unknown>, finishReason: string | null) => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    system_fingerprint: 'fp_keyleash',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(withUsage ? { usage: null } : {}),
  });
  const events = [
    sseEvent(chunk({ role: 'assistant', content: '', refusal: null }, null)),
    ...words.map((w) => sseEvent(chunk({ content: w }, null))),
    sseEvent(chunk({}, finish)),
  ];
  if (withUsage && !b.omitUsage) {
    events.push(sseEvent({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_keyleash', choices: [], usage }));
  }
  events.push(sseEvent('[DONE]'));
  return { status: 200, events, eventDelayMs: b.eventDelayMs ?? 0 };
}

function embeddings(req: SandboxRequest): SandboxAnswer {
  const body = req.json as { model?: string; input?: unknown } | undefined;
  if (!body?.model || body.input === undefined) return error(400, "Missing required parameters: 'model' and 'input'.", 'invalid_request_error');
  const inputs = Array.isArray(body.input) ? body.input : [body.input];
  const tokens = Math.max(1, Math.ceil(JSON.stringify(body.input).length / 4));
  return {
    status: 200,
    body: {
      object: 'list',
      data: inputs.map((_, index) => ({ object: 'embedding', index, embedding: [0.0023, -0.0093, 0.0158] })),
      model: body.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    },
  };
}

export function createOpenAISandbox(opts: OpenAISandboxOptions): OpenAISandbox {
  const accepted = new Set(opts.secrets);
  const sandbox = createSandbox((req) => {
    const auth = req.headers.authorization ?? '';
    if (!auth.startsWith('Bearer ') || !accepted.has(auth.slice(7))) {
      return error(401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
    }
    const b = (sandbox as OpenAISandbox).behaviour;
    if (req.method === 'POST' && req.path === '/v1/chat/completions') return chat(req, b);
    if (req.method === 'POST' && req.path === '/v1/embeddings') return embeddings(req);
    if (req.method === 'GET' && req.path === '/v1/models') {
      return { status: 200, body: { object: 'list', data: ['gpt-4o', 'gpt-4o-mini'].map((id) => ({ id, object: 'model', created: 0, owned_by: 'openai' })) } };
    }
    return error(404, `Invalid URL (${req.method} ${req.path})`, 'invalid_request_error');
  }) as OpenAISandbox;
  sandbox.behaviour = {};
  const reset = sandbox.reset;
  sandbox.reset = () => {
    reset();
    sandbox.behaviour = {};
  };
  return sandbox;
}
