import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

// WAL checkpoints, off the request path: automatic checkpoints are off on the serving connection
// (one would run inside whichever caller's COMMIT crossed the threshold), and a worker thread with
// its own connection runs PASSIVE checkpoints on a timer. PASSIVE never waits for a lock and never
// blocks a writer, so the event loop never pays for copying the WAL back into the database.

const require = createRequire(import.meta.url);

const CODE = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 0');
const timer = setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch { /* locked or busy: next time */ }
}, workerData.everyMs);
parentPort.once('message', () => {
  clearInterval(timer);
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch {}
  db.close();
  parentPort.close();
});
`;

export class Checkpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  constructor(path: string, everyMs = 1_000) {
    this.worker = new Worker(CODE, { eval: true, workerData: { module: require.resolve('better-sqlite3'), path, everyMs } });
    this.exited = new Promise<void>((r) => this.worker.once('exit', () => r()));
    this.worker.on('error', () => {
      /* a failed checkpointer only lets the WAL grow; the next open checkpoints it */
    });
    this.worker.unref();
  }

  async stop(): Promise<void> {
    this.worker.postMessage('stop');
    const timer = setTimeout(() => void this.worker.terminate(), 2_000);
    await this.exited;
    clearTimeout(timer);
  }
}
