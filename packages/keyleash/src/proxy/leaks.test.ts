import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AuthThrottle } from './auth-throttle.js';
import { echoNeedles, EchoPatterns, echoPatternsFor, redactSecretEchoes } from './leaks.js';

const SECRET = 'sk_test_51Habcdefghijklmnop1234567890';

describe('redactSecretEchoes', () => {
  it.each([
    ['the whole secret', `Invalid API Key provided: ${SECRET}`],
    ['a masked echo with head and tail', 'Invalid API Key provided: sk_test_****************7890'],
    ['a head-only prefix', 'key sk_test_51Hab... is invalid'],
    ['a tail behind a mask', 'key ending ************7890 is invalid'],
    ['inside JSON', JSON.stringify({ error: { message: `Invalid API Key provided: ${SECRET.slice(0, 12)}***` } })],
  ])('removes %s', (_name, text) => {
    const out = redactSecretEchoes(text, SECRET);
    expect(out).toContain('[redacted by keyleash]');
    expect(out).not.toContain('7890');
    expect(out).not.toContain('sk_test_');
  });

  it('leaves text without any echo alone', () => {
    const text = '{"error":{"message":"No such payment_intent: pi_123"}}';
    expect(redactSecretEchoes(text, SECRET)).toBe(text);
  });
});

const TWILIO_SID = 'AC' + '0a'.repeat(16);
const TWILIO_TOKEN = 'twiliotesttoken0123456789abcdef0';
const TWILIO_PAIR = `${TWILIO_SID}:${TWILIO_TOKEN}`;
const basic = (pair: string) => ({ authorization: `Basic ${Buffer.from(pair).toString('base64')}` });
const b64 = (s: string) => Buffer.from(s).toString('base64').replace(/=+$/, '');

