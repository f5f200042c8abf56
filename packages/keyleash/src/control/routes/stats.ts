import type { FastifyPluginAsync } from 'fastify';
import type { AuditSink } from '../../audit/sink.js';
import type { KeyService } from '../../keys/service.js';
import { microsToUsd } from '../../policy/money.js';
import { utcDay } from '../../policy/ttl.js';
import { DEFAULT_TENANT, type Store } from '../../store/store.js';
import { acquireReader, Coalesced, type StatsReader } from '../stats-reader.js';
import { keySeriesStatement, num, overviewStatement, seriesStatement, type SeriesGroup } from '../stats-sql.js';
import { enumParam, type Query } from './query.js';

// Operator views computed from the audit log (so every replica agrees, and a restart loses
// nothing): today's overview, spend over time per vendor or budget, and one key's spend over
// time. Every figure counts every record; the reading happens off the proxy's event loop
// (stats-reader.ts).

const RATE_WINDOW_MS = 60_000;
const TOP_N = 10;
/** Series kept by name in a spend chart; the rest are summed into one "(other)" series. */
const MAX_SERIES = 20;

/** The ranges a spend chart offers, each with a bucket size that gives it 25 to 60 points. */
export const SPEND_RANGES = {
  '1h': { ms: 3600_000, bucketMs: 60_000 },
  '24h': { ms: 24 * 3600_000, bucketMs: 1800_000 },
  '7d': { ms: 7 * 24 * 3600_000, bucketMs: 6 * 3600_000 },
  '30d': { ms: 30 * 24 * 3600_000, bucketMs: 24 * 3600_000 },
} as const;
type SpendRange = keyof typeof SPEND_RANGES;

interface Row {
  name: string;
  spend_micros: number;
  calls: number;
  denials: number;
}

const rowView = (r: Row) => ({ ...r, spend_usd: microsToUsd(r.spend_micros) });
const budgetName = (tenant: unknown, id: unknown) => (tenant === DEFAULT_TENANT || tenant === null ? String(id) : `${String(tenant)}/${String(id)}`);

export interface StatsOptions {
  store: Store;
  audit: AuditSink;
  keys: KeyService;
  now?: () => number;
  /** Where the aggregates are read; default: a worker for a SQLite file, else the store itself. */
  reader?: StatsReader;
  /** How long a computed figure is reused, at least (see Coalesced); default 1000 ms. */
  statsFreshMs?: number;
}

