import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './backends.js';
import { ADMIN_TOKEN, startGateway, stripeKey, type TestGateway } from './harness.js';

// The dashboard's server side without a browser: static files and headers, the cookie session
// and its CSRF token, the kill switch, the audit stream and export, and the overview.

let t: TestGateway;
beforeAll(async () => {
  t = await startGateway();
});
afterAll(async () => {
  await t?.close();
});

async function login(): Promise<{ cookie: string; csrf: string }> {
  const r = await fetch(`${t.apiUrl}/dashboard/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: ADMIN_TOKEN }),
  });
  expect(r.status).toBe(201);
  const setCookie = r.headers.get('set-cookie')!;
  return { cookie: setCookie.split(';')[0]!, csrf: ((await r.json()) as { csrf_token: string }).csrf_token };
}

describe('dashboard files', () => {
  it('serves the app with a strict CSP, no framing, no referrer, and the browser modules from node_modules', async () => {
    const redirect = await fetch(`${t.apiUrl}/dashboard`, { redirect: 'manual' });
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get('location')).toBe('/dashboard/');
    const page = await fetch(`${t.apiUrl}/dashboard/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('<script type="module" src="/dashboard/app.js"></script>');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline scripts
    expect(html).not.toMatch(/https?:\/\//); // no CDN
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');

    for (const f of ['preact.js', 'hooks.js', 'htm.js', 'uplot.js', 'uplot.css', '../../package.json']) {
      const r = await fetch(`${t.apiUrl}/dashboard/vendor/${f}`);
      if (f.startsWith('..')) {
        // fetch resolves it to /package.json, which no route serves: unmatched paths need the admin token.
        expect(r.status).toBe(401);
        continue;
      }
      expect(r.status, f).toBe(200);
      const body = await r.text();
      expect(body, f).not.toMatch(/from\s*["']preact["']/); // no bare specifiers: no import map needed
    }
    expect((await fetch(`${t.apiUrl}/dashboard/app.js`)).headers.get('content-type')).toMatch(/javascript/);
    expect((await fetch(`${t.apiUrl}/dashboard/../package.json`)).status).toBe(401);
  });
});

describe('dashboard session', () => {
  it('trades the admin token for an HttpOnly SameSite=Strict cookie and a CSRF token', async () => {
    const bad = await fetch(`${t.apiUrl}/dashboard/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: 'nope' }),
    });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('set-cookie')).toBeNull();
    const r = await fetch(`${t.apiUrl}/dashboard/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: ADMIN_TOKEN }),
    });
    const cookie = r.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^keyleash_session=[A-Za-z0-9_.-]{40,}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    expect(cookie).not.toContain(ADMIN_TOKEN);
    expect(r.headers.get('cache-control')).toBe('no-store');
    const body = await r.json();
    expect(body.csrf_token).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    // A form post (text/plain, as a cross-site form could send) is not a login.
    const form = await fetch(`${t.apiUrl}/dashboard/session`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: `token=${ADMIN_TOKEN}` });
    expect(form.status).not.toBe(201);
  });

  it('reads with the cookie, changes only with the CSRF header too, and never lets a cookie rescue a bad bearer', async () => {
    const { cookie, csrf } = await login();
    const k = await t.issue({ ...stripeKey, label: 'cookie-target' });
    const list = await fetch(`${t.apiUrl}/v1/keys`, { headers: { cookie } });
    expect(list.status).toBe(200);
    const again = await fetch(`${t.apiUrl}/dashboard/session`, { headers: { cookie } });
    expect((await again.json()).csrf_token).toBe(csrf);

    const noCsrf = await fetch(`${t.apiUrl}/v1/keys/${k.id}`, { method: 'DELETE', headers: { cookie } });
    expect(noCsrf.status).toBe(403);
    expect((await noCsrf.json()).code).toBe('csrf_token_invalid');
    const wrongCsrf = await fetch(`${t.apiUrl}/v1/keys/${k.id}`, { method: 'DELETE', headers: { cookie, 'x-keyleash-csrf': csrf.slice(1) + 'x' } });
    expect(wrongCsrf.status).toBe(403);
    const badBearer = await fetch(`${t.apiUrl}/v1/keys`, { headers: { cookie, authorization: 'Bearer wrong' } });
    expect(badBearer.status).toBe(401);
    expect((await t.admin('GET', `/v1/keys/${k.id}`)).body.status).toBe('active');

    const ok = await fetch(`${t.apiUrl}/v1/keys/${k.id}`, { method: 'DELETE', headers: { cookie, 'x-keyleash-csrf': csrf } });
    expect(ok.status).toBe(200);
    expect((await t.admin('GET', `/v1/keys/${k.id}`)).body.status).toBe('revoked');

    // Logging out ends the session.
    expect((await fetch(`${t.apiUrl}/dashboard/session`, { method: 'DELETE', headers: { cookie, 'x-keyleash-csrf': csrf } })).status).toBe(204);
    expect((await fetch(`${t.apiUrl}/v1/keys`, { headers: { cookie } })).status).toBe(401);
    expect((await fetch(`${t.apiUrl}/v1/keys`, { headers: { cookie: 'keyleash_session=forged' } })).status).toBe(401);
  });
});

