import type Database from 'better-sqlite3';
import { StoreUnavailableError } from '../store.js';

// The SQLite ledger's write path: group commit.
//
// Every write (a reservation, a settlement with its audit record, a key, a budget change…) runs
// synchronously, at once, inside one open BEGIN IMMEDIATE transaction, so its checks read every
// earlier write of the batch and stay exact. The batch commits once, at the end of the
// event-loop turn (setImmediate); each caller's promise resolves only after the COMMIT that
// carries its own write, so "durable when the promise resolves" holds for each of them.
//
// The file's write lock is never waited for synchronously (busy_timeout is 0): when another
// process holds it, writes queue in order and BEGIN is retried on a timer with backoff; a write
// that cannot get the lock within `lockWaitMs` fails with StoreUnavailableError (503
// store_unavailable). The event loop, health checks included, keeps running meanwhile.

interface Waiting {
  op: () => unknown;
  whole: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  since: number;
}

interface Pending {
  value: unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export interface WritePathOptions {
  /** How long a write may wait for another process's lock before it fails (default 5 s). */
  lockWaitMs?: number;
  /** Runs inside the batch's transaction right before COMMIT (e.g. batched counters). */
  beforeCommit?: () => void;
  /** Called when a batch could not commit (everything in it was rolled back). */
  onRollback?: () => void;
}

export function isBusy(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT' || code === 'SQLITE_BUSY_RECOVERY' || code === 'SQLITE_LOCKED';
}

export class WritePath {
  private open = false;
  private pending: Pending[] = [];
  private waiting: Waiting[] = [];
  private commitScheduled = false;
  private retry: NodeJS.Timeout | null = null;
  private backoffMs = 1;
  private readonly begin: Database.Statement;
  private readonly commit: Database.Statement;
  private readonly rollback: Database.Statement;
  private readonly lockWaitMs: number;
  /** Batches committed and writes carried, for tests and metrics. */
  readonly stats = { commits: 0, writes: 0, lockRetries: 0 };

  constructor(
    private readonly db: Database.Database,
    private readonly opts: WritePathOptions = {},
  ) {
    this.begin = db.prepare('BEGIN IMMEDIATE');
    this.commit = db.prepare('COMMIT');
    this.rollback = db.prepare('ROLLBACK');
    this.lockWaitMs = opts.lockWaitMs ?? 5_000;
  }

  /** True while a batch is open or writes wait for the lock. */
  get busy(): boolean {
    return this.open || this.waiting.length > 0;
  }

  /**
   * Runs `op` now (inside the open batch) when the lock is held, else queues it; resolves with its
   * result once the batch carrying it has committed. `op` must be synchronous. Wrapped in a
   * better-sqlite3 transaction function it runs in a savepoint, and a failure undoes only itself;
   * with `whole` (the hot path: no savepoint to pay for), any failure rolls back the whole batch
   * and fails every write in it, so a half-done write can never commit.
   */
  run<T>(op: () => T, whole = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const res = resolve as (v: unknown) => void;
      if (this.waiting.length === 0) {
        let opened: boolean;
        try {
          opened = this.ensureOpen();
        } catch (e) {
          return reject(new StoreUnavailableError('sqlite', e));
        }
        if (opened) return this.exec(op, whole, res, reject);
      }
      this.waiting.push({ op, whole, resolve: res, reject, since: Date.now() });
      this.scheduleRetry();
    });
  }

  /** Commits the open batch now (close, tests). */
  flushNow(): void {
    this.commitBatch();
  }

  /** Commits what is open, and fails whatever still waits for the lock. */
  close(): void {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.commitBatch();
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) w.reject(new StoreUnavailableError('sqlite', new Error('the store is closing')));
  }

  private ensureOpen(): boolean {
    if (this.open) return true;
    try {
      this.begin.run();
    } catch (e) {
      if (isBusy(e)) return false;
      throw e;
    }
    this.open = true;
    if (!this.commitScheduled) {
      this.commitScheduled = true;
      setImmediate(() => {
        this.commitScheduled = false;
        this.commitBatch();
      });
    }
    return true;
  }

  private exec(op: () => unknown, whole: boolean, resolve: (v: unknown) => void, reject: (e: unknown) => void): void {
    let value: unknown;
    try {
      value = op();
    } catch (e) {
      // Some errors (disk full, I/O) make SQLite roll the whole transaction back, not just the
      // savepoint: every earlier write of the batch is gone with it.
      if (whole || !this.db.inTransaction) this.failBatch(e);
      reject(e);
      return;
    }
    this.stats.writes++;
    this.pending.push({ value, resolve, reject });
  }

  private commitBatch(): void {
    if (!this.open) return;
    try {
      this.opts.beforeCommit?.();
      this.commit.run();
    } catch (e) {
      this.failBatch(e);
      return;
    }
    this.open = false;
    this.stats.commits++;
    const done = this.pending;
    this.pending = [];
    for (const p of done) p.resolve(p.value);
    if (this.waiting.length) this.drain();
  }

  private failBatch(e: unknown): void {
    if (this.db.inTransaction) {
      try {
        this.rollback.run();
      } catch {
        /* already gone */
      }
    }
    this.open = false;
    this.opts.onRollback?.();
    const failed = this.pending;
    this.pending = [];
    const err = e instanceof StoreUnavailableError ? e : new StoreUnavailableError('sqlite', e);
    for (const p of failed) p.reject(err);
  }

  private scheduleRetry(): void {
    if (this.retry) return;
    const oldest = this.waiting[0];
    const left = oldest ? Math.max(0, oldest.since + this.lockWaitMs - Date.now()) : this.backoffMs;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.drain();
    }, Math.min(this.backoffMs, left));
  }

  /** Tries the lock again for the queued writes; those past their wait fail with 503. */
  private drain(): void {
    const now = Date.now();
    while (this.waiting.length && now - this.waiting[0]!.since >= this.lockWaitMs) {
      this.waiting.shift()!.reject(new StoreUnavailableError('sqlite', new Error('the database file is locked by another process')));
    }
    if (!this.waiting.length) {
      this.backoffMs = 1;
      return;
    }
    let opened: boolean;
    try {
      opened = this.ensureOpen();
    } catch (e) {
      const waiting = this.waiting;
      this.waiting = [];
      for (const w of waiting) w.reject(new StoreUnavailableError('sqlite', e));
      return;
    }
    if (!opened) {
      this.stats.lockRetries++;
      this.backoffMs = Math.min(this.backoffMs * 2, 50);
      this.scheduleRetry();
      return;
    }
    this.backoffMs = 1;
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) this.exec(w.op, w.whole, w.resolve, w.reject);
  }
}
