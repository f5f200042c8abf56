import { Transform } from 'node:stream';
import type { Vendor } from '../vendors/vendor.js';

// Vendors sometimes echo the credential they were sent: Stripe's auth errors name part of the
// key ("sk_test_****7890"), a debug header, a WWW-Authenticate challenge or a redirect's Location
// may carry it whole, a JSON body may escape it (`sk\u005ftest…`), a URL percent-encode it. The
// proxy never shows any of it: every echo in every header and body is masked before the caller
// sees it.
//
// An echo is masked with as many `*` as it has bytes, so a streamed body keeps its
// Content-Length and its framing (JSON strings, SSE lines, header syntax) intact; a body is
// never buffered for it. A stream is scrubbed chunk by chunk, holding back only the end of a
// chunk that could begin an echo, until the next chunk says whether it does.

const REDACTED = '[redacted by keyleash]';
const MASK = 0x2a; // '*'
const EMPTY = Buffer.alloc(0);
const PERCENT = Buffer.from('%');
const JSON_U00 = Buffer.from('\\u00');
const JSON_SLASH = Buffer.from('\\/');
const PLUS = Buffer.from('+');

/** Shorter parts of a composite credential are not masked on their own: they would mask ordinary text. */
const MIN_PART = 8;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Replaces the secret, and any token starting with its first characters or masking it, in `text`.
 * For error bodies: vendors' auth errors show a masked key, and a 4xx never legitimately names a
 * prefix of it. Not applied to successful answers, where a public prefix (`sk-`, a Twilio
 * account SID) may be ordinary content.
 */
export function redactSecretEchoes(text: string, secret: string): string {
  if (!secret) return text;
  let out = text.split(secret).join(REDACTED);
  // A masked echo keeps a recognizable head (e.g. "sk_test_") or tail ("…7890") of the secret.
  const head = secret.slice(0, Math.min(8, Math.max(4, Math.floor(secret.length / 3))));
  const tail = secret.slice(-4);
  out = out.replace(new RegExp(`${escapeRegExp(head)}[^\\s"',;]*`, 'g'), REDACTED);
  if (tail.length === 4) out = out.replace(new RegExp(`[*•xX]{3,}${escapeRegExp(tail)}`, 'g'), REDACTED);
  return out;
}

/**
 * The strings a vendor's answer must never show for `secret`, given the headers that carry it
 * upstream (`vendor.authHeaders(secret)`): the secret itself; of a composite `id:secret`
 * credential (Twilio's `AccountSid:AuthToken`, a Basic `user:password`) the part after the
 * first colon alone — the part before it is a public identifier; and a Basic credential's
 * Base64 (standard and URL-safe, unpadded, which also finds it padded). Any other header value
 * contains the secret as it is. A string containing another is left out: masking the shorter
 * masks it.
 */
