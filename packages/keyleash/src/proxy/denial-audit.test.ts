import { describe, expect, it } from 'vitest';
import type { AuditRecord } from '../store/store.js';
import { DenialAudit, DENIALS_SUPPRESSED, sourceOf } from './denial-audit.js';

function setup(perWindow = 3, windowMs = 1000, maxTracked?: number) {
  let now = 1_000_000;
  const written: AuditRecord[] = [];
  const d = new DenialAudit((r) => written.push(r), () => now, { perWindow, windowMs, ...(maxTracked ? { maxTracked } : {}) });
  return { d, written, tick: (ms: number) => (now += ms) };
}

describe('DenialAudit', () => {
  it('admits the first denials of a window, counts the rest, and sums them up when the window ends', () => {
    const { d, written, tick } = setup();
    const admitted = Array.from({ length: 10 }, () => d.admit('10.0.0.1'));
    expect(admitted).toEqual([true, true, true, false, false, false, false, false, false, false]);
    expect(written).toHaveLength(0);
    tick(1000);
    expect(d.admit('10.0.0.1')).toBe(true); // a new window; the old one is summed up first
    expect(written).toHaveLength(1);
    expect(written[0]).toMatchObject({ code: DENIALS_SUPPRESSED, decision: 'deny', keyId: null, label: 'count=7 address=10.0.0.1', costMicros: 0 });
  });

  it('counts each address on its own, and writes no summary when nothing was suppressed', () => {
    const { d, written, tick } = setup(1);
    expect(d.admit('10.0.0.1')).toBe(true);
    expect(d.admit('10.0.0.2')).toBe(true);
    expect(d.admit('10.0.0.2')).toBe(false);
    tick(1000);
    d.sweep();
    expect(written.map((r) => r.label)).toEqual(['count=1 address=10.0.0.2']);
  });

  it('writes every pending summary when stopped', () => {
    const { d, written } = setup(0);
    d.admit('10.0.0.1');
    d.admit('10.0.0.1');
    d.stop();
    expect(written.map((r) => r.label)).toEqual(['count=2 address=10.0.0.1']);
  });

  it('closes the oldest window early when too many addresses are followed', () => {
    const { d, written } = setup(0, 1000, 2);
    d.admit('10.0.0.1');
    d.admit('10.0.0.2');
    d.admit('10.0.0.3');
    expect(written.map((r) => r.label)).toEqual(['count=1 address=10.0.0.1']);
  });
});

describe('sourceOf', () => {
  it.each([
    ['10.0.0.1', '10.0.0.1'],
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['::1', '0:0:0:0::/64'],
    ['2001:db8:0:1:aaaa:bbbb:cccc:dddd', '2001:db8:0:1::/64'],
    ['2001:0DB8:0:1::5', '2001:db8:0:1::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
  ])('%s counts as %s', (address, source) => {
    expect(sourceOf(address)).toBe(source);
  });
});
