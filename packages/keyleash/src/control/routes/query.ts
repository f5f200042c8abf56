import { KeyleashError } from '../../errors.js';

export type Query = Record<string, string | string[] | undefined>;

export function one(q: Query, name: string): string | undefined {
  const v = q[name];
  if (Array.isArray(v)) throw new KeyleashError('invalid_request', `${name}: give it once`, { param: name });
  return v === '' ? undefined : v;
}

export function limitParam(q: Query, max = 100, dflt = 20): number {
  const raw = one(q, 'limit');
  if (raw === undefined) return dflt;
  if (!/^[0-9]{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
    throw new KeyleashError('invalid_request', `limit: must be a whole number from 1 to ${max}`, { param: 'limit' });
  }
  return Number(raw);
}

export function enumParam<T extends string>(q: Query, name: string, values: readonly T[]): T | undefined {
  const v = one(q, name);
  if (v === undefined) return undefined;
  if (!(values as readonly string[]).includes(v)) {
    throw new KeyleashError('invalid_request', `${name}: must be one of ${values.join(', ')}`, { param: name });
  }
  return v as T;
}

/** `metadata[user_id]=u42` pairs from the query string. */
export function metadataParam(q: Query): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const name of Object.keys(q)) {
    const m = /^metadata\[([A-Za-z0-9_.:-]{1,40})\]$/.exec(name);
    if (m) out[m[1]!] = one(q, name) ?? '';
    else if (name.startsWith('metadata')) {
      throw new KeyleashError('invalid_request', `${name}: filter metadata as metadata[key]=value`, { param: name });
    }
  }
  return Object.keys(out).length ? out : undefined;
}

/** The request body, which must be a JSON object. */
export function objectBody(body: unknown): unknown {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new KeyleashError('invalid_request', 'body: send a JSON object', { param: 'body' });
  }
  return body;
}
