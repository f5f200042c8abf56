import { compileEndpoints, type EndpointPattern } from '../policy/endpoints.js';
import type { KeyRecord } from '../store/store.js';

export interface CachedKey {
  readonly record: KeyRecord;
  readonly patterns: readonly EndpointPattern[];
}

/**
 * Keys by token hash, least recently used evicted first. Caching is safe because every call's
 * reservation re-checks revocation and expiry in the store; the cache only saves the lookup.
 */
export class KeyCache {
  private readonly map = new Map<string, CachedKey>();
  hits = 0;
  misses = 0;

  constructor(private readonly capacity: number) {}

  get(hash: string): CachedKey | undefined {
    const v = this.map.get(hash);
    if (v) {
      this.hits++;
      // Re-insert to mark as most recently used.
      this.map.delete(hash);
      this.map.set(hash, v);
    } else {
      this.misses++;
    }
    return v;
  }

  put(record: KeyRecord): CachedKey {
    const compiled = compileEndpoints(record.allowedEndpoints);
    // A stored key always has valid patterns (checked at issuance); an invalid one allows nothing.
    const entry: CachedKey = { record, patterns: Array.isArray(compiled) ? compiled : [] };
    if (this.capacity === 0) return entry;
    this.map.delete(record.tokenHash);
    this.map.set(record.tokenHash, entry);
    if (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value;
      if (oldest !== undefined) this.map.delete(oldest);
    }
    return entry;
  }

  /** Marks a cached key revoked, so this replica refuses it without waiting for the store. */
  markRevoked(hash: string, at: number): void {
    const v = this.map.get(hash);
    if (v) this.map.set(hash, { record: { ...v.record, revokedAt: at }, patterns: v.patterns });
  }

  get size(): number {
    return this.map.size;
  }
}
