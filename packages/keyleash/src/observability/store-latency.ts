import { performance } from 'node:perf_hooks';
import type { Store } from '../store/store.js';

// Store latency by operation. The store is wrapped once, where the gateway is wired, so every
// caller (proxy, control API, reconciler) is timed without any of them knowing. Only methods
// that return a promise are timed; on SQLite that time is the synchronous work the call did on
// the event loop, which is exactly what a stalled proxy would want explained.

export type StoreTimer = (op: string, seconds: number, ok: boolean) => void;

/** The same store, with each call's duration reported to `observe` (set later, once metrics exist). */
export function timedStore<S extends Store>(store: S): { store: S; observe(fn: StoreTimer): void } {
  let observe: StoreTimer | null = null;
  // By function, not by name: a method replaced on the store (a test's fault injection) is timed as itself.
  const wrapped = new WeakMap<object, unknown>();
  const proxy = new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function' || prop === 'constructor') return value;
      let fn = wrapped.get(value);
      if (!fn) {
        const op = String(prop);
        const method = value as (...args: unknown[]) => unknown;
        fn = function timed(...args: unknown[]) {
          if (!observe) return method.apply(target, args);
          const started = performance.now();
          const out = method.apply(target, args);
          if (!(out instanceof Promise)) return out;
          const report = observe;
          return out.then(
            (v) => {
              report(op, (performance.now() - started) / 1000, true);
              return v;
            },
            (e: unknown) => {
              report(op, (performance.now() - started) / 1000, false);
              throw e;
            },
          );
        };
        wrapped.set(value, fn);
      }
      return fn;
    },
  });
  return { store: proxy, observe: (fn) => (observe = fn) };
}
