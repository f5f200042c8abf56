import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken, hashToken, newId } from '../src/keys/token.js';
import { safeText } from '../src/cli/output.js';
import { backends } from './backends.js';
import { ADMIN_TOKEN, CLI, startGateway, type TestGateway } from './harness.js';

// Old data is not validated data: a label or metadata value holding a terminal escape sequence,
// written before the gateway refused them, is put straight into the store, and the CLI must show
// it escaped, never send it to the terminal (issue 21, item 5).

// Clears the screen, rewrites the window title, and a C1 CSI and a bidi override for good measure.
const HOSTILE_LABEL = 'ops\u001b[2J\u001b]0;pwned\u0007-\u009b31m-\u202etxt.exe';
const HOSTILE_META = 'u42\u001b[1A\u001b[2Kfake';
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

for (const backend of await backends('cli_escape')) {
  describe.skipIf(backend.skip)(`the CLI prints what the server holds escaped (${backend.name})`, { timeout: 30_000 }, () => {
    let t: TestGateway;
    let storeConfig: Record<string, unknown> | null;
    let key: { id: string; token: string };

    const run = (args: string[]): Promise<Run> =>
      new Promise((resolve, reject) => {
        // FORCE_COLOR-free, NO_COLOR unset: the output a terminal would get (colour is off anyway off a TTY).
        const child = spawn(process.execPath, [CLI, ...args], {
          env: { ...process.env, KEYLEASH_API_URL: t.apiUrl, KEYLEASH_ADMIN_TOKEN: ADMIN_TOKEN },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c));
        child.stderr.on('data', (c: Buffer) => (stderr += c));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });

    beforeAll(async () => {
      storeConfig = backend.store();
      t = await startGateway(() => (storeConfig ? { store: storeConfig as never } : {}));
      const token = generateToken('test');
      const now = Date.now();
      key = { id: newId('key'), token };
      await t.gw.store.createKey({
        id: key.id,
        tenantId: 'default',
        tokenHash: hashToken(token),
        label: HOSTILE_LABEL,
        vendor: 'stripe',
        mode: 'test',
        allowedEndpoints: ['/v1/payment_intents'],
        dailyCapMicros: 100_000_000,
        metadata: { user_id: HOSTILE_META },
        createdAt: now,
        expiresAt: now + 600_000,
        revokedAt: null,
        budgetIds: [],
        rateLimit: null,
      });
      // One call, so the audit log holds a record under the hostile label.
      expect((await t.proxy('/stripe/v1/payment_intents', { token, body: { amount: 100, currency: 'usd' } })).status).toBe(200);
    });
    afterAll(async () => {
      await t?.close();
      await backend.cleanup(storeConfig);
    });

    it('the dashboard serves its text module', async () => {
      const r = await fetch(`${t.apiUrl}/dashboard/text.js`);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/javascript/);
    });

    it('the store really holds the raw label (the API returns it as JSON)', async () => {
      expect((await t.admin('GET', `/v1/keys/${key.id}`)).body.label).toBe(HOSTILE_LABEL);
    });

    it('keys list and keys get show the label and metadata escaped', async () => {
      const list = await run(['keys', 'list']);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toContain(key.id);
      expect(list.stdout).not.toMatch(RAW_CONTROL);
      expect(list.stdout).toContain('ops\\x1b[2J\\x1b]0;pwned\\x07-\\x9b31m-\\u202etxt.exe');
      const got = await run(['keys', 'get', key.id]);
      expect(got.stdout).not.toMatch(RAW_CONTROL);
      expect(got.stdout).toContain(safeText(HOSTILE_LABEL));
      expect(got.stdout).toContain(`user_id=${safeText(HOSTILE_META)}`);
    });

    it('--json keeps the exact value, with every control character JSON-escaped', async () => {
      const list = await run(['keys', 'list', '--json']);
      expect(list.stdout).not.toMatch(RAW_CONTROL);
      expect(list.stdout).toContain('\\u009b');
      expect(list.stdout).toContain('\\u202e');
      const parsed = JSON.parse(list.stdout) as { data: Array<{ id: string; label: string }> };
      expect(parsed.data.find((k) => k.id === key.id)!.label).toBe(HOSTILE_LABEL);
    });

    it('audit tail shows the record escaped', async () => {
      const child = spawn(process.execPath, [CLI, 'audit', 'tail', '--key-id', key.id, '--backfill', '10'], {
        env: { ...process.env, KEYLEASH_API_URL: t.apiUrl, KEYLEASH_ADMIN_TOKEN: ADMIN_TOKEN },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      try {
        for (let i = 0; i < 200 && !stdout.includes('\n'); i++) await new Promise((r) => setTimeout(r, 50));
        expect(stdout).toContain('/v1/payment_intents');
        expect(stdout).toContain(safeText(HOSTILE_LABEL));
        expect(stdout).not.toMatch(RAW_CONTROL);
      } finally {
        child.kill('SIGINT');
      }
      expect(await exited).toBe(0);
    });
  });
}

describe('safeText', () => {
  it('shows every control character and bidi override as an escape, and leaves the rest alone', () => {
    expect(safeText('a\u001b[31mb')).toBe('a\\x1b[31mb');
    expect(safeText('\u0000\t\n\u007f\u0085\u009b')).toBe('\\x00\\x09\\x0a\\x7f\\x85\\x9b');
    expect(safeText('\u202a\u202e\u2066\u2069')).toBe('\\u202a\\u202e\\u2066\\u2069');
    expect(safeText('flask-u42/refund — é 漢字 🙂')).toBe('flask-u42/refund — é 漢字 🙂');
  });
});

describe('the dashboard shows what the server holds escaped', () => {
  it('passes every API answer and audit event through text.js, which makes control characters visible', async () => {
    const web = new URL('../web/', import.meta.url);
    const { shownDeep, shownText } = (await import(new URL('text.js', web).href)) as {
      shownDeep: (v: unknown) => unknown;
      shownText: (s: string) => string;
    };
    expect(shownDeep({ data: [{ label: HOSTILE_LABEL, metadata: { user_id: HOSTILE_META }, n: 1, x: null }] })).toEqual({
      data: [{ label: safeText(HOSTILE_LABEL), metadata: { user_id: safeText(HOSTILE_META) }, n: 1, x: null }],
    });
    // The browser's and the CLI's escapes are the same.
    for (const s of [HOSTILE_LABEL, HOSTILE_META, '\u0000\u0085\u2069 plain é']) expect(shownText(s)).toBe(safeText(s));
    const app = readFileSync(new URL('app.js', web), 'utf8');
    expect(app).toContain("import { shownDeep } from '/dashboard/text.js';");
    expect(app).toContain('data = text ? shownDeep(JSON.parse(text)) : null;');
    expect(app).toContain('buffer.push(shownDeep(JSON.parse(e.data)));');
    expect(app).not.toMatch(/innerHTML|dangerouslySetInnerHTML|insertAdjacentHTML/);
  });
});
