import { z } from 'zod';
import { unknownCostSchema, usd } from '../vendors/config-schema.js';
import { globProblem } from './tools.js';

// `mcp_servers` in the config (src/config/config.ts): upstream MCP servers reached at
// `{PROXY}/mcp/{name}`, their real credentials, and what each tool costs, as data.

const paramPath = z
  .string()
  .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'an argument path looks like "amount" or "line_items.0.quantity"')
  .transform((s) => s.split('.'));

/**
 * One tool's cost, from its arguments: `free`, a flat `usd`, an `amount` (× an optional
 * `quantity`) read from the arguments, a `count` × a price each, or `unpriced` (refused with
 * cost_unknown on a capped key, like a tool with no rule).
 */
export const toolRuleSchema = z.union([
  z.literal('free').transform(() => ({ free: true as const })),
  z
    .strictObject({
      free: z.literal(true).optional(),
      usd: usd.optional(),
      amount: z
        .strictObject({
          path: paramPath,
          unit: z.enum(['major', 'minor']).default('minor'),
          /** The currency when `currency_path` is absent from the arguments (or not given). */
          currency: z.string().regex(/^[A-Za-z]{3}$/).optional(),
          currency_path: paramPath.optional(),
        })
        .refine((a) => a.currency !== undefined || a.currency_path !== undefined, { message: 'give currency or currency_path' })
        .optional(),
      /** With `amount`: a whole-number argument the amount is multiplied by (1 when absent). */
      quantity: paramPath.optional(),
      count: z.strictObject({ path: paramPath, usd_each: usd }).optional(),
      /** Why the tool cannot be priced from its arguments. */
      unpriced: z.string().min(1).max(300).optional(),
    })
    .refine((r) => [r.free, r.usd, r.amount, r.count, r.unpriced].filter((x) => x !== undefined).length === 1, {
      message: 'give exactly one of free, usd, amount, count or unpriced',
    })
    .refine((r) => r.quantity === undefined || r.amount !== undefined, { message: 'quantity goes with amount' }),
]);

export type ToolRuleInput = z.input<typeof toolRuleSchema>;
export type ToolRuleConfig = z.output<typeof toolRuleSchema>;

const toolGlob = z.string().superRefine((g, ctx) => {
  const p = globProblem(g);
  if (p) ctx.addIssue({ code: 'custom', message: p });
});

const headerName = z
  .string()
  .regex(/^[A-Za-z0-9-]{1,64}$/, 'must be an HTTP header name')
  .refine((n) => !['host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'cookie', 'accept', 'mcp-session-id', 'mcp-protocol-version'].includes(n.toLowerCase()), {
    message: 'cannot carry a secret',
  });

const mcpAuth = z
  .union([
    z.literal('bearer').transform(() => ({ type: 'bearer' as const })),
    z.strictObject({ type: z.literal('bearer') }),
    z.strictObject({ type: z.literal('header'), name: headerName, prefix: z.string().max(32).default('') }),
  ])
  .default({ type: 'bearer' });

export const mcpServerSchema = z
  .strictObject({
    /** The upstream's Streamable HTTP endpoint, e.g. https://mcp.stripe.com. */
    url: z
      .string()
      .url()
      .refine((u) => /^https?:$/.test(new URL(u).protocol), 'must be an http(s) URL')
      .refine((u) => {
        const p = new URL(u);
        return !p.username && !p.password && !p.hash;
      }, 'must not carry credentials or a fragment'),
    auth: mcpAuth,
    test_secret: z.string().min(1).optional(),
    live_secret: z.string().min(1).optional(),
    /** Tool names and cost rules shipped with keyleash (`stripe`); `tools` entries come first. */
    preset: z.enum(['stripe']).optional(),
    /** Cost rules by tool name or glob (`list_*`); the first match wins, exact names before globs. */
    tools: z.record(toolGlob, toolRuleSchema).default({}),
    /** A tool no rule prices: `deny`/`auto` (refused with cost_unknown on a capped key), `free`, or a flat USD price. */
    unknown_cost: unknownCostSchema.default('deny'),
    /** The currency of an amount whose rule names none and whose arguments carry none. */
    default_currency: z.string().regex(/^[a-z]{3}$/).default('usd'),
    /** USD per one major unit, merged over the built-in rates. */
    fx: z.record(z.string().regex(/^[a-z]{3}$/), z.union([z.string(), z.number()])).default({}),
    /**
     * A tool result with `isError: true`: `charge` keeps the estimate (the tool may have acted),
     * `release` frees it (the server reports failures only when nothing happened).
     */
    tool_errors: z.enum(['charge', 'release']).default('charge'),
    /** How long a tools/call may take upstream (progress notifications restart it). */
    timeout_ms: z.number().int().positive().max(3_600_000).default(60_000),
    /** The largest JSON-RPC message an agent may send. */
    max_message_bytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(256 * 1024),
  })
  .refine((v) => v.test_secret === undefined || v.live_secret === undefined || v.test_secret !== v.live_secret, {
    message: 'the test and live secrets must differ: a test key must never reach a live credential',
    path: ['test_secret'],
  });

export const mcpServersSchema = z
  .record(z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'MCP server names are 1-32 of a-z 0-9 _ -, starting with a letter'), mcpServerSchema)
  .default({});

export type McpServerConfig = z.output<typeof mcpServerSchema>;
export type McpServersConfig = z.output<typeof mcpServersSchema>;
