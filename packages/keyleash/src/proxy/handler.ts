import { timeOrderedHex } from '../store/ids.js';
import { channel } from 'node:diagnostics_channel';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { Pool } from 'undici';
import type { AuditSink } from '../audit/sink.js';
import { errorBody, type ErrorCode, ERRORS } from '../errors.js';
import { hashToken, tokenLooksValid } from '../keys/token.js';
import { isMintedToken } from '../keys/minted.js';
import type { MintingService } from '../keys/minting.js';
import { isEndpointAllowed } from '../policy/endpoints.js';
import { formatUsd } from '../policy/money.js';
import { encodeSegment, normalizePath } from '../policy/path.js';
import { utcDay } from '../policy/ttl.js';
import { keyStatus, type AuditRecord, type Settlement, type Store } from '../store/store.js';
import { type CallInfo, unitsThatFit, type Vendor, type VendorCatalog } from '../vendors/vendor.js';
import { readVaultToken } from './credentials.js';
import { downstreamResponseHeaders, refusedHeader, upstreamRequestHeaders } from './headers.js';
import type { CachedKey, KeyCache } from './key-cache.js';
import { type CallAudit, relayBody, relayBuffered, relayStream } from './metering.js';
import { reserveRefusal } from './refusal.js';
import { idempotencyOf } from './idempotency.js';
import { resolveLookup } from './lookup.js';
import { AuthThrottle } from './auth-throttle.js';
import { type EchoPatterns, echoPatternsFor } from './leaks.js';
import { DenialAudit, type DenialAuditOptions } from './denial-audit.js';
import { bodyOverridesMethod, METHOD_OVERRIDE, screenRequest } from './screen.js';

export interface ProxyOptions {
  store: Store;
  /** Verifies minted keys (`vk_…_m1.…`) on first use; without it they are refused. */
  minting?: MintingService;
  catalog: VendorCatalog;
  /** The vendors (credentials) of a key's tenant; default: `catalog` for every key. */
  catalogFor?: (tenantId: string) => VendorCatalog;
  /** Other tenants' catalogs, for the API-key headers their SDKs send. */
  extraCatalogs?: readonly VendorCatalog[];
  /** Names that are read as a vendor prefix (`/stripe/...`), configured or not. */
  vendorNames: ReadonlySet<string>;
  cache: KeyCache;
  audit: AuditSink;
  log: Logger;
  maxBodyBytes: number;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** The caller's body must arrive within this of the call's start, with no gap over `requestIdleTimeoutMs`. */
  requestTimeoutMs?: number;
  requestIdleTimeoutMs?: number;
  /** Audit records of denials before authentication, per source address (see denial-audit.ts). */
  anonymousDenials?: DenialAuditOptions;
  connectionsPerUpstream: number;
  now?: () => number;
}

interface CallContext {
  requestId: string;
  address: string;
  started: number;
  method: string;
  path: string;
  key: CachedKey | null;
}

type ReadBody = { ok: true; body: Buffer } | { ok: false; reason: 'too_large' | 'timeout' | 'aborted' };

/** Vendor error bodies up to this size are read whole so echoes of the real secret can be cut. */
const MAX_REDACTED_ERROR_BYTES = 256 * 1024;

// Connection errors that prove the request never left: the vendor cannot have executed it.
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * Published once per proxied call, after its audit record is queued: `{ record, overheadMs }`.
 * Metrics subscribe here; with no subscriber it costs one boolean check.
 */
export const callChannel = channel('keyleash:proxy:call');

/**
 * Published at each durable step of a call (`reserved`, `answered`, `settled`, and `streaming`
 * from the relay): `{ step, requestId }`. Crash tests hook it to kill the process at that point.
 */
export const stepChannel = channel('keyleash:proxy:step');

/** The hot path: authenticate → authorize → price → reserve → forward → settle → audit. */
export class ProxyHandler {
  private readonly pools = new Map<string, Pool>();
  private readonly now: () => number;
  /** Headers besides Authorization that some vendor's SDK sends its API key in (x-api-key). */
  private readonly tokenHeaders: readonly string[];
  private readonly throttle = new AuthThrottle();
  private readonly denials: DenialAudit;

