// The keyleash dashboard: preact + htm, no build step. It talks to the control API only, with
// the session cookie set at login (HttpOnly: this script never sees it) and the CSRF token kept
// in memory for changes. Everything is rendered as text by preact, never as HTML.
import { h, render } from '/dashboard/vendor/preact.js';
import { useCallback, useEffect, useRef, useState } from '/dashboard/vendor/hooks.js';
import htm from '/dashboard/vendor/htm.js';
import uPlot from '/dashboard/vendor/uplot.js';
import { shownDeep } from '/dashboard/text.js';
import { duration, usd, usdAxis } from '/dashboard/format.js';

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

/**
 * Calls `load` now and every `ms`, and whenever `deps` change; returns [data, error, reload].
 * When `deps` change the previous answer is dropped at once, so a page never shows one record's
 * data under another's name while the new one loads.
 */
function usePoll(load, ms, deps) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const gen = useRef(0);
  const reload = useCallback(async () => {
    const mine = gen.current;
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
    gen.current++;
    setData(null);
    setError(null);
    reload();
    const t = setInterval(reload, ms);
    return () => {
      clearInterval(t);
      gen.current++;
    };
  }, [reload, ms]);
  return [data, error, reload];
}

/**
 * A list endpoint read one page at a time (`limit` + `cursor`), polled. Changing `params`
 * starts again at the first page. Returns [list, error, reload, pager].
 */
function usePaged(path, params, pageSize, ms) {
  const at = path + query({ ...params, limit: pageSize });
  // The cursors belong to the filter they were read with: another filter starts at page one.
  const [pages, setPages] = useState({ at, cursors: [null] });
  const cursors = pages.at === at ? pages.cursors : [null];
  const setCursors = (c) => setPages({ at, cursors: c });
  const cursor = cursors[cursors.length - 1];
  const [list, error, reload] = usePoll(() => api('GET', `${path}${query({ ...params, limit: pageSize, cursor })}`), ms, [at, cursor]);
  const pager = {
    page: cursors.length,
    hasPrev: cursors.length > 1,
    hasNext: !!(list && list.has_more && list.next_cursor),
    next: () => list && list.next_cursor && setCursors([...cursors, list.next_cursor]),
    prev: () => cursors.length > 1 && setCursors(cursors.slice(0, -1)),
  };
  return [list, error, reload, pager];
}

function Pager({ pager, testid = 'pager' }) {
  if (!pager.hasPrev && !pager.hasNext) return null;
  return html`<nav class="pager" aria-label="Pages" data-testid=${testid}>
    <button class="btn btn-small" disabled=${!pager.hasPrev} onClick=${pager.prev} data-testid=${`${testid}-prev`}>← Previous</button>
    <span class="muted small" data-testid=${`${testid}-page`}>Page ${pager.page}</span>
    <button class="btn btn-small" disabled=${!pager.hasNext} onClick=${pager.next} data-testid=${`${testid}-next`}>Next →</button>
  </nav>`;
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

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/**
 * A dialog that takes the focus when it opens (its first field, or Cancel for a confirmation, so
 * Enter never confirms by accident), keeps Tab inside itself, closes on Escape, and gives the
 * focus back to whatever had it (the button that opened it).
 */
function Modal({ title, children, onCancel, onConfirm, confirmLabel, danger, busy, testid = 'confirm-dialog', actions = true }) {
  const box = useRef(null);
  const cancel = useRef(onCancel);
  cancel.current = onCancel;
  // Taken while rendering, before anything in the dialog can have the focus.
  const [opener] = useState(() => document.activeElement);
  useEffect(() => {
    const focusables = () => (box.current ? [...box.current.querySelectorAll(FOCUSABLE)] : []);
    const first = (box.current && box.current.querySelector('[data-autofocus]')) || focusables()[0] || box.current;
    if (first) first.focus();
    const onKey = (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        cancel.current();
      } else if (e.key === 'Tab') {
        const f = focusables();
        if (!f.length) return e.preventDefault();
        const i = f.indexOf(document.activeElement);
        if (e.shiftKey && i <= 0) {
          e.preventDefault();
          f[f.length - 1].focus();
        } else if (!e.shiftKey && (i === -1 || i === f.length - 1)) {
          e.preventDefault();
          f[0].focus();
        }
      }
    };
    document.addEventListener('keydown', onKey, true);
    return () => {
      document.removeEventListener('keydown', onKey, true);
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    };
  }, []);
  return html`<div class="modal-backdrop" onClick=${(e) => e.target === e.currentTarget && onCancel()}>
    <div class="modal" role="dialog" aria-modal="true" aria-labelledby="modal-title" data-testid=${testid} ref=${box} tabindex="-1">
      <h2 id="modal-title">${title}</h2>
      <div class="modal-body">${children}</div>
      ${actions &&
      html`<div class="modal-actions">
        <button class="btn" onClick=${onCancel} data-testid="cancel-button">Cancel</button>
        <button class=${`btn ${danger ? 'btn-danger' : 'btn-primary'}`} onClick=${onConfirm} disabled=${busy} data-testid="confirm-button">${confirmLabel}</button>
      </div>`}
    </div>
  </div>`;
}

