import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  ErrorCode as RpcCode,
  ListToolsRequestSchema,
  type ListToolsResult,
  McpError,
  SUPPORTED_PROTOCOL_VERSIONS,
} from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/sink.js';
import { errorBody, type ErrorCode, ERRORS } from '../errors.js';
import { isMintedToken } from '../keys/minted.js';
import type { MintingService } from '../keys/minting.js';
import { hashToken, tokenLooksValid } from '../keys/token.js';
import { utcDay } from '../policy/ttl.js';
import { AuthThrottle } from '../proxy/auth-throttle.js';
import { readVaultToken } from '../proxy/credentials.js';
import { DenialAudit, type DenialAuditOptions } from '../proxy/denial-audit.js';
import { callChannel, stepChannel } from '../proxy/handler.js';
import type { CachedKey, KeyCache } from '../proxy/key-cache.js';
import { type EchoPatterns, echoPatternsFor } from '../proxy/leaks.js';
import { reserveRefusal } from '../proxy/refusal.js';
import { screenRequest } from '../proxy/screen.js';
import { type AuditRecord, keyStatus, type Settlement, type Store } from '../store/store.js';
import type { VendorCatalog } from '../vendors/vendor.js';
import { priceToolCall } from './cost.js';
import { type ScreenedMessage, screenMessage } from './screen.js';
import { isMcpVendor, type McpVendor } from './servers.js';
import { decodeTools, MCP_VENDOR_PREFIX, mcpServerOf, toolAllowed } from './tools.js';
import { sessionGone, UpstreamSessions } from './upstream.js';

// keyleash as an MCP gateway: an agent's MCP client connects to {PROXY}/mcp/{server} with a
// vault key; each tools/call is checked against the key's tools, priced from its arguments,
// reserved, sent upstream on keyleash's own session (with the real credential), settled and
// audited — the HTTP proxy's path, for MCP. Sessions are stateless on this side (every POST
// carries the key and is checked afresh), so any replica serves any message.

export interface McpGatewayOptions {
  store: Store;
  minting?: MintingService;
  cache: KeyCache;
  audit: AuditSink;
  log: Logger;
  /** The vendors of a key's tenant, MCP servers (`mcp:<name>`) among them. */
  catalogFor(tenantId: string): VendorCatalog;
  /** Server names routed here (`/mcp/<name>`), of any tenant. */
  serverNames: ReadonlySet<string>;
  requestTimeoutMs: number;
  requestIdleTimeoutMs: number;
  anonymousDenials?: DenialAuditOptions;
  now?: () => number;
}

interface Authenticated {
  key: CachedKey;
  hash: string;
  vendor: McpVendor;
  secret: string;
}

interface CallContext {
  requestId: string;
  address: string;
  started: number;
  path: string;
  key: CachedKey | null;
}

const AUDIT_METHOD = 'MCP';
const SERVER_VERSION = '0.1.0';
const MCP_PATH = /^\/mcp\/([a-z][a-z0-9_-]{0,31})(\/sse|\/messages)?\/?$/;
/** Open sessions of the older HTTP+SSE transport one process keeps at most. */
const MAX_LEGACY_SESSIONS = 1000;

/** A session of the older HTTP+SSE transport (protocol 2024-11-05): its stream stays open, each message is a POST. */
interface LegacySession {
  server: string;
  keyHash: string;
  /** The key as its latest message found it. */
  key: CachedKey;
  transport: SSEServerTransport;
}

/** JSON-RPC error codes for keyleash's refusals: a tool outside the key is an invalid param, like an unknown tool. */
function rpcCodeFor(code: ErrorCode): number {
  if (code === 'endpoint_not_allowed' || code === 'invalid_amount') return RpcCode.InvalidParams;
  if (code === 'internal_error') return RpcCode.InternalError;
  return RpcCode.InvalidRequest;
}

export class McpGateway {
  private readonly now: () => number;
  private readonly sessions: UpstreamSessions;
  private readonly throttle = new AuthThrottle();
  private readonly denials: DenialAudit;
  private readonly legacy = new Map<string, LegacySession>();

