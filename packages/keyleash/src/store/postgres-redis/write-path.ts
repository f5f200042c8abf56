// The Postgres ledger's write path: group commit. The reservation rows, and the settlements with
// their audit records, that calls produce while earlier batches are in flight are written
// together: one multi-row statement per table and one commit per batch (synchronous_commit stays
// on, so a resolved write is durable). Each caller's promise resolves with the commit carrying
// its own row; a batch that fails rejects every caller in it, each of which then fails closed as
// it did alone. The exact cross-replica checks stay in Redis (the Lua scripts), one per call,
// auto-pipelined.

interface Entry<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export class Batcher<I, O> {
  private queue: Array<Entry<I, O>> = [];
  private inflight = 0;
  private scheduled = false;

  constructor(
    /** Writes a batch; returns one answer per item, in order. */
    private readonly write: (items: I[]) => Promise<O[]>,
    /** Batches written at once (each on its own connection). */
    private readonly concurrency = 2,
    private readonly maxBatch = 500,
  ) {}

  push(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.scheduled || this.inflight >= this.concurrency) return;
    this.scheduled = true;
    // The rest of this event-loop turn joins the batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (!this.queue.length || this.inflight >= this.concurrency) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.inflight++;
    try {
      const out = await this.write(batch.map((e) => e.item));
      batch.forEach((e, i) => e.resolve(out[i]!));
    } catch (err) {
      for (const e of batch) e.reject(err);
    } finally {
      this.inflight--;
      if (this.queue.length) this.kick();
    }
  }
}
