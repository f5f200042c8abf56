import { channel } from 'node:diagnostics_channel';
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ErrorCode } from '../errors.js';
import type { Settlement } from '../store/store.js';
import type { ResponseMeter } from '../vendors/vendor.js';
import type { EchoFilter, EchoPatterns } from './leaks.js';

// The proxy's step channel (see handler.ts), looked up by name to avoid an import cycle.
const stepChannel = channel('keyleash:proxy:step');

// The response side of a metered call (a vendor whose real cost is read from its answer):
// a small JSON answer is read, settled, then sent; a stream is passed on as it comes, its output
// counted, its reservation extended as it grows, and cut cleanly when the cap says no.

/** Largest answer held back to be settled before the caller sees it; past this the estimate stands. */
export const BUFFER_LIMIT = 8 * 1024 * 1024;

/** What the call's audit record says, written in the same commit as its settlement. */
export interface CallAudit {
  status: number;
  code: ErrorCode | null;
  cost: number;
}

export type Extend = (need: number, wanted: number) => Promise<{ ok: true; added: number } | { ok: false; code: ErrorCode }>;

export interface MeteredCall {
  res: ServerResponse;
  status: number;
  headers: OutgoingHttpHeaders;
  body: Readable;
  meter: ResponseMeter;
  /** Masks echoes of the real secret in what the caller sees (the meter reads the vendor's own bytes). */
  echoes: EchoPatterns;
  /** What is reserved for the call. */
  estimate: number;
  settle(s: Settlement, audit: CallAudit): Promise<void>;
  extend: Extend;
  /** Stops the upstream request (no more reading from the vendor). */
  abort(): void;
}

export interface MeteredOutcome {
  /** What the call was settled at. */
  cost: number;
  /** An error code when keyleash ended the answer itself (cap reached mid-stream), else null. */
  code: ErrorCode | null;
  /** False when the vendor's body broke before the head was sent (the caller gets a 502). */
  delivered: boolean;
}

export async function relayBuffered(c: MeteredCall): Promise<MeteredOutcome> {
  const it = c.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let size = 0;
  let complete = false;
  try {
    while (size <= BUFFER_LIMIT) {
      const r = await it.next();
      if (r.done) {
        complete = true;
        break;
      }
      const out = c.meter.push(r.value);
      chunks.push(out);
      size += out.length;
    }
  } catch {
    // The vendor executed the call but its answer broke: the estimate stands.
    await c.settle({ state: 'unknown' }, { status: 502, code: 'upstream_error', cost: c.estimate });
    return { cost: c.estimate, code: null, delivered: false };
  }
  if (complete) {
    const tail = c.meter.flush();
    if (tail.length) chunks.push(tail);
  }
  const real = complete ? c.meter.result() : undefined;
  const cost = real ?? c.estimate;
  await c.settle({ state: 'settled', micros: cost }, { status: c.status, code: null, cost });

  // The caller sees the vendor's bytes with every echo of the real secret masked.
  const head = Buffer.concat(chunks);
  if (complete) {
    c.res.writeHead(c.status, { ...c.headers, 'content-length': head.length });
    c.res.end(c.echoes.scrub(head));
    return { cost, code: null, delivered: true };
  }
  const filter = c.echoes.stream();
  c.res.writeHead(c.status, c.headers);
  c.res.write(filter.push(head));
  async function* rest(): AsyncGenerator<Buffer> {
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      const out = filter.push(r.value);
      if (out.length) yield out;
    }
    const held = filter.flush();
    if (held.length) yield held;
  }
  try {
    await pipeline(rest(), c.res);
  } catch {
    /* the caller left or the vendor cut the body; the charge stands */
  }
  return { cost, code: null, delivered: true };
}

