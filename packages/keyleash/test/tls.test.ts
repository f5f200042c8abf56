import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startGateway, STRIPE_TEST_SECRET, stripeKey, type TestGateway } from './harness.js';

// Both listeners serve HTTPS from certificate files.

let t: TestGateway;
let certDir: string;
let agent: Agent;

beforeAll(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'keyleash-tls-'));
  const cert = join(certDir, 'cert.pem');
  const key = join(certDir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  const tls = { cert_file: cert, key_file: key };
  t = await startGateway((url) => ({
    listen: { api: { host: '127.0.0.1', port: 0, tls }, proxy: { host: '127.0.0.1', port: 0, tls } },
    vendors: { stripe: { base_url: url, test_secret: STRIPE_TEST_SECRET } },
  }));
  agent = new Agent({ connect: { ca: readFileSync(cert) } });
});

afterAll(async () => {
  await t.close();
  await agent.close();
  rmSync(certDir, { recursive: true, force: true });
});

describe('TLS', () => {
  it('serves the control API and the proxy over HTTPS only', async () => {
    expect(t.apiUrl).toMatch(/^https:/);
    expect(t.proxyUrl).toMatch(/^https:/);
    const issued = await undiciFetch(`${t.apiUrl}/v1/keys`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(stripeKey),
    });
    expect(issued.status).toBe(201);
    const key = (await issued.json()) as { token: string };
    const call = await undiciFetch(`${t.proxyUrl}/v1/payment_intents`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${key.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ amount: 100, currency: 'usd' }),
    });
    expect(call.status).toBe(200);
    // Plain HTTP to a TLS listener gets nowhere near the vendor.
    const before = t.sandbox.requests.length;
    const plain = await fetch(t.proxyUrl.replace('https:', 'http:') + '/v1/payment_intents', {
      method: 'POST',
      headers: { authorization: `Bearer ${key.token}` },
    }).then((r) => r.status, () => 0);
    expect(plain).not.toBe(200);
    expect(t.sandbox.requests.length).toBe(before);
  });
});
