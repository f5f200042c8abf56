import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { StoreUnavailableError, type Store } from '../store/store.js';

// Where the dashboard's statistics are read. They are aggregates over the whole audit log, which
// on SQLite are synchronous scans: run on the gateway's event loop they would stall every proxied
// call for as long as they take. So a SQLite file is read by a worker thread on its own read-only
// connection (WAL lets it read while the gateway writes); Postgres is asked over its pool, which
// never blocks the loop. Only an in-memory SQLite store (':memory:', tests) is read in-process.

export type Dialect = 'sqlite' | 'pg';
export type Row = Record<string, unknown>;

export interface StatsStatement {
  sql: string;
  params: readonly unknown[];
}

export interface StatsReader {
  readonly dialect: Dialect;
  /** Runs read-only statements, in one snapshot where the backend allows; one row list each. */
  read(statements: readonly StatsStatement[]): Promise<Row[][]>;
  close(): Promise<void>;
}

/**
 * The worker: a generic read-only statement runner. It is plain JavaScript passed as a string so
 * it runs the same from src/ (under a TypeScript loader) and from dist/; the driver's path comes
 * from the main thread so it resolves from this package, whatever the working directory.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
// Below the proxy in the scheduler's eyes: on Linux a thread has its own nice value, and
// /proc/thread-self names this thread's id. Elsewhere it runs at the process's priority.
try {
  const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
  if (tid > 0) require('node:os').setPriority(tid, workerData.nice);
} catch {}
const Database = require(workerData.driver);
const db = new Database(workerData.file, { readonly: true, fileMustExist: true });
db.pragma('busy_timeout = 5000');
const prepared = new Map();
const readAll = db.transaction((statements) =>
  statements.map((s) => {
    let stmt = prepared.get(s.sql);
    if (!stmt) {
      stmt = db.prepare(s.sql);
      if (prepared.size > 100) prepared.clear();
      prepared.set(s.sql, stmt);
    }
    return stmt.all(...s.params);
  }),
);
parentPort.on('message', (m) => {
  try {
    parentPort.postMessage({ id: m.id, rows: readAll(m.statements) });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
  }
});
`;

/** The statistics thread's nice value (Linux): it yields the CPU to the proxy when both want it. */
export const STATS_NICE = 10;

interface Pending {
  resolve: (rows: Row[][]) => void;
  reject: (e: Error) => void;
}

/** A read-only connection to a SQLite file in a worker thread, started on first use. */
export class SqliteWorkerReader implements StatsReader {
  readonly dialect = 'sqlite' as const;
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly driver = createRequire(import.meta.url).resolve('better-sqlite3');

  constructor(private readonly file: string) {}

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver: this.driver, file: this.file, nice: STATS_NICE } });
    // Statistics never keep the process alive on their own.
    w.unref();
    w.on('message', (m: { id: number; rows?: Row[][]; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) p.reject(new StoreUnavailableError('sqlite', new Error(m.error)));
      else p.resolve(m.rows!);
    });
    const fail = (e: Error) => {
      if (this.worker !== w) return;
      this.worker = null;
      for (const p of this.pending.values()) p.reject(new StoreUnavailableError('sqlite', e));
      this.pending.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`statistics worker exited with code ${code}`)));
    this.worker = w;
    return w;
  }

  read(statements: readonly StatsStatement[]): Promise<Row[][]> {
    const w = this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, statements });
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    for (const p of this.pending.values()) p.reject(new Error('statistics reader closed'));
    this.pending.clear();
    if (w) await w.terminate();
  }
}

/** Reads through the store itself: Postgres (async) or an in-memory SQLite store. */
class StoreReader implements StatsReader {
  constructor(
    private readonly store: Store,
    readonly dialect: Dialect,
  ) {}

  async read(statements: readonly StatsStatement[]): Promise<Row[][]> {
    const out: Row[][] = [];
    for (const s of statements) out.push(await this.store.readRows(s.sql, s.params));
    return out;
  }

  async close(): Promise<void> {}
}

const sharedReaders = new WeakMap<Store, { reader: StatsReader; refs: number }>();

/**
 * The one reader of a store that every control route shares (one worker thread per SQLite file,
 * not one per route); `release` closes it when its last user has gone.
 */
export function acquireReader(store: Store): { reader: StatsReader; release(): Promise<void> } {
  let entry = sharedReaders.get(store);
  if (!entry) sharedReaders.set(store, (entry = { reader: statsReaderFor(store), refs: 0 }));
  entry.refs++;
  const mine = entry;
  let released = false;
  return {
    reader: mine.reader,
    async release() {
      if (released) return;
      released = true;
      if (--mine.refs > 0) return;
      if (sharedReaders.get(store) === mine) sharedReaders.delete(store);
      await mine.reader.close();
    },
  };
}

export function statsReaderFor(store: Store): StatsReader {
  const file = (store as { file?: unknown }).file;
  if (store.kind === 'sqlite' && typeof file === 'string') return new SqliteWorkerReader(file);
  return new StoreReader(store, store.kind === 'sqlite' ? 'sqlite' : 'pg');
}

/**
 * Requests for the same figures share one computation: while it runs, and for a while after it
 * finished (at least `minFreshMs`, and twice as long as it took). However many dashboard tabs
 * poll, the reader then works at most a third of the time, so it never takes a core from the
 * proxy for long; figures are at most that old.
 */
export class Coalesced<T> {
  private readonly entries = new Map<string, { value: Promise<T>; freshUntil: number }>();

  constructor(
    private readonly minFreshMs = 1000,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  run(key: string, fn: () => Promise<T>): Promise<T> {
    const now = this.clock();
    const hit = this.entries.get(key);
    if (hit && hit.freshUntil > now) return hit.value;
    for (const [k, e] of this.entries) if (e.freshUntil <= now) this.entries.delete(k);
    const entry = { value: fn(), freshUntil: Number.POSITIVE_INFINITY };
    this.entries.set(key, entry);
    entry.value.then(
      () => {
        const done = this.clock();
        entry.freshUntil = done + Math.max(this.minFreshMs, 2 * (done - now));
      },
      // A failure is not kept: the next request tries again.
      () => this.entries.get(key) === entry && this.entries.delete(key),
    );
    return entry.value;
  }
}
