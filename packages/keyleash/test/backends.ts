import { dropSchema, flushPrefix, pgRedisAvailable, TEST_DATABASE_URL, TEST_REDIS_URL, uniqueName } from './pg-redis-env.js';

/** The two storage backends, for gateway tests that must hold on both (see startGateway's store override). */
export interface Backend {
  name: string;
  skip: boolean;
  /** A `store` config section for a fresh database, or null for the harness's SQLite file. */
  store(): Record<string, unknown> | null;
  cleanup(store: Record<string, unknown> | null): Promise<void>;
}

export async function backends(suite: string): Promise<Backend[]> {
  const pg = await pgRedisAvailable(suite);
  return [
    { name: 'sqlite', skip: false, store: () => null, cleanup: async () => {} },
    {
      name: 'postgres+redis',
      skip: !pg,
      store: () => {
        const schema = uniqueName(`kl_${suite}`);
        return { url: TEST_DATABASE_URL, redis_url: TEST_REDIS_URL, schema, redis_prefix: `${schema}:`, pool_size: 10 };
      },
      cleanup: async (s) => {
        if (!s) return;
        await dropSchema(s.schema as string);
        await flushPrefix(s.redis_prefix as string);
      },
    },
  ];
}
