import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { Redis } from 'ioredis';

// Shared by the Postgres + Redis suites: where the services are, whether they answer, and a
// private schema + Redis prefix per run so suites can run side by side and again.

export const TEST_DATABASE_URL = process.env.KEYLEASH_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_REDIS_URL = process.env.KEYLEASH_TEST_REDIS_URL || 'redis://127.0.0.1:6379';

let checked: Promise<boolean> | null = null;

/**
 * True when both answer. When they do not: on CI (CI=true) this throws, so the suite fails
 * rather than silently passing; elsewhere it says loudly that the suite is skipped.
 */
export function pgRedisAvailable(suite: string): Promise<boolean> {
  checked ??= (async () => {
    const problems: string[] = [];
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 2_000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
    } catch (e) {
      problems.push(`Postgres at ${TEST_DATABASE_URL}: ${(e as Error).message}`);
    } finally {
      await client.end().catch(() => {});
    }
    const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await redis.connect();
      await redis.ping();
    } catch (e) {
      problems.push(`Redis at ${TEST_REDIS_URL}: ${(e as Error).message}`);
    } finally {
      redis.disconnect();
    }
    if (!problems.length) return true;
    const msg = `Postgres/Redis unreachable: ${problems.join('; ')}`;
    if (process.env.CI === 'true') throw new Error(`${msg} (CI=true: the Postgres+Redis suites must run)`);
    process.stderr.write(
      `\n${'!'.repeat(78)}\n!! SKIPPING the Postgres+Redis suites (${suite} and others).\n!! ${msg}\n` +
        `!! Set KEYLEASH_TEST_DATABASE_URL / KEYLEASH_TEST_REDIS_URL, or run with CI=true to make this a failure.\n` +
        `${'!'.repeat(78)}\n\n`,
    );
    return false;
  })();
  return checked;
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** Deletes every Redis key under `prefix`: a FLUSHALL that spares suites running beside this one. */
export async function flushPrefix(prefix: string): Promise<number> {
  const redis = new Redis(TEST_REDIS_URL);
  let n = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) n += await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return n;
}

/** A TCP forwarder we can cut and restore, to play a Postgres or Redis outage without touching the service. */
export interface Cable {
  url(original: string): string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function cable(target: string): Promise<Cable> {
  const t = new URL(target);
  const targetPort = Number(t.port);
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = createServer((down) => {
        const up = createConnection(targetPort, t.hostname);
        sockets.add(down).add(up);
        const end = () => {
          down.destroy();
          up.destroy();
          sockets.delete(down);
          sockets.delete(up);
        };
        down.on('error', end).on('close', end);
        up.on('error', end).on('close', end);
        down.pipe(up).pipe(down);
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  const cut = async () => {
    const s = server;
    server = null;
    for (const sock of sockets) sock.destroy();
    sockets.clear();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  };
  await listen();
  return {
    url(original) {
      const u = new URL(original);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    cut,
    restore: listen,
    close: cut,
  };
}
