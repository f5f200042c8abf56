import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AuditSink } from '../audit/sink.js';
import { callChannel } from '../proxy/handler.js';
import type { KeyCache } from '../proxy/key-cache.js';
import type { AuditRecord } from '../store/store.js';
import type { StoreTimer } from './store-latency.js';

// Prometheus metrics and the per-call log line, fed by the proxy's diagnostics channel. Each
// gateway has its own Registry (tests run many gateways in one process), and the channel is
// process-wide, so a gateway only counts the calls its own audit sink saw: the sink's listeners
// run synchronously just before the channel publishes the same record object.

interface CallMessage {
  record: AuditRecord;
  overheadMs: number;
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const OVERHEAD_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface GatewayMetricsOptions {
  audit: AuditSink;
  cache: KeyCache;
  log: Logger;
  /** Logs one info line per proxied call (request id, key id, decision, cost; never a token). */
  logCalls?: boolean;
  /** Hands over the store's timer (observability/store-latency.ts) to feed keyleash_store_operation_seconds. */
  storeTimer?: (observe: StoreTimer) => void;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly ours = new WeakSet<AuditRecord>();
  private readonly unsubscribeAudit: () => void;
  private readonly onCall: (message: unknown) => void;
  private readonly loopDelay: IntervalHistogram;

  private readonly requests: Counter<'vendor' | 'decision' | 'code' | 'status'>;
  private readonly upstreamLatency: Histogram<'vendor'>;
  private readonly overhead: Histogram<'vendor' | 'decision'>;
  private readonly spend: Counter<'vendor' | 'mode'>;
  readonly apiRequests: Counter<'method' | 'route' | 'status'>;

  constructor(o: GatewayMetricsOptions) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'keyleash_proxy_requests_total',
      help: 'Proxied calls by vendor, decision (allow/deny), keyleash error code ("none" when the vendor answered) and HTTP status.',
      labelNames: ['vendor', 'decision', 'code', 'status'],
      registers,
    });
    this.upstreamLatency = new Histogram({
      name: 'keyleash_upstream_latency_seconds',
      help: 'Time from sending a call to the vendor to its response headers.',
      labelNames: ['vendor'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.overhead = new Histogram({
      name: 'keyleash_gateway_overhead_seconds',
      help: "Time keyleash adds to a call: the whole call minus the vendor's latency.",
      labelNames: ['vendor', 'decision'],
      buckets: OVERHEAD_BUCKETS,
      registers,
    });
    this.spend = new Counter({
      name: 'keyleash_spend_usd_total',
      help: 'USD charged against keys by proxied calls (settled or kept charged).',
      labelNames: ['vendor', 'mode'],
      registers,
    });
    this.apiRequests = new Counter({
      name: 'keyleash_api_requests_total',
      help: 'Control API requests by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    const cache = o.cache;
    new Counter({
      name: 'keyleash_key_cache_hits_total',
      help: 'Key lookups answered by the in-process key cache.',
      registers,
      collect() {
        this.reset();
        this.inc(cache.hits);
      },
    });
    new Counter({
      name: 'keyleash_key_cache_misses_total',
      help: 'Key lookups that went to the store.',
      registers,
      collect() {
        this.reset();
        this.inc(cache.misses);
      },
    });
    new Gauge({
      name: 'keyleash_key_cache_hit_ratio',
      help: 'Key cache hits / lookups since start (0 before the first lookup).',
      registers,
      collect() {
        const total = cache.hits + cache.misses;
        this.set(total === 0 ? 0 : cache.hits / total);
      },
    });
    new Gauge({
      name: 'keyleash_key_cache_entries',
      help: 'Keys held in the key cache.',
      registers,
      collect() {
        this.set(cache.size);
      },
    });
    const audit = o.audit;
    new Gauge({
      name: 'keyleash_audit_queue_depth',
      help: 'Audit records queued and not yet written to the store.',
      registers,
      collect() {
        this.set(audit.depth);
      },
    });

    const storeLatency = new Histogram({
      name: 'keyleash_store_operation_seconds',
      help: 'Time each store operation took, by operation (reserve, settle, appendAudit, getKeyByHash, readRows, …) and outcome (ok/error).',
      labelNames: ['op', 'outcome'],
      buckets: STORE_BUCKETS,
      registers,
    });
    o.storeTimer?.((op, seconds, ok) => storeLatency.observe({ op, outcome: ok ? 'ok' : 'error' }, seconds));

    // Event-loop delay under the names prom-client's default metrics use, so existing dashboards
    // and alerts apply. Each scrape reads the delay since the previous scrape, then starts over.
    // A stalled loop delays every proxied call at once: this is the metric that shows it.
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.loopDelay.enable();
    const loop = this.loopDelay;
    const lag = (name: string, help: string, read: (h: IntervalHistogram) => number, last = false) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          // NaN/Infinity before the first sample: report 0.
          const v = read(loop) / 1e9;
          this.set(Number.isFinite(v) ? v : 0);
          if (last) loop.reset();
        },
      });
    lag('nodejs_eventloop_lag_min_seconds', 'The minimum recorded event loop delay since the last scrape.', (h) => h.min);
    lag('nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays since the last scrape.', (h) => h.mean);
    lag('nodejs_eventloop_lag_stddev_seconds', 'The standard deviation of the recorded event loop delays since the last scrape.', (h) => h.stddev);
    lag('nodejs_eventloop_lag_p50_seconds', 'The 50th percentile of the recorded event loop delays since the last scrape.', (h) => h.percentile(50));
    lag('nodejs_eventloop_lag_p90_seconds', 'The 90th percentile of the recorded event loop delays since the last scrape.', (h) => h.percentile(90));
    lag('nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of the recorded event loop delays since the last scrape.', (h) => h.percentile(99));
    // Registered last, so it is collected last and resets the histogram for the next scrape.
    lag('nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay since the last scrape.', (h) => h.max, true);

    this.unsubscribeAudit = audit.subscribe((r) => this.ours.add(r));
    const log = o.log;
    const logCalls = o.logCalls ?? true;
    const children = new Map<string, { inc(v?: number): void; observe(v: number): void }>();
    const child = (name: string, make: () => unknown) => {
      let c = children.get(name);
      if (!c) children.set(name, (c = make() as { inc(v?: number): void; observe(v: number): void }));
      return c;
    };
    this.onCall = (message: unknown) => {
      const { record: r, overheadMs } = message as CallMessage;
      if (!this.ours.has(r)) return;
      const vendor = r.vendor ?? 'unknown';
      const code = r.code ?? 'none';
      // Label children are looked up once per label set, not per call.
      child(`r|${vendor}|${r.decision}|${code}|${r.status}`, () => this.requests.labels({ vendor, decision: r.decision, code, status: String(r.status) })).inc();
      if (r.upstreamLatencyMs !== null) child(`u|${vendor}`, () => this.upstreamLatency.labels({ vendor })).observe(r.upstreamLatencyMs / 1000);
      child(`o|${vendor}|${r.decision}`, () => this.overhead.labels({ vendor, decision: r.decision })).observe(Math.max(0, overheadMs) / 1000);
      if (r.costMicros > 0) {
        const mode = r.mode ?? 'unknown';
        child(`s|${vendor}|${mode}`, () => this.spend.labels({ vendor, mode })).inc(r.costMicros / 1e6);
      }
      if (logCalls) {
        log.info(
          {
            reqId: r.requestId,
            keyId: r.keyId,
            vendor: r.vendor,
            method: r.method,
            path: r.path,
            status: r.status,
            decision: r.decision,
            code: r.code,
            costMicros: r.costMicros,
            upstreamMs: r.upstreamLatencyMs,
            overheadMs: Math.round(overheadMs * 100) / 100,
          },
          'proxied call',
        );
      }
    };
    callChannel.subscribe(this.onCall);
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  close(): void {
    this.loopDelay.disable();
    callChannel.unsubscribe(this.onCall);
    this.unsubscribeAudit();
  }
}
