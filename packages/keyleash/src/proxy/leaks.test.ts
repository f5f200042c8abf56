import { describe, expect, it } from 'vitest';
import { AuthThrottle } from './auth-throttle.js';
import { redactSecretEchoes } from './leaks.js';

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
