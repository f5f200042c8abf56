import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileEndpoints, isEndpointAllowed, type EndpointPattern } from '../policy/endpoints.js';
import type { KeyRecord } from '../store/store.js';
import { narrowToken as append, signChain } from '../../test/mint.js';
import { verifyMintedToken, type MintingPolicy, type MintedVerification } from './minted.js';

// The verifier alone: pure, so its safety is shown with tables and property tests, no server.

const VECTORS = JSON.parse(readFileSync(new URL('../../../../docs/minting-vectors.json', import.meta.url), 'utf8')) as {
  secret_bytes_hex: string;
  minting_key_id: string;
  mint: Array<{ block: string; token: string; id: string }>;
  narrow: Array<{ parent: string; block: string; token: string; id: string }>;
  malformed: string[];
};
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

function compile(...p: string[]): EndpointPattern[] {
  const r = compileEndpoints(p);
  if (!Array.isArray(r)) throw new Error(r.error);
  return r;
}

const MK = 'mk_M1nt1ngKeyTestVector0001';
const SECRET = Buffer.from(VECTORS.secret_bytes_hex, 'hex');
const T0 = 1796083200;
const NOW = (T0 + 60) * 1000;
const policy = (o: Partial<MintingPolicy> = {}): MintingPolicy => ({
  id: MK,
  tenantId: 'default',
  mode: 'test',
  vendors: ['stripe'],
  endpoints: compile('/v1/payment_intents', '/v1/payment_intents/*', 'POST /v1/refunds', '/v1/customers/*'),
  maxCapMicros: null,
  maxTtlSeconds: 86_400,
  budgetIds: [],
  allowedBudgets: ['user:*'],
  versions: [{ version: 1, retiresAt: null }],
  ...o,
});
const verify = (token: string, p = policy(), now = NOW) => verifyMintedToken(token, p, (v) => (v === 1 ? SECRET : undefined), now);

const sign = (blocks: Array<object | string>, mode = 'test') => signChain(SECRET, mode, blocks);
let n = 0;
const id = () => `mkey_${MK.slice(3)}_${String(++n).padStart(24, '0')}`;

function ok(v: MintedVerification): KeyRecord[] {
  if (!v.ok) throw new Error(`refused: ${v.reason}`);
  return v.keys;
}

describe('minted tokens: the shared test vectors', () => {
  it('accepts every vector token and derives each ancestor\'s own token hash', () => {
    for (const m of VECTORS.mint) expect(ok(verify(m.token)).map((k) => k.id)).toEqual([m.id]);
    const [child, grandchild] = VECTORS.narrow;
    const keys = ok(verify(grandchild!.token));
    expect(keys.map((k) => k.id)).toEqual([VECTORS.mint[0]!.id, child!.id, grandchild!.id]);
    // The gateway computes the parent's and grandparent's tokens without ever being sent them.
    expect(keys.map((k) => k.tokenHash)).toEqual([sha256(VECTORS.mint[0]!.token), sha256(child!.token), sha256(grandchild!.token)]);
    expect(keys[2]).toMatchObject({
      ancestorIds: [keys[0]!.id, keys[1]!.id],
      dailyCapMicros: 5_000_000,
      allowedEndpoints: ['POST /v1/refunds'],
      // The grandchild names no label: it keeps its parent's, which is the root's and the child's.
      label: 'flask-u42-run7/refund-tool',
      metadata: { tool: 'refund', user_id: 'u42' },
      budgetIds: ['user:u42'],
      expiresAt: 1796083800 * 1000,
      mintingKeyId: MK,
      mintVersion: 1,
    });
    expect(keys[0]).toMatchObject({ dailyCapMicros: 100_000_000, label: 'flask-u42-run7', createdAt: T0 * 1000, ancestorIds: [] });
  });

  it('refuses every malformed vector', () => {
    for (const t of VECTORS.malformed) expect(verify(t)).toMatchObject({ ok: false, code: 'invalid_key' });
  });

  it('refuses a token under a version the minting key does not have, or another minting key', () => {
    expect(verify(VECTORS.mint[0]!.token, policy({ versions: [{ version: 2, retiresAt: null }] }))).toMatchObject({ ok: false });
    expect(verify(VECTORS.mint[0]!.token, policy({ id: 'mk_000000000000000000000000' }))).toMatchObject({ ok: false, code: 'invalid_key' });
    expect(verifyMintedToken(VECTORS.mint[0]!.token, policy(), () => Buffer.alloc(32), NOW)).toMatchObject({ ok: false, reason: 'the signature does not verify' });
  });

  it('ends a key when its secret version retires', () => {
    const retired = policy({ versions: [{ version: 1, retiresAt: NOW - 1 }] });
    expect(verify(VECTORS.mint[0]!.token, retired)).toMatchObject({ ok: false, code: 'key_expired' });
    const later = policy({ versions: [{ version: 1, retiresAt: NOW + 5_000 }] });
    expect(ok(verify(VECTORS.mint[0]!.token, later))[0]!.expiresAt).toBe(NOW + 5_000);
  });
});