describe('echoNeedles', () => {
  it('is the secret itself for a bearer or API-key header', () => {
    expect(echoNeedles(SECRET, { authorization: `Bearer ${SECRET}` })).toEqual([SECRET]);
    expect(echoNeedles(SECRET, { 'x-api-key': SECRET })).toEqual([SECRET]);
  });

  it("is Twilio's auth token alone and its Basic credential, never the public account SID", () => {
    const needles = echoNeedles(TWILIO_PAIR, basic(TWILIO_PAIR));
    expect(needles).toContain(TWILIO_TOKEN);
    expect(needles).toContain(b64(TWILIO_PAIR));
    expect(needles.some((n) => n.includes(TWILIO_SID))).toBe(false); // the pair is masked through its token
  });

  it('covers a Basic credential built from a configured username, and its URL-safe Base64', () => {
    const secret = 'p4ss/w0rd+with?slashes>>';
    const pair = `api:${secret}`;
    const needles = echoNeedles(secret, basic(pair));
    expect(needles).toContain(secret);
    const std = b64(pair);
    expect(needles).toContain(std);
    expect(needles).toContain(std.replace(/\+/g, '-').replace(/\//g, '_'));
  });
});

// How a vendor might write one byte of the secret.
function encodeByte(c: string, how: number): string {
  const hex = c.charCodeAt(0).toString(16).padStart(2, '0');
  switch (how % 6) {
    case 1:
      return `\\u00${hex}`;
    case 2:
      return `\\u00${hex.toUpperCase()}`;
    case 3:
      return `%${hex.toUpperCase()}`;
    case 4:
      return `%${hex}`;
    case 5:
      return c === '/' ? '\\/' : c === ' ' ? '+' : c;
    default:
      return c;
  }
}

/** `text` cut at `cuts` (positions, any order), fed through one stream filter. */
function streamed(p: EchoPatterns, text: string, cuts: number[]): string {
  const bytes = Buffer.from(text, 'latin1');
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const f = p.stream();
  const out: Buffer[] = [];
  let from = 0;
  for (const to of [...at, bytes.length]) {
    out.push(f.push(bytes.subarray(from, to)));
    from = to;
  }
  out.push(f.flush());
  return Buffer.concat(out).toString('latin1');
}

describe('EchoPatterns', () => {
  const cases = [
    { name: 'stripe', secret: SECRET, auth: { authorization: `Bearer ${SECRET}` } },
    { name: 'twilio', secret: TWILIO_PAIR, auth: basic(TWILIO_PAIR) },
    { name: 'basic with slashes', secret: 'p4ss/w0rd+wi th?', auth: basic('api:p4ss/w0rd+wi th?') },
  ];
  const noise = fc.oneof(
    fc.string({ unit: 'binary-ascii', maxLength: 40 }),
    fc.constantFrom('\\u00', '\\u005', '%', '%5', '\\', '\\/', '+', 'sk_test_', 'sk_test_51Habcdef', '\\u0073k', 'AC0a', '%2B', '\\n'),
  );

  for (const c of cases) {
    const p = new EchoPatterns(c.secret, c.auth);
    const needles = echoNeedles(c.secret, c.auth);

    it(`masks every echo of the ${c.name} secret in any encoding, split at any chunk boundary`, () => {
      fc.assert(
        fc.property(
          fc.array(noise, { maxLength: 6 }).map((a) => a.join('')),
          fc.array(noise, { maxLength: 6 }).map((a) => a.join('')),
          fc.nat({ max: needles.length - 1 }),
          fc.array(fc.nat({ max: 5 }), { minLength: 200, maxLength: 200 }),
          fc.array(fc.nat(), { maxLength: 8 }),
          (before, after, which, hows, cuts) => {
            const needle = needles[which]!;
            const echo = [...needle].map((ch, i) => encodeByte(ch, hows[i % hows.length]!)).join('');
            const text = before + echo + after;
            const out = streamed(p, text, cuts);
            expect(out.length).toBe(text.length);
            expect(out.slice(before.length, before.length + echo.length)).toBe('*'.repeat(echo.length));
            for (let i = 0; i < text.length; i++) if (out[i] !== text[i]) expect(out[i]).toBe('*');
            expect(out).toBe(p.scrub(Buffer.from(text, 'latin1')).toString('latin1'));
            for (const n of needles) expect(out).not.toContain(n);
          },
        ),
        { numRuns: 300 },
      );
    });

    it(`leaves text without an echo of the ${c.name} secret byte for byte, however it is cut`, () => {
      // Noise includes proper prefixes of encoded echoes, which the filter holds back and then releases.
      const partial = fc
        .tuple(fc.nat({ max: needles.length - 1 }), fc.nat(), fc.array(fc.nat({ max: 5 }), { minLength: 1, maxLength: 50 }))
        .map(([which, len, hows]) => {
          const needle = needles[which]!;
          const cut = len % needle.length;
          return [...needle.slice(0, cut)].map((ch, i) => encodeByte(ch, hows[i % hows.length]!)).join('');
        });
      fc.assert(
        fc.property(fc.array(fc.oneof(noise, partial), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 10 }), (parts, cuts) => {
          const text = parts.join(' ');
          expect(streamed(p, text, cuts)).toBe(text);
          expect(p.scrub(Buffer.from(text, 'latin1')).toString('latin1')).toBe(text);
        }),
        { numRuns: 300 },
      );
    });
  }

  it('hands back the very chunk, uncopied, when it has no echo, escapes and near misses included', () => {
    const p = new EchoPatterns(SECRET, { authorization: `Bearer ${SECRET}` });
    for (const text of [
      '{"id":"pi_123","object":"payment_intent","amount":2000}\n',
      '{"url":"https:\\/\\/x.test\\/a%20b","name":"caf\\u00e9","note":"sk_test_ keys","pct":"%5F"}\n',
    ]) {
      const chunk = Buffer.from(text);
      expect(p.scrub(chunk)).toBe(chunk);
      expect(p.stream().push(chunk)).toBe(chunk);
    }
  });

  it("compiles once per vendor and secret, and masks the vendor's other configured secret too", () => {
    const LIVE = 'sk_live_51Hzyxwvutsrqponm0987654321';
    const vendor = { authHeaders: (s: string) => ({ authorization: `Bearer ${s}` }), secret: (m: string) => (m === 'live' ? LIVE : SECRET) };
    const p = echoPatternsFor(vendor, SECRET);
    expect(echoPatternsFor(vendor, SECRET)).toBe(p);
    expect(p.scrub(Buffer.from(`a ${LIVE.replace(/_/g, '%5f')} b`)).toString()).toBe(`a ${'*'.repeat(LIVE.length + 4)} b`);
  });

  it('holds back only the bytes that may begin an echo, and never the vendor chunk it was given', () => {
    const p = new EchoPatterns(SECRET, { authorization: `Bearer ${SECRET}` });
    const f = p.stream();
    const chunk = Buffer.from('data: {"text":"key sk_te');
    const first = f.push(chunk);
    expect(first.toString()).toBe('data: {"text":"key ');
    expect(f.push(Buffer.from(SECRET.slice(5) + '"}\n\n')).toString()).toBe('*'.repeat(SECRET.length) + '"}\n\n');
    expect(chunk.toString()).toBe('data: {"text":"key sk_te');
    expect(f.flush().length).toBe(0);
  });

  it('masks header values and finds echoes in header names', () => {
    const p = new EchoPatterns(TWILIO_PAIR, basic(TWILIO_PAIR));
    expect(p.scrubString(`Basic realm="x", token="${TWILIO_TOKEN}"`)).toBe(`Basic realm="x", token="${'*'.repeat(TWILIO_TOKEN.length)}"`);
    expect(p.scrubString(`https://example.test/cb?auth=${encodeURIComponent(b64(TWILIO_PAIR))}%3D`)).not.toContain(b64(TWILIO_PAIR).slice(0, 20));
    expect(p.hasEcho(`x-debug-${TWILIO_TOKEN}`)).toBe(true);
    expect(p.hasEcho(`x-debug-${TWILIO_TOKEN.toUpperCase()}`.toLowerCase())).toBe(true);
    expect(new EchoPatterns(SECRET, {}).hasEcho(`x-${SECRET.toLowerCase()}`)).toBe(true);
    expect(p.hasEcho('x-debug-auth')).toBe(false);
    expect(p.scrubString(`account ${TWILIO_SID}`)).toBe(`account ${TWILIO_SID}`);
  });

  it('keeps the masked-echo rule for error bodies only', () => {
    const p = new EchoPatterns(SECRET, { authorization: `Bearer ${SECRET}` });
    const masked = Buffer.from('{"error":{"message":"Invalid API Key provided: sk_test_****7890"}}');
    expect(p.scrubError(masked).toString()).not.toContain('7890');
    expect(p.scrub(masked)).toBe(masked);
    const escaped = Buffer.from(`{"error":{"message":"Invalid API Key provided: ${SECRET.replace(/_/g, '\\u005f')}"}}`);
    expect(p.scrubError(escaped).toString()).not.toMatch(/7890|51Hab/);
  });
});

describe('AuthThrottle', () => {
  it('lets a burst through, then asks to wait, then recovers', () => {
    const t = new AuthThrottle(5, 10);
    for (let i = 0; i < 5; i++) {
      expect(t.retryAfter('1.2.3.4', 0)).toBe(0);
      t.recordFailure('1.2.3.4', 0);
    }
    expect(t.retryAfter('1.2.3.4', 0)).toBeGreaterThan(0);
    expect(t.retryAfter('5.6.7.8', 0)).toBe(0);
    expect(t.retryAfter('1.2.3.4', 1000)).toBe(0);
  });
});
