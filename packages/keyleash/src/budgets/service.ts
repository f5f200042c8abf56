import { z } from 'zod';
import { invalidParam as invalid, KeyleashError } from '../errors.js';
import { BUDGET_ID, metadataProblem } from '../policy/fields.js';
import { microsToUsd, parseUsdToMicros } from '../policy/money.js';
import { utcDay } from '../policy/ttl.js';
import { rateLimitSchema, rateLimitView, toRateLimit } from '../policy/rate.js';
import { zodToKeyleashError } from '../keys/service.js';
import { budgetWindow, DEFAULT_TENANT, type BudgetPatch, type BudgetRecord, type Store } from '../store/store.js';

// Named budgets above keys (`user:u42`, `team:billing`, `tenant:acme`): a USD limit per period
// that every attached key's calls reserve against, atomically with the key's own cap.


const usd = z.union([z.number(), z.string()]);
const metadata = z.record(z.string(), z.string().max(500));

export const createBudgetSchema = z.strictObject({
  id: z.string().regex(BUDGET_ID, 'must be 1-100 of A-Z a-z 0-9 _ . : @ -').describe('The budget name, e.g. "user:u42".'),
  limit_usd: usd.describe('USD the budget allows per period, decimal, >= 0.'),
  period: z.enum(['day', 'month', 'total']).describe('day = UTC day, month = UTC calendar month, total = forever.'),
  frozen: z.boolean().default(false).describe('A frozen budget refuses every call of its keys and every new key.'),
  metadata: metadata.default({}).describe('Up to 50 string pairs.'),
  rate_limit: rateLimitSchema.nullable().optional().describe('Requests per period over all the budget\'s keys together (429 rate_limited).'),
});

export const updateBudgetSchema = z.strictObject({
  limit_usd: usd.optional().describe('New limit; applies to the current window at once.'),
  frozen: z.boolean().optional().describe('Freeze (true) or unfreeze (false).'),
  metadata: metadata.optional().describe('Replaces the metadata.'),
  rate_limit: rateLimitSchema.nullable().optional().describe('Replaces the rate limit; null removes it.'),
});

export interface BudgetView {
  object: 'budget';
  id: string;
  limit_usd: number;
  limit_micros: number;
  period: BudgetRecord['period'];
  frozen: boolean;
  metadata: Record<string, string>;
  rate_limit: { requests: number; per: string } | null;
  /** The current window: YYYY-MM-DD, YYYY-MM or "total". */
  window: string;
  spend_usd: number;
  spend_micros: number;
  remaining_usd: number;
  remaining_micros: number;
  created_at: string;
  updated_at: string;
}

function notFound(id: string): KeyleashError {
  return new KeyleashError('budget_not_found', `No budget with id ${JSON.stringify(id.slice(0, 100))}.`);
}

function checkMetadata(m: Record<string, string>): void {
  const bad = metadataProblem(m);
  if (bad) throw invalid(bad.param, bad.reason);
}

export class BudgetService {
  private readonly now: () => number;

  constructor(private readonly o: { store: Store; maxUsd?: number; now?: () => number }) {
    this.now = o.now ?? Date.now;
  }

  private limit(value: unknown): number {
    const r = parseUsdToMicros(value, this.o.maxUsd ?? 1_000_000_000);
    if (!r.ok) throw invalid('limit_usd', r.reason);
    return r.micros;
  }

  async create(body: unknown, tenantId = DEFAULT_TENANT): Promise<BudgetView> {
    const parsed = createBudgetSchema.safeParse(body);
    if (!parsed.success) throw zodToKeyleashError(parsed.error);
    const b = parsed.data;
    checkMetadata(b.metadata);
    const now = this.now();
    const record: BudgetRecord = {
      tenantId,
      id: b.id,
      limitMicros: this.limit(b.limit_usd),
      period: b.period,
      frozen: b.frozen,
      metadata: b.metadata,
      rateLimit: b.rate_limit ? toRateLimit(b.rate_limit) : null,
      createdAt: now,
      updatedAt: now,
    };
    if (!(await this.o.store.createBudget(record))) {
      throw new KeyleashError('budget_exists', `A budget with id ${JSON.stringify(b.id)} already exists.`, { param: 'id' });
    }
    return this.view(record, 0);
  }

  async get(id: string, tenantId = DEFAULT_TENANT): Promise<BudgetView> {
    const b = await this.o.store.getBudget(tenantId, id);
    if (!b) throw notFound(id);
    return this.withSpend(b);
  }

