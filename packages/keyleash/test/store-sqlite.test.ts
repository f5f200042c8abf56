import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStoreConformance } from '../src/store/conformance.js';
import { SqliteStore } from '../src/store/sqlite/index.js';

runStoreConformance({
  name: 'sqlite (file)',
  async create() {
    const dir = mkdtempSync(join(tmpdir(), 'keyleash-store-'));
    const path = join(dir, 'keyleash.sqlite');
    let current = new SqliteStore({ path });
    return {
      store: current,
      async reopen() {
        await current.close();
        current = new SqliteStore({ path });
        return current;
      },
      async cleanup() {
        await current.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
});
