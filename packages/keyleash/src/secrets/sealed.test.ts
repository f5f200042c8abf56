import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generateMasterKey, parseMasterKey, resealText, seal, SealError, unseal, unsealTree } from './sealed.js';

const k1 = parseMasterKey(generateMasterKey());
const k2 = parseMasterKey(generateMasterKey());

describe('sealed secrets', () => {
  it('round-trips any secret and never shows it in the sealed form', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 200 }), (s) => {
        const sealed = seal(s, k1);
        expect(sealed.startsWith(`enc:v1:${k1.id}:`)).toBe(true);
        if (s.length > 3) expect(sealed.includes(s)).toBe(false);
        expect(unseal(sealed, [k1])).toBe(s);
      }),
    );
  });

  it('refuses a tampered value, a truncated one and the wrong key', () => {
    const sealed = seal('sk_live_abc123', k1);
    const data = sealed.split(':')[3]!;
    const flipped = `enc:v1:${k1.id}:${(data[5] === 'A' ? 'B' : 'A') + data.slice(1)}`.replace(`:${data.slice(0, 1)}`, ':');
    expect(() => unseal(`enc:v1:${k1.id}:${data.slice(0, 10) + (data[10] === 'A' ? 'B' : 'A') + data.slice(11)}`, [k1])).toThrow(SealError);
    expect(() => unseal(flipped, [k1])).toThrow(SealError);
    expect(() => unseal(`enc:v1:${k1.id}:AAAA`, [k1])).toThrow(/truncated/);
    expect(() => unseal(sealed, [k2])).toThrow(/no master key/);
  });

  it('opens a config tree, naming the field when it cannot', () => {
    const tree = { vendors: { stripe: { test_secret: seal('sk_test_x', k1), base_url: 'https://api.stripe.com' } } };
    expect(unsealTree(tree, [k1])).toEqual({ vendors: { stripe: { test_secret: 'sk_test_x', base_url: 'https://api.stripe.com' } } });
    expect(() => unsealTree(tree, [k2])).toThrow(/vendors\.stripe\.test_secret/);
  });

  it('re-seals a file under a new master key while the old one still opens it', () => {
    const text = `vendors:\n  stripe:\n    test_secret: ${seal('sk_test_a', k1)}\n    live_secret: ${seal('sk_live_b', k1)}\n`;
    const { text: out, count } = resealText(text, [k2, k1], k2);
    expect(count).toBe(2);
    expect(out).not.toContain(k1.id);
    expect(unsealTree({ a: out.match(/enc:v1:\S+/g)![0], b: out.match(/enc:v1:\S+/g)![1] }, [k2])).toEqual({ a: 'sk_test_a', b: 'sk_live_b' });
  });

  it('takes master keys as hex or base64 and refuses other lengths', () => {
    expect(parseMasterKey('ab'.repeat(32)).key.length).toBe(32);
    expect(() => parseMasterKey('short')).toThrow(SealError);
  });
});