  constructor(private readonly o: McpGatewayOptions) {
    this.now = o.now ?? Date.now;
    this.sessions = new UpstreamSessions(o.log);
    this.denials = new DenialAudit((r) => o.audit.push(r), this.now, o.anonymousDenials ?? { perWindow: 20, windowMs: 60_000 });
  }

  /** The server a proxy request is for, when it is an MCP request (`/mcp/<configured name>`). */
  serverOf(url: string | undefined): string | null {
    const path = (url ?? '').split('?')[0]!;
    if (!path.startsWith('/mcp/')) return null;
    const m = MCP_PATH.exec(path);
    return m && this.o.serverNames.has(m[1]!) ? m[1]! : null;
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse, server: string): void => {
    const requestId = `req_${randomUUID().replace(/-/g, '')}`;
    this.run(req, res, server, requestId).catch((err: unknown) => {
      this.o.log.error({ err, requestId }, 'MCP gateway failed');
      if (!res.headersSent) this.sendHttpError(res, 'internal_error', undefined, requestId);
      else res.destroy();
    });
  };

  private async run(req: IncomingMessage, res: ServerResponse, server: string, requestId: string): Promise<void> {
    const ctx: CallContext = { requestId, address: req.socket.remoteAddress ?? '', started: this.now(), path: `/mcp/${server}`, key: null };
    const legacy = MCP_PATH.exec((req.url ?? '').split('?')[0]!)?.[2];
    const allowed = legacy === '/sse' ? 'GET' : 'POST';
    // Streamable HTTP without sessions: no standalone SSE stream (GET) and no session to end (DELETE).
    if (req.method !== allowed) {
      req.resume();
      res.setHeader('allow', allowed);
      return this.sendHttpError(res, 'invalid_request', legacy ? `Use ${allowed} here.` : 'keyleash serves MCP as Streamable HTTP without sessions: send every message as a POST.', requestId, 405);
    }
    const auth = await this.authenticate(req, res, ctx, server);
    if (!auth) return;
    if (legacy === '/sse') return this.openLegacySession(req, res, ctx, server, auth);
    if (legacy === '/messages') return this.legacyMessage(req, res, ctx, server, auth);
    return this.streamableMessage(req, res, ctx, server, auth);
  }

  /** The key of a request, checked (and refused, answered and audited when it fails). */
  private async authenticate(req: IncomingMessage, res: ServerResponse, ctx: CallContext, server: string): Promise<Authenticated | null> {
    const rawQuery = (req.url ?? '').split('?')[1] ?? '';
    const screened = screenRequest(req, rawQuery);
    if (screened) return this.deny(req, res, ctx, screened.code, screened.message);

    // 1. Authenticate: the vault key, on every message.
    const token = readVaultToken(req.headers);
    const minted = token !== null && isMintedToken(token);
    if (token === null || !(minted || tokenLooksValid(token))) return this.deny(req, res, ctx, 'invalid_key');
    const hash = hashToken(token);
    let key = this.o.cache.get(hash);
    if (!key) {
      let record;
      try {
        if (minted) {
          const r = this.o.minting ? await this.o.minting.resolve(token, hash, ctx.started) : null;
          if (!r) return this.deny(req, res, ctx, 'invalid_key');
          if (!r.ok) return this.deny(req, res, ctx, r.code, r.message);
          record = r.record;
        } else {
          record = await this.o.store.getKeyByHash(hash);
        }
      } catch (err) {
        this.o.log.error({ err }, 'key lookup failed');
        return this.deny(req, res, ctx, 'store_unavailable');
      }
      if (!record) return this.deny(req, res, ctx, 'invalid_key');
      key = this.o.cache.put(record);
    }
    ctx.key = key;
    const status = keyStatus(key.record, ctx.started);
    if (status === 'revoked') return this.deny(req, res, ctx, 'key_revoked');
    if (status === 'expired') return this.deny(req, res, ctx, 'key_expired');

    // 2. The key must be this server's.
    if (mcpServerOf(key.record.vendor) !== server) {
      return this.deny(req, res, ctx, 'endpoint_not_allowed', `This key is for ${key.record.vendor}, not the MCP server ${server}.`);
    }
    const vendor = this.o.catalogFor(key.record.tenantId).get(MCP_VENDOR_PREFIX + server);
    if (!isMcpVendor(vendor)) return this.deny(req, res, ctx, 'endpoint_not_allowed', `No MCP server ${server} is configured for this key.`);
    const secret = vendor.mcp.secret(key.record.mode);
    if (secret === undefined) return this.deny(req, res, ctx, 'upstream_error', `No ${key.record.mode} credential is configured for the MCP server ${server}.`);
    return { key, hash, vendor, secret };
  }

