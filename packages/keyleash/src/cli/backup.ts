import Database from 'better-sqlite3';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../config/config.js';
import { parseTtlSeconds } from '../policy/ttl.js';
import { SqliteStore } from '../store/sqlite/index.js';
import { assertSqliteSchemaKnown, NewerSchemaError, sqliteSchemaVersion } from '../store/sqlite/schema-guard.js';
import { EXIT } from './admin.js';
import { ADMIN_AUDIT_TABLE } from '../store/sqlite/admin-audit.js';
import { missingStore } from './store-check.js';

// Backup, restore and retention of the SQLite store. Each works on the file directly, never
// through a running gateway: backup is safe beside one (SQLite's online backup API copies a
// consistent snapshot, WAL included); restore and retention are for a stopped gateway.

export const BACKUP_HELP = `keyleash backup — an online copy of the SQLite store

Usage:
  keyleash backup --to FILE [--config F]

Copies a consistent snapshot (committed WAL data included) while the gateway serves, with
SQLite's online backup API; a plain file copy can lose or tear recent writes. For Postgres +
Redis use pg_dump (README "Backup and restore"); Redis holds nothing to back up.

Exit codes: 0 ok, 1 the copy failed, 2 bad usage or no store to back up.`;

export const RESTORE_HELP = `keyleash restore — put a backup in place without undoing revocations

Usage:
  keyleash restore --from FILE [--config F] [--force]

Run it with the gateway stopped. The current store is kept as <store>.before-restore-<time>; then
everything it knows that is newer than the backup is carried onto the restored copy:
revocations of keys and minting keys (a key revoked after the backup stays revoked), each key's
and budget's spend (the larger total wins, so no cap is re-spent) and audit records written
after the backup. Keys issued after the backup are not carried: their tokens stop working.
With no current store there is nothing to carry over, and restore refuses without --force
(revocations made after the backup would be undone: revoke again afterwards).

Exit codes: 0 ok, 1 the restore failed, 2 bad usage, no backup, or refused.`;

export const RETENTION_HELP = `keyleash retention — export, then purge, old audit records and reservations

Usage:
  keyleash retention --older-than 90d --export FILE [--config F]

Run it with the gateway stopped. Audit records older than the cutoff are first written to FILE
(NDJSON, one audit_record per line, synced to disk), then deleted; the audit chains remember
where each was cut, so \`keyleash audit verify\` still checks what is left. Settled reservations
of past days older than the cutoff are deleted too (a day's spend totals stay). SQLite only; see
README "Retention" for Postgres.

Exit codes: 0 ok, 1 failed, 2 bad usage or no store.`;

function fail(message: string, code: number = EXIT.usage): number {
  process.stderr.write(`keyleash: ${message}\n`);
  return code;
}

