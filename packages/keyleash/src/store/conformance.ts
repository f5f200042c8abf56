// The storage conformance suite. Every Store backend runs this same suite, unchanged, in one line:
//
//   runStoreConformance({ name: 'sqlite', create: async () => ({ store, cleanup, reopen }) });
//
// Test-only: it imports vitest, so no runtime code may import it (tsconfig.build.json excludes it).
// Timestamps are fixed, never the real clock, so every backend sees the same inputs.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidCursorError } from './cursor.js';
import type { AuditFilter, AuditRecord, BudgetRecord, KeyFilter, KeyRecord, MintingKeyRecord, Page, ReserveRequest, Store } from './store.js';

export interface StoreInstance {
  store: Store;
  /** Closes the store(s) and removes whatever the backend created. */
  cleanup(): Promise<void>;
  /**
   * Closes `store` and opens a new one on the same underlying data. Optional: the durability
   * test is skipped for a backend that leaves it out.
   */
  reopen?(): Promise<Store>;
}

export interface StoreFactory {
  name: string;
  /** A fresh, empty store per call. */
  create(): Promise<StoreInstance>;
}

const NOW = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;
const DAY = '2026-01-01';
const NEXT_DAY = '2026-01-02';
/** One USD in micro-dollars. */
const USD = 1_000_000;

let seq = 0;
function uid(prefix: string): string {
  seq += 1;
  return `${prefix}_${String(seq).padStart(8, '0')}`;
}

/** A valid, active KeyRecord with a unique id and token hash; override any field. */
export function makeKey(overrides: Partial<KeyRecord> = {}): KeyRecord {
  const id = uid('key');
  return {
    id,
    tenantId: 'default',
    tokenHash: `hash_${id}`,
    label: `label-${id}`,
    vendor: 'stripe',
    mode: 'test',
    allowedEndpoints: ['/v1/payment_intents', 'POST /v1/refunds'],
    dailyCapMicros: 100 * USD,
    metadata: {},
    createdAt: NOW - HOUR,
    expiresAt: NOW + HOUR,
    revokedAt: null,
    budgetIds: [],
    rateLimit: null,
    ...overrides,
  };
}

/** A valid AuditRecord with a unique id; override any field. */
export function makeAudit(overrides: Partial<AuditRecord> = {}): AuditRecord {
  const id = uid('aud');
  return {
    id,
    tenantId: 'default',
    time: NOW,
    requestId: `req_${id}`,
    keyId: null,
    label: null,
    vendor: null,
    mode: null,
    method: 'POST',
    path: '/v1/payment_intents',
    status: 200,
    decision: 'allow',
    code: null,
    costMicros: 0,
    upstreamLatencyMs: null,
    ...overrides,
  };
}

/** A budget in the default tenant; override any field. */
export function makeBudget(overrides: Partial<BudgetRecord> = {}): BudgetRecord {
  return {
    tenantId: 'default',
    id: uid('user:u'),
    limitMicros: 100 * USD,
    period: 'day',
    frozen: false,
    metadata: {},
    rateLimit: null,
    createdAt: NOW - HOUR,
    updatedAt: NOW - HOUR,
    ...overrides,
  };
}

/** A valid, active MintingKeyRecord with one secret version; override any field. */
export function makeMintingKey(overrides: Partial<MintingKeyRecord> = {}): MintingKeyRecord {
  seq += 1;
  return {
    id: `mk_${String(seq).padStart(24, '0')}`,
    tenantId: 'default',
    label: 'flask-backend',
    mode: 'test',
    vendors: ['stripe'],
    allowedEndpoints: ['/v1/payment_intents', 'POST /v1/refunds'],
    maxCapMicros: 100 * USD,
    maxTtlSeconds: 3600,
    budgetIds: [],
    allowedBudgets: ['user:*'],
    metadata: { team: 'billing' },
    versions: [{ version: 1, salt: 'salt-1', createdAt: NOW - HOUR, retiresAt: null }],
    createdAt: NOW - HOUR,
    revokedAt: null,
    ...overrides,
  };
}

/** A minted key of `mk` (narrowed from `parent` when given), as the verifier would produce it. */
export function makeMintedKey(mk: MintingKeyRecord, parent?: KeyRecord, overrides: Partial<KeyRecord> = {}): KeyRecord {
  seq += 1;
  const id = `mkey_${mk.id.slice(3)}_${String(seq).padStart(24, '0')}`;
  return makeKey({
    id,
    tokenHash: `hash_${id}`,
    tenantId: mk.tenantId,
    mintingKeyId: mk.id,
    mintVersion: 1,
    ancestorIds: parent ? [...(parent.ancestorIds ?? []), parent.id] : [],
    ...overrides,
  });
}

function reserveReq(keyId: string, amountMicros: number, overrides: Partial<ReserveRequest> = {}): ReserveRequest {
  return {
    reservationId: uid('rsv'),
    keyId,
    day: DAY,
    amountMicros,
    requestId: uid('req'),
    method: 'POST',
    path: '/v1/payment_intents',
    now: NOW,
    ...overrides,
  };
}

/** Walks every page; fails if a page is larger than the limit or the walk does not end. */
async function collectPages<T>(fetch: (cursor: string | null) => Promise<Page<T>>, limit: number): Promise<T[][]> {
  const pages: T[][] = [];
  let cursor: string | null = null;
  for (let guard = 0; guard < 1000; guard++) {
    const page: Page<T> = await fetch(cursor);
    expect(page.items.length).toBeLessThanOrEqual(limit);
    pages.push(page.items);
    if (page.nextCursor === null) return pages;
    cursor = page.nextCursor;
  }
  throw new Error('pagination did not terminate');
}

function ids(items: readonly { id: string }[]): string[] {
  return items.map((i) => i.id);
}

function sorted(xs: readonly string[]): string[] {
  return [...xs].sort();
}

