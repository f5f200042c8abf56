import { z } from 'zod';
import { ERRORS } from '../errors.js';
import { issueKeySchema } from '../keys/service.js';

// The control API's OpenAPI document. Request schemas come from the same zod schemas the routes
// validate with; a test checks every route the app serves is described here.

const str = { type: 'string' } as const;
const num = { type: 'number' } as const;
const int = { type: 'integer' } as const;
const nullable = (s: object) => ({ anyOf: [s, { type: 'null' }] });

const keyView = {
  type: 'object',
  required: ['object', 'id', 'label', 'vendor', 'mode', 'allowed_endpoints', 'daily_usd_cap', 'status', 'created_at', 'expires_at'],
  properties: {
    object: { const: 'vault_key' },
    id: { ...str, description: 'Public id, used to read and revoke the key.' },
    token: { ...str, description: 'The secret vault key (vk_test_… / vk_live_…). Only in the answer to POST /v1/keys.' },
    label: str,
    vendor: str,
    mode: { enum: ['test', 'live'] },
    allowed_endpoints: { type: 'array', items: str },
    daily_usd_cap: nullable(num),
    daily_cap_micros: nullable(int),
    metadata: { type: 'object', additionalProperties: str },
    status: { enum: ['active', 'expired', 'revoked'] },
    created_at: { ...str, format: 'date-time' },
    expires_at: { ...str, format: 'date-time' },
    revoked_at: nullable({ ...str, format: 'date-time' }),
    spend_today_usd: { ...num, description: 'Settled spend plus open reservations in the current UTC day.' },
    spend_today_micros: int,
    remaining_today_usd: nullable(num),
    remaining_today_micros: nullable(int),
    request_count: int,
    last_used_at: nullable({ ...str, format: 'date-time' }),
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
      description: 'Issue, read, list and revoke vault keys; read the audit log. Authenticate with `Authorization: Bearer <admin token>`.',
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
      },
    },
    security: [{ admin: [] }],
    paths: {
      '/v1/keys': {
        post: {
          operationId: 'issueKey',
          summary: 'Issue a vault key',
          requestBody: { required: true, content: json('IssueKeyRequest') },
          responses: { '201': { description: 'Issued; `token` is shown only here.', content: json('VaultKey') }, ...errors(400, 401, 413, 415) },
        },
        get: {
          operationId: 'listKeys',
          summary: 'List vault keys, newest first',
          parameters: [
            q('status', 'active, expired or revoked', { enum: ['active', 'expired', 'revoked'] }),
            q('vendor', 'Only keys for this vendor'),
            q('mode', 'test or live', { enum: ['test', 'live'] }),
            q('label_prefix', 'Only keys whose label starts with this'),
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
