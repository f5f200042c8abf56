import type { Logger } from 'pino';
import type { AuditRecord, Store } from '../store/store.js';
import type { AuditChain } from './chain.js';

/**
 * Audit records without a settlement (refusals, the reconciler's) are written in batches off the
 * response path; an answered call's record is written with its settlement instead (see
 * ProxyHandler). A batch that fails to write stays queued and is retried; the queue is bounded,
 * and `accepting` turns false when it is full so the proxy can refuse calls it could not audit
 * rather than drop records.
 */
export class AuditSink {
  private queue: AuditRecord[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private failures = 0;
  private lastAttempt = 0;
  private readonly listeners = new Set<(r: AuditRecord) => void>();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly opts = { batchSize: 500, delayMs: 10, maxQueue: 100_000 },
    /** Links each record into this process's hash chain, in the order it will be written. */
    private readonly chain?: AuditChain,
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  /**
   * False while the store keeps refusing audit writes (three failed flushes in a row) or the queue
   * is full: the proxy then refuses calls rather than forward ones it cannot audit.
   */
  get accepting(): boolean {
    const ok = this.queue.length < this.opts.maxQueue && this.failures < 3;
    // Each refused call (and each readiness probe) nudges a retry, so service resumes as soon as
    // the store takes writes again rather than when the backoff timer fires.
    if (!ok && !this.flushing && !this.timer && Date.now() - this.lastAttempt > 200) this.schedule(0);
    return ok;
  }

  /** Live subscribers (e.g. an audit tail) see each record as it is queued. */
  subscribe(fn: (r: AuditRecord) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Queues a record for the next batch (denials, reconciler records: no settlement to ride with). */
  push(record: AuditRecord): void {
    this.enqueue(this.link(record));
  }

  /**
   * Links a record into the chain and shows it to subscribers without queueing it: the caller
   * writes it itself, with the call's settlement (Store.settle), and hands it to `enqueue` only if
   * that write failed.
   */
  link(record: AuditRecord): AuditRecord {
    const linked = this.chain ? this.chain.link(record) : record;
    for (const fn of this.listeners) fn(record);
    return linked;
  }

  /** Queues an already linked record. */
  enqueue(linked: AuditRecord): void {
    this.queue.push(linked);
    if (this.queue.length >= this.opts.batchSize) this.schedule(0);
    else this.schedule(this.opts.delayMs);
  }

  private schedule(delay: number): void {
    if (this.timer || this.flushing) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, delay);
    this.timer.unref();
  }

  /** Writes everything queued so far. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.lastAttempt = Date.now();
    this.flushing = (async () => {
      while (this.queue.length) {
        const batch = this.queue.slice(0, this.opts.batchSize);
        try {
          await this.store.appendAudit(batch);
          this.queue.splice(0, batch.length);
          this.failures = 0;
        } catch (err) {
          this.failures++;
          this.log.error({ err, queued: this.queue.length }, 'audit write failed; will retry');
          const backoff = Math.min(1000 * 2 ** Math.min(this.failures, 5), 30_000);
          setTimeout(() => this.schedule(0), backoff).unref();
          return;
        }
      }
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
    }
  }
}