describe('kill switch: POST /v1/keys/revoke', () => {
  it('refuses an empty filter, counts on a dry run, and revokes only the active keys that match', async () => {
    const empty = await t.admin('POST', '/v1/keys/revoke', {});
    expect(empty.status).toBe(400);
    expect(empty.body).toMatchObject({ code: 'invalid_request', param: 'body' });
    expect((await t.admin('POST', '/v1/keys/revoke', { dry_run: true })).status).toBe(400);
    expect((await t.admin('POST', '/v1/keys/revoke', { label_prefix: 'x', nope: 1 })).body.param).toBe('nope');

    const mine = await Promise.all([1, 2, 3].map((n) => t.issue({ ...stripeKey, label: `kill-me-${n}`, metadata: { run: 'r9' } })));
    const otherRun = await t.issue({ ...stripeKey, label: 'kill-me-4', metadata: { run: 'r10' } });
    const dry = await t.admin('POST', '/v1/keys/revoke', { label_prefix: 'kill-me-', metadata: { run: 'r9' }, dry_run: true });
    expect(dry.body).toMatchObject({ object: 'bulk_revoke', dry_run: true, matched: 3, revoked: 0 });
    expect(dry.body.key_ids.sort()).toEqual(mine.map((k) => k.id).sort());
    expect((await t.admin('GET', `/v1/keys/${mine[0]!.id}`)).body.status).toBe('active');

    const done = await t.admin('POST', '/v1/keys/revoke', { label_prefix: 'kill-me-', metadata: { run: 'r9' } });
    expect(done.body).toMatchObject({ dry_run: false, matched: 3, revoked: 3 });
    for (const k of mine) expect((await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 1, currency: 'usd' } })).body.code).toBe('key_revoked');
    expect((await t.admin('GET', `/v1/keys/${otherRun.id}`)).body.status).toBe('active');
    // Again: nothing active matches any more.
    expect((await t.admin('POST', '/v1/keys/revoke', { label_prefix: 'kill-me-', metadata: { run: 'r9' } })).body).toMatchObject({ matched: 0, revoked: 0 });
  });

  it('pages through more keys than one page holds; all: true revokes every active key', async () => {
    const g = await startGateway();
    try {
      await Promise.all(Array.from({ length: 230 }, (_, i) => g.issue({ ...stripeKey, label: `bulk-${i}` })));
      expect((await g.admin('POST', '/v1/keys/revoke', { label_prefix: 'bulk-', dry_run: true })).body.matched).toBe(230);
      const all = await g.admin('POST', '/v1/keys/revoke', { all: true });
      expect(all.body).toMatchObject({ matched: 230, revoked: 230 });
      expect((await g.admin('GET', '/v1/keys?status=active')).body.data).toHaveLength(0);
    } finally {
      await g.close();
    }
  });
});