export function runStoreConformance(factory: StoreFactory): void {
  describe(`Store conformance: ${factory.name}`, () => {
    let instance: StoreInstance;
    let store: Store;

    beforeEach(async () => {
      instance = await factory.create();
      store = instance.store;
    });

    afterEach(async () => {
      await instance.cleanup();
    });

    async function createKey(overrides: Partial<KeyRecord> = {}): Promise<KeyRecord> {
      const key = makeKey(overrides);
      await store.createKey(key);
      return key;
    }

    async function listAllKeys(filter: KeyFilter, now = NOW, limit = 100): Promise<KeyRecord[]> {
      return (await collectPages((c) => store.listKeys(filter, limit, c, now), limit)).flat();
    }

    async function listAllAudit(filter: AuditFilter, limit = 100): Promise<AuditRecord[]> {
      return (await collectPages((c) => store.listAudit(filter, limit, c), limit)).flat();
    }

    describe('keys', () => {
      it('round-trips every field through getKeyById and getKeyByHash', async () => {
        const key = await createKey({
          label: 'flask-u42-run7 ✓',
          vendor: 'stripe',
          mode: 'live',
          allowedEndpoints: ['/v1/payment_intents', '/v1/payment_intents/*', 'GET /v1/customers'],
          dailyCapMicros: 12_345_678,
          metadata: { user_id: 'u42', 'run.id': 'r7', 'org:id': 'o"1', note: 'a b&c=d 😀' },
          createdAt: NOW - 5 * HOUR,
          expiresAt: NOW + 7 * HOUR,
        });
        expect(await store.getKeyById(key.id)).toEqual(key);
        expect(await store.getKeyByHash(key.tokenHash)).toEqual(key);
      });

      it('round-trips a key with no cap, no metadata and an empty label', async () => {
        const key = await createKey({ dailyCapMicros: null, metadata: {}, label: '' });
        const got = await store.getKeyById(key.id);
        expect(got).toEqual(key);
        expect(got?.dailyCapMicros).toBeNull();
        expect(await store.getKeyByHash(key.tokenHash)).toEqual(key);
      });

      it('round-trips a zero cap as 0, not null', async () => {
        const key = await createKey({ dailyCapMicros: 0 });
        expect((await store.getKeyById(key.id))?.dailyCapMicros).toBe(0);
      });

      it('returns null for an unknown id or token hash', async () => {
        await createKey();
        expect(await store.getKeyById('key_does_not_exist')).toBeNull();
        expect(await store.getKeyByHash('hash_does_not_exist')).toBeNull();
      });

      it('rejects a key whose id already exists and keeps the original', async () => {
        const key = await createKey({ label: 'original' });
        await expect(store.createKey(makeKey({ id: key.id, label: 'impostor' }))).rejects.toThrow();
        expect(await store.getKeyById(key.id)).toEqual(key);
      });

      it('rejects a key whose token hash already exists and keeps the original', async () => {
        const key = await createKey({ label: 'original' });
        const dup = makeKey({ tokenHash: key.tokenHash, label: 'impostor' });
        await expect(store.createKey(dup)).rejects.toThrow();
        expect(await store.getKeyByHash(key.tokenHash)).toEqual(key);
        expect(await store.getKeyById(dup.id)).toBeNull();
      });

      it('revokeKey answers revoked, then already_revoked, and keeps the first revocation time', async () => {
        const key = await createKey();
        expect(await store.revokeKey(key.id, NOW)).toBe('revoked');
        expect((await store.getKeyById(key.id))?.revokedAt).toBe(NOW);
        expect(await store.revokeKey(key.id, NOW + 1000)).toBe('already_revoked');
        expect(await store.getKeyById(key.id)).toEqual({ ...key, revokedAt: NOW });
        expect(await store.getKeyByHash(key.tokenHash)).toEqual({ ...key, revokedAt: NOW });
      });

      it('revokeKey answers not_found for an unknown id', async () => {
        expect(await store.revokeKey('key_does_not_exist', NOW)).toBe('not_found');
      });

      it('keyUsage of a fresh key is zero requests, never used, nothing spent', async () => {
        const key = await createKey();
        expect(await store.keyUsage(key.id, DAY)).toEqual({ requestCount: 0, lastUsedAt: null, spentMicros: 0 });
      });
    });

    describe('listKeys', () => {
      it('lists newest first', async () => {
        const a = await createKey({ createdAt: NOW - 3000 });
        const b = await createKey({ createdAt: NOW - 1000 });
        const c = await createKey({ createdAt: NOW - 2000 });
        const page = await store.listKeys({}, 10, null, NOW);
        expect(ids(page.items)).toEqual([b.id, c.id, a.id]);
        expect(page.nextCursor).toBeNull();
        expect(page.items[0]).toEqual(b);
      });

      it('returns an empty page with no cursor on an empty store', async () => {
        expect(await store.listKeys({}, 10, null, NOW)).toEqual({ items: [], nextCursor: null });
      });

      it('honours the limit and gives a cursor only when more remain', async () => {
        for (let i = 0; i < 5; i++) await createKey({ createdAt: NOW - i * 1000 });
        const first = await store.listKeys({}, 2, null, NOW);
        expect(first.items).toHaveLength(2);
        expect(first.nextCursor).not.toBeNull();
        const exact = await store.listKeys({}, 5, null, NOW);
        expect(exact.items).toHaveLength(5);
        expect(exact.nextCursor).toBeNull();
        const over = await store.listKeys({}, 50, null, NOW);
        expect(over.items).toHaveLength(5);
        expect(over.nextCursor).toBeNull();
      });

      it('cursor pagination visits every key exactly once, newest first, even with equal createdAt', async () => {
        const created: KeyRecord[] = [];
        // 17 keys share one createdAt (tie-breaking must be stable), the rest are spread around them.
        for (let i = 0; i < 17; i++) created.push(await createKey({ createdAt: NOW - 5000 }));
        for (let i = 0; i < 6; i++) created.push(await createKey({ createdAt: NOW - i * 2000 }));
        for (const limit of [1, 3, 4, 17, 23]) {
          const pages = await collectPages((c) => store.listKeys({}, limit, c, NOW), limit);
          const all = pages.flat();
          expect(all).toHaveLength(created.length);
          expect(new Set(ids(all)).size).toBe(created.length);
          expect(sorted(ids(all))).toEqual(sorted(ids(created)));
          for (let i = 1; i < all.length; i++) expect(all[i]!.createdAt).toBeLessThanOrEqual(all[i - 1]!.createdAt);
          for (const page of pages.slice(0, -1)) expect(page).toHaveLength(limit);
        }
      });

      it('cursor pagination with a filter visits every matching key exactly once', async () => {
        const matching: KeyRecord[] = [];
        for (let i = 0; i < 12; i++) {
          matching.push(await createKey({ vendor: 'acme', createdAt: NOW - (i % 3) * 1000 }));
          await createKey({ vendor: 'stripe', createdAt: NOW - (i % 3) * 1000 });
        }
        const all = await listAllKeys({ vendor: 'acme' }, NOW, 5);
        expect(sorted(ids(all))).toEqual(sorted(ids(matching)));
      });

      it('a cursor stays valid when newer keys are created between pages', async () => {
        const old: KeyRecord[] = [];
        for (let i = 0; i < 6; i++) old.push(await createKey({ createdAt: NOW - 10_000 - i }));
        const first = await store.listKeys({}, 3, null, NOW);
        for (let i = 0; i < 4; i++) await createKey({ createdAt: NOW - 1 });
        const rest = await collectPages((c) => store.listKeys({}, 3, c ?? first.nextCursor, NOW), 3);
        const seen = [...first.items, ...rest.flat()];
        expect(ids(seen)).toEqual(ids(old));
      });

      it('filters by status relative to now: active, expired (expiresAt <= now), revoked', async () => {
        const active = await createKey({ expiresAt: NOW + 1 });
        const expiredAtNow = await createKey({ expiresAt: NOW });
        const expiredBefore = await createKey({ expiresAt: NOW - HOUR });
        const revoked = await createKey({ expiresAt: NOW + HOUR });
        const revokedAndExpired = await createKey({ expiresAt: NOW - HOUR });
        await store.revokeKey(revoked.id, NOW - 10);
        await store.revokeKey(revokedAndExpired.id, NOW - 2 * HOUR);

        expect(ids(await listAllKeys({ status: 'active' }))).toEqual([active.id]);
        expect(sorted(ids(await listAllKeys({ status: 'expired' })))).toEqual(
          sorted([expiredAtNow.id, expiredBefore.id]),
        );
        expect(sorted(ids(await listAllKeys({ status: 'revoked' })))).toEqual(
          sorted([revoked.id, revokedAndExpired.id]),
        );
        expect(await listAllKeys({})).toHaveLength(5);
        // The same keys seen from an earlier `now`.
        expect(sorted(ids(await listAllKeys({ status: 'active' }, NOW - 2 * HOUR)))).toEqual(
          sorted([active.id, expiredAtNow.id, expiredBefore.id]),
        );
      });

      it('filters by vendor and by mode', async () => {
        const stripeTest = await createKey({ vendor: 'stripe', mode: 'test' });
        const stripeLive = await createKey({ vendor: 'stripe', mode: 'live' });
        const acmeLive = await createKey({ vendor: 'acme', mode: 'live' });
        expect(sorted(ids(await listAllKeys({ vendor: 'stripe' })))).toEqual(sorted([stripeTest.id, stripeLive.id]));
        expect(ids(await listAllKeys({ vendor: 'acme' }))).toEqual([acmeLive.id]);
        expect(await listAllKeys({ vendor: 'nobody' })).toEqual([]);
        expect(ids(await listAllKeys({ mode: 'test' }))).toEqual([stripeTest.id]);
        expect(sorted(ids(await listAllKeys({ mode: 'live' })))).toEqual(sorted([stripeLive.id, acmeLive.id]));
        expect(ids(await listAllKeys({ mode: 'live', vendor: 'stripe' }))).toEqual([stripeLive.id]);
      });

      it('filters by labelPrefix', async () => {
        const prodA = await createKey({ label: 'prod-a' });
        const prodB = await createKey({ label: 'prod-b' });
        const production = await createKey({ label: 'production' });
        await createKey({ label: 'dev-prod' });
        await createKey({ label: 'pro' });
        expect(sorted(ids(await listAllKeys({ labelPrefix: 'prod-' })))).toEqual(sorted([prodA.id, prodB.id]));
        expect(sorted(ids(await listAllKeys({ labelPrefix: 'prod' })))).toEqual(
          sorted([prodA.id, prodB.id, production.id]),
        );
        expect(ids(await listAllKeys({ labelPrefix: 'production' }))).toEqual([production.id]);
        expect(await listAllKeys({ labelPrefix: 'production-x' })).toEqual([]);
        expect(await listAllKeys({ labelPrefix: '' })).toHaveLength(5);
      });

      it('matches a labelPrefix containing % and _ literally, not as wildcards', async () => {
        const literal = await createKey({ label: '50%_off-a' });
        await createKey({ label: '50%Xoff-b' });
        await createKey({ label: '50X_off-c' });
        await createKey({ label: '500_off-d' });
        const under = await createKey({ label: 'a_b' });
        await createKey({ label: 'axb' });
        const backslash = await createKey({ label: 'c\\d' });
        await createKey({ label: 'cd' });
        expect(ids(await listAllKeys({ labelPrefix: '50%_' }))).toEqual([literal.id]);
        expect(ids(await listAllKeys({ labelPrefix: '50%_off' }))).toEqual([literal.id]);
        expect(ids(await listAllKeys({ labelPrefix: 'a_' }))).toEqual([under.id]);
        expect(await listAllKeys({ labelPrefix: '%' })).toEqual([]);
        expect(await listAllKeys({ labelPrefix: '_' })).toEqual([]);
        expect(ids(await listAllKeys({ labelPrefix: 'c\\' }))).toEqual([backslash.id]);
      });

      it('matches labelPrefix case-sensitively', async () => {
        const lower = await createKey({ label: 'prod-a' });
        const upper = await createKey({ label: 'Prod-b' });
        expect(ids(await listAllKeys({ labelPrefix: 'prod' }))).toEqual([lower.id]);
        expect(ids(await listAllKeys({ labelPrefix: 'Prod' }))).toEqual([upper.id]);
      });

      it('matches a labelPrefix made of non-ASCII and astral characters', async () => {
        const emoji = await createKey({ label: '😀-run-1' });
        await createKey({ label: '😀x' });
        const accented = await createKey({ label: 'café-1' });
        await createKey({ label: 'cafe-1' });
        expect(ids(await listAllKeys({ labelPrefix: '😀-' }))).toEqual([emoji.id]);
        expect(ids(await listAllKeys({ labelPrefix: '😀-run-1' }))).toEqual([emoji.id]);
        expect(ids(await listAllKeys({ labelPrefix: 'café' }))).toEqual([accented.id]);
      });

      it('filters by metadata: every pair must match', async () => {
        const aProd = await createKey({ metadata: { team: 'a', env: 'prod', 'run.id': 'r1' } });
        const aDev = await createKey({ metadata: { team: 'a', env: 'dev' } });
        const b = await createKey({ metadata: { team: 'b', env: 'prod' } });
        await createKey({ metadata: {} });
        expect(sorted(ids(await listAllKeys({ metadata: { team: 'a' } })))).toEqual(sorted([aProd.id, aDev.id]));
        expect(ids(await listAllKeys({ metadata: { team: 'a', env: 'prod' } }))).toEqual([aProd.id]);
        expect(sorted(ids(await listAllKeys({ metadata: { env: 'prod' } })))).toEqual(sorted([aProd.id, b.id]));
        expect(ids(await listAllKeys({ metadata: { 'run.id': 'r1' } }))).toEqual([aProd.id]);
        expect(await listAllKeys({ metadata: { team: 'a', env: 'staging' } })).toEqual([]);
        expect(await listAllKeys({ metadata: { missing: 'x' } })).toEqual([]);
        expect(await listAllKeys({ metadata: { team: 'A' } })).toEqual([]);
        expect(await listAllKeys({ metadata: {} })).toHaveLength(4);
      });

      it('combines filters with AND', async () => {
        const hit = await createKey({ vendor: 'stripe', mode: 'live', label: 'job-1', metadata: { u: '1' } });
        await createKey({ vendor: 'stripe', mode: 'live', label: 'job-2', metadata: { u: '2' } });
        await createKey({ vendor: 'stripe', mode: 'test', label: 'job-3', metadata: { u: '1' } });
        const revoked = await createKey({ vendor: 'stripe', mode: 'live', label: 'job-4', metadata: { u: '1' } });
        await store.revokeKey(revoked.id, NOW);
        const filter: KeyFilter = { status: 'active', vendor: 'stripe', mode: 'live', labelPrefix: 'job-', metadata: { u: '1' } };
        expect(ids(await listAllKeys(filter))).toEqual([hit.id]);
      });

      it('throws InvalidCursorError on a malformed cursor', async () => {
        await createKey();
        for (const bad of ['not a cursor!!', '', Buffer.from('{"x":1}').toString('base64url'), 'W10']) {
          await expect(store.listKeys({}, 10, bad, NOW)).rejects.toBeInstanceOf(InvalidCursorError);
        }
      });
    });

    describe('reserve', () => {
      it('adds an accepted reservation to the day spend, request count and last use', async () => {
        const key = await createKey({ dailyCapMicros: 10 * USD });
        expect(await store.reserve(reserveReq(key.id, 2 * USD, { now: NOW + 10 }))).toEqual({
          ok: true,
          spentMicros: 2 * USD,
        });
        expect(await store.keyUsage(key.id, DAY)).toEqual({ requestCount: 1, lastUsedAt: NOW + 10, spentMicros: 2 * USD });
        expect(await store.reserve(reserveReq(key.id, 3 * USD, { now: NOW + 20 }))).toEqual({
          ok: true,
          spentMicros: 5 * USD,
        });
        expect(await store.keyUsage(key.id, DAY)).toEqual({ requestCount: 2, lastUsedAt: NOW + 20, spentMicros: 5 * USD });
      });

      it('records an open reservation readable with getReservation', async () => {
        const key = await createKey();
        const req = reserveReq(key.id, 1_234_567, { now: NOW + 5 });
        await store.reserve(req);
        expect(await store.getReservation(req.reservationId)).toEqual({
          id: req.reservationId,
          keyId: key.id,
          day: DAY,
          estimateMicros: 1_234_567,
          finalMicros: null,
          state: 'reserved',
          requestId: req.requestId,
          createdAt: NOW + 5,
          settledAt: null,
        });
        expect(await store.getReservation('rsv_does_not_exist')).toBeNull();
      });

      it('refuses an unknown key as invalid_key', async () => {
        const req = reserveReq('key_does_not_exist', USD);
        expect(await store.reserve(req)).toEqual({ ok: false, code: 'invalid_key' });
        expect(await store.getReservation(req.reservationId)).toBeNull();
      });

      it('refuses a revoked key as key_revoked', async () => {
        const key = await createKey();
        await store.revokeKey(key.id, NOW - 1);
        expect(await store.reserve(reserveReq(key.id, USD))).toEqual({ ok: false, code: 'key_revoked' });
      });

      it('refuses a key revoked after the request time too (revocation is not time-relative)', async () => {
        const key = await createKey();
        await store.revokeKey(key.id, NOW + HOUR / 2);
        expect(await store.reserve(reserveReq(key.id, USD))).toEqual({ ok: false, code: 'key_revoked' });
      });

      it('refuses a key that has both expired and been revoked as key_revoked', async () => {
        const key = await createKey({ expiresAt: NOW - HOUR });
        await store.revokeKey(key.id, NOW - 2 * HOUR);
        expect(await store.reserve(reserveReq(key.id, USD))).toEqual({ ok: false, code: 'key_revoked' });
      });

      it('refuses an expired key (expiresAt <= now) as key_expired and accepts it one ms before', async () => {
        const atNow = await createKey({ expiresAt: NOW });
        const before = await createKey({ expiresAt: NOW - 1 });
        expect(await store.reserve(reserveReq(atNow.id, USD))).toEqual({ ok: false, code: 'key_expired' });
        expect(await store.reserve(reserveReq(before.id, USD))).toEqual({ ok: false, code: 'key_expired' });
        expect(await store.reserve(reserveReq(atNow.id, USD, { now: NOW - 1 }))).toEqual({ ok: true, spentMicros: USD });
      });

      it('refuses as cap_exhausted when spent + amount > cap, reporting spent and cap', async () => {
        const key = await createKey({ dailyCapMicros: 10 * USD });
        expect((await store.reserve(reserveReq(key.id, 7 * USD))).ok).toBe(true);
        expect(await store.reserve(reserveReq(key.id, 3 * USD + 1))).toEqual({
          ok: false,
          code: 'cap_exhausted',
          spentMicros: 7 * USD,
          capMicros: 10 * USD,
        });
        const fresh = await createKey({ dailyCapMicros: 10 * USD });
        expect(await store.reserve(reserveReq(fresh.id, 10 * USD + 1))).toEqual({
          ok: false,
          code: 'cap_exhausted',
          spentMicros: 0,
          capMicros: 10 * USD,
        });
      });

      it('accepts a reservation that lands exactly on the cap', async () => {
        const key = await createKey({ dailyCapMicros: 10 * USD });
        expect(await store.reserve(reserveReq(key.id, 7 * USD))).toEqual({ ok: true, spentMicros: 7 * USD });
        expect(await store.reserve(reserveReq(key.id, 3 * USD))).toEqual({ ok: true, spentMicros: 10 * USD });
        expect(await store.reserve(reserveReq(key.id, 1))).toMatchObject({ ok: false, code: 'cap_exhausted' });
        const whole = await createKey({ dailyCapMicros: 5 * USD });
        expect(await store.reserve(reserveReq(whole.id, 5 * USD))).toEqual({ ok: true, spentMicros: 5 * USD });
      });

      it('never refuses a key with no cap', async () => {
        const key = await createKey({ dailyCapMicros: null });
        let total = 0;
        for (let i = 0; i < 5; i++) {
          const amount = 1_000_000 * USD;
          total += amount;
          expect(await store.reserve(reserveReq(key.id, amount))).toEqual({ ok: true, spentMicros: total });
        }
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(total);
      });

      it('accepts a zero-amount call on a key whose cap is used up, or whose cap is 0', async () => {
        const full = await createKey({ dailyCapMicros: 2 * USD });
        expect((await store.reserve(reserveReq(full.id, 2 * USD))).ok).toBe(true);
        expect(await store.reserve(reserveReq(full.id, 0))).toEqual({ ok: true, spentMicros: 2 * USD });
        expect(await store.keyUsage(full.id, DAY)).toMatchObject({ requestCount: 2, spentMicros: 2 * USD });

        const zeroCap = await createKey({ dailyCapMicros: 0 });
        expect(await store.reserve(reserveReq(zeroCap.id, 0))).toEqual({ ok: true, spentMicros: 0 });
        expect(await store.reserve(reserveReq(zeroCap.id, 1))).toEqual({
          ok: false,
          code: 'cap_exhausted',
          spentMicros: 0,
          capMicros: 0,
        });
      });

      it('a refused reservation changes nothing: no spend, no request count, no last use, no reservation', async () => {
        const capped = await createKey({ dailyCapMicros: 3 * USD });
        await store.reserve(reserveReq(capped.id, 2 * USD, { now: NOW + 1 }));
        const before = await store.keyUsage(capped.id, DAY);
        const refused = reserveReq(capped.id, 2 * USD, { now: NOW + 2 });
        expect((await store.reserve(refused)).ok).toBe(false);
        expect(await store.keyUsage(capped.id, DAY)).toEqual(before);
        expect(await store.getReservation(refused.reservationId)).toBeNull();

        const revoked = await createKey();
        await store.revokeKey(revoked.id, NOW - 1);
        const r1 = reserveReq(revoked.id, USD);
        expect((await store.reserve(r1)).ok).toBe(false);
        expect(await store.keyUsage(revoked.id, DAY)).toEqual({ requestCount: 0, lastUsedAt: null, spentMicros: 0 });
        expect(await store.getReservation(r1.reservationId)).toBeNull();

        const expired = await createKey({ expiresAt: NOW - 1 });
        const r2 = reserveReq(expired.id, USD);
        expect((await store.reserve(r2)).ok).toBe(false);
        expect(await store.keyUsage(expired.id, DAY)).toEqual({ requestCount: 0, lastUsedAt: null, spentMicros: 0 });
        expect(await store.getReservation(r2.reservationId)).toBeNull();
      });

      it('counts each UTC day as a separate cap window', async () => {
        const key = await createKey({ dailyCapMicros: 10 * USD, expiresAt: NOW + 48 * HOUR });
        expect((await store.reserve(reserveReq(key.id, 10 * USD, { day: DAY }))).ok).toBe(true);
        expect(await store.reserve(reserveReq(key.id, 1, { day: DAY }))).toMatchObject({ code: 'cap_exhausted' });
        expect(await store.keyUsage(key.id, NEXT_DAY)).toMatchObject({ spentMicros: 0 });
        expect(await store.reserve(reserveReq(key.id, 4 * USD, { day: NEXT_DAY, now: NOW + 24 * HOUR }))).toEqual({
          ok: true,
          spentMicros: 4 * USD,
        });
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(10 * USD);
        expect((await store.keyUsage(key.id, NEXT_DAY)).spentMicros).toBe(4 * USD);
      });

      it('keeps each key spend separate', async () => {
        const a = await createKey({ dailyCapMicros: 5 * USD });
        const b = await createKey({ dailyCapMicros: 5 * USD });
        expect((await store.reserve(reserveReq(a.id, 5 * USD))).ok).toBe(true);
        expect(await store.reserve(reserveReq(b.id, 5 * USD))).toEqual({ ok: true, spentMicros: 5 * USD });
        expect((await store.keyUsage(a.id, DAY)).spentMicros).toBe(5 * USD);
        expect((await store.keyUsage(b.id, DAY)).spentMicros).toBe(5 * USD);
      });

      it('accepts exactly cap / amount of 200 concurrent reservations', async () => {
        const key = await createKey({ dailyCapMicros: 1_000_000_000 });
        const results = await Promise.all(
          Array.from({ length: 200 }, () => store.reserve(reserveReq(key.id, 100_000_000))),
        );
        const ok = results.filter((r) => r.ok);
        expect(ok).toHaveLength(10);
        for (const r of results) {
          if (!r.ok) expect(r).toMatchObject({ code: 'cap_exhausted', capMicros: 1_000_000_000 });
        }
        expect(sorted(ok.map((r) => String(r.ok && r.spentMicros)))).toEqual(
          sorted(Array.from({ length: 10 }, (_, i) => String((i + 1) * 100_000_000))),
        );
        expect(await store.keyUsage(key.id, DAY)).toMatchObject({ requestCount: 10, spentMicros: 1_000_000_000 });
      });
    });

    describe('extendReservation', () => {
      async function open(capMicros: number | null, amount: number) {
        const key = await createKey({ dailyCapMicros: capMicros, expiresAt: NOW + 48 * HOUR });
        const req = reserveReq(key.id, amount);
        expect((await store.reserve(req)).ok).toBe(true);
        return { key, req };
      }

      it('grows an open reservation and the day spend within the cap', async () => {
        const { key, req } = await open(10 * USD, 4 * USD);
        expect(await store.extendReservation(req.reservationId, 3 * USD, NOW + 1)).toEqual({ ok: true, spentMicros: 7 * USD });
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(7 * USD);
        expect(await store.getReservation(req.reservationId)).toMatchObject({ state: 'reserved', estimateMicros: 7 * USD });
      });

      it('refuses growth past the cap and changes nothing', async () => {
        const { key, req } = await open(10 * USD, 4 * USD);
        expect(await store.extendReservation(req.reservationId, 7 * USD, NOW + 1)).toEqual({
          ok: false,
          code: 'cap_exhausted',
          spentMicros: 4 * USD,
          capMicros: 10 * USD,
        });
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(4 * USD);
        expect(await store.getReservation(req.reservationId)).toMatchObject({ estimateMicros: 4 * USD });
      });

      it('refuses growth once the key is revoked', async () => {
        const { key, req } = await open(null, USD);
        await store.revokeKey(key.id, NOW + 1);
        expect(await store.extendReservation(req.reservationId, USD, NOW + 2)).toMatchObject({ ok: false, code: 'key_revoked' });
      });

      it('does nothing to a reservation that has ended', async () => {
        const { key, req } = await open(null, USD);
        await store.settle(req.reservationId, { state: 'settled', micros: USD }, NOW + 1);
        expect((await store.extendReservation(req.reservationId, USD, NOW + 2)).ok).toBe(false);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(USD);
      });

      it('settles an extended reservation against its grown estimate', async () => {
        const { key, req } = await open(null, 2 * USD);
        await store.extendReservation(req.reservationId, 3 * USD, NOW + 1);
        await store.settle(req.reservationId, { state: 'released' }, NOW + 2);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(0);
      });
    });

    describe('settle', () => {
      async function reserved(capMicros: number | null, amount: number, day = DAY) {
        const key = await createKey({ dailyCapMicros: capMicros, expiresAt: NOW + 48 * HOUR });
        const req = reserveReq(key.id, amount, { day });
        expect((await store.reserve(req)).ok).toBe(true);
        return { key, req };
      }

      it('writes the audit record given with a settlement, moving money or not, open or already ended', async () => {
        const { key, req } = await reserved(10 * USD, 5 * USD);
        const still = reserveReq(key.id, USD);
        expect((await store.reserve(still)).ok).toBe(true);
        const moved = makeAudit({ keyId: key.id, time: NOW, costMicros: 2 * USD, chain: { chainId: 'chn_t', seq: 1, prevHash: '0'.repeat(64), hash: 'a'.repeat(64) } });
        const same = makeAudit({ keyId: key.id, time: NOW + 1, costMicros: USD });
        const replay = makeAudit({ keyId: key.id, time: NOW + 2 });
        // Settled together (one batch where the store batches): one moves money, one does not, and
        // one names a reservation that is not open (an idempotent replay).
        await Promise.all([
          store.settle(req.reservationId, { state: 'settled', micros: 2 * USD }, NOW + 100, moved),
          store.settle(still.reservationId, { state: 'settled', micros: USD }, NOW + 100, same),
          store.settle(`${req.reservationId}_replay`, { state: 'settled', micros: 0 }, NOW + 100, replay),
        ]);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(3 * USD);
        expect(await store.getReservation(req.reservationId)).toMatchObject({ state: 'settled', finalMicros: 2 * USD });
        expect(await store.getReservation(still.reservationId)).toMatchObject({ state: 'settled', finalMicros: USD });
        const listed = (await store.listAudit({ keyId: key.id }, 10, null)).items;
        expect(listed.map((r) => r.id).sort()).toEqual([moved.id, same.id, replay.id].sort());
        expect(listed.find((r) => r.id === moved.id)).toEqual(moved);
      });

      it("'settled' at a lower cost lowers the day spend by the difference", async () => {
        const { key, req } = await reserved(10 * USD, 5 * USD);
        await store.settle(req.reservationId, { state: 'settled', micros: 2 * USD }, NOW + 100);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(2 * USD);
        expect(await store.getReservation(req.reservationId)).toMatchObject({
          state: 'settled',
          estimateMicros: 5 * USD,
          finalMicros: 2 * USD,
          settledAt: NOW + 100,
        });
      });

      it("'settled' at a higher cost raises the day spend by the difference", async () => {
        const { key, req } = await reserved(null, 5 * USD);
        await store.settle(req.reservationId, { state: 'settled', micros: 8 * USD }, NOW + 100);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(8 * USD);
        expect(await store.getReservation(req.reservationId)).toMatchObject({ state: 'settled', finalMicros: 8 * USD });
      });

      it("'settled' at the estimate leaves the spend as it is", async () => {
        const { key, req } = await reserved(10 * USD, 5 * USD);
        await store.settle(req.reservationId, { state: 'settled', micros: 5 * USD }, NOW + 100);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(5 * USD);
        expect(await store.getReservation(req.reservationId)).toMatchObject({ state: 'settled', finalMicros: 5 * USD });
      });

      it('lowered spend frees room under the cap for later reservations', async () => {
        const { key, req } = await reserved(10 * USD, 10 * USD);
        expect(await store.reserve(reserveReq(key.id, USD))).toMatchObject({ code: 'cap_exhausted' });
        await store.settle(req.reservationId, { state: 'settled', micros: 6 * USD }, NOW + 100);
        expect(await store.reserve(reserveReq(key.id, 4 * USD))).toEqual({ ok: true, spentMicros: 10 * USD });
      });

      it("'released' gives the whole estimate back", async () => {
        const { key, req } = await reserved(10 * USD, 4 * USD);
        await store.reserve(reserveReq(key.id, USD));
        await store.settle(req.reservationId, { state: 'released' }, NOW + 100);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(USD);
        expect(await store.getReservation(req.reservationId)).toMatchObject({
          state: 'released',
          estimateMicros: 4 * USD,
          finalMicros: 0,
          settledAt: NOW + 100,
        });
      });

      it("'unknown' keeps the estimate charged", async () => {
        const { key, req } = await reserved(10 * USD, 4 * USD);
        await store.settle(req.reservationId, { state: 'unknown' }, NOW + 100);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(4 * USD);
        expect(await store.getReservation(req.reservationId)).toMatchObject({
          state: 'unknown',
          estimateMicros: 4 * USD,
          finalMicros: 4 * USD,
          settledAt: NOW + 100,
        });
      });

      it('settling twice is a no-op: the first outcome stands', async () => {
        const { key, req } = await reserved(10 * USD, 4 * USD);
        await store.settle(req.reservationId, { state: 'released' }, NOW + 100);
        const after = await store.getReservation(req.reservationId);
        await store.settle(req.reservationId, { state: 'settled', micros: 9 * USD }, NOW + 200);
        await store.settle(req.reservationId, { state: 'unknown' }, NOW + 300);
        await store.settle(req.reservationId, { state: 'released' }, NOW + 400);
        expect(await store.getReservation(req.reservationId)).toEqual(after);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(0);

        const second = await reserved(10 * USD, 4 * USD);
        await store.settle(second.req.reservationId, { state: 'settled', micros: 3 * USD }, NOW + 100);
        await store.settle(second.req.reservationId, { state: 'released' }, NOW + 200);
        await store.settle(second.req.reservationId, { state: 'settled', micros: 1 * USD }, NOW + 300);
        expect(await store.getReservation(second.req.reservationId)).toMatchObject({
          state: 'settled',
          finalMicros: 3 * USD,
          settledAt: NOW + 100,
        });
        expect((await store.keyUsage(second.key.id, DAY)).spentMicros).toBe(3 * USD);
      });

      it('concurrent settles of one reservation apply exactly once', async () => {
        const { key, req } = await reserved(10 * USD, 4 * USD);
        await store.reserve(reserveReq(key.id, USD));
        await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.settle(req.reservationId, { state: 'released' }, NOW + i)),
        );
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(USD);
        expect(await store.getReservation(req.reservationId)).toMatchObject({ state: 'released', finalMicros: 0 });
      });

      it('settling an unknown reservation id is a no-op', async () => {
        const { key, req } = await reserved(10 * USD, 4 * USD);
        await expect(store.settle('rsv_does_not_exist', { state: 'released' }, NOW)).resolves.toBeUndefined();
        await expect(
          store.settle('rsv_does_not_exist', { state: 'settled', micros: USD }, NOW),
        ).resolves.toBeUndefined();
        expect(await store.getReservation('rsv_does_not_exist')).toBeNull();
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(4 * USD);
        expect(await store.getReservation(req.reservationId)).toMatchObject({ state: 'reserved' });
      });

      it("adjusts the reservation's own day, not another day's spend", async () => {
        const { key, req } = await reserved(10 * USD, 4 * USD, DAY);
        await store.reserve(reserveReq(key.id, 3 * USD, { day: NEXT_DAY, now: NOW + 24 * HOUR }));
        await store.settle(req.reservationId, { state: 'settled', micros: USD }, NOW + 25 * HOUR);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(USD);
        expect((await store.keyUsage(key.id, NEXT_DAY)).spentMicros).toBe(3 * USD);
      });

      it('settling one reservation leaves the others open', async () => {
        const key = await createKey({ dailyCapMicros: 10 * USD });
        const a = reserveReq(key.id, 2 * USD);
        const b = reserveReq(key.id, 3 * USD);
        await store.reserve(a);
        await store.reserve(b);
        await store.settle(a.reservationId, { state: 'released' }, NOW + 1);
        expect(await store.getReservation(b.reservationId)).toMatchObject({ state: 'reserved', finalMicros: null });
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(3 * USD);
      });

      it('settles a reservation even after its key was revoked or expired', async () => {
        const { key, req } = await reserved(10 * USD, 4 * USD);
        await store.revokeKey(key.id, NOW + 1);
        await store.settle(req.reservationId, { state: 'settled', micros: USD }, NOW + 49 * HOUR);
        expect(await store.getReservation(req.reservationId)).toMatchObject({ state: 'settled', finalMicros: USD });
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(USD);
      });
    });

    describe('reconcileStale', () => {
      it('turns only open reservations created before the cutoff into unknown, keeping spend', async () => {
        const key = await createKey({ dailyCapMicros: null });
        const old1 = reserveReq(key.id, 1 * USD, { now: NOW - 10_000 });
        const old2 = reserveReq(key.id, 2 * USD, { now: NOW - 5_001 });
        const atCutoff = reserveReq(key.id, 4 * USD, { now: NOW - 5_000 });
        const fresh = reserveReq(key.id, 8 * USD, { now: NOW - 100 });
        const oldSettled = reserveReq(key.id, 16 * USD, { now: NOW - 20_000 });
        const oldReleased = reserveReq(key.id, 32 * USD, { now: NOW - 20_000 });
        for (const r of [old1, old2, atCutoff, fresh, oldSettled, oldReleased]) {
          expect((await store.reserve(r)).ok).toBe(true);
        }
        await store.settle(oldSettled.reservationId, { state: 'settled', micros: 10 * USD }, NOW - 19_000);
        await store.settle(oldReleased.reservationId, { state: 'released' }, NOW - 19_000);
        const spent = (await store.keyUsage(key.id, DAY)).spentMicros;
        expect(spent).toBe((1 + 2 + 4 + 8 + 10) * USD);
        const settledBefore = await store.getReservation(oldSettled.reservationId);
        const releasedBefore = await store.getReservation(oldReleased.reservationId);

        expect((await store.reconcileStale(NOW - 5_000, NOW)).length).toBe(2);

        expect(await store.getReservation(old1.reservationId)).toMatchObject({
          state: 'unknown',
          estimateMicros: 1 * USD,
          finalMicros: 1 * USD,
          settledAt: NOW,
        });
        expect(await store.getReservation(old2.reservationId)).toMatchObject({
          state: 'unknown',
          finalMicros: 2 * USD,
          settledAt: NOW,
        });
        expect(await store.getReservation(atCutoff.reservationId)).toMatchObject({
          state: 'reserved',
          finalMicros: null,
          settledAt: null,
        });
        expect(await store.getReservation(fresh.reservationId)).toMatchObject({ state: 'reserved' });
        expect(await store.getReservation(oldSettled.reservationId)).toEqual(settledBefore);
        expect(await store.getReservation(oldReleased.reservationId)).toEqual(releasedBefore);
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(spent);
      });

      it('returns 0 when nothing is stale, and a second run finds nothing new', async () => {
        const key = await createKey();
        expect((await store.reconcileStale(NOW, NOW)).length).toBe(0);
        await store.reserve(reserveReq(key.id, USD, { now: NOW - 1000 }));
        expect((await store.reconcileStale(NOW - 1000, NOW)).length).toBe(0);
        expect((await store.reconcileStale(NOW, NOW)).length).toBe(1);
        expect((await store.reconcileStale(NOW, NOW + 1)).length).toBe(0);
      });

      it('a settle arriving after reconciliation is a no-op', async () => {
        const key = await createKey({ dailyCapMicros: 10 * USD });
        const req = reserveReq(key.id, 4 * USD, { now: NOW - 10_000 });
        await store.reserve(req);
        expect((await store.reconcileStale(NOW - 1000, NOW)).length).toBe(1);
        await store.settle(req.reservationId, { state: 'released' }, NOW + 1);
        expect(await store.getReservation(req.reservationId)).toMatchObject({ state: 'unknown', finalMicros: 4 * USD });
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(4 * USD);
      });
    });

    describe('budgets', () => {
      async function createBudget(overrides: Partial<BudgetRecord> = {}): Promise<BudgetRecord> {
        const b = makeBudget(overrides);
        expect(await store.createBudget(b)).toBe(true);
        return b;
      }
      const spend = (b: BudgetRecord, window = DAY) => store.budgetSpend(b.tenantId, b.id, window);

      it('round-trips a budget, refuses a duplicate id and answers null for an unknown one', async () => {
        const b = await createBudget({ id: 'team:billing', limitMicros: 12_345_678, period: 'month', metadata: { owner: 'ana' } });
        expect(await store.getBudget('default', 'team:billing')).toEqual(b);
        expect(await store.createBudget(makeBudget({ id: 'team:billing', limitMicros: 1 }))).toBe(false);
        expect(await store.getBudget('default', 'team:billing')).toEqual(b);
        expect(await store.getBudget('default', 'team:nobody')).toBeNull();
        expect(await store.getBudget('other-tenant', 'team:billing')).toBeNull();
        expect(await spend(b, '2026-01')).toBe(0);
      });

      it('lists budgets by id with cursor pagination, one tenant at a time', async () => {
        const made: string[] = [];
        for (let i = 0; i < 7; i++) made.push((await createBudget({ id: `b:${i}` })).id);
        await store.createBudget(makeBudget({ tenantId: 'other-tenant', id: 'b:x' }));
        const pages = await collectPages((c) => store.listBudgets('default', 3, c), 3);
        expect(pages.flat().map((b) => b.id)).toEqual(made);
        expect((await store.listBudgets('other-tenant', 10, null)).items.map((b) => b.id)).toEqual(['b:x']);
      });

      it('updates limit, frozen and metadata; unknown budgets answer null', async () => {
        const b = await createBudget();
        const u = await store.updateBudget('default', b.id, { limitMicros: 5 * USD, frozen: true, metadata: { a: 'b' } }, NOW + 5);
        expect(u).toEqual({ ...b, limitMicros: 5 * USD, frozen: true, metadata: { a: 'b' }, updatedAt: NOW + 5 });
        expect(await store.getBudget('default', b.id)).toEqual(u);
        expect(await store.updateBudget('default', b.id, { frozen: false }, NOW + 6)).toMatchObject({ frozen: false, limitMicros: 5 * USD });
        expect(await store.updateBudget('default', 'nope', { frozen: true }, NOW)).toBeNull();
      });

      it('round-trips the budgets of a key and refuses a key naming an unknown budget', async () => {
        const a = await createBudget();
        const b = await createBudget();
        const key = await createKey({ budgetIds: [b.id, a.id] });
        expect(await store.getKeyById(key.id)).toEqual(key);
        expect(await store.getKeyByHash(key.tokenHash)).toEqual(key);
        const bad = makeKey({ budgetIds: ['user:does-not-exist'] });
        await expect(store.createKey(bad)).rejects.toThrow();
        expect(await store.getKeyById(bad.id)).toBeNull();
      });

      it('filters listKeys by budget', async () => {
        const a = await createBudget();
        const b = await createBudget();
        const k1 = await createKey({ budgetIds: [a.id] });
        const k2 = await createKey({ budgetIds: [a.id, b.id] });
        await createKey();
        expect(sorted(ids(await listAllKeys({ budgetId: a.id })))).toEqual(sorted([k1.id, k2.id]));
        expect(ids(await listAllKeys({ budgetId: b.id, status: 'active' }))).toEqual([k2.id]);
        expect(await listAllKeys({ budgetId: 'nope' })).toEqual([]);
      });

      it('reserves against the key and its budget together; a budget refusal names it and reserves nothing', async () => {
        const budget = await createBudget({ limitMicros: 10 * USD });
        const k1 = await createKey({ dailyCapMicros: 100 * USD, budgetIds: [budget.id] });
        const k2 = await createKey({ dailyCapMicros: null, budgetIds: [budget.id] });
        expect(await store.reserve(reserveReq(k1.id, 6 * USD))).toMatchObject({ ok: true, spentMicros: 6 * USD });
        expect(await spend(budget)).toBe(6 * USD);
        const refused = reserveReq(k2.id, 4 * USD + 1);
        expect(await store.reserve(refused)).toEqual({
          ok: false,
          code: 'cap_exhausted',
          spentMicros: 6 * USD,
          capMicros: 10 * USD,
          limit: { kind: 'budget', id: budget.id, period: 'day', window: DAY },
        });
        expect(await store.getReservation(refused.reservationId)).toBeNull();
        expect(await store.keyUsage(k2.id, DAY)).toEqual({ requestCount: 0, lastUsedAt: null, spentMicros: 0 });
        expect(await spend(budget)).toBe(6 * USD);
        expect(await store.reserve(reserveReq(k2.id, 4 * USD))).toMatchObject({ ok: true, spentMicros: 4 * USD });
        expect(await spend(budget)).toBe(10 * USD);
        // Free calls still pass a full budget, as they pass a full key cap.
        expect((await store.reserve(reserveReq(k1.id, 0))).ok).toBe(true);
      });

      it("checks the key's own cap first, then each budget in order; any refusal charges nothing anywhere", async () => {
        const roomy = await createBudget({ limitMicros: 100 * USD });
        const tight = await createBudget({ limitMicros: 5 * USD });
        const key = await createKey({ dailyCapMicros: 3 * USD, budgetIds: [roomy.id, tight.id] });
        expect(await store.reserve(reserveReq(key.id, 4 * USD))).toEqual({ ok: false, code: 'cap_exhausted', spentMicros: 0, capMicros: 3 * USD });
        const other = await createKey({ dailyCapMicros: null, budgetIds: [roomy.id, tight.id] });
        expect(await store.reserve(reserveReq(other.id, 6 * USD))).toMatchObject({ code: 'cap_exhausted', limit: { id: tight.id } });
        expect(await spend(roomy)).toBe(0);
        expect(await spend(tight)).toBe(0);
        expect((await store.keyUsage(other.id, DAY)).spentMicros).toBe(0);
        expect(await store.reserve(reserveReq(other.id, 5 * USD))).toMatchObject({ ok: true, spentMicros: 5 * USD });
        expect(await spend(roomy)).toBe(5 * USD);
        expect(await spend(tight)).toBe(5 * USD);
      });

      it('counts day, month and total budgets in their own UTC windows', async () => {
        const daily = await createBudget({ period: 'day', limitMicros: 10 * USD });
        const monthly = await createBudget({ period: 'month', limitMicros: 15 * USD });
        const total = await createBudget({ period: 'total', limitMicros: 100 * USD });
        const key = await createKey({ dailyCapMicros: null, expiresAt: NOW + 60 * 24 * HOUR, budgetIds: [daily.id, monthly.id, total.id] });
        expect((await store.reserve(reserveReq(key.id, 10 * USD, { day: DAY }))).ok).toBe(true);
        // Next day: the day budget is fresh, the month budget is not.
        expect(await store.reserve(reserveReq(key.id, 6 * USD, { day: NEXT_DAY, now: NOW + 24 * HOUR }))).toMatchObject({
          code: 'cap_exhausted',
          limit: { id: monthly.id, period: 'month', window: '2026-01' },
        });
        expect((await store.reserve(reserveReq(key.id, 5 * USD, { day: NEXT_DAY, now: NOW + 24 * HOUR }))).ok).toBe(true);
        // Next month: both fresh; the total budget remembers everything.
        expect((await store.reserve(reserveReq(key.id, 10 * USD, { day: '2026-02-01', now: NOW + 31 * 24 * HOUR }))).ok).toBe(true);
        expect(await spend(daily, DAY)).toBe(10 * USD);
        expect(await spend(daily, NEXT_DAY)).toBe(5 * USD);
        expect(await spend(monthly, '2026-01')).toBe(15 * USD);
        expect(await spend(monthly, '2026-02')).toBe(10 * USD);
        expect(await spend(total, 'total')).toBe(25 * USD);
      });

      it('settle, extend and reconcile move budget spend exactly like key spend, in the window reserved in', async () => {
        const monthly = await createBudget({ period: 'month', limitMicros: 10 * USD });
        const key = await createKey({ dailyCapMicros: null, expiresAt: NOW + 60 * 24 * HOUR, budgetIds: [monthly.id] });
        const a = reserveReq(key.id, 4 * USD);
        const b = reserveReq(key.id, 3 * USD);
        const c = reserveReq(key.id, 1 * USD, { now: NOW - 10_000 });
        for (const r of [a, b, c]) expect((await store.reserve(r)).ok).toBe(true);
        expect(await spend(monthly, '2026-01')).toBe(8 * USD);
        // Growth past the budget is refused and changes nothing.
        expect(await store.extendReservation(b.reservationId, 2 * USD + 1, NOW + 1)).toMatchObject({ code: 'cap_exhausted', limit: { id: monthly.id } });
        expect(await store.extendReservation(b.reservationId, 2 * USD, NOW + 1)).toEqual({ ok: true, spentMicros: 10 * USD });
        expect(await spend(monthly, '2026-01')).toBe(10 * USD);
        // Settled next month: still adjusts January.
        await store.settle(a.reservationId, { state: 'settled', micros: USD }, NOW + 40 * 24 * HOUR);
        await store.settle(b.reservationId, { state: 'released' }, NOW + 40 * 24 * HOUR);
        expect(await spend(monthly, '2026-01')).toBe(2 * USD);
        expect(await spend(monthly, '2026-02')).toBe(0);
        expect((await store.reconcileStale(NOW - 5_000, NOW)).length).toBe(1);
        expect(await spend(monthly, '2026-01')).toBe(2 * USD);
        expect(await store.reserve(reserveReq(key.id, 8 * USD))).toMatchObject({ ok: true, spentMicros: 10 * USD });
        expect(await store.reserve(reserveReq(key.id, 1))).toMatchObject({ code: 'cap_exhausted' });
      });

      it('a frozen budget refuses every call of its keys until unfrozen; a raised limit applies at once', async () => {
        const budget = await createBudget({ limitMicros: 5 * USD });
        const key = await createKey({ dailyCapMicros: null, budgetIds: [budget.id] });
        expect((await store.reserve(reserveReq(key.id, 5 * USD))).ok).toBe(true);
        expect(await store.reserve(reserveReq(key.id, USD))).toMatchObject({ code: 'cap_exhausted' });
        await store.updateBudget('default', budget.id, { limitMicros: 6 * USD }, NOW);
        expect(await store.reserve(reserveReq(key.id, USD))).toMatchObject({ ok: true, spentMicros: 6 * USD });
        await store.updateBudget('default', budget.id, { frozen: true, limitMicros: 100 * USD }, NOW);
        const refused = reserveReq(key.id, 0);
        expect(await store.reserve(refused)).toEqual({ ok: false, code: 'budget_frozen', budgetId: budget.id });
        expect(await store.getReservation(refused.reservationId)).toBeNull();
        expect(await spend(budget)).toBe(6 * USD);
        await store.updateBudget('default', budget.id, { frozen: false }, NOW);
        expect((await store.reserve(reserveReq(key.id, USD))).ok).toBe(true);
      });

      it('deletes a budget only once no active key is attached', async () => {
        const budget = await createBudget();
        const key = await createKey({ budgetIds: [budget.id] });
        expect(await store.deleteBudget('default', budget.id, NOW)).toBe('in_use');
        expect(await store.deleteBudget('default', 'nope', NOW)).toBe('not_found');
        await store.revokeKey(key.id, NOW);
        expect(await store.deleteBudget('default', budget.id, NOW)).toBe('deleted');
        expect(await store.getBudget('default', budget.id)).toBeNull();
        expect(await store.deleteBudget('default', budget.id, NOW)).toBe('not_found');
        // The name can be used again, starting from nothing.
        const again = await createBudget({ id: budget.id, limitMicros: USD });
        const k2 = await createKey({ dailyCapMicros: null, budgetIds: [again.id] });
        expect(await store.reserve(reserveReq(k2.id, USD))).toMatchObject({ ok: true, spentMicros: USD });
        expect(await spend(again)).toBe(USD);
      });

      it('reports the budget thresholds (80 %, 100 %) a reservation crosses, once', async () => {
        const budget = await createBudget({ limitMicros: 10 * USD });
        const key = await createKey({ dailyCapMicros: null, budgetIds: [budget.id] });
        expect(await store.reserve(reserveReq(key.id, 7 * USD))).toEqual({ ok: true, spentMicros: 7 * USD });
        expect(await store.reserve(reserveReq(key.id, 1 * USD))).toEqual({
          ok: true,
          spentMicros: 8 * USD,
          thresholds: [{ budgetId: budget.id, window: DAY, percent: 80, spentMicros: 8 * USD, limitMicros: 10 * USD }],
        });
        expect(await store.reserve(reserveReq(key.id, 1 * USD))).toEqual({ ok: true, spentMicros: 9 * USD });
        expect(await store.reserve(reserveReq(key.id, 1 * USD))).toEqual({
          ok: true,
          spentMicros: 10 * USD,
          thresholds: [{ budgetId: budget.id, window: DAY, percent: 100, spentMicros: 10 * USD, limitMicros: 10 * USD }],
        });
        const jump = await createBudget({ limitMicros: 10 * USD });
        const k2 = await createKey({ dailyCapMicros: null, budgetIds: [jump.id] });
        expect(await store.reserve(reserveReq(k2.id, 10 * USD))).toMatchObject({
          thresholds: [{ percent: 80 }, { percent: 100 }],
        });
      });

      it('accepts exactly limit / amount of 300 concurrent reservations over 20 keys sharing one budget', async () => {
        const budget = await createBudget({ limitMicros: 500 * USD });
        const keys = await Promise.all(Array.from({ length: 20 }, () => createKey({ dailyCapMicros: null, budgetIds: [budget.id] })));
        const results = await Promise.all(
          Array.from({ length: 300 }, (_, i) => store.reserve(reserveReq(keys[i % 20]!.id, 10 * USD))),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(50);
        for (const r of results) if (!r.ok) expect(r).toMatchObject({ code: 'cap_exhausted', limit: { kind: 'budget', id: budget.id } });
        expect(await spend(budget)).toBe(500 * USD);
      });

      it('keeps budgets and their spend across close and re-open', async (ctx) => {
        if (!instance.reopen) {
          ctx.skip();
          return;
        }
        const budget = await createBudget({ limitMicros: 10 * USD, period: 'total' });
        const key = await createKey({ dailyCapMicros: null, budgetIds: [budget.id] });
        const open = reserveReq(key.id, 4 * USD);
        await store.reserve(open);
        await store.reserve(reserveReq(key.id, 5 * USD));
        store = await instance.reopen();
        expect(await store.getBudget('default', budget.id)).toEqual(budget);
        expect(await spend(budget, 'total')).toBe(9 * USD);
        expect(await store.reserve(reserveReq(key.id, 2 * USD))).toMatchObject({ code: 'cap_exhausted', spentMicros: 9 * USD });
        await store.settle(open.reservationId, { state: 'released' }, NOW + 1);
        expect((await store.reserve(reserveReq(key.id, 5 * USD))).ok).toBe(true);
        expect(await store.reserve(reserveReq(key.id, 1))).toMatchObject({ code: 'cap_exhausted', limit: { id: budget.id } });
      });
    });

    describe('idempotency', () => {
      const TTL = 24 * HOUR;
      const idem = (key: string, fingerprint = 'fp-a') => ({ idempotency: { key, fingerprint, ttlMs: TTL } });

      it('charges the first call once; a retry with the same key and fingerprint replays it uncharged', async () => {
        const budget = makeBudget({ limitMicros: 100 * USD });
        await store.createBudget(budget);
        const key = await createKey({ dailyCapMicros: 10 * USD, budgetIds: [budget.id] });
        const first = reserveReq(key.id, 4 * USD, idem('ik_1'));
        expect(await store.reserve(first)).toEqual({ ok: true, spentMicros: 4 * USD });
        const retry = reserveReq(key.id, 4 * USD, { ...idem('ik_1'), now: NOW + 1000 });
        expect(await store.reserve(retry)).toEqual({ ok: true, spentMicros: 4 * USD, replayOf: first.reservationId });
        expect(await store.getReservation(retry.reservationId)).toBeNull();
        expect(await store.keyUsage(key.id, DAY)).toMatchObject({ requestCount: 1, spentMicros: 4 * USD });
        expect(await store.budgetSpend('default', budget.id, DAY)).toBe(4 * USD);
        // Settled or not, still a replay.
        await store.settle(first.reservationId, { state: 'settled', micros: 4 * USD }, NOW + 2000);
        expect(await store.reserve(reserveReq(key.id, 4 * USD, idem('ik_1')))).toMatchObject({ ok: true, replayOf: first.reservationId });
        // The same Idempotency-Key on another vault key is its own.
        const other = await createKey({ dailyCapMicros: 10 * USD });
        expect(await store.reserve(reserveReq(other.id, 4 * USD, idem('ik_1')))).toEqual({ ok: true, spentMicros: 4 * USD });
      });

      it('refuses the same key with another fingerprint, changing nothing', async () => {
        const key = await createKey({ dailyCapMicros: 10 * USD });
        expect((await store.reserve(reserveReq(key.id, 4 * USD, idem('ik_2', 'fp-a')))).ok).toBe(true);
        const reused = reserveReq(key.id, 1 * USD, idem('ik_2', 'fp-b'));
        expect(await store.reserve(reused)).toEqual({ ok: false, code: 'idempotency_key_reused' });
        expect(await store.getReservation(reused.reservationId)).toBeNull();
        expect((await store.keyUsage(key.id, DAY)).spentMicros).toBe(4 * USD);
        // The original still replays.
        expect(await store.reserve(reserveReq(key.id, 4 * USD, idem('ik_2', 'fp-a')))).toMatchObject({ replayOf: expect.any(String) });
      });

      it('charges a retry anew when the original was released, and forgets records after their ttl', async () => {
        const key = await createKey({ dailyCapMicros: 10 * USD, expiresAt: NOW + 48 * HOUR });
        const first = reserveReq(key.id, 4 * USD, idem('ik_3'));
        await store.reserve(first);
        await store.settle(first.reservationId, { state: 'released' }, NOW + 1);
        const second = reserveReq(key.id, 4 * USD, idem('ik_3'));
        expect(await store.reserve(second)).toEqual({ ok: true, spentMicros: 4 * USD });
        expect(await store.reserve(reserveReq(key.id, 4 * USD, idem('ik_3')))).toMatchObject({ replayOf: second.reservationId });
        // After the ttl the key is free again, even for another request.
        const late = reserveReq(key.id, 1 * USD, { ...idem('ik_3', 'fp-other'), now: NOW + TTL + 1, day: NEXT_DAY });
        expect(await store.reserve(late)).toEqual({ ok: true, spentMicros: USD });
        expect(await store.purgeIdempotency(NOW + TTL + 1)).toBe(0);
        expect(await store.purgeIdempotency(NOW + TTL + 2)).toBe(1);
        expect((await store.reserve(reserveReq(key.id, 1 * USD, { ...idem('ik_3', 'fp-x'), now: NOW + TTL + 3, day: NEXT_DAY }))).ok).toBe(true);
      });

      it('a refused call records nothing, and a replay still obeys revocation', async () => {
        const key = await createKey({ dailyCapMicros: 3 * USD });
        expect(await store.reserve(reserveReq(key.id, 4 * USD, idem('ik_4', 'fp-a')))).toMatchObject({ code: 'cap_exhausted' });
        expect(await store.reserve(reserveReq(key.id, 2 * USD, idem('ik_4', 'fp-b')))).toEqual({ ok: true, spentMicros: 2 * USD });
        await store.revokeKey(key.id, NOW);
        expect(await store.reserve(reserveReq(key.id, 2 * USD, idem('ik_4', 'fp-b')))).toEqual({ ok: false, code: 'key_revoked' });
      });

      it('charges exactly once among 20 concurrent duplicates', async () => {
        const key = await createKey({ dailyCapMicros: 100 * USD });
        const results = await Promise.all(Array.from({ length: 20 }, () => store.reserve(reserveReq(key.id, 5 * USD, idem('ik_5')))));
        expect(results.every((r) => r.ok)).toBe(true);
        expect(results.filter((r) => r.ok && r.replayOf === undefined)).toHaveLength(1);
        expect(await store.keyUsage(key.id, DAY)).toMatchObject({ requestCount: 1, spentMicros: 5 * USD });
      });
    });

    describe('rate limits', () => {
      it("a key's token bucket refuses past its burst, names the key, records nothing, and refills over time", async () => {
        const key = await createKey({ dailyCapMicros: null, rateLimit: { requests: 3, perMs: 1000 } });
        for (let i = 0; i < 3; i++) expect((await store.reserve(reserveReq(key.id, USD))).ok).toBe(true);
        const refused = reserveReq(key.id, USD);
        expect(await store.reserve(refused)).toEqual({ ok: false, code: 'rate_limited', retryAfterMs: 334, limit: { kind: 'key', id: key.id } });
        expect(await store.getReservation(refused.reservationId)).toBeNull();
        expect(await store.keyUsage(key.id, DAY)).toMatchObject({ requestCount: 3, spentMicros: 3 * USD });
        expect(await store.reserve(reserveReq(key.id, USD, { now: NOW + 200 }))).toMatchObject({ code: 'rate_limited' });
        expect((await store.reserve(reserveReq(key.id, USD, { now: NOW + 334 }))).ok).toBe(true);
        expect((await store.reserve(reserveReq(key.id, USD, { now: NOW + 10_000 }))).ok).toBe(true);
        // An open reservation still grows: extension is not a new request.
        const open = reserveReq(key.id, USD, { now: NOW + 10_000 });
        expect((await store.reserve(open)).ok).toBe(true);
        expect((await store.extendReservation(open.reservationId, USD, NOW + 10_000)).ok).toBe(true);
        // Another key is not affected.
        const other = await createKey({ rateLimit: { requests: 1, perMs: 60_000 } });
        expect((await store.reserve(reserveReq(other.id, USD))).ok).toBe(true);
      });

      it("a budget's bucket is shared by its keys; a refusal takes no token from any bucket", async () => {
        const budget = makeBudget({ rateLimit: { requests: 2, perMs: 60_000 }, limitMicros: 1000 * USD });
        await store.createBudget(budget);
        expect((await store.getBudget('default', budget.id))?.rateLimit).toEqual({ requests: 2, perMs: 60_000 });
        const a = await createKey({ dailyCapMicros: null, rateLimit: { requests: 5, perMs: 60_000 }, budgetIds: [budget.id] });
        const b = await createKey({ dailyCapMicros: null, budgetIds: [budget.id] });
        expect((await store.reserve(reserveReq(a.id, USD))).ok).toBe(true);
        expect((await store.reserve(reserveReq(b.id, USD))).ok).toBe(true);
        expect(await store.reserve(reserveReq(a.id, USD))).toEqual({
          ok: false,
          code: 'rate_limited',
          retryAfterMs: 30_000,
          limit: { kind: 'budget', id: budget.id },
        });
        // Key a lost no token to that refusal: with the budget's limit removed it has 4 left.
        expect(await store.updateBudget('default', budget.id, { rateLimit: null }, NOW)).toMatchObject({ rateLimit: null });
        for (let i = 0; i < 4; i++) expect((await store.reserve(reserveReq(a.id, USD))).ok).toBe(true);
        expect(await store.reserve(reserveReq(a.id, USD))).toMatchObject({ code: 'rate_limited', limit: { kind: 'key' } });
      });

      it('a call refused at the cap takes no token', async () => {
        const key = await createKey({ dailyCapMicros: USD, rateLimit: { requests: 1, perMs: 60_000 } });
        expect(await store.reserve(reserveReq(key.id, 2 * USD))).toMatchObject({ code: 'cap_exhausted' });
        expect((await store.reserve(reserveReq(key.id, USD))).ok).toBe(true);
        expect(await store.reserve(reserveReq(key.id, 0))).toMatchObject({ code: 'rate_limited' });
      });

      it('round-trips the rate limit of a key', async () => {
        const key = await createKey({ rateLimit: { requests: 7, perMs: 60_000 } });
        expect(await store.getKeyById(key.id)).toEqual(key);
      });
    });

    describe('tenants', () => {
      it('scopes key reads, lists and revocations to the tenant given', async () => {
        const mine = await createKey({ tenantId: 'acme' });
        const theirs = await createKey({ tenantId: 'globex' });
        expect(await store.getKeyById(mine.id, 'acme')).toEqual(mine);
        expect(await store.getKeyById(mine.id, 'globex')).toBeNull();
        expect(await store.getKeyById(mine.id)).toEqual(mine);
        expect(ids(await listAllKeys({ tenantId: 'acme' }))).toEqual([mine.id]);
        expect(ids(await listAllKeys({ tenantId: 'globex', status: 'active' }))).toEqual([theirs.id]);
        expect(await listAllKeys({ tenantId: 'default' })).toEqual([]);
        expect(await store.revokeKey(theirs.id, NOW, 'acme')).toBe('not_found');
        expect((await store.getKeyById(theirs.id))?.revokedAt).toBeNull();
        expect(await store.revokeKey(theirs.id, NOW, 'globex')).toBe('revoked');
        expect(await store.revokeKey(theirs.id, NOW, 'globex')).toBe('already_revoked');
        expect(await store.revokeKey(theirs.id, NOW, 'acme')).toBe('not_found');
      });

      it('keeps budgets of the same name in two tenants apart, and a key only attaches to its own', async () => {
        await store.createBudget(makeBudget({ tenantId: 'acme', id: 'user:u1', limitMicros: 5 * USD }));
        await store.createBudget(makeBudget({ tenantId: 'globex', id: 'user:u1', limitMicros: 50 * USD }));
        const a = await createKey({ tenantId: 'acme', dailyCapMicros: null, budgetIds: ['user:u1'] });
        const g = await createKey({ tenantId: 'globex', dailyCapMicros: null, budgetIds: ['user:u1'] });
        expect((await store.reserve(reserveReq(a.id, 5 * USD))).ok).toBe(true);
        expect(await store.reserve(reserveReq(a.id, 1))).toMatchObject({ code: 'cap_exhausted', limit: { id: 'user:u1' } });
        expect(await store.reserve(reserveReq(g.id, 20 * USD))).toEqual({ ok: true, spentMicros: 20 * USD });
        expect(await store.budgetSpend('acme', 'user:u1', DAY)).toBe(5 * USD);
        expect(await store.budgetSpend('globex', 'user:u1', DAY)).toBe(20 * USD);
        expect(ids(await listAllKeys({ tenantId: 'acme', budgetId: 'user:u1' }))).toEqual([a.id]);
        await store.createBudget(makeBudget({ tenantId: 'globex', id: 'team:only-globex' }));
        await expect(store.createKey(makeKey({ tenantId: 'acme', budgetIds: ['team:only-globex'] }))).rejects.toThrow();
        // Freezing one tenant's budget leaves the other's alone.
        await store.updateBudget('acme', 'user:u1', { frozen: true }, NOW);
        expect(await store.reserve(reserveReq(a.id, 0))).toMatchObject({ code: 'budget_frozen' });
        expect((await store.reserve(reserveReq(g.id, USD))).ok).toBe(true);
        expect(await store.deleteBudget('default', 'user:u1', NOW)).toBe('not_found');
      });

      it('records and filters audit by tenant', async () => {
        const a = makeAudit({ tenantId: 'acme', time: NOW });
        const d = makeAudit({ time: NOW + 1 });
        await store.appendAudit([a, d]);
        expect(await listAllAudit({ tenantId: 'acme' })).toEqual([a]);
        expect(ids(await listAllAudit({ tenantId: 'default' }))).toEqual([d.id]);
        expect(await listAllAudit({ tenantId: 'globex' })).toEqual([]);
      });
    });

    describe('audit', () => {
      it('round-trips every field and lists newest first', async () => {
        const a = makeAudit({
          time: NOW,
          keyId: 'key_1',
          label: 'run-7',
          vendor: 'stripe',
          mode: 'live',
          method: 'POST',
          path: '/v1/refunds',
          status: 402,
          decision: 'deny',
          code: 'cap_exhausted',
          costMicros: 1_500_000,
          upstreamLatencyMs: null,
        });
        const b = makeAudit({ time: NOW + 1, upstreamLatencyMs: 12.5, costMicros: 250, mode: 'test' });
        const c = makeAudit({ time: NOW + 2, status: 401, decision: 'deny', code: 'invalid_key' });
        await store.appendAudit([a, b]);
        await store.appendAudit([c]);
        const page = await store.listAudit({}, 10, null);
        expect(page).toEqual({ items: [c, b, a], nextCursor: null });
      });

      it('appending an empty batch is a no-op', async () => {
        await store.appendAudit([]);
        expect(await store.listAudit({}, 10, null)).toEqual({ items: [], nextCursor: null });
      });

      it('filters by keyId, decision, vendor, code and since (inclusive), combined with AND', async () => {
        const r1 = makeAudit({ time: NOW + 1, keyId: 'key_a', vendor: 'stripe', decision: 'allow', code: null });
        const r2 = makeAudit({ time: NOW + 2, keyId: 'key_a', vendor: 'stripe', decision: 'deny', code: 'cap_exhausted' });
        const r3 = makeAudit({ time: NOW + 3, keyId: 'key_b', vendor: 'acme', decision: 'deny', code: 'endpoint_not_allowed' });
        const r4 = makeAudit({ time: NOW + 4, keyId: null, vendor: null, decision: 'deny', code: 'invalid_key' });
        const r5 = makeAudit({ time: NOW + 5, keyId: 'key_b', vendor: 'acme', decision: 'allow', code: null });
        await store.appendAudit([r1, r2, r3, r4, r5]);

        expect(ids(await listAllAudit({ keyId: 'key_a' }))).toEqual([r2.id, r1.id]);
        expect(ids(await listAllAudit({ keyId: 'key_b' }))).toEqual([r5.id, r3.id]);
        expect(await listAllAudit({ keyId: 'key_none' })).toEqual([]);
        expect(ids(await listAllAudit({ decision: 'allow' }))).toEqual([r5.id, r1.id]);
        expect(ids(await listAllAudit({ decision: 'deny' }))).toEqual([r4.id, r3.id, r2.id]);
        expect(ids(await listAllAudit({ vendor: 'acme' }))).toEqual([r5.id, r3.id]);
        expect(ids(await listAllAudit({ code: 'cap_exhausted' }))).toEqual([r2.id]);
        expect(ids(await listAllAudit({ since: NOW + 3 }))).toEqual([r5.id, r4.id, r3.id]);
        expect(await listAllAudit({ since: NOW + 6 })).toEqual([]);
        expect(ids(await listAllAudit({ keyId: 'key_b', decision: 'deny' }))).toEqual([r3.id]);
        expect(ids(await listAllAudit({ vendor: 'stripe', since: NOW + 2 }))).toEqual([r2.id]);
        expect(await listAllAudit({})).toHaveLength(5);
      });

      it('cursor pagination visits every record exactly once, newest first, even with equal times', async () => {
        const all: AuditRecord[] = [];
        for (let batch = 0; batch < 4; batch++) {
          const records = Array.from({ length: 7 }, (_, i) =>
            makeAudit({ time: batch < 2 ? NOW : NOW + batch * 1000 + i, keyId: i % 2 ? 'key_odd' : 'key_even' }),
          );
          await store.appendAudit(records);
          all.push(...records);
        }
        for (const limit of [1, 4, 7, 28]) {
          const pages = await collectPages((c) => store.listAudit({}, limit, c), limit);
          const seen = pages.flat();
          expect(ids(seen)).toEqual(ids([...all].reverse()));
          for (const page of pages.slice(0, -1)) expect(page).toHaveLength(limit);
        }
        const odd = await listAllAudit({ keyId: 'key_odd' }, 3);
        expect(ids(odd)).toEqual(ids([...all].reverse().filter((r) => r.keyId === 'key_odd')));
        const exact = await store.listAudit({}, 28, null);
        expect(exact.items).toHaveLength(28);
        expect(exact.nextCursor).toBeNull();
      });

      it('a cursor stays valid when newer records are appended between pages', async () => {
        const old = Array.from({ length: 6 }, (_, i) => makeAudit({ time: NOW + i }));
        await store.appendAudit(old);
        const first = await store.listAudit({}, 4, null);
        await store.appendAudit([makeAudit({ time: NOW + 100 }), makeAudit({ time: NOW + 101 })]);
        const rest = await collectPages((c) => store.listAudit({}, 4, c ?? first.nextCursor), 4);
        expect(ids([...first.items, ...rest.flat()])).toEqual(ids([...old].reverse()));
      });

      it('throws InvalidCursorError on a malformed cursor', async () => {
        await store.appendAudit([makeAudit()]);
        for (const bad of ['not a cursor!!', '', Buffer.from('{"x":1}').toString('base64url'), 'W10']) {
          await expect(store.listAudit({}, 10, bad)).rejects.toBeInstanceOf(InvalidCursorError);
        }
      });
    });

    describe('lifecycle', () => {
      it('ping resolves', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });

      it('keeps keys, spend, reservations and audit across close and re-open', async (ctx) => {
        if (!instance.reopen) {
          ctx.skip();
          return;
        }
        const key = await createKey({ dailyCapMicros: 10 * USD, metadata: { user_id: 'u42' } });
        const revoked = await createKey();
        await store.revokeKey(revoked.id, NOW);
        const settled = reserveReq(key.id, 3 * USD, { now: NOW + 1 });
        const open = reserveReq(key.id, 2 * USD, { now: NOW + 2 });
        await store.reserve(settled);
        await store.reserve(open);
        await store.settle(settled.reservationId, { state: 'settled', micros: USD }, NOW + 3);
        const audit = [makeAudit({ time: NOW, keyId: key.id }), makeAudit({ time: NOW + 1, keyId: key.id })];
        await store.appendAudit(audit);
        const usage = await store.keyUsage(key.id, DAY);
        const settledRes = await store.getReservation(settled.reservationId);
        const openRes = await store.getReservation(open.reservationId);

        const reopened = await instance.reopen();
        store = reopened;
        expect(await reopened.getKeyById(key.id)).toEqual(key);
        expect(await reopened.getKeyByHash(key.tokenHash)).toEqual(key);
        expect(await reopened.getKeyById(revoked.id)).toEqual({ ...revoked, revokedAt: NOW });
        expect(await reopened.keyUsage(key.id, DAY)).toEqual(usage);
        expect(usage).toEqual({ requestCount: 2, lastUsedAt: NOW + 2, spentMicros: 3 * USD });
        expect(await reopened.getReservation(settled.reservationId)).toEqual(settledRes);
        expect(await reopened.getReservation(open.reservationId)).toEqual(openRes);
        expect(await reopened.listAudit({}, 10, null)).toEqual({ items: [...audit].reverse(), nextCursor: null });
        // Still fully usable: the open reservation settles and the cap still holds.
        await reopened.settle(open.reservationId, { state: 'released' }, NOW + 4);
        expect(await reopened.reserve(reserveReq(key.id, 9 * USD))).toEqual({ ok: true, spentMicros: 10 * USD });
        expect(await reopened.reserve(reserveReq(key.id, 1))).toMatchObject({ code: 'cap_exhausted' });
      });
    });

    describe('minting keys', () => {
      it('round-trips a minting key, scoped to its tenant', async () => {
        const mk = makeMintingKey({ maxCapMicros: null, budgetIds: ['team:billing'], allowedBudgets: [], metadata: {} });
        await store.createMintingKey(mk);
        expect(await store.getMintingKey(mk.id)).toEqual(mk);
        expect(await store.getMintingKey(mk.id, 'default')).toEqual(mk);
        expect(await store.getMintingKey(mk.id, 'acme')).toBeNull();
        expect(await store.getMintingKey('mk_missing')).toBeNull();
      });

      it('lists a tenant\'s minting keys newest first, page by page', async () => {
        const made = [];
        for (let i = 0; i < 5; i++) {
          const mk = makeMintingKey({ createdAt: NOW - i * 1000 });
          await store.createMintingKey(mk);
          made.push(mk);
        }
        await store.createMintingKey(makeMintingKey({ tenantId: 'acme' }));
        const pages = await collectPages((c) => store.listMintingKeys('default', 2, c), 2);
        expect(pages.flat()).toEqual(made);
        expect(pages).toHaveLength(3);
      });

      it('rotation adds a version, retires the older ones and cuts their keys short', async () => {
        const mk = makeMintingKey();
        await store.createMintingKey(mk);
        const old = makeMintedKey(mk, undefined, { expiresAt: NOW + 2 * HOUR });
        const soon = makeMintedKey(mk, undefined, { expiresAt: NOW + 60_000 });
        expect(await store.createMintedKeys([old])).toMatchObject({ ok: true });
        expect(await store.createMintedKeys([soon])).toMatchObject({ ok: true });
        const v2 = { version: 2, salt: 'salt-2', createdAt: NOW, retiresAt: null };
        const r = await store.rotateMintingKey('default', mk.id, { salt: 'salt-2', createdAt: NOW }, NOW + HOUR);
        expect(r).toEqual({ ok: true, record: { ...mk, versions: [{ ...mk.versions[0]!, retiresAt: NOW + HOUR }, v2] } });
        expect(await store.getMintingKey(mk.id)).toEqual(r.ok && r.record);
        expect((await store.getKeyById(old.id))?.expiresAt).toBe(NOW + HOUR);
        expect((await store.getKeyById(soon.id))?.expiresAt).toBe(NOW + 60_000);
        // A later rotation never pushes an earlier retirement back.
        const v3 = { salt: 'salt-3', createdAt: NOW };
        const again = await store.rotateMintingKey('default', mk.id, v3, NOW + 2 * HOUR);
        expect(again.ok && again.record.versions.map((v) => v.retiresAt)).toEqual([NOW + HOUR, NOW + 2 * HOUR, null]);
        // A key minted under a retired version is created to expire when it retires.
        const late = makeMintedKey(mk, undefined, { mintVersion: 1, expiresAt: NOW + 3 * HOUR });
        const created = await store.createMintedKeys([late]);
        expect(created.ok && created.keys[0]!.expiresAt).toBe(NOW + HOUR);
        expect(await store.rotateMintingKey('acme', mk.id, v3, NOW)).toEqual({ ok: false, code: 'not_found' });
      });

      it('numbers concurrent rotations one after another, each with its own salt', async () => {
        const mk = makeMintingKey();
        await store.createMintingKey(mk);
        await Promise.all(['a', 'b', 'c'].map((salt) => store.rotateMintingKey('default', mk.id, { salt, createdAt: NOW }, NOW + HOUR)));
        const versions = (await store.getMintingKey(mk.id))!.versions;
        expect(versions.map((v) => v.version)).toEqual([1, 2, 3, 4]);
        expect(sorted(versions.slice(1).map((v) => v.salt))).toEqual(['a', 'b', 'c']);
      });

      it("a budget a minting key attaches to its keys cannot be deleted until the minting key is revoked", async () => {
        const budget = makeBudget({ id: 'team:mint' });
        await store.createBudget(budget);
        const mk = makeMintingKey({ budgetIds: ['team:mint'] });
        await store.createMintingKey(mk);
        await store.createMintingKey(makeMintingKey({ tenantId: 'acme', budgetIds: ['team:other'] }));
        expect(await store.deleteBudget('default', 'team:mint', NOW)).toBe('in_use');
        await store.revokeMintingKey('default', mk.id, NOW);
        expect(await store.deleteBudget('default', 'team:mint', NOW)).toBe('deleted');
      });

      it('revoking a minting key revokes every key minted from it, at once', async () => {
        const mk = makeMintingKey();
        await store.createMintingKey(mk);
        const a = makeMintedKey(mk, undefined, { dailyCapMicros: null });
        const b = makeMintedKey(mk, a);
        await store.createMintedKeys([a, b]);
        expect((await store.reserve(reserveReq(b.id, USD))).ok).toBe(true);
        expect(await store.revokeMintingKey('acme', mk.id, NOW)).toEqual({ result: 'not_found', keys: [] });
        const r = await store.revokeMintingKey('default', mk.id, NOW + 1);
        expect(r.result).toBe('revoked');
        expect(sorted(ids(r.keys))).toEqual(sorted([a.id, b.id]));
        expect(r.keys.find((k) => k.id === a.id)?.tokenHash).toBe(a.tokenHash);
        expect((await store.getMintingKey(mk.id))?.revokedAt).toBe(NOW + 1);
        expect((await store.getKeyById(a.id))?.revokedAt).toBe(NOW + 1);
        expect(await store.reserve(reserveReq(b.id, USD))).toEqual({ ok: false, code: 'key_revoked' });
        expect(await store.revokeMintingKey('default', mk.id, NOW + 2)).toEqual({ result: 'already_revoked', keys: [] });
        expect(await store.revokeMintingKey('default', 'mk_missing', NOW)).toEqual({ result: 'not_found', keys: [] });
        // Its keys used for the first time afterwards are created revoked.
        const late = makeMintedKey(mk);
        const created = await store.createMintedKeys([late]);
        expect(created.ok && created.keys[0]!.revokedAt).toBe(NOW + 1);
        expect(await store.reserve(reserveReq(late.id, 0))).toEqual({ ok: false, code: 'key_revoked' });
        expect(await store.rotateMintingKey('default', mk.id, { salt: 's', createdAt: NOW }, NOW)).toEqual({
          ok: false,
          code: 'revoked',
        });
      });
    });

    describe('minted keys', () => {
      let mk: MintingKeyRecord;
      beforeEach(async () => {
        mk = makeMintingKey();
        await store.createMintingKey(mk);
      });

      it('creates a chain on first use, root first, and finds it the same afterwards', async () => {
        const root = makeMintedKey(mk, undefined, { metadata: { user_id: 'u42' } });
        const child = makeMintedKey(mk, root, { dailyCapMicros: 5 * USD, allowedEndpoints: ['POST /v1/refunds'] });
        const first = await store.createMintedKeys([root, child]);
        expect(first).toEqual({ ok: true, keys: [root, child] });
        expect(await store.getKeyById(child.id)).toEqual(child);
        expect(await store.getKeyByHash(root.tokenHash)).toEqual(root);
        // Another replica (or a racing call) creating the same chain finds it as it is.
        expect(await store.createMintedKeys([root, { ...child, createdAt: NOW + 5 }])).toEqual({ ok: true, keys: [root, child] });
        const sibling = makeMintedKey(mk, root);
        expect(await store.createMintedKeys([root, sibling])).toEqual({ ok: true, keys: [root, sibling] });
        expect(sorted(ids(await listAllKeys({ mintingKeyId: mk.id })))).toEqual(sorted([root.id, child.id, sibling.id]));
        expect(await listAllKeys({ mintingKeyId: 'mk_other' })).toEqual([]);
      });

      it('refuses an id that another token already holds, and writes nothing', async () => {
        const root = makeMintedKey(mk);
        await store.createMintedKeys([root]);
        expect(await store.createMintedKeys([{ ...root, tokenHash: 'hash_other' }])).toEqual({ ok: false, code: 'conflict', id: root.id });
        const fresh = makeMintedKey(mk);
        const clash = makeMintedKey(mk, fresh, { id: root.id, tokenHash: 'hash_clash' });
        expect(await store.createMintedKeys([fresh, clash])).toEqual({ ok: false, code: 'conflict', id: root.id });
        expect(await store.getKeyById(fresh.id)).toBeNull();
      });

      it('refuses a chain naming a missing budget or minting key, and writes nothing', async () => {
        const budget = makeBudget({ id: 'user:u42' });
        await store.createBudget(budget);
        const root = makeMintedKey(mk, undefined, { budgetIds: ['user:u42', 'user:gone'] });
        expect(await store.createMintedKeys([root])).toEqual({ ok: false, code: 'budget_not_found', id: 'user:gone' });
        expect(await store.getKeyById(root.id)).toBeNull();
        const stranger = makeMintedKey(makeMintingKey());
        expect(await store.createMintedKeys([stranger])).toEqual({ ok: false, code: 'minting_key_not_found' });
        const wrongTenant = makeMintedKey(mk, undefined, { tenantId: 'acme' });
        expect(await store.createMintedKeys([wrongTenant])).toEqual({ ok: false, code: 'minting_key_not_found' });
        const ok = makeMintedKey(mk, undefined, { budgetIds: ['user:u42'] });
        expect((await store.createMintedKeys([ok])).ok).toBe(true);
        expect((await store.reserve(reserveReq(ok.id, 3 * USD))).ok).toBe(true);
        expect(await store.budgetSpend('default', 'user:u42', DAY)).toBe(3 * USD);
      });

      it("counts a narrowed key's spend against every key it came from, atomically", async () => {
        const root = makeMintedKey(mk, undefined, { dailyCapMicros: 10 * USD });
        const child = makeMintedKey(mk, root, { dailyCapMicros: 8 * USD });
        const grandchild = makeMintedKey(mk, child, { dailyCapMicros: 6 * USD });
        const sibling = makeMintedKey(mk, root, { dailyCapMicros: 8 * USD });
        await store.createMintedKeys([root, child, grandchild]);
        await store.createMintedKeys([root, sibling]);
        expect(await store.reserve(reserveReq(grandchild.id, 4 * USD))).toEqual({ ok: true, spentMicros: 4 * USD });
        expect((await store.keyUsage(child.id, DAY)).spentMicros).toBe(4 * USD);
        expect((await store.keyUsage(root.id, DAY)).spentMicros).toBe(4 * USD);
        expect(await store.keyUsage(grandchild.id, DAY)).toEqual({ requestCount: 1, lastUsedAt: NOW, spentMicros: 4 * USD });
        expect((await store.keyUsage(root.id, DAY)).requestCount).toBe(0);
        // The grandchild's own cap first, then each ancestor's.
        expect(await store.reserve(reserveReq(grandchild.id, 3 * USD))).toEqual({ ok: false, code: 'cap_exhausted', spentMicros: 4 * USD, capMicros: 6 * USD });
        expect(await store.reserve(reserveReq(sibling.id, 7 * USD))).toEqual({
          ok: false,
          code: 'cap_exhausted',
          spentMicros: 4 * USD,
          capMicros: 10 * USD,
          limit: { kind: 'parent_key', id: root.id },
        });
        const open = reserveReq(sibling.id, 6 * USD);
        expect((await store.reserve(open)).ok).toBe(true);
        expect(await store.reserve(reserveReq(root.id, 1))).toMatchObject({ code: 'cap_exhausted', spentMicros: 10 * USD });
        // Settling and extending move every ancestor's spend too.
        await store.settle(open.reservationId, { state: 'settled', micros: 2 * USD }, NOW + 1);
        expect((await store.keyUsage(root.id, DAY)).spentMicros).toBe(6 * USD);
        const grow = reserveReq(child.id, USD);
        expect((await store.reserve(grow)).ok).toBe(true);
        expect(await store.extendReservation(grow.reservationId, 4 * USD, NOW + 2)).toMatchObject({ ok: false, code: 'cap_exhausted' });
        expect(await store.extendReservation(grow.reservationId, 3 * USD, NOW + 2)).toEqual({ ok: true, spentMicros: 8 * USD });
        expect((await store.keyUsage(root.id, DAY)).spentMicros).toBe(10 * USD);
        await store.settle(grow.reservationId, { state: 'released' }, NOW + 3);
        expect((await store.keyUsage(root.id, DAY)).spentMicros).toBe(6 * USD);
        expect((await store.keyUsage(child.id, DAY)).spentMicros).toBe(4 * USD);
      });

      it('concurrent calls of two siblings never spend past their parent together', async () => {
        const root = makeMintedKey(mk, undefined, { dailyCapMicros: 50 * USD });
        const a = makeMintedKey(mk, root, { dailyCapMicros: 40 * USD });
        const b = makeMintedKey(mk, root, { dailyCapMicros: 40 * USD });
        await store.createMintedKeys([root, a]);
        await store.createMintedKeys([root, b]);
        const results = await Promise.all(Array.from({ length: 100 }, (_, i) => store.reserve(reserveReq(i % 2 ? a.id : b.id, USD))));
        expect(results.filter((r) => r.ok)).toHaveLength(50);
        expect((await store.keyUsage(root.id, DAY)).spentMicros).toBe(50 * USD);
        expect((await store.keyUsage(a.id, DAY)).spentMicros + (await store.keyUsage(b.id, DAY)).spentMicros).toBe(50 * USD);
      });

      it('a revoked or expired ancestor stops every key narrowed from it', async () => {
        const root = makeMintedKey(mk, undefined, { dailyCapMicros: null, expiresAt: NOW + HOUR });
        const child = makeMintedKey(mk, root, { dailyCapMicros: null });
        const other = makeMintedKey(mk, undefined, { dailyCapMicros: null, expiresAt: NOW + 10 });
        const otherChild = makeMintedKey(mk, other, { dailyCapMicros: null, expiresAt: NOW + HOUR });
        await store.createMintedKeys([root, child]);
        await store.createMintedKeys([other, otherChild]);
        expect((await store.reserve(reserveReq(child.id, 0))).ok).toBe(true);
        expect(await store.revokeKey(root.id, NOW)).toBe('revoked');
        expect(await store.reserve(reserveReq(child.id, 0))).toEqual({ ok: false, code: 'key_revoked' });
        expect(await store.reserve(reserveReq(otherChild.id, 0, { now: NOW + 10 }))).toEqual({ ok: false, code: 'key_expired' });
      });

      it('revokes a minted key before its first use, and its first use creates it revoked', async () => {
        const root = makeMintedKey(mk);
        const child = makeMintedKey(mk, root);
        expect(await store.revokeMintedKey('acme', child.id, mk.id, NOW)).toEqual({ result: 'not_found', tokenHash: null });
        expect(await store.revokeMintedKey('default', child.id, 'mk_missing', NOW)).toEqual({ result: 'not_found', tokenHash: null });
        expect(await store.revokeMintedKey('default', child.id, mk.id, NOW)).toEqual({ result: 'revoked', tokenHash: null });
        expect(await store.revokeMintedKey('default', child.id, mk.id, NOW + 1)).toEqual({ result: 'already_revoked', tokenHash: null });
        expect(await store.getMintedRevocation(child.id, 'default')).toEqual({ id: child.id, tenantId: 'default', mintingKeyId: mk.id, revokedAt: NOW });
        expect(await store.getMintedRevocation(child.id, 'acme')).toBeNull();
        expect(await store.getMintedRevocation(root.id, 'default')).toBeNull();
        const created = await store.createMintedKeys([root, child]);
        expect(created).toEqual({ ok: true, keys: [root, { ...child, revokedAt: NOW }] });
        expect(await store.reserve(reserveReq(child.id, 0))).toEqual({ ok: false, code: 'key_revoked' });
        expect((await store.reserve(reserveReq(root.id, 0))).ok).toBe(true);
        // Once it exists, the same call revokes the record.
        expect(await store.revokeMintedKey('default', root.id, mk.id, NOW + 3)).toEqual({ result: 'revoked', tokenHash: root.tokenHash });
        expect(await store.reserve(reserveReq(root.id, 0))).toEqual({ ok: false, code: 'key_revoked' });
      });
    });
  });
}
