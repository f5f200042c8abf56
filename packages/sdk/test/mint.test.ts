import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { appendBlock, decodeMintedToken, Minter, MintError, narrowKey, usdToMicros } from '../src/index.js';

// Minting and narrowing offline: the shared test vectors, then what the SDK checks before a
// token ever reaches the gateway.

const V = JSON.parse(readFileSync(new URL('../../../docs/minting-vectors.json', import.meta.url), 'utf8')) as {
  secret: string;
  secret_bytes_hex: string;
  minting_key_id: string;
  mint: Array<{ block: string; token: string; id: string }>;
  narrow: Array<{ parent: string; block: string; token: string; id: string }>;
  malformed: string[];
};
const NOW = 1796083200_000;

/** The chain recomputed by hand from the vector secret: what the gateway checks. */
function chainOk(token: string): boolean {
  const parts = token.slice('vk_test_m1.'.length).split('.');
  const sig = parts.pop()!;
  let k = createHmac('sha256', Buffer.from(V.secret_bytes_hex, 'hex')).update(parts[0]!).digest();
  for (const p of parts.slice(1)) k = createHmac('sha256', k).update(p).digest();
  return k.toString('base64url') === sig;
}

describe('minted tokens: the shared test vectors', () => {
  it('signs each exact block text into the exact token', () => {
    const m = new Minter(V.secret);
    expect([m.mintingKeyId, m.mode, m.version]).toEqual([V.minting_key_id, 'test', 1]);
    for (const v of V.mint) expect(m.sign(v.block)).toBe(v.token);
  });

  it('narrows each parent with the exact block into the exact token', () => {
    for (const v of V.narrow) expect(appendBlock(v.parent, v.block)).toBe(v.token);
  });

  it('decodes a chain into its blocks, and refuses what is not one', () => {
    const last = V.narrow[V.narrow.length - 1]!;
    expect(decodeMintedToken(last.token)).toEqual({
      mode: 'test',
      blocks: [JSON.parse(V.mint[0]!.block), ...V.narrow.map((n) => JSON.parse(n.block))],
    });
    for (const bad of V.malformed) expect(() => decodeMintedToken(bad)).toThrow(MintError);
  });
});

