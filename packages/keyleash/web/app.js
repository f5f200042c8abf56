// The keyleash dashboard: preact + htm, no build step. It talks to the control API only, with
// the session cookie set at login (HttpOnly: this script never sees it) and the CSRF token kept
// in memory for changes. Everything is rendered as text by preact, never as HTML.
import { h, render } from '/dashboard/vendor/preact.js';
import { useCallback, useEffect, useRef, useState } from '/dashboard/vendor/hooks.js';
import htm from '/dashboard/vendor/htm.js';
import uPlot from '/dashboard/vendor/uplot.js';
import { shownDeep } from '/dashboard/text.js';

const html = htm.bind(h);

// ---------------------------------------------------------------------------------------------
// API

let csrfToken = null;
let onSessionLost = () => {};

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-keyleash-csrf'] = csrfToken;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  const text = await res.text();
  let data = null;
  try {
    // Every string shown as text with its control characters visible (text.js).
    data = text ? shownDeep(JSON.parse(text)) : null;
  } catch {
    data = null;
  }
  if (res.status === 401 && path !== '/dashboard/session') onSessionLost();
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** "user_id=u42, team=payments" → { user_id: 'u42', team: 'payments' } */
function parseMeta(text) {
  const out = {};
  for (const part of text.split(/[,\s]+/)) {
    if (!part) continue;
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Formatting

const usdFmt = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 2 });
const usd = (n) => (n === null || n === undefined ? '—' : usdFmt.format(n));

function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hrs / 24)}d`;
}

const ago = (iso) => (iso ? `${duration(Date.now() - Date.parse(iso))} ago` : '—');
const timeOf = (iso) => new Date(iso).toLocaleTimeString([], { hour12: false });
const dateTime = (iso) => (iso ? new Date(iso).toLocaleString([], { hour12: false }) : '—');

// ---------------------------------------------------------------------------------------------
// Hooks

function useHashRoute() {
  const [hash, setHash] = useState(location.hash || '#/keys');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/keys');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

/** Calls `load` now and every `ms`, and whenever `deps` change; returns [data, error, reload]. */
function usePoll(load, ms, deps) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const gen = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++gen.current;
    try {
      const d = await load();
      if (mine === gen.current) {
        setData(d);
        setError(null);
      }
    } catch (e) {
      if (mine === gen.current) setError(e);
    }
  }, deps);
  useEffect(() => {
    reload();
    const t = setInterval(reload, ms);
    return () => {
      clearInterval(t);
      gen.current++;
    };
  }, [reload, ms]);
  return [data, error, reload];
}

// ---------------------------------------------------------------------------------------------
// Small components

const Badge = ({ kind, children }) => html`<span class=${`badge badge-${kind}`}>${children}</span>`;

function SpendBar({ spend, cap }) {
  const pct = cap ? Math.min(100, (spend / cap) * 100) : 0;
  const level = pct >= 90 ? 'high' : pct >= 60 ? 'mid' : 'low';
  return html`<div class="spend" title=${cap === null ? 'no cap' : `${pct.toFixed(1)}% of the daily cap`}>
    <div class="spend-text"><strong>${usd(spend)}</strong><span class="muted"> / ${cap === null ? 'no cap' : usd(cap)}</span></div>
    ${cap !== null && html`<div class="bar"><div class=${`bar-fill bar-${level}`} style=${{ width: `${pct}%` }}></div></div>`}
  </div>`;
}

function ErrorNote({ error }) {
  if (!error) return null;
  return html`<div class="note note-error" role="alert">${error.code ? `${error.code}: ` : ''}${error.message}</div>`;
}

function Modal({ title, children, onCancel, onConfirm, confirmLabel, danger }) {
  useEffect(() => {
    const key = (e) => e.key === 'Escape' && onCancel();
    addEventListener('keydown', key);
    return () => removeEventListener('keydown', key);
  }, [onCancel]);
  return html`<div class="modal-backdrop" onClick=${(e) => e.target === e.currentTarget && onCancel()}>
    <div class="modal" role="dialog" aria-modal="true" aria-label=${title} data-testid="confirm-dialog">
      <h2>${title}</h2>
      <div class="modal-body">${children}</div>
      <div class="modal-actions">
        <button class="btn" onClick=${onCancel}>Cancel</button>
        <button class=${`btn ${danger ? 'btn-danger' : 'btn-primary'}`} onClick=${onConfirm} data-testid="confirm-button">${confirmLabel}</button>
      </div>
    </div>
  </div>`;
}

// ---------------------------------------------------------------------------------------------
// Login

function Login({ onLogin }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    try {
      const s = await api('POST', '/dashboard/session', { token });
      setToken('');
      onLogin(s.csrf_token);
    } catch (err) {
      setError(err.status === 401 ? new Error('That is not the admin token.') : err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login">
    <form class="card login-card" onSubmit=${submit}>
      <div class="brand brand-big"><span class="logo"></span>keyleash</div>
      <p class="muted">Sign in with the gateway's admin token. It is exchanged for a session cookie and not kept by this page.</p>
      <label for="token">Admin token</label>
      <input id="token" name="token" type="password" autocomplete="current-password" value=${token}
        onInput=${(e) => setToken(e.currentTarget.value)} autofocus required />
      <${ErrorNote} error=${error} />
      <button class="btn btn-primary" type="submit" disabled=${busy || !token}>Sign in</button>
    </form>
  </main>`;
}