describe('audit stream and export', () => {
  it('streams matching records as server-sent events, with a backfill', async () => {
    const k = await t.issue({ ...stripeKey, label: 'sse-key' });
    await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 100, currency: 'usd' } });
    const controller = new AbortController();
    const res = await fetch(`${t.apiUrl}/v1/audit/stream?key_id=${k.id}&backfill=10`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const events = () => [...text.matchAll(/event: audit\nid: \S+\ndata: (.*)\n\n/g)].map((m) => JSON.parse(m[1]!));
    const until = async (n: number) => {
      while (events().length < n) text += new TextDecoder().decode((await reader.read()).value);
    };
    await until(1);
    await t.proxy('/v1/customers', { token: k.token, method: 'POST', body: {} });
    await t.proxy('/v1/payment_intents', { token: (await t.issue()).token, body: { amount: 1, currency: 'usd' } });
    await until(2);
    controller.abort();
    expect(events().map((e) => [e.key_id, e.decision, e.code])).toEqual([
      [k.id, 'allow', null],
      [k.id, 'deny', 'endpoint_not_allowed'],
    ]);
    expect((await fetch(`${t.apiUrl}/v1/audit/stream`)).status).toBe(401);
    expect((await t.admin('GET', '/v1/audit/stream?decision=maybe')).status).toBe(400);
  });

  it('exports CSV (formula-safe) and NDJSON with the filters of /v1/audit', async () => {
    const k = await t.issue({ ...stripeKey, label: '=HYPERLINK("http://evil")' });
    await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 100, currency: 'usd' } });
    await t.proxy('/v1/payment_intents', { token: k.token, body: { amount: 1.5, currency: 'usd' } });
    const csv = await t.admin('GET', `/v1/audit/export?format=csv&key_id=${k.id}`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(csv.headers.get('content-disposition')).toMatch(/^attachment; filename="keyleash-audit-.*\.csv"$/);
    const lines = csv.text.trim().split('\r\n');
    expect(lines[0]).toBe('time,id,request_id,key_id,label,vendor,mode,method,path,status,decision,code,cost_usd,cost_micros,upstream_latency_ms');
    expect(lines).toHaveLength(3);
    expect(lines[1]).toContain(`"'=HYPERLINK(""http://evil"")"`);
    expect(lines[1]).toContain(',deny,invalid_amount,');

    const nd = await t.admin('GET', `/v1/audit/export?format=ndjson&key_id=${k.id}&decision=allow`);
    expect(nd.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    const records = nd.text.trim().split('\n').map((l) => JSON.parse(l));
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ key_id: k.id, decision: 'allow', cost_usd: 1 });
    expect((await t.admin('GET', '/v1/audit/export?format=xml')).body.param).toBe('format');
  });
});

const stores = [
  ...(await backends('dashboard')),
  // An in-memory store is read in-process (no second connection can see it).
  { name: 'sqlite :memory:', skip: false, store: () => ({ path: ':memory:' }), cleanup: async () => {} },
];
for (const backend of stores) describe.skipIf(backend.skip)(`overview and spend over time (${backend.name})`, () => {
  it('sums today per vendor, counts denials by code and ranks top spenders; a key has a spend series', async () => {
    const storeConfig = backend.store();
    const g = await startGateway(() => (storeConfig ? { store: storeConfig as never } : {}));
    try {
      const big = await g.issue({ ...stripeKey, label: 'big', daily_usd_cap: 100 });
      expect((await g.admin('POST', '/v1/budgets', { id: 'team:growth', limit_usd: 50, period: 'day' })).status).toBe(201);
      const small = await g.issue({ ...stripeKey, label: 'small', daily_usd_cap: 5, budgets: ['team:growth'] });
      for (const amount of [4000, 5000]) await g.proxy('/v1/payment_intents', { token: big.token, body: { amount, currency: 'usd' } });
      await g.proxy('/v1/payment_intents', { token: small.token, body: { amount: 300, currency: 'usd' } });
      await g.proxy('/v1/payment_intents', { token: small.token, body: { amount: 300, currency: 'usd' } });
      const o = (await g.admin('GET', '/v1/stats/overview')).body;
      expect(o).toMatchObject({ object: 'overview', spend_today_usd: 93, calls_today: 4, denials_today: 1, truncated: false });
      expect(o.breakdowns).toEqual([
        { dimension: 'vendor', rows: [{ name: 'stripe', spend_usd: 93, spend_micros: 93_000_000, calls: 4, denials: 1 }] },
        { dimension: 'budget', rows: [{ name: 'team:growth', spend_usd: 3, spend_micros: 3_000_000, calls: 2, denials: 1 }] },
      ]);
      expect(o.denials_by_code).toEqual([{ code: 'cap_exhausted', count: 1 }]);
      expect(o.top_spenders.map((s: any) => [s.label, s.spend_usd])).toEqual([['big', 90], ['small', 3]]);
      expect(o.calls_per_second).toBeCloseTo(4 / 60, 3);

      const series = (await g.admin('GET', `/v1/keys/${big.id}/spend`)).body;
      expect(series).toMatchObject({ object: 'spend_series', key_id: big.id });
      expect(series.points.reduce((n: number, p: any) => n + p.calls, 0)).toBe(2);
      expect(series.points.at(-1).cumulative_usd).toBe(90);
      expect((await g.admin('GET', '/v1/keys/key_nope/spend')).status).toBe(404);

      // Spend over time per vendor and per budget, in buckets that sum to today's figures.
      const byVendor = (await g.admin('GET', '/v1/stats/spend?range=1h')).body;
      expect(byVendor).toMatchObject({ object: 'spend_over_time', group_by: 'vendor', range: '1h', bucket_seconds: 60, series_total: 1 });
      expect(byVendor.buckets).toHaveLength(byVendor.series[0].spend_usd.length);
      expect(byVendor.series[0]).toMatchObject({ name: 'stripe', total_spend_usd: 93, total_calls: 4 });
      expect(byVendor.series[0].spend_micros.reduce((a: number, b: number) => a + b, 0)).toBe(93_000_000);
      expect(byVendor.series[0].denials.reduce((a: number, b: number) => a + b, 0)).toBe(1);
      const byBudget = (await g.admin('GET', '/v1/stats/spend?group_by=budget&range=24h')).body;
      expect(byBudget).toMatchObject({ group_by: 'budget', bucket_seconds: 1800 });
      expect(byBudget.series).toHaveLength(1);
      expect(byBudget.series[0]).toMatchObject({ name: 'team:growth', tenant_id: 'default', total_spend_usd: 3, total_calls: 2 });
      expect((await g.admin('GET', '/v1/stats/spend?range=2y')).body).toMatchObject({ code: 'invalid_request', param: 'range' });
      expect((await g.admin('GET', '/v1/stats/spend?group_by=key')).body).toMatchObject({ code: 'invalid_request', param: 'group_by' });
    } finally {
      await g.close();
      await backend.cleanup(storeConfig);
    }
  });
});

