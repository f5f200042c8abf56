import { z } from 'zod';
import { ERRORS } from '../errors.js';
import { issueKeySchema } from '../keys/service.js';
import { bulkRevokeSchema } from './routes/bulk-revoke.js';
import { createBudgetSchema, updateBudgetSchema } from '../budgets/service.js';
import { createMintingKeySchema, rotateMintingKeySchema } from '../keys/minting.js';

// The control API's OpenAPI document. Request schemas come from the same zod schemas the routes
// validate with; a test checks every route the app serves is described here.

const str = { type: 'string' } as const;
const num = { type: 'number' } as const;
const int = { type: 'integer' } as const;
const nullable = (s: object) => ({ anyOf: [s, { type: 'null' }] });

const rateLimit = {
  type: 'object',
  description: 'A token bucket: `requests` at most, refilled at `requests` per `per`. Past it: 429 rate_limited with Retry-After.',
  properties: { requests: int, per: { enum: ['second', 'minute', 'hour'] } },
};

// Fields marked "null only when used is false" are unknown for a minted key revoked before its first use.
const unknownBeforeUse = (s: object) => ({ ...nullable(s), description: 'null only when `used` is false.' });

const keyView = {
  type: 'object',
  required: ['object', 'id', 'label', 'vendor', 'mode', 'allowed_endpoints', 'daily_usd_cap', 'status', 'created_at', 'expires_at'],
  properties: {
    object: { const: 'vault_key' },
    id: { ...str, description: 'Public id, used to read and revoke the key.' },
    token: { ...str, description: 'The secret vault key (vk_test_… / vk_live_…). Only in the answer to POST /v1/keys.' },
    label: unknownBeforeUse(str),
    vendor: unknownBeforeUse(str),
    mode: unknownBeforeUse({ enum: ['test', 'live'] }),
    allowed_endpoints: unknownBeforeUse({ type: 'array', items: str }),
    allowed_tools: { type: 'array', items: str, description: 'Only on a key for an MCP server (vendor "mcp:<server>"): the tools it may list and call, by name or glob (docs/mcp.md).' },
    daily_usd_cap: nullable(num),
    daily_cap_micros: nullable(int),
    metadata: unknownBeforeUse({ type: 'object', additionalProperties: str }),
    status: { enum: ['active', 'expired', 'revoked'] },
    created_at: unknownBeforeUse({ ...str, format: 'date-time' }),
    expires_at: unknownBeforeUse({ ...str, format: 'date-time' }),
    revoked_at: nullable({ ...str, format: 'date-time' }),
    spend_today_usd: { ...num, description: 'Settled spend plus open reservations in the current UTC day.' },
    spend_today_micros: int,
    remaining_today_usd: nullable(num),
    remaining_today_micros: nullable(int),
    request_count: int,
    last_used_at: nullable({ ...str, format: 'date-time' }),
    budgets: { type: 'array', items: str, description: 'The budgets every call of this key also reserves against.' },
    rate_limit: nullable(rateLimit),
    origin: { enum: ['issued', 'minted'], description: 'issued through POST /v1/keys, or minted from a minting key (docs/minting.md).' },
    minting_key_id: nullable(str),
    parent_id: nullable({ ...str, description: 'The key a narrowed key was narrowed from; its spend counts against it too.' }),
    used: { const: false, description: 'Only on a minted key revoked before its first use: its scope was never seen, so those fields are null.' },
  },
};

