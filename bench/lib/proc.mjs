// Starts each server in its own process and waits for its `READY {json}` line.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');

const running = new Set();

export async function startServer(name, { env = {}, nodeArgs = [], timeoutMs = 120_000 } = {}) {
  const started = performance.now();
  const proc = spawn(process.execPath, [...nodeArgs, join(BENCH_DIR, 'servers', `${name}.mjs`)], {
    cwd: BENCH_DIR,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  let stderr = '';
  proc.stderr.on('data', (c) => {
    stderr += c;
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
  });
  const info = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start in ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    proc.stdout.on('data', (c) => {
      out += c;
      const m = /READY (.*)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        const v = m[1].trim();
        resolve(v.startsWith('{') ? JSON.parse(v) : { proxyUrl: v });
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before it was ready: ${stderr.slice(-2000)}`));
    });
  });
  const readyMs = performance.now() - started;
  return {
    ...info,
    name,
    pid: proc.pid,
    readyMs,
    stderr: () => stderr,
    /** Resident set size of the server process (the primary; with workers see rssTree). */
    rssBytes: () => rssOf(info.pid ?? proc.pid),
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 8_000);
      await exited;
      clearTimeout(t);
      running.delete(proc);
    },
  };
}

export function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Stops every server this process started (on a crash of the run itself). */
export function killAll() {
  for (const p of running) if (p.exitCode === null) p.kill('SIGKILL');
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