describe('audit reads off the event loop', () => {
  it('pages /v1/audit from the read-only worker exactly as the store pages it', async () => {
    const k = await t.issue({ ...stripeKey, label: 'paging-check' });
    for (const amount of [100, 200, 300, 400, 500]) await t.proxy('/v1/payment_intents', { token: k.token, body: { amount, currency: 'usd' } });
    await t.gw.audit.flush();
    const viaApi: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = (await t.admin('GET', `/v1/audit?key_id=${k.id}&limit=2${cursor ? `&cursor=${cursor}` : ''}`)).body;
      viaApi.push(...page.data.map((r: any) => r.id));
      cursor = page.next_cursor;
    } while (cursor);
    const direct = await t.gw.store.listAudit({ keyId: k.id, tenantId: 'default' }, 100, null);
    expect(viaApi).toEqual(direct.items.map((r) => r.id));
    expect(viaApi).toHaveLength(5);
    expect((await t.admin('GET', '/v1/audit?cursor=nope')).body).toMatchObject({ code: 'invalid_request', param: 'cursor' });
  });
});

describe('money as the dashboard shows it', () => {
  it('never shows a non-zero amount as $0.00: cents from $1, four places from a cent, six below', async () => {
    // @ts-expect-error the dashboard's plain browser module has no type declarations
    const { usd, contrastRatio } = await import('../web/format.js');
    expect(usd(0)).toBe('$0.00');
    expect(usd(0.000001)).toBe('$0.000001');
    expect(usd(0.0042)).toBe('$0.0042');
    expect(usd(0.009999)).toBe('$0.009999');
    expect(usd(0.0142)).toBe('$0.0142');
    expect(usd(0.5)).toBe('$0.50');
    expect(usd(12.3456)).toBe('$12.35');
    expect(usd(1234.5)).toBe('$1,234.50');
    expect(usd(null)).toBe('—');
    // Every whole number of micro-dollars below a dollar reads as non-zero.
    for (let micros = 1; micros < 1_000_000; micros += 997) expect(usd(micros / 1e6)).not.toMatch(/^\$0\.0*$/);
    expect(contrastRatio('#000000', '#ffffff')).toBeCloseTo(21, 5);
    expect(contrastRatio('rgb(17, 104, 63)', 'rgb(227, 246, 236)')).toBeGreaterThan(4.5);
  });
});