  /** Reads and screens one message; null when it was refused (answered and audited). */
  private async readMessage(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: CallContext,
    server: string,
    auth: Authenticated,
    answer: (status: number, id: string | number | null, rpcCode: number, code: ErrorCode, message: string) => void,
  ): Promise<ScreenedMessage | null> {
    const { key, vendor } = auth;
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') return this.deny(req, res, ctx, 'invalid_request', 'Send the JSON-RPC message as application/json.');
    const read = await this.readBody(req, ctx.started, vendor.mcp.maxMessageBytes);
    if (!read.ok) return this.deny(req, res, ctx, read.reason === 'timeout' ? 'request_timeout' : 'body_too_large');
    const msg = screenMessage(read.body);
    if (!msg.ok) {
      ctx.path = `/mcp/${server}${msg.method ? `/${msg.method.slice(0, 64)}` : ''}`;
      // A refused method with a usable id is answered in JSON-RPC (the client reads it); a
      // message that is not one is refused at the HTTP level.
      if (msg.id !== undefined) answer(200, msg.id, msg.rpcCode, msg.code, msg.message);
      else answer(400, null, msg.rpcCode, msg.code, msg.message);
      this.record(ctx, key, ERRORS[msg.code].status, 'deny', msg.code, 0, null);
      return null;
    }
    const message = msg.message;
    if (message.method === 'tools/call') {
      const tool = message.toolName!;
      ctx.path = `/tools/call/${tool}`;
      if (!toolAllowed(decodeTools(key.record.allowedEndpoints), tool)) {
        answer(200, message.id, RpcCode.InvalidParams, 'endpoint_not_allowed', `Tool ${tool} is not in this key's allowed_tools.`);
        this.record(ctx, key, ERRORS.endpoint_not_allowed.status, 'deny', 'endpoint_not_allowed', 0, null);
        return null;
      }
    }
    return message;
  }

  /** The older HTTP+SSE transport: GET opens the stream that carries every answer of the session. */
  private async openLegacySession(_req: IncomingMessage, res: ServerResponse, ctx: CallContext, server: string, auth: Authenticated): Promise<void> {
    if (this.legacy.size >= MAX_LEGACY_SESSIONS) {
      res.setHeader('retry-after', '10');
      return this.sendHttpError(res, 'rate_limited', 'Too many open SSE sessions on this process; use Streamable HTTP ({PROXY}/mcp/<server>).', ctx.requestId);
    }
    const transport = new SSEServerTransport(`/mcp/${server}/messages`, res);
    const session: LegacySession = { server, keyHash: auth.hash, key: auth.key, transport };
    // Each message of the session is its own call: its own request id, time and key as last checked.
    const ctxOf = (): CallContext => ({ requestId: `req_${randomUUID().replace(/-/g, '')}`, address: ctx.address, started: this.now(), path: ctx.path, key: session.key });
    const mcpServer = this.serverFor(ctxOf, auth.vendor, auth.secret);
    this.legacy.set(transport.sessionId, session);
    res.on('close', () => {
      this.legacy.delete(transport.sessionId);
      mcpServer.close().catch(() => undefined);
    });
    await mcpServer.connect(transport);
  }

