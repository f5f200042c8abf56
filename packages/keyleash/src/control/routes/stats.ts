import type { FastifyPluginAsync } from 'fastify';
import type { AuditSink } from '../../audit/sink.js';
import type { KeyService } from '../../keys/service.js';
import { microsToUsd } from '../../policy/money.js';
import { utcDay } from '../../policy/ttl.js';
import type { AuditFilter, AuditRecord, Store } from '../../store/store.js';

// Operator views computed from the audit log (so every replica agrees, and a restart loses
// nothing): today's overview, and one key's spend over time.

const PAGE = 1000;
/** An overview reads at most this many of today's records and says so when it stops short. */
const MAX_SCAN = 200_000;
const RATE_WINDOW_MS = 60_000;
const TOP_N = 10;

/** Reads matching records newest first, at most `max` of them. */
async function scanAudit(
  store: Store,
  filter: AuditFilter,
  max: number,
  each: (r: AuditRecord) => void,
): Promise<{ scanned: number; truncated: boolean }> {
  let cursor: string | null = null;
  let scanned = 0;
  do {
    const page = await store.listAudit(filter, PAGE, cursor);
    for (const r of page.items) {
      if (scanned >= max) return { scanned, truncated: true };
      each(r);
      scanned++;
    }
    cursor = page.nextCursor;
  } while (cursor !== null);
  return { scanned, truncated: false };
}

interface Row {
  name: string;
  spend_micros: number;
  calls: number;
  denials: number;
}

const rowView = (r: Row) => ({ ...r, spend_usd: microsToUsd(r.spend_micros) });

export interface StatsOptions {
  store: Store;
  audit: AuditSink;
  keys: KeyService;
  now?: () => number;
}

export const statsRoutes: FastifyPluginAsync<StatsOptions> = async (app, o) => {
  const now = o.now ?? Date.now;

  /**
   * Today (UTC) at a glance. Spend is grouped in `breakdowns`, one entry per dimension: today
   * `vendor`; budgets will add a `budget` dimension with the same row shape.
   */
  app.get('/v1/stats/overview', async () => {
    await o.audit.flush();
    const t = now();
    const day = utcDay(t);
    const dayStart = Date.parse(`${day}T00:00:00.000Z`);
    const vendors = new Map<string, Row>();
    const codes = new Map<string, number>();
    const keys = new Map<string, { key_id: string; label: string | null; vendor: string | null; spend_micros: number; calls: number }>();
    let calls = 0;
    let denials = 0;
    let spend = 0;
    let recent = 0;
    const scan = await scanAudit(o.store, { since: dayStart }, MAX_SCAN, (r) => {
      calls++;
      spend += r.costMicros;
      if (r.time >= t - RATE_WINDOW_MS) recent++;
      const vendorName = r.vendor ?? 'unknown';
      let v = vendors.get(vendorName);
      if (!v) vendors.set(vendorName, (v = { name: vendorName, spend_micros: 0, calls: 0, denials: 0 }));
      v.calls++;
      v.spend_micros += r.costMicros;
      if (r.decision === 'deny') {
        denials++;
        v.denials++;
        const code = r.code ?? 'unknown';
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
      if (r.keyId !== null) {
        let k = keys.get(r.keyId);
        if (!k) keys.set(r.keyId, (k = { key_id: r.keyId, label: r.label, vendor: r.vendor, spend_micros: 0, calls: 0 }));
        k.calls++;
        k.spend_micros += r.costMicros;
      }
    });
    const top = [...keys.values()]
      .filter((k) => k.spend_micros > 0)
      .sort((a, b) => b.spend_micros - a.spend_micros || b.calls - a.calls)
      .slice(0, TOP_N)
      .map((k) => ({ ...k, spend_usd: microsToUsd(k.spend_micros) }));
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
      breakdowns: [{ dimension: 'vendor', rows: [...vendors.values()].sort((a, b) => b.spend_micros - a.spend_micros).map(rowView) }],
      denials_by_code: [...codes.entries()].map(([code, count]) => ({ code, count })).sort((a, b) => b.count - a.count),
      top_spenders: top,
      scanned: scan.scanned,
      truncated: scan.truncated,
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
    const scan = await scanAudit(o.store, { keyId: key.id, since: first }, MAX_SCAN, (r) => {
      const p = points[Math.floor((r.time - first) / bucketMs)];
      if (!p) return;
      p.calls++;
      p.spend_micros += r.costMicros;
      if (r.decision === 'deny') p.denials++;
    });
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
      truncated: scan.truncated,
    };
  });
};
