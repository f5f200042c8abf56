import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WritePath } from '../src/store/sqlite/write-path.js';
import { StoreUnavailableError } from '../src/store/store.js';

// The SQLite write path: writes of one event-loop turn share one commit, and each caller hears
// back only once that commit is done; a failure never lets half a batch through.

let dir: string;
let db: Database.Database;
let w: WritePath;
/** What another connection sees: only committed rows. */
function rows(): number[] {
  const reader = new Database(join(dir, 'db.sqlite'), { readonly: true });
  try {
    return (reader.prepare('SELECT v FROM t ORDER BY v').all() as Array<{ v: number }>).map((r) => r.v);
  } finally {
    reader.close();
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'keyleash-write-path-'));
  db = new Database(join(dir, 'db.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 0');
  db.exec('CREATE TABLE t (v INTEGER PRIMARY KEY)');
  w = new WritePath(db, { lockWaitMs: 300 });
});

afterEach(() => {
  w.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const insert = (v: number) => () => db.prepare('INSERT INTO t (v) VALUES (?)').run(v).changes;

describe('write path', () => {
  it('commits the writes of one turn together, and answers only after the commit', async () => {
    const a = w.run(insert(1), true);
    const b = w.run(insert(2), true);
    // Run at once, inside the open batch: visible to this connection, not yet to another.
    expect(db.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 2 });
    expect(rows()).toEqual([]);
    expect(await Promise.all([a, b])).toEqual([1, 1]);
    expect(rows()).toEqual([1, 2]);
    expect(w.stats.commits).toBe(1);
  });

  it('a hot-path write that fails rolls back its whole batch and fails every write in it', async () => {
    const a = w.run(insert(1), true);
    const b = w.run(insert(1), true); // duplicate key: fails half-way through the batch
    await expect(a).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(b).rejects.toThrow();
    expect(rows()).toEqual([]);
    // The next turn starts a fresh batch.
    expect(await w.run(insert(3), true)).toBe(1);
    expect(rows()).toEqual([3]);
  });

  it('a write in a savepoint that fails undoes only itself', async () => {
    const a = w.run(insert(1), true);
    const b = w.run(db.transaction(insert(1)));
    await expect(b).rejects.toThrow();
    expect(await a).toBe(1);
    expect(rows()).toEqual([1]);
  });

  it('waits for another connection\'s lock on a timer, then fails with StoreUnavailableError', async () => {
    const other = new Database(join(dir, 'db.sqlite'));
    other.exec('BEGIN IMMEDIATE');
    let turns = 0;
    const ticker = setInterval(() => turns++, 5);
    try {
      await expect(w.run(insert(1), true)).rejects.toBeInstanceOf(StoreUnavailableError);
      // The event loop kept turning while the write waited.
      expect(turns).toBeGreaterThan(0);
      const queued = w.run(insert(2), true);
      other.exec('COMMIT');
      expect(await queued).toBe(1);
      expect(rows()).toEqual([2]);
    } finally {
      clearInterval(ticker);
      other.close();
    }
  });
});