  /** A message of an HTTP+SSE session: checked here, answered on the session's stream. */
  private async legacyMessage(req: IncomingMessage, res: ServerResponse, ctx: CallContext, server: string, auth: Authenticated): Promise<void> {
    const sessionId = new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('sessionId') ?? '';
    const session = this.legacy.get(sessionId);
    // A session belongs to the key that opened it: another key cannot post into it.
    if (!session || session.keyHash !== auth.hash || session.server !== server) {
      this.deny(req, res, ctx, 'invalid_request', 'No such SSE session for this key (sessions live on the process that opened them).');
      return;
    }
    session.key = auth.key;
    const refuse = (status: number, id: string | number | null, rpcCode: number, code: ErrorCode, message: string) => {
      if (id === null) return this.sendRpcError(res, status, null, rpcCode, code, message, ctx.requestId);
      session.transport.send({ jsonrpc: '2.0', id, error: { code: rpcCode, message: `${message} (keyleash: ${code})`, data: { code, message, request_id: ctx.requestId } } }).catch(() => undefined);
      res.writeHead(202, { 'x-keyleash-request-id': ctx.requestId }).end('Accepted');
    };
    const message = await this.readMessage(req, res, ctx, server, auth, refuse);
    if (!message) return;
    await session.transport.handlePostMessage(req, res, message.raw);
  }

