// Small DOM helpers. Data is only ever set as text (never innerHTML), so nothing the API returns
// can become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function link(href, text, attrs = {}) { return h('a', { href, ...attrs }, text); }

// --- formatting -----------------------------------------------------------------------------

export function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}
export const fmtMB = (mb) => fmtBytes(mb * 1024 * 1024);

/** Disk sizes the API keeps in GiB (disk_gb, size_gb: binary gigabytes, as the CLI prints them). */
export const fmtGiB = (gib) => (gib === null || gib === undefined ? '–' : `${gib} GiB`);

const pad = (n) => String(n).padStart(2, '0');

/** Local time with its zone, the one way the dashboard prints a time: "2026-12-07 15:23 +09:00". */
export function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const off = -d.getTimezoneOffset();
  const zone = `${off < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())} ${zone}`;
}

/** The same instant in UTC, ISO-8601 to the second ("2026-12-07T06:23:05Z"): every time's tooltip. */
export function fmtUtc(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function ago(iso) {
  if (!iso) return 'never';
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** A time as the dashboard shows it: local with its zone, UTC in the tooltip. */
export function timeEl(iso) {
  if (!iso) return '–';
  return h('time', { datetime: iso, title: `${fmtUtc(iso)} (UTC)` }, fmtTime(iso));
}

/** "3 min ago", with the full time (local and UTC) in the tooltip. */
export function agoEl(iso) {
  if (!iso) return 'never';
  return h('time', { datetime: iso, title: `${fmtTime(iso)} · ${fmtUtc(iso)} (UTC)` }, ago(iso));
}

// --- states, bars, tables -------------------------------------------------------------------

const TONES = {
  running: 'ok', up: 'ok', succeeded: 'ok', active: 'ok', success: 'ok', enabled: 'ok',
  building: 'info', queued: 'info', pending: 'info', importing: 'info', migrating: 'info', paused: 'warn',
  maintenance: 'warn', stopped: 'idle', shutoff: 'idle', cancelled: 'idle', disabled: 'idle',
  associated: 'ok', available: 'ok', met: 'ok', verified: 'ok', unassociated: 'idle', internal: 'idle',
  expired: 'idle', revoked: 'idle', creating: 'info', missed: 'bad', corrupt: 'bad',
  error: 'bad', failed: 'bad', down: 'bad', host_down: 'bad', denied: 'bad', deleted: 'idle',
};
export const STATE_COLORS = { ok: 'var(--ok)', info: 'var(--info)', warn: 'var(--warn)', idle: 'var(--idle)', bad: 'var(--bad)' };
export function tone(state) { return TONES[state] || 'info'; }

export function badge(state, extra) {
  return h('span', { class: `badge ${tone(state)}`, 'data-state': state }, state + (extra ? ` · ${extra}` : ''));
}

/**
 * A labelled bar: used of total (an accessible progressbar). `shown` replaces the visible label
 * where the context already says it (a table column), the accessible name keeps the full label.
 */
export function meter(label, used, total, fmt = (v) => String(v), shown = label) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  const cls = pct >= 95 ? 'fill full' : pct >= 80 ? 'fill hot' : 'fill';
  return h('div', { class: 'meter' },
    h('div', { class: 'label' }, shown ? h('span', {}, shown) : null,
      h('span', { class: 'muted' }, `${fmt(used)} / ${fmt(total)} (${pct.toFixed(0)}%)`)),
    h('div', {
      class: 'track', role: 'progressbar', 'aria-label': label,
      'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': pct.toFixed(0),
    }, h('div', { class: cls, style: { width: `${pct}%` } })));
}

export function progress(label, pct) {
  return h('div', { class: 'meter progress' },
    h('div', { class: 'label' }, h('span', {}, label), h('span', { class: 'muted' }, `${pct}%`)),
    h('div', { class: 'track', role: 'progressbar', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(pct) },
      h('div', { class: 'fill', style: { width: `${pct}%` } })));
}

/**
 * A table whose rows become labelled cards on a phone. Every labelled column sorts (a header
 * button: ascending, then descending; aria-sort says which), and a row with a string `id` gets a
 * "Copy id" button in its first cell.
 * columns: [{label, cell: (row) => Node|string, sortKey?: (row) => string|number, sort?: false}]
 * copyId: (row) => the id to copy, or null for none (default: row.id when it is a string)
 * A column's `head` (a node) replaces its header text. With `serverSort: {current, onSort}` the
 * rows are one page of an API list: only columns with a `sortField` sort, by asking `onSort` for
 * the API's order (`name`, `-name`), never by reordering the page.
 */
export function table(columns, rows, { caption, empty = 'Nothing here yet.', rowAttrs, copyId = defaultId, serverSort } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  const trs = rows.map((r) => {
    const tr = h('tr', rowAttrs ? rowAttrs(r) : {}, columns.map((c) => h('td', { 'data-label': c.label }, c.cell(r))));
    const id = copyId ? copyId(r) : null;
    const at = Math.max(0, columns.findIndex((c) => !c.head)); // not in a selection column
    if (id && tr.cells.length > at) {
      const td = tr.cells[at];
      td.append(h('span', { class: 'with-copy' }, ...td.childNodes, copyButton(id)));
    }
    return { r, tr };
  });
  const body = h('tbody', {}, trs.map((x) => x.tr));
  const el = h('table', { class: 'responsive' }, caption ? h('caption', {}, caption) : null);
  const memoKey = caption || columns.map((c) => c.label).join('|');
  const ths = columns.map((c, i) => {
    if (c.head) return h('th', { scope: 'col' }, c.head);
    if (serverSort) return serverTh(c, serverSort);
    if (c.sort === false || !c.label || c.label === 'Actions') return h('th', { scope: 'col' }, c.label);
    const sortBy = (dir) => {
      const key = (x) => (c.sortKey ? c.sortKey(x.r) : cellKey(x.tr.cells[i]));
      const sorted = [...trs].sort((a, b) => dir * collate(key(a), key(b)));
      body.append(...sorted.map((x) => x.tr));
      ths.forEach((th) => th.removeAttribute('aria-sort'));
      ths[i].setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
      sortMemo.set(memoKey, { i, dir });
    };
    const btn = h('button', { type: 'button', class: 'sort' }, c.label);
    btn.addEventListener('click', () => sortBy(ths[i].getAttribute('aria-sort') === 'ascending' ? -1 : 1));
    const th = h('th', { scope: 'col' }, btn);
    th.sortBy = sortBy;
    return th;
  });
  el.append(h('thead', {}, h('tr', {}, ths)), body);
  // a live refresh draws the table again: it keeps the order the user chose
  const memo = serverSort ? null : sortMemo.get(memoKey);
  if (memo && ths[memo.i]?.sortBy) ths[memo.i].sortBy(memo.dir);
  return el;
}

/** A header sorted by the API: its button asks for ascending, then descending. */
function serverTh(c, { current, onSort }) {
  if (!c.sortField) return h('th', { scope: 'col' }, c.label);
  const field = current.replace(/^-/, '');
  const dir = field !== c.sortField ? null : current.startsWith('-') ? 'descending' : 'ascending';
  const btn = h('button', { type: 'button', class: 'sort' }, c.label);
  btn.addEventListener('click', () => onSort(dir === 'ascending' ? `-${c.sortField}` : c.sortField));
  return h('th', { scope: 'col', 'aria-sort': dir }, btn);
}

const sortMemo = new Map();
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
const defaultId = (r) => (typeof r?.id === 'string' ? r.id : null);

/** What a cell sorts by: a time's instant, else its text. */
function cellKey(td) {
  const t = td.querySelector('time[datetime]');
  return t ? t.getAttribute('datetime') : td.textContent.trim();
}

function collate(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return collator.compare(String(a ?? ''), String(b ?? ''));
}

/** A small button that puts `id` on the clipboard (its icon is drawn by CSS, so the cell's text stays the value). */
export function copyButton(id) {
  return h('button', {
    type: 'button', class: 'copy', 'aria-label': 'Copy id', title: id, 'data-copy': id,
    onclick: async (ev) => {
      ev.stopPropagation();
      try {
        await navigator.clipboard.writeText(id);
        toast(`Copied ${id}`);
      } catch (err) {
        toast(`Could not copy: ${err.message}`, 'bad');
      }
    },
  });
}

export function card(title, ...children) {
  return h('section', { class: 'card', 'aria-label': typeof title === 'string' ? title : undefined },
    title ? h('h2', {}, title) : null, ...children);
}

export function pageHead(title, ...actions) {
  return h('div', { class: 'page-head' }, h('h1', { id: 'page-title' }, title),
    actions.length ? h('div', { class: 'actions' }, ...actions) : null);
}

export function errorBox(err) {
  const p = err?.problem;
  return h('div', { class: 'alert', role: 'alert' },
    h('strong', {}, p?.title || 'Error'), ' ', err?.message || String(err));
}

// --- dialogs and toasts ---------------------------------------------------------------------

/** A modal confirmation; resolves true when confirmed. */
export function confirmDialog(title, message, { confirm = 'Confirm', danger = false, body = null } = {}) {
  return new Promise((resolve) => {
    const id = `dlg-${Math.random().toString(36).slice(2)}`;
    const dlg = h('dialog', { 'aria-labelledby': `${id}-t`, 'aria-describedby': `${id}-d` },
      h('h2', { id: `${id}-t` }, title),
      h('p', { id: `${id}-d` }, message),
      body,
      h('div', { class: 'buttons' },
        h('button', { type: 'button', value: 'cancel', onclick: () => dlg.close('cancel') }, 'Cancel'),
        h('button', { type: 'button', class: danger ? 'danger' : 'primary', onclick: () => dlg.close('ok') }, confirm)));
    dlg.addEventListener('close', () => { dlg.remove(); resolve(dlg.returnValue === 'ok'); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function toast(message, kind = 'info') {
  const el = h('div', { class: `toast ${kind}` }, message);
  document.getElementById('toasts').append(el);
  setTimeout(() => el.remove(), 6000);
}

/** Call fn at most once per `ms`, the last call winning (for refreshes driven by events). */
/** Wrap an async read so only the last call started keeps its answer (earlier ones resolve to
 *  `undefined`): reloads that overlap never draw an older answer over a newer one. */
export function latestOnly(read) {
  let calls = 0;
  return async (...args) => {
    const mine = ++calls;
    const value = await read(...args);
    return mine === calls ? value : undefined;
  };
}

export function throttle(fn, ms = 400) {
  let timer = null;
  return (...args) => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
}

/** Add a stylesheet once (vendor CSS is loaded by the pages that need it). */
export function loadCss(href) {
  if (document.querySelector(`link[href="${href}"]`)) return;
  document.head.append(h('link', { rel: 'stylesheet', href }));
}
