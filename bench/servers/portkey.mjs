// The peer row: the Portkey AI gateway from npm, started through its own CLI in this process's
// place. Prints `READY {"proxyUrl"}` once its port answers.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { request } from 'undici';

const port = Number(process.env.BENCH_PORT);
const pkg = createRequire(import.meta.url).resolve('@portkey-ai/gateway/package.json');
const child = spawn(process.execPath, [join(dirname(pkg), 'build/start-server.js'), `--port=${port}`, '--headless'], {
  stdio: ['ignore', 'ignore', 'inherit'],
  env: { ...process.env, NODE_ENV: 'production' },
});
child.on('exit', (code) => process.exit(code ?? 0));
process.on('SIGTERM', () => child.kill('SIGTERM'));
for (let i = 0; i < 100; i++) {
  try {
    const r = await request(`http://127.0.0.1:${port}/`);
    await r.body.dump();
    process.stdout.write(`READY ${JSON.stringify({ proxyUrl: `http://127.0.0.1:${port}`, pid: child.pid })}\n`);
    break;
  } catch {
    await new Promise((r) => setTimeout(r, 100));
  }
}
