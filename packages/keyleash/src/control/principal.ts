import { createHash, timingSafeEqual } from 'node:crypto';
import type { IssuePolicy } from '../policy/issue-policy.js';
import { DEFAULT_TENANT } from '../store/store.js';

/** Who is calling the control API: the tenant everything is scoped to, and what it may issue. */
export interface Principal {
  tenantId: string;
  /** The admin token's name, for logs. */
  name: string;
  /** Every policy must hold (the tenant's and the token's own). Empty: only server limits. */
  policies: IssuePolicy[];
}

/** The single `admin_token` of the config: the default tenant, no policy beyond the server's. */
export const ROOT_PRINCIPAL: Principal = Object.freeze({ tenantId: DEFAULT_TENANT, name: 'admin', policies: [] });

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Admin tokens by hash; lookup compares against every one in constant time. */
export class AdminTokens {
  private readonly entries: Array<{ hash: Buffer; principal: Principal }>;

  constructor(entries: Array<{ token: string; principal: Principal }>) {
    this.entries = entries.map((e) => ({ hash: sha256(e.token), principal: e.principal }));
  }

  /** A principal by tenant and name (a dashboard session names the one it signed in as). */
  byName(tenantId: string, name: string): Principal | null {
    return this.entries.find((e) => e.principal.tenantId === tenantId && e.principal.name === name)?.principal ?? null;
  }

  /** The principal of an `Authorization: Bearer …` header, or null. */
  find(header: string | undefined): Principal | null {
    if (!header) return null;
    const m = /^bearer (.+)$/i.exec(header);
    if (!m) return null;
    const h = sha256(m[1]!);
    let found: Principal | null = null;
    // No early exit: the time taken does not tell which token matched.
    for (const e of this.entries) if (timingSafeEqual(h, e.hash) && !found) found = e.principal;
    return found;
  }
}
