import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import qs from 'qs';

// What the local vendor stand-ins (twilio.ts, openai.ts, anthropic.ts, echo.ts) share: a plain
// node:http server that records every request exactly as the vendor would have received it,
// answers JSON or a Server-Sent Events stream, and lets a test override any answer.

export interface SandboxRequest {
  method: string;
  path: string;
  query: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  json: unknown;
  /** The body parsed as a form (empty when it is not one). */
  form: Record<string, unknown>;
  at: number;
}

export interface SandboxAnswer {
  status: number;
  /** A JSON body (or a string sent as it is). Ignored when `events` is given. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Waits this long before answering. */
  delayMs?: number;
  /** Answers `text/event-stream`: each string is written as it is, one write at a time. */
  events?: string[];
  /** Waits this long between two events. */
  eventDelayMs?: number;
  /** Waits for this after writing the first event (a test lets the rest go once the caller has the first). */
  afterFirst?: Promise<unknown>;
  /** Drops the connection after the events instead of ending the answer. */
  cut?: boolean;
}

/** What happened to the last stream the sandbox sent. */
export interface StreamRecord {
  total: number;
  sent: number;
  /** True when the reader went away before the last event was written. */
  abandoned: boolean;
  done: Promise<void>;
}

export interface Sandbox {
  readonly server: Server;
  readonly requests: SandboxRequest[];
  readonly streams: StreamRecord[];
  /** Overrides the built-in answers; return undefined to fall through to them. */
  respond: ((req: SandboxRequest) => SandboxAnswer | undefined | Promise<SandboxAnswer | undefined>) | null;
  url: string;
  listen(port?: number, host?: string): Promise<string>;
  close(): Promise<void>;
  /** Forgets recorded requests and streams and any override. */
  reset(): void;
}

export function sandboxId(prefix: string, hexDigits = 32): string {
  return prefix + randomBytes(Math.ceil(hexDigits / 2)).toString('hex').slice(0, hexDigits);
}

export function sseEvent(data: unknown, event?: string): string {
  return `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

/** Splits a reply into word-sized pieces, each counted as one token by the sandboxes. */
export function tokensOf(text: string): string[] {
  return text.match(/\S+\s*|\s+/g) ?? [];
}

async function readAll(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createSandbox(answer: (req: SandboxRequest) => SandboxAnswer | Promise<SandboxAnswer>): Sandbox {
  const sandbox: Sandbox = {
    server: null as unknown as Server,
    requests: [],
    streams: [],
    respond: null,
    url: '',
    async listen(port = 0, host = '127.0.0.1') {
      await new Promise<void>((resolve) => sandbox.server.listen(port, host, resolve));
      sandbox.url = `http://${host}:${(sandbox.server.address() as AddressInfo).port}`;
      return sandbox.url;
    },
    async close() {
      await new Promise<void>((resolve) => {
        sandbox.server.close(() => resolve());
        sandbox.server.closeAllConnections();
      });
    },
    reset() {
      sandbox.requests.length = 0;
      sandbox.streams.length = 0;
      sandbox.respond = null;
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readAll(req);
    const [path, query = ''] = (req.url ?? '/').split(/\?(.*)/s, 2) as [string, string?];
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    let json: unknown;
    if (type === 'application/json') {
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
    }
    const rec: SandboxRequest = {
      method: req.method ?? 'GET',
      path,
      query,
      headers: req.headers,
      body,
      json,
      form: type === 'application/x-www-form-urlencoded' ? qs.parse(body, { depth: 10, arrayLimit: 1000 }) : {},
      at: Date.now(),
    };
    sandbox.requests.push(rec);
    const a = (await sandbox.respond?.(rec)) ?? (await answer(rec));
    if (a.delayMs) await sleep(a.delayMs);

    if (a.events) {
      res.writeHead(a.status, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...a.headers });
      res.flushHeaders();
      let finish!: () => void;
      const stream: StreamRecord = { total: a.events.length, sent: 0, abandoned: false, done: new Promise((r) => (finish = r)) };
      sandbox.streams.push(stream);
      for (const ev of a.events) {
        if (res.destroyed || req.socket.destroyed) {
          stream.abandoned = true;
          break;
        }
        res.write(ev);
        stream.sent++;
        if (stream.sent === 1 && a.afterFirst) await a.afterFirst;
        if (a.eventDelayMs) await sleep(a.eventDelayMs);
      }
      if (a.cut) {
        // Let what was written reach the reader, then drop the connection mid-answer.
        await new Promise<void>((resolve) => res.write('', () => resolve()));
        await sleep(20);
        res.destroy();
      } else res.end();
      finish();
      return;
    }
    const text = a.body === undefined ? '' : typeof a.body === 'string' ? a.body : JSON.stringify(a.body);
    res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
    res.end(text);
  };

  (sandbox as { server: Server }).server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  return sandbox;
}
