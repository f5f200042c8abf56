// Tool names and the globs a key's `allowed_tools` holds. Pure: no I/O.
//
// A key for an MCP server keeps its tool globs in its `allowed_endpoints` record field, each as
// `tool:<glob>`: the stores need no new column, and the HTTP proxy, which cannot parse such a
// pattern, allows such a key no HTTP call at all.

export const TOOL_PREFIX = 'tool:';
export const MCP_VENDOR_PREFIX = 'mcp:';
export const MAX_TOOLS = 100;

/** Tool names as the MCP spec writes them (1-128 of A-Z a-z 0-9 _ - .), plus `/` and `:` some servers use. */
const TOOL_NAME = /^[A-Za-z0-9_.:/-]{1,128}$/;
const TOOL_GLOB = /^[A-Za-z0-9_.:/*-]{1,128}$/;

export function isToolName(name: unknown): name is string {
  return typeof name === 'string' && TOOL_NAME.test(name);
}

/** Why a glob is not one, or null. `*` matches any run of characters, none included. */
export function globProblem(glob: string): string | null {
  if (!TOOL_GLOB.test(glob)) return 'a tool glob is 1-128 of A-Z a-z 0-9 _ - . : / and *';
  if (glob.includes('**')) return 'write one "*", not "**"';
  return null;
}

/** The vendor name of an MCP server's keys: `mcp:<server>`, or null when `vendor` names none. */
export function mcpServerOf(vendor: string): string | null {
  return vendor.startsWith(MCP_VENDOR_PREFIX) ? vendor.slice(MCP_VENDOR_PREFIX.length) : null;
}

export function encodeTools(globs: readonly string[]): string[] {
  return globs.map((g) => TOOL_PREFIX + g);
}

/**
 * The tool globs of a key record's `allowedEndpoints`: its `tool:<glob>` entries, and endpoint
 * patterns `[POST ]/tools/<name>` (`/tools/*`: every tool), the form minted and narrowed keys
 * use, since their caveats intersect whole path segments. Any other entry allows no tool.
 */
export function decodeTools(allowed: readonly string[]): string[] {
  const out: string[] = [];
  for (const a of allowed) {
    if (a.startsWith(TOOL_PREFIX)) {
      out.push(a.slice(TOOL_PREFIX.length));
      continue;
    }
    const m = /^(?:POST )?\/tools\/([^/*]+|\*)$/.exec(a);
    if (m && (m[1] === '*' || isToolName(m[1]))) out.push(m[1]!);
  }
  return out;
}

const compiled = new Map<string, RegExp>();

function globRegExp(glob: string): RegExp {
  let re = compiled.get(glob);
  if (!re) {
    re = new RegExp('^' + glob.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')).join('.*') + '$');
    if (compiled.size > 10_000) compiled.clear();
    compiled.set(glob, re);
  }
  return re;
}

export function globMatches(glob: string, name: string): boolean {
  return glob === name || (glob.includes('*') && globRegExp(glob).test(name));
}

/** True when some glob allows the tool. A name that is not a tool name never matches. */
export function toolAllowed(globs: readonly string[], name: string): boolean {
  return isToolName(name) && globs.some((g) => globMatches(g, name));
}
