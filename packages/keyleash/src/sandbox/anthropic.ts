import { createSandbox, type Sandbox, type SandboxAnswer, type SandboxRequest, sandboxId, sseEvent, tokensOf } from './base.js';

// A local stand-in for api.anthropic.com: the Messages API, plain and streamed (message_start
// with the input usage, content_block_delta per word, message_delta with the output usage,
// message_stop) — enough for the official `@anthropic-ai/sdk`. Each word is one output token.

export interface AnthropicSandboxOptions {
  /** Keys the sandbox accepts, as `x-api-key` or `Authorization: Bearer`. */
  secrets: string[];
}

export interface AnthropicBehaviour {
  reply?: string;
  /** End the stream before message_delta (so its usage never arrives). */
  cutBeforeUsage?: boolean;
  eventDelayMs?: number;
}

export interface AnthropicSandbox extends Sandbox {
  behaviour: AnthropicBehaviour;
}

function error(status: number, type: string, message: string): SandboxAnswer {
  return { status, body: { type: 'error', error: { type, message } } };
}

function lastUserText(messages: unknown[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as { role?: string; content?: unknown };
    if (m?.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    if (Array.isArray(m.content)) return m.content.map((p: { text?: string }) => p?.text ?? '').join(' ');
  }
  return '';
}

export function inputTokens(body: Record<string, unknown>): number {
  return Math.max(1, Math.ceil(JSON.stringify([body.system ?? '', body.messages]).length / 4));
}

function messages(req: SandboxRequest, b: AnthropicBehaviour): SandboxAnswer {
  const body = req.json as Record<string, unknown> | undefined;
  if (!body || typeof body.model !== 'string' || !Array.isArray(body.messages)) {
    return error(400, 'invalid_request_error', 'model: Field required');
  }
  if (typeof body.max_tokens !== 'number') return error(400, 'invalid_request_error', 'max_tokens: Field required');
  let words = tokensOf(b.reply ?? `Hello from the keyleash Anthropic sandbox. You said: ${lastUserText(body.messages)}`);
  let stop = 'end_turn';
  if (words.length > body.max_tokens) {
    words = words.slice(0, body.max_tokens);
    stop = 'max_tokens';
  }
  const id = sandboxId('msg_', 24);
  const input = inputTokens(body);
  const usage = { input_tokens: input, output_tokens: words.length, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };

  if (body.stream !== true) {
    return {
      status: 200,
      body: {
        id,
        type: 'message',
        role: 'assistant',
        model: body.model,
        content: [{ type: 'text', text: words.join('') }],
        stop_reason: stop,
        stop_sequence: null,
        usage,
      },
    };
  }
  const events = [
    sseEvent(
      {
        type: 'message_start',
        message: { id, type: 'message', role: 'assistant', model: body.model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } },
      },
      'message_start',
    ),
    sseEvent({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start'),
    sseEvent({ type: 'ping' }, 'ping'),
    ...words.map((w) => sseEvent({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: w } }, 'content_block_delta')),
    sseEvent({ type: 'content_block_stop', index: 0 }, 'content_block_stop'),
  ];
  if (b.cutBeforeUsage) return { status: 200, events, eventDelayMs: b.eventDelayMs ?? 0, cut: true };
  events.push(
    sseEvent({ type: 'message_delta', delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: words.length } }, 'message_delta'),
    sseEvent({ type: 'message_stop' }, 'message_stop'),
  );
  return { status: 200, events, eventDelayMs: b.eventDelayMs ?? 0 };
}

export function createAnthropicSandbox(opts: AnthropicSandboxOptions): AnthropicSandbox {
  const accepted = new Set(opts.secrets);
  const sandbox = createSandbox((req) => {
    const key = (req.headers['x-api-key'] as string | undefined) ?? (req.headers.authorization ?? '').replace(/^Bearer /, '');
    if (!accepted.has(key)) return error(401, 'authentication_error', 'invalid x-api-key');
    const b = (sandbox as AnthropicSandbox).behaviour;
    if (req.method === 'POST' && req.path === '/v1/messages') return messages(req, b);
    if (req.method === 'POST' && req.path === '/v1/messages/count_tokens') {
      const body = (req.json ?? {}) as Record<string, unknown>;
      return { status: 200, body: { input_tokens: inputTokens(body) } };
    }
    if (req.method === 'GET' && req.path === '/v1/models') {
      return { status: 200, body: { data: [{ type: 'model', id: 'claude-sonnet-4-5', display_name: 'Claude Sonnet 4.5' }], has_more: false } };
    }
    return error(404, 'not_found_error', `Not found: ${req.method} ${req.path}`);
  }) as AnthropicSandbox;
  sandbox.behaviour = {};
  const reset = sandbox.reset;
  sandbox.reset = () => {
    reset();
    sandbox.behaviour = {};
  };
  return sandbox;
}
