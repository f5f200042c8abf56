// TTLs arrive as "30s" / "5m" / "1h" / "1d" strings or as a number of seconds.

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export function parseTtlSeconds(value: unknown): { ok: true; seconds: number } | { ok: false; reason: string } {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value <= 0) return { ok: false, reason: 'must be a positive whole number of seconds' };
    return { ok: true, seconds: value };
  }
  if (typeof value === 'string') {
    const m = /^([1-9][0-9]{0,8})(s|m|h|d)$/.exec(value);
    if (!m) return { ok: false, reason: 'must look like "30s", "5m", "1h" or "1d", or be a number of seconds' };
    return { ok: true, seconds: Number(m[1]) * UNIT_SECONDS[m[2]!]! };
  }
  return { ok: false, reason: 'must be a duration string like "5m" or a number of seconds' };
}

export function formatTtl(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** The UTC calendar day a timestamp falls in, as YYYY-MM-DD: the window daily caps count in. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
