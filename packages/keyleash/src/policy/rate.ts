import { z } from 'zod';
import type { RateLimit } from '../store/store.js';

const PERIOD_MS = { second: 1_000, minute: 60_000, hour: 3_600_000 } as const;

/** `{"requests": 10, "per": "second"}`: a token bucket of 10, refilled at 10 per second. */
export const rateLimitSchema = z.strictObject({
  requests: z.number().int().min(1).max(1_000_000).describe('Requests allowed per period (also the burst size).'),
  per: z.enum(['second', 'minute', 'hour']).describe('The period.'),
});

export type RateLimitInput = z.output<typeof rateLimitSchema>;

export function toRateLimit(r: RateLimitInput): RateLimit {
  return { requests: r.requests, perMs: PERIOD_MS[r.per] };
}

export function rateLimitView(r: RateLimit | null): { requests: number; per: string } | null {
  if (!r) return null;
  const per = (Object.entries(PERIOD_MS).find(([, ms]) => ms === r.perMs)?.[0] ?? `${r.perMs}ms`) as string;
  return { requests: r.requests, per };
}
