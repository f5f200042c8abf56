#!/usr/bin/env node
// Starts a real keyleash gateway (from the built package, packages/keyleash/dist) on ephemeral
// ports, with the local Stripe sandbox as its Stripe upstream, for the Python and Go client tests.
//
// Prints one JSON line on stdout:
//   {"api_url", "proxy_url", "admin_token", "stripe_test_secret", "sandbox_url", "inspect_url"}
// then runs until stdin closes (so it dies with the test process) or SIGTERM/SIGINT.
// `GET {inspect_url}/requests` answers what the sandbox received (what Stripe would have seen):
//   [{method, path, authorization, form}, …]
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let pkg;
try {
  pkg = await import('keyleash');
} catch (err) {
  process.stderr.write(`gateway.mjs: cannot load the keyleash package (run \`npm run build -w packages/keyleash\` first): ${err.message}\n`);
  process.exit(2);
}
const { createGateway, createStripeSandbox, createTwilioSandbox, parseConfig } = pkg;

const ADMIN_TOKEN = 'clients_test_admin_token_0123456789';
const STRIPE_TEST_SECRET = 'sk_test_clients_secret_1234567890';

const TWILIO = { accountSid: `AC${'3d'.repeat(16)}`, authToken: 'clientstwiliotesttoken0123456789' };

const sandbox = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
const sandboxUrl = await sandbox.listen();
const twilio = createTwilioSandbox({ accounts: [TWILIO] });
const twilioUrl = await twilio.listen();
const dir = mkdtempSync(join(tmpdir(), 'keyleash-clients-'));
const gw = createGateway(
  parseConfig({
    admin_token: ADMIN_TOKEN,
    listen: { api: { host: '127.0.0.1', port: 0 }, proxy: { host: '127.0.0.1', port: 0 } },
    store: { path: join(dir, 'keyleash.sqlite') },
    vendors: {
      stripe: { base_url: sandboxUrl, test_secret: STRIPE_TEST_SECRET },
      twilio: { base_url: twilioUrl, test_account_sid: TWILIO.accountSid, test_auth_token: TWILIO.authToken },
    },
    log_level: process.env.KEYLEASH_LOG_LEVEL ?? 'silent',
  }),
);
const { apiUrl, proxyUrl } = await gw.listen();

const inspect = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/requests') {
    const body = sandbox.requests.map((r) => ({ method: r.method, path: r.path, authorization: r.headers.authorization ?? null, form: r.form }));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
    return;
  }
  res.writeHead(404).end();
});
await new Promise((r) => inspect.listen(0, '127.0.0.1', r));

process.stdout.write(
  JSON.stringify({
    api_url: apiUrl,
    proxy_url: proxyUrl,
    admin_token: ADMIN_TOKEN,
    stripe_test_secret: STRIPE_TEST_SECRET,
    sandbox_url: sandboxUrl,
    twilio_account_sid: TWILIO.accountSid,
    inspect_url: `http://127.0.0.1:${inspect.address().port}`,
  }) + '\n',
);

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  inspect.close();
  await gw.close().catch(() => {});
  await sandbox.close().catch(() => {});
  await twilio.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();
