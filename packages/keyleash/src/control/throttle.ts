// Token buckets for the control API: failed admin-token attempts per client address, and key
// issuance per admin principal. In memory, per process: both are brakes, not accounting.

interface Bucket {
  tokens: number;
  updated: number;
}

export class TokenBuckets<K> {
  private readonly buckets = new Map<K, Bucket>();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    private readonly maxTracked = 100_000,
  ) {}

  /** Takes one token for `key`: 0 when there was one, else the whole seconds until there is. */
  take(key: K, now: number): number {
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.updated) / 1000) * this.perSecond);
      b.updated = now;
    } else {
      // Oldest first: a flood of new addresses forgets the oldest, never grows without bound.
      if (this.buckets.size >= this.maxTracked) this.buckets.delete(this.buckets.keys().next().value!);
      b = { tokens: this.burst, updated: now };
      this.buckets.set(key, b);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perSecond));
  }
}
