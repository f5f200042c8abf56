import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type { AuditRecord } from '../store/store.js';

// A tamper-evident audit log: every process appends to its own chain, and each record carries an
// HMAC over its predecessor's hash and its own content. Editing a record breaks its hash;
// deleting or reordering one breaks the sequence or the link. The HMAC key is derived from a
// secret the store never holds, so someone who can write the database cannot forge a chain.

export interface ChainLink {
  chainId: string;
  seq: number;
  prevHash: string;
  hash: string;
}

export type ChainedRecord = AuditRecord & { chain: ChainLink };

const GENESIS = '0'.repeat(64);

export function auditKeyFrom(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'keyleash-audit-chain', 'v1', 32));
}

/** The fields a hash covers, in a fixed order (JSON key order is not something to rely on). */
function canonical(r: AuditRecord, chainId: string, seq: number): string {
  return JSON.stringify([
    chainId, seq, r.id, r.time, r.requestId, r.keyId, r.label, r.vendor, r.mode, r.method, r.path,
    r.status, r.decision, r.code, r.costMicros, r.upstreamLatencyMs,
  ]);
}

export function linkHash(key: Buffer, prevHash: string, r: AuditRecord, chainId: string, seq: number): string {
  return createHmac('sha256', key).update(prevHash).update('\n').update(canonical(r, chainId, seq)).digest('hex');
}

/** Appends records to this process's chain, in the order they will be written. */
export class AuditChain {
  readonly chainId = `chn_${randomBytes(9).toString('base64url')}`;
  private seq = 0;
  private prev = GENESIS;

  constructor(private readonly key: Buffer) {}

  link(r: AuditRecord): ChainedRecord {
    const seq = ++this.seq;
    const hash = linkHash(this.key, this.prev, r, this.chainId, seq);
    const chain = { chainId: this.chainId, seq, prevHash: this.prev, hash };
    this.prev = hash;
    return { ...r, chain };
  }
}

export interface ChainProblem {
  chainId: string;
  seq: number;
  recordId: string | null;
  problem: 'edited' | 'missing' | 'reordered' | 'unchained';
}

/**
 * Checks every chain in `records` (any order). A gap in a chain's sequence is a deleted record, a
 * link that does not match its predecessor is a reordering, a hash that does not match is an edit.
 */
export function verifyChains(records: readonly (AuditRecord & { chain: ChainLink | null })[], key: Buffer): { chains: number; records: number; problems: ChainProblem[] } {
  const problems: ChainProblem[] = [];
  const byChain = new Map<string, ChainedRecord[]>();
  for (const r of records) {
    if (!r.chain) {
      problems.push({ chainId: '', seq: 0, recordId: r.id, problem: 'unchained' });
      continue;
    }
    const list = byChain.get(r.chain.chainId) ?? [];
    list.push(r as ChainedRecord);
    byChain.set(r.chain.chainId, list);
  }
  for (const [chainId, list] of byChain) {
    list.sort((a, b) => a.chain.seq - b.chain.seq);
    let prev = GENESIS;
    let expected = 1;
    for (const r of list) {
      if (r.chain.seq !== expected) {
        for (let s = expected; s < r.chain.seq; s++) problems.push({ chainId, seq: s, recordId: null, problem: 'missing' });
      }
      if (r.chain.seq === expected && r.chain.prevHash !== prev) problems.push({ chainId, seq: r.chain.seq, recordId: r.id, problem: 'reordered' });
      if (linkHash(key, r.chain.prevHash, r, chainId, r.chain.seq) !== r.chain.hash) {
        problems.push({ chainId, seq: r.chain.seq, recordId: r.id, problem: 'edited' });
      }
      prev = r.chain.hash;
      expected = r.chain.seq + 1;
    }
  }
  return { chains: byChain.size, records: records.length, problems };
}