// ---- properties ----

const UNIVERSE = ['/v1/payment_intents', '/v1/payment_intents/*', 'POST /v1/payment_intents', 'GET /v1/payment_intents/*', 'POST /v1/refunds', '/v1/refunds', '/v1/customers/*', 'DELETE /v1/customers/*', '/v1/transfers'];
const REQUESTS: Array<[string, string[]]> = [];
for (const m of ['GET', 'POST', 'DELETE']) {
  for (const path of [['v1', 'payment_intents'], ['v1', 'payment_intents', 'pi_1'], ['v1', 'refunds'], ['v1', 'customers', 'cus_1'], ['v1', 'transfers']]) {
    REQUESTS.push([m, path]);
  }
}
const allowedSet = (k: KeyRecord) => {
  const p = compile(...k.allowedEndpoints);
  return new Set(REQUESTS.filter(([m, s]) => isEndpointAllowed(p, m, s)).map(([m, s]) => `${m} /${s.join('/')}`));
};
const subset = <T>(a: Set<T>, b: Set<T>) => [...a].every((x) => b.has(x));
const capLe = (a: number | null, b: number | null) => b === null || (a !== null && a <= b);

const endpointsArb = fc.uniqueArray(fc.constantFrom(...UNIVERSE), { minLength: 1, maxLength: 4 });
const methodsArb = fc.uniqueArray(fc.constantFrom('GET', 'POST', 'DELETE'), { minLength: 1, maxLength: 3 });
const capArb = fc.integer({ min: 0, max: 200_000_000 });
const rootArb = fc.record(
  {
    endpoints: endpointsArb,
    methods: methodsArb,
    cap: capArb,
    ttl: fc.integer({ min: 61, max: 172_800 }),
    budgets: fc.uniqueArray(fc.constantFrom('user:u1', 'user:u2'), { maxLength: 2 }),
    label: fc.string({ maxLength: 8 }),
  },
  { requiredKeys: ['endpoints', 'ttl'] },
);
const narrowArb = fc.record(
  { endpoints: endpointsArb, methods: methodsArb, cap: capArb, exp: fc.integer({ min: -100, max: 200_000 }), label: fc.string({ maxLength: 8 }) },
  { requiredKeys: [] },
);

function rootBlock(r: { endpoints: string[]; ttl: number; [k: string]: unknown }) {
  const { ttl, ...rest } = r;
  return { mk: MK, kv: 1, id: id(), mode: 'test', vendor: 'stripe', ...rest, iat: T0, exp: T0 + ttl };
}
const narrowBlock = (c: { exp?: number; [k: string]: unknown }) => ({ id: id(), ...c, ...(c.exp === undefined ? {} : { exp: T0 + c.exp }) });

type Mutation =
  | { kind: 'append'; caveats: Record<string, unknown> }
  | { kind: 'remove'; at: number }
  | { kind: 'swap'; a: number; b: number }
  | { kind: 'flip'; at: number; char: string }
  | { kind: 'truncate'; keep: number };
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  narrowArb.map((caveats) => ({ kind: 'append' as const, caveats })),
  fc.nat(20).map((at) => ({ kind: 'remove' as const, at })),
  fc.tuple(fc.nat(20), fc.nat(20)).map(([a, b]) => ({ kind: 'swap' as const, a, b })),
  fc.tuple(fc.nat(4000), fc.constantFrom('A', 'b', '0', '_', '-', '.', '=', 'z')).map(([at, char]) => ({ kind: 'flip' as const, at, char })),
  fc.nat(20).map((keep) => ({ kind: 'truncate' as const, keep })),
);