export function echoNeedles(secret: string, auth: Readonly<Record<string, string>>): string[] {
  const found = new Set<string>();
  const addSecret = (s: string) => {
    if (!s) return;
    found.add(s);
    const colon = s.indexOf(':');
    if (colon >= 0 && s.length - colon - 1 >= MIN_PART) found.add(s.slice(colon + 1));
  };
  addSecret(secret);
  for (const value of Object.values(auth)) {
    const basic = /^basic\s+([A-Za-z0-9+/]+)=*$/i.exec(value.trim());
    if (!basic) continue;
    const b64 = basic[1]!;
    found.add(b64);
    found.add(b64.replace(/\+/g, '-').replace(/\//g, '_'));
    addSecret(Buffer.from(b64, 'base64').toString('utf8'));
  }
  return withoutSupersets([...found]);
}

function withoutSupersets(all: readonly string[]): string[] {
  return [...new Set(all)].filter((n) => !all.some((m) => m !== n && n.includes(m)));
}

export interface Credential {
  secret: string;
  auth: Readonly<Record<string, string>>;
}

// How one byte of a secret may be written in an answer: as itself, as a JSON `\u00XX` escape
// (hex in either case), `\/` for a slash, percent-encoded (either case), `+` for a space. Each
// form is a list of positions, each position the bytes allowed there.
type Form = readonly (readonly number[])[];

const ch = (s: string) => s.charCodeAt(0);

function hexDigit(d: string): number[] {
  return /[a-f]/.test(d) ? [ch(d), ch(d.toUpperCase())] : [ch(d)];
}

/** A byte's two hex digits, either case. */
function hexPair(byte: number): [number[], number[]] {
  const hex = byte.toString(16).padStart(2, '0');
  return [hexDigit(hex[0]!), hexDigit(hex[1]!)];
}

function formsOf(byte: number): Form[] {
  const [hi, lo] = hexPair(byte);
  const forms: Form[] = [[[byte]]];
  if (byte < 0x80) forms.push([[ch('\\')], [ch('u')], [ch('0')], [ch('0')], hi, lo]);
  if (byte === ch('/')) forms.push([[ch('\\')], [ch('/')]]);
  forms.push([[ch('%')], hi, lo]);
  if (byte === ch(' ')) forms.push([[ch('+')]]);
  return forms;
}

/** The longest form above: `\u00XX`. */
const MAX_FORM = 6;

function formRegExp(form: Form): string {
  return form.map((allowed) => `[${allowed.map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}]`).join('');
}

/** True when `data` from `pos` on is used up part-way through the encoding of `needle` (bytes `i` on). */
function endsInside(data: Buffer, pos: number, needle: readonly Form[][], i: number): boolean {
  if (pos === data.length) return true;
  if (i === needle.length) return false; // a whole echo: already masked
  for (const form of needle[i]!) {
    let q = pos;
    let k = 0;
    while (k < form.length && q < data.length && form[k]!.includes(data[q]!)) {
      q++;
      k++;
    }
    if (k === form.length ? endsInside(data, q, needle, i + 1) : q === data.length) return true;
  }
  return false;
}

/** The compiled echo patterns of one secret; shared by every answer sent for it. */
export class EchoPatterns {
  readonly needles: readonly string[];
  private readonly literals: readonly Buffer[];
  private readonly forms: readonly (readonly Form[][])[];
  private readonly re: RegExp;
  /** Bytes that can begin an echo: only windows starting with one are held back. */
  private readonly starts = new Uint8Array(256);
  /** An escape of a byte of some needle: only a chunk with one can hold an escaped echo. */
  private readonly escapeRe: RegExp;
  private readonly slash: boolean;
  private readonly space: boolean;
  /** The most bytes one echo can take. */
  readonly maxLength: number;
  /** Strings the masked-echo rule of error bodies looks for (the secret and its secret parts). */
  private readonly secrets: readonly string[];

  /** `secret` is the one sent on this call; `others` the vendor's other configured credentials (another mode's). */
  constructor(secret: string, auth: Readonly<Record<string, string>>, others: readonly Credential[] = []) {
    const own = echoNeedles(secret, auth);
    this.needles = withoutSupersets([...own, ...others.flatMap((c) => echoNeedles(c.secret, c.auth))]);
    this.secrets = [secret, ...own.filter((n) => secret.includes(n) && n !== secret)];
    this.literals = this.needles.map((n) => Buffer.from(n, 'utf8'));
    this.forms = this.literals.map((bytes) => [...bytes].map(formsOf));
    this.re = new RegExp(
      this.forms.map((needle) => needle.map((forms) => `(?:${forms.map(formRegExp).join('|')})`).join('')).join('|'),
      'g',
    );
    for (const needle of this.forms) for (const form of needle[0] ?? []) for (const b of form[0]!) this.starts[b] = 1;
    this.slash = this.literals.some((l) => l.includes(ch('/')));
    this.space = this.literals.some((l) => l.includes(ch(' ')));
    // Factored as (?:%|\u00)(?:hex pairs): the scan stops only at a `%` or a backslash.
    const pairs = new Set<string>();
    for (const l of this.literals) for (const b of l) pairs.add(formRegExp(hexPair(b)));
    const other = [...(this.slash ? ['\\\\/'] : []), ...(this.space ? ['\\+'] : [])];
    this.escapeRe = new RegExp([`(?:%|\\\\u00)(?:${[...pairs].join('|')})`, ...other].join('|'));
    this.maxLength = MAX_FORM * Math.max(0, ...this.literals.map((l) => l.length));
  }

  /**
   * The cheap check run on every chunk, before any full scan: an echo is either the literal
   * needle, or has at least one escaped byte of a needle (`%XX`, `\u00XX`, `\/`, `+` for a
   * space). Escapes of other bytes (`%20` in a URL, `\u00e9`) do not call for a full scan.
   * Returns the text to scan (the bytes as latin1), or null.
   */
  private candidate(data: Buffer): string | null {
    if (this.literals.length === 0) return null;
    const sure = this.literals.some((l) => data.includes(l)) || (this.slash && data.includes(JSON_SLASH)) || (this.space && data.includes(PLUS));
    if (!sure && !data.includes(PERCENT) && !data.includes(JSON_U00)) return null;
    const text = data.toString('latin1');
    return sure || this.escapeRe.test(text) ? text : null;
  }

  private candidateString(value: string): boolean {
    if (this.literals.length === 0) return false;
    if (this.needles.some((n) => value.includes(n)) || (this.slash && value.includes('\\/')) || (this.space && value.includes('+'))) return true;
    return this.escapeRe.test(value);
  }

  /** [start, end) of every echo in `text` (a latin1 view of bytes, or a header value), overlapping ones too. */
  private ranges(text: string): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const re = this.re;
    re.lastIndex = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      out.push([m.index, m.index + m[0].length]);
      re.lastIndex = m.index + 1;
    }
    return out;
  }

  /** `data` with every whole echo masked; `data` itself (never modified) when there is none. */
  scrub(data: Buffer): Buffer {
    const text = this.candidate(data);
    if (text === null) return data;
    const found = this.ranges(text);
    if (found.length === 0) return data;
    const out = Buffer.from(data);
    for (const [start, end] of found) out.fill(MASK, start, end);
    return out;
  }

  scrubString(value: string): string {
    if (!this.candidateString(value)) return value;
    let out = value;
    for (const [start, end] of this.ranges(value)) out = out.slice(0, start) + '*'.repeat(end - start) + out.slice(end);
    return out;
  }

  /** True when a header name carries an echo (the header is then left out); names arrive lower-cased. */
  hasEcho(name: string): boolean {
    const lower = name.toLowerCase();
    if (this.needles.some((n) => lower.includes(n.toLowerCase()))) return true;
    return this.candidateString(name) && this.ranges(name).length > 0;
  }

  /** An error body: every echo masked, then masked echoes (`sk_test_****7890`) of the secret too. */
  scrubError(body: Buffer): Buffer {
    let text = this.scrub(body).toString('utf8');
    for (const s of this.secrets) text = redactSecretEchoes(text, s);
    return Buffer.from(text, 'utf8');
  }

  /**
   * Where the bytes that may begin an echo still incomplete at the end of `data` start
   * (`data.length` when none): only those wait for the next chunk.
   */
  heldFrom(data: Buffer): number {
    for (let p = Math.max(0, data.length - this.maxLength + 1); p < data.length; p++) {
      if (!this.starts[data[p]!]) continue;
      for (const needle of this.forms) if (endsInside(data, p, needle, 0)) return p;
    }
    return data.length;
  }

  /** A scrubber for one streamed body. */
  stream(): EchoFilter {
    return new EchoFilter(this);
  }

  /** The same, as a stream stage (for `pipeline`). */
  transform(): Transform {
    const f = this.stream();
    return new Transform({
      transform(chunk: Buffer, _enc, done) {
        const out = f.push(chunk);
        done(null, out.length ? out : undefined);
      },
      flush(done) {
        const rest = f.flush();
        done(null, rest.length ? rest : undefined);
      },
    });
  }
}