  /** The spend of one window (default: the current one). */
  async spend(id: string, window: string | undefined, tenantId = DEFAULT_TENANT): Promise<BudgetView> {
    const b = await this.o.store.getBudget(tenantId, id);
    if (!b) throw notFound(id);
    if (window === undefined) return this.withSpend(b);
    const shape = b.period === 'day' ? /^\d{4}-\d{2}-\d{2}$/ : b.period === 'month' ? /^\d{4}-\d{2}$/ : /^total$/;
    if (!shape.test(window)) throw invalid('window', `a ${b.period} budget's window looks like ${budgetWindow(b.period, '2026-01-31')}`);
    return this.view(b, await this.o.store.budgetSpend(tenantId, id, window), window);
  }

  async list(limit: number, cursor: string | null, tenantId = DEFAULT_TENANT) {
    const page = await this.o.store.listBudgets(tenantId, limit, cursor);
    const data = await Promise.all(page.items.map((b) => this.withSpend(b)));
    return { object: 'list' as const, data, has_more: page.nextCursor !== null, next_cursor: page.nextCursor };
  }

  async update(id: string, body: unknown, tenantId = DEFAULT_TENANT): Promise<BudgetView> {
    const parsed = updateBudgetSchema.safeParse(body);
    if (!parsed.success) throw zodToKeyleashError(parsed.error);
    const patch: BudgetPatch = {};
    if (parsed.data.limit_usd !== undefined) patch.limitMicros = this.limit(parsed.data.limit_usd);
    if (parsed.data.frozen !== undefined) patch.frozen = parsed.data.frozen;
    if (parsed.data.rate_limit !== undefined) patch.rateLimit = parsed.data.rate_limit ? toRateLimit(parsed.data.rate_limit) : null;
    if (parsed.data.metadata !== undefined) {
      checkMetadata(parsed.data.metadata);
      patch.metadata = parsed.data.metadata;
    }
    const b = await this.o.store.updateBudget(tenantId, id, patch, this.now());
    if (!b) throw notFound(id);
    return this.withSpend(b);
  }

  async remove(id: string, tenantId = DEFAULT_TENANT): Promise<{ object: 'budget'; id: string; deleted: true }> {
    const r = await this.o.store.deleteBudget(tenantId, id, this.now());
    if (r === 'not_found') throw notFound(id);
    if (r === 'in_use') {
      throw new KeyleashError(
        'budget_in_use',
        `Active keys, or a minting key, use budget ${JSON.stringify(id)}; revoke them first (POST /v1/keys/revoke {"budget": ...}, DELETE /v1/minting_keys/{id}).`,
      );
    }
    return { object: 'budget', id, deleted: true };
  }

  /**
   * Checks budgets named at issuance: each exists in the tenant and is not frozen. Returns the
   * ids in order, without duplicates.
   */
  async resolveForIssue(ids: readonly string[], tenantId = DEFAULT_TENANT): Promise<string[]> {
    const out: string[] = [];
    for (const [i, id] of ids.entries()) {
      if (out.includes(id)) continue;
      const b = BUDGET_ID.test(id) ? await this.o.store.getBudget(tenantId, id) : null;
      // Another tenant's budget answers exactly like a missing one.
      if (!b) throw invalid(`budgets.${i}`, `no budget with id ${JSON.stringify(id.slice(0, 100))}`);
      if (b.frozen) {
        throw new KeyleashError('budget_frozen', `Budget ${JSON.stringify(id)} is frozen: no key can be issued against it.`, {
          param: `budgets.${i}`,
          extra: { budget: id },
        });
      }
      out.push(id);
    }
    return out;
  }

  private async withSpend(b: BudgetRecord): Promise<BudgetView> {
    const window = budgetWindow(b.period, utcDay(this.now()));
    return this.view(b, await this.o.store.budgetSpend(b.tenantId, b.id, window), window);
  }

  view(b: BudgetRecord, spent: number, window = budgetWindow(b.period, utcDay(this.now()))): BudgetView {
    const remaining = Math.max(0, b.limitMicros - spent);
    return {
      object: 'budget',
      id: b.id,
      limit_usd: microsToUsd(b.limitMicros),
      limit_micros: b.limitMicros,
      period: b.period,
      frozen: b.frozen,
      metadata: b.metadata,
      rate_limit: rateLimitView(b.rateLimit),
      window,
      spend_usd: microsToUsd(spent),
      spend_micros: spent,
      remaining_usd: microsToUsd(remaining),
      remaining_micros: remaining,
      created_at: new Date(b.createdAt).toISOString(),
      updated_at: new Date(b.updatedAt).toISOString(),
    };
  }
}
