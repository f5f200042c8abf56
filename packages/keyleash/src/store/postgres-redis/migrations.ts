import type { Pool } from 'pg';

// Append-only: a released migration is never edited, only followed by a new one.
// Spend is not stored as a running total: a key's spend for a day is the sum over its
// reservations (final cost, or the estimate while open), so the ledger is the one durable record.
export const PG_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE keys (
    id                TEXT COLLATE "C" PRIMARY KEY,
    token_hash        TEXT COLLATE "C" NOT NULL UNIQUE,
    label             TEXT NOT NULL,
    vendor            TEXT NOT NULL,
    mode              TEXT NOT NULL CHECK (mode IN ('test', 'live')),
    allowed_endpoints JSONB NOT NULL,
    daily_cap_micros  BIGINT CHECK (daily_cap_micros IS NULL OR daily_cap_micros >= 0),
    metadata          JSONB NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    revoked_at        BIGINT,
    -- Bumped each time the key's Redis state is rebuilt from here; a reservation is only
    -- recorded against the epoch whose Redis counter it was counted in.
    epoch             BIGINT NOT NULL DEFAULT 0
  );
  CREATE INDEX keys_by_created ON keys (created_at DESC, id DESC);

  CREATE TABLE reservations (
    id              TEXT COLLATE "C" PRIMARY KEY,
    key_id          TEXT COLLATE "C" NOT NULL REFERENCES keys (id),
    day             TEXT NOT NULL,
    estimate_micros BIGINT NOT NULL,
    final_micros    BIGINT,
    state           TEXT NOT NULL CHECK (state IN ('reserved', 'settled', 'released', 'unknown')),
    request_id      TEXT NOT NULL,
    method          TEXT NOT NULL,
    path            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    settled_at      BIGINT
  );
  CREATE INDEX reservations_by_key_day ON reservations (key_id, day);
  CREATE INDEX reservations_open ON reservations (created_at) WHERE state = 'reserved';

  CREATE TABLE audit (
    seq                 BIGSERIAL PRIMARY KEY,
    id                  TEXT COLLATE "C" NOT NULL UNIQUE,
    time                BIGINT NOT NULL,
    request_id          TEXT NOT NULL,
    key_id              TEXT,
    label               TEXT,
    vendor              TEXT,
    mode                TEXT,
    method              TEXT NOT NULL,
    path                TEXT NOT NULL,
    status              INTEGER NOT NULL,
    decision            TEXT NOT NULL,
    code                TEXT,
    cost_micros         BIGINT NOT NULL,
    upstream_latency_ms DOUBLE PRECISION
  );
  CREATE INDEX audit_by_key ON audit (key_id, seq DESC);
  `,
  // Budgets above keys. A budget's spend for a window is the ledger sum over the reservations of
  // its keys (key_budgets) in that window; its Redis state follows the same epoch rule as a key's.
  `
  ALTER TABLE keys ADD COLUMN budget_ids JSONB NOT NULL DEFAULT '[]';

  CREATE TABLE budgets (
    tenant_id    TEXT COLLATE "C" NOT NULL,
    id           TEXT COLLATE "C" NOT NULL,
    limit_micros BIGINT NOT NULL CHECK (limit_micros >= 0),
    period       TEXT NOT NULL CHECK (period IN ('day', 'month', 'total')),
    frozen       BOOLEAN NOT NULL DEFAULT false,
    metadata     JSONB NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    epoch        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
  );

  CREATE TABLE key_budgets (
    tenant_id TEXT COLLATE "C" NOT NULL,
    budget_id TEXT COLLATE "C" NOT NULL,
    key_id    TEXT COLLATE "C" NOT NULL REFERENCES keys (id),
    position  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, budget_id, key_id),
    FOREIGN KEY (tenant_id, budget_id) REFERENCES budgets (tenant_id, id)
  );
  CREATE INDEX key_budgets_by_key ON key_budgets (key_id, position);
  `,
  `
  CREATE TABLE idempotency (
    key_id         TEXT COLLATE "C" NOT NULL,
    idem_key       TEXT COLLATE "C" NOT NULL,
    fingerprint    TEXT NOT NULL,
    reservation_id TEXT COLLATE "C" NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (key_id, idem_key)
  );
  CREATE INDEX idempotency_by_created ON idempotency (created_at);
  `,
  `
  ALTER TABLE keys ADD COLUMN rate_requests INTEGER;
  ALTER TABLE keys ADD COLUMN rate_per_ms BIGINT;
  ALTER TABLE budgets ADD COLUMN rate_requests INTEGER;
  ALTER TABLE budgets ADD COLUMN rate_per_ms BIGINT;
  `,
  `
  ALTER TABLE keys ADD COLUMN tenant_id TEXT COLLATE "C" NOT NULL DEFAULT 'default';
  ALTER TABLE audit ADD COLUMN tenant_id TEXT COLLATE "C" NOT NULL DEFAULT 'default';
  CREATE INDEX keys_by_tenant ON keys (tenant_id, created_at DESC, id DESC);
  CREATE INDEX audit_by_tenant ON audit (tenant_id, seq DESC);
  `,
  `
  ALTER TABLE audit ADD COLUMN chain_id TEXT COLLATE "C";
  ALTER TABLE audit ADD COLUMN chain_seq BIGINT;
  ALTER TABLE audit ADD COLUMN prev_hash TEXT;
  ALTER TABLE audit ADD COLUMN hash TEXT;
  `,
  // Minting keys and minted keys (see the SQLite migration of the same number).
  `
  ALTER TABLE keys ADD COLUMN minting_key_id TEXT COLLATE "C";
  ALTER TABLE keys ADD COLUMN mint_version INTEGER;
  ALTER TABLE keys ADD COLUMN ancestor_ids JSONB NOT NULL DEFAULT '[]';
  CREATE INDEX keys_by_minting_key ON keys (minting_key_id) WHERE minting_key_id IS NOT NULL;

  CREATE TABLE key_lineage (
    ancestor_id TEXT COLLATE "C" NOT NULL REFERENCES keys (id),
    key_id      TEXT COLLATE "C" NOT NULL REFERENCES keys (id),
    PRIMARY KEY (ancestor_id, key_id)
  );

  CREATE TABLE minting_keys (
    id                TEXT COLLATE "C" PRIMARY KEY,
    tenant_id         TEXT COLLATE "C" NOT NULL,
    label             TEXT NOT NULL,
    mode              TEXT NOT NULL CHECK (mode IN ('test', 'live')),
    vendors           JSONB NOT NULL,
    allowed_endpoints JSONB NOT NULL,
    max_cap_micros    BIGINT CHECK (max_cap_micros IS NULL OR max_cap_micros >= 0),
    max_ttl_seconds   INTEGER NOT NULL,
    budget_ids        JSONB NOT NULL,
    allowed_budgets   JSONB NOT NULL,
    metadata          JSONB NOT NULL,
    versions          JSONB NOT NULL,
    created_at        BIGINT NOT NULL,
    revoked_at        BIGINT
  );
  CREATE INDEX minting_keys_by_tenant ON minting_keys (tenant_id, created_at DESC, id DESC);

  CREATE TABLE minted_revocations (
    id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT COLLATE "C" NOT NULL,
    minting_key_id TEXT COLLATE "C" NOT NULL,
    revoked_at     BIGINT NOT NULL
  );
  `,
];

/**
 * Brings the schema up to date. Safe to run from many replicas at once: a session advisory lock
 * makes concurrent start-ups wait for the first, which then finds nothing to do.
 * Returns the versions applied.
 */
export async function migratePostgres(pool: Pool, schema: string): Promise<number[]> {
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [`keyleash:migrate:${schema}`]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
      await client.query(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`);
      const { rows } = await client.query<{ v: number | null }>('SELECT MAX(version) AS v FROM schema_version');
      // The downgrade guard: a schema from a newer keyleash is never touched (nor served) by this one.
      if ((rows[0]?.v ?? 0) > PG_MIGRATIONS.length) {
        throw new Error(
          `the Postgres schema "${schema}" has version ${rows[0]!.v}, newer than this keyleash knows (${PG_MIGRATIONS.length}): ` +
            'run the keyleash version that wrote it (or newer), or restore a backup taken before the upgrade',
        );
      }
      for (let v = (rows[0]?.v ?? 0) + 1; v <= PG_MIGRATIONS.length; v++) {
        await client.query('BEGIN');
        try {
          await client.query(PG_MIGRATIONS[v - 1]!);
          await client.query('INSERT INTO schema_version (version) VALUES ($1)', [v]);
          await client.query('COMMIT');
          applied.push(v);
        } catch (e) {
          await client.query('ROLLBACK');
          throw e;
        }
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`keyleash:migrate:${schema}`]);
    }
  } finally {
    client.release();
  }
  return applied;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
