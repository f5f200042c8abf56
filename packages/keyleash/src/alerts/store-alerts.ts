import type { ReserveRequest, ReserveResult, Store } from '../store/store.js';
import type { AlertService } from './service.js';

/**
 * The store as the proxy sees it, raising alerts from reservation results: `cap.exhausted`
 * (once per key and day, or per budget and window) and `budget.threshold` at 80 % and 100 %
 * (once per budget, window and threshold). Nothing is added to a call that raises none.
 */
export function alertingStore(store: Store, alerts: AlertService): Store {
  const seen = new Set<string>();
  const first = (k: string) => {
    if (seen.has(k)) return false;
    if (seen.size > 100_000) seen.clear();
    seen.add(k);
    return true;
  };
  const tenantOf = async (keyId: string) => (await store.getKeyById(keyId).catch(() => null))?.tenantId;

  const raise = async (req: ReserveRequest, r: ReserveResult): Promise<void> => {
    if (r.ok && r.thresholds) {
      const tenant = await tenantOf(req.keyId);
      if (!tenant) return;
      for (const t of r.thresholds) {
        alerts.emitOnce(tenant, `budget:${t.budgetId}:${t.window}:${t.percent}`, 'budget.threshold', {
          budget: t.budgetId,
          window: t.window,
          percent: t.percent,
          spend_usd: t.spentMicros / 1e6,
          limit_usd: t.limitMicros / 1e6,
          key_id: req.keyId,
        });
      }
    } else if (!r.ok && r.code === 'cap_exhausted') {
      const budget = r.limit?.kind === 'budget' ? r.limit : undefined;
      // A parent key's cap is that key's exhaustion, whichever of its descendants hit it.
      const capped = r.limit?.kind === 'parent_key' ? r.limit.id : req.keyId;
      const scope = budget ? `budget:${budget.id}:${budget.window}` : `key:${capped}:${req.day}`;
      if (!first(scope)) return;
      const tenant = await tenantOf(req.keyId);
      if (!tenant) return;
      alerts.emit(tenant, 'cap.exhausted', {
        key_id: req.keyId,
        limit: budget
          ? { kind: 'budget', id: budget.id, period: budget.period, window: budget.window }
          : r.limit?.kind === 'parent_key'
            ? { kind: 'parent_key', id: r.limit.id }
            : { kind: 'key' },
        spend_usd: r.spentMicros / 1e6,
        cap_usd: r.capMicros / 1e6,
        cost_usd: req.amountMicros / 1e6,
        method: req.method,
        path: req.path,
      });
      if (budget) {
        alerts.emitOnce(tenant, `budget:${budget.id}:${budget.window}:100`, 'budget.threshold', {
          budget: budget.id,
          window: budget.window,
          percent: 100,
          spend_usd: r.spentMicros / 1e6,
          limit_usd: r.capMicros / 1e6,
          key_id: req.keyId,
        });
      }
    }
  };

  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'reserve') {
        return async (req: ReserveRequest) => {
          const r = await target.reserve(req);
          if ((r.ok && r.thresholds) || (!r.ok && r.code === 'cap_exhausted')) void raise(req, r);
          return r;
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
