import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { MIGRATIONS } from './migrations.js';

/** A store written by a newer keyleash: this binary would misread it, so it refuses to open it. */
export class NewerSchemaError extends Error {
  readonly code = 'ESCHEMA_NEWER';
  constructor(
    readonly path: string,
    readonly found: number,
    readonly known: number,
  ) {
    super(
      `the store at ${path} has schema version ${found}, newer than this keyleash knows (${known}): ` +
        'run the keyleash version that wrote it (or newer), or restore a backup taken before the upgrade',
    );
  }
}

/** The schema version of a SQLite store file (0 when it has none yet), read without changing it. */
export function sqliteSchemaVersion(path: string): number {
  if (path === ':memory:' || !existsSync(path)) return 0;
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").get();
    if (!table) return 0;
    return (db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null }).v ?? 0;
  } finally {
    db.close();
  }
}

/** The downgrade guard: throws NewerSchemaError before anything opens the store for writing. */
export function assertSqliteSchemaKnown(path: string): void {
  const found = sqliteSchemaVersion(path);
  if (found > MIGRATIONS.length) throw new NewerSchemaError(path, found, MIGRATIONS.length);
}
