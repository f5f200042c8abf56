import { StringDecoder } from 'node:string_decoder';

// An incremental Server-Sent Events reader (the WHATWG event-stream format) for meters: it sees
// a response in the chunks the network gives and hands back each complete event together with
// its exact text, so a meter can pass an event on byte for byte, or leave one out.

export interface SseEvent {
  /** The `event:` field, or null when there is none (a plain `data:` message). */
  event: string | null;
  /** The `data:` lines joined by "\n". */
  data: string;
  /** The event's text as received, up to and including the blank line that ends it. */
  raw: string;
  /** True for a block with no field at all (only comments or blank lines). */
  empty: boolean;
}

export class SseReader {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private raw = '';
  private event: string | null = null;
  private data: string[] = [];
  private fields = 0;

  /** Feeds bytes; returns the events they complete. */
  push(chunk: Buffer): SseEvent[] {
    this.pending += this.decoder.write(chunk);
    return this.drain();
  }

  /** The text of an event still incomplete at the end of the stream (passed on as it is). */
  rest(): string {
    const tail = this.raw + this.pending + this.decoder.end();
    this.raw = '';
    this.pending = '';
    return tail;
  }

  private drain(): SseEvent[] {
    const out: SseEvent[] = [];
    const text = this.pending;
    let start = 0;
    for (;;) {
      let i = start;
      while (i < text.length && text[i] !== '\n' && text[i] !== '\r') i++;
      if (i >= text.length) break;
      // A CR at the very end may be the first half of a CRLF still on its way.
      if (text[i] === '\r' && i === text.length - 1) break;
      const eol = text[i] === '\r' && text[i + 1] === '\n' ? 2 : 1;
      const line = text.slice(start, i);
      this.raw += text.slice(start, i + eol);
      start = i + eol;
      if (line === '') {
        out.push({ event: this.event, data: this.data.join('\n'), raw: this.raw, empty: this.fields === 0 });
        this.raw = '';
        this.event = null;
        this.data = [];
        this.fields = 0;
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      this.fields++;
      if (name === 'data') this.data.push(value);
      else if (name === 'event') this.event = value;
    }
    this.pending = text.slice(start);
    return out;
  }
}

/** JSON.parse that answers undefined instead of throwing. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
