// Failed authentications per client address, as a token bucket: guessing vault keys gets slow
// long before it could matter (tokens carry ~190 random bits), and a misconfigured client that
// hammers with a dead key is told to back off. Only failures are refused: the proxy consults it
// when a token fails to authenticate, so a valid key from the same address (a NAT) still passes.

interface Bucket {
  tokens: number;
  updated: number;
}

export class AuthThrottle {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly burst = 50,
    private readonly perSecond = 10,
    private readonly maxTracked = 100_000,
  ) {}

  /** Seconds to wait before this address may fail again; 0 when it may try now. */
  retryAfter(address: string, now: number): number {
    const b = this.refill(address, now);
    return b && b.tokens < 1 ? Math.ceil((1 - b.tokens) / this.perSecond) : 0;
  }

  recordFailure(address: string, now: number): void {
    let b = this.refill(address, now);
    if (!b) {
      if (this.buckets.size >= this.maxTracked) this.buckets.delete(this.buckets.keys().next().value!);
      b = { tokens: this.burst, updated: now };
      this.buckets.set(address, b);
    }
    b.tokens = Math.max(-this.burst, b.tokens - 1);
  }

  private refill(address: string, now: number): Bucket | undefined {
    const b = this.buckets.get(address);
    if (!b) return undefined;
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.updated) / 1000) * this.perSecond);
    b.updated = now;
    if (b.tokens >= this.burst) this.buckets.delete(address);
    return b;
  }
}
