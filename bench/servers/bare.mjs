// The baseline: a bare Node.js pass-through (node:http + undici Pool, no checks at all) with the
// same pool settings as keyleash's proxy. Prints `READY <url>`. BENCH_UPSTREAM is the upstream.
import cluster from 'node:cluster';
import { createServer } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Pool } from 'undici';

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host']);
const upstream = process.env.BENCH_UPSTREAM;
const workers = Number(process.env.BENCH_WORKERS ?? 1);
const port = Number(process.env.BENCH_PORT ?? 0);

function strip(h) {
  const out = {};
  for (const k in h) if (!HOP.has(k)) out[k] = h[k];
  return out;
}

function serve() {
  const pool = new Pool(upstream, { connections: 128, keepAliveTimeout: 4_000 });
  const server = createServer(async (req, res) => {
    try {
      const up = await pool.request({
        method: req.method,
        path: req.url,
        headers: strip(req.headers),
        body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
      });
      res.writeHead(up.statusCode, strip(up.headers));
      await pipeline(up.body, res);
    } catch {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 65_000;
  server.listen(port, '127.0.0.1', () => {
    const msg = `READY ${JSON.stringify({ proxyUrl: `http://127.0.0.1:${server.address().port}` })}\n`;
    if (cluster.isWorker) process.send?.(msg);
    else process.stdout.write(msg);
  });
  process.on('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

if (workers > 1 && cluster.isPrimary) {
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('message', (m) => {
      if (++ready === workers) process.stdout.write(m);
    });
  }
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 300);
  });
} else {
  serve();
}
