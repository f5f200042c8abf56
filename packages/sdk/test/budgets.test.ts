import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BudgetExistsError,
  BudgetFrozenError,
  BudgetInUseError,
  BudgetNotFoundError,
  CapExhaustedError,
  InvalidRequestError,
  isCapExhausted,
  KeyRevokedError,
  vaultFetch,
  withVaultKey,
  type IssuedKey,
} from '../src/index.js';
import { startGateway, type TestGateway } from './gateway.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t?.close();
});

const spec = { vendor: 'stripe', allowedEndpoints: ['/v1/payment_intents'], dailyUsdCap: 80, expiresIn: '5m' };

/** One $amount/100 charge through the proxy with `key`. */
function charge(key: IssuedKey, amount: number): Promise<Response> {
  const f = vaultFetch({ key, proxyUrl: t.proxyUrl });
  return f('/stripe/v1/payment_intents', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ amount, currency: 'usd', customer: 'cus_123' }),
  });
}

describe('budgets', () => {
  it('create, get, list, update, CRUD errors', async () => {
    const b = await t.client.createBudget({ id: 'team:crud', limitUsd: 500, period: 'month', metadata: { team: 'crud' }, rateLimit: { requests: 20, per: 'second' } });
    expect(b).toMatchObject({ object: 'budget', id: 'team:crud', limit_usd: 500, period: 'month', frozen: false, spend_usd: 0, remaining_usd: 500 });
    expect(b.rate_limit).toEqual({ requests: 20, per: 'second' });
    expect(b.window).toMatch(/^\d{4}-\d{2}$/);
    await expect(t.client.createBudget({ id: 'team:crud', limitUsd: 1, period: 'day' })).rejects.toBeInstanceOf(BudgetExistsError);
    await expect(t.client.createBudget({ id: 'bad id', limitUsd: 1, period: 'day' })).rejects.toBeInstanceOf(InvalidRequestError);
    expect((await t.client.getBudget('team:crud')).metadata).toEqual({ team: 'crud' });
    await expect(t.client.getBudget('team:nope')).rejects.toMatchObject({ name: 'BudgetNotFoundError', status: 404, code: 'budget_not_found' });
    await expect(t.client.deleteBudget('team:nope')).rejects.toBeInstanceOf(BudgetNotFoundError);

    const up = await t.client.updateBudget('team:crud', { limitUsd: '250.5', rateLimit: null, metadata: { team: 'crud2' } });
    expect(up).toMatchObject({ limit_usd: 250.5, rate_limit: null, metadata: { team: 'crud2' } });

    for (let i = 0; i < 3; i++) await t.client.createBudget({ id: `page:${i}`, limitUsd: 1, period: 'total' });
    const page = await t.client.listBudgets({ limit: 2 });
    expect(page.object).toBe('list');
    expect(page.data).toHaveLength(2);
    expect(page.has_more).toBe(true);
    const all: string[] = [];
    for await (const x of t.client.listAllBudgets({ limit: 2 })) all.push(x.id);
    expect(all).toEqual(expect.arrayContaining(['team:crud', 'page:0', 'page:1', 'page:2']));
    expect(await t.client.deleteBudget('page:0')).toEqual({ object: 'budget', id: 'page:0', deleted: true });
  });

  it('a user budget shared by two keys: the budget refuses, spend, freeze, kill switch, delete', async () => {
    const budget = await t.client.createBudget({ id: 'user:ts-u42', limitUsd: 100, period: 'day' });
    expect(budget.remaining_usd).toBe(100);

    const a = await t.client.issueKey({ ...spec, label: 'ts-budget-a', budgets: ['user:ts-u42'] });
    const b = await t.client.issueKey({ ...spec, label: 'ts-budget-b', budgets: ['user:ts-u42'] });
    expect(a.budgets).toEqual(['user:ts-u42']);
    expect((await t.client.getKey(b.id)).budgets).toEqual(['user:ts-u42']);

    expect((await charge(a, 6000)).status).toBe(200); // $60 of a's $80, of the budget's $100
    expect((await charge(b, 3000)).status).toBe(200); // $30 of b's $80; the budget is at $90
    const before = t.sandbox.requests.length;
    // $20 more fits b's own cap ($50 of $80) but not the budget ($110 of $100).
    const err = (await charge(b, 2000).catch((e) => e)) as CapExhaustedError;
    expect(err).toBeInstanceOf(CapExhaustedError);
    expect(isCapExhausted(err)).toBe(true);
    expect(err.status).toBe(429);
    expect(err.limit).toMatchObject({ kind: 'budget', id: 'user:ts-u42', period: 'day' });
    expect(err.budgetId).toBe('user:ts-u42');
    expect(err.remainingUsd).toBe(10);
    expect(t.sandbox.requests.length).toBe(before); // nothing reached Stripe
    expect((await t.client.getKey(b.id)).spend_today_usd).toBe(30);

    const spent = await t.client.getBudget('user:ts-u42');
    expect(spent).toMatchObject({ spend_usd: 90, remaining_usd: 10 });
    const today = spent.window;
    expect(today).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(await t.client.budgetSpend('user:ts-u42', { window: today })).toMatchObject({ window: today, spend_usd: 90 });
    expect(await t.client.budgetSpend('user:ts-u42', { window: '2020-01-01' })).toMatchObject({ window: '2020-01-01', spend_usd: 0 });
    expect((await t.client.budgetSpend('user:ts-u42')).spend_usd).toBe(90);
    await expect(t.client.budgetSpend('user:ts-u42', { window: '2020-01' })).rejects.toMatchObject({ code: 'invalid_request', param: 'window' });

    // Frozen: no key can be issued against it, and the attached keys' calls are refused.
    expect((await t.client.freezeBudget('user:ts-u42')).frozen).toBe(true);
    const frozen = (await t.client.issueKey({ ...spec, budgets: ['user:ts-u42'] }).catch((e) => e)) as BudgetFrozenError;
    expect(frozen).toBeInstanceOf(BudgetFrozenError);
    expect(frozen).toMatchObject({ status: 403, code: 'budget_frozen', budgetId: 'user:ts-u42' });
    await expect(charge(a, 100)).rejects.toBeInstanceOf(BudgetFrozenError);
    expect((await t.client.unfreezeBudget('user:ts-u42')).frozen).toBe(false);
    expect((await charge(a, 500)).status).toBe(200);

    // While keys are attached it cannot be deleted; the kill switch by budget revokes both.
    await expect(t.client.deleteBudget('user:ts-u42')).rejects.toBeInstanceOf(BudgetInUseError);
    const other = await t.client.issueKey({ ...spec, label: 'ts-budget-other' });
    expect(await t.client.revokeKeys({ budget: 'user:ts-u42', dryRun: true })).toMatchObject({ matched: 2, revoked: 0 });
    expect(await t.client.revokeKeys({ budget: 'user:ts-u42' })).toMatchObject({ matched: 2, revoked: 2 });
    expect((await t.client.getKey(a.id)).status).toBe('revoked');
    expect((await t.client.getKey(b.id)).status).toBe('revoked');
    expect((await t.client.getKey(other.id)).status).toBe('active');
    await expect(charge(a, 100)).rejects.toBeInstanceOf(KeyRevokedError);

    expect(await t.client.deleteBudget('user:ts-u42')).toEqual({ object: 'budget', id: 'user:ts-u42', deleted: true });
    await expect(t.client.getBudget('user:ts-u42')).rejects.toBeInstanceOf(BudgetNotFoundError);
  });

  it('withVaultKey attaches the key to its budgets', async () => {
    await t.client.createBudget({ id: 'run:scoped', limitUsd: 5, period: 'total' });
    const id = await withVaultKey({ client: t.client, ...spec, budgets: ['run:scoped'] }, async (key) => {
      expect(key.budgets).toEqual(['run:scoped']);
      const err = (await charge(key, 1000).catch((e) => e)) as CapExhaustedError;
      expect(err.limit).toMatchObject({ kind: 'budget', id: 'run:scoped', period: 'total', window: 'total' });
      return key.id;
    });
    expect((await t.client.getKey(id)).status).toBe('revoked');
    // A key spec's own budgets replace the common ones.
    await withVaultKey({ client: t.client, budgets: ['run:scoped'], vendors: { stripe: { ...spec, budgets: [] } } }, async (keys) => {
      expect(keys.stripe!.budgets).toEqual([]);
    });
    expect((await t.client.deleteBudget('run:scoped')).deleted).toBe(true);
  });
});
