import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// The README's curl walkthrough, run as written against `keyleash dev` on its documented ports.

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'dist', 'cli', 'main.js');
const README = join(here, '..', '..', '..', 'README.md');

function walkthrough(): string {
  const text = readFileSync(README, 'utf8');
  const m = /<!-- readme-test:start -->\s*```bash\n([\s\S]*?)```\s*<!-- readme-test:end -->/.exec(text);
  if (!m) throw new Error('README walkthrough block not found');
  return m[1]!;
}

describe('README', () => {
  it('starts with the two commands, and its curl walkthrough works as written', async () => {
    const text = readFileSync(README, 'utf8');
    expect(text).toMatch(/```bash\nnpm install && npm start[^\n]*\nnpm test/);

    const dir = mkdtempSync(join(tmpdir(), 'keyleash-readme-'));
    const env = { ...process.env };
    delete env.KEYLEASH_ADMIN_TOKEN;
    const child = spawn(process.execPath, [CLI, 'dev'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c));
    child.stderr.on('data', (c: Buffer) => (out += c));
    try {
      for (let i = 0; !out.includes('keyleash dev is running'); i++) {
        if (child.exitCode !== null || i > 100) throw new Error(`keyleash dev did not start (is port 8080 or 8081 taken?):\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const { stdout } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', walkthrough()], { cwd: dir });
      expect(stdout).toContain('"token":"vk_test_');
      expect(stdout).toContain('"object":"payment_intent"');
      expect(stdout).toContain('"code":"cap_exhausted"');
      expect(stdout).toContain('"spend_today_usd":50');
      expect(stdout).toContain('"status":"revoked"');
      expect(stdout).toContain('"code":"key_revoked"');
      expect(stdout).toContain('"object":"audit_record"');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