const mintingKeyView = {
  type: 'object',
  required: ['object', 'id', 'mode', 'vendors', 'allowed_endpoints', 'max_daily_usd_cap', 'max_ttl', 'status', 'version', 'versions', 'created_at'],
  properties: {
    object: { const: 'minting_key' },
    id: { ...str, description: 'Public id (mk_…).' },
    secret: { ...str, description: 'klm_<mode>_… for the SDKs\' Minter. Only in the answers to create and rotate.' },
    label: str,
    mode: { enum: ['test', 'live'] },
    vendors: { type: 'array', items: str },
    allowed_endpoints: { type: 'array', items: str, description: 'The widest patterns a minted key can have.' },
    max_daily_usd_cap: nullable(num),
    max_daily_cap_micros: nullable(int),
    max_ttl: { ...int, description: 'Seconds a minted key lives at most, from its iat.' },
    budgets: { type: 'array', items: str, description: 'Budgets every minted key counts against.' },
    allowed_budgets: { type: 'array', items: str, description: 'Further budgets minted keys may name (ids, or prefixes ending in *).' },
    metadata: { type: 'object', additionalProperties: str },
    status: { enum: ['active', 'revoked'] },
    version: { ...int, description: 'The current secret version.' },
    versions: {
      type: 'array',
      items: { type: 'object', properties: { version: int, created_at: { ...str, format: 'date-time' }, retires_at: nullable({ ...str, format: 'date-time' }) } },
    },
    created_at: { ...str, format: 'date-time' },
    revoked_at: nullable({ ...str, format: 'date-time' }),
    keys_revoked: { ...int, description: 'Only in the answer to DELETE: the minted keys in use it revoked.' },
  },
};

const budgetView = {
  type: 'object',
  required: ['object', 'id', 'limit_usd', 'period', 'frozen', 'window', 'spend_usd', 'remaining_usd'],
  properties: {
    object: { const: 'budget' },
    id: { ...str, description: 'The budget name, e.g. "user:u42".' },
    limit_usd: num,
    limit_micros: int,
    period: { enum: ['day', 'month', 'total'], description: 'day = UTC day, month = UTC calendar month, total = forever.' },
    frozen: { type: 'boolean', description: 'A frozen budget refuses every call of its keys and every new key attached to it.' },
    metadata: { type: 'object', additionalProperties: str },
    rate_limit: nullable(rateLimit),
    window: { ...str, description: 'The window the spend is for: YYYY-MM-DD, YYYY-MM or "total".' },
    spend_usd: { ...num, description: 'Settled spend plus open reservations of every attached key in the window.' },
    spend_micros: int,
    remaining_usd: num,
    remaining_micros: int,
    created_at: { ...str, format: 'date-time' },
    updated_at: { ...str, format: 'date-time' },
  },
};

const auditRecord = {
  type: 'object',
  properties: {
    object: { const: 'audit_record' },
    id: str,
    time: { ...str, format: 'date-time' },
    request_id: str,
    key_id: nullable(str),
    label: nullable(str),
    vendor: nullable(str),
    mode: nullable({ enum: ['test', 'live'] }),
    method: str,
    path: str,
    status: int,
    decision: { enum: ['allow', 'deny'] },
    code: nullable({ ...str, description: 'null when the call was forwarded and answered; else the error code.' }),
    cost_usd: num,
    cost_micros: int,
    upstream_latency_ms: nullable(num),
  },
};

const vendor = {
  type: 'object',
  required: ['object', 'name', 'kind', 'origin', 'modes', 'auth', 'unknown_cost', 'endpoints'],
  properties: {
    object: { const: 'vendor' },
    name: { ...str, description: 'The name keys are issued for and the proxy prefix, e.g. "openai" (/openai/v1/...).' },
    kind: { enum: ['builtin', 'generic', 'mcp'], description: 'mcp: an upstream MCP server, reached at {PROXY}/mcp/<server> (docs/mcp.md); its endpoints are "tools/call <tool>" cost rules.' },
    origin: { ...str, description: 'The vendor origin calls are forwarded to (its configured base_url).' },
    modes: { type: 'array', items: { enum: ['test', 'live'] }, description: 'Modes with a credential configured.' },
    auth: { ...str, description: 'How the real credential is injected (bearer, basic, header <name>, query <name>). Never the secret.' },
    unknown_cost: { ...str, description: 'What a call with no cost rule is charged: auto, free, deny or a fixed price.' },
    endpoints: {
      type: 'array',
      items: {
        type: 'object',
        required: ['match', 'cost'],
        properties: { match: { ...str, description: '"METHOD /path" pattern' }, cost: { ...str, description: 'The cost rule' } },
      },
    },
  },
  additionalProperties: true,
};