  /** A message over Streamable HTTP, answered on its own response. */
  private async streamableMessage(req: IncomingMessage, res: ServerResponse, ctx: CallContext, server: string, auth: Authenticated): Promise<void> {
    const { requestId } = ctx;
    const { key, vendor, secret } = auth;
    // 3. Read and screen the message before anything else sees it.
    const message = await this.readMessage(req, res, ctx, server, auth, (status, id, rpcCode, code, text) => this.sendRpcError(res, status, id, rpcCode, code, text, requestId));
    if (!message) return;
    if (message.kind === 'notification') {
      // Notifications need no answer and nothing upstream depends on them.
      res.writeHead(202, { 'x-keyleash-request-id': requestId }).end();
      return;
    }

    // 4a. A plain tools/call (no progress to relay) is answered here as one JSON response: the
    // message is already screened, so the per-message SDK server below would only add cost.
    if (message.method === 'tools/call' && message.progressToken === undefined && plainJsonCall(req)) {
      const params = message.raw.params as { arguments?: Record<string, unknown> };
      let payload: object;
      try {
        const result = await this.callTool(ctx, key, vendor, secret, echoPatternsFor(vendor, secret), message.toolName!, params.arguments ?? {}, undefined, async () => undefined);
        payload = { jsonrpc: '2.0', id: message.id, result };
      } catch (err) {
        if (!(err instanceof RpcError)) this.o.log.error({ err, requestId }, 'tools/call failed');
        const e = err instanceof RpcError ? err : new RpcError(RpcCode.InternalError, 'Internal error');
        payload = { jsonrpc: '2.0', id: message.id, error: { code: e.code, message: e.message, ...(e.data !== undefined ? { data: e.data } : {}) } };
      }
      const body = JSON.stringify(payload);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-keyleash-request-id': requestId });
      res.end(body);
      return;
    }

    // 4b. Anything else is answered by an MCP server of our own, one per message (stateless),
    // whose tools are the upstream's as far as the key allows.
    const mcpServer = this.serverFor(() => ctx, vendor, secret);
    const withProgress = message.method === 'tools/call' && message.progressToken !== undefined;
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: !withProgress });
    res.on('close', () => {
      transport.close().catch(() => undefined);
      mcpServer.close().catch(() => undefined);
    });
    await mcpServer.connect(transport);
    res.setHeader('x-keyleash-request-id', requestId);
    await transport.handleRequest(req, res, message.raw);
  }

  /** An MCP server of our own for one message (or one HTTP+SSE session); `ctxOf` gives each call its context. */
  private serverFor(ctxOf: () => CallContext, vendor: McpVendor, secret: string): Server {
    const def = vendor.mcp;
    const echoes = echoPatternsFor(vendor, secret);
    const server = new Server({ name: `keyleash-${def.name}`, version: SERVER_VERSION }, { capabilities: { tools: {} } });

    server.setRequestHandler(ListToolsRequestSchema, async (request) => {
      const ctx = ctxOf();
      const record = ctx.key!.record;
      const params = request.params?.cursor !== undefined ? { cursor: request.params.cursor } : {};
      const listed = await this.withSession(vendor, record.tenantId, record.mode, secret, true, (c) => c.listTools(params));
      if (!listed.ok) throw new RpcError(RpcCode.InternalError, ERRORS[listed.code].message, { code: listed.code, request_id: ctx.requestId });
      const globs = decodeTools(record.allowedEndpoints);
      const result: ListToolsResult = { ...listed.value, tools: listed.value.tools.filter((t) => toolAllowed(globs, t.name)) };
      return scrubbed(result, echoes, false);
    });

    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      const ctx = ctxOf();
      const tool = request.params.name;
      ctx.path = `/tools/call/${tool}`;
      // Checked before the message got here; checked again against the key as it is now.
      if (!toolAllowed(decodeTools(ctx.key!.record.allowedEndpoints), tool)) {
        this.record(ctx, ctx.key, ERRORS.endpoint_not_allowed.status, 'deny', 'endpoint_not_allowed', 0, null);
        throw new RpcError(RpcCode.InvalidParams, `Tool ${tool} is not in this key's allowed_tools. (keyleash: endpoint_not_allowed)`, { code: 'endpoint_not_allowed', request_id: ctx.requestId });
      }
      const args = request.params.arguments ?? {};
      return this.callTool(ctx, ctx.key!, vendor, secret, echoes, tool, args, request.params._meta?.progressToken, extra.sendNotification);
    });
    return server;
  }

  /** One tools/call: price → reserve → forward → settle → audit. Refusals are tool errors the model can read. */
  private async callTool(
    ctx: CallContext,
    key: CachedKey,
    vendor: McpVendor,
    secret: string,
    echoes: EchoPatterns,
    tool: string,
    args: Record<string, unknown>,
    progressToken: string | number | undefined,
    notify: (n: { method: 'notifications/progress'; params: { progressToken: string | number; progress: number; total?: number; message?: string } }) => Promise<void>,
  ): Promise<CallToolResult> {
    const def = vendor.mcp;
    const record = key.record;
    const refuse = (code: ErrorCode, message?: string, extra?: Record<string, unknown>): CallToolResult => {
      this.record(ctx, key, ERRORS[code].status, 'deny', code, 0, null);
      return toolError(code, message ?? ERRORS[code].message, ctx.requestId, extra);
    };

    // Price, from the arguments alone.
    const price = priceToolCall(def.pricing, tool, args);
    let estimate = 0;
    if (price.kind === 'invalid') return refuse('invalid_amount', price.reason, price.param ? { param: price.param } : undefined);
    if (price.kind === 'unknown') {
      if (record.dailyCapMicros !== null) return refuse('cost_unknown', `${price.reason}; this key has a cap, so the call is not made.`);
      estimate = price.estimate ?? 0;
    } else if (price.kind === 'priced') {
      estimate = price.micros;
    } else {
      return refuse('cost_unknown', 'This tool cannot be priced.');
    }
    if (!this.o.audit.accepting) return refuse('store_unavailable', 'The audit log cannot be written; nothing is forwarded.');

    // Reserve, durably, before the upstream sees the call.
    const reservationId = `rsv_${randomUUID().replace(/-/g, '')}`;
    let reserved;
    try {
      reserved = await this.o.store.reserve({
        reservationId,
        keyId: record.id,
        day: utcDay(ctx.started),
        amountMicros: estimate,
        requestId: ctx.requestId,
        method: AUDIT_METHOD,
        path: ctx.path,
        now: ctx.started,
      });
    } catch (err) {
      this.o.log.error({ err }, 'reservation failed');
      return refuse('store_unavailable');
    }
    if (!reserved.ok) {
      if (reserved.code === 'key_revoked') this.o.cache.markRevoked(record.tokenHash, ctx.started);
      const r = reserveRefusal(reserved, estimate);
      return refuse(r.code, r.message, { ...r.extra, ...(r.retryAfterSeconds !== undefined ? { retry_after_seconds: r.retryAfterSeconds } : {}) });
    }
    if (stepChannel.hasSubscribers) stepChannel.publish({ step: 'reserved', requestId: ctx.requestId });

    // Forward on keyleash's upstream session; progress is relayed as it comes.
    const sentAt = this.now();
    const onprogress =
      progressToken === undefined
        ? undefined
        : (p: { progress: number; total?: number; message?: string }) => {
            const params: { progressToken: string | number; progress: number; total?: number; message?: string } = { progressToken, progress: p.progress };
            if (p.total !== undefined) params.total = p.total;
            if (p.message !== undefined) params.message = echoes.scrubString(p.message);
            notify({ method: 'notifications/progress', params }).catch(() => undefined);
          };
    const called = await this.withSession(vendor, record.tenantId, record.mode, secret, false, (c) =>
      c.callTool({ name: tool, arguments: args }, undefined, {
        timeout: def.timeoutMs,
        ...(onprogress ? { onprogress, resetTimeoutOnProgress: true } : {}),
      }),
    );
    const latency = this.now() - sentAt;
    if (stepChannel.hasSubscribers) stepChannel.publish({ step: 'answered', requestId: ctx.requestId });

    if (!called.ok) {
      // Refused before acting (a JSON-RPC error, a connection never made): released; else the estimate stands.
      const settlement: Settlement = called.notExecuted ? { state: 'released' } : { state: 'unknown' };
      await this.settle(reservationId, settlement);
      const cost = called.notExecuted ? 0 : estimate;
      this.record(ctx, key, ERRORS[called.code].status, 'allow', called.code, cost, latency);
      if (called.rpcError) {
        // The upstream's own JSON-RPC error (e.g. invalid arguments), passed on scrubbed.
        throw new RpcError(called.rpcError.code, echoes.scrubString(called.rpcError.message));
      }
      return toolError(called.code, called.code === 'upstream_timeout' ? 'The MCP server did not answer in time.' : 'The MCP server could not be reached or failed.', ctx.requestId);
    }
    const result = called.value as CallToolResult;
    const failed = result.isError === true;
    const settlement: Settlement = failed && def.toolErrors === 'release' ? { state: 'released' } : { state: 'settled', micros: estimate };
    await this.settle(reservationId, settlement);
    if (stepChannel.hasSubscribers) stepChannel.publish({ step: 'settled', requestId: ctx.requestId });
    this.record(ctx, key, 200, 'allow', failed ? 'tool_error' : null, settlement.state === 'released' ? 0 : estimate, latency);
    return scrubbed(result, echoes, failed);
  }

  /**
   * Runs `fn` on the upstream session, opening it if needed; a session the upstream forgot
   * (404: it acted on nothing) is reopened once, and so is any failure of a read (`retryAny`).
   */
  private async withSession<T>(
    vendor: McpVendor,
    tenantId: string,
    mode: 'test' | 'live',
    secret: string,
    retryAny: boolean,
    fn: (c: import('@modelcontextprotocol/sdk/client/index.js').Client) => Promise<T>,
  ): Promise<{ ok: true; value: T } | { ok: false; code: ErrorCode; notExecuted: boolean; rpcError?: { code: number; message: string } }> {
    const def = vendor.mcp;
    for (let attempt = 0; ; attempt++) {
      let client;
      try {
        client = await this.sessions.session(def, tenantId, mode, secret);
      } catch (err) {
        this.o.log.warn({ server: def.name, code: errCode(err) }, 'opening the upstream MCP session failed');
        if (attempt === 0) continue;
        return { ok: false, code: 'upstream_error', notExecuted: true };
      }
      try {
        return { ok: true, value: await fn(client) };
      } catch (err) {
        if (sessionGone(err) || (retryAny && attempt === 0)) {
          this.sessions.drop(def, tenantId, mode, secret, client);
          if (attempt === 0) continue;
        }
        this.o.log.warn({ server: def.name, code: errCode(err) }, 'upstream MCP call failed');
        if (err instanceof McpError) {
          if (err.code === RpcCode.RequestTimeout) return { ok: false, code: 'upstream_timeout', notExecuted: false };
          if (err.code === RpcCode.ConnectionClosed) return { ok: false, code: 'upstream_error', notExecuted: false };
          // A JSON-RPC error answer: the server refused the request (unknown tool, invalid arguments).
          const refusedBefore = [RpcCode.ParseError, RpcCode.InvalidRequest, RpcCode.MethodNotFound, RpcCode.InvalidParams].includes(err.code);
          return { ok: false, code: 'upstream_error', notExecuted: refusedBefore, rpcError: { code: err.code, message: err.message.replace(/^MCP error -?\d+: /, '') } };
        }
        return { ok: false, code: 'upstream_error', notExecuted: sessionGone(err) || notSent(err) };
      }
    }
  }

  private async settle(reservationId: string, outcome: Settlement): Promise<void> {
    try {
      await this.o.store.settle(reservationId, outcome, this.now());
    } catch (err) {
      // The reservation stays open and charged; the reconciler closes it at its estimate.
      this.o.log.error({ err, reservationId }, 'settlement failed; reservation left charged');
    }
  }

  private readBody(req: IncomingMessage, started: number, limit: number): Promise<{ ok: true; body: Buffer } | { ok: false; reason: 'too_large' | 'timeout' | 'aborted' }> {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) return Promise.resolve({ ok: false, reason: 'too_large' });
    const left = Math.max(0, this.o.requestTimeoutMs - (this.now() - started));
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let done = false;
      const finish = (r: { ok: true; body: Buffer } | { ok: false; reason: 'too_large' | 'timeout' | 'aborted' }) => {
        if (done) return;
        done = true;
        clearTimeout(total);
        clearTimeout(gap);
        resolve(r);
      };
      const timed = !req.complete;
      const total = timed ? setTimeout(() => finish({ ok: false, reason: 'timeout' }), left) : undefined;
      const gap = timed ? setTimeout(() => finish({ ok: false, reason: 'timeout' }), this.o.requestIdleTimeoutMs) : undefined;
      req.on('data', (c: Buffer) => {
        if (done) return;
        gap?.refresh();
        size += c.length;
        if (size > limit) return finish({ ok: false, reason: 'too_large' });
        chunks.push(c);
      });
      req.on('end', () => finish({ ok: true, body: Buffer.concat(chunks, size) }));
      req.on('error', () => finish({ ok: false, reason: 'aborted' }));
      req.on('close', () => finish({ ok: false, reason: 'aborted' }));
    });
  }

  /** Refuses the request at the HTTP level and audits it; null, for the callers that return it. */
  private deny(req: IncomingMessage, res: ServerResponse, ctx: CallContext, code: ErrorCode, message?: string): null {
    if (code === 'invalid_key') {
      const wait = this.throttle.retryAfter(ctx.address, ctx.started);
      this.throttle.recordFailure(ctx.address, ctx.started);
      if (wait > 0) {
        res.setHeader('retry-after', String(wait));
        code = 'rate_limited';
        message = 'Too many failed authentications from this address.';
      }
    }
    // A refused body is not read further; the connection is not kept for more.
    res.shouldKeepAlive = false;
    req.resume();
    if (ERRORS[code].status === 401) res.setHeader('www-authenticate', 'Bearer realm="keyleash"');
    this.sendHttpError(res, code, message, ctx.requestId);
    this.record(ctx, ctx.key, ERRORS[code].status, 'deny', code, 0, null);
    return null;
  }

  private sendHttpError(res: ServerResponse, code: ErrorCode, message: string | undefined, requestId: string, status: number = ERRORS[code].status): void {
    const body = JSON.stringify(errorBody(code, message, { requestId }));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-keyleash-request-id': requestId });
    res.end(body);
  }

  private sendRpcError(res: ServerResponse, status: number, id: string | number | null, rpcCode: number, code: ErrorCode, message: string, requestId: string): void {
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id,
      error: { code: rpcCode, message: `${message} (keyleash: ${code})`, data: { code, message, request_id: requestId, docs: `docs/errors.md#${code}` } },
    });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-keyleash-request-id': requestId });
    res.end(body);
  }

  private record(ctx: CallContext, key: CachedKey | null, status: number, decision: 'allow' | 'deny', code: string | null, costMicros: number, upstreamLatencyMs: number | null): void {
    const k = key?.record;
    const record = {
      id: `aud_${randomUUID().replace(/-/g, '')}`,
      tenantId: k?.tenantId ?? 'default',
      time: ctx.started,
      requestId: ctx.requestId,
      keyId: k?.id ?? null,
      label: k?.label ?? null,
      vendor: k?.vendor ?? null,
      mode: k?.mode ?? null,
      method: AUDIT_METHOD,
      path: ctx.path,
      status,
      decision,
      code,
      costMicros,
      upstreamLatencyMs,
    } satisfies AuditRecord;
    // An anonymous flood is summed up rather than written row by row.
    if (decision === 'allow' || k || this.denials.admit(ctx.address)) this.o.audit.push(record);
    if (callChannel.hasSubscribers) callChannel.publish({ record, overheadMs: this.now() - ctx.started - (upstreamLatencyMs ?? 0) });
  }

  /** Ends every open HTTP+SSE session stream, so the listener can close. */
  async endStreams(): Promise<void> {
    const open = [...this.legacy.values()];
    this.legacy.clear();
    await Promise.all(open.map((s) => s.transport.close().catch(() => undefined)));
  }

  async close(): Promise<void> {
    this.denials.stop();
    await this.endStreams();
    await this.sessions.close();
  }
}