/** What a holder of `token` (and nothing else) can do to it. */
function mutate(token: string, m: Mutation): string {
  const head = token.slice(0, 'vk_test_m1.'.length);
  const parts = token.slice(head.length).split('.');
  const sig = parts.pop()!;
  switch (m.kind) {
    case 'append':
      return append(token, narrowBlock(m.caveats));
    case 'remove':
      if (parts.length < 2) return token;
      parts.splice(m.at % parts.length, 1);
      return `${head}${parts.join('.')}.${sig}`;
    case 'swap': {
      const a = m.a % parts.length;
      const b = m.b % parts.length;
      [parts[a], parts[b]] = [parts[b]!, parts[a]!];
      return `${head}${parts.join('.')}.${sig}`;
    }
    case 'flip': {
      const at = m.at % token.length;
      return token.slice(0, at) + m.char + token.slice(at + 1);
    }
    case 'truncate':
      return `${head}${parts.slice(0, Math.max(1, m.keep % (parts.length + 1))).join('.')}.${sig}`;
  }
}

describe('minted tokens: properties', () => {
  it('no sequence of appends, removals, reorderings or byte flips yields wider rights than the chain allows', () => {
    let forgedAccepted = 0;
    let forgedRefused = 0;
    fc.assert(
      fc.property(rootArb, fc.array(narrowArb, { maxLength: 3 }), fc.array(mutationArb, { minLength: 1, maxLength: 5 }), (root, narrows, mutations) => {
        let token = sign([rootBlock(root)]);
        for (const c of narrows) token = append(token, narrowBlock(c));
        const original = verify(token);
        fc.pre(original.ok);
        const keys = ok(original);
        const held = keys[keys.length - 1]!;
        let forged = token;
        for (const m of mutations) forged = mutate(forged, m);
        const v = verify(forged);
        if (!v.ok) {
          forgedRefused++;
          return;
        }
        if (forged !== token) forgedAccepted++;
        const got = v.keys[v.keys.length - 1]!;
        // Accepted only as the held key itself or a descendant of it: every key of the original
        // chain is in the new one, at the same place, with the same token.
        expect(v.keys.slice(0, keys.length).map((k) => k.tokenHash)).toEqual(keys.map((k) => k.tokenHash));
        expect(got.vendor).toBe(held.vendor);
        expect(got.mode).toBe(held.mode);
        expect(capLe(got.dailyCapMicros, held.dailyCapMicros)).toBe(true);
        expect(got.expiresAt).toBeLessThanOrEqual(held.expiresAt);
        expect(subset(allowedSet(got), allowedSet(held))).toBe(true);
        expect(got.budgetIds).toEqual(held.budgetIds);
        // Its label is the held key's, or begins with it: a holder cannot relabel its lineage.
        if (got.tokenHash !== held.tokenHash && got.label !== held.label) expect(got.label.startsWith(`${held.label}/`)).toBe(true);
        // It is the held key, or its spend counts against the held key and everything above it.
        if (got.tokenHash === held.tokenHash) expect(got).toEqual(held);
        else expect(got.ancestorIds!.slice(0, keys.length)).toEqual([...held.ancestorIds!, held.id]);
      }),
      { numRuns: 400 },
    );
    // Both outcomes were exercised: the property is not held by refusing everything.
    expect(forgedAccepted).toBeGreaterThan(20);
    expect(forgedRefused).toBeGreaterThan(20);
  });

  it("a minted key never has more than its minting key's policy, whatever its caveats claim", () => {
    const policyArb = fc.record({
      endpoints: endpointsArb,
      maxCap: fc.option(capArb, { nil: null }),
      maxTtl: fc.integer({ min: 60, max: 86_400 }),
    });
    fc.assert(
      fc.property(policyArb, rootArb, fc.array(narrowArb, { maxLength: 2 }), (pol, root, narrows) => {
        const p = policy({ endpoints: compile(...pol.endpoints), maxCapMicros: pol.maxCap, maxTtlSeconds: pol.maxTtl, allowedBudgets: ['user:*'] });
        let token = sign([rootBlock(root)]);
        for (const c of narrows) token = append(token, narrowBlock(c));
        const v = verify(token, p, (T0 + 1) * 1000);
        if (!v.ok) return;
        const ceiling = new Set(REQUESTS.filter(([m, s]) => isEndpointAllowed(p.endpoints, m, s)).map(([m, s]) => `${m} /${s.join('/')}`));
        for (const k of v.keys) {
          expect(capLe(k.dailyCapMicros, pol.maxCap)).toBe(true);
          expect(k.expiresAt).toBeLessThanOrEqual((T0 + pol.maxTtl) * 1000);
          expect(subset(allowedSet(k), ceiling)).toBe(true);
          expect(k.vendor).toBe('stripe');
        }
      }),
      { numRuns: 400 },
    );
  });

  it('a test minting key never yields a live key, however the token is labelled', () => {
    fc.assert(
      fc.property(rootArb, fc.constantFrom('test', 'live'), fc.constantFrom('test', 'live'), (root, claimed, prefix) => {
        const token = sign([{ ...rootBlock(root), mode: claimed }], prefix);
        const v = verify(token);
        if (v.ok) {
          expect(v.keys.every((k) => k.mode === 'test')).toBe(true);
          expect([claimed, prefix]).toEqual(['test', 'test']);
        }
      }),
    );
    expect(verify(sign([{ ...rootBlock({ endpoints: ['/v1/refunds'], ttl: 100 }) }]), policy({ mode: 'live' }))).toMatchObject({ ok: false, code: 'invalid_key' });
  });
});

