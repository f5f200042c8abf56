// Append-only: a released migration is never edited, only followed by a new one.
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE keys (
    id                TEXT PRIMARY KEY,
    token_hash        TEXT NOT NULL UNIQUE,
    label             TEXT NOT NULL,
    vendor            TEXT NOT NULL,
    mode              TEXT NOT NULL CHECK (mode IN ('test', 'live')),
    allowed_endpoints TEXT NOT NULL,
    daily_cap_micros  INTEGER CHECK (daily_cap_micros IS NULL OR daily_cap_micros >= 0),
    metadata          TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    revoked_at        INTEGER,
    request_count     INTEGER NOT NULL DEFAULT 0,
    last_used_at      INTEGER
  );
  CREATE INDEX keys_by_created ON keys (created_at DESC, id DESC);

  CREATE TABLE key_spend (
    key_id       TEXT NOT NULL REFERENCES keys (id),
    day          TEXT NOT NULL,
    spent_micros INTEGER NOT NULL,
    PRIMARY KEY (key_id, day)
  ) WITHOUT ROWID;

  CREATE TABLE reservations (
    id              TEXT PRIMARY KEY,
    key_id          TEXT NOT NULL REFERENCES keys (id),
    day             TEXT NOT NULL,
    estimate_micros INTEGER NOT NULL,
    final_micros    INTEGER,
    state           TEXT NOT NULL CHECK (state IN ('reserved', 'settled', 'released', 'unknown')),
    request_id      TEXT NOT NULL,
    method          TEXT NOT NULL,
    path            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    settled_at      INTEGER
  );
  CREATE INDEX reservations_by_key ON reservations (key_id, created_at);
  CREATE INDEX reservations_open ON reservations (created_at) WHERE state = 'reserved';

  CREATE TABLE audit (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT NOT NULL UNIQUE,
    time                INTEGER NOT NULL,
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
    cost_micros         INTEGER NOT NULL,
    upstream_latency_ms REAL
  );
  CREATE INDEX audit_by_key ON audit (key_id, seq DESC);
  `,
  // Budgets above keys. key_budgets is the join the ledger and the kill switch use; keys.budget_ids
  // keeps the attachment order for the KeyRecord.
  `
  ALTER TABLE keys ADD COLUMN budget_ids TEXT NOT NULL DEFAULT '[]';

  CREATE TABLE budgets (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    limit_micros INTEGER NOT NULL CHECK (limit_micros >= 0),
    period       TEXT NOT NULL CHECK (period IN ('day', 'month', 'total')),
    frozen       INTEGER NOT NULL DEFAULT 0,
    metadata     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
  ) WITHOUT ROWID;

  CREATE TABLE key_budgets (
    tenant_id TEXT NOT NULL,
    budget_id TEXT NOT NULL,
    key_id    TEXT NOT NULL REFERENCES keys (id),
    position  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, budget_id, key_id),
    FOREIGN KEY (tenant_id, budget_id) REFERENCES budgets (tenant_id, id)
  ) WITHOUT ROWID;
  CREATE INDEX key_budgets_by_key ON key_budgets (key_id, position);

  CREATE TABLE budget_spend (
    tenant_id    TEXT NOT NULL,
    budget_id    TEXT NOT NULL,
    win          TEXT NOT NULL,
    spent_micros INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, budget_id, win)
  ) WITHOUT ROWID;
  `,
  `
  CREATE TABLE idempotency (
    key_id         TEXT NOT NULL,
    idem_key       TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (key_id, idem_key)
  ) WITHOUT ROWID;
  CREATE INDEX idempotency_by_created ON idempotency (created_at);
  `,
  `
  ALTER TABLE keys ADD COLUMN rate_requests INTEGER;
  ALTER TABLE keys ADD COLUMN rate_per_ms INTEGER;
  ALTER TABLE budgets ADD COLUMN rate_requests INTEGER;
  ALTER TABLE budgets ADD COLUMN rate_per_ms INTEGER;
  `,
  `
  ALTER TABLE keys ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
  ALTER TABLE audit ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
  CREATE INDEX keys_by_tenant ON keys (tenant_id, created_at DESC, id DESC);
  CREATE INDEX audit_by_tenant ON audit (tenant_id, seq DESC);
  `,
  `
  ALTER TABLE audit ADD COLUMN chain_id TEXT;
  ALTER TABLE audit ADD COLUMN chain_seq INTEGER;
  ALTER TABLE audit ADD COLUMN prev_hash TEXT;
  ALTER TABLE audit ADD COLUMN hash TEXT;
  `,
  // Minting keys and minted keys. key_lineage lists every ancestor of a narrowed key, so an
  // ancestor's spend can be summed over its descendants; versions hold salts, never secrets.
  `
  ALTER TABLE keys ADD COLUMN minting_key_id TEXT;
  ALTER TABLE keys ADD COLUMN mint_version INTEGER;
  ALTER TABLE keys ADD COLUMN ancestor_ids TEXT NOT NULL DEFAULT '[]';
  CREATE INDEX keys_by_minting_key ON keys (minting_key_id) WHERE minting_key_id IS NOT NULL;

  CREATE TABLE key_lineage (
    ancestor_id TEXT NOT NULL REFERENCES keys (id),
    key_id      TEXT NOT NULL REFERENCES keys (id),
    PRIMARY KEY (ancestor_id, key_id)
  ) WITHOUT ROWID;

  CREATE TABLE minting_keys (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    label             TEXT NOT NULL,
    mode              TEXT NOT NULL CHECK (mode IN ('test', 'live')),
    vendors           TEXT NOT NULL,
    allowed_endpoints TEXT NOT NULL,
    max_cap_micros    INTEGER CHECK (max_cap_micros IS NULL OR max_cap_micros >= 0),
    max_ttl_seconds   INTEGER NOT NULL,
    budget_ids        TEXT NOT NULL,
    allowed_budgets   TEXT NOT NULL,
    metadata          TEXT NOT NULL,
    versions          TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    revoked_at        INTEGER
  );
  CREATE INDEX minting_keys_by_tenant ON minting_keys (tenant_id, created_at DESC, id DESC);

  CREATE TABLE minted_revocations (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    minting_key_id TEXT NOT NULL,
    revoked_at     INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
];
