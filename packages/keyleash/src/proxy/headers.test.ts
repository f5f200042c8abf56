import { describe, expect, it } from 'vitest';
import { refusedHeader, upstreamRequestHeaders } from './headers.js';

describe('upstreamRequestHeaders', () => {
  const send = (incoming: Record<string, string | string[]>, forward: string[]) =>
    upstreamRequestHeaders(incoming, { authorization: 'Bearer real' }, 'application/json', 2, 'req_1', [], forward);

  it('forwards only allowlisted names and prefixes', () => {
    const out = send(
      { 'x-stainless-os': 'Linux', 'x-stainless-lang': 'js', 'openai-beta': 'v2', 'x-original-url': '/admin', 'user-agent': 'ua', accept: '*/*' },
      ['accept', 'user-agent', 'openai-beta', 'x-stainless-*'],
    );
    expect(Object.keys(out).sort()).toEqual([
      'accept', 'accept-encoding', 'authorization', 'content-length', 'content-type', 'openai-beta', 'user-agent', 'x-keyleash-request-id', 'x-stainless-lang', 'x-stainless-os',
    ]);
  });

  it('never forwards credentials, framing or proxy headers, even when allowlisted', () => {
    const out = send(
      { authorization: 'Bearer vk', cookie: 'a=b', host: 'evil', 'x-forwarded-for': '1.2.3.4', 'content-length': '999', 'x-http-method-override': 'DELETE', x_custom: 'u' },
      ['authorization', 'cookie', 'host', 'x-forwarded-for', 'content-length', 'x-http-method-override', 'x_custom', 'x-*'],
    );
    expect(out.authorization).toBe('Bearer real');
    expect(out.cookie).toBeUndefined();
    expect(out.host).toBeUndefined();
    expect(out['x-forwarded-for']).toBeUndefined();
    expect(out['content-length']).toBe('2');
    expect(out['x-http-method-override']).toBeUndefined();
    expect(out.x_custom).toBeUndefined();
  });
});

describe('refusedHeader', () => {
  const refused = ['stripe-account', 'stripe-context'];
  it.each([
    [['Stripe-Account', 'acct_1'], 'stripe-account'],
    [['STRIPE-CONTEXT', ''], 'stripe-context'],
    [['stripe_account', 'x'], 'stripe-account'],
    [['Accept', '*/*', 'Stripe-Account', 'a', 'Stripe-Account', 'b'], 'stripe-account'],
    [['Stripe-Accounts', 'x', 'X-Stripe-Account', 'y'], null],
  ])('%j → %s', (raw, found) => {
    expect(refusedHeader(raw, refused)).toBe(found);
  });
});
