import { describe, expect, it } from 'vitest';
import type { AuditRecord } from '../store/store.js';
import { AuditChain, auditKeyFrom, verifyChains, type ChainedRecord } from './chain.js';

const key = auditKeyFrom('admin-token-or-master-key');

function record(i: number): AuditRecord {
  return {
    id: `aud_${i}`, time: 1_700_000_000_000 + i, requestId: `req_${i}`, keyId: 'key_1', label: 'l', vendor: 'stripe',
    mode: 'test', method: 'POST', path: '/v1/payment_intents', status: 200, decision: 'allow', code: null,
    costMicros: 1_000_000, upstreamLatencyMs: 3,
  };
}

function chain(n: number): ChainedRecord[] {
  const c = new AuditChain(key);
  return Array.from({ length: n }, (_, i) => c.link(record(i)));
}

describe('audit chain', () => {
  it('verifies an untouched log, in any storage order, across chains', () => {
    const all = [...chain(5), ...chain(3)].reverse();
    expect(verifyChains(all, key)).toEqual({ chains: 2, records: 8, problems: [] });
  });

  it('detects an edited record', () => {
    const log = chain(5);
    log[2] = { ...log[2]!, costMicros: 0 };
    expect(verifyChains(log, key).problems).toEqual([{ chainId: log[2]!.chain.chainId, seq: 3, recordId: 'aud_2', problem: 'edited' }]);
  });

  it('detects a deleted record', () => {
    const log = chain(5);
    log.splice(1, 1);
    expect(verifyChains(log, key).problems.map((p) => p.problem)).toContain('missing');
  });

  it('detects records swapped, even with their sequence numbers swapped too', () => {
    const log = chain(5);
    const a = log[1]!;
    const b = log[3]!;
    log[1] = { ...b, chain: { ...b.chain, seq: a.chain.seq } };
    log[3] = { ...a, chain: { ...a.chain, seq: b.chain.seq } };
    const problems = verifyChains(log, key).problems.map((p) => p.problem);
    expect(problems.length).toBeGreaterThan(0);
  });

  it('refuses a chain recomputed without the key', () => {
    const forged = new AuditChain(auditKeyFrom('a guess')).link(record(1));
    expect(verifyChains([forged], key).problems[0]!.problem).toBe('edited');
  });
});