describe('Minter.mint', () => {
  const minter = new Minter(V.secret, { now: () => NOW });

  it('writes block 0 with every caveat and a fresh id, signed by the chain', () => {
    const k = minter.mint({
      vendor: 'stripe',
      allowedEndpoints: ['/v1/payment_intents', 'POST /v1/refunds'],
      methods: ['POST'],
      dailyUsdCap: '12.345678',
      expiresIn: '5m',
      label: 'flask-u42-run7',
      metadata: { user_id: 'u42' },
      budgets: ['user:u42'],
    });
    expect(k).toMatchObject({
      object: 'vault_key',
      origin: 'minted',
      vendor: 'stripe',
      mode: 'test',
      daily_usd_cap: 12.345678,
      daily_cap_micros: 12_345_678,
      expires_at: new Date(NOW + 300_000).toISOString(),
      created_at: new Date(NOW).toISOString(),
      minting_key_id: V.minting_key_id,
      parent_id: null,
    });
    expect(k.id).toMatch(/^mkey_M1nt1ngKeyTestVector0001_[0-9A-Za-z]{24}$/);
    expect(chainOk(k.token)).toBe(true);
    expect(decodeMintedToken(k.token).blocks).toEqual([
      {
        mk: V.minting_key_id,
        kv: 1,
        id: k.id,
        mode: 'test',
        vendor: 'stripe',
        endpoints: ['/v1/payment_intents', 'POST /v1/refunds'],
        iat: NOW / 1000,
        exp: NOW / 1000 + 300,
        cap: 12_345_678,
        methods: ['POST'],
        label: 'flask-u42-run7',
        metadata: { user_id: 'u42' },
        budgets: ['user:u42'],
      },
    ]);
  });

  it('gives every key its own id, uniform over base62', () => {
    const ids = new Set<string>();
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const id = minter.mint({ vendor: 'stripe', allowedEndpoints: ['/v1/x'] }).id;
      ids.add(id);
      for (const c of id.slice(-24)) seen.add(c);
    }
    expect(ids.size).toBe(2000);
    expect(seen.size).toBe(62);
  });

  it('defaults to 15 minutes and no cap of its own', () => {
    const k = minter.mint({ vendor: 'stripe', allowedEndpoints: ['/v1/x'] });
    expect(k.expires_at).toBe(new Date(NOW + 900_000).toISOString());
    expect(k.daily_usd_cap).toBeNull();
    expect('cap' in decodeMintedToken(k.token).blocks[0]!).toBe(false);
  });

  it.each([
    [{ vendor: '' }, 'vendor'],
    [{ allowedEndpoints: [] }, 'allowedEndpoints'],
    [{ allowedEndpoints: ['v1/x'] }, 'allowedEndpoints.0'],
    [{ allowedEndpoints: ['FETCH /v1/x'] }, 'allowedEndpoints.0'],
    [{ allowedEndpoints: ['/v1/../x'] }, 'allowedEndpoints.0'],
    [{ allowedEndpoints: ['/v1/x?y=1'] }, 'allowedEndpoints.0'],
    [{ allowedEndpoints: ['/v1/x%2F'] }, 'allowedEndpoints.0'],
    [{ allowedEndpoints: ['/v1//x'] }, 'allowedEndpoints.0'],
    [{ allowedEndpoints: ['/v1/x*'] }, 'allowedEndpoints.0'],
    [{ allowedEndpoints: ['/v1/x', 5] }, 'allowedEndpoints.1'],
    [{ dailyUsdCap: -1 }, 'dailyUsdCap'],
    [{ dailyUsdCap: 0.0000001 }, 'dailyUsdCap'],
    [{ dailyUsdCap: '1e3' }, 'dailyUsdCap'],
    [{ dailyUsdCap: 1e12 }, 'dailyUsdCap'],
    [{ expiresIn: '5 minutes' }, 'expiresIn'],
    [{ expiresIn: 0 }, 'expiresIn'],
    [{ label: 'x'.repeat(201) }, 'label'],
    [{ label: 'run\n7' }, 'label'],
    [{ label: 'run\u0000' }, 'label'],
    [{ label: 'run\u007f' }, 'label'],
    [{ label: 'run\u0085' }, 'label'],
    [{ label: 'run\u009f' }, 'label'],
    [{ label: '\u202eevil' }, 'label'],
    [{ label: 'a\u2066b' }, 'label'],
    [{ label: 'a\u2069b' }, 'label'],
    [{ metadata: { k: 'v\u001b[31m' } }, 'metadata.k'],
    [{ metadata: { k: 'v\u202a' } }, 'metadata.k'],
    [{ metadata: { 'k\n': 'v' } }, 'metadata.k\n'],
    [{ metadata: { 'bad key': 'x' } }, 'metadata.bad key'],
    [{ metadata: { k: 1 } }, 'metadata.k'],
    [{ budgets: ['no spaces'] }, 'budgets'],
    [{ methods: ['get'] }, 'methods'],
  ])('refuses %j (%s)', (bad, param) => {
    const p = { vendor: 'stripe', allowedEndpoints: ['/v1/x'], ...bad } as never;
    expect(() => minter.mint(p)).toThrow(expect.objectContaining({ name: 'MintError', param }));
  });

  it('refuses a secret that is not a minting key secret, without echoing it', () => {
    for (const s of ['', 'klm_test_short', V.secret.replace('klm_test_', 'klm_prod_'), `${V.secret}x`, 'vk_test_abc']) {
      try {
        new Minter(s);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(MintError);
        if (s) expect((e as Error).message).not.toContain(s);
      }
    }
  });

  it('converts USD to micro-dollars exactly', () => {
    expect(usdToMicros(0.1)).toBe(100_000);
    expect(usdToMicros(2.01)).toBe(2_010_000);
    expect(usdToMicros('999999999.999999')).toBe(999_999_999_999_999);
    expect(usdToMicros(0)).toBe(0);
  });
});

