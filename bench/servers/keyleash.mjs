// keyleash as the system under test, in its own process(es). BENCH_CONFIG is a keyleash config
// (JSON); BENCH_WORKERS > 1 runs that many processes (node:cluster) on the same ports, sharing the
// store (Postgres+Redis, or one SQLite file). Prints `READY {"apiUrl","proxyUrl","startupMs"}`
// where startupMs counts from this process's start to the proxy listening.
import cluster from 'node:cluster';
import { performance } from 'node:perf_hooks';
import { createGateway, parseConfig } from '../../packages/keyleash/dist/index.js';
import { openStore } from '../../packages/keyleash/dist/gateway.js';
import { createLogger } from '../../packages/keyleash/dist/log.js';

const config = parseConfig(JSON.parse(process.env.BENCH_CONFIG));
const workers = Number(process.env.BENCH_WORKERS ?? 1);
const say = (o) => {
  const msg = `READY ${JSON.stringify(o)}\n`;
  if (cluster.isWorker) process.send?.(msg);
  else process.stdout.write(msg);
};

async function serve() {
  const log = createLogger(config.log_level, process.stderr);
  const store = await openStore(config, log);
  const gw = createGateway(config, { store, logger: log });
  const { apiUrl, proxyUrl } = await gw.listen();
  say({ apiUrl, proxyUrl, startupMs: Math.round(performance.now()), pid: process.pid });
  let closing = false;
  process.on('SIGTERM', async () => {
    if (closing) return;
    closing = true;
    gw.proxy.closeAllConnections();
    await gw.close().catch(() => {});
    process.exit(0); // a clean exit writes the --cpu-prof profile
  });
}

if (workers > 1 && cluster.isPrimary) {
  // Migrate once, before the workers race to do it.
  const store = await openStore(config);
  await store.close();
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('message', (m) => {
      if (++ready === workers) process.stdout.write(m);
    });
  }
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w.process.kill('SIGTERM');
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    });
    setTimeout(() => process.exit(0), 5_000).unref();
  });
} else {
  await serve();
}