export async function relayStream(c: MeteredCall): Promise<MeteredOutcome> {
  const { res, meter } = c;
  const filter = c.echoes.stream();
  const headers = { ...c.headers };
  // Events the caller did not ask for may be left out, so the length is no longer the vendor's.
  delete headers['content-length'];
  res.writeHead(c.status, headers);
  res.flushHeaders();

  let reserved = c.estimate;
  let cut: ErrorCode | null = null;
  let broken = false;
  const gone = once(res, 'close').catch(() => undefined);
  // A caller who leaves stops the vendor at once, not at its next chunk.
  res.once('close', () => {
    if (!res.writableFinished) c.abort();
  });
  try {
    // Each event (or, for a meter that cannot split, each chunk) is counted, and must fit what
    // is reserved — extended first — before it is written: a burst of many events in one chunk
    // is cut at the event that passes the cap, not after the whole burst. Events that fit are
    // written together, once per chunk or before waiting on an extension.
    const fits: Buffer[] = [];
    const writeFits = async () => {
      if (fits.length === 0 || res.destroyed) return void (fits.length = 0);
      const out = fits.length === 1 ? fits[0]! : Buffer.concat(fits);
      fits.length = 0;
      // What reaches the caller has echoes of the real secret masked; the meter saw the real bytes.
      const shown = filter.push(out);
      if (shown.length && !res.write(shown)) await Promise.race([once(res, 'drain'), gone]);
      if (out.length && stepChannel.hasSubscribers) stepChannel.publish({ step: 'streaming' });
    };
    reading: for await (const chunk of c.body as AsyncIterable<Buffer>) {
      for (const out of meter.events ? meter.events(chunk) : [meter.push(chunk)]) {
        const counted = meter.counted();
        if (counted > reserved) {
          await writeFits();
          const need = counted - reserved;
          const r = await c.extend(need, need + Math.ceil(c.estimate / 4));
          if (!r.ok) {
            cut = r.code;
            break reading;
          }
          reserved += r.added;
        }
        if (res.destroyed) {
          broken = true;
          break reading;
        }
        fits.push(out);
      }
      await writeFits();
    }
    if (!cut && !broken) {
      const tail = meter.flush();
      const counted = meter.counted();
      if (tail.length && counted > reserved) {
        const r = await c.extend(counted - reserved, counted - reserved);
        if (r.ok) reserved += r.added;
        else cut = r.code;
      }
      const shownTail = cut ? Buffer.alloc(0) : filter.push(tail);
      if (shownTail.length && !res.destroyed) res.write(shownTail);
    }
  } catch {
    // The vendor cut the stream, or the caller left: what was counted is what is known.
    broken = true;
  }
  if (cut || broken) c.abort();
  const held = filter.flush();
  if (held.length && !res.destroyed) res.write(held);
  if (cut && !res.destroyed) {
    const why =
      cut === 'cap_exhausted'
        ? "The key's spend cap is reached; keyleash ended this stream."
        : `keyleash ended this stream (${cut}).`;
    res.write(meter.cutEvent(cut, why));
  }

  // Never under-count: the vendor's own usage when the stream delivered it, else the larger of
  // what is reserved and what was counted passing by. Settled (with the audit record) before the
  // stream's end reaches the caller.
  const real = cut || broken ? undefined : meter.result();
  const counted = meter.counted();
  let cost: number;
  if (real !== undefined) {
    cost = real;
    await c.settle({ state: 'settled', micros: real }, { status: c.status, code: cut, cost });
  } else if (counted > reserved) {
    cost = counted;
    await c.settle({ state: 'settled', micros: counted }, { status: c.status, code: cut, cost });
  } else {
    cost = reserved;
    await c.settle({ state: 'unknown' }, { status: c.status, code: cut, cost });
  }
  res.end();
  return { cost, code: cut, delivered: true };
}

/**
 * Relays a vendor body to the caller with echoes masked. Plain listeners rather than
 * stream.pipeline, which costs an AbortController (and a DOMException on every early end) per call.
 * Resolves when the body ended, broke, or the caller left.
 */
export function relayBody(body: Readable, filter: EchoFilter, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    let over = false;
    const done = () => {
      if (over) return;
      over = true;
      body.off('data', onData);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      const out = filter.push(chunk);
      if (out.length && !res.write(out)) {
        body.pause();
        res.once('drain', () => body.resume());
      }
    };
    // A body that broke before the relay began (e.g. while the settlement committed) has no
    // events left to give.
    if (body.errored || (body.destroyed && !body.readableEnded)) {
      res.destroy();
      return done();
    }
    body.on('data', onData);
    body.once('close', () => {
      if (!body.readableEnded) res.destroy();
      done();
    });
    body.once('end', () => {
      const rest = filter.flush();
      res.end(rest.length ? rest : undefined);
      done();
    });
    body.once('error', () => {
      res.destroy();
      done();
    });
    res.once('close', () => {
      if (!body.readableEnded) body.destroy();
      done();
    });
  });
}