/** Scrubs one body chunk by chunk; what it returns, concatenated, is the body with every echo masked. */
export class EchoFilter {
  private held: Buffer = EMPTY;
  constructor(private readonly patterns: EchoPatterns) {}

  push(chunk: Buffer): Buffer {
    const data = this.patterns.scrub(this.held.length ? Buffer.concat([this.held, chunk]) : chunk);
    const keep = this.patterns.heldFrom(data);
    this.held = data.subarray(keep);
    return keep === data.length ? data : data.subarray(0, keep);
  }

  /** What was held back, at the end of the body. */
  flush(): Buffer {
    const rest = this.held;
    this.held = EMPTY;
    return rest;
  }
}

const compiled = new WeakMap<object, Map<string, EchoPatterns>>();

/**
 * The echo patterns of a call's secret, and of the vendor's other configured secrets (a test
 * call's answer must not show the live key either); compiled once per vendor and secret.
 */
export function echoPatternsFor(vendor: Pick<Vendor, 'authHeaders' | 'secret'>, secret: string): EchoPatterns {
  let bySecret = compiled.get(vendor);
  if (!bySecret) compiled.set(vendor, (bySecret = new Map()));
  let p = bySecret.get(secret);
  if (!p) {
    const others: Credential[] = [];
    for (const mode of ['test', 'live'] as const) {
      const s = vendor.secret(mode);
      if (s && s !== secret) others.push({ secret: s, auth: vendor.authHeaders(s) });
    }
    bySecret.set(secret, (p = new EchoPatterns(secret, vendor.authHeaders(secret), others)));
  }
  return p;
}
