import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AuditRecord } from '../store.js';

// The live audit tail across replicas: each replica publishes its audit records on a Redis
// channel while anyone, on any replica, is tailing (checked once a second with PUBSUB NUMSUB, so
// no tail costs the proxy nothing), and each replica with a tail open subscribes to it.

export interface AuditFeed {
  subscribe(fn: (r: AuditRecord) => void): () => void;
}

const NUMSUB_EVERY_MS = 1_000;

export class RedisAuditFeed implements AuditFeed {
  private readonly replica = randomBytes(9).toString('base64url');
  private readonly channel: string;
  private readonly pub: Redis;
  private sub: Redis | null = null;
  private readonly listeners = new Set<(r: AuditRecord) => void>();
  private tailing = false;
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribeLocal: () => void;

  constructor(
    url: string,
    prefix: string,
    local: { subscribe(fn: (r: AuditRecord) => void): () => void },
    private readonly log: Logger,
  ) {
    this.channel = `${prefix}audit:tail`;
    this.pub = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false });
    this.pub.on('error', () => undefined);
    this.timer = setInterval(() => {
      this.pub.pubsub('NUMSUB', this.channel).then(
        (r) => (this.tailing = Number((r as [string, number])[1]) > 0),
        () => (this.tailing = false),
      );
    }, NUMSUB_EVERY_MS);
    this.timer.unref();
    this.unsubscribeLocal = local.subscribe((r) => {
      for (const fn of this.listeners) fn(r);
      if (this.tailing) this.pub.publish(this.channel, JSON.stringify({ from: this.replica, r })).catch(() => undefined);
    });
  }

  subscribe(fn: (r: AuditRecord) => void): () => void {
    this.listeners.add(fn);
    if (!this.sub) {
      this.sub = this.pub.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null });
      this.sub.on('error', () => undefined);
      this.sub.on('message', (_channel: string, message: string) => {
        try {
          const { from, r } = JSON.parse(message) as { from: string; r: AuditRecord };
          if (from === this.replica) return;
          for (const l of this.listeners) l(r);
        } catch (err) {
          this.log.warn({ err }, 'an audit tail message from another replica could not be read');
        }
      });
      this.sub.subscribe(this.channel).catch((err: unknown) => this.log.warn({ err }, 'subscribing to the audit tail channel failed'));
    }
    return () => {
      this.listeners.delete(fn);
      if (this.listeners.size === 0 && this.sub) {
        const sub = this.sub;
        this.sub = null;
        sub.quit().catch(() => sub.disconnect());
      }
    };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.unsubscribeLocal();
    this.listeners.clear();
    await this.sub?.quit().catch(() => undefined);
    await this.pub.quit().catch(() => undefined);
  }
}