describe('minted tokens: caveats the verifier refuses', () => {
  const base = () => rootBlock({ endpoints: ['/v1/payment_intents'], ttl: 600 });
  it.each([
    ['an unknown caveat', { ...base(), refunds: 1 }],
    ['a float cap', { ...base(), cap: 1.5 }],
    ['a negative cap', { ...base(), cap: -1 }],
    ['a string cap', { ...base(), cap: '100' }],
    ['no endpoints', { ...base(), endpoints: [] }],
    ['a bad pattern', { ...base(), endpoints: ['/v1/../x'] }],
    ['an unknown method', { ...base(), methods: ['BREW'] }],
    ['another vendor', { ...base(), vendor: 'twilio' }],
    ['an id of another shape', { ...base(), id: 'key_123' }],
    ['a budget outside the policy', { ...base(), budgets: ['team:x'] }],
    ['exp before iat', { ...base(), exp: T0 - 1 }],
    ['iat in the future', { ...base(), iat: T0 + 3600, exp: T0 + 3700 }],
    ['no iat', { ...base(), iat: undefined }],
    ['metadata that is not strings', { ...base(), metadata: { n: 1 } }],
    ['an escape sequence in the label', { ...base(), label: 'ops\u001b[2Khealthcheck' }],
    ['a C1 control in the label', { ...base(), label: 'ops\u009b2K' }],
    ['a bidi override in the label', { ...base(), label: 'ops\u202ekcehc' }],
    ['a control character in a metadata value', { ...base(), metadata: { user: 'u42\r\nfake: line' } }],
    ['a label over 200 characters', { ...base(), label: 'x'.repeat(201) }],
  ])('%s', (_name, block) => {
    expect(verify(sign([JSON.parse(JSON.stringify(block))]))).toMatchObject({ ok: false, code: 'invalid_key' });
  });

  it('refuses a narrowing that tries to change the vendor, mode or budgets', () => {
    const root = sign([base()]);
    for (const extra of [{ vendor: 'twilio' }, { mode: 'live' }, { budgets: ['user:u1'] }, { mk: MK }]) {
      expect(verify(append(root, { id: id(), ...extra }))).toMatchObject({ ok: false, code: 'invalid_key' });
    }
  });

  it('a narrowed key\'s label is its parent\'s, a slash and its own; control characters fail the token', () => {
    const root = sign([{ ...base(), label: 'flask-backend' }]);
    const agent = append(root, { id: id(), label: 'ops-healthcheck (system)' });
    const tool = append(agent, { id: id(), label: 'refund' });
    expect(ok(verify(tool)).map((k) => k.label)).toEqual(['flask-backend', 'flask-backend/ops-healthcheck (system)', 'flask-backend/ops-healthcheck (system)/refund']);
    // An unlabelled parent still shows its narrowed key as narrowed.
    expect(ok(verify(append(sign([base()]), { id: id(), label: 'x' })))[1]!.label).toBe('/x');
    for (const bad of ['a\u001b]0;title\u0007', 'a\u0085', 'a\u2066b', 'a\u007f']) {
      expect(verify(append(root, { id: id(), label: bad }))).toMatchObject({ ok: false, code: 'invalid_key' });
      expect(verify(append(root, { id: id(), metadata: { note: bad } }))).toMatchObject({ ok: false, code: 'invalid_key' });
    }
  });

  it('refuses a block that is not a JSON object', () => {
    expect(verify(sign(['[1,2]']))).toMatchObject({ ok: false, code: 'invalid_key' });
    expect(verify(append(sign([base()]), '[1,2]'))).toEqual({ ok: false, code: 'invalid_key', reason: 'block 1 is not a JSON object' });
    expect(verify(append(sign([base()]), 'not json'))).toEqual({ ok: false, code: 'invalid_key', reason: 'block 1 is not a JSON object' });
  });
});
