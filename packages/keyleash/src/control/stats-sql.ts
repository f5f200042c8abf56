import type { Dialect, Row, StatsStatement } from './stats-reader.js';

// The dashboard's aggregates as SQL that SQLite and Postgres both run: every figure is computed
// over every matching audit record (nothing sampled, nothing cut off), grouped in the database so
// only a few rows travel back.

/** Collects parameters in order and writes the placeholder each dialect expects. */
class Params {
  readonly values: unknown[] = [];
  constructor(private readonly dialect: Dialect) {}
  p(v: unknown): string {
    this.values.push(v);
    return this.dialect === 'pg' ? `$${this.values.length}` : '?';
  }
}

const DENY = `CASE WHEN decision = 'deny' THEN 1 ELSE 0 END`;

// better-sqlite3 binds a JS number as a REAL, so a bucket number is cast back to an integer.

/** Numbers from either driver (Postgres sends bigint and numeric sums as strings). */
export const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

/**
 * Today in one statement: per vendor, denials per code, the top spending keys and per budget,
 * all from one pass over the day's records (materialized once, then grouped four ways).
 */
export function overviewStatement(dialect: Dialect, dayStart: number, recentSince: number, topN: number): StatsStatement {
  const q = new Params(dialect);
  const recent = q.p(recentSince);
  const since = q.p(dayStart);
  const top = q.p(topN);
  const sql = `WITH g AS MATERIALIZED (
      SELECT key_id, vendor, decision, code, count(*) AS n, sum(cost_micros) AS s,
        sum(CASE WHEN time >= ${recent} THEN 1 ELSE 0 END) AS r, max(label) AS label
      FROM audit WHERE time >= ${since} GROUP BY key_id, vendor, decision, code)
    SELECT 'vendor' AS dim, coalesce(vendor, 'unknown') AS name, NULL AS tenant, NULL AS vendor, NULL AS label,
      sum(n) AS calls, sum(s) AS spend, sum(CASE WHEN decision = 'deny' THEN n ELSE 0 END) AS denials, sum(r) AS recent
      FROM g GROUP BY coalesce(vendor, 'unknown')
    UNION ALL
    SELECT 'code', coalesce(code, 'unknown'), NULL, NULL, NULL, sum(n), 0, sum(n), 0
      FROM g WHERE decision = 'deny' GROUP BY coalesce(code, 'unknown')
    UNION ALL
    SELECT * FROM (
      SELECT 'key' AS dim, key_id AS name, NULL AS tenant, max(vendor) AS vendor, max(label) AS label,
        sum(n) AS calls, sum(s) AS spend, 0 AS denials, 0 AS recent
      FROM g WHERE key_id IS NOT NULL GROUP BY key_id HAVING sum(s) > 0 ORDER BY spend DESC, calls DESC LIMIT ${top}) AS top_keys
    UNION ALL
    SELECT 'budget', kb.budget_id, kb.tenant_id, NULL, NULL, sum(g.n), sum(g.s),
      sum(CASE WHEN g.decision = 'deny' THEN g.n ELSE 0 END), 0
      FROM g JOIN key_budgets kb ON kb.key_id = g.key_id GROUP BY kb.tenant_id, kb.budget_id`;
  return { sql, params: q.values };
}

export type SeriesGroup = 'vendor' | 'budget';

/** Spend, calls and denials per bucket and per vendor or budget, for [from, to). */
export function seriesStatement(dialect: Dialect, group: SeriesGroup, from: number, to: number, bucketMs: number): StatsStatement {
  const q = new Params(dialect);
  if (group === 'vendor') {
    const start = q.p(from);
    const size = q.p(bucketMs);
    const sql = `SELECT CAST((time - ${start}) / ${size} AS INTEGER) AS b, coalesce(vendor, 'unknown') AS name, NULL AS tenant,
        count(*) AS calls, sum(cost_micros) AS spend, sum(${DENY}) AS denials
      FROM audit WHERE time >= ${q.p(from)} AND time < ${q.p(to)} GROUP BY 1, 2`;
    return { sql, params: q.values };
  }
  const start = q.p(from);
  const size = q.p(bucketMs);
  const sql = `SELECT CAST((a.time - ${start}) / ${size} AS INTEGER) AS b, kb.budget_id AS name, kb.tenant_id AS tenant,
      count(*) AS calls, sum(a.cost_micros) AS spend, sum(CASE WHEN a.decision = 'deny' THEN 1 ELSE 0 END) AS denials
    FROM audit a JOIN key_budgets kb ON kb.key_id = a.key_id
    WHERE a.time >= ${q.p(from)} AND a.time < ${q.p(to)} GROUP BY 1, kb.tenant_id, kb.budget_id`;
  return { sql, params: q.values };
}

/** One key's spend, calls and denials per bucket from `from` on. */
export function keySeriesStatement(dialect: Dialect, keyId: string, from: number, bucketMs: number): StatsStatement {
  const q = new Params(dialect);
  const start = q.p(from);
  const size = q.p(bucketMs);
  const sql = `SELECT CAST((time - ${start}) / ${size} AS INTEGER) AS b, count(*) AS calls, sum(cost_micros) AS spend, sum(${DENY}) AS denials
    FROM audit WHERE key_id = ${q.p(keyId)} AND time >= ${q.p(from)} GROUP BY 1`;
  return { sql, params: q.values };
}

export type { Row };
