import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Principal } from './principal.js';

// Dashboard sessions. The browser never holds the admin token after login: it holds an
// HttpOnly, SameSite=Strict cookie naming a random session id that maps to server memory. Every
// mutation also needs the session's CSRF token in a header (synchronizer token): a page on another
// origin can neither read that token nor set the header without a CORS preflight we never allow.

export const SESSION_COOKIE = 'keyleash_session';
export const CSRF_HEADER = 'x-keyleash-csrf';

export interface Session {
  readonly id: string;
  readonly csrf: string;
  /** Who signed in: the admin token's principal, so the session's changes are attributed to it. */
  readonly principal?: Principal;
  readonly createdAt: number;
  lastSeen: number;
}

export interface SessionStoreOptions {
  /** Idle time after which a session ends. */
  idleMs?: number;
  /** Absolute lifetime of a session, however busy. */
  maxAgeMs?: number;
  /** Oldest sessions are dropped beyond this many. */
  maxSessions?: number;
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

export class SessionStore {
  // Keyed by the SHA-256 of the id, so a timing side channel on Map lookups reveals nothing useful.
  private readonly sessions = new Map<string, Session>();
  private readonly idleMs: number;
  private readonly maxAgeMs: number;
  private readonly maxSessions: number;
  private readonly now: () => number;

  constructor(o: SessionStoreOptions = {}) {
    this.idleMs = o.idleMs ?? 60 * 60_000;
    this.maxAgeMs = o.maxAgeMs ?? 12 * 60 * 60_000;
    this.maxSessions = o.maxSessions ?? 1000;
    this.now = o.now ?? Date.now;
  }

  get maxAgeSeconds(): number {
    return Math.floor(this.maxAgeMs / 1000);
  }

  create(principal?: Principal): Session {
    this.sweep();
    const now = this.now();
    const session: Session = {
      id: randomBytes(32).toString('base64url'),
      csrf: randomBytes(32).toString('base64url'),
      ...(principal ? { principal } : {}),
      createdAt: now,
      lastSeen: now,
    };
    this.sessions.set(digest(session.id).toString('hex'), session);
    while (this.sessions.size > this.maxSessions) {
      const oldest = this.sessions.keys().next().value;
      if (oldest === undefined) break;
      this.sessions.delete(oldest);
    }
    return session;
  }

  /** The live session named by the request's cookie, refreshed; undefined when none. */
  get(req: FastifyRequest): Session | undefined {
    const id = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (!id || id.length > 100) return undefined;
    const k = digest(id).toString('hex');
    const s = this.sessions.get(k);
    if (!s) return undefined;
    const now = this.now();
    if (now - s.lastSeen > this.idleMs || now - s.createdAt > this.maxAgeMs) {
      this.sessions.delete(k);
      return undefined;
    }
    s.lastSeen = now;
    return s;
  }

  /** A session authorizes a request when its cookie is live and, for a mutation, the CSRF header matches. */
  check(req: FastifyRequest): SessionCheck {
    const session = this.get(req);
    if (!session) return { ok: false, reason: 'no_session' };
    if (!SAFE_METHODS.has(req.method)) {
      const sent = req.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !timingSafeEqual(digest(sent), digest(session.csrf))) return { ok: false, reason: 'csrf' };
    }
    return { ok: true, session };
  }

  destroy(session: Session): void {
    this.sessions.delete(digest(session.id).toString('hex'));
  }

  get size(): number {
    return this.sessions.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [k, s] of this.sessions) {
      if (now - s.lastSeen > this.idleMs || now - s.createdAt > this.maxAgeMs) this.sessions.delete(k);
    }
  }
}
