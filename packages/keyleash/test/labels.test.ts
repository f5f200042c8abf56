import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { startGateway, stripeKey, type TestGateway } from './harness.js';
import { mint, narrow } from './mint.js';

// Labels that do not lie (issue 21, item 5): a narrowed key's label is its parent's with its own
// appended, so a holder cannot choose how its calls are recorded or escape a label_prefix filter;
// and no label or metadata value with a control character gets in at any entry point.

const pay = { amount: 500, currency: 'usd' };
const HOSTILE: Array<[string, string]> = [
  ['an escape sequence', 'ops\u001b[2K\u001b[1Ghealthcheck'],
  ['a newline', 'ops\nfake line'],
  ['DEL', 'ops\u007f'],
  ['a C1 CSI', 'ops\u009b2K'],
  ['a bidi override', 'ops\u202etxt.exe'],
  ['a bidi isolate', 'ops\u2066x\u2069'],
];

for (const backend of await backends('labels')) {
  describe.skipIf(backend.skip)(`labels and metadata (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;
    let mk: { id: string; secret: string };

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(() => (storeConfig ? { store: storeConfig as never } : {}));
      const r = await t.admin('POST', '/v1/minting_keys', {
        label: 'labels-backend',
        vendors: ['stripe'],
        allowed_endpoints: ['/v1/payment_intents', '/v1/payment_intents/*'],
        max_daily_usd_cap: 100,
      });
      expect(r.status).toBe(201);
      mk = r.body;
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });

    it("a narrowed key's label and audit records show its whole lineage, and label_prefix finds it", async () => {
      const root = mint(mk.secret, { cap: 50_000_000, label: 'lineage-flask-u42' });
      const agent = narrow(root.token, mk.id, { label: 'ops-healthcheck (system)' });
      const tool = narrow(agent.token, mk.id, { label: 'refund' });
      const quiet = narrow(root.token, mk.id, {});
      for (const k of [tool, quiet]) expect((await t.proxy('/stripe/v1/payment_intents', { token: k.token, body: pay })).status).toBe(200);

      expect((await t.admin('GET', `/v1/keys/${agent.id}`)).body.label).toBe('lineage-flask-u42/ops-healthcheck (system)');
      expect((await t.admin('GET', `/v1/keys/${tool.id}`)).body.label).toBe('lineage-flask-u42/ops-healthcheck (system)/refund');
      // A narrowing without a label keeps its parent's.
      expect((await t.admin('GET', `/v1/keys/${quiet.id}`)).body.label).toBe('lineage-flask-u42');

      // The audit log records the call under the lineage, not under the name the agent chose.
      const audit = await t.admin('GET', `/v1/audit?key_id=${tool.id}`);
      expect(audit.body.data).toHaveLength(1);
      expect(audit.body.data[0]).toMatchObject({ key_id: tool.id, label: 'lineage-flask-u42/ops-healthcheck (system)/refund', decision: 'allow' });
      const exported = await t.admin('GET', `/v1/audit/export?format=ndjson&key_id=${tool.id}`);
      expect(exported.text).toContain('"label":"lineage-flask-u42/ops-healthcheck (system)/refund"');

      // A prefix filter on the parent's label catches every descendant; the chosen name alone catches none.
      const listed = await t.admin('GET', '/v1/keys?label_prefix=lineage-flask-u42&limit=100');
      expect(listed.body.data.map((k: { id: string }) => k.id).sort()).toEqual([root.id, agent.id, tool.id, quiet.id].sort());
      expect((await t.admin('GET', `/v1/keys?label_prefix=${encodeURIComponent('ops-healthcheck')}`)).body.data).toEqual([]);
      // So does the kill switch's.
      const dry = await t.admin('POST', '/v1/keys/revoke', { label_prefix: 'lineage-flask-u42', dry_run: true });
      expect(dry.body.matched).toBe(4);
    });

    it.each(HOSTILE)('refuses %s in a label or metadata value at every control-API entry point, naming the field', async (_name, bad) => {
      const before = (await t.admin('GET', '/v1/keys?limit=100')).body.data.length;
      const cases: Array<[string, string, unknown, string]> = [
        ['POST', '/v1/keys', { ...stripeKey, label: bad }, 'label'],
        ['POST', '/v1/keys', { ...stripeKey, metadata: { user_id: bad } }, 'metadata.user_id'],
        ['POST', '/v1/budgets', { id: 'user:hostile', limit_usd: 5, period: 'day', metadata: { owner: bad } }, 'metadata.owner'],
        ['POST', '/v1/minting_keys', { label: bad, vendors: ['stripe'], allowed_endpoints: ['/v1/payment_intents'] }, 'label'],
        ['POST', '/v1/minting_keys', { metadata: { team: bad }, vendors: ['stripe'], allowed_endpoints: ['/v1/payment_intents'] }, 'metadata.team'],
      ];
      for (const [method, path, body, param] of cases) {
        const r = await t.admin(method, path, body);
        expect(r.status, `${path} ${param}`).toBe(400);
        expect(r.body).toMatchObject({ code: 'invalid_request', param });
        expect(r.body.message).toContain('control characters');
        // The refusal does not echo the hostile text back either.
        expect(r.text).not.toContain(bad);
      }
      // A budget's metadata cannot be changed to one either.
      await t.admin('POST', '/v1/budgets', { id: 'user:hostile-patch', limit_usd: 5, period: 'day' });
      const patched = await t.admin('PATCH', '/v1/budgets/user:hostile-patch', { metadata: { owner: bad } });
      expect(patched.status).toBe(400);
      expect(patched.body).toMatchObject({ code: 'invalid_request', param: 'metadata.owner' });
      expect((await t.admin('GET', '/v1/budgets/user:hostile-patch')).body.metadata).toEqual({});
      expect((await t.admin('GET', '/v1/budgets/user:hostile')).status).toBe(404);
      expect((await t.admin('GET', '/v1/keys?limit=100')).body.data.length).toBe(before);
    });

    it.each(HOSTILE)('refuses %s in a minted or narrowed caveat as an invalid key; the vendor sees nothing', async (_name, bad) => {
      const good = mint(mk.secret, { cap: 10_000_000, label: 'caveat-parent' });
      const tokens = [
        mint(mk.secret, { label: bad }),
        mint(mk.secret, { metadata: { user: bad } }),
        narrow(good.token, mk.id, { label: bad }),
        narrow(good.token, mk.id, { metadata: { step: bad } }),
      ];
      const seen = t.sandbox.requests.length;
      for (const k of tokens) {
        const r = await t.proxy('/stripe/v1/payment_intents', { token: k.token, body: pay });
        expect(r.status).toBe(401);
        expect(r.body.code).toBe('invalid_key');
        expect(r.text).not.toContain(bad);
        expect((await t.admin('GET', `/v1/keys/${k.id}`)).status).toBe(404);
      }
      expect(t.sandbox.requests.length).toBe(seen);
    });
  });
}
