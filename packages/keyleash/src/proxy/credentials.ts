import type { IncomingHttpHeaders } from 'node:http';

/**
 * The vault token the caller sent: `Authorization: Bearer <token>`, or HTTP Basic for SDKs that
 * only speak Basic (Stripe's curl style puts the key in the username, others in the password).
 * Two credentials, or a header sent twice, is ambiguous and yields none.
 */
export function readVaultToken(headers: IncomingHttpHeaders): string | null {
  const auth = headers.authorization;
  if (typeof auth !== 'string' || auth.includes(',')) return null;
  const space = auth.indexOf(' ');
  if (space < 0) return null;
  const scheme = auth.slice(0, space).toLowerCase();
  const value = auth.slice(space + 1).trim();
  // `token` is the scheme GitHub's clients use; a generic vendor's SDK may send it.
  if (scheme === 'bearer' || scheme === 'token') return value || null;
  if (scheme === 'basic') {
    let decoded: string;
    try {
      decoded = Buffer.from(value, 'base64').toString('utf8');
    } catch {
      return null;
    }
    const colon = decoded.indexOf(':');
    const user = colon < 0 ? decoded : decoded.slice(0, colon);
    const pass = colon < 0 ? '' : decoded.slice(colon + 1);
    if (user && pass) return pass.startsWith('vk_') ? pass : user.startsWith('vk_') ? user : null;
    return user || pass || null;
  }
  return null;
}
