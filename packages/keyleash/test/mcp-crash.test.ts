import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { ADMIN_TOKEN, freePort, startGatewayProcess } from './harness.js';
import { type McpUpstream, startMcpUpstream, UPSTREAM_TEST_SECRET } from './mcp-upstream.js';

// A real gateway process, killed with SIGKILL while a tools/call is at the upstream MCP server,
// then restarted on the same store: the call's charge is kept, and an audit record written.

for (const backend of await backends('mcp_crash')) {
  describe.skipIf(backend.skip)(`MCP crash safety (${backend.name})`, () => {
    let up: McpUpstream;
    let dir: string;
    let configPath: string;
    let api: string;
    let proxy: string;
    let storeConfig: Record<string, unknown> | null;

    beforeAll(async () => {
      up = await startMcpUpstream();
      dir = mkdtempSync(join(tmpdir(), 'keyleash-mcp-crash-'));
      configPath = join(dir, 'keyleash.yaml');
      const [apiPort, proxyPort] = [await freePort(), await freePort()];
      api = `http://127.0.0.1:${apiPort}`;
      proxy = `http://127.0.0.1:${proxyPort}`;
      storeConfig = backend.store();
      writeFileSync(
        configPath,
        JSON.stringify({
          admin_token: ADMIN_TOKEN,
          listen: { api: { port: apiPort }, proxy: { port: proxyPort } },
          store: storeConfig ?? { path: join(dir, 'store.sqlite') },
          proxy: { stale_reservation_after: '1s' },
          mcp_servers: { stub: { url: up.url, test_secret: UPSTREAM_TEST_SECRET, tools: { hang: { amount: { path: 'amount', currency: 'usd' } } } } },
          log_level: 'warn',
        }),
      );
    });
    afterAll(async () => {
      await up?.close();
      rmSync(dir, { recursive: true, force: true });
      await backend.cleanup(storeConfig);
    });

    const start = (): Promise<ChildProcess> => startGatewayProcess({ config: configPath, readyUrl: `${proxy}/readyz` });
    const admin = async (path: string, body?: unknown) =>
      (await fetch(api + path, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }).then((r) => r.json())) as Record<string, any>;

    it('keeps the charge of a tools/call cut off by SIGKILL, and audits it after restart', async () => {
      let child = await start();
      const key = await admin('/v1/keys', { label: 'crash', vendor: 'mcp:stub', allowed_tools: ['hang'], daily_usd_cap: 10, expires_in: '10m' });
      const client = new Client({ name: 'agent', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${proxy}/mcp/stub`), { requestInit: { headers: { authorization: `Bearer ${key.token}` } } }));
      const arrived = up.arrived('hang');
      const call = client.callTool({ name: 'hang', arguments: { amount: 300 } }).then(
        () => 'answered',
        () => 'cut off',
      );
      await arrived; // the upstream is running it now
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      expect(await call).toBe('cut off');
      await client.close().catch(() => undefined);
      up.release();

      child = await start();
      try {
        // The reservation made before the call went upstream survived the kill.
        expect((await admin(`/v1/keys/${key.id}`)).spend_today_micros).toBe(3_000_000);
        // The reconciler closes it at its estimate and writes the call's audit record.
        let rows: Array<Record<string, unknown>> = [];
        for (let i = 0; i < 100 && !rows.some((r) => r.code === 'outcome_unknown'); i++) {
          await new Promise((r) => setTimeout(r, 200));
          rows = (await admin(`/v1/audit?key_id=${key.id}`)).data;
        }
        expect(rows.find((r) => r.code === 'outcome_unknown')).toMatchObject({ path: '/tools/call/hang', method: 'MCP', cost_micros: 3_000_000, decision: 'allow' });
        expect((await admin(`/v1/keys/${key.id}`)).spend_today_micros).toBe(3_000_000);
        expect(up.calls.filter((c) => c.name === 'hang')).toHaveLength(1);
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
    }, 60_000);
  });
}