  constructor(private readonly o: ProxyOptions) {
    this.now = o.now ?? Date.now;
    this.denials = new DenialAudit((r) => o.audit.push(r), this.now, o.anonymousDenials ?? { perWindow: 20, windowMs: 60_000 });
    const names = new Set<string>();
    for (const c of [o.catalog, ...(o.extraCatalogs ?? [])]) for (const v of c.values()) for (const h of v.tokenHeaders ?? []) names.add(h.toLowerCase());
    this.tokenHeaders = [...names];
  }

  /** The vault token from a vendor's own API-key header, when no Authorization header was sent. */
  private tokenFromVendorHeaders(headers: IncomingMessage['headers']): string | null {
    if (headers.authorization !== undefined) return null;
    const found = new Set<string>();
    for (const name of this.tokenHeaders) {
      const v = headers[name];
      if (Array.isArray(v)) return null;
      if (typeof v === 'string' && v.trim()) found.add(v.trim());
    }
    return found.size === 1 ? [...found][0]! : null;
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const run = this.run(req, res).catch((err: unknown) => {
      this.o.log.error({ err }, 'proxy handler failed');
      if (!res.headersSent) this.sendError(res, 'internal_error', undefined, { requestId: 'unknown' });
      else res.destroy();
    });
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
  };

  /** Calls started and not yet settled and audited (a drain waits for them). */
  private readonly running = new Set<Promise<void>>();

  get inFlight(): number {
    return this.running.size;
  }

