// Field rules shared by the control API (issued keys, budgets, minting keys) and the minted-key
// verifier on the proxy path, which therefore imports no validation library.

/** Budget ids, e.g. `user:u42`, `team:billing`. */
export const BUDGET_ID = /^[A-Za-z0-9_.:@-]{1,100}$/;
export const METADATA_KEY = /^[A-Za-z0-9_.:-]{1,40}$/;
export const MAX_METADATA_PAIRS = 50;
export const MAX_METADATA_VALUE = 500;
export const MAX_LABEL = 200;
/** What joins a narrowed key's label to its parent's: `flask-u42-run7/refund-tool` (docs/minting.md). */
export const LABEL_SEPARATOR = '/';

/**
 * C0, DEL, C1 and the bidirectional overrides and isolates. Labels and metadata are printed by
 * the CLI and the dashboard and read by people: one of these could rewrite a terminal or make
 * a label read as another, so none is accepted anywhere a label or metadata value comes in.
 */
// eslint-disable-next-line no-control-regex
export const CONTROL_CHAR = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
// eslint-disable-next-line no-control-regex
export const NO_CONTROL_CHARS = /^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$/;
export const CONTROL_CHAR_REASON = 'must not hold control characters (C0, DEL, C1) or bidirectional overrides';

/** What is wrong with a label (a string of at most 200 characters, no control characters), or null. */
export function labelProblem(label: unknown): string | null {
  if (typeof label !== 'string' || label.length > MAX_LABEL) return `must be a string of at most ${MAX_LABEL} characters`;
  return CONTROL_CHAR.test(label) ? CONTROL_CHAR_REASON : null;
}

/** What is wrong with a metadata object (string values, ≤ 50 pairs, key shape), or null. */
export function metadataProblem(m: Record<string, unknown>): { param: string; reason: string } | null {
  const entries = Object.entries(m);
  if (entries.length > MAX_METADATA_PAIRS) return { param: 'metadata', reason: `may hold at most ${MAX_METADATA_PAIRS} pairs` };
  for (const [k, v] of entries) {
    if (!METADATA_KEY.test(k)) return { param: `metadata.${k}`, reason: 'keys are 1-40 of A-Z a-z 0-9 _ . : -' };
    if (typeof v !== 'string' || v.length > MAX_METADATA_VALUE) {
      return { param: `metadata.${k}`, reason: `must be a string of at most ${MAX_METADATA_VALUE} characters` };
    }
    if (CONTROL_CHAR.test(v)) return { param: `metadata.${k}`, reason: CONTROL_CHAR_REASON };
  }
  return null;
}
