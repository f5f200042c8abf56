import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Principal } from './principal.js';

// Dashboard sessions. The browser never holds the admin token after login: it holds an
// HttpOnly, SameSite=Strict cookie carrying a signed session (id, who signed in, when), so any
// replica that shares the signing secret accepts it — no sticky sessions. Signing out puts the
// session id on a revocation list shared by every replica (the store), checked on each request.
// Every mutation also needs the session's CSRF token in a header (synchronizer token, derived
// from the session id with the secret): a page on another origin can neither read that token nor
// set the header without a CORS preflight we never allow.

export const SESSION_COOKIE = 'keyleash_session';
export const CSRF_HEADER = 'x-keyleash-csrf';

export interface Session {
  /** The cookie's value: the signed session. */
  readonly id: string;
  /** The session's own random id (what a sign-out revokes). */
  readonly sid: string;
  readonly csrf: string;
  /** Who signed in: the admin token's principal, so the session's changes are attributed to it. */
  readonly principal?: Principal;
  readonly createdAt: number;
  lastSeen: number;
}

/** Signed-out sessions, shared by every replica. */
export interface SessionRevocations {
  revoke(sid: string, expiresAt: number): Promise<void>;
  isRevoked(sid: string): Promise<boolean>;
}

export class MemorySessionRevocations implements SessionRevocations {
  private readonly revoked = new Map<string, number>();
  async revoke(sid: string, expiresAt: number): Promise<void> {
    this.revoked.set(sid, expiresAt);
    const now = Date.now();
    for (const [k, exp] of this.revoked) if (exp < now) this.revoked.delete(k);
  }
  async isRevoked(sid: string): Promise<boolean> {
    return this.revoked.has(sid);
  }
}

export interface SessionStoreOptions {
  /**
   * Idle time after which a session ends. Enforced by the replica that last saw the session;
   * the absolute lifetime holds on every replica.
   */
  idleMs?: number;
  /** Absolute lifetime of a session, however busy. */
  maxAgeMs?: number;
  /** Signs sessions; every replica needs the same one. Default: random, this process only. */
  secret?: Buffer;
  revocations?: SessionRevocations;
  /** The principal a session names, if its admin token still exists. */
  principalOf?: (tenantId: string, name: string) => Principal | null;
  now?: () => number;
}

export type SessionCheck = { ok: true; session: Session } | { ok: false; reason: 'no_session' | 'csrf' };

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Reads one cookie by name from a Cookie header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

interface Payload {
  s: string;
  c: number;
  t?: string;
  n?: string;
}

export class SessionStore {
  private readonly idleMs: number;
  private readonly maxAgeMs: number;
  private readonly secret: Buffer;
  private readonly revocations: SessionRevocations;
  private readonly principalOf: ((tenantId: string, name: string) => Principal | null) | undefined;
  private readonly now: () => number;
  /** Last request per session seen by this replica, for the idle timeout. */
  private readonly lastSeen = new Map<string, number>();

  constructor(o: SessionStoreOptions = {}) {
    this.idleMs = o.idleMs ?? 60 * 60_000;
    this.maxAgeMs = o.maxAgeMs ?? 12 * 60 * 60_000;
    this.secret = o.secret ?? randomBytes(32);
    this.revocations = o.revocations ?? new MemorySessionRevocations();
    this.principalOf = o.principalOf;
    this.now = o.now ?? Date.now;
  }

  get maxAgeSeconds(): number {
    return Math.floor(this.maxAgeMs / 1000);
  }

  private mac(data: string): string {
    return createHmac('sha256', this.secret).update(data).digest('base64url');
  }

  private csrfOf(sid: string): string {
    return this.mac(`csrf:${sid}`);
  }

  create(principal?: Principal): Session {
    const now = this.now();
    const sid = randomBytes(18).toString('base64url');
    const payload: Payload = { s: sid, c: now, ...(principal ? { t: principal.tenantId, n: principal.name } : {}) };
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
    const id = `v1.${body}.${this.mac(`session:${body}`)}`;
    this.lastSeen.set(sid, now);
    return { id, sid, csrf: this.csrfOf(sid), createdAt: now, lastSeen: now, ...(principal ? { principal } : {}) };
  }

  /** The live session named by the request's cookie; undefined when none. */
  async get(req: FastifyRequest): Promise<Session | undefined> {
    const value = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (!value || value.length > 1000) return undefined;
    const parts = value.split('.');
    if (parts.length !== 3 || parts[0] !== 'v1') return undefined;
    const [, body, mac] = parts as [string, string, string];
    if (!timingSafeEqual(digest(mac), digest(this.mac(`session:${body}`)))) return undefined;
    let p: Payload;
    try {
      p = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Payload;
    } catch {
      return undefined;
    }
    const now = this.now();
    if (typeof p.s !== 'string' || typeof p.c !== 'number' || now - p.c > this.maxAgeMs) return undefined;
    const seen = this.lastSeen.get(p.s);
    if (seen !== undefined && now - seen > this.idleMs) {
      this.lastSeen.delete(p.s);
      await this.revocations.revoke(p.s, p.c + this.maxAgeMs);
      return undefined;
    }
    if (await this.revocations.isRevoked(p.s)) return undefined;
    let principal: Principal | undefined;
    if (p.t !== undefined && p.n !== undefined) {
      // A session outlives nothing: its admin token removed from the config ends it.
      principal = this.principalOf?.(p.t, p.n) ?? undefined;
      if (this.principalOf && !principal) return undefined;
    }
    this.lastSeen.set(p.s, now);
    this.sweep(now);
    return { id: value, sid: p.s, csrf: this.csrfOf(p.s), createdAt: p.c, lastSeen: now, ...(principal ? { principal } : {}) };
  }

  /** A session authorizes a request when its cookie is live and, for a mutation, the CSRF header matches. */
  async check(req: FastifyRequest): Promise<SessionCheck> {
    const session = await this.get(req);
    if (!session) return { ok: false, reason: 'no_session' };
    if (!SAFE_METHODS.has(req.method)) {
      const sent = req.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !timingSafeEqual(digest(sent), digest(session.csrf))) return { ok: false, reason: 'csrf' };
    }
    return { ok: true, session };
  }

  /** Signs a session out on every replica. */
  async destroy(session: Session): Promise<void> {
    this.lastSeen.delete(session.sid);
    await this.revocations.revoke(session.sid, session.createdAt + this.maxAgeMs);
  }

  /** Sessions this replica has seen recently. */
  get size(): number {
    return this.lastSeen.size;
  }

  private sweep(now: number): void {
    if (this.lastSeen.size < 10_000) return;
    for (const [k, t] of this.lastSeen) if (now - t > this.idleMs) this.lastSeen.delete(k);
  }
}
