import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';

// Signed webhooks on the events an operator must hear about. Each delivery is POSTed with
//   Keyleash-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
// and retried with exponential backoff until a 2xx or max_attempts. The delivery log keeps
// every delivery with its attempts (in this process's memory, newest 1,000 per tenant).

export const ALERT_EVENTS = ['cap.exhausted', 'budget.threshold', 'key.revoked', 'kill_switch.used'] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];

export interface WebhookConfig {
  url: string;
  secret: string;
  /** Events to send; "*" for all. */
  events: readonly string[];
}

export interface AlertsConfig {
  webhooks: readonly WebhookConfig[];
  max_attempts: number;
  retry_base_ms: number;
}

export interface DeliveryAttempt {
  at: string;
  status: number | null;
  error: string | null;
}

export interface Delivery {
  object: 'alert_delivery';
  id: string;
  event_id: string;
  type: AlertEvent;
  url: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: DeliveryAttempt[];
  next_attempt_at: string | null;
  created_at: string;
}

/** `Keyleash-Signature` for `body` at unix time `t`. */
export function signature(secret: string, t: number, body: string): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/**
 * Checks a `Keyleash-Signature` header the way a receiver should: the HMAC over "t.body" must
 * match (constant time) and t must be within `toleranceSeconds` of now (replays are refused).
 */
export function verifySignature(secret: string, header: string, body: string, nowSeconds = Math.floor(Date.now() / 1000), toleranceSeconds = 300): boolean {
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds || typeof parts.v1 !== 'string') return false;
  const expected = signature(secret, t, body).split('v1=')[1]!;
  const a = Buffer.from(expected, 'hex');
  const b = Buffer.from(parts.v1, 'hex');
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}

const LOG_SIZE = 1000;

export class AlertService {
  private readonly logs = new Map<string, Delivery[]>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly inflight = new Set<Promise<void>>();
  /** Events already sent, for those sent once per key/budget and window. */
  private readonly once = new Set<string>();
  private closed = false;

  constructor(
    private readonly o: { configFor: (tenantId: string) => AlertsConfig | undefined; log: Logger; now?: () => number },
  ) {}

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** Sends at most once per `dedupeKey` (e.g. a budget's window and threshold) in this process. */
  emitOnce(tenantId: string, dedupeKey: string, type: AlertEvent, data: Record<string, unknown>): void {
    const k = `${tenantId}\u0000${dedupeKey}`;
    if (this.once.has(k)) return;
    if (this.once.size > 100_000) this.once.clear();
    this.once.add(k);
    this.emit(tenantId, type, data);
  }

  emit(tenantId: string, type: AlertEvent, data: Record<string, unknown>): void {
    const cfg = this.o.configFor(tenantId);
    if (!cfg || this.closed) return;
    const hooks = cfg.webhooks.filter((w) => w.events.includes('*') || w.events.includes(type));
    if (!hooks.length) return;
    const eventId = `evt_${randomUUID().replace(/-/g, '')}`;
    const created = new Date(this.now()).toISOString();
    const body = JSON.stringify({ id: eventId, object: 'event', type, created_at: created, tenant: tenantId, data });
    for (const hook of hooks) {
      const d: Delivery = {
        object: 'alert_delivery',
        id: `dlv_${randomUUID().replace(/-/g, '')}`,
        event_id: eventId,
        type,
        url: hook.url,
        state: 'pending',
        attempts: [],
        next_attempt_at: created,
        created_at: created,
      };
      let log = this.logs.get(tenantId);
      if (!log) this.logs.set(tenantId, (log = []));
      log.push(d);
      if (log.length > LOG_SIZE) log.splice(0, log.length - LOG_SIZE);
      this.attempt(d, hook, body, cfg);
    }
  }

  private attempt(d: Delivery, hook: WebhookConfig, body: string, cfg: AlertsConfig): void {
    const p = (async () => {
      const t = Math.floor(this.now() / 1000);
      let status: number | null = null;
      let error: string | null = null;
      try {
        const res = await fetch(hook.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'keyleash-webhooks',
            'keyleash-signature': signature(hook.secret, t, body),
            'keyleash-event': d.type,
            'keyleash-delivery': d.id,
          },
          body,
          redirect: 'manual',
          signal: AbortSignal.timeout(5_000),
        });
        status = res.status;
        await res.body?.cancel().catch(() => {});
      } catch (e) {
        error = (e as Error).name === 'TimeoutError' ? 'timeout' : ((e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message);
      }
      d.attempts.push({ at: new Date(this.now()).toISOString(), status, error });
      if (status !== null && status >= 200 && status < 300) {
        d.state = 'delivered';
        d.next_attempt_at = null;
        return;
      }
      if (d.attempts.length >= cfg.max_attempts || this.closed) {
        d.state = 'failed';
        d.next_attempt_at = null;
        this.o.log.warn({ delivery: d.id, url: hook.url, status, error }, 'alert webhook delivery failed for good');
        return;
      }
      // Exponential backoff with a little jitter: base, 2×, 4×, …
      const wait = cfg.retry_base_ms * 2 ** (d.attempts.length - 1) * (1 + Math.random() * 0.1);
      d.next_attempt_at = new Date(this.now() + wait).toISOString();
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        this.attempt(d, hook, body, cfg);
      }, wait);
      timer.unref();
      this.timers.add(timer);
    })();
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  /** The tenant's deliveries, newest first. */
  deliveries(tenantId: string, limit = 100): Delivery[] {
    return [...(this.logs.get(tenantId) ?? [])].reverse().slice(0, limit);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.inflight]);
  }
}
