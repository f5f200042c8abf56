import { describe, expect, it } from 'vitest';
import { toolRuleSchema } from './config-schema.js';
import { orderRules, priceToolCall, type ToolPricing, toolRuleFrom } from './cost.js';
import { screenMessage } from './screen.js';
import { decodeTools, globProblem, toolAllowed } from './tools.js';

const pricing = (tools: Record<string, unknown>, unknown: ToolPricing['unknownCost'] = { kind: 'deny' }): ToolPricing => ({
  rules: orderRules(Object.entries(tools).map(([match, r]) => ({ match, rule: toolRuleFrom(toolRuleSchema.parse(r)) }))),
  unknownCost: unknown,
  defaultCurrency: 'usd',
  fx: { eur: '1.20' },
});

describe('tool cost rules', () => {
  const p = pricing({
    'list_*': 'free',
    list_secrets: { usd: 1 },
    create_refund: { amount: { path: 'amount', currency_path: 'currency' } },
    charge: { amount: { path: 'price.amount', unit: 'major', currency: 'usd' }, quantity: 'quantity' },
    send: { count: { path: 'to', usd_each: 0.01 } },
    link: { unpriced: 'amount is in the price object' },
  });
  it.each([
    ['list_customers', {}, { kind: 'priced', micros: 0 }],
    ['list_secrets', {}, { kind: 'priced', micros: 1_000_000 }], // an exact name beats a glob written first
    ['create_refund', { amount: 1250 }, { kind: 'priced', micros: 12_500_000 }],
    ['create_refund', { amount: 1000, currency: 'EUR' }, { kind: 'priced', micros: 12_000_000 }],
    ['charge', { price: { amount: '2.50' }, quantity: 4 }, { kind: 'priced', micros: 10_000_000 }],
    ['charge', { price: { amount: 3 } }, { kind: 'priced', micros: 3_000_000 }],
    ['send', { to: ['a', 'b', 'c'] }, { kind: 'priced', micros: 30_000 }],
  ])('%s %j', (tool, args, want) => {
    expect(priceToolCall(p, tool, args)).toEqual(want);
  });
  it('refuses what it cannot price, never $0', () => {
    expect(priceToolCall(p, 'create_refund', {}).kind).toBe('unknown');
    expect(priceToolCall(p, 'create_refund', { amount: -5 }).kind).toBe('invalid');
    expect(priceToolCall(p, 'create_refund', { amount: 12.5 }).kind).toBe('invalid');
    expect(priceToolCall(p, 'create_refund', { amount: [1, 2] }).kind).toBe('invalid');
    expect(priceToolCall(p, 'create_refund', { amount: 100, currency: 'xyz' }).kind).toBe('unknown');
    expect(priceToolCall(p, 'charge', { price: { amount: 1 }, quantity: 1.5 }).kind).toBe('invalid');
    expect(priceToolCall(p, 'link', { price: 'price_1' }).kind).toBe('unknown');
    expect(priceToolCall(p, 'no_rule', {}).kind).toBe('unknown');
    expect(priceToolCall(pricing({}, { kind: 'fixed', micros: 5 }), 'no_rule', {})).toEqual({ kind: 'priced', micros: 5 });
  });
  it('checks rules at load', () => {
    expect(toolRuleSchema.safeParse({ usd: 1, free: true }).success).toBe(false);
    expect(toolRuleSchema.safeParse({ quantity: 'q', usd: 1 }).success).toBe(false);
    expect(toolRuleSchema.safeParse({ amount: { path: 'amount' } }).success).toBe(false);
  });
});

describe('tool globs', () => {
  it('matches names, never more', () => {
    expect(toolAllowed(['list_*'], 'list_customers')).toBe(true);
    expect(toolAllowed(['list_*'], 'xlist_customers')).toBe(false);
    expect(toolAllowed(['create_refund'], 'create_refund_all')).toBe(false);
    expect(toolAllowed(['*'], 'anything.at-all')).toBe(true);
    expect(toolAllowed(['a.b'], 'aXb')).toBe(false);
    expect(toolAllowed(['*'], 'bad name')).toBe(false);
    expect(globProblem('list customers')).not.toBeNull();
    expect(decodeTools(['tool:list_*', '/tools/create_refund', 'POST /tools/*', 'GET /tools/x', '/v1/refunds'])).toEqual(['list_*', 'create_refund', '*']);
  });
});

describe('screening JSON-RPC messages', () => {
  const screen = (v: unknown) => screenMessage(Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)));
  it('passes the methods served, with their tool and progress token', () => {
    const r = screen({ jsonrpc: '2.0', id: 'a1', method: 'tools/call', params: { name: 'x', arguments: { a: 1 }, _meta: { progressToken: 7 } } });
    expect(r).toMatchObject({ ok: true, message: { kind: 'request', toolName: 'x', progressToken: 7 } });
    expect(screen({ jsonrpc: '2.0', method: 'notifications/initialized' })).toMatchObject({ ok: true, message: { kind: 'notification' } });
  });
  it.each([
    ['[]', 'invalid_request'],
    [{ jsonrpc: '1.0', id: 1, method: 'ping' }, 'invalid_request'],
    [{ jsonrpc: '2.0', id: 1, method: 'resources/list' }, 'endpoint_not_allowed'],
    [{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x', arguments: 'y' } }, 'invalid_request'],
    [{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x', _meta: { progressToken: {} } } }, 'invalid_request'],
    [{ jsonrpc: '2.0', id: 1, method: 'tools/list', params: [] }, 'invalid_request'],
    [{ jsonrpc: '2.0', method: 'notifications/message' }, 'invalid_request'],
  ])('refuses %j', (msg, code) => {
    expect(screen(msg)).toMatchObject({ ok: false, code });
  });
});