/** A form in a dialog: fields, its error, Cancel and a submit button. */
function FormModal({ title, testid, submitLabel, onCancel, onSubmit, error, busy, children }) {
  return html`<${Modal} title=${title} testid=${testid} onCancel=${onCancel} actions=${false}>
    <form class="form" onSubmit=${(e) => {
      e.preventDefault();
      onSubmit();
    }}>
      ${children}
      <${ErrorNote} error=${error} />
      <div class="modal-actions">
        <button type="button" class="btn" onClick=${onCancel}>Cancel</button>
        <button type="submit" class="btn btn-primary" disabled=${busy} data-testid="submit-button">${submitLabel}</button>
      </div>
    </form>
  <//>`;
}

/** A secret the API shows once (a vault key's token, a minting key's secret). */
function SecretOnce({ title, what, value, onDone }) {
  return html`<${Modal} title=${title} testid="secret-dialog" onCancel=${onDone} actions=${false}>
    <p>This ${what} is shown once and is not kept by this page: copy it now.</p>
    <input class="mono secret" readonly value=${value} data-testid="secret-value" aria-label=${what}
      onFocus=${(e) => e.currentTarget.select()} data-autofocus />
    <div class="modal-actions">
      <button class="btn" onClick=${() => navigator.clipboard && navigator.clipboard.writeText(value).catch(() => {})}>Copy</button>
      <button class="btn btn-primary" onClick=${onDone} data-testid="secret-done">Done</button>
    </div>
  <//>`;
}

/** A labelled field. */
const Field = ({ label, id, hint, children }) => html`<div class="field">
  <label for=${id}>${label}</label>${children}${hint && html`<div class="muted small">${hint}</div>`}
</div>`;

const lines = (text) => text.split(/\n|,/).map((x) => x.trim()).filter(Boolean);
const numberOrNull = (text) => (text.trim() === '' ? null : Number(text));

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

const PAGE_SIZE = 25;

/** Revoking one key, after a confirmation naming it. */
function RevokeDialog({ k, onDone, toast }) {
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    try {
      await api('DELETE', `/v1/keys/${encodeURIComponent(k.id)}`);
      toast(`Revoked ${k.label || k.id}`);
      onDone(true);
    } catch (e) {
      toast(e.message, 'error');
      onDone(false);
    }
  };
  return html`<${Modal} title="Revoke key" danger busy=${busy} confirmLabel="Revoke key" onCancel=${() => onDone(false)} onConfirm=${go}>
    <p data-testid="revoke-name">Revoke <strong>${k.label || k.id}</strong> <span class="mono small">(${k.id})</span>?</p>
    <p class="muted">Calls with it are refused at once, on every replica. This cannot be undone.</p>
  <//>`;
}

