import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from './harness.js';

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t.close();
});

const call = (token: string) => t.proxy('/v1/payment_intents', { token, body: { amount: 100, currency: 'usd' } });

describe('audit log', () => {
  it('refuses calls it cannot audit, keeps the records it could not write, and resumes by itself', async () => {
    const key = await t.issue();
    const store = t.gw.store;
    const append = store.appendAudit.bind(store);
    const settle = store.settle.bind(store);
    // A full disk fails every write: the audit batches, and a settlement with its audit record.
    store.appendAudit = async () => {
      throw new Error('disk full');
    };
    store.settle = async () => {
      throw new Error('disk full');
    };
    try {
      expect((await call(key.token)).status).toBe(200);
      for (let i = 0; i < 3; i++) await t.gw.audit.flush();
      const before = t.sandbox.requests.length;
      const refused = await call(key.token);
      expect(refused.status).toBe(503);
      expect(refused.body.code).toBe('store_unavailable');
      expect(refused.body.message).toMatch(/audit/);
      expect(t.sandbox.requests.length).toBe(before);
    } finally {
      store.appendAudit = append;
      store.settle = settle;
    }
    await t.gw.audit.flush();
    expect((await call(key.token)).status).toBe(200);
    await t.gw.audit.flush();
    const records = (await t.admin('GET', `/v1/audit?key_id=${key.id}`)).body.data;
    // Nothing was dropped: the call made before the outage, the refusal, and the call after it.
    expect(records.map((r: { status: number }) => r.status).sort()).toEqual([200, 200, 503]);
  });
});
