import { ErrorCode as RpcCode } from '@modelcontextprotocol/sdk/types.js';
import type { ErrorCode } from '../errors.js';
import { isToolName } from './tools.js';

// Screens one JSON-RPC message from an agent before anything acts on it. Pure: no I/O.
// Only what the gateway serves gets through; anything else is refused here, never forwarded.

/** Requests the gateway answers. Resources, prompts, completion and logging are not passed through. */
const REQUESTS = new Set(['initialize', 'ping', 'tools/list', 'tools/call']);
/** Notifications accepted (and dropped: nothing upstream depends on them). */
const NOTIFICATIONS = new Set(['notifications/initialized', 'notifications/cancelled', 'notifications/progress', 'notifications/roots/list_changed']);
const NOT_PASSED = /^(resources|prompts|completion|logging|sampling|elicitation|tasks|roots)\//;

/** Deeper nesting than any real tool's arguments; refused so nothing recurses on it. */
export const MAX_DEPTH = 64;
const MAX_ID_LENGTH = 256;
const TOOLS_CALL_PARAMS = new Set(['name', 'arguments', '_meta']);

export interface ScreenedMessage {
  kind: 'request' | 'notification';
  method: string;
  id: string | number;
  toolName?: string;
  progressToken?: string | number;
  /** The parsed message, handed on as it is. */
  raw: Record<string, unknown>;
}

export type Screen =
  | { ok: true; message: ScreenedMessage }
  /** `id`: the request's id when it is usable (the refusal is then a JSON-RPC answer to it). */
  | { ok: false; id?: string | number; method?: string; rpcCode: number; code: ErrorCode; message: string };

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The nesting depth of a parsed JSON value, counted without recursion; stops past `max`. */
export function depthExceeds(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d > max) return true;
    for (const c of Array.isArray(v) ? v : Object.values(v)) if (c !== null && typeof c === 'object') stack.push([c, d + 1]);
  }
  return false;
}

function validId(id: unknown): id is string | number {
  if (typeof id === 'string') return id.length > 0 && id.length <= MAX_ID_LENGTH;
  return typeof id === 'number' && Number.isSafeInteger(id);
}

export function screenMessage(body: Buffer): Screen {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return { ok: false, rpcCode: RpcCode.ParseError, code: 'invalid_request', message: 'The body is not valid JSON.' };
  }
  // JSON-RPC batches were dropped from MCP (2025-06-18): one message per POST, so one reservation per call.
  if (Array.isArray(parsed)) return { ok: false, rpcCode: RpcCode.InvalidRequest, code: 'invalid_request', message: 'Batches are not accepted: send one JSON-RPC message per request.' };
  if (!isPlainObject(parsed) || parsed.jsonrpc !== '2.0') return { ok: false, rpcCode: RpcCode.InvalidRequest, code: 'invalid_request', message: 'Not a JSON-RPC 2.0 message.' };
  if (depthExceeds(parsed, MAX_DEPTH)) return { ok: false, rpcCode: RpcCode.InvalidRequest, code: 'invalid_request', message: `The message nests deeper than ${MAX_DEPTH} levels.` };
  const method = parsed.method;
  if (typeof method !== 'string' || method.length === 0 || method.length > 128) {
    // keyleash never asks the agent anything, so a response from it answers nothing.
    return { ok: false, rpcCode: RpcCode.InvalidRequest, code: 'invalid_request', message: 'Only requests and notifications are accepted.' };
  }
  if (parsed.params !== undefined && !isPlainObject(parsed.params)) {
    return { ok: false, method, rpcCode: RpcCode.InvalidRequest, code: 'invalid_request', message: 'params must be an object.' };
  }
  const params = (parsed.params ?? {}) as Record<string, unknown>;

  if (!Object.hasOwn(parsed, 'id')) {
    if (!NOTIFICATIONS.has(method)) return { ok: false, method, rpcCode: RpcCode.MethodNotFound, code: 'invalid_request', message: `Notification ${method} is not accepted.` };
    return { ok: true, message: { kind: 'notification', method, id: '', raw: parsed } };
  }
  const id = parsed.id;
  if (!validId(id)) {
    return { ok: false, method, rpcCode: RpcCode.InvalidRequest, code: 'invalid_request', message: `The id must be a non-empty string of at most ${MAX_ID_LENGTH} characters or an integer.` };
  }
  if (!REQUESTS.has(method)) {
    if (NOT_PASSED.test(method)) {
      return { ok: false, id, method, rpcCode: RpcCode.MethodNotFound, code: 'endpoint_not_allowed', message: `${method} is not passed through: keyleash serves an MCP server's tools only.` };
    }
    return { ok: false, id, method, rpcCode: RpcCode.MethodNotFound, code: 'invalid_request', message: `Method not found: ${method.slice(0, 64)}` };
  }
  const meta = params._meta;
  if (meta !== undefined && !isPlainObject(meta)) return { ok: false, id, method, rpcCode: RpcCode.InvalidParams, code: 'invalid_request', message: '_meta must be an object.' };
  const message: ScreenedMessage = { kind: 'request', method, id, raw: parsed };
  if (method === 'tools/call') {
    for (const k of Object.keys(params)) {
      if (!TOOLS_CALL_PARAMS.has(k)) return { ok: false, id, method, rpcCode: RpcCode.InvalidParams, code: 'invalid_request', message: `tools/call takes name, arguments and _meta, not ${k.slice(0, 64)}.` };
    }
    if (!isToolName(params.name)) return { ok: false, id, method, rpcCode: RpcCode.InvalidParams, code: 'invalid_request', message: 'name must be a tool name (1-128 of A-Z a-z 0-9 _ - . : /).' };
    if (params.arguments !== undefined && !isPlainObject(params.arguments)) {
      return { ok: false, id, method, rpcCode: RpcCode.InvalidParams, code: 'invalid_request', message: 'arguments must be an object.' };
    }
    message.toolName = params.name;
    const token = meta?.progressToken;
    if (token !== undefined) {
      if (!validId(token)) return { ok: false, id, method, rpcCode: RpcCode.InvalidParams, code: 'invalid_request', message: 'progressToken must be a string or an integer.' };
      message.progressToken = token;
    }
  }
  return { ok: true, message };
}
