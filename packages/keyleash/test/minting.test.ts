import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, STRIPE_TEST_SECRET, startGateway, type TestGateway } from './harness.js';
import { backends } from './backends.js';
import { mint, mintedId, narrow, narrowToken, parseSecret, signChain } from './mint.js';

// Minting keys and the keys minted and narrowed from them, end to end through the real
// gateway, on both storage backends (docs/minting.md).

const pay = (usd: number) => ({ amount: Math.round(usd * 100), currency: 'usd' });
const MINTING_KEY = {
  label: 'flask-backend',
  vendors: ['stripe'],
  allowed_endpoints: ['/v1/payment_intents', '/v1/payment_intents/*', 'POST /v1/refunds'],
  max_daily_usd_cap: 100,
  max_ttl: '1h',
};

for (const backend of await backends('minting')) {
  describe.skipIf(backend.skip)(`minted keys (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(() => ({
        ...(storeConfig ? { store: storeConfig as never } : {}),
        admin_tokens: [{ token: 'ci_admin_token_0123456789', policy: { max_ttl: '10m', max_daily_usd_cap: 50, vendors: ['stripe'] } }],
        tenants: { acme: { admin_tokens: ['acme_admin_token_0123456789'], vendors: { stripe: { base_url: 'http://127.0.0.1:9', test_secret: 'sk_test_acme_0123456789' } } } },
      }));
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });

    async function mintingKey(body: Record<string, unknown> = {}) {
      const r = await t.admin('POST', '/v1/minting_keys', { ...MINTING_KEY, ...body });
      if (r.status !== 201) throw new Error(`create failed: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body as { id: string; secret: string; [k: string]: any };
    }
    const charge = (token: string, usd: number, path = '/stripe/v1/payment_intents') => t.proxy(path, { token, body: pay(usd) });
    const spend = async (id: string) => (await t.admin('GET', `/v1/keys/${id}`)).body.spend_today_usd as number;

    it('creates a minting key whose secret is shown once; reads and lists it without the secret', async () => {
      const mk = await mintingKey({ budgets: [], allowed_budgets: ['user:*'], metadata: { team: 'billing' } });
      expect(mk).toMatchObject({
        object: 'minting_key',
        label: 'flask-backend',
        mode: 'test',
        vendors: ['stripe'],
        max_daily_usd_cap: 100,
        max_daily_cap_micros: 100_000_000,
        max_ttl: 3600,
        allowed_budgets: ['user:*'],
        status: 'active',
        version: 1,
        revoked_at: null,
      });
      expect(mk.id).toMatch(/^mk_[0-9A-Za-z]{24}$/);
      expect(mk.secret).toMatch(new RegExp(`^klm_test_${mk.id.slice(3)}_1_[A-Za-z0-9_-]{43}$`));
      const got = await t.admin('GET', `/v1/minting_keys/${mk.id}`);
      expect(got.body).toEqual({ ...mk, secret: undefined, versions: got.body.versions });
      expect(got.text).not.toContain(mk.secret);
      const list = await t.admin('GET', '/v1/minting_keys?limit=100');
      expect(list.body.data.map((m: { id: string }) => m.id)).toContain(mk.id);
      expect(list.text).not.toContain(parseSecret(mk.secret).key.toString('base64url'));
      expect((await t.admin('GET', '/v1/minting_keys/mk_000000000000000000000000')).body.code).toBe('minting_key_not_found');
    });

    it('refuses bad minting keys with the field named, and writes nothing', async () => {
      const cases: Array<[Record<string, unknown>, string, number]> = [
        [{ vendors: [] }, 'vendors', 400],
        [{ vendors: ['nope'] }, 'vendors.0', 400],
        [{ allowed_endpoints: ['v1/x'] }, 'allowed_endpoints.0', 400],
        [{ max_daily_usd_cap: -1 }, 'max_daily_usd_cap', 400],
        [{ max_ttl: '2d' }, 'max_ttl', 400],
        [{ budgets: ['user:missing'] }, 'budgets.0', 400],
        [{ allowed_budgets: ['user:*:x*y'] }, 'allowed_budgets.0', 400],
        [{ mode: 'prod' }, 'mode', 400],
        [{ surprise: 1 }, 'surprise', 400],
      ];
      const before = (await t.admin('GET', '/v1/minting_keys?limit=100')).body.data.length;
      for (const [body, param, status] of cases) {
        const r = await t.admin('POST', '/v1/minting_keys', { ...MINTING_KEY, ...body });
        expect([r.status, r.body.param], JSON.stringify(body)).toEqual([status, param]);
      }
      expect((await t.admin('GET', '/v1/minting_keys?limit=100')).body.data.length).toBe(before);
    });

    it('lets a restricted admin token create only minting keys within its own policy', async () => {
      const ci = (body: object) =>
        fetch(`${t.apiUrl}/v1/minting_keys`, {
          method: 'POST',
          headers: { authorization: 'Bearer ci_admin_token_0123456789', 'content-type': 'application/json' },
          body: JSON.stringify({ ...MINTING_KEY, ...body }),
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
      expect(await ci({ max_daily_usd_cap: 100, max_ttl: '10m' })).toMatchObject({ status: 403, body: { code: 'policy_violation', param: 'max_daily_usd_cap' } });
      expect(await ci({ max_daily_usd_cap: null, max_ttl: '10m' })).toMatchObject({ status: 403, body: { param: 'max_daily_usd_cap' } });
      expect(await ci({ max_daily_usd_cap: 50 })).toMatchObject({ status: 403, body: { param: 'max_ttl' } });
      expect((await ci({ max_daily_usd_cap: 50, max_ttl: '10m' })).status).toBe(201);
    });

    it('takes a key minted offline through the proxy: the real secret goes upstream, spend is metered, records appear on first use', async () => {
      const mk = await mintingKey();
      const { token, id } = mint(mk.secret, { cap: 10_000_000, label: 'flask-u42-run7', metadata: { user_id: 'u42' } });
      expect((await t.admin('GET', `/v1/keys/${id}`)).status).toBe(404); // nothing stored until first use
      const seen = t.sandbox.requests.length;
      const r = await charge(token, 4);
      expect(r.status).toBe(200);
      const upstream = t.sandbox.requests.slice(seen);
      expect(upstream).toHaveLength(1);
      expect(upstream[0]!.headers.authorization).toBe(`Bearer ${STRIPE_TEST_SECRET}`);
      expect(JSON.stringify(upstream[0]!.headers)).not.toContain(token.slice(-43));
      const key = (await t.admin('GET', `/v1/keys/${id}`)).body;
      expect(key).toMatchObject({
        id,
        origin: 'minted',
        minting_key_id: mk.id,
        parent_id: null,
        label: 'flask-u42-run7',
        vendor: 'stripe',
        mode: 'test',
        daily_usd_cap: 10,
        metadata: { user_id: 'u42' },
        status: 'active',
        spend_today_usd: 4,
        request_count: 1,
      });
      expect(key.allowed_endpoints).toEqual(['/v1/payment_intents', '/v1/payment_intents/*']);
      expect((await charge(token, 6.01)).body.code).toBe('cap_exhausted');
      expect((await charge(token, 6)).status).toBe(200);
      const listed = await t.admin('GET', `/v1/keys?minting_key=${mk.id}`);
      expect(listed.body.data.map((k: { id: string }) => k.id)).toEqual([id]);
      // The audit log names the minted key like any other.
      await t.gw.audit.flush();
      const audit = await t.admin('GET', `/v1/audit?key_id=${id}`);
      expect(audit.body.data.length).toBeGreaterThanOrEqual(3);
    });

    it('creates a minted key once when its first calls arrive together', async () => {
      const mk = await mintingKey();
      const { token, id } = mint(mk.secret, { cap: 100_000_000 });
      const results = await Promise.all(Array.from({ length: 20 }, () => charge(token, 1)));
      expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
      expect(await spend(id)).toBe(20);
      expect((await t.admin('GET', `/v1/keys?minting_key=${mk.id}`)).body.data).toHaveLength(1);
    });

    it("a narrowed key has its own id and cap, and its spend also counts against every key it came from", async () => {
      const mk = await mintingKey();
      const root = mint(mk.secret, { cap: 20_000_000 });
      const agent = narrow(root.token, mk.id, { cap: 12_000_000, label: 'sub-agent' });
      const tool = narrow(agent.token, mk.id, { cap: 5_000_000, endpoints: ['POST /v1/payment_intents'] });
      const sibling = narrow(root.token, mk.id, { cap: 18_000_000 });
      expect((await charge(tool.token, 4)).status).toBe(200);
      expect(await spend(tool.id)).toBe(4);
      expect(await spend(agent.id)).toBe(4);
      expect(await spend(root.id)).toBe(4);
      const toolKey = (await t.admin('GET', `/v1/keys/${tool.id}`)).body;
      expect(toolKey).toMatchObject({ origin: 'minted', parent_id: agent.id, daily_usd_cap: 5, label: '/sub-agent', allowed_endpoints: ['POST /v1/payment_intents'] });
      // The tool's own cap, then its endpoints.
      expect((await charge(tool.token, 1.01)).body).toMatchObject({ code: 'cap_exhausted', limit: 'key' });
      expect((await t.proxy('/stripe/v1/payment_intents/pi_1', { token: tool.token })).body.code).toBe('endpoint_not_allowed');
      expect((await t.proxy('/stripe/v1/refunds', { token: tool.token, body: pay(1) })).body.code).toBe('endpoint_not_allowed');
      // The sibling shares the root's cap: 4 spent by the tool leaves 16, so 15 fits once and then nothing.
      expect((await charge(sibling.token, 15)).status).toBe(200);
      const refused = await charge(sibling.token, 1.01);
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({ code: 'cap_exhausted', limit: { kind: 'parent_key', id: root.id }, remaining_usd: 1 });
      expect((await charge(agent.token, 1.01)).body.code).toBe('cap_exhausted');
      expect((await charge(root.token, 1)).status).toBe(200);
      expect(await spend(root.id)).toBe(20);
    });

    it('a caveat that claims more than the chain before it changes nothing', async () => {
      const mk = await mintingKey();
      const root = mint(mk.secret, { cap: 2_000_000, endpoints: ['POST /v1/payment_intents'], ttl: 60 });
      // Hand-written blocks the SDKs refuse to write: a higher cap, wider endpoints, a later expiry.
      const wide = narrow(root.token, mk.id, { cap: 1_000_000_000, endpoints: ['/v1/payment_intents', '/v1/payment_intents/*', 'POST /v1/refunds'], exp: Math.floor(Date.now() / 1000) + 86_400 });
      const key = (await charge(wide.token, 2)).status === 200 && (await t.admin('GET', `/v1/keys/${wide.id}`)).body;
      expect(key).toMatchObject({ daily_usd_cap: 2, allowed_endpoints: ['POST /v1/payment_intents'] });
      expect(Date.parse(key.expires_at)).toBeLessThanOrEqual(Date.now() + 61_000);
      expect((await charge(wide.token, 0.01)).body.code).toBe('cap_exhausted');
      expect((await t.proxy('/stripe/v1/refunds', { token: wide.token, body: pay(0.01) })).body.code).toBe('endpoint_not_allowed');
    });

    it("enforces the minting key's policy whatever a minted key's caveats claim", async () => {
      await t.admin('POST', '/v1/budgets', { id: 'user:u42', limit_usd: 3, period: 'day' });
      await t.admin('POST', '/v1/budgets', { id: 'team:mint', limit_usd: 1000, period: 'day' });
      await t.admin('POST', '/v1/budgets', { id: 'other:x', limit_usd: 1000, period: 'day' });
      const mk = await mintingKey({ max_daily_usd_cap: 5, max_ttl: '10m', budgets: ['team:mint'], allowed_budgets: ['user:*'] });
      // Cap above the maximum, no cap at all, endpoints beyond the policy, a TTL beyond max_ttl.
      const greedy = mint(mk.secret, { cap: 1_000_000_000, endpoints: ['/v1/payment_intents', 'POST /v1/transfers', '/v1/refunds'], ttl: 86_400 });
      expect((await charge(greedy.token, 1)).status).toBe(200);
      const key = (await t.admin('GET', `/v1/keys/${greedy.id}`)).body;
      expect(key).toMatchObject({ daily_usd_cap: 5, allowed_endpoints: ['/v1/payment_intents', 'POST /v1/refunds'], budgets: ['team:mint'] });
      expect(Date.parse(key.expires_at) - Date.parse(key.created_at)).toBeLessThanOrEqual(600_000);
      expect((await t.proxy('/stripe/v1/transfers', { token: greedy.token, body: pay(1) })).body.code).toBe('endpoint_not_allowed');
      const uncapped = mint(mk.secret, {});
      expect((await charge(uncapped.token, 5.01)).body.code).toBe('cap_exhausted');
      // Budgets: the minting key's own always; others only within allowed_budgets, and they must exist.
      const user = mint(mk.secret, { budgets: ['user:u42'] });
      expect((await charge(user.token, 3)).status).toBe(200);
      expect((await charge(user.token, 0.01)).body).toMatchObject({ code: 'cap_exhausted', limit: { kind: 'budget', id: 'user:u42' } });
      expect((await t.admin('GET', `/v1/keys/${user.id}`)).body.budgets).toEqual(['team:mint', 'user:u42']);
      expect((await t.admin('GET', '/v1/budgets/team:mint')).body.spend_usd).toBe(4);
      const outside = await charge(mint(mk.secret, { budgets: ['other:x'] }).token, 1);
      expect(outside).toMatchObject({ status: 401, body: { code: 'invalid_key' } });
      expect(outside.body.message).toContain('other:x');
      expect((await charge(mint(mk.secret, { budgets: ['user:nobody'] }).token, 1)).body.code).toBe('invalid_key');
      // Another vendor, another mode.
      expect((await charge(mint(mk.secret, { vendor: 'openai' }).token, 1)).body.code).toBe('invalid_key');
      const s = parseSecret(mk.secret);
      const live = signChain(s.key, 'live', [{ ...JSON.parse(Buffer.from(mint(mk.secret).token.split('.')[1]!, 'base64url').toString()), mode: 'live' }]);
      expect((await charge(live, 1)).body.code).toBe('invalid_key');
      const mislabelled = mint(mk.secret).token.replace(/^vk_test_/, 'vk_live_');
      expect((await charge(mislabelled, 1)).body.code).toBe('invalid_key');
      // An unknown caveat is refused, never ignored.
      expect((await charge(mint(mk.secret, { max_refunds: 1 }).token, 1)).body.code).toBe('invalid_key');
    });

    it('refuses tampered tokens: a changed, removed or reordered block, a foreign signature', async () => {
      const mk = await mintingKey();
      const root = mint(mk.secret, { cap: 1_000_000 });
      const child = narrow(root.token, mk.id, { cap: 500_000 });
      const grandchild = narrow(child.token, mk.id, { endpoints: ['POST /v1/payment_intents'] });
      const [head, ...rest] = grandchild.token.split('.');
      const sig = rest.pop()!;
      const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
      const tampered = [
        [head, flip(rest[0]!, 10), rest[1], rest[2], sig].join('.'), // a byte of block 0
        [head, rest[0], rest[2], rest[1], sig].join('.'), // reordered
        [head, rest[0], rest[2], sig].join('.'), // a middle block removed
        [head, rest[0], rest[1], sig].join('.'), // the last block removed, its signature kept
        [head, ...rest, flip(sig, 5)].join('.'), // the signature
        [head, ...rest, root.token.split('.').pop()].join('.'), // the root's signature on the grandchild's blocks
        [head, rest[0], rest[1], `${rest[2]}=`, sig].join('.'), // another spelling of the same bytes
        narrowToken(root.token, { id: root.id }), // an id used twice in one chain
        narrowToken(root.token, { id: mintedId('mk_000000000000000000000000') }), // another minting key's id
        mint(mk.secret).token.slice(0, -1),
      ];
      for (const token of tampered) {
        const r = await charge(token, 0.01);
        expect([r.status, r.body.code], token).toEqual([401, 'invalid_key']);
      }
      expect((await charge(grandchild.token, 0.5)).status).toBe(200);
      // The parent holders still use their own tokens.
      expect((await charge(child.token, 0.01)).body.code).toBe('cap_exhausted');
      expect((await charge(root.token, 0.5)).status).toBe(200);
    });

    it('refuses an expired minted key, and one minted with a clock far in the future', async () => {
      const mk = await mintingKey();
      const now = Math.floor(Date.now() / 1000);
      expect((await charge(mint(mk.secret, { iat: now - 120, exp: now - 1 }).token, 1)).body.code).toBe('key_expired');
      expect((await charge(mint(mk.secret, { iat: now - 7200, exp: now + 60 }).token, 1)).body.code).toBe('key_expired'); // max_ttl 1h from iat
      expect((await charge(mint(mk.secret, { iat: now + 3600, exp: now + 3700 }).token, 1)).body.code).toBe('invalid_key');
      const root = mint(mk.secret, { ttl: 600 });
      expect((await charge(narrow(root.token, mk.id, { exp: now - 1 }).token, 1)).body.code).toBe('key_expired');
      const short = narrow(root.token, mk.id, { exp: now + 2 });
      expect((await charge(short.token, 1)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 2100));
      expect((await charge(short.token, 1)).body.code).toBe('key_expired');
      expect((await charge(root.token, 1)).status).toBe(200);
    });

    it('revokes a minted key before its first use, and revoking a key stops every key narrowed from it', async () => {
      const mk = await mintingKey();
      const unused = mint(mk.secret);
      const del = await t.admin('DELETE', `/v1/keys/${unused.id}`);
      expect(del.status).toBe(200);
      expect(del.body).toMatchObject({ id: unused.id, origin: 'minted', minting_key_id: mk.id, status: 'revoked', used: false });
      expect((await t.admin('DELETE', `/v1/keys/${unused.id}`)).status).toBe(200);
      expect((await t.admin('GET', `/v1/keys/${unused.id}`)).body).toMatchObject({ status: 'revoked', used: false });
      const seen = t.sandbox.requests.length;
      expect((await charge(unused.token, 1)).body.code).toBe('key_revoked');
      expect((await charge(narrow(unused.token, mk.id).token, 1)).body.code).toBe('key_revoked');
      expect(t.sandbox.requests.length).toBe(seen);
      expect((await t.admin('DELETE', `/v1/keys/${mintedId('mk_000000000000000000000000')}`)).status).toBe(404);

      const root = mint(mk.secret);
      const child = narrow(root.token, mk.id);
      expect((await charge(child.token, 1)).status).toBe(200);
      expect((await t.admin('DELETE', `/v1/keys/${root.id}`)).body.status).toBe('revoked');
      expect((await charge(child.token, 1)).body.code).toBe('key_revoked');
      expect((await t.admin('GET', `/v1/keys/${child.id}`)).body.status).toBe('revoked');
      expect((await charge(narrow(root.token, mk.id).token, 1)).body.code).toBe('key_revoked');
    });

    it('revoking a minting key stops every key minted from it, used or not', async () => {
      const mk = await mintingKey();
      const used = mint(mk.secret);
      const child = narrow(used.token, mk.id);
      const unused = mint(mk.secret);
      expect((await charge(child.token, 1)).status).toBe(200);
      const r = await t.admin('DELETE', `/v1/minting_keys/${mk.id}`);
      expect(r.body).toMatchObject({ id: mk.id, status: 'revoked', keys_revoked: 2 });
      for (const token of [used.token, child.token, unused.token, narrow(unused.token, mk.id).token]) {
        expect((await charge(token, 1)).body.code).toBe('key_revoked');
      }
      expect((await t.admin('DELETE', `/v1/minting_keys/${mk.id}`)).body).toMatchObject({ status: 'revoked', keys_revoked: 0 });
      expect((await t.admin('POST', `/v1/minting_keys/${mk.id}/rotate`, {})).status).toBe(400);
      expect((await t.admin('DELETE', '/v1/minting_keys/mk_000000000000000000000000')).status).toBe(404);
    });

    it('rotates a minting key: old keys work through the grace period, then stop; new ones work', async () => {
      const mk = await mintingKey();
      const before = mint(mk.secret);
      expect((await charge(before.token, 1)).status).toBe(200);
      const rotated = await t.admin('POST', `/v1/minting_keys/${mk.id}/rotate`, { grace_period: '10m' });
      expect(rotated.status).toBe(200);
      expect(rotated.body).toMatchObject({ version: 2, versions: [{ version: 1 }, { version: 2, retires_at: null }] });
      expect(rotated.body.secret).toMatch(new RegExp(`^klm_test_${mk.id.slice(3)}_2_`));
      expect(rotated.body.secret).not.toBe(mk.secret);
      expect(Date.parse(rotated.body.versions[0].retires_at)).toBeGreaterThan(Date.now() + 590_000);
      expect((await charge(before.token, 1)).status).toBe(200);
      expect((await charge(mint(mk.secret).token, 1)).status).toBe(200);
      expect((await charge(mint(rotated.body.secret).token, 1)).status).toBe(200);
      // Grace over: everything of the old secrets stops, used or not.
      const unused = mint(rotated.body.secret);
      const again = await t.admin('POST', `/v1/minting_keys/${mk.id}/rotate`, { grace_period: 0 });
      expect(again.body.version).toBe(3);
      expect((await charge(before.token, 1)).body.code).toBe('key_expired');
      expect((await charge(unused.token, 1)).body.code).toBe('key_expired');
      expect((await charge(mint(mk.secret).token, 1)).body.code).toBe('key_expired');
      expect((await charge(mint(again.body.secret).token, 1)).status).toBe(200);
    });

    it('gives concurrent rotations their own versions, and every new secret works', async () => {
      const mk = await mintingKey();
      const [a, b] = await Promise.all([1, 2].map(() => t.admin('POST', `/v1/minting_keys/${mk.id}/rotate`, { grace_period: '10m' })));
      expect([a!.body.version, b!.body.version].sort()).toEqual([2, 3]);
      for (const secret of [mk.secret, a!.body.secret, b!.body.secret]) expect((await charge(mint(secret).token, 1)).status).toBe(200);
    });

    it("keeps minting keys and their keys to their tenant", async () => {
      const acme = (method: string, path: string, body?: object) =>
        fetch(t.apiUrl + path, {
          method,
          headers: { authorization: 'Bearer acme_admin_token_0123456789', ...(body ? { 'content-type': 'application/json' } : {}) },
          body: body ? JSON.stringify(body) : undefined,
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
      const mk = await mintingKey();
      const key = mint(mk.secret);
      expect((await acme('GET', `/v1/minting_keys/${mk.id}`)).status).toBe(404);
      expect((await acme('DELETE', `/v1/minting_keys/${mk.id}`)).status).toBe(404);
      expect((await acme('POST', `/v1/minting_keys/${mk.id}/rotate`, {})).status).toBe(404);
      expect((await acme('DELETE', `/v1/keys/${key.id}`)).status).toBe(404);
      expect((await charge(key.token, 1)).status).toBe(200);
      const own = await acme('POST', '/v1/minting_keys', MINTING_KEY);
      expect(own.status).toBe(201);
      expect((await acme('GET', '/v1/minting_keys')).body.data.map((m: { id: string }) => m.id)).toEqual([own.body.id]);
      expect((await t.admin('GET', `/v1/minting_keys/${own.body.id}`)).status).toBe(404);
    });

    it('never writes a minting secret or a minted token to the logs or the audit log', async () => {
      const mk = await mintingKey();
      const root = mint(mk.secret);
      const child = narrow(root.token, mk.id);
      await charge(child.token, 1);
      await charge(child.token.slice(0, -2) + 'xx', 1);
      await t.gw.audit.flush();
      const audit = await t.admin('GET', '/v1/audit?limit=1000');
      const haystack = t.logs.join('\n') + audit.text;
      for (const secret of [mk.secret, parseSecret(mk.secret).key.toString('base64url'), root.token.split('.').pop()!, child.token.split('.').pop()!, ADMIN_TOKEN]) {
        expect(haystack).not.toContain(secret);
      }
    });
  });
}
