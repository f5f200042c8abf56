// Vendors' auth errors sometimes echo part of the credential they were sent (Stripe: "Invalid
// API Key provided: sk_test_****7890"). The proxy never shows any part of a real secret, so such
// echoes are cut from error bodies before they reach the caller.

const REDACTED = '[redacted by keyleash]';

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Replaces the secret, and any token starting with its first characters or masking it, in `text`. */
export function redactSecretEchoes(text: string, secret: string): string {
  if (!secret) return text;
  let out = text.split(secret).join(REDACTED);
  // A masked echo keeps a recognizable head (e.g. "sk_test_") or tail ("…7890") of the secret.
  const head = secret.slice(0, Math.min(8, Math.max(4, Math.floor(secret.length / 3))));
  const tail = secret.slice(-4);
  out = out.replace(new RegExp(`${escapeRegExp(head)}[^\\s"',;]*`, 'g'), REDACTED);
  if (tail.length === 4) out = out.replace(new RegExp(`[*•xX]{3,}${escapeRegExp(tail)}`, 'g'), REDACTED);
  return out;
}
