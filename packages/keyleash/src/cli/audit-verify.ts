import { parseArgs } from 'node:util';
import { auditKeyFrom, verifyChains } from '../audit/chain.js';
import { ConfigError, loadConfig } from '../config/config.js';
import { openStore } from '../gateway.js';
import type { AuditRecord } from '../store/store.js';

export const AUDIT_VERIFY_HELP = `keyleash audit verify — check the audit log's hash chains

Usage:
  keyleash audit verify [--config F] [--json]

Reads every audit record from the configured store and checks each process's HMAC chain: an
edited record breaks its hash, a deleted one leaves a gap, a reordered one breaks a link. The
key is audit_key (or KEYLEASH_AUDIT_KEY), else derived from admin_token, as when it was written.

Exit codes: 0 the log is intact, 1 tampering found or the store failed, 2 bad usage or config.`;

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
  const store = await openStore(config);
  try {
    const records: AuditRecord[] = [];
    let cursor: string | null = null;
    do {
      const page = await store.listAudit({}, 1000, cursor);
      records.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    const result = verifyChains(
      records.map((r) => ({ ...r, chain: r.chain ?? null })),
      auditKeyFrom(config.audit_key ?? config.admin_token),
    );
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else if (result.problems.length === 0) {
      process.stdout.write(`audit log intact: ${result.records} records in ${result.chains} chain(s)\n`);
    } else {
      process.stdout.write(`audit log TAMPERED: ${result.problems.length} problem(s) in ${result.records} records\n`);
      for (const p of result.problems.slice(0, 50)) {
        process.stdout.write(`  ${p.problem.padEnd(10)} chain ${p.chainId} #${p.seq}${p.recordId ? ` (${p.recordId})` : ''}\n`);
      }
    }
    return result.problems.length === 0 ? 0 : 1;
  } finally {
    await store.close();
  }
}
