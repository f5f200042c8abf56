import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeBudget, makeKey, makeMintedKey, makeMintingKey, runStoreConformance } from '../src/store/conformance.js';
import { PgRedisStore } from '../src/store/postgres-redis/index.js';
import { StoreUnavailableError, type ReserveRequest } from '../src/store/store.js';
import { cable, dropSchema, flushPrefix, pgRedisAvailable, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from './pg-redis-env.js';

// The same conformance suite as SQLite, then what only this backend has to prove: Redis can be
// lost and is rebuilt from the Postgres ledger without forgetting spend, under concurrency.

const available = await pgRedisAvailable('store-postgres-redis');

/** Counts state rebuilds, to show a flush really hit the traffic. */
let rebuilds = 0;
const log = {
  warn: (_: object, msg: string) => void (msg.startsWith('rebuilt') && rebuilds++),
  error: () => {},
};

function open(schema: string, prefix: string, urls = { url: TEST_DATABASE_URL, redisUrl: TEST_REDIS_URL }) {
  return PgRedisStore.open({ ...urls, schema, redisPrefix: prefix, poolSize: 8, log });
}

if (available) {
  runStoreConformance({
    name: 'postgres+redis',
    async create() {
      const schema = uniqueName('kl_test');
      const prefix = `${schema}:`;
      let current = await open(schema, prefix);
      return {
        store: current,
        async reopen() {
          await current.close();
          current = await open(schema, prefix);
          return current;
        },
        async cleanup() {
          await current.close();
          await dropSchema(schema);
          await flushPrefix(prefix);
        },
      };
    },
  });
} else {
  describe.skip('Store conformance: postgres+redis (Postgres/Redis unreachable)', () => it('skipped', () => {}));
}

const DAY = '2026-01-01';
const NOW = Date.UTC(2026, 0, 1, 12);
const USD = 1_000_000;
let n = 0;
const req = (keyId: string, amountMicros: number, o: Partial<ReserveRequest> = {}): ReserveRequest => ({
  reservationId: `rsv_recovery_${++n}`,
  keyId,
  day: DAY,
  amountMicros,
  requestId: `req_${n}`,
  method: 'POST',
  path: '/v1/payment_intents',
  now: NOW,
  ...o,
});

describe.skipIf(!available)('postgres+redis: Redis is a cache of the Postgres ledger', () => {
  let schema: string;
  let prefix: string;
  let a: PgRedisStore;
  let b: PgRedisStore;

  beforeEach(async () => {
    schema = uniqueName('kl_test');
    prefix = `${schema}:`;
    // Two store instances on one Postgres + Redis: two replicas.
    a = await open(schema, prefix);
    b = await open(schema, prefix);
  });

  afterEach(async () => {
    await a.close();
    await b.close();
    await dropSchema(schema);
    await flushPrefix(prefix);
  });

  it('remembers settled spend and open reservations after Redis loses everything', async () => {
    const key = makeKey({ dailyCapMicros: 10 * USD, createdAt: NOW - 1000, expiresAt: NOW + 3_600_000 });
    await a.createKey(key);
    const settled = req(key.id, 4 * USD);
    const open1 = req(key.id, 3 * USD);
    expect(await a.reserve(settled)).toEqual({ ok: true, spentMicros: 4 * USD });
    await a.settle(settled.reservationId, { state: 'settled', micros: 5 * USD }, NOW + 1);
    expect(await a.reserve(open1)).toEqual({ ok: true, spentMicros: 8 * USD });

    expect(await flushPrefix(prefix)).toBeGreaterThan(0); // FLUSHALL, for this suite's keys only

    // Rebuilt from Postgres on the next call, by whichever replica gets it.
    expect(await b.reserve(req(key.id, 2 * USD + 1))).toEqual({ ok: false, code: 'cap_exhausted', spentMicros: 8 * USD, capMicros: 10 * USD });
    expect(await b.reserve(req(key.id, 2 * USD))).toEqual({ ok: true, spentMicros: 10 * USD });
    // The open reservation still settles, against the rebuilt counter.
    await a.settle(open1.reservationId, { state: 'released' }, NOW + 2);
    expect(await a.reserve(req(key.id, 3 * USD))).toEqual({ ok: true, spentMicros: 10 * USD });
    expect(await b.reserve(req(key.id, 1))).toMatchObject({ code: 'cap_exhausted' });
    expect((await b.keyUsage(key.id, DAY)).spentMicros).toBe(10 * USD);
  });

  it('keeps a revocation and an expiry across the loss', async () => {
    const revoked = makeKey({ createdAt: NOW - 1000, expiresAt: NOW + 3_600_000 });
    const expiring = makeKey({ createdAt: NOW - 1000, expiresAt: NOW + 10 });
    await a.createKey(revoked);
    await a.createKey(expiring);
    await a.revokeKey(revoked.id, NOW);
    await flushPrefix(prefix);
    expect(await b.reserve(req(revoked.id, USD))).toEqual({ ok: false, code: 'key_revoked' });
    expect(await b.reserve(req(expiring.id, USD, { now: NOW + 10 }))).toEqual({ ok: false, code: 'key_expired' });
    expect(await b.reserve(req(expiring.id, USD, { now: NOW + 9 }))).toMatchObject({ ok: true });
  });

  it('holds the cap exactly across two replicas while Redis is flushed mid-traffic', async () => {
    rebuilds = 0;
    for (let round = 0; round < 3; round++) {
      const key = makeKey({ dailyCapMicros: 1_000 * USD, createdAt: NOW - 1000, expiresAt: NOW + 3_600_000 });
      await a.createKey(key);
      // Calls arrive over time on both replicas; Redis is flushed twice while they land.
      const calls: Array<Promise<{ ok: boolean }>> = [];
      for (let i = 0; i < 120; i++) {
        calls.push((i % 2 ? a : b).reserve(req(key.id, 10 * USD * (1 + (i % 3)))));
        // The calls before it are still in flight; the ones after it find the state gone.
        if (i === 20 || i === 60) await flushPrefix(prefix);
        if (i % 10 === 0) await new Promise((r) => setImmediate(r));
      }
      const results = await Promise.all(calls);
      const accepted = results.map((r, i) => (r.ok ? 10 * USD * (1 + (i % 3)) : 0)).reduce((x, y) => x + y, 0);
      expect(accepted).toBeLessThanOrEqual(1_000 * USD);
      // Nothing was refused that would have fit: every refusal came once the cap was (nearly) full.
      expect(accepted).toBeGreaterThan(1_000 * USD - 30 * USD);
      expect((await a.keyUsage(key.id, DAY)).spentMicros).toBe(accepted);
      // Top up to exactly the cap, then prove the spend survives another loss.
      if (accepted < 1_000 * USD) expect((await a.reserve(req(key.id, 1_000 * USD - accepted))).ok).toBe(true);
      await flushPrefix(prefix);
      expect(await b.reserve(req(key.id, 1))).toMatchObject({ code: 'cap_exhausted', spentMicros: 1_000 * USD });
    }
    console.log(`state rebuilds during the flushed rounds: ${rebuilds}`);
    expect(rebuilds).toBeGreaterThan(3); // more than the one after each round: the flushes hit live traffic
  });

  it("rebuilds a budget's spend from the ledger after Redis loses everything, frozen flag included", async () => {
    const budget = makeBudget({ id: 'user:u42', limitMicros: 10 * USD, period: 'month' });
    expect(await a.createBudget(budget)).toBe(true);
    const k1 = makeKey({ dailyCapMicros: null, createdAt: NOW - 1000, expiresAt: NOW + 3_600_000, budgetIds: [budget.id] });
    const k2 = makeKey({ dailyCapMicros: null, createdAt: NOW - 1000, expiresAt: NOW + 3_600_000, budgetIds: [budget.id] });
    await a.createKey(k1);
    await a.createKey(k2);
    const settled = req(k1.id, 4 * USD);
    const open1 = req(k2.id, 3 * USD, { day: '2026-01-02' });
    expect((await a.reserve(settled)).ok).toBe(true);
    await a.settle(settled.reservationId, { state: 'settled', micros: 5 * USD }, NOW + 1);
    expect((await a.reserve(open1)).ok).toBe(true);

    await flushPrefix(prefix);
    // Same month, other day: the month window is summed from both keys' ledger rows.
    expect(await b.reserve(req(k2.id, 2 * USD + 1))).toMatchObject({ code: 'cap_exhausted', spentMicros: 8 * USD, limit: { id: 'user:u42' } });
    expect((await b.reserve(req(k1.id, 2 * USD))).ok).toBe(true);
    await a.settle(open1.reservationId, { state: 'released' }, NOW + 2);
    expect(await a.budgetSpend('default', budget.id, '2026-01')).toBe(7 * USD);
    expect((await b.reserve(req(k2.id, 3 * USD))).ok).toBe(true);
    expect(await b.reserve(req(k1.id, 1))).toMatchObject({ code: 'cap_exhausted' });

    await a.updateBudget('default', budget.id, { frozen: true }, NOW);
    await flushPrefix(prefix);
    expect(await b.reserve(req(k1.id, 0))).toEqual({ ok: false, code: 'budget_frozen', budgetId: budget.id });
  });

  it('holds a shared budget exactly across two replicas and many keys while Redis is flushed mid-traffic', async () => {
    const budget = makeBudget({ limitMicros: 500 * USD });
    await a.createBudget(budget);
    const keys = Array.from({ length: 20 }, () =>
      makeKey({ dailyCapMicros: null, createdAt: NOW - 1000, expiresAt: NOW + 3_600_000, budgetIds: [budget.id] }),
    );
    for (const k of keys) await a.createKey(k);
    const calls: Array<Promise<{ ok: boolean }>> = [];
    const flushes: Array<Promise<number>> = [];
    for (let i = 0; i < 300; i++) {
      calls.push((i % 2 ? a : b).reserve(req(keys[i % 20]!.id, 10 * USD)));
      if (i === 40 || i === 120) flushes.push(flushPrefix(prefix));
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(flushes);
    const results = await Promise.all(calls);
    expect(results.filter((r) => r.ok)).toHaveLength(50);
    expect(await a.budgetSpend('default', budget.id, DAY)).toBe(500 * USD);
  });

  it("rebuilds a parent key's spend from its own and its descendants' ledger rows after Redis loses everything", async () => {
    const mk = makeMintingKey();
    await a.createMintingKey(mk);
    const life = { createdAt: NOW - 1000, expiresAt: NOW + 3_600_000 };
    const root = makeMintedKey(mk, undefined, { dailyCapMicros: 10 * USD, ...life });
    const child = makeMintedKey(mk, root, { dailyCapMicros: 20 * USD, ...life });
    expect((await a.createMintedKeys([root, child])).ok).toBe(true);
    const settled = req(child.id, 3 * USD);
    const open1 = req(child.id, 2 * USD);
    expect((await a.reserve(settled)).ok).toBe(true);
    await a.settle(settled.reservationId, { state: 'settled', micros: 4 * USD }, NOW + 1);
    expect((await a.reserve(open1)).ok).toBe(true);
    expect((await a.reserve(req(root.id, USD))).ok).toBe(true);

    await flushPrefix(prefix);
    // The root's day is summed from its own row and its child's, whichever key rebuilds it.
    expect(await b.reserve(req(child.id, 3 * USD + 1))).toEqual({
      ok: false,
      code: 'cap_exhausted',
      spentMicros: 7 * USD,
      capMicros: 10 * USD,
      limit: { kind: 'parent_key', id: root.id },
    });
    expect(await b.reserve(req(child.id, 3 * USD))).toEqual({ ok: true, spentMicros: 9 * USD });
    await a.settle(open1.reservationId, { state: 'released' }, NOW + 2);
    expect((await b.keyUsage(root.id, DAY)).spentMicros).toBe(8 * USD);
    expect((await b.keyUsage(child.id, DAY)).spentMicros).toBe(7 * USD);
    await flushPrefix(prefix);
    expect(await a.reserve(req(root.id, 2 * USD + 1))).toMatchObject({ code: 'cap_exhausted', spentMicros: 8 * USD });
    expect((await b.reserve(req(child.id, 2 * USD))).ok).toBe(true);
  });

  it("holds a parent key's cap exactly across two replicas and its children while Redis is flushed mid-traffic", async () => {
    const mk = makeMintingKey();
    await a.createMintingKey(mk);
    const life = { createdAt: NOW - 1000, expiresAt: NOW + 3_600_000 };
    const root = makeMintedKey(mk, undefined, { dailyCapMicros: 500 * USD, ...life });
    const children = Array.from({ length: 20 }, () => makeMintedKey(mk, root, { dailyCapMicros: null, ...life }));
    for (const child of children) expect((await (children.indexOf(child) % 2 ? a : b).createMintedKeys([root, child])).ok).toBe(true);
    const calls: Array<Promise<{ ok: boolean }>> = [];
    const flushes: Array<Promise<number>> = [];
    for (let i = 0; i < 300; i++) {
      calls.push((i % 2 ? a : b).reserve(req(children[i % 20]!.id, 10 * USD)));
      if (i === 40 || i === 120) flushes.push(flushPrefix(prefix));
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(flushes);
    const results = await Promise.all(calls);
    expect(results.filter((r) => r.ok)).toHaveLength(50);
    expect((await a.keyUsage(root.id, DAY)).spentMicros).toBe(500 * USD);
  });

  it('holds a rate limit across replicas: the bucket is in Redis', async () => {
    const budget = makeBudget({ limitMicros: 1000 * USD, rateLimit: { requests: 15, perMs: 60_000 } });
    await a.createBudget(budget);
    const key = makeKey({ dailyCapMicros: null, createdAt: NOW - 1000, expiresAt: NOW + 3_600_000, rateLimit: { requests: 10, perMs: 60_000 } });
    const other = makeKey({ dailyCapMicros: null, createdAt: NOW - 1000, expiresAt: NOW + 3_600_000, budgetIds: [budget.id] });
    await a.createKey(key);
    await a.createKey(other);
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).reserve(req(key.id, USD))));
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    const shared = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).reserve(req(other.id, USD))));
    expect(shared.filter((r) => r.ok)).toHaveLength(15);
    expect(shared.find((r) => !r.ok)).toMatchObject({ code: 'rate_limited', limit: { kind: 'budget', id: budget.id } });
  });

  it('broadcasts a revocation to every replica', async () => {
    const key = makeKey({ createdAt: NOW - 1000, expiresAt: NOW + 3_600_000 });
    await a.createKey(key);
    await new Promise((r) => setTimeout(r, 100)); // let both subscribers attach
    const heard = new Promise<{ hash: string; ms: number }>((resolve) => {
      const t0 = performance.now();
      b.onRevoked((hash) => resolve({ hash, ms: performance.now() - t0 }));
    });
    await a.revokeKey(key.id, NOW);
    const got = await heard;
    expect(got.hash).toBe(key.tokenHash);
    console.log(`revocation broadcast reached the other store instance in ${got.ms.toFixed(1)} ms`);
  });

  it('fails closed with StoreUnavailableError naming the component, and leaves no spend behind', async () => {
    const pgCable = await cable(TEST_DATABASE_URL);
    const redisCable = await cable(TEST_REDIS_URL);
    const c = await open(schema, prefix, { url: pgCable.url(TEST_DATABASE_URL), redisUrl: redisCable.url(TEST_REDIS_URL) });
    try {
      const key = makeKey({ dailyCapMicros: 3 * USD, createdAt: NOW - 1000, expiresAt: NOW + 3_600_000 });
      await c.createKey(key);
      expect(await c.reserve(req(key.id, USD))).toMatchObject({ ok: true });

      await pgCable.cut();
      const pgDown = await c.reserve(req(key.id, USD)).catch((e: unknown) => e);
      expect(pgDown).toBeInstanceOf(StoreUnavailableError);
      expect((pgDown as StoreUnavailableError).component).toBe('postgres');
      await expect(c.ping()).rejects.toMatchObject({ component: 'postgres' });
      await pgCable.restore();

      await redisCable.cut();
      const redisDown = await c.reserve(req(key.id, USD)).catch((e: unknown) => e);
      expect((redisDown as StoreUnavailableError).component).toBe('redis');
      await expect(c.ping()).rejects.toMatchObject({ component: 'redis' });
      await redisCable.restore();

      // Back by itself; the failed attempts left nothing charged: exactly $2 of room remains.
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        ok = await c.ping().then(() => true, () => false);
        if (!ok) await new Promise((r) => setTimeout(r, 100));
      }
      expect(ok).toBe(true);
      expect(await c.reserve(req(key.id, 2 * USD))).toEqual({ ok: true, spentMicros: 3 * USD });
      expect(await c.reserve(req(key.id, 1))).toMatchObject({ code: 'cap_exhausted' });
    } finally {
      await c.close();
      await pgCable.close();
      await redisCable.close();
    }
  });
});
