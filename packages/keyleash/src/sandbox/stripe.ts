import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import qs from 'qs';

// A local stand-in for api.stripe.com: `keyleash dev` points the Stripe vendor at it so a
// newcomer needs no Stripe account, and the tests use it to record exactly what Stripe would
// have received. It speaks Stripe's shapes for the calls agents make most, not all of Stripe.

export interface RecordedRequest {
  method: string;
  path: string;
  query: string;
  headers: IncomingHttpHeaders;
  body: string;
  form: Record<string, unknown>;
  at: number;
}

export interface SandboxResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  delayMs?: number;
}

export interface StripeSandboxOptions {
  /** Secrets the sandbox accepts as `Authorization: Bearer …`. */
  secrets: string[];
}

export interface StripeSandbox {
  readonly server: Server;
  readonly requests: RecordedRequest[];
  /** Overrides the built-in answers; return undefined to fall through to them. */
  respond: ((req: RecordedRequest) => SandboxResponse | undefined | Promise<SandboxResponse | undefined>) | null;
  url: string;
  listen(port?: number, host?: string): Promise<string>;
  close(): Promise<void>;
}

const DECLINING = new Set(['pm_card_chargeDeclined', 'pm_card_visa_chargeDeclined', 'tok_chargeDeclined']);

function id(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;
}

function stripeError(status: number, type: string, message: string, extra: Record<string, unknown> = {}): SandboxResponse {
  return { status, body: { error: { type, message, ...extra } } };
}

function mask(secret: string): string {
  return `${secret.slice(0, 8)}${'*'.repeat(Math.max(0, secret.length - 12))}${secret.slice(-4)}`;
}

const objects = new Map<string, Record<string, unknown>>();

function builtIn(req: RecordedRequest): SandboxResponse {
  const f = req.form as Record<string, string | undefined>;
  const seg = req.path.split('/').filter(Boolean);
  const created = Math.floor(Date.now() / 1000);
  const now = { created, livemode: false };

  // The account's balance: the harmless read `keyleash doctor` checks a secret with.
  if (req.method === 'GET' && req.path === '/v1/balance') {
    return { status: 200, body: { object: 'balance', available: [{ amount: 0, currency: 'usd' }], pending: [{ amount: 0, currency: 'usd' }], livemode: false } };
  }
  if (req.method === 'POST' && seg.length === 2 && seg[1] === 'payment_intents') {
    if (!f.amount || !f.currency) return stripeError(400, 'invalid_request_error', 'Missing required param: amount.', { param: 'amount' });
    const pi: Record<string, unknown> = {
      id: id('pi'),
      object: 'payment_intent',
      amount: Number(f.amount),
      currency: f.currency,
      customer: f.customer ?? null,
      metadata: f.metadata ?? {},
      status: f.confirm === 'true' ? 'succeeded' : 'requires_payment_method',
      ...now,
    };
    if (f.payment_method && DECLINING.has(f.payment_method)) {
      return stripeError(402, 'card_error', 'Your card was declined.', {
        code: 'card_declined',
        decline_code: 'generic_decline',
        payment_intent: { ...pi, status: 'requires_payment_method' },
      });
    }
    objects.set(pi.id as string, pi);
    return { status: 200, body: pi };
  }
  if (seg.length === 3 && seg[1] === 'payment_intents') {
    const pi = objects.get(seg[2]!);
    if (!pi) return stripeError(404, 'invalid_request_error', `No such payment_intent: '${seg[2]}'`, { code: 'resource_missing' });
    if (req.method === 'POST') Object.assign(pi, f.amount ? { amount: Number(f.amount) } : {}, f.metadata ? { metadata: f.metadata } : {});
    return { status: 200, body: pi };
  }
  if (req.method === 'POST' && seg.length === 4 && seg[1] === 'payment_intents' && (seg[3] === 'confirm' || seg[3] === 'capture')) {
    const pi = objects.get(seg[2]!);
    if (!pi) return stripeError(404, 'invalid_request_error', `No such payment_intent: '${seg[2]}'`, { code: 'resource_missing' });
    pi.status = 'succeeded';
    return { status: 200, body: pi };
  }
  const creatable: Record<string, string> = {
    customers: 'customer',
    refunds: 'refund',
    charges: 'charge',
    transfers: 'transfer',
    payouts: 'payout',
    invoiceitems: 'invoiceitem',
    products: 'product',
    prices: 'price',
  };
  const kind = seg.length === 2 ? creatable[seg[1]!] : undefined;
  if (kind && req.method === 'POST') {
    const obj = { id: id(kind.slice(0, 3)), object: kind, ...f, ...now };
    objects.set(obj.id, obj);
    return { status: 200, body: obj };
  }
  if (kind && req.method === 'GET') {
    const data = [...objects.values()].filter((o) => o.object === kind);
    return { status: 200, body: { object: 'list', data, has_more: false, url: req.path } };
  }
  if (seg.length === 3 && creatable[seg[1]!]) {
    const obj = objects.get(seg[2]!);
    if (!obj) return stripeError(404, 'invalid_request_error', `No such ${creatable[seg[1]!]}: '${seg[2]}'`, { code: 'resource_missing' });
    if (req.method === 'DELETE') {
      objects.delete(seg[2]!);
      return { status: 200, body: { id: obj.id, object: obj.object, deleted: true } };
    }
    return { status: 200, body: obj };
  }
  return stripeError(404, 'invalid_request_error', `Unrecognized request URL (${req.method}: ${req.path}).`);
}

