import { parseArgs } from 'node:util';
import { auditKeyFrom, linkHash, verifyChains, type ChainProblem } from '../audit/chain.js';
import { ConfigError, loadConfig } from '../config/config.js';
import { openStore } from '../gateway.js';
import type { AuditRecord } from '../store/store.js';
import { missingStore } from './store-check.js';
import { retentionMarks } from './backup.js';

export const AUDIT_VERIFY_HELP = `keyleash audit verify — check the audit log's hash chains

Usage:
  keyleash audit verify [--config F] [--json]

Reads every audit record from the configured store and checks each process's HMAC chain: an
edited record breaks its hash, a deleted one leaves a gap, a reordered one breaks a link. The
key is audit_key (or KEYLEASH_AUDIT_KEY), else derived from admin_token, as when it was written.

A chain none of whose records verifies was written under another key (audit_key, or the
admin_token it derives from, has changed): that is reported as a key mismatch, not tampering.
A store that does not exist is an error, never an empty "intact" log.

Exit codes: 0 the log is intact, 1 tampering found or the store failed, 2 bad usage or config,
4 the audit key does not match (some or all chains).`;

/**
 * Chains in which not one record's hash verifies under `key` (each checked against its own stored
 * link, so an edit or a gap elsewhere cannot cause it): written under another key. Tampering
 * with every record of a chain would look the same, and is reported as a mismatch too — never as
 * intact.
 */
function foreignChains(records: readonly AuditRecord[], key: Buffer): Set<string> {
  const verified = new Map<string, boolean>();
  for (const r of records) {
    if (!r.chain) continue;
    const ok = linkHash(key, r.chain.prevHash, r, r.chain.chainId, r.chain.seq) === r.chain.hash;
    verified.set(r.chain.chainId, (verified.get(r.chain.chainId) ?? false) || ok);
  }
  return new Set([...verified].filter(([, ok]) => !ok).map(([id]) => id));
}

export async function runAuditVerify(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(`${AUDIT_VERIFY_HELP}\n`);
    return 0;
  }
  let config;
  try {
    config = loadConfig(values.config ?? process.env.KEYLEASH_CONFIG);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`keyleash: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const missing = await missingStore(config);
  if (missing) {
    process.stderr.write(`keyleash: ${missing}\n`);
    return 2;
  }
  const store = await openStore(config);
  try {
    const records: AuditRecord[] = [];
    let cursor: string | null = null;
    do {
      const page = await store.listAudit({}, 1000, cursor);
      records.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    const key = auditKeyFrom(config.audit_key ?? config.admin_token);
    const all = verifyChains(
      records.map((r) => ({ ...r, chain: r.chain ?? null })),
      key,
    );
    const foreign = foreignChains(records, key);
    // Chains cut by `keyleash retention` start after their last purged link, which must match.
    const marks = config.store.url === undefined ? retentionMarks(config.store.path) : new Map<string, { throughSeq: number; lastHash: string }>();
    const problems: ChainProblem[] = all.problems.filter((p) => !foreign.has(p.chainId) && !(p.problem === 'missing' && p.seq <= (marks.get(p.chainId)?.throughSeq ?? 0)));
    for (const [chainId, mark] of marks) {
      const first = records.find((r) => r.chain?.chainId === chainId && r.chain.seq === mark.throughSeq + 1);
      if (first && first.chain!.prevHash !== mark.lastHash) problems.push({ chainId, seq: first.chain!.seq, recordId: first.id, problem: 'reordered' });
    }
    const result = { chains: all.chains, records: all.records, key_mismatch_chains: [...foreign], problems };
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      if (problems.length === 0 && foreign.size === 0) {
        process.stdout.write(`audit log intact: ${result.records} records in ${result.chains} chain(s)\n`);
      }
      if (foreign.size > 0) {
        process.stdout.write(
          `audit KEY MISMATCH: ${foreign.size} of ${result.chains} chain(s) do not verify under this audit key — ` +
            'set audit_key (KEYLEASH_AUDIT_KEY), or the admin_token it derives from, to the one that wrote them\n',
        );
      }
      if (problems.length > 0) {
        process.stdout.write(`audit log TAMPERED: ${problems.length} problem(s) in ${result.records} records\n`);
        for (const p of problems.slice(0, 50)) {
          process.stdout.write(`  ${p.problem.padEnd(10)} chain ${p.chainId} #${p.seq}${p.recordId ? ` (${p.recordId})` : ''}\n`);
        }
      }
    }
    return problems.length > 0 ? 1 : foreign.size > 0 ? 4 : 0;
  } finally {
    await store.close();
  }
}
