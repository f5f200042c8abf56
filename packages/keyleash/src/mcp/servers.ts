import type { Mode } from '../keys/token.js';
import { DEFAULT_FX } from '../policy/money.js';
import { unknownCostPolicy } from '../vendors/catalog.js';
import { describePolicy, type Vendor, type VendorCatalog } from '../vendors/vendor.js';
import { type McpServerConfig, type McpServersConfig, toolRuleSchema } from './config-schema.js';
import { describeToolRule, orderRules, type ToolPricing, type ToolRule, toolRuleFrom } from './cost.js';
import { PRESETS } from './presets.js';
import { MCP_VENDOR_PREFIX } from './tools.js';

/** An upstream MCP server as the gateway uses it: where, with which credential, at what cost. */
export interface McpServerDef {
  name: string;
  url: URL;
  secret(mode: Mode): string | undefined;
  /** Headers that carry the real credential upstream. */
  authHeaders(secret: string): Record<string, string>;
  pricing: ToolPricing;
  toolErrors: 'charge' | 'release';
  timeoutMs: number;
  maxMessageBytes: number;
}

/** A catalog entry for an MCP server: a vendor (`mcp:<name>`) keys can be issued for, whose HTTP use is refused. */
export interface McpVendor extends Vendor {
  readonly mcp: McpServerDef;
}

export function isMcpVendor(v: Vendor | undefined): v is McpVendor {
  return v !== undefined && (v as Partial<McpVendor>).mcp !== undefined;
}

export function mcpServerDef(name: string, c: McpServerConfig): McpServerDef {
  const preset = c.preset ? PRESETS[c.preset] : {};
  const rules: ToolRule[] = [];
  // The server's own rules first, then the preset's for tools it does not name.
  for (const [match, rule] of Object.entries(c.tools)) rules.push({ match, rule: toolRuleFrom(rule) });
  for (const [match, input] of Object.entries(preset)) {
    if (Object.hasOwn(c.tools, match)) continue;
    rules.push({ match, rule: toolRuleFrom(toolRuleSchema.parse(input)) });
  }
  const auth = c.auth;
  return {
    name,
    url: new URL(c.url),
    secret: (mode) => (mode === 'live' ? c.live_secret : c.test_secret),
    authHeaders: (secret) => (auth.type === 'header' ? { [auth.name.toLowerCase()]: auth.prefix + secret } : { authorization: `Bearer ${secret}` }),
    pricing: { rules: orderRules(rules), unknownCost: unknownCostPolicy(c.unknown_cost), defaultCurrency: c.default_currency, fx: { ...DEFAULT_FX, ...c.fx } },
    toolErrors: c.tool_errors,
    timeoutMs: c.timeout_ms,
    maxMessageBytes: c.max_message_bytes,
  };
}

const NOT_HTTP = 'this key is for an MCP server: connect an MCP client to {PROXY}/mcp/';

export function mcpVendor(def: McpServerDef, authName: string): McpVendor {
  return {
    name: MCP_VENDOR_PREFIX + def.name,
    origin: def.url.origin,
    mcp: def,
    secret: def.secret,
    authHeaders: def.authHeaders,
    forwardHeaders: [],
    // Never reached (an MCP key allows no HTTP endpoint); refused again here all the same.
    prepareBody: () => ({ ok: false, reason: NOT_HTTP + def.name }),
    price: () => ({ kind: 'unknown', reason: NOT_HTTP + def.name }),
    outcome: (status) => (status >= 200 && status < 300 ? 'executed' : status >= 400 && status < 500 ? 'refused' : 'unknown'),
    describe: () => ({
      kind: 'mcp',
      auth: authName,
      unknown_cost: describePolicy(def.pricing.unknownCost),
      endpoints: def.pricing.rules.map((r) => ({ match: `tools/call ${r.match}`, cost: describeToolRule(r.rule) })),
      url: `/mcp/${def.name}`,
      tool_errors: def.toolErrors,
    }),
  };
}

/** The catalog with an `mcp:<name>` vendor for each configured MCP server. */
export function withMcpServers(catalog: VendorCatalog, servers: McpServersConfig | undefined): VendorCatalog {
  if (!servers || Object.keys(servers).length === 0) return catalog;
  const out = new Map(catalog);
  for (const [name, c] of Object.entries(servers)) {
    const authName = c.auth.type === 'header' ? `header ${c.auth.name}` : 'bearer';
    out.set(MCP_VENDOR_PREFIX + name, mcpVendor(mcpServerDef(name, c), authName));
  }
  return out;
}
