import type { Pool } from 'undici';
import type { Price } from '../vendors/vendor.js';

/** Objects read to price a call are small; anything larger is not what was asked for. */
const MAX_LOOKUP_BYTES = 256 * 1024;

/**
 * Prices a call whose cost depends on a vendor object: reads it with the real credential and
 * hands the parsed answer to the vendor's `resolve`. A failed read (error status, timeout, not
 * JSON) resolves with undefined, which a vendor answers with `unknown`: never a guess.
 */
export async function resolveLookup(
  pool: Pool,
  price: Extract<Price, { kind: 'lookup' }>,
  headers: Record<string, string>,
): Promise<Exclude<Price, { kind: 'lookup' }>> {
  let object: unknown;
  try {
    const r = await pool.request({
      path: price.path,
      method: 'GET',
      headers: { ...headers, accept: 'application/json', 'accept-encoding': 'identity' },
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of r.body) {
      size += (c as Buffer).length;
      if (size > MAX_LOOKUP_BYTES) break;
      chunks.push(c as Buffer);
    }
    if (size > MAX_LOOKUP_BYTES) r.body.destroy();
    else if (r.statusCode >= 200 && r.statusCode < 300) object = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    object = undefined;
  }
  const resolved = price.resolve(object);
  // One read per call: a vendor that needs another is not priced.
  return resolved.kind === 'lookup' ? { kind: 'unknown', reason: 'the cost depends on more than one vendor object' } : resolved;
}