describe('narrowKey', () => {
  const minter = new Minter(V.secret, { now: () => NOW });
  const parent = minter.mint({
    vendor: 'stripe',
    allowedEndpoints: ['/v1/payment_intents', '/v1/payment_intents/*', 'POST /v1/refunds'],
    dailyUsdCap: 100,
    expiresIn: '10m',
    label: 'run',
    metadata: { user_id: 'u42' },
    budgets: ['user:u42'],
  });
  const at = { now: () => NOW };

  it('appends a block with a new id, without the secret, and keeps the chain valid', () => {
    const child = narrowKey(parent, { allowedEndpoints: ['POST /v1/refunds'], dailyUsdCap: 5, expiresIn: '1m', label: 'refund-tool', metadata: { tool: 'refund' } }, at);
    expect(child).toMatchObject({
      origin: 'minted',
      parent_id: parent.id,
      allowed_endpoints: ['POST /v1/refunds'],
      daily_cap_micros: 5_000_000,
      expires_at: new Date(NOW + 60_000).toISOString(),
      label: 'run/refund-tool',
      metadata: { tool: 'refund', user_id: 'u42' },
      budgets: ['user:u42'],
    });
    expect(child.id).not.toBe(parent.id);
    expect(child.token.startsWith(parent.token.slice(0, parent.token.lastIndexOf('.') + 1))).toBe(true);
    expect(chainOk(child.token)).toBe(true);
    const grandchild = narrowKey(child, { methods: ['POST'] }, at);
    expect(chainOk(grandchild.token)).toBe(true);
    expect(decodeMintedToken(grandchild.token).blocks.map((b) => b.id)).toEqual([parent.id, child.id, grandchild.id]);
  });

  it('reports the label the gateway records: the parent\'s, a "/", then its own', () => {
    const tool = narrowKey(parent, { label: 'refund-tool' }, at);
    expect(tool.label).toBe('run/refund-tool');
    expect(decodeMintedToken(tool.token).blocks[1]!.label).toBe('refund-tool'); // the block holds the child's part only
    const kept = narrowKey(tool, { dailyUsdCap: 1 }, at);
    expect(kept.label).toBe('run/refund-tool');
    expect(narrowKey(kept.token, { label: 'step' }, at).label).toBe('run/refund-tool/step');
    expect(narrowKey(parent, { label: '' }, at).label).toBe('run/');
    const bare = minter.mint({ vendor: 'stripe', allowedEndpoints: ['/v1/x'] });
    expect(narrowKey(bare, { label: 'sub' }, at).label).toBe('/sub');
    expect(narrowKey(bare, {}, at).label).toBe('');
  });

  it('refuses control characters and bidirectional overrides in a narrowing\'s label and metadata', () => {
    for (const bad of ['a\tb', '\u0000', '\u001f', '\u007f', '\u0080', '\u009f', '\u202a', '\u202e', '\u2066', '\u2069']) {
      expect(() => narrowKey(parent, { label: bad }, at)).toThrow(expect.objectContaining({ name: 'MintError', param: 'label' }));
      expect(() => narrowKey(parent, { metadata: { tool: bad } }, at)).toThrow(expect.objectContaining({ name: 'MintError', param: 'metadata.tool' }));
    }
    // Neighbours of the refused ranges stay allowed.
    for (const ok of [' ', '~', '\u00a0', '\u2029', '\u202f', '\u2065', '\u206a', 'é', '😀']) {
      expect(narrowKey(parent, { label: ok, metadata: { tool: ok } }, at).label).toBe(`run/${ok}`);
    }
  });

  it('refuses to widen, and cuts a later expiry to the parent\'s', () => {
    expect(() => narrowKey(parent, { dailyUsdCap: 101 }, at)).toThrow(expect.objectContaining({ param: 'dailyUsdCap' }));
    expect(() => narrowKey(parent, { allowedEndpoints: ['/v1/refunds'] }, at)).toThrow(expect.objectContaining({ param: 'allowedEndpoints.0' }));
    expect(() => narrowKey(parent, { allowedEndpoints: ['GET /v1/customers'] }, at)).toThrow(MintError);
    expect(() => narrowKey(parent, { metadata: { user_id: 'u43' } }, at)).toThrow(expect.objectContaining({ param: 'metadata.user_id' }));
    const methods = narrowKey(parent, { methods: ['GET'] }, at);
    expect(() => narrowKey(methods, { methods: ['GET', 'POST'] }, at)).toThrow(expect.objectContaining({ param: 'methods' }));
    const later = narrowKey(parent, { expiresIn: '1d' }, at);
    expect(later.expires_at).toBe(parent.expires_at);
    expect('exp' in decodeMintedToken(later.token).blocks[1]!).toBe(false);
  });

  it('stops at 16 blocks and 8 KiB', () => {
    let k = parent;
    for (let i = 0; i < 15; i++) k = narrowKey(k, {}, at);
    expect(decodeMintedToken(k.token).blocks).toHaveLength(16);
    expect(() => narrowKey(k, {}, at)).toThrow(MintError);
    const meta = (n: number, len: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v'.repeat(len)]));
    expect(() => minter.mint({ vendor: 'stripe', allowedEndpoints: ['/v1/x'], metadata: meta(50, 500) })).toThrow(expect.objectContaining({ param: 'token' }));
    const big = minter.mint({ vendor: 'stripe', allowedEndpoints: ['/v1/x'], metadata: meta(30, 140) });
    expect(big.token.length).toBeLessThan(8192);
    expect(() => narrowKey(big, { metadata: Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`n${i}`, 'v'.repeat(400)])) }, at)).toThrow(
      expect.objectContaining({ param: 'token' }),
    );
  });
});
