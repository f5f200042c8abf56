import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../config/config.js';

/**
 * Why the configured store cannot be the gateway's existing one, or null when it exists. Reading
 * tools (audit verify, backup) check this first: opening a store creates it, and an empty store
 * created by mistake would read as "intact" or back up nothing.
 */
export async function missingStore(config: Config): Promise<string | null> {
  if (config.store.url === undefined) {
    const path = resolve(config.store.path);
    return existsSync(path) ? null : `no store at ${path}: pass --config (or set KEYLEASH_CONFIG or KEYLEASH_DATA) naming the gateway's store`;
  }
  const pg = (await import('pg')).default;
  const client = new pg.Client({ connectionString: config.store.url, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
    const { rows } = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [`"${config.store.schema.replace(/"/g, '""')}".schema_version`]);
    return rows[0]?.t ? null : `no keyleash schema "${config.store.schema}" in that database: check store.url and store.schema`;
  } catch (e) {
    return `cannot reach Postgres: ${(e as Error).message}`;
  } finally {
    await client.end().catch(() => undefined);
  }
}
