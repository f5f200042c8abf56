import type { CallTarget } from './vendor.js';

// A vendor's endpoint classification as data: "METHOD /path" patterns, first match wins. `*` is
// exactly one segment, `*.json` one segment with that ending, a trailing `**` one or more;
// METHOD `*` is any method. A call no row
// matches falls to the vendor's unknown_cost policy (under `auto`, a write is refused on a
// capped key), so anything new a vendor adds is denied until it is classified.

export interface Route<T> {
  match: string;
  /** What the row does with a matching call. */
  cls: T;
  /** Why, in words (GET /v1/vendors shows it). */
  cost: string;
}

interface Compiled<T> {
  route: Route<T>;
  method: string;
  segments: string[];
}

export interface RouteTable<T> {
  find(target: CallTarget): Route<T> | undefined;
  readonly routes: readonly Route<T>[];
}

export function routeTable<T>(routes: readonly Route<T>[]): RouteTable<T> {
  const compiled: Compiled<T>[] = routes.map((route) => {
    const [method, path] = route.match.split(' ') as [string, string];
    if (!path?.startsWith('/')) throw new Error(`bad route pattern ${route.match}`);
    return { route, method, segments: path.slice(1).split('/') };
  });
  return {
    routes,
    find(target) {
      for (const c of compiled) {
        if (c.method !== '*' && c.method !== target.method) continue;
        if (matches(c.segments, target.segments)) return c.route;
      }
      return undefined;
    },
  };
}

function matches(pattern: readonly string[], segments: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p === '**') return i === pattern.length - 1 && segments.length > i;
    const s = segments[i];
    if (s === undefined || s === '') return false;
    // `*.json` is any segment with that ending (Twilio's resource URIs end in .json).
    if (p.startsWith('*') && p.length > 1) {
      if (!(s.endsWith(p.slice(1)) && s.length > p.length - 1)) return false;
    } else if (p !== '*' && p !== s) return false;
  }
  return segments.length === pattern.length;
}
