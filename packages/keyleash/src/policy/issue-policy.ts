import { parseEndpointPattern, patternCovers, type EndpointPattern } from './endpoints.js';

/**
 * What an admin token may issue. Every field is optional; a token (or tenant) with several
 * policies must satisfy all of them.
 */
export interface IssuePolicy {
  /** Longest TTL a key may get, in seconds. */
  maxTtlSeconds?: number;
  /** Largest daily cap, in micro-dollars; with it, a key without a cap is refused. */
  maxDailyCapMicros?: number;
  /** Vendors keys may be issued for. */
  vendors?: string[];
  /** Patterns every requested allowed_endpoints pattern must fall within. */
  endpoints?: string[];
}

export interface PolicyViolation {
  param: string;
  reason: string;
}

/** The first way the key request breaks a policy, or null. */
export function checkIssuePolicy(
  policies: readonly IssuePolicy[],
  req: { vendor: string; endpoints: readonly EndpointPattern[]; capMicros: number | null; ttlSeconds: number },
): PolicyViolation | null {
  for (const p of policies) {
    if (p.vendors && !p.vendors.includes(req.vendor)) {
      return { param: 'vendor', reason: `this admin token may issue keys for ${p.vendors.join(', ') || 'no vendor'} only` };
    }
    if (p.maxTtlSeconds !== undefined && req.ttlSeconds > p.maxTtlSeconds) {
      return { param: 'expires_in', reason: `this admin token may issue keys for at most ${p.maxTtlSeconds} seconds` };
    }
    if (p.maxDailyCapMicros !== undefined) {
      if (req.capMicros === null) return { param: 'daily_usd_cap', reason: `this admin token must set a cap of at most ${p.maxDailyCapMicros / 1e6} USD` };
      if (req.capMicros > p.maxDailyCapMicros) {
        return { param: 'daily_usd_cap', reason: `this admin token may set a cap of at most ${p.maxDailyCapMicros / 1e6} USD` };
      }
    }
    if (p.endpoints) {
      const allowed = p.endpoints.map(parseEndpointPattern).filter((x): x is EndpointPattern => !('error' in x));
      for (const [i, r] of req.endpoints.entries()) {
        if (!allowed.some((a) => patternCovers(a, r))) {
          return { param: `allowed_endpoints.${i}`, reason: `"${r.source}" is outside this admin token's endpoints (${p.endpoints.join(', ')})` };
        }
      }
    }
  }
  return null;
}

/** The default TTL, shortened to fit every policy's maximum. */
export function defaultTtlWithin(policies: readonly IssuePolicy[], dflt: number): number {
  return Math.min(dflt, ...policies.map((p) => p.maxTtlSeconds ?? Infinity));
}