async function readAll(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** How long Stripe remembers an Idempotency-Key. */
const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;

export function createStripeSandbox(opts: StripeSandboxOptions): StripeSandbox {
  const requests: RecordedRequest[] = [];
  const accepted = new Set(opts.secrets);
  // As Stripe: a POST with an Idempotency-Key already used (per secret and account) is answered
  // with the first result; with other parameters it is a 400 idempotency_error.
  const idempotent = new Map<string, { fingerprint: string; answer: SandboxResponse; at: number }>();
  const withIdempotency = (rec: RecordedRequest, secret: string, run: () => SandboxResponse): SandboxResponse => {
    const key = rec.headers['idempotency-key'];
    if (rec.method !== 'POST' || typeof key !== 'string' || key === '') return run();
    const slot = `${secret}\0${rec.headers['stripe-account'] ?? ''}\0${key}`;
    const fingerprint = `${rec.path}?${rec.query}\0${rec.body}`;
    const seen = idempotent.get(slot);
    if (seen && rec.at - seen.at < IDEMPOTENCY_TTL_MS) {
      if (seen.fingerprint !== fingerprint) {
        return stripeError(
          400,
          'idempotency_error',
          `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
        );
      }
      return { ...seen.answer, headers: { ...seen.answer.headers, 'idempotent-replayed': 'true' } };
    }
    const answer = run();
    // Stripe saves a result once the endpoint ran: successes and declines, not bad parameters.
    if (answer.status < 400 || answer.status === 402) idempotent.set(slot, { fingerprint, answer, at: rec.at });
    return answer;
  };

  const sandbox: StripeSandbox = {
    server: null as unknown as Server,
    requests,
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
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readAll(req);
    const [path, query = ''] = (req.url ?? '/').split(/\?(.*)/s, 2) as [string, string?];
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path,
      query,
      headers: req.headers,
      body,
      form: type === 'application/x-www-form-urlencoded' ? qs.parse(body, { depth: 10, arrayLimit: 1000 }) : {},
      at: Date.now(),
    };
    requests.push(rec);

    let answer: SandboxResponse | undefined;
    const auth = req.headers.authorization ?? '';
    const secret = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    if (!accepted.has(secret)) {
      answer = stripeError(401, 'invalid_request_error', `Invalid API Key provided: ${mask(secret)}`);
    } else {
      answer = (await sandbox.respond?.(rec)) ?? withIdempotency(rec, secret, () => builtIn(rec));
    }
    if (answer.delayMs) await new Promise((r) => setTimeout(r, answer.delayMs));
    const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
    res.writeHead(answer.status, {
      'content-type': 'application/json',
      'request-id': id('req'),
      'stripe-version': req.headers['stripe-version'] ?? '2024-06-20',
      ...answer.headers,
    });
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