/** Issuing a key from the dashboard: the same body as POST /v1/keys. */
function NewKeyDialog({ vendors, onCancel, onCreated }) {
  const names = vendors.map((v) => v.name);
  const [f, setF] = useState({ label: '', vendor: names[0] || '', mode: 'test', endpoints: '', cap: '', expires: '1h', budgets: '', metadata: '' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setF({ ...f, [k]: e.currentTarget.value });
  const modes = (vendors.find((v) => v.name === f.vendor) || { modes: ['test', 'live'] }).modes;
  const submit = async () => {
    setBusy(true);
    setError(null);
    try {
      const body = { label: f.label, vendor: f.vendor, mode: f.mode, allowed_endpoints: lines(f.endpoints), expires_in: f.expires };
      if (f.cap.trim() !== '') body.daily_usd_cap = numberOrNull(f.cap);
      if (lines(f.budgets).length) body.budgets = lines(f.budgets);
      const meta = parseMeta(f.metadata);
      if (Object.keys(meta).length) body.metadata = meta;
      onCreated(await api('POST', '/v1/keys', body));
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return html`<${FormModal} title="New key" testid="new-key-dialog" submitLabel="Issue key" onCancel=${onCancel} onSubmit=${submit} error=${error} busy=${busy}>
    <${Field} label="Label" id="nk-label"><input id="nk-label" value=${f.label} onInput=${set('label')} placeholder="e.g. support-bot-run-42" data-autofocus /><//>
    <div class="field-row">
      <${Field} label="Vendor" id="nk-vendor"><select id="nk-vendor" value=${f.vendor} onChange=${set('vendor')}>${names.map((n) => html`<option value=${n}>${n}</option>`)}</select><//>
      <${Field} label="Mode" id="nk-mode"><select id="nk-mode" value=${f.mode} onChange=${set('mode')}>${modes.map((m) => html`<option value=${m}>${m}</option>`)}</select><//>
    </div>
    <${Field} label="Allowed endpoints" id="nk-endpoints" hint="One per line; * matches one path segment; an optional method first (POST /v1/refunds).">
      <textarea id="nk-endpoints" rows="3" value=${f.endpoints} onInput=${set('endpoints')} placeholder="/v1/payment_intents"></textarea>
    <//>
    <div class="field-row">
      <${Field} label="Daily cap (USD)" id="nk-cap"><input id="nk-cap" inputmode="decimal" value=${f.cap} onInput=${set('cap')} placeholder="no cap" /><//>
      <${Field} label="Expires in" id="nk-expires"><input id="nk-expires" value=${f.expires} onInput=${set('expires')} placeholder="1h" /><//>
    </div>
    <${Field} label="Budgets" id="nk-budgets" hint="Budget ids, comma-separated."><input id="nk-budgets" value=${f.budgets} onInput=${set('budgets')} /><//>
    <${Field} label="Metadata" id="nk-metadata" hint="key=value pairs, comma-separated."><input id="nk-metadata" value=${f.metadata} onInput=${set('metadata')} /><//>
  <//>`;
}

function KeysPage({ toast }) {
  const [status, setStatus] = useState('active');
  const [vendor, setVendor] = useState('');
  const [search, setSearch] = useState('');
  const [meta, setMeta] = useState('');
  const [confirm, setConfirm] = useState(null);
  const [revoking, setRevoking] = useState(null);
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState(null);
  const [vendors] = usePoll(() => api('GET', '/v1/vendors'), 60_000, []);
  const metaFilter = parseMeta(meta);
  const params = { status, vendor, label_prefix: search };
  for (const [k, v] of Object.entries(metaFilter)) params[`metadata[${k}]`] = v;
  const [list, error, reload, pager] = usePaged('/v1/keys', params, PAGE_SIZE, 3000);

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
  const vendorList = vendors ? vendors.data : [];
  return html`<section>
    <div class="page-head">
      <h1>Keys</h1>
      <span class="muted">${list ? `${keys.length}${list.has_more ? '+' : ''} ${status || 'all'} key${keys.length === 1 ? '' : 's'}${pager.page > 1 ? ` on page ${pager.page}` : ''}` : ''}</span>
      <span class="grow"></span>
      <button class="btn btn-primary" onClick=${() => setCreating(true)} disabled=${!vendors} data-testid="new-key">New key</button>
    </div>
    <div class="toolbar">
      <input type="search" placeholder="Label starts with…" value=${search} onInput=${(e) => setSearch(e.currentTarget.value)} data-testid="key-search" aria-label="Label prefix" />
      <input type="text" placeholder="metadata key=value" value=${meta} onInput=${(e) => setMeta(e.currentTarget.value)} data-testid="key-meta" aria-label="Metadata filter" />
      <select value=${vendor} onChange=${(e) => setVendor(e.currentTarget.value)} aria-label="Vendor">
        <option value="">All vendors</option>
        ${vendorList.map((v) => html`<option value=${v.name}>${v.name}</option>`)}
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
              <td class="actions">${k.status === 'active' && html`<button class="btn btn-small btn-danger-outline" onClick=${() => setRevoking(k)} data-testid="revoke">Revoke</button>`}</td>
            </tr>`,
          )}
          ${list && keys.length === 0 && html`<tr><td colspan="8" class="empty">No keys match.</td></tr>`}
        </tbody>
      </table>
    </div>
    <${Pager} pager=${pager} />
    ${revoking && html`<${RevokeDialog} k=${revoking} toast=${toast} onDone=${(changed) => { setRevoking(null); if (changed) reload(); }} />`}
    ${creating &&
    html`<${NewKeyDialog} vendors=${vendorList} onCancel=${() => setCreating(false)}
      onCreated=${(k) => { setCreating(false); setCreated(k); toast(`Issued ${k.label || k.id}`); reload(); }} />`}
    ${created && html`<${SecretOnce} title=${`Key ${created.label || created.id}`} what="vault key" value=${created.token} onDone=${() => setCreated(null)} />`}
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
    const width = Math.max(240, el.current.clientWidth);
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
          axes: [{}, { values: (_u, vals) => vals.map((v) => usdAxis(v)), size: 70 }, { side: 1, scale: 'calls', grid: { show: false } }],
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
  const [audit, , , auditPager] = usePaged('/v1/audit', { key_id: id }, 50, 3000);
  const [revoking, setRevoking] = useState(false);
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
      ${key.status === 'active' && html`<button class="btn btn-danger" onClick=${() => setRevoking(true)} data-testid="revoke-detail">Revoke key</button>`}
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
    <${Pager} pager=${auditPager} testid="audit-pager" />
    ${revoking && html`<${RevokeDialog} k=${key} toast=${toast} onDone=${(changed) => { setRevoking(false); if (changed) reload(); }} />`}
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

const PALETTE = ['#4f6bed', '#1f9d63', '#d98a0b', '#d43f3a', '#8a4fd1', '#0f8fa8', '#b5478a', '#6b7489', '#3d7a1c', '#a86400'];

/** A uPlot chart of several series over shared buckets, rebuilt when the data changes. */
function SeriesChart({ buckets, series, testid, height = 220 }) {
  const el = useRef(null);
  useEffect(() => {
    if (!el.current || !buckets) return;
    const xs = buckets.map((t) => Date.parse(t) / 1000);
    const plot = new uPlot(
      {
        width: Math.max(240, el.current.clientWidth),
        height,
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(max * 1.15, 0.000001)] } },
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.name,
            stroke: PALETTE[i % PALETTE.length],
            width: 2,
            points: { show: xs.length < 40 },
            value: (_u, v) => (v === null ? '—' : usd(v)),
          })),
        ],
        axes: [{}, { values: (_u, vals) => vals.map((v) => usdAxis(v)), size: 72 }],
      },
      [xs, ...series.map((s) => s.spend_usd)],
      el.current,
    );
    return () => plot.destroy();
  }, [buckets, series]);
  return html`<div class="chart" ref=${el} data-testid=${testid}></div>`;
}