const error = {
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { enum: Object.keys(ERRORS) },
    message: str,
    param: { ...str, description: 'The request field at fault, when there is one.' },
    request_id: str,
    docs: str,
  },
};

const list = (item: string) => ({
  type: 'object',
  properties: {
    object: { const: 'list' },
    data: { type: 'array', items: { $ref: `#/components/schemas/${item}` } },
    has_more: { type: 'boolean' },
    next_cursor: nullable(str),
  },
});

const json = (ref: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } });
const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [String(c), { description: 'Error', content: json('Error') }]));
const q = (name: string, description: string, schema: object = str) => ({ name, in: 'query', description, schema });

export function openapiDocument() {
  return {
    openapi: '3.1.0',
    info: {
      title: 'keyleash control API',
      version: '0.1.0',
      description: 'Issue, read, list and revoke vault keys; read, tail and export the audit log. Authenticate with `Authorization: Bearer <admin token>` (the dashboard uses a session cookie plus an X-Keyleash-CSRF header instead). Every route needs it except the ones marked `security: []`. Paths are sent in their one plain spelling (no escapes of unreserved characters, no dot segments, no absolute URLs), else 400. Key and minting-key creation is under a per-token quota (429 rate_limited with Retry-After), and an address sending wrong admin tokens is slowed with 429 too.',
    },
    components: {
      securitySchemes: { admin: { type: 'http', scheme: 'bearer' } },
      schemas: {
        IssueKeyRequest: z.toJSONSchema(issueKeySchema, { io: 'input' }),
        VaultKey: keyView,
        AuditRecord: auditRecord,
        Error: error,
        KeyList: list('VaultKey'),
        AuditList: list('AuditRecord'),
        AdminAuditRecord: {
          type: 'object',
          description: 'One control-plane change: who (the admin token\'s name), how (token or dashboard), from where, and what.',
          properties: {
            object: { const: 'admin_audit_record' },
            id: { type: 'string' },
            time: { type: 'string', format: 'date-time' },
            tenant_id: { type: 'string' },
            actor: { type: 'string' },
            via: { enum: ['token', 'dashboard'] },
            ip: { type: 'string' },
            request_id: { type: 'string' },
            method: { type: 'string' },
            route: { type: 'string' },
            target: { type: ['string', 'null'] },
            status: { type: 'integer' },
            detail: { type: ['object', 'null'] },
          },
        },
        AdminAuditList: list('AdminAuditRecord'),
        Vendor: vendor,
        BulkRevokeRequest: z.toJSONSchema(bulkRevokeSchema, { io: 'input' }),
        BulkRevokeResult: {
          type: 'object',
          properties: {
            object: { const: 'bulk_revoke' },
            dry_run: { type: 'boolean' },
            matched: { ...int, description: 'Active keys that matched the filter.' },
            revoked: { ...int, description: 'Keys this call revoked (0 on a dry run).' },
            key_ids: { type: 'array', items: str, description: 'Revoked ids; on a dry run, the ids that would be.' },
          },
        },
        Overview: {
          type: 'object',
          description:
            'Today (UTC) from the audit log, every record counted. `breakdowns` holds one entry per dimension: `vendor`, then `budget` (a key on several budgets counts in each; names are `tenant/id` outside the default tenant). Figures may be up to a second old: one computation is shared by all requests for a while.',
          properties: {
            object: { const: 'overview' },
            day: str,
            generated_at: { ...str, format: 'date-time' },
            spend_today_usd: num,
            spend_today_micros: int,
            calls_today: int,
            denials_today: int,
            calls_per_second: { ...num, description: 'Over the last rate_window_seconds.' },
            rate_window_seconds: int,
            breakdowns: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  dimension: str,
                  rows: {
                    type: 'array',
                    items: { type: 'object', properties: { name: str, spend_usd: num, spend_micros: int, calls: int, denials: int } },
                  },
                },
              },
            },
            denials_by_code: { type: 'array', items: { type: 'object', properties: { code: str, count: int } } },
            top_spenders: {
              type: 'array',
              items: {
                type: 'object',
                properties: { key_id: str, label: nullable(str), vendor: nullable(str), spend_usd: num, spend_micros: int, calls: int },
              },
            },
            scanned: { ...int, description: 'Records counted: every record of the day (equals calls_today).' },
            truncated: { type: 'boolean', description: 'Always false: every record of the day is counted.' },
          },
        },
        SpendSeries: {
          type: 'object',
          properties: {
            object: { const: 'spend_series' },
            key_id: str,
            bucket_seconds: int,
            from: { ...str, format: 'date-time' },
            to: { ...str, format: 'date-time' },
            points: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  t: { ...str, format: 'date-time' },
                  spend_usd: num,
                  spend_micros: int,
                  cumulative_usd: num,
                  calls: int,
                  denials: int,
                },
              },
            },
            truncated: { type: 'boolean' },
          },
        },
        SpendOverTime: {
          type: 'object',
          description: 'Spend, calls and denials per bucket, one series per vendor or per budget, from the audit log. The 20 largest series by spend are named; the rest are summed into one "(other)" series.',
          properties: {
            object: { const: 'spend_over_time' },
            group_by: { enum: ['vendor', 'budget'] },
            range: { enum: ['1h', '24h', '7d', '30d'] },
            bucket_seconds: int,
            from: { ...str, format: 'date-time' },
            to: { ...str, format: 'date-time' },
            buckets: { type: 'array', items: { ...str, format: 'date-time' }, description: 'The start of each bucket; every series has one value per bucket.' },
            series: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  name: str,
                  tenant_id: { ...str, description: 'group_by=budget only.' },
                  spend_usd: { type: 'array', items: num },
                  spend_micros: { type: 'array', items: int },
                  calls: { type: 'array', items: int },
                  denials: { type: 'array', items: int },
                  total_spend_usd: num,
                  total_spend_micros: int,
                  total_calls: int,
                },
              },
            },
            series_total: { ...int, description: 'How many series there are before the 20 largest are kept.' },
          },
        },
        VendorList: list('Vendor'),
        CreateBudgetRequest: z.toJSONSchema(createBudgetSchema, { io: 'input' }),
        UpdateBudgetRequest: z.toJSONSchema(updateBudgetSchema, { io: 'input' }),
        Budget: budgetView,
        BudgetList: list('Budget'),
        CreateMintingKeyRequest: z.toJSONSchema(createMintingKeySchema, { io: 'input' }),
        RotateMintingKeyRequest: z.toJSONSchema(rotateMintingKeySchema, { io: 'input' }),
        MintingKey: mintingKeyView,
        MintingKeyList: list('MintingKey'),
        AlertDelivery: {
          type: 'object',
          description:
            'One webhook delivery of one event. POSTed with `Keyleash-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, `Keyleash-Event` and `Keyleash-Delivery`; retried with exponential backoff until a 2xx or max_attempts.',
          properties: {
            object: { const: 'alert_delivery' },
            id: str,
            event_id: str,
            type: { enum: ['cap.exhausted', 'budget.threshold', 'key.revoked', 'kill_switch.used'] },
            url: str,
            state: { enum: ['pending', 'delivered', 'failed'] },
            attempts: {
              type: 'array',
              items: { type: 'object', properties: { at: { ...str, format: 'date-time' }, status: nullable(int), error: nullable(str) } },
            },
            next_attempt_at: nullable({ ...str, format: 'date-time' }),
            created_at: { ...str, format: 'date-time' },
          },
        },
        AlertDeliveryList: list('AlertDelivery'),
        BudgetDeleted: { type: 'object', properties: { object: { const: 'budget' }, id: str, deleted: { const: true } } },
      },
    },
    security: [{ admin: [] }],
    paths: {
      '/v1/keys': {
        post: {
          operationId: 'issueKey',
          summary: 'Issue a vault key',
          description:
            'With `Idempotency-Key`, a retry of the same request (same caller, same JSON body) within 24 hours answers 201 with the key it first issued, token included, and `Idempotent-Replayed: true`; it never issues a second key. The token is recomputed from a server secret, never stored. The same Idempotency-Key with a different body (or after 24 hours) is 400 `idempotency_key_reused`.',
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              description: '1-255 characters, e.g. a UUID; unique per issuance you mean to make.',
              schema: { type: 'string', minLength: 1, maxLength: 255 },
            },
          ],
          requestBody: { required: true, content: json('IssueKeyRequest') },
          responses: {
            '201': {
              description: 'Issued (or, for a retry with the same Idempotency-Key, the key issued first); `token` is shown only to the issuing request and its retries.',
              headers: { 'Idempotent-Replayed': { description: '`true` on a retry answered with the key issued first.', schema: str } },
              content: json('VaultKey'),
            },
            ...errors(400, 401, 413, 415, 429),
          },
        },
        get: {
          operationId: 'listKeys',
          summary: 'List vault keys, newest first',
          parameters: [
            q('status', 'active, expired or revoked', { enum: ['active', 'expired', 'revoked'] }),
            q('vendor', 'Only keys for this vendor'),
            q('mode', 'test or live', { enum: ['test', 'live'] }),
            q('label_prefix', 'Only keys whose label starts with this'),
            q('minting_key', 'Only keys minted from this minting key'),
            q('metadata[key]', 'Only keys whose metadata has key=value; repeatable'),
            q('limit', '1-100, default 20', int),
            q('cursor', 'next_cursor from the previous page'),
          ],
          responses: { '200': { description: 'A page of keys', content: json('KeyList') }, ...errors(400, 401) },
        },
      },
      '/v1/keys/{id}': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: str }],
        get: {
          operationId: 'getKey',
          summary: 'Read a key with its spend today, remaining cap, status and request count',
          responses: { '200': { description: 'The key', content: json('VaultKey') }, ...errors(401, 404) },
        },
        delete: {
          operationId: 'revokeKey',
          summary: 'Revoke a key (idempotent). No call with it reaches the vendor once this returns.',
          responses: { '200': { description: 'The revoked key', content: json('VaultKey') }, ...errors(401, 404) },
        },
      },
      '/v1/audit': {
        get: {
          operationId: 'listAudit',
          summary: 'Read the audit log, newest first: one record per proxied call, allowed or denied',
          parameters: [
            q('key_id', 'Only this key'),
            q('vendor', 'Only this vendor'),
            q('decision', 'allow or deny', { enum: ['allow', 'deny'] }),
            q('code', 'Only records with this error code'),
            q('limit', '1-1000, default 100', int),
            q('cursor', 'next_cursor from the previous page'),
          ],
          responses: { '200': { description: 'A page of records', content: json('AuditList') }, ...errors(400, 401) },
        },
      },
      '/v1/admin/audit': {
        get: {
          operationId: 'listAdminAudit',
          summary: 'Read the admin audit trail, newest first: every control-plane change with actor, address and request id (default tenant only)',
          parameters: [
            q('actor', 'Only this admin token name'),
            q('tenant_id', 'Only changes in this tenant'),
            q('since', 'ISO date or time, inclusive'),
            q('until', 'ISO date or time, exclusive'),
            q('limit', '1-1000, default 100', int),
            q('cursor', 'next_cursor from the previous page'),
          ],
          responses: { '200': { description: 'A page of records', content: json('AdminAuditList') }, ...errors(400, 401) },
        },
      },
      '/v1/keys/revoke': {
        post: {
          operationId: 'revokeKeysMatching',
          summary: 'Kill switch: revoke every active key matching a filter',
          description:
            'Every given field must match. An empty filter is refused (400) unless `all` is true. `dry_run` counts without revoking.',
          requestBody: { required: true, content: json('BulkRevokeRequest') },
          responses: { '200': { description: 'How many matched and were revoked', content: json('BulkRevokeResult') }, ...errors(400, 401, 403) },
        },
      },
      '/v1/minting_keys': {
        post: {
          operationId: 'createMintingKey',
          summary: 'Create a minting key: whoever holds its secret mints vault keys within its policy, offline (docs/minting.md)',
          requestBody: { required: true, content: json('CreateMintingKeyRequest') },
          responses: { '201': { description: 'Created; `secret` is shown only here.', content: json('MintingKey') }, ...errors(400, 401, 403, 429) },
        },
        get: {
          operationId: 'listMintingKeys',
          summary: 'List minting keys, newest first (never their secrets)',
          parameters: [q('limit', '1-100, default 20', int), q('cursor', 'next_cursor from the previous page')],
          responses: { '200': { description: 'A page of minting keys', content: json('MintingKeyList') }, ...errors(400, 401) },
        },
      },
      '/v1/minting_keys/{id}': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: str }],
        get: {
          operationId: 'getMintingKey',
          summary: 'Read a minting key and its secret versions',
          responses: { '200': { description: 'The minting key', content: json('MintingKey') }, ...errors(401, 404) },
        },
        delete: {
          operationId: 'revokeMintingKey',
          summary: 'Revoke a minting key and every key minted from it, used or not (idempotent)',
          responses: { '200': { description: 'The revoked minting key', content: json('MintingKey') }, ...errors(401, 404) },
        },
      },
      '/v1/minting_keys/{id}/rotate': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: str }],
        post: {
          operationId: 'rotateMintingKey',
          summary: 'A new secret; keys of the older ones work until the grace period ends, then are refused',
          requestBody: { required: false, content: json('RotateMintingKeyRequest') },
          responses: { '200': { description: 'Rotated; the new `secret` is shown only here.', content: json('MintingKey') }, ...errors(400, 401, 404, 429) },
        },
      },
      '/v1/budgets': {
        post: {
          operationId: 'createBudget',
          summary: 'Create a budget: a USD limit per period that attached keys reserve against',
          requestBody: { required: true, content: json('CreateBudgetRequest') },
          responses: { '201': { description: 'Created', content: json('Budget') }, ...errors(400, 401, 409) },
        },
        get: {
          operationId: 'listBudgets',
          summary: 'List budgets by id, each with its spend in the current window',
          parameters: [q('limit', '1-100, default 20', int), q('cursor', 'next_cursor from the previous page')],
          responses: { '200': { description: 'A page of budgets', content: json('BudgetList') }, ...errors(400, 401) },
        },
      },
      '/v1/budgets/{id}': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: str }],
        get: {
          operationId: 'getBudget',
          summary: 'Read a budget with its spend and remaining limit in the current window',
          responses: { '200': { description: 'The budget', content: json('Budget') }, ...errors(401, 404) },
        },
        patch: {
          operationId: 'updateBudget',
          summary: 'Change the limit, frozen flag or metadata; effective for the next call',
          requestBody: { required: true, content: json('UpdateBudgetRequest') },
          responses: { '200': { description: 'The budget', content: json('Budget') }, ...errors(400, 401, 404) },
        },
        delete: {
          operationId: 'deleteBudget',
          summary: 'Delete a budget no active key is attached to (409 budget_in_use otherwise)',
          responses: { '200': { description: 'Deleted', content: json('BudgetDeleted') }, ...errors(401, 404, 409) },
        },
      },
      '/v1/budgets/{id}/spend': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: str }],
        get: {
          operationId: 'budgetSpend',
          summary: "A budget's spend in one window (default: the current one)",
          parameters: [q('window', 'YYYY-MM-DD (day), YYYY-MM (month) or total')],
          responses: { '200': { description: 'The budget, with spend for that window', content: json('Budget') }, ...errors(400, 401, 404) },
        },
      },
      '/v1/budgets/{id}/freeze': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: str }],
        post: {
          operationId: 'freezeBudget',
          summary: 'Freeze: every call of every attached key is refused (403 budget_frozen) and no key can be issued against it',
          responses: { '200': { description: 'The frozen budget', content: json('Budget') }, ...errors(401, 404) },
        },
      },
      '/v1/budgets/{id}/unfreeze': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: str }],
        post: {
          operationId: 'unfreezeBudget',
          summary: 'Unfreeze a budget',
          responses: { '200': { description: 'The budget', content: json('Budget') }, ...errors(401, 404) },
        },
      },
      '/v1/alerts/deliveries': {
        get: {
          operationId: 'listAlertDeliveries',
          summary: "The tenant's alert webhook deliveries, newest first, with every attempt (kept in memory per process)",
          parameters: [q('limit', '1-1000, default 100', int)],
          responses: { '200': { description: 'The deliveries', content: json('AlertDeliveryList') }, ...errors(400, 401) },
        },
      },
      '/v1/keys/{id}/spend': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: str }],
        get: {
          operationId: 'keySpendSeries',
          summary: "A key's spend and calls over time (last 24 h at most), in buckets, from the audit log",
          responses: { '200': { description: 'The series', content: json('SpendSeries') }, ...errors(401, 404) },
        },
      },
      '/v1/audit/stream': {
        get: {
          operationId: 'streamAudit',
          summary: 'Live tail of the audit log as server-sent events (`event: audit`, `data`: an AuditRecord)',
          parameters: [
            q('key_id', 'Only this key'),
            q('vendor', 'Only this vendor'),
            q('decision', 'allow or deny', { enum: ['allow', 'deny'] }),
            q('code', 'Only records with this error code'),
            q('backfill', 'Send this many recent matching records first (0-1000)', int),
          ],
          responses: { '200': { description: 'text/event-stream', content: { 'text/event-stream': { schema: str } } }, ...errors(400, 401) },
        },
      },
      '/v1/audit/export': {
        get: {
          operationId: 'exportAudit',
          summary: 'Export the audit log, newest first, as CSV or NDJSON',
          parameters: [
            q('format', 'csv or ndjson (default)', { enum: ['csv', 'ndjson'] }),
            q('key_id', 'Only this key'),
            q('vendor', 'Only this vendor'),
            q('decision', 'allow or deny', { enum: ['allow', 'deny'] }),
            q('code', 'Only records with this error code'),
            q('since', 'Only records at or after this time (RFC 3339 or Unix seconds)'),
            q('limit', 'At most this many records (default: all)', int),
          ],
          responses: {
            '200': {
              description: 'The records, streamed',
              content: { 'text/csv': { schema: str }, 'application/x-ndjson': { schema: str } },
            },
            ...errors(400, 401),
          },
        },
      },
      '/v1/stats/overview': {
        get: {
          operationId: 'overview',
          summary: 'Today at a glance: spend per vendor, calls, calls/s, denials by code, top spenders',
          responses: { '200': { description: 'The overview', content: json('Overview') }, ...errors(401) },
        },
      },
      '/v1/stats/spend': {
        get: {
          operationId: 'spendOverTime',
          summary: 'Spend over time per vendor or per budget (1 h in minutes, 24 h in half hours, 7 d in 6 h, 30 d in days)',
          parameters: [q('group_by', 'vendor (default) or budget'), q('range', '1h, 24h (default), 7d or 30d')],
          responses: { '200': { description: 'The series', content: json('SpendOverTime') }, ...errors(400, 401) },
        },
      },
      '/v1/vendors': {
        get: {
          operationId: 'listVendors',
          summary: "The configured vendors, the modes keys can be issued in, and their endpoints' cost rules (never a secret)",
          responses: { '200': { description: 'The vendors', content: json('VendorList') }, ...errors(401) },
        },
      },
      '/metrics': {
        get: {
          operationId: 'metrics',
          security: [],
          summary: 'Prometheus metrics (also on the proxy listener for requests without Authorization)',
          responses: { '200': { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: str } } } },
        },
      },
      '/healthz': {
        get: { operationId: 'health', security: [], summary: 'Liveness', responses: { '200': { description: 'Alive' } } },
      },
      '/readyz': {
        get: {
          operationId: 'ready',
          security: [],
          summary: 'Readiness: the store answers',
          responses: { '200': { description: 'Ready' }, '503': { description: 'The store is unavailable' } },
        },
      },
      '/openapi.json': {
        get: { operationId: 'openapi', security: [], summary: 'This document', responses: { '200': { description: 'OpenAPI 3.1' } } },
      },
    },
  };
}
