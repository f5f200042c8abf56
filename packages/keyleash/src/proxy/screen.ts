import type { IncomingMessage } from 'node:http';

// Request features that make a call ambiguous or leak a credential. Each is refused before the
// key is even looked up, so a hostile request costs no store work.

export type Screened = { code: 'invalid_key' | 'credential_in_url' | 'invalid_request'; message: string } | null;

const TOKEN_IN_URL = /vk_(test|live)_/i;

/** Counts a header in the raw list: Node keeps only the first of a duplicated Authorization. */
function count(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) n++;
  return n;
}

function decodedQuery(query: string): string {
  try {
    return decodeURIComponent(query.replace(/\+/g, ' '));
  } catch {
    return query;
  }
}

export function screenRequest(req: IncomingMessage, query: string): Screened {
  if (count(req.rawHeaders, 'authorization') > 1) {
    return { code: 'invalid_key', message: 'Send exactly one Authorization header.' };
  }
  if (query) {
    const q = decodedQuery(query);
    if (TOKEN_IN_URL.test(q)) {
      return {
        code: 'credential_in_url',
        message: 'A vault key does not belong in a URL (URLs end up in logs); send it in the Authorization header. Nothing was forwarded.',
      };
    }
    // Frameworks that honour `_method` would run another method than the one authorized.
    if (/(^|&)_method=/i.test(q)) return { code: 'invalid_request', message: '`_method` overrides are not accepted.' };
  }
  return null;
}
