import type { ErrorCode } from '../errors.js';
import { formatUsd } from '../policy/money.js';
import type { ReserveResult } from '../store/store.js';

/** The proxy's answer to a refused reservation: code, message and extra body fields. */
export function reserveRefusal(
  r: Exclude<ReserveResult, { ok: true }>,
  estimate: number,
): { code: ErrorCode; message?: string; extra?: Record<string, unknown>; retryAfterSeconds?: number } {
  if (r.code === 'rate_limited') {
    const what = r.limit.kind === 'key' ? 'this key' : `budget ${r.limit.id}`;
    return {
      code: 'rate_limited',
      message: `Too many requests for ${what}.`,
      extra: { limit: r.limit },
      retryAfterSeconds: Math.max(1, Math.ceil(r.retryAfterMs / 1000)),
    };
  }
  if (r.code === 'cap_exhausted') {
    const remaining = Math.max(0, r.capMicros - r.spentMicros);
    const cost = { cost_usd: estimate / 1e6, remaining_usd: remaining / 1e6 };
    if (r.limit?.kind === 'parent_key') {
      return {
        code: 'cap_exhausted',
        message: `This call costs ${formatUsd(estimate)} but key ${r.limit.id}, which this key was narrowed from, has ${formatUsd(remaining)} left of its ${formatUsd(r.capMicros)} daily cap.`,
        extra: { limit: { kind: 'parent_key', id: r.limit.id }, ...cost },
      };
    }
    if (r.limit) {
      const { id, period, window } = r.limit;
      return {
        code: 'cap_exhausted',
        message: `This call costs ${formatUsd(estimate)} but budget ${id} has ${formatUsd(remaining)} left of its ${formatUsd(r.capMicros)} ${period === 'total' ? 'total' : `per-${period}`} limit.`,
        extra: { limit: { kind: 'budget', id, period, window }, ...cost },
      };
    }
    return {
      code: 'cap_exhausted',
      message: `This call costs ${formatUsd(estimate)} but the key has ${formatUsd(remaining)} left of its ${formatUsd(r.capMicros)} daily cap.`,
      extra: { limit: 'key', ...cost },
    };
  }
  if (r.code === 'budget_frozen') {
    return { code: 'budget_frozen', message: `Budget ${r.budgetId} is frozen.`, extra: { budget: r.budgetId } };
  }
  return { code: r.code };
}