const RANGES = [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days']];

/** Spend per vendor or per budget over a chosen range, from GET /v1/stats/spend. */
function SpendOverTime({ group, title }) {
  const [range, setRange] = useState('24h');
  const [d, error] = usePoll(() => api('GET', `/v1/stats/spend${query({ group_by: group, range })}`), 30_000, [group, range]);
  const shown = d ? d.series.slice(0, PALETTE.length) : [];
  return html`<div class="card" data-testid=${`spend-over-time-${group}`}>
    <div class="card-head">
      <h2>${title}</h2>
      <span class="grow"></span>
      <select value=${range} onChange=${(e) => setRange(e.currentTarget.value)} aria-label=${`Range of ${title.toLowerCase()}`} data-testid=${`range-${group}`}>
        ${RANGES.map(([v, label]) => html`<option value=${v}>${label}</option>`)}
      </select>
    </div>
    <${ErrorNote} error=${error} />
    ${d && shown.length === 0 && html`<p class="muted empty-chart">No spend ${group === 'budget' ? 'on budgeted keys ' : ''}in this range.</p>`}
    ${d && shown.length > 0 && html`<${SeriesChart} buckets=${d.buckets} series=${shown} testid=${`chart-${group}`} />`}
    ${d && html`<p class="muted small">${`Buckets of ${duration(d.bucket_seconds * 1000)}`}${d.series_total > shown.length ? `; the ${shown.length} largest of ${d.series_total}` : ''}.</p>`}
  </div>`;
}

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
      <${SpendOverTime} group="vendor" title="Spend over time by vendor" />
      <${SpendOverTime} group="budget" title="Spend over time by budget" />
    </div>
    <div class="grid-2">
      ${o.breakdowns.map(
        (b) => html`<div class="card table-card">
          <h2>Spend by ${b.dimension}</h2>
          <table class="table" data-testid=${`breakdown-${b.dimension}`}>
            <thead><tr><th>${b.dimension}</th><th class="num">Spend</th><th class="num">Calls</th><th class="num">Denied</th></tr></thead>
            <tbody>
              ${b.rows.map((r) => html`<tr><td>${r.name}</td><td class="num">${usd(r.spend_usd)}</td><td class="num">${r.calls}</td><td class="num">${r.denials}</td></tr>`)}
              ${b.rows.length === 0 && html`<tr><td colspan="4" class="empty">${b.dimension === 'budget' ? 'No calls on budgeted keys today.' : 'No calls today.'}</td></tr>`}
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
// Budgets

function NewBudgetDialog({ onCancel, onCreated }) {
  const [f, setF] = useState({ id: '', limit: '', period: 'day' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setF({ ...f, [k]: e.currentTarget.value });
  const submit = async () => {
    setBusy(true);
    setError(null);
    try {
      onCreated(await api('POST', '/v1/budgets', { id: f.id.trim(), limit_usd: numberOrNull(f.limit), period: f.period }));
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return html`<${FormModal} title="New budget" testid="new-budget-dialog" submitLabel="Create budget" onCancel=${onCancel} onSubmit=${submit} error=${error} busy=${busy}>
    <${Field} label="Id" id="nb-id" hint="e.g. team:billing or user:u42"><input id="nb-id" value=${f.id} onInput=${set('id')} data-autofocus /><//>
    <div class="field-row">
      <${Field} label="Limit (USD)" id="nb-limit"><input id="nb-limit" inputmode="decimal" value=${f.limit} onInput=${set('limit')} /><//>
      <${Field} label="Period" id="nb-period">
        <select id="nb-period" value=${f.period} onChange=${set('period')}><option value="day">per day</option><option value="month">per month</option><option value="total">in total</option></select>
      <//>
    </div>
  <//>`;
}

function BudgetsPage({ toast }) {
  const [list, error, reload, pager] = usePaged('/v1/budgets', {}, PAGE_SIZE, 5000);
  const [creating, setCreating] = useState(false);
  const freeze = async (b) => {
    try {
      await api('POST', `/v1/budgets/${encodeURIComponent(b.id)}/${b.frozen ? 'unfreeze' : 'freeze'}`);
      toast(`${b.frozen ? 'Unfroze' : 'Froze'} ${b.id}`);
      reload();
    } catch (e) {
      toast(e.message, 'error');
    }
  };
  const budgets = list ? list.data : [];
  return html`<section>
    <div class="page-head">
      <h1>Budgets</h1>
      <span class="muted">${list ? `${budgets.length}${list.has_more ? '+' : ''} budget${budgets.length === 1 ? '' : 's'}` : ''}</span>
      <span class="grow"></span>
      <button class="btn btn-primary" onClick=${() => setCreating(true)} data-testid="new-budget">New budget</button>
    </div>
    <${ErrorNote} error=${error} />
    <div class="card table-card">
      <table class="table" data-testid="budgets-table">
        <thead><tr><th>Budget</th><th>Period</th><th class="col-spend">Spend this window</th><th>State</th><th></th></tr></thead>
        <tbody>
          ${budgets.map(
            (b) => html`<tr key=${b.id} data-budget-id=${b.id}>
              <td class="mono">${b.id}</td>
              <td>${b.period === 'total' ? 'in total' : `per ${b.period}`}<div class="muted small">${b.window}</div></td>
              <td class="col-spend"><${SpendBar} spend=${b.spend_usd} cap=${b.limit_usd} /></td>
              <td><${Badge} kind=${b.frozen ? 'revoked' : 'active'}>${b.frozen ? 'frozen' : 'open'}<//></td>
              <td class="actions"><button class="btn btn-small" onClick=${() => freeze(b)}>${b.frozen ? 'Unfreeze' : 'Freeze'}</button></td>
            </tr>`,
          )}
          ${list && budgets.length === 0 && html`<tr><td colspan="5" class="empty">No budgets yet.</td></tr>`}
        </tbody>
      </table>
    </div>
    <${Pager} pager=${pager} />
    <${SpendOverTime} group="budget" title="Spend over time by budget" />
    ${creating &&
    html`<${NewBudgetDialog} onCancel=${() => setCreating(false)} onCreated=${(b) => { setCreating(false); toast(`Created budget ${b.id}`); reload(); }} />`}
  </section>`;
}

// ---------------------------------------------------------------------------------------------
// Minting keys

function NewMintingKeyDialog({ vendors, onCancel, onCreated }) {
  const [f, setF] = useState({ label: '', mode: 'test', vendors: vendors.length ? [vendors[0].name] : [], endpoints: '', cap: '', ttl: '1h', budgets: '', allowed: '' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setF({ ...f, [k]: e.currentTarget.value });
  const toggle = (name) => (e) => setF({ ...f, vendors: e.currentTarget.checked ? [...f.vendors, name] : f.vendors.filter((v) => v !== name) });
  const submit = async () => {
    setBusy(true);
    setError(null);
    try {
      const body = { label: f.label, mode: f.mode, vendors: f.vendors, allowed_endpoints: lines(f.endpoints), max_ttl: f.ttl };
      if (f.cap.trim() !== '') body.max_daily_usd_cap = numberOrNull(f.cap);
      if (lines(f.budgets).length) body.budgets = lines(f.budgets);
      if (lines(f.allowed).length) body.allowed_budgets = lines(f.allowed);
      onCreated(await api('POST', '/v1/minting_keys', body));
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return html`<${FormModal} title="New minting key" testid="new-minting-dialog" submitLabel="Create minting key" onCancel=${onCancel} onSubmit=${submit} error=${error} busy=${busy}>
    <${Field} label="Label" id="nm-label"><input id="nm-label" value=${f.label} onInput=${set('label')} placeholder="e.g. flask-backend" data-autofocus /><//>
    <fieldset class="field">
      <legend>Vendors</legend>
      <div class="checks">${vendors.map((v) => html`<label class="check"><input type="checkbox" checked=${f.vendors.includes(v.name)} onChange=${toggle(v.name)} /> ${v.name}</label>`)}</div>
    </fieldset>
    <div class="field-row">
      <${Field} label="Mode" id="nm-mode"><select id="nm-mode" value=${f.mode} onChange=${set('mode')}><option value="test">test</option><option value="live">live</option></select><//>
      <${Field} label="Longest key life" id="nm-ttl"><input id="nm-ttl" value=${f.ttl} onInput=${set('ttl')} /><//>
    </div>
    <${Field} label="Widest endpoints" id="nm-endpoints" hint="One per line; minted keys get at most these.">
      <textarea id="nm-endpoints" rows="3" value=${f.endpoints} onInput=${set('endpoints')} placeholder="/v1/payment_intents"></textarea>
    <//>
    <${Field} label="Highest daily cap (USD)" id="nm-cap"><input id="nm-cap" inputmode="decimal" value=${f.cap} onInput=${set('cap')} placeholder="no maximum" /><//>
    <div class="field-row">
      <${Field} label="Budgets (always)" id="nm-budgets"><input id="nm-budgets" value=${f.budgets} onInput=${set('budgets')} /><//>
      <${Field} label="Budgets a key may name" id="nm-allowed"><input id="nm-allowed" value=${f.allowed} onInput=${set('allowed')} placeholder="user:*" /><//>
    </div>
  <//>`;
}

function MintingPage({ toast }) {
  const [list, error, reload, pager] = usePaged('/v1/minting_keys', {}, PAGE_SIZE, 5000);
  const [vendors] = usePoll(() => api('GET', '/v1/vendors'), 60_000, []);
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState(null);
  const [revoking, setRevoking] = useState(null);
  const revoke = async () => {
    const m = revoking;
    setRevoking(null);
    try {
      const r = await api('DELETE', `/v1/minting_keys/${encodeURIComponent(m.id)}`);
      toast(`Revoked minting key ${m.label || m.id} and ${r.keys_revoked ?? 0} key${r.keys_revoked === 1 ? '' : 's'} minted from it`);
      reload();
    } catch (e) {
      toast(e.message, 'error');
    }
  };
  const rows = list ? list.data : [];
  return html`<section>
    <div class="page-head">
      <h1>Minting keys</h1>
      <span class="muted">${list ? `${rows.length}${list.has_more ? '+' : ''} minting key${rows.length === 1 ? '' : 's'}` : ''}</span>
      <span class="grow"></span>
      <button class="btn btn-primary" onClick=${() => setCreating(true)} disabled=${!vendors} data-testid="new-minting-key">New minting key</button>
    </div>
    <${ErrorNote} error=${error} />
    <div class="card table-card">
      <table class="table" data-testid="minting-table">
        <thead><tr><th>Label</th><th>Vendors</th><th>Mode</th><th>Status</th><th>Highest cap</th><th>Longest life</th><th>Created</th><th></th></tr></thead>
        <tbody>
          ${rows.map(
            (m) => html`<tr key=${m.id} data-minting-id=${m.id}>
              <td><strong>${m.label || html`<span class="muted">(no label)</span>`}</strong><div class="muted small mono">${m.id}</div></td>
              <td>${m.vendors.join(', ')}</td>
              <td><${Badge} kind=${m.mode}>${m.mode}<//></td>
              <td><${Badge} kind=${m.status}>${m.status}<//></td>
              <td>${m.max_daily_usd_cap === null ? 'none' : usd(m.max_daily_usd_cap)}</td>
              <td>${duration(m.max_ttl * 1000)}</td>
              <td>${dateTime(m.created_at)}</td>
              <td class="actions">${m.status === 'active' && html`<button class="btn btn-small btn-danger-outline" onClick=${() => setRevoking(m)} data-testid="revoke-minting">Revoke</button>`}</td>
            </tr>`,
          )}
          ${list && rows.length === 0 && html`<tr><td colspan="8" class="empty">No minting keys yet.</td></tr>`}
        </tbody>
      </table>
    </div>
    <${Pager} pager=${pager} />
    ${creating &&
    html`<${NewMintingKeyDialog} vendors=${vendors ? vendors.data : []} onCancel=${() => setCreating(false)}
      onCreated=${(m) => { setCreating(false); setCreated(m); toast(`Created minting key ${m.label || m.id}`); reload(); }} />`}
    ${created && html`<${SecretOnce} title=${`Minting key ${created.label || created.id}`} what="minting secret" value=${created.secret} onDone=${() => setCreated(null)} />`}
    ${revoking &&
    html`<${Modal} title="Revoke minting key" danger confirmLabel="Revoke minting key" onCancel=${() => setRevoking(null)} onConfirm=${revoke}>
      <p>Revoke <strong>${revoking.label || revoking.id}</strong>? Every key minted from it is refused at once, and it can mint no more.</p>
    <//>`}
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
  // Keyed by id: following a link to another key starts its page afresh, never showing the last one's data.
  if (m) page = html`<${KeyDetailPage} key=${m[1]} id=${decodeURIComponent(m[1])} toast=${toast} />`;
  else if (hash.startsWith('#/audit')) (page = html`<${AuditPage} />`), (tab = 'audit');
  else if (hash.startsWith('#/overview')) (page = html`<${OverviewPage} />`), (tab = 'overview');
  else if (hash.startsWith('#/budgets')) (page = html`<${BudgetsPage} toast=${toast} />`), (tab = 'budgets');
  else if (hash.startsWith('#/minting')) (page = html`<${MintingPage} toast=${toast} />`), (tab = 'minting');
  else page = html`<${KeysPage} toast=${toast} />`;

  return html`<div class="shell">
    <header class="top">
      <div class="brand"><span class="logo"></span>keyleash</div>
      <nav>
        <a href="#/keys" class=${tab === 'keys' ? 'active' : ''}>Keys</a>
        <a href="#/audit" class=${tab === 'audit' ? 'active' : ''}>Audit</a>
        <a href="#/overview" class=${tab === 'overview' ? 'active' : ''}>Overview</a>
        <a href="#/budgets" class=${tab === 'budgets' ? 'active' : ''}>Budgets</a>
        <a href="#/minting" class=${tab === 'minting' ? 'active' : ''}>Minting keys</a>
      </nav>
      <span class="grow"></span>
      <button class="btn btn-ghost" onClick=${logout}>Sign out</button>
    </header>
    <main class="content">${page}</main>
    ${toastMsg && html`<div class=${`toast toast-${toastMsg.kind}`} role="status" data-testid="toast">${toastMsg.text}</div>`}
  </div>`;
}

render(html`<${App} />`, document.getElementById('app'));