// ---------------------------------------------------------------------------------------------
// Keys

function KeysPage({ toast }) {
  const [status, setStatus] = useState('active');
  const [vendor, setVendor] = useState('');
  const [search, setSearch] = useState('');
  const [meta, setMeta] = useState('');
  const [confirm, setConfirm] = useState(null);
  const [vendors] = usePoll(() => api('GET', '/v1/vendors'), 60_000, []);
  const metaFilter = parseMeta(meta);
  const params = { status, vendor, label_prefix: search, limit: 100 };
  for (const [k, v] of Object.entries(metaFilter)) params[`metadata[${k}]`] = v;
  const qs = query(params);
  const [list, error, reload] = usePoll(() => api('GET', `/v1/keys${qs}`), 3000, [qs]);

  const revoke = async (k) => {
    try {
      await api('DELETE', `/v1/keys/${encodeURIComponent(k.id)}`);
      toast(`Revoked ${k.label || k.id}`);
      reload();
    } catch (e) {
      toast(e.message, 'error');
    }
  };

  const killFilter = {};
  if (search) killFilter.label_prefix = search;
  if (vendor) killFilter.vendor = vendor;
  if (Object.keys(metaFilter).length) killFilter.metadata = metaFilter;
  const hasKillFilter = Object.keys(killFilter).length > 0;
  const describe = [
    search && `label starts with “${search}”`,
    vendor && `vendor is ${vendor}`,
    ...Object.entries(metaFilter).map(([k, v]) => `metadata ${k} = “${v}”`),
  ].filter(Boolean);

  const startKill = async () => {
    try {
      const dry = await api('POST', '/v1/keys/revoke', { ...killFilter, dry_run: true });
      setConfirm({ matched: dry.matched });
    } catch (e) {
      toast(e.message, 'error');
    }
  };
  const doKill = async () => {
    setConfirm(null);
    try {
      const r = await api('POST', '/v1/keys/revoke', killFilter);
      toast(`Kill switch: revoked ${r.revoked} key${r.revoked === 1 ? '' : 's'}`);
      reload();
    } catch (e) {
      toast(e.message, 'error');
    }
  };

  const keys = list ? list.data : [];
  return html`<section>
    <div class="page-head">
      <h1>Keys</h1>
      <span class="muted">${list ? `${keys.length}${list.has_more ? '+' : ''} ${status || 'all'} key${keys.length === 1 ? '' : 's'}` : ''}</span>
    </div>
    <div class="toolbar">
      <input type="search" placeholder="Label starts with…" value=${search} onInput=${(e) => setSearch(e.currentTarget.value)} data-testid="key-search" aria-label="Label prefix" />
      <input type="text" placeholder="metadata key=value" value=${meta} onInput=${(e) => setMeta(e.currentTarget.value)} data-testid="key-meta" aria-label="Metadata filter" />
      <select value=${vendor} onChange=${(e) => setVendor(e.currentTarget.value)} aria-label="Vendor">
        <option value="">All vendors</option>
        ${(vendors ? vendors.data : []).map((v) => html`<option value=${v.name}>${v.name}</option>`)}
      </select>
      <select value=${status} onChange=${(e) => setStatus(e.currentTarget.value)} aria-label="Status">
        <option value="active">Active</option>
        <option value="expired">Expired</option>
        <option value="revoked">Revoked</option>
        <option value="">Any status</option>
      </select>
      <span class="grow"></span>
      <button class="btn btn-danger" disabled=${!hasKillFilter} onClick=${startKill} data-testid="kill-switch"
        title=${hasKillFilter ? 'Revoke every active key matching the filter' : 'Filter by label, metadata or vendor first'}>Revoke all matching…</button>
    </div>
    <${ErrorNote} error=${error} />
    <div class="card table-card">
      <table class="table" data-testid="keys-table">
        <thead><tr><th>Label</th><th>Vendor</th><th>Mode</th><th>Status</th><th class="col-spend">Spend today</th><th>Expires in</th><th>Last call</th><th></th></tr></thead>
        <tbody>
          ${keys.map(
            (k) => html`<tr key=${k.id} data-key-id=${k.id}>
              <td><a href=${`#/keys/${encodeURIComponent(k.id)}`} class="key-label">${k.label || html`<span class="muted">(no label)</span>`}</a>
                <div class="muted small mono">${k.id}</div></td>
              <td>${k.vendor}</td>
              <td><${Badge} kind=${k.mode}>${k.mode}<//></td>
              <td><${Badge} kind=${k.status}>${k.status}<//></td>
              <td class="col-spend"><${SpendBar} spend=${k.spend_today_usd} cap=${k.daily_usd_cap} /></td>
              <td>${k.status === 'active' ? duration(Date.parse(k.expires_at) - Date.now()) : '—'}</td>
              <td>${ago(k.last_used_at)}<div class="muted small">${k.request_count} call${k.request_count === 1 ? '' : 's'}</div></td>
              <td class="actions">${k.status === 'active' && html`<button class="btn btn-small btn-danger-outline" onClick=${() => revoke(k)} data-testid="revoke">Revoke</button>`}</td>
            </tr>`,
          )}
          ${list && keys.length === 0 && html`<tr><td colspan="8" class="empty">No keys match.</td></tr>`}
        </tbody>
      </table>
    </div>
    ${confirm &&
    html`<${Modal} title="Kill switch" danger confirmLabel=${`Revoke ${confirm.matched} key${confirm.matched === 1 ? '' : 's'}`}
        onCancel=${() => setConfirm(null)} onConfirm=${doKill}>
      <p data-testid="kill-count">This will revoke <strong>${confirm.matched}</strong> active key${confirm.matched === 1 ? '' : 's'} where ${describe.join(' and ')}.</p>
      <p class="muted">Agents holding them are refused at once. This cannot be undone.</p>
    <//>`}
  </section>`;
}

// ---------------------------------------------------------------------------------------------
// Key detail

function SpendChart({ series }) {
  const el = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    if (!el.current || !series) return;
    const xs = series.points.map((p) => Date.parse(p.t) / 1000);
    const data = [xs, series.points.map((p) => p.cumulative_usd), series.points.map((p) => p.calls)];
    const width = Math.max(320, el.current.clientWidth);
    if (!plot.current) {
      plot.current = new uPlot(
        {
          width,
          height: 240,
          scales: { x: { time: true }, calls: { range: (_u, _min, max) => [0, Math.max(1, max * 1.2)] } },
          series: [
            {},
            { label: 'Spend today', stroke: '#4f6bed', fill: 'rgba(79,107,237,0.12)', width: 2, value: (_u, v) => (v === null ? '—' : usd(v)) },
            { label: 'Calls', stroke: '#f5a524', scale: 'calls', width: 1.5, paths: uPlot.paths.bars({ size: [0.6, 20] }), fill: 'rgba(245,165,36,0.25)' },
          ],
          axes: [{}, { values: (_u, vals) => vals.map((v) => usd(v)), size: 70 }, { side: 1, scale: 'calls', grid: { show: false } }],
        },
        data,
        el.current,
      );
    } else {
      plot.current.setData(data);
    }
  }, [series]);
  useEffect(() => () => plot.current && plot.current.destroy(), []);
  return html`<div class="chart" ref=${el} data-testid="spend-chart"></div>`;
}

function AuditRows({ records, showKey }) {
  return records.map(
    (r) => html`<tr key=${r.id} class=${r.decision === 'deny' ? 'row-deny' : r.status >= 400 ? 'row-warn' : ''} data-decision=${r.decision}>
      <td class="mono small">${timeOf(r.time)}</td>
      ${showKey && html`<td>${r.key_id ? html`<a href=${`#/keys/${encodeURIComponent(r.key_id)}`}>${r.label || r.key_id}</a>` : html`<span class="muted">—</span>`}</td>`}
      <td>${r.vendor || '—'}</td>
      <td class="mono small">${r.method} ${r.path}</td>
      <td>${r.status}</td>
      <td><${Badge} kind=${r.decision}>${r.decision}<//></td>
      <td class="mono small">${r.code || ''}</td>
      <td class="num">${usd(r.cost_usd)}</td>
      <td class="num muted">${r.upstream_latency_ms === null ? '—' : `${Math.round(r.upstream_latency_ms)} ms`}</td>
    </tr>`,
  );
}

function AuditTable({ records, showKey, testid }) {
  return html`<table class="table" data-testid=${testid}>
    <thead><tr><th>Time</th>${showKey && html`<th>Key</th>`}<th>Vendor</th><th>Call</th><th>Status</th><th>Decision</th><th>Code</th><th class="num">Cost</th><th class="num">Upstream</th></tr></thead>
    <tbody>
      <${AuditRows} records=${records} showKey=${showKey} />
      ${records.length === 0 && html`<tr><td colspan=${showKey ? 9 : 8} class="empty">No calls yet.</td></tr>`}
    </tbody>
  </table>`;
}

function KeyDetailPage({ id, toast }) {
  const [key, error, reload] = usePoll(() => api('GET', `/v1/keys/${encodeURIComponent(id)}`), 3000, [id]);
  const [series] = usePoll(() => api('GET', `/v1/keys/${encodeURIComponent(id)}/spend`), 5000, [id]);
  const [audit] = usePoll(() => api('GET', `/v1/audit${query({ key_id: id, limit: 100 })}`), 3000, [id]);
  const revoke = async () => {
    try {
      await api('DELETE', `/v1/keys/${encodeURIComponent(id)}`);
      toast(`Revoked ${key.label || id}`);
      reload();
    } catch (e) {
      toast(e.message, 'error');
    }
  };
  if (error && !key) return html`<section><a href="#/keys" class="back">← Keys</a><${ErrorNote} error=${error} /></section>`;
  if (!key) return html`<section><p class="muted">Loading…</p></section>`;
  const meta = Object.entries(key.metadata || {});
  return html`<section>
    <a href="#/keys" class="back">← Keys</a>
    <div class="page-head">
      <h1 data-testid="key-title">${key.label || key.id}</h1>
      <${Badge} kind=${key.status}>${key.status}<//>
      <${Badge} kind=${key.mode}>${key.mode}<//>
      <span class="grow"></span>
      ${key.status === 'active' && html`<button class="btn btn-danger" onClick=${revoke} data-testid="revoke-detail">Revoke key</button>`}
    </div>
    <div class="grid-2">
      <div class="card">
        <h2>Scope</h2>
        <dl class="facts">
          <dt>Id</dt><dd class="mono">${key.id}</dd>
          <dt>Vendor</dt><dd>${key.vendor}</dd>
          <dt>Allowed endpoints</dt><dd><ul class="endpoints">${key.allowed_endpoints.map((e) => html`<li class="mono">${e}</li>`)}</ul></dd>
          <dt>Daily cap</dt><dd>${key.daily_usd_cap === null ? 'no cap' : usd(key.daily_usd_cap)}</dd>
          <dt>Spend today</dt><dd><${SpendBar} spend=${key.spend_today_usd} cap=${key.daily_usd_cap} /></dd>
          <dt>Calls</dt><dd>${key.request_count} · last ${ago(key.last_used_at)}</dd>
          <dt>Created</dt><dd>${dateTime(key.created_at)}</dd>
          <dt>Expires</dt><dd>${dateTime(key.expires_at)}${key.status === 'active' ? ` (in ${duration(Date.parse(key.expires_at) - Date.now())})` : ''}</dd>
          ${key.revoked_at && html`<dt>Revoked</dt><dd>${dateTime(key.revoked_at)}</dd>`}
          <dt>Metadata</dt><dd>${meta.length ? meta.map(([k, v]) => html`<span class="chip mono">${k}=${v}</span>`) : html`<span class="muted">none</span>`}</dd>
        </dl>
      </div>
      <div class="card">
        <h2>Spend over time</h2>
        <${SpendChart} series=${series} />
        <p class="muted small">${series ? `Buckets of ${duration(series.bucket_seconds * 1000)}, from the audit log.` : ''}</p>
      </div>
    </div>
    <div class="card table-card">
      <h2>Audit trail</h2>
      <${AuditTable} records=${audit ? audit.data : []} testid="key-audit" />
    </div>
  </section>`;
}

// ---------------------------------------------------------------------------------------------
// Audit

const MAX_LIVE_ROWS = 500;

function AuditPage() {
  const [filter, setFilter] = useState({ key_id: '', vendor: '', decision: '', code: '' });
  const [records, setRecords] = useState([]);
  const [state, setState] = useState('connecting');
  const [paused, setPaused] = useState(false);
  const pausedRef = useRef(false);
  pausedRef.current = paused;
  const qs = query(filter);

  useEffect(() => {
    setRecords([]);
    setState('connecting');
    const src = new EventSource(`/v1/audit/stream${query({ ...filter, backfill: 100 })}`);
    const buffer = [];
    let flushTimer = null;
    const flush = () => {
      flushTimer = null;
      if (pausedRef.current || buffer.length === 0) return;
      const batch = buffer.splice(0).reverse();
      setRecords((old) => {
        const seen = new Set(old.map((r) => r.id));
        return [...batch.filter((r) => !seen.has(r.id)), ...old].slice(0, MAX_LIVE_ROWS);
      });
    };
    src.onopen = () => setState('live');
    src.onerror = () => setState(src.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
    src.addEventListener('audit', (e) => {
      buffer.push(shownDeep(JSON.parse(e.data)));
      if (!flushTimer) flushTimer = setTimeout(flush, 100);
    });
    const unpause = setInterval(() => !pausedRef.current && buffer.length && flush(), 500);
    return () => {
      src.close();
      clearInterval(unpause);
      if (flushTimer) clearTimeout(flushTimer);
    };
  }, [qs]);

  const set = (k) => (e) => setFilter({ ...filter, [k]: e.currentTarget.value.trim() });
  const denials = records.filter((r) => r.decision === 'deny').length;
  return html`<section>
    <div class="page-head">
      <h1>Audit</h1>
      <span class=${`live live-${state}`} data-testid="stream-state">${state === 'live' ? (paused ? 'paused' : 'live') : state}</span>
      <span class="muted">${records.length} calls shown · ${denials} denied</span>
      <span class="grow"></span>
      <button class="btn" onClick=${() => setPaused(!paused)}>${paused ? 'Resume' : 'Pause'}</button>
      <a class="btn" href=${`/v1/audit/export${query({ ...filter, format: 'csv' })}`} download data-testid="export-csv">Export CSV</a>
      <a class="btn" href=${`/v1/audit/export${query({ ...filter, format: 'ndjson' })}`} download>Export NDJSON</a>
    </div>
    <div class="toolbar">
      <input placeholder="Key id" value=${filter.key_id} onChange=${set('key_id')} aria-label="Key id" />
      <input placeholder="Vendor" value=${filter.vendor} onChange=${set('vendor')} aria-label="Vendor" />
      <select value=${filter.decision} onChange=${set('decision')} aria-label="Decision" data-testid="audit-decision">
        <option value="">Allowed and denied</option>
        <option value="allow">Allowed</option>
        <option value="deny">Denied</option>
      </select>
      <input placeholder="Code, e.g. cap_exhausted" value=${filter.code} onChange=${set('code')} aria-label="Code" />
    </div>
    <div class="card table-card">
      <${AuditTable} records=${records} showKey testid="audit-table" />
    </div>
  </section>`;
}

// ---------------------------------------------------------------------------------------------
// Overview

function Stat({ label, value, sub, testid }) {
  return html`<div class="card stat" data-testid=${testid}><div class="stat-label">${label}</div><div class="stat-value">${value}</div>${sub && html`<div class="muted small">${sub}</div>`}</div>`;
}

function OverviewPage() {
  const [o, error] = usePoll(() => api('GET', '/v1/stats/overview'), 5000, []);
  if (!o) return html`<section><h1>Overview</h1><${ErrorNote} error=${error} /><p class="muted">Loading…</p></section>`;
  const maxDenials = Math.max(1, ...o.denials_by_code.map((d) => d.count));
  return html`<section>
    <div class="page-head"><h1>Overview</h1><span class="muted">UTC day ${o.day}</span></div>
    <${ErrorNote} error=${error} />
    <div class="stats">
      <${Stat} label="Spend today" value=${usd(o.spend_today_usd)} testid="stat-spend" />
      <${Stat} label="Calls today" value=${o.calls_today.toLocaleString()} testid="stat-calls" />
      <${Stat} label="Calls / second" value=${o.calls_per_second.toFixed(2)} sub=${`last ${o.rate_window_seconds}s`} />
      <${Stat} label="Denied today" value=${o.denials_today.toLocaleString()} sub=${o.calls_today ? `${((o.denials_today / o.calls_today) * 100).toFixed(1)}% of calls` : ''} />
    </div>
    <div class="grid-2">
      ${o.breakdowns.map(
        (b) => html`<div class="card table-card">
          <h2>Spend by ${b.dimension}</h2>
          <table class="table" data-testid=${`breakdown-${b.dimension}`}>
            <thead><tr><th>${b.dimension}</th><th class="num">Spend</th><th class="num">Calls</th><th class="num">Denied</th></tr></thead>
            <tbody>
              ${b.rows.map((r) => html`<tr><td>${r.name}</td><td class="num">${usd(r.spend_usd)}</td><td class="num">${r.calls}</td><td class="num">${r.denials}</td></tr>`)}
              ${b.rows.length === 0 && html`<tr><td colspan="4" class="empty">No calls today.</td></tr>`}
            </tbody>
          </table>
        </div>`,
      )}
      <div class="card table-card">
        <h2>Denials by code</h2>
        <table class="table" data-testid="denials-by-code">
          <tbody>
            ${o.denials_by_code.map(
              (d) => html`<tr><td class="mono">${d.code}</td><td class="col-bar"><div class="bar"><div class="bar-fill bar-high" style=${{ width: `${(d.count / maxDenials) * 100}%` }}></div></div></td><td class="num">${d.count}</td></tr>`,
            )}
            ${o.denials_by_code.length === 0 && html`<tr><td class="empty">No denials today.</td></tr>`}
          </tbody>
        </table>
      </div>
    </div>
    <div class="card table-card">
      <h2>Top spenders today</h2>
      <table class="table" data-testid="top-spenders">
        <thead><tr><th>Key</th><th>Vendor</th><th class="num">Spend</th><th class="num">Calls</th></tr></thead>
        <tbody>
          ${o.top_spenders.map(
            (k) => html`<tr><td><a href=${`#/keys/${encodeURIComponent(k.key_id)}`}>${k.label || k.key_id}</a></td><td>${k.vendor}</td><td class="num">${usd(k.spend_usd)}</td><td class="num">${k.calls}</td></tr>`,
          )}
          ${o.top_spenders.length === 0 && html`<tr><td colspan="4" class="empty">No spend today.</td></tr>`}
        </tbody>
      </table>
      ${o.truncated && html`<p class="muted small">Computed from the newest ${o.scanned.toLocaleString()} calls of the day.</p>`}
    </div>
  </section>`;
}

// ---------------------------------------------------------------------------------------------
// Shell

function App() {
  const [auth, setAuth] = useState('checking');
  const [toastMsg, setToastMsg] = useState(null);
  const hash = useHashRoute();

  useEffect(() => {
    onSessionLost = () => {
      csrfToken = null;
      setAuth('out');
    };
    api('GET', '/dashboard/session').then(
      (s) => {
        csrfToken = s.csrf_token;
        setAuth('in');
      },
      () => setAuth('out'),
    );
  }, []);

  const toast = useCallback((text, kind = 'ok') => {
    setToastMsg({ text, kind, at: Date.now() });
    setTimeout(() => setToastMsg((t) => (t && Date.now() - t.at >= 3900 ? null : t)), 4000);
  }, []);

  if (auth === 'checking') return html`<p class="boot">Loading keyleash…</p>`;
  if (auth === 'out')
    return html`<${Login} onLogin=${(csrf) => {
      csrfToken = csrf;
      setAuth('in');
    }} />`;

  const logout = async () => {
    try {
      await api('DELETE', '/dashboard/session');
    } finally {
      csrfToken = null;
      setAuth('out');
    }
  };

  const m = /^#\/keys\/(.+)$/.exec(hash);
  let page;
  let tab = 'keys';
  if (m) page = html`<${KeyDetailPage} id=${decodeURIComponent(m[1])} toast=${toast} />`;
  else if (hash.startsWith('#/audit')) (page = html`<${AuditPage} />`), (tab = 'audit');
  else if (hash.startsWith('#/overview')) (page = html`<${OverviewPage} />`), (tab = 'overview');
  else page = html`<${KeysPage} toast=${toast} />`;

  return html`<div class="shell">
    <header class="top">
      <div class="brand"><span class="logo"></span>keyleash</div>
      <nav>
        <a href="#/keys" class=${tab === 'keys' ? 'active' : ''}>Keys</a>
        <a href="#/audit" class=${tab === 'audit' ? 'active' : ''}>Audit</a>
        <a href="#/overview" class=${tab === 'overview' ? 'active' : ''}>Overview</a>
      </nav>
      <span class="grow"></span>
      <button class="btn btn-ghost" onClick=${logout}>Sign out</button>
    </header>
    <main class="content">${page}</main>
    ${toastMsg && html`<div class=${`toast toast-${toastMsg.kind}`} role="status" data-testid="toast">${toastMsg.text}</div>`}
  </div>`;
}

render(html`<${App} />`, document.getElementById('app'));