/**
 * True when a message may be answered as plain JSON: the client accepts it (as Streamable HTTP
 * requires every client to) and speaks a protocol version we know; otherwise the SDK's transport
 * answers, with its own 406 or 400.
 */
function plainJsonCall(req: IncomingMessage): boolean {
  const accept = req.headers.accept ?? '';
  if (!accept.includes('application/json') || !accept.includes('text/event-stream')) return false;
  const version = req.headers['mcp-protocol-version'];
  return version === undefined || (typeof version === 'string' && SUPPORTED_PROTOCOL_VERSIONS.includes(version));
}

/**
 * A JSON-RPC error answer. Not an McpError, whose message carries an "MCP error <code>:" prefix
 * that the agent's client would add a second time.
 */
class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

/** A refusal the model reads as the tool's answer: the code and a one-line reason. */
function toolError(code: ErrorCode, message: string, requestId: string, extra?: Record<string, unknown>): CallToolResult {
  return {
    isError: true,
    content: [{ type: 'text', text: `keyleash refused this call (${code}): ${message}` }],
    structuredContent: { code, message, request_id: requestId, ...extra },
    _meta: { 'keyleash/code': code, 'keyleash/request_id': requestId },
  };
}

/** The upstream's answer with every echo of the real credential masked (same length, so valid JSON stays valid). */
function scrubbed<T>(value: T, echoes: EchoPatterns, isError: boolean): T {
  const raw = Buffer.from(JSON.stringify(value));
  const out = isError ? echoes.scrubError(raw) : echoes.scrub(raw);
  return out === raw ? value : (JSON.parse(out.toString('utf8')) as T);
}

const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

function errCode(err: unknown): string | number | undefined {
  const e = err as { code?: string | number; cause?: { code?: string } };
  return e?.cause?.code ?? e?.code;
}

/** A fetch that failed before the request left (connection refused, no such host). */
function notSent(err: unknown): boolean {
  const c = errCode(err);
  return typeof c === 'string' && NOT_SENT.has(c);
}

