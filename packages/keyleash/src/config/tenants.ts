import { AdminTokens, type Principal } from '../control/principal.js';
import { parseEndpointPattern } from '../policy/endpoints.js';
import type { IssuePolicy } from '../policy/issue-policy.js';
import { parseUsdToMicros } from '../policy/money.js';
import { DEFAULT_TENANT } from '../store/store.js';
import { ConfigError, type Config } from './config.js';

type PolicyInput = NonNullable<Config['policy']>;
type TokenInput = Config['admin_tokens'][number];

function toPolicy(p: PolicyInput | undefined, where: string): IssuePolicy[] {
  if (!p) return [];
  const out: IssuePolicy = {};
  if (p.max_ttl !== undefined) out.maxTtlSeconds = p.max_ttl;
  if (p.max_daily_usd_cap !== undefined) {
    const r = parseUsdToMicros(p.max_daily_usd_cap);
    if (!r.ok) throw new ConfigError(`${where}.max_daily_usd_cap: ${r.reason}`);
    out.maxDailyCapMicros = r.micros;
  }
  if (p.vendors) out.vendors = [...p.vendors];
  if (p.endpoints) {
    for (const [i, e] of p.endpoints.entries()) {
      const r = parseEndpointPattern(e);
      if ('error' in r) throw new ConfigError(`${where}.endpoints[${i}]: ${r.error}`);
    }
    out.endpoints = [...p.endpoints];
  }
  return [out];
}

function principal(tenantId: string, t: TokenInput, i: number, tenantPolicies: IssuePolicy[], where: string): { token: string; principal: Principal } {
  if (typeof t === 'string') return { token: t, principal: { tenantId, name: `${tenantId}#${i}`, policies: tenantPolicies } };
  return {
    token: t.token,
    principal: { tenantId, name: t.name ?? `${tenantId}#${i}`, policies: [...tenantPolicies, ...toPolicy(t.policy, `${where}[${i}].policy`)] },
  };
}

/**
 * Every admin token of the config with who it is: `admin_token` and `admin_tokens` are tenant
 * "default" (under `policy`), each `tenants.<id>.admin_tokens` entry is that tenant.
 */
export function adminTokensFrom(config: Config): AdminTokens {
  const entries: Array<{ token: string; principal: Principal }> = [];
  const rootPolicies = toPolicy(config.policy, 'policy');
  entries.push({ token: config.admin_token, principal: { tenantId: DEFAULT_TENANT, name: 'admin', policies: rootPolicies } });
  config.admin_tokens.forEach((t, i) => entries.push(principal(DEFAULT_TENANT, t, i, rootPolicies, 'admin_tokens')));
  for (const [id, tenant] of Object.entries(config.tenants)) {
    const policies = toPolicy(tenant.policy, `tenants.${id}.policy`);
    tenant.admin_tokens.forEach((t, i) => entries.push(principal(id, t, i, policies, `tenants.${id}.admin_tokens`)));
  }
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.token)) throw new ConfigError('invalid configuration: the same admin token is configured twice');
    seen.add(e.token);
  }
  return new AdminTokens(entries);
}