  /** Resolves once every call started so far is settled and audited. */
  async idle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running]);
  }

  private async run(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const ctx: CallContext = {
      requestId: `req_${timeOrderedHex()}`,
      address: req.socket.remoteAddress ?? '',
      started: this.now(),
      method,
      path: (req.url ?? '/').split('?')[0]!.slice(0, 512),
      key: null,
    };

    // 0. Screen: ambiguous credentials and requests are refused.
    const rawQuery = (req.url ?? '').split('?')[1] ?? '';
    const screened = screenRequest(req, rawQuery);
    if (screened) return this.deny(req, res, ctx, screened.code, screened.message);

    // 1. Authenticate.
    const token = readVaultToken(req.headers) ?? this.tokenFromVendorHeaders(req.headers);
    const minted = token !== null && isMintedToken(token);
    if (token === null || !(minted || tokenLooksValid(token))) return this.deny(req, res, ctx, 'invalid_key');
    const hash = hashToken(token);
    let key = this.o.cache.get(hash);
    if (!key) {
      let record;
      try {
        if (minted) {
          // Verified before the store is asked anything; created there on its first use.
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

    // 2. Authorize on the normalized path; anything ambiguous is refused, not guessed.
    const norm = normalizePath(req.url ?? '');
    if (!norm.ok) return this.deny(req, res, ctx, 'endpoint_not_allowed', `The path is ambiguous (${norm.reason}).`);
    let segments = norm.segments;
    const first = segments[0];
    if (first !== undefined && (this.o.vendorNames.has(first) || this.o.catalog.has(first))) {
      if (first !== key.record.vendor) {
        return this.deny(req, res, ctx, 'endpoint_not_allowed', `This key is for ${key.record.vendor}, not ${first}.`);
      }
      segments = segments.slice(1);
    }
    ctx.path = '/' + segments.map(encodeSegment).join('/');
    if (!isEndpointAllowed(key.patterns, method, segments)) {
      return this.deny(req, res, ctx, 'endpoint_not_allowed', `${method} ${ctx.path} is not in this key's allowed_endpoints.`);
    }
    const vendor = (this.o.catalogFor ? this.o.catalogFor(key.record.tenantId) : this.o.catalog).get(key.record.vendor);
    const secret = vendor?.secret(key.record.mode);
    if (!vendor || secret === undefined) {
      return this.deny(req, res, ctx, 'upstream_error', `No ${key.record.mode} credential is configured for ${key.record.vendor}.`);
    }

    // Headers that pick another account or organisation to act on come from configuration only.
    const refusedName = refusedHeader(req.rawHeaders, vendor.refusedHeaders ?? []);
    if (refusedName) {
      return this.deny(req, res, ctx, 'header_not_allowed', `The ${refusedName} header is not accepted: it would choose the ${vendor.name} account or organisation to act on.`);
    }

    // 3. Read and prepare the body (the whole body: it is priced, and re-framed upstream).
    const read = await this.readBody(req, ctx.started);
    if (!read.ok) return this.deny(req, res, ctx, read.reason === 'timeout' ? 'request_timeout' : 'body_too_large');
    const prepared = vendor.prepareBody(read.body, req.headers['content-type'], { method, segments });
    if (!prepared.ok) return this.deny(req, res, ctx, 'invalid_body', prepared.reason);
    if (bodyOverridesMethod(prepared.body, prepared.contentType)) return this.deny(req, res, ctx, 'invalid_request', METHOD_OVERRIDE);

    // 4. Price.
    const call: CallInfo = {
      method,
      segments,
      query: norm.query,
      body: prepared.body,
      contentType: prepared.contentType,
      callerBody: read.body,
    };
    let price = vendor.price(call);
    if (price.kind === 'lookup') {
      price = await resolveLookup(this.pool(vendor.origin), price, { ...vendor.fixedHeaders, ...vendor.authHeaders(secret) });
    }
    let estimate = 0;
    if (price.kind === 'invalid') {
      return this.deny(req, res, ctx, 'invalid_amount', price.reason, price.param);
    } else if (price.kind === 'unknown') {
      if (key.record.dailyCapMicros !== null) return this.deny(req, res, ctx, 'cost_unknown', price.reason);
      estimate = price.estimate ?? 0;
    } else {
      estimate = price.micros;
    }

    // Like Vault, a call that cannot be audited is not made.
    if (!this.o.audit.accepting) return this.deny(req, res, ctx, 'store_unavailable', 'The audit log cannot be written; nothing is forwarded.');

    // 5. Reserve, durably, before a byte goes to the vendor.
    const reservationId = `rsv_${timeOrderedHex()}`;
    // A vault token sent in a vendor's API-key header never goes upstream.
    const headers = upstreamRequestHeaders(
      req.headers,
      { ...vendor.fixedHeaders, ...vendor.authHeaders(secret) },
      prepared.contentType,
      prepared.body.length,
      ctx.requestId,
      this.tokenHeaders,
      vendor.forwardHeaders,
    );
    const idem = idempotencyOf(req.headers, headers, vendor, method, ctx.path, norm.query, prepared.body);
    if (!idem.ok) return this.deny(req, res, ctx, 'invalid_request', idem.reason);
    let reserved;
    try {
      const reserve = () =>
        this.o.store.reserve({
          reservationId,
          keyId: key.record.id,
          day: utcDay(ctx.started),
          amountMicros: estimate,
          requestId: ctx.requestId,
          method,
          path: ctx.path,
          now: ctx.started,
          ...(idem.value ? { idempotency: idem.value } : {}),
        });
      reserved = await reserve();
      // A call that can be made smaller (a Twilio call's TimeLimit) is cut to what the limit hit
      // has left, and reserved again; a few tries, since another limit may be the next to bind.
      const shrink = price.kind === 'priced' ? price.shrink : undefined;
      for (let i = 0; shrink && i < 3 && !reserved.ok && reserved.code === 'cap_exhausted'; i++) {
        const units = unitsThatFit({ ...shrink, units: estimate / shrink.unitMicros }, reserved.capMicros - reserved.spentMicros);
        if (units === undefined) break;
        call.body = shrink.body(units);
        estimate = units * shrink.unitMicros;
        reserved = await reserve();
      }
    } catch (err) {
      this.o.log.error({ err }, 'reservation failed');
      return this.deny(req, res, ctx, 'store_unavailable');
    }
    if (!reserved.ok) {
      if (reserved.code === 'key_revoked') this.o.cache.markRevoked(hash, ctx.started);
      const refusal = reserveRefusal(reserved, estimate);
      return this.deny(req, res, ctx, refusal.code, refusal.message, undefined, refusal.extra, refusal.retryAfterSeconds);
    }

    if (stepChannel.hasSubscribers) stepChannel.publish({ step: 'reserved', requestId: ctx.requestId });

    // 6. Forward, to the vendor's own target for the call (e.g. its account in the path).
    const target = vendor.rewriteTarget ? vendor.rewriteTarget({ segments, query: norm.query }, secret) : { segments, query: norm.query };
    const upstreamPath = '/' + target.segments.map(encodeSegment).join('/') + (target.query ? `?${target.query}` : '');
    // An idempotent retry is forwarded uncharged (the vendor answers the original result): with
    // no reservation of its own, its settle is a no-op.
    const replay = reserved.replayOf !== undefined;
    await this.forward(res, ctx, vendor, secret, headers, upstreamPath, call, replay ? `${reservationId}_replay` : reservationId, replay ? 0 : estimate);
  }

  private async forward(
    res: ServerResponse,
    ctx: CallContext,
    vendor: Vendor,
    secret: string,
    headers: Record<string, string | string[]>,
    upstreamPath: string,
    prepared: CallInfo,
    reservationId: string,
    estimate: number,
  ): Promise<void> {
    // Pricing may have fitted the body to the cap (a Twilio call's TimeLimit) after the headers were built.
    if (headers['content-length'] !== undefined) headers['content-length'] = String(prepared.body.length);
    const sentAt = this.now();
    const abort = vendor.meter ? new AbortController() : undefined;
    let upstream;
    try {
      upstream = await this.pool(vendor.origin).request({
        path: upstreamPath,
        method: ctx.method as 'GET',
        headers,
        body: prepared.body.length ? prepared.body : null,
        ...(abort ? { signal: abort.signal } : {}),
      });
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      const notSent = NOT_SENT.has(code);
      const timeout = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT';
      const errCode: ErrorCode = timeout ? 'upstream_timeout' : 'upstream_error';
      const record = this.auditRecord(ctx, ERRORS[errCode].status, 'allow', errCode, notSent ? 0 : estimate, this.now() - sentAt);
      await this.settle(reservationId, notSent ? { state: 'released' } : { state: 'unknown' }, record);
      this.o.log.warn({ code, requestId: ctx.requestId, vendor: vendor.name }, 'upstream call failed');
      this.sendError(res, errCode, undefined, { requestId: ctx.requestId, vendor });
      return;
    }
    const latency = this.now() - sentAt;
    if (stepChannel.hasSubscribers) stepChannel.publish({ step: 'answered', requestId: ctx.requestId });

    // 7. Settle before the caller sees the answer; a stream is settled when it ends.
    // Every echo of the real secret is masked in what the caller sees, headers and body.
    const echoes = echoPatternsFor(vendor, secret);
    const outHeaders = downstreamResponseHeaders(upstream.headers, ctx.requestId, echoes);
    const outcome = vendor.outcome(upstream.statusCode);
    const meter = outcome === 'executed' ? vendor.meter?.(prepared, { status: upstream.statusCode, headers: upstream.headers }) : undefined;
    if (meter) {
      const relay = meter.mode === 'stream' ? relayStream : relayBuffered;
      const r = await relay({
        res,
        status: upstream.statusCode,
        headers: outHeaders,
        body: upstream.body,
        meter,
        echoes,
        estimate,
        // The audit record carries the settled cost and is written in the same commit.
        settle: (s, a: CallAudit) => this.settle(reservationId, s, this.auditRecord(ctx, a.status, 'allow', a.code, a.cost, latency)),
        extend: (need, wanted) => this.extend(reservationId, need, wanted),
        abort: () => abort?.abort(),
      });
      if (!r.delivered) {
        this.sendError(res, 'upstream_error', 'The vendor executed the call but its answer broke off.', { requestId: ctx.requestId, vendor });
      }
      return;
    }
    const settlement: Settlement =
      outcome === 'executed'
        ? { state: 'settled', micros: estimate }
        : outcome === 'refused'
          ? { state: 'released' }
          : { state: 'unknown' };
    const cost = settlement.state === 'released' ? 0 : estimate;
    // The charge and the call's audit record are durable, in one commit, before the answer.
    await this.settle(reservationId, settlement, this.auditRecord(ctx, upstream.statusCode, 'allow', null, cost, latency));

    if (upstream.statusCode >= 400) {
      await this.relayError(res, upstream.statusCode, outHeaders, upstream.body, echoes, ctx.requestId);
      return;
    }
    // Masking keeps every byte count, so the vendor's Content-Length stays true.
    res.writeHead(upstream.statusCode, outHeaders);
    // The caller leaving or the vendor cutting the body ends the relay; the charge stands either way.
    await relayBody(upstream.body, echoes.stream(), res);
  }

  /** Sends a vendor error answer with any echo of the real secret cut out. */
  private async relayError(
    res: ServerResponse,
    status: number,
    headers: OutgoingHttpHeaders,
    body: Readable,
    echoes: EchoPatterns,
    requestId: string,
  ): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const c of body) {
        size += (c as Buffer).length;
        if (size > MAX_REDACTED_ERROR_BYTES) break;
        chunks.push(c as Buffer);
      }
    } catch (err) {
      this.o.log.debug({ err, requestId }, 'vendor error body ended early');
    }
    if (size > MAX_REDACTED_ERROR_BYTES) {
      // Too large to be an auth error echo; refuse to relay what cannot be checked.
      body.destroy();
      this.sendError(res, 'upstream_error', 'The vendor answered with an error too large to relay.', { requestId });
      return;
    }
    const out = echoes.scrubError(Buffer.concat(chunks));
    res.writeHead(status, { ...headers, 'content-length': out.length });
    res.end(out);
  }

  /** Grows an open reservation by `wanted` (ahead of need), else by exactly `need`; refused past the cap. */
  private async extend(
    reservationId: string,
    need: number,
    wanted: number,
  ): Promise<{ ok: true; added: number } | { ok: false; code: ErrorCode }> {
    try {
      for (const add of wanted > need ? [wanted, need] : [need]) {
        const r = await this.o.store.extendReservation(reservationId, add, this.now());
        if (r.ok) return { ok: true, added: add };
        // A reservation no longer open (reconciled as stale) cannot grow: stop as at the cap.
        const code: string = r.code;
        if (code !== 'cap_exhausted') {
          return { ok: false, code: code !== 'invalid_key' && Object.hasOwn(ERRORS, code) ? (code as ErrorCode) : 'cap_exhausted' };
        }
      }
      return { ok: false, code: 'cap_exhausted' };
    } catch (err) {
      this.o.log.error({ err, reservationId }, 'extending a reservation failed');
      return { ok: false, code: 'store_unavailable' };
    }
  }

  /** Settles the call and writes its audit record in the same commit. */
  private async settle(reservationId: string, outcome: Settlement, record: AuditRecord): Promise<void> {
    const linked = this.o.audit.link(record);
    try {
      await this.o.store.settle(reservationId, outcome, this.now(), linked);
    } catch (err) {
      // The reservation stays open and charged (the reconciler closes it at its estimate); the
      // record goes to the audit batch, which retries until the store takes it.
      this.o.log.error({ err, reservationId }, 'settlement failed; reservation left charged');
      this.o.audit.enqueue(linked);
    }
    if (stepChannel.hasSubscribers) stepChannel.publish({ step: 'settled', requestId: record.requestId });
    this.publishCall(record);
  }

  private pool(origin: string): Pool {
    let p = this.pools.get(origin);
    if (!p) {
      p = new Pool(origin, {
        connections: this.o.connectionsPerUpstream,
        connectTimeout: this.o.connectTimeoutMs,
        headersTimeout: this.o.headersTimeoutMs,
        bodyTimeout: this.o.bodyTimeoutMs,
        keepAliveTimeout: 4_000,
      });
      this.pools.set(origin, p);
    }
    return p;
  }

  /** The time left for a call's body, and the longest gap allowed in it. */
  private bodyLimits(started: number): { left: number; idle: number } {
    const total = this.o.requestTimeoutMs ?? 30_000;
    return { left: Math.min(total, Math.max(0, total - (this.now() - started))), idle: this.o.requestIdleTimeoutMs ?? 10_000 };
  }

  private readBody(req: IncomingMessage, started: number): Promise<ReadBody> {
    const limit = this.o.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) return Promise.resolve({ ok: false, reason: 'too_large' });
    const { left, idle } = this.bodyLimits(started);
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let done = false;
      const finish = (r: ReadBody) => {
        if (done) return;
        done = true;
        clearTimeout(total);
        clearTimeout(gap);
        resolve(r);
      };
      // A body trickled in (or never finished) must not hold the socket and the call open; one
      // already received in full (e.g. while the key was looked up) is not timed.
      const timed = !req.complete;
      const total = timed ? setTimeout(() => finish({ ok: false, reason: 'timeout' }), left) : undefined;
      const gap = timed ? setTimeout(() => finish({ ok: false, reason: 'timeout' }), idle) : undefined;
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

  /** Reads and drops the rest of a refused call's body, cutting the connection if it trickles. */
  private drain(req: IncomingMessage, started: number): void {
    req.resume();
    if (req.complete) return;
    const { left, idle } = this.bodyLimits(started);
    const deadline = this.now() + left;
    const cut = setTimeout(() => req.socket.destroy(), Math.min(left, idle));
    req.on('data', () => {
      if (this.now() > deadline) req.socket.destroy();
      else cut.refresh();
    });
    req.once('end', () => clearTimeout(cut));
    req.once('close', () => clearTimeout(cut));
  }

  private deny(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: CallContext,
    code: ErrorCode,
    message?: string,
    param?: string,
    extra?: Record<string, unknown>,
    retryAfterSeconds?: number,
  ): void {
    if (code === 'invalid_key') {
      // Only failures are throttled: a valid key from the same address (a shared NAT) still passes.
      const wait = this.throttle.retryAfter(ctx.address, ctx.started);
      this.throttle.recordFailure(ctx.address, ctx.started);
      if (wait > 0) {
        code = 'rate_limited';
        message = 'Too many failed authentications from this address.';
        retryAfterSeconds = wait;
      }
    }
    // Do not drain a body refused for its size or its slowness.
    if (code === 'body_too_large' || code === 'request_timeout') res.shouldKeepAlive = false;
    else this.drain(req, ctx.started);
    const vendor = ctx.key ? this.o.catalog.get(ctx.key.record.vendor) : undefined;
    this.sendError(res, code, message, { requestId: ctx.requestId, param, extra, vendor, retryAfterSeconds });
    this.record(ctx, ERRORS[code].status, 'deny', code, 0, null);
  }

  private sendError(
    res: ServerResponse,
    code: ErrorCode,
    message: string | undefined,
    opts: {
      requestId: string;
      param?: string | undefined;
      extra?: Record<string, unknown> | undefined;
      vendor?: Vendor | undefined;
      retryAfterSeconds?: number | undefined;
    },
  ): void {
    const body = JSON.stringify(errorBody(code, message, opts));
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-keyleash-request-id': opts.requestId,
    };
    if (ERRORS[code].status === 401) headers['www-authenticate'] = 'Bearer realm="keyleash"';
    if (opts.retryAfterSeconds !== undefined) headers['retry-after'] = String(opts.retryAfterSeconds);
    if (opts.vendor?.refusalHeaders && code !== 'store_unavailable' && code !== 'rate_limited') {
      Object.assign(headers, opts.vendor.refusalHeaders);
    }
    res.writeHead(ERRORS[code].status, headers);
    res.end(body);
  }

  private auditRecord(
    ctx: CallContext,
    status: number,
    decision: 'allow' | 'deny',
    code: string | null,
    costMicros: number,
    upstreamLatencyMs: number | null,
  ): AuditRecord {
    const k = ctx.key?.record;
    return {
      id: `aud_${timeOrderedHex()}`,
      tenantId: k?.tenantId ?? 'default',
      time: ctx.started,
      requestId: ctx.requestId,
      keyId: k?.id ?? null,
      label: k?.label ?? null,
      vendor: k?.vendor ?? null,
      mode: k?.mode ?? null,
      method: ctx.method,
      path: ctx.path,
      status,
      decision,
      code,
      costMicros,
      upstreamLatencyMs,
    };
  }

  /** A refused call's record: queued for the next audit batch (no settlement to ride with). */
  private record(ctx: CallContext, status: number, decision: 'allow' | 'deny', code: string | null, costMicros: number, upstreamLatencyMs: number | null): void {
    const record = this.auditRecord(ctx, status, decision, code, costMicros, upstreamLatencyMs);
    // An anonymous flood is summed up rather than written row by row.
    if (decision === 'allow' || ctx.key || this.denials.admit(ctx.address)) this.o.audit.push(record);
    this.publishCall(record);
  }

  private publishCall(record: AuditRecord): void {
    if (callChannel.hasSubscribers) {
      const overheadMs = this.now() - record.time - (record.upstreamLatencyMs ?? 0);
      callChannel.publish({ record, overheadMs });
    }
  }

  async close(): Promise<void> {
    this.denials.stop();
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    this.pools.clear();
  }
}
