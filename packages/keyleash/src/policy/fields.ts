// Field rules shared by the control API (issued keys, budgets, minting keys) and the minted-key
// verifier on the proxy path, which therefore imports no validation library.

/** Budget ids, e.g. `user:u42`, `team:billing`. */
export const BUDGET_ID = /^[A-Za-z0-9_.:@-]{1,100}$/;
export const METADATA_KEY = /^[A-Za-z0-9_.:-]{1,40}$/;
export const MAX_METADATA_PAIRS = 50;
export const MAX_METADATA_VALUE = 500;

/** What is wrong with a metadata object (string values, ≤ 50 pairs, key shape), or null. */
export function metadataProblem(m: Record<string, unknown>): { param: string; reason: string } | null {
  const entries = Object.entries(m);
  if (entries.length > MAX_METADATA_PAIRS) return { param: 'metadata', reason: `may hold at most ${MAX_METADATA_PAIRS} pairs` };
  for (const [k, v] of entries) {
    if (!METADATA_KEY.test(k)) return { param: `metadata.${k}`, reason: 'keys are 1-40 of A-Z a-z 0-9 _ . : -' };
    if (typeof v !== 'string' || v.length > MAX_METADATA_VALUE) {
      return { param: `metadata.${k}`, reason: `must be a string of at most ${MAX_METADATA_VALUE} characters` };
    }
  }
  return null;
}
