import { randomUUID } from 'node:crypto';
import type { AuditRecord } from '../store/store.js';

// Denials of calls that never authenticated (no key, a bad token, a hostile request) cost the
// caller nothing, so an anonymous flood could fill the audit log. Per source address and window,
// the first `perWindow` are recorded one by one; the rest are only counted, and one summary
// record (code `denials_suppressed`, label `count=<n> address=<address>`) is written for them
// when the window ends.

export const DENIALS_SUPPRESSED = 'denials_suppressed';

export interface DenialAuditOptions {
  perWindow: number;
  windowMs: number;
  /** Addresses followed at once; past it the oldest window is closed early (its summary written). */
  maxTracked?: number;
}

interface Window {
  start: number;
  recorded: number;
  suppressed: number;
}

/** The unit a flood is counted by: the address, or its /64 for IPv6 (one host usually has a /64). */
export function sourceOf(address: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1]!;
  if (!address.includes(':')) return address;
  const [head = '', tail] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

export class DenialAudit {
  private readonly windows = new Map<string, Window>();
  private readonly maxTracked: number;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly write: (record: AuditRecord) => void,
    private readonly now: () => number,
    private readonly opts: DenialAuditOptions,
  ) {
    this.maxTracked = opts.maxTracked ?? 10_000;
  }

  /** True when this denial gets its own record; false when it is only counted into a summary. */
  admit(address: string): boolean {
    const now = this.now();
    const source = sourceOf(address);
    let w = this.windows.get(source);
    if (w && now - w.start >= this.opts.windowMs) {
      this.close(source, w, now);
      w = undefined;
    }
    if (!w) {
      if (this.windows.size >= this.maxTracked) {
        const [oldest, ow] = this.windows.entries().next().value!;
        this.close(oldest, ow, now);
      }
      w = { start: now, recorded: 0, suppressed: 0 };
      this.windows.set(source, w);
      this.schedule();
    }
    if (w.recorded < this.opts.perWindow) {
      w.recorded++;
      return true;
    }
    w.suppressed++;
    return false;
  }

  /** Writes the summaries of windows that have ended; with `all`, of every window. */
  sweep(all = false): void {
    const now = this.now();
    for (const [source, w] of this.windows) if (all || now - w.start >= this.opts.windowMs) this.close(source, w, now);
    if (this.windows.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Writes every pending summary and stops the timer. */
  stop(): void {
    this.sweep(true);
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), Math.max(100, this.opts.windowMs));
    this.timer.unref();
  }

  private close(source: string, w: Window, now: number): void {
    this.windows.delete(source);
    if (w.suppressed === 0) return;
    this.write({
      id: `aud_${randomUUID().replace(/-/g, '')}`,
      tenantId: 'default',
      time: now,
      requestId: `sup_${randomUUID().replace(/-/g, '')}`,
      keyId: null,
      label: `count=${w.suppressed} address=${source}`,
      vendor: null,
      mode: null,
      method: '*',
      path: '*',
      status: 0,
      decision: 'deny',
      code: DENIALS_SUPPRESSED,
      costMicros: 0,
      upstreamLatencyMs: null,
    });
  }
}
