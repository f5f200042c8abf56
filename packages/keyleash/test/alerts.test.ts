import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { signature, verifySignature } from '../src/alerts/service.js';
import { startGateway, stripeKey, type TestGateway } from './harness.js';
import { backends } from './backends.js';

// Signed alert webhooks: delivered to a local receiver (loopback, port 0), verified the way the
// README tells receivers to, retried with backoff, and kept in the delivery log.

const SECRET = 'whsec_test_0123456789abcdef';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  json: any;
}

function receiver() {
  const got: Received[] = [];
  let failNext = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (failNext > 0) {
        failNext--;
        res.writeHead(503).end('down');
        return;
      }
      got.push({ headers: req.headers, body, json: JSON.parse(body) });
      res.writeHead(204).end();
    });
  });
  return {
    got,
    failTimes: (n: number) => void (failNext = n),
    listen: () => new Promise<string>((r) => server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`))),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function until<T>(fn: () => T | undefined, ms = 5_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('webhook signatures', () => {
  it('verifies a good signature and refuses a tampered body, a wrong secret or an old timestamp', () => {
    const body = '{"type":"key.revoked"}';
    const now = 1_800_000_000;
    const header = signature(SECRET, now, body);
    expect(header).toMatch(/^t=1800000000,v1=[0-9a-f]{64}$/);
    expect(verifySignature(SECRET, header, body, now)).toBe(true);
    expect(verifySignature(SECRET, header, body + ' ', now)).toBe(false);
    expect(verifySignature('whsec_other_0123456789abcdef', header, body, now)).toBe(false);
    expect(verifySignature(SECRET, header, body, now + 301)).toBe(false);
  });
});

for (const backend of await backends('alerts')) {
  describe.skipIf(backend.skip)(`alerts (${backend.name})`, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;
    const rx = receiver();

    beforeAll(async () => {
      const url = await rx.listen();
      storeConfig = backend.store();
      t = await startGateway(() => ({
        ...(storeConfig ? { store: storeConfig as never } : {}),
        log_level: 'warn',
        alerts: { webhooks: [{ url, secret: SECRET, events: ['*'] }], max_attempts: 4, retry_base_ms: 50 },
      }));
    });
    afterAll(async () => {
      await t?.close();
      await rx.close();
      await backend.cleanup(storeConfig);
    });
    beforeEach(() => {
      rx.got.length = 0;
    });

    const events = (type: string) => rx.got.filter((r) => r.json.type === type);

    it('signs every delivery: HMAC-SHA256 of "t.body" with the webhook secret', async () => {
      const key = await t.issue(stripeKey);
      await t.admin('DELETE', `/v1/keys/${key.id}`);
      const d = await until(() => events('key.revoked')[0]);
      expect(d.json).toMatchObject({ object: 'event', type: 'key.revoked', tenant: 'default', data: { key_id: key.id, label: 'test-key' } });
      expect(d.headers['keyleash-event']).toBe('key.revoked');
      expect(d.headers['keyleash-delivery']).toMatch(/^dlv_/);
      expect(verifySignature(SECRET, String(d.headers['keyleash-signature']), d.body)).toBe(true);
      // Revoking again is not another event.
      await t.admin('DELETE', `/v1/keys/${key.id}`);
      await new Promise((r) => setTimeout(r, 100));
      expect(events('key.revoked')).toHaveLength(1);
    });

    it('sends kill_switch.used once per bulk revocation with the count', async () => {
      for (let i = 0; i < 3; i++) await t.issue({ ...stripeKey, label: 'ks-run-1' });
      await t.admin('POST', '/v1/keys/revoke', { label_prefix: 'ks-run-' });
      const d = await until(() => events('kill_switch.used')[0]);
      expect(d.json.data).toMatchObject({ matched: 3, revoked: 3, filter: { label_prefix: 'ks-run-' } });
      expect(d.json.data.key_ids).toHaveLength(3);
    });

    it('sends cap.exhausted once, and budget.threshold at 80 % and 100 %', async () => {
      await t.admin('POST', '/v1/budgets', { id: 'user:alerts', limit_usd: 100, period: 'day' });
      const key = await t.issue({ ...stripeKey, daily_usd_cap: 1000, budgets: ['user:alerts'] });
      const pay = (usd: number) => t.proxy('/v1/payment_intents', { token: key.token, body: { amount: usd * 100, currency: 'usd' } });
      expect((await pay(70)).status).toBe(200);
      expect((await pay(15)).status).toBe(200);
      const b80 = await until(() => events('budget.threshold').find((e) => e.json.data.percent === 80));
      expect(b80.json.data).toMatchObject({ budget: 'user:alerts', percent: 80, spend_usd: 85, limit_usd: 100 });
      expect((await pay(15)).status).toBe(200);
      const b100 = await until(() => events('budget.threshold').find((e) => e.json.data.percent === 100));
      expect(b100.json.data).toMatchObject({ budget: 'user:alerts', percent: 100, spend_usd: 100 });
      expect((await pay(1)).status).toBe(429);
      expect((await pay(1)).status).toBe(429);
      const cap = await until(() => events('cap.exhausted')[0]);
      expect(cap.json.data).toMatchObject({ key_id: key.id, limit: { kind: 'budget', id: 'user:alerts' }, cost_usd: 1 });
      await new Promise((r) => setTimeout(r, 100));
      expect(events('cap.exhausted')).toHaveLength(1);
      expect(events('budget.threshold')).toHaveLength(2);
    });

    it('retries a failing receiver with backoff and logs every attempt', async () => {
      rx.failTimes(2);
      const key = await t.issue(stripeKey);
      const started = Date.now();
      await t.admin('DELETE', `/v1/keys/${key.id}`);
      const d = await until(() => events('key.revoked')[0]);
      // 50 ms, then 100 ms: at least 150 ms after the first try.
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      const log = await t.admin('GET', '/v1/alerts/deliveries?limit=50');
      const entry = log.body.data.find((x: { id: string }) => x.id === d.headers['keyleash-delivery']);
      expect(entry).toMatchObject({ object: 'alert_delivery', type: 'key.revoked', state: 'delivered' });
      expect(entry.attempts.map((a: { status: number }) => a.status)).toEqual([503, 503, 204]);
    });
  });
}