export const statsRoutes: FastifyPluginAsync<StatsOptions> = async (app, o) => {
  const now = o.now ?? Date.now;
  let reader = o.reader;
  if (!reader) {
    const shared = acquireReader(o.store);
    reader = shared.reader;
    app.addHook('onClose', () => shared.release());
  }
  const r = reader;
  const shared = new Coalesced<unknown>(o.statsFreshMs ?? 1000);

  /**
   * Today (UTC) at a glance. Spend is grouped in `breakdowns`, one entry per dimension: `vendor`,
   * then `budget` (a key's calls count once for each budget it draws on).
   */
  app.get('/v1/stats/overview', async () => {
    await o.audit.flush();
    const t = now();
    const day = utcDay(t);
    const dayStart = Date.parse(`${day}T00:00:00.000Z`);
    const [rows] = (await shared.run(`overview:${day}`, () =>
      r.read([overviewStatement(r.dialect, dayStart, t - RATE_WINDOW_MS, TOP_N)]),
    )) as [Array<Record<string, unknown>>];
    const vendors: Row[] = [];
    const budgets: Row[] = [];
    const codes: Array<{ code: string; count: number }> = [];
    const top: Array<{ key_id: string; label: string | null; vendor: string | null; spend_micros: number; spend_usd: number; calls: number }> = [];
    let calls = 0;
    let denials = 0;
    let spend = 0;
    let recent = 0;
    for (const r of rows) {
      const row = { name: String(r.name), spend_micros: num(r.spend), calls: num(r.calls), denials: num(r.denials) };
      if (r.dim === 'vendor') {
        vendors.push(row);
        calls += row.calls;
        denials += row.denials;
        spend += row.spend_micros;
        recent += num(r.recent);
      } else if (r.dim === 'code') codes.push({ code: row.name, count: row.calls });
      else if (r.dim === 'budget') budgets.push({ ...row, name: budgetName(r.tenant, r.name) });
      else if (r.dim === 'key') {
        top.push({
          key_id: row.name,
          label: r.label === null ? null : String(r.label),
          vendor: r.vendor === null ? null : String(r.vendor),
          spend_micros: row.spend_micros,
          spend_usd: microsToUsd(row.spend_micros),
          calls: row.calls,
        });
      }
    }
    const bySpend = (a: Row, b: Row) => b.spend_micros - a.spend_micros || b.calls - a.calls || a.name.localeCompare(b.name);
    top.sort((a, b) => b.spend_micros - a.spend_micros || b.calls - a.calls);
    return {
      object: 'overview',
      day,
      generated_at: new Date(t).toISOString(),
      spend_today_usd: microsToUsd(spend),
      spend_today_micros: spend,
      calls_today: calls,
      denials_today: denials,
      calls_per_second: Math.round((recent / (RATE_WINDOW_MS / 1000)) * 1000) / 1000,
      rate_window_seconds: RATE_WINDOW_MS / 1000,
      breakdowns: [
        { dimension: 'vendor', rows: vendors.sort(bySpend).map(rowView) },
        { dimension: 'budget', rows: budgets.sort(bySpend).map(rowView) },
      ],
      denials_by_code: codes.sort((a, b) => b.count - a.count || a.code.localeCompare(b.code)),
      top_spenders: top,
      // Every record of the day is counted; kept for clients that read them.
      scanned: calls,
      truncated: false,
    };
  });

  /** Spend, calls and denials over time, one series per vendor or per budget. */
  app.get('/v1/stats/spend', async (req) => {
    const q = req.query as Query;
    const group: SeriesGroup = enumParam(q, 'group_by', ['vendor', 'budget'] as const) ?? 'vendor';
    const range: SpendRange = enumParam(q, 'range', Object.keys(SPEND_RANGES) as SpendRange[]) ?? '24h';
    await o.audit.flush();
    const t = now();
    const { ms, bucketMs } = SPEND_RANGES[range];
    const first = Math.floor((t - ms) / bucketMs) * bucketMs + bucketMs;
    const n = Math.floor((t - first) / bucketMs) + 1;
    const to = first + n * bucketMs;
    const [rows] = (await shared.run(`series:${group}:${first}:${bucketMs}`, () =>
      r.read([seriesStatement(r.dialect, group, first, to, bucketMs)]),
    )) as [Array<Record<string, unknown>>];
    const byName = new Map<string, { name: string; tenant_id: string | null; spend: number[]; calls: number[]; denials: number[]; total: number; count: number }>();
    for (const r of rows) {
      const b = num(r.b);
      if (b < 0 || b >= n) continue;
      const name = group === 'budget' ? budgetName(r.tenant, r.name) : String(r.name);
      let s = byName.get(name);
      if (!s) {
        const zeros = () => new Array<number>(n).fill(0);
        s = { name, tenant_id: group === 'budget' ? String(r.tenant) : null, spend: zeros(), calls: zeros(), denials: zeros(), total: 0, count: 0 };
        byName.set(name, s);
      }
      s.spend[b]! += num(r.spend);
      s.calls[b]! += num(r.calls);
      s.denials[b]! += num(r.denials);
      s.total += num(r.spend);
      s.count += num(r.calls);
    }
    const all = [...byName.values()].sort((a, b) => b.total - a.total || b.count - a.count || a.name.localeCompare(b.name));
    const kept = all.slice(0, MAX_SERIES);
    const rest = all.slice(MAX_SERIES);
    if (rest.length) {
      const other = { name: '(other)', tenant_id: null, spend: new Array<number>(n).fill(0), calls: new Array<number>(n).fill(0), denials: new Array<number>(n).fill(0), total: 0, count: 0 };
      for (const s of rest) {
        for (let i = 0; i < n; i++) {
          other.spend[i]! += s.spend[i]!;
          other.calls[i]! += s.calls[i]!;
          other.denials[i]! += s.denials[i]!;
        }
        other.total += s.total;
        other.count += s.count;
      }
      kept.push(other);
    }
    return {
      object: 'spend_over_time',
      group_by: group,
      range,
      bucket_seconds: bucketMs / 1000,
      from: new Date(first).toISOString(),
      to: new Date(t).toISOString(),
      buckets: Array.from({ length: n }, (_, i) => new Date(first + i * bucketMs).toISOString()),
      series: kept.map((s) => ({
        name: s.name,
        ...(group === 'budget' ? { tenant_id: s.tenant_id } : {}),
        spend_micros: s.spend,
        spend_usd: s.spend.map(microsToUsd),
        calls: s.calls,
        denials: s.denials,
        total_spend_micros: s.total,
        total_spend_usd: microsToUsd(s.total),
        total_calls: s.count,
      })),
      series_total: all.length,
    };
  });

  /** One key's spend and calls over time, in buckets, from the audit log. */
  app.get<{ Params: { id: string } }>('/v1/keys/:id/spend', async (req) => {
    const key = await o.keys.get(req.params.id);
    await o.audit.flush();
    const t = now();
    // A minted key revoked before its first use has no creation time, and no calls.
    const start = Math.max(key.created_at === null ? t : Date.parse(key.created_at), t - 24 * 3600_000);
    const span = Math.max(60_000, t - start);
    const nice = [10, 30, 60, 300, 600, 900, 1800, 3600].map((s) => s * 1000);
    const bucketMs = nice.find((b) => span / b <= 120) ?? 3600_000;
    const first = Math.floor(start / bucketMs) * bucketMs;
    const n = Math.floor((t - first) / bucketMs) + 1;
    const points = Array.from({ length: n }, (_, i) => ({ t: new Date(first + i * bucketMs).toISOString(), spend_micros: 0, calls: 0, denials: 0 }));
    const [rows] = (await shared.run(`key:${key.id}:${first}:${bucketMs}`, () =>
      r.read([keySeriesStatement(r.dialect, key.id, first, bucketMs)]),
    )) as [Array<Record<string, unknown>>];
    for (const r of rows!) {
      const p = points[num(r.b)];
      if (!p) continue;
      p.calls += num(r.calls);
      p.spend_micros += num(r.spend);
      p.denials += num(r.denials);
    }
    let cumulative = 0;
    return {
      object: 'spend_series',
      key_id: key.id,
      bucket_seconds: bucketMs / 1000,
      from: new Date(first).toISOString(),
      to: new Date(t).toISOString(),
      points: points.map((p) => {
        cumulative += p.spend_micros;
        return { ...p, spend_usd: microsToUsd(p.spend_micros), cumulative_usd: microsToUsd(cumulative) };
      }),
      truncated: false,
    };
  });
};