function sqliteConfig(configPath: string | undefined): Config | string {
  let config: Config;
  try {
    config = loadConfig(configPath);
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  if (config.store.url !== undefined) return 'this store is Postgres + Redis: use pg_dump / pg_restore (README "Backup and restore")';
  return config;
}

export async function runBackup(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { to: { type: 'string' }, config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (e) {
    return fail(`${(e as Error).message}\n\n${BACKUP_HELP}`);
  }
  if (values.help) {
    process.stdout.write(`${BACKUP_HELP}\n`);
    return EXIT.ok;
  }
  if (!values.to) return fail(`backup needs --to FILE\n\n${BACKUP_HELP}`);
  const config = sqliteConfig(values.config ?? process.env.KEYLEASH_CONFIG);
  if (typeof config === 'string') return fail(config);
  const missing = await missingStore(config);
  if (missing) return fail(missing);
  const to = resolve(values.to);
  if (to === resolve(config.store.path)) return fail('--to names the store itself');
  if (existsSync(to)) return fail(`${to} exists: pick a new file (a backup never overwrites)`);
  const db = new Database(config.store.path, { readonly: true, fileMustExist: true });
  try {
    // Into a temporary name first, so a failed copy never looks like a backup.
    const partial = `${to}.partial`;
    await db.backup(partial);
    renameSync(partial, to);
  } catch (e) {
    return fail(`backup failed: ${(e as Error).message}`, EXIT.failure);
  } finally {
    db.close();
  }
  const check = new Database(to, { readonly: true });
  try {
    const ok = check.pragma('integrity_check', { simple: true });
    if (ok !== 'ok') return fail(`the backup at ${to} does not pass integrity_check: ${String(ok)}`, EXIT.failure);
    const counts = check.prepare('SELECT (SELECT COUNT(*) FROM keys) AS keys, (SELECT COUNT(*) FROM audit) AS audit').get() as { keys: number; audit: number };
    process.stdout.write(`backed up ${resolve(config.store.path)} to ${to}: schema v${sqliteSchemaVersion(to)}, ${counts.keys} keys, ${counts.audit} audit records\n`);
  } finally {
    check.close();
  }
  return EXIT.ok;
}

/** Column names of a table, for copying rows between two stores of the same schema. */
function columns(db: Database.Database, schema: string, table: string): string[] {
  return (db.prepare(`PRAGMA ${schema}.table_info(${table})`).all() as Array<{ name: string }>).map((c) => c.name);
}

export interface CarriedOver {
  revokedKeys: number;
  revokedMintingKeys: number;
  mintedRevocations: number;
  keySpend: number;
  budgetSpend: number;
  audit: number;
}

/**
 * Carries onto `db` (the restored copy) what the store it replaces (`prev`, attached) knows that
 * is newer: revocations, larger spend totals, audit records. Both have the same schema.
 */
export function carryOver(db: Database.Database, prevPath: string): CarriedOver {
  db.prepare('ATTACH DATABASE ? AS prev').run(prevPath);
  try {
    return db.transaction((): CarriedOver => {
      const revokedKeys = db
        .prepare(
          `UPDATE main.keys SET revoked_at = (SELECT p.revoked_at FROM prev.keys p WHERE p.id = keys.id)
           WHERE revoked_at IS NULL AND EXISTS (SELECT 1 FROM prev.keys p WHERE p.id = keys.id AND p.revoked_at IS NOT NULL)`,
        )
        .run().changes;
      const revokedMintingKeys = db
        .prepare(
          `UPDATE main.minting_keys SET revoked_at = (SELECT p.revoked_at FROM prev.minting_keys p WHERE p.id = minting_keys.id)
           WHERE revoked_at IS NULL AND EXISTS (SELECT 1 FROM prev.minting_keys p WHERE p.id = minting_keys.id AND p.revoked_at IS NOT NULL)`,
        )
        .run().changes;
      const mr = columns(db, 'prev', 'minted_revocations').join(', ');
      const mintedRevocations = db.prepare(`INSERT OR IGNORE INTO main.minted_revocations (${mr}) SELECT ${mr} FROM prev.minted_revocations`).run().changes;
      const keySpend = db
        .prepare(
          `INSERT INTO main.key_spend (key_id, day, spent_micros)
           SELECT p.key_id, p.day, p.spent_micros FROM prev.key_spend p WHERE EXISTS (SELECT 1 FROM main.keys k WHERE k.id = p.key_id)
           ON CONFLICT (key_id, day) DO UPDATE SET spent_micros = MAX(spent_micros, excluded.spent_micros)
           WHERE excluded.spent_micros > spent_micros`,
        )
        .run().changes;
      const budgetSpend = db
        .prepare(
          `INSERT INTO main.budget_spend (tenant_id, budget_id, win, spent_micros)
           SELECT p.tenant_id, p.budget_id, p.win, p.spent_micros FROM prev.budget_spend p
           WHERE EXISTS (SELECT 1 FROM main.budgets b WHERE b.tenant_id = p.tenant_id AND b.id = p.budget_id)
           ON CONFLICT (tenant_id, budget_id, win) DO UPDATE SET spent_micros = MAX(spent_micros, excluded.spent_micros)
           WHERE excluded.spent_micros > spent_micros`,
        )
        .run().changes;
      // Audit records the backup never saw, in their original order (seq is renumbered).
      const ac = columns(db, 'prev', 'audit').filter((c) => c !== 'seq').join(', ');
      const audit = db
        .prepare(`INSERT INTO main.audit (${ac}) SELECT ${ac} FROM prev.audit p WHERE NOT EXISTS (SELECT 1 FROM main.audit a WHERE a.id = p.id) ORDER BY p.seq`)
        .run().changes;
      // The admin audit trail too, when the replaced store has one.
      const hasTrail = (schema: string) => db.prepare(`SELECT 1 FROM ${schema}.sqlite_master WHERE type = 'table' AND name = 'admin_audit'`).get() !== undefined;
      if (hasTrail('prev')) {
        const tc = columns(db, 'prev', 'admin_audit').filter((c) => c !== 'seq');
        if (!hasTrail('main')) db.exec(ADMIN_AUDIT_TABLE);
        db.prepare(`INSERT INTO main.admin_audit (${tc.join(', ')}) SELECT ${tc.join(', ')} FROM prev.admin_audit p WHERE NOT EXISTS (SELECT 1 FROM main.admin_audit a WHERE a.id = p.id) ORDER BY p.seq`).run();
      }
      return { revokedKeys, revokedMintingKeys, mintedRevocations, keySpend, budgetSpend, audit };
    }).immediate();
  } finally {
    db.prepare('DETACH DATABASE prev').run();
  }
}

export async function runRestore(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { from: { type: 'string' }, config: { type: 'string', short: 'c' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (e) {
    return fail(`${(e as Error).message}\n\n${RESTORE_HELP}`);
  }
  if (values.help) {
    process.stdout.write(`${RESTORE_HELP}\n`);
    return EXIT.ok;
  }
  if (!values.from) return fail(`restore needs --from FILE\n\n${RESTORE_HELP}`);
  const config = sqliteConfig(values.config ?? process.env.KEYLEASH_CONFIG);
  if (typeof config === 'string') return fail(config);
  const from = resolve(values.from);
  const target = resolve(config.store.path);
  if (!existsSync(from)) return fail(`no backup at ${from}`);
  try {
    // The downgrade guard: neither the backup nor the current store may be newer than this binary.
    assertSqliteSchemaKnown(from);
    assertSqliteSchemaKnown(target);
  } catch (e) {
    if (e instanceof NewerSchemaError) return fail(e.message);
    throw e;
  }
  const hadStore = existsSync(target);
  if (!hadStore && !values.force) {
    return fail(
      `no current store at ${target} to carry revocations and spend over from: a key revoked after the backup would work again. ` +
        'Pass --force to restore anyway, then revoke again what was revoked since the backup.',
    );
  }
  const staging = `${target}.restoring`;
  mkdirSync(dirname(target), { recursive: true });
  rmSync(staging, { force: true });
  const src = new Database(from, { readonly: true, fileMustExist: true });
  try {
    await src.backup(staging);
  } finally {
    src.close();
  }
  // Bring the copy to this binary's schema (and the current store too, so both match).
  await new SqliteStore({ path: staging }).close();
  let carried: CarriedOver | null = null;
  let kept: string | null = null;
  if (hadStore) {
    await new SqliteStore({ path: target }).close();
    const db = new Database(staging);
    try {
      carried = carryOver(db, target);
    } finally {
      db.close();
    }
    kept = `${target}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const cur = new Database(target, { readonly: true });
    try {
      await cur.backup(kept);
    } finally {
      cur.close();
    }
  }
  // Swap in: the old WAL and shared-memory files belong to the old file and must go with it.
  for (const ext of ['-wal', '-shm']) rmSync(`${target}${ext}`, { force: true });
  const fd = openSync(staging, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(staging, target);
  const lines = [`restored ${from} to ${target}`];
  if (kept) lines.push(`the store it replaced is kept at ${kept}`);
  if (carried) {
    lines.push(
      `carried over from it: ${carried.revokedKeys} key revocation(s), ${carried.revokedMintingKeys} minting-key revocation(s), ` +
        `${carried.mintedRevocations} minted-key revocation(s), ${carried.keySpend + carried.budgetSpend} larger spend total(s), ${carried.audit} audit record(s)`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
  return EXIT.ok;
}

/** Where each audit chain was cut by retention: verification resumes from here. Not a migration: only retention writes it. */
export const RETENTION_TABLE = `CREATE TABLE IF NOT EXISTS audit_retention (
  chain_id   TEXT PRIMARY KEY,
  through_seq INTEGER NOT NULL,
  last_hash  TEXT NOT NULL
)`;

export async function runRetention(argv: string[], now = Date.now()): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { 'older-than': { type: 'string' }, export: { type: 'string' }, config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (e) {
    return fail(`${(e as Error).message}\n\n${RETENTION_HELP}`);
  }
  if (values.help) {
    process.stdout.write(`${RETENTION_HELP}\n`);
    return EXIT.ok;
  }
  if (!values['older-than'] || !values.export) return fail(`retention needs --older-than and --export\n\n${RETENTION_HELP}`);
  const age = parseTtlSeconds(values['older-than']);
  if (!age.ok) return fail(`--older-than: ${age.reason}`);
  const config = sqliteConfig(values.config ?? process.env.KEYLEASH_CONFIG);
  if (typeof config === 'string') return fail(config);
  const missing = await missingStore(config);
  if (missing) return fail(missing);
  const out = resolve(values.export);
  if (existsSync(out)) return fail(`${out} exists: pick a new file (an export never overwrites)`);
  try {
    assertSqliteSchemaKnown(config.store.path);
  } catch (e) {
    if (e instanceof NewerSchemaError) return fail(e.message);
    throw e;
  }
  const cutoff = now - age.seconds * 1000;
  const cutoffDay = new Date(cutoff).toISOString().slice(0, 10);
  const db = new Database(config.store.path, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    db.exec(RETENTION_TABLE);
    const maxSeq = (db.prepare('SELECT MAX(seq) AS s FROM audit WHERE time < ?').get(cutoff) as { s: number | null }).s;
    // Export first, synced, and only then delete: a crash in between leaves a duplicate, never a loss.
    const fd = openSync(out, 'wx');
    let exported = 0;
    try {
      if (maxSeq !== null) {
        for (const r of db.prepare('SELECT * FROM audit WHERE seq <= ? ORDER BY seq').iterate(maxSeq) as Iterable<Record<string, unknown>>) {
          writeSync(fd, JSON.stringify(exportView(r)) + '\n');
          exported++;
        }
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const purged = db.transaction(() => {
      let audit = 0;
      if (maxSeq !== null) {
        // Each chain remembers its last purged link, so verification can start after it.
        db.prepare(
          `INSERT INTO audit_retention (chain_id, through_seq, last_hash)
           SELECT a.chain_id, a.chain_seq, a.hash FROM audit a
           WHERE a.seq <= ? AND a.chain_id IS NOT NULL
             AND a.chain_seq = (SELECT MAX(b.chain_seq) FROM audit b WHERE b.chain_id = a.chain_id AND b.seq <= ?)
           ON CONFLICT (chain_id) DO UPDATE SET through_seq = excluded.through_seq, last_hash = excluded.last_hash
           WHERE excluded.through_seq > through_seq`,
        ).run(maxSeq, maxSeq);
        audit = db.prepare('DELETE FROM audit WHERE seq <= ?').run(maxSeq).changes;
      }
      // Settled reservations of past days: the day's spend lives on in key_spend and budget_spend.
      const reservations = db.prepare(`DELETE FROM reservations WHERE state != 'reserved' AND created_at < ? AND day < ?`).run(cutoff, cutoffDay).changes;
      return { audit, reservations };
    }).immediate();
    process.stdout.write(
      `exported ${exported} audit record(s) older than ${new Date(cutoff).toISOString()} to ${out}; ` +
        `purged ${purged.audit} audit record(s) and ${purged.reservations} settled reservation(s)\n`,
    );
    return EXIT.ok;
  } catch (e) {
    return fail(`retention failed: ${(e as Error).message}`, EXIT.failure);
  } finally {
    db.close();
  }
}

/** An exported audit row: the API's field names, plus its chain link so the export can be verified. */
function exportView(r: Record<string, unknown>) {
  return {
    object: 'audit_record',
    id: r.id,
    tenant_id: r.tenant_id,
    time: new Date(r.time as number).toISOString(),
    request_id: r.request_id,
    key_id: r.key_id,
    label: r.label,
    vendor: r.vendor,
    mode: r.mode,
    method: r.method,
    path: r.path,
    status: r.status,
    decision: r.decision,
    code: r.code,
    cost_micros: r.cost_micros,
    upstream_latency_ms: r.upstream_latency_ms,
    chain: r.chain_id === null ? null : { chain_id: r.chain_id, seq: r.chain_seq, prev_hash: r.prev_hash, hash: r.hash },
  };
}

/** Chains cut by retention in a SQLite store: chain id → the last purged seq and hash. */
export function retentionMarks(path: string): Map<string, { throughSeq: number; lastHash: string }> {
  const marks = new Map<string, { throughSeq: number; lastHash: string }>();
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    if (!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_retention'").get()) return marks;
    for (const r of db.prepare('SELECT chain_id, through_seq, last_hash FROM audit_retention').all() as Array<{ chain_id: string; through_seq: number; last_hash: string }>) {
      marks.set(r.chain_id, { throughSeq: r.through_seq, lastHash: r.last_hash });
    }
  } finally {
    db.close();
  }
  return marks;
}
