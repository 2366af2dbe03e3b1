// Traces: the recent traces of the platform's local store (a tenant's own requests), and one
// trace as a waterfall of its spans (API request, task and steps, agent operations, QMP commands).

import { get } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, link, pageHead, table, timeEl } from '../ui.js';

const STATUS_STATE = { error: 'error', ok: 'succeeded', unset: 'succeeded' };

function ms(value) {
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value.toFixed(1)} ms`;
}

registerPage({
  path: '/traces',
  title: 'Traces',
  section: 'Administration',
  permission: 'trace:read',
  order: 65,
  async render(ctx) {
    const { main, query } = ctx;
    const status = h('select', { id: 'trace-status' }, h('option', { value: '' }, 'any'),
      ['ok', 'unset', 'error'].map((s) => h('option', { value: s, selected: query.get('status') === s }, s)));
    const box = h('div', { 'aria-live': 'polite' });
    clear(main, pageHead('Traces'), card(null,
      h('div', { class: 'filters' }, h('div', { class: 'field' }, h('label', { for: 'trace-status' }, 'Status'), status)), box));
    const load = async () => {
      const params = new URLSearchParams({ limit: '100' });
      if (status.value) params.set('status', status.value);
      const page = await get(`/v1/traces?${params}`);
      clear(box, table([
        { label: 'Trace', cell: (t) => link(`#/traces/${t.trace_id}`, t.name) },
        { label: 'Id', cell: (t) => h('span', { class: 'mono' }, t.trace_id.slice(0, 12)) },
        { label: 'Status', cell: (t) => badge(STATUS_STATE[t.status] || 'info', t.status === 'error' ? 'error' : null) },
        { label: 'Duration', cell: (t) => ms(t.duration_ms) },
        { label: 'Started', cell: (t) => timeEl(t.started_at) },
      ], page.items, { caption: 'Recent traces, newest first', empty: 'No traces yet.' }));
    };
    status.addEventListener('change', () => load());
    await load();
  },
});

/** Each span's depth under its parent (a span whose parent is outside the trace is a root). */
function depths(spans) {
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const depth = new Map();
  const of = (s) => {
    if (depth.has(s.span_id)) return depth.get(s.span_id);
    depth.set(s.span_id, 0); // a cycle cannot recurse forever
    const parent = s.parent_id && byId.get(s.parent_id);
    const d = parent ? of(parent) + 1 : 0;
    depth.set(s.span_id, d);
    return d;
  };
  spans.forEach(of);
  return depth;
}

/** Spans in tree order: each followed by its children, siblings by start. */
function treeOrder(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const kids = new Map();
  for (const s of spans) {
    const key = s.parent_id && ids.has(s.parent_id) ? s.parent_id : null;
    if (!kids.has(key)) kids.set(key, []);
    kids.get(key).push(s);
  }
  const out = [];
  const seen = new Set();
  const walk = (key) => {
    for (const s of (kids.get(key) || []).sort((a, b) => a.offset_ms - b.offset_ms)) {
      if (seen.has(s.span_id)) continue;
      seen.add(s.span_id);
      out.push(s);
      walk(s.span_id);
    }
  };
  walk(null);
  return out;
}

function waterfall(trace) {
  const total = Math.max(trace.duration_ms, 0.001);
  const depth = depths(trace.spans);
  const rows = treeOrder(trace.spans);
  return table([
    {
      label: 'Span',
      cell: (s) => h('span', { class: 'span-name', style: { paddingLeft: `${Math.min(depth.get(s.span_id), 12) * 0.9}rem` } },
        s.name, s.status === 'error' ? [' ', badge('error')] : null),
    },
    { label: 'Service', cell: (s) => s.service.replace('novacron-', '') },
    {
      label: 'Timeline',
      cell: (s) => h('div', { class: 'waterfall-track', title: `${ms(s.offset_ms)} + ${ms(s.duration_ms)}` },
        h('div', {
          class: `waterfall-bar ${s.status === 'error' ? 'bad' : ''}`,
          style: { left: `${(100 * s.offset_ms) / total}%`, width: `${Math.max(0.3, (100 * s.duration_ms) / total)}%` },
        })),
    },
    { label: 'Start', cell: (s) => `+${ms(s.offset_ms)}` },
    { label: 'Duration', cell: (s) => ms(s.duration_ms) },
  ], rows, { caption: `${rows.length} spans`, empty: 'No spans.', rowAttrs: (s) => ({ 'data-span': s.name }) });
}

function details(spans) {
  return h('details', {}, h('summary', {}, 'Span attributes'),
    h('pre', { class: 'mono', style: { whiteSpace: 'pre-wrap', overflowWrap: 'anywhere' } }, JSON.stringify(spans.map((s) => ({
      name: s.name, span_id: s.span_id, parent_id: s.parent_id, host: s.host || undefined,
      status_message: s.status_message || undefined, attributes: s.attributes,
    })), null, 2)));
}

registerPage({
  path: '/traces/:id',
  title: 'Trace',
  permission: 'trace:read',
  async render(ctx) {
    const { main, params } = ctx;
    const trace = await get(`/v1/traces/${encodeURIComponent(params.id)}`);
    clear(main, h('p', {}, link('#/traces', '← Traces')), pageHead(`Trace ${trace.trace_id.slice(0, 12)}`),
      card(null,
        h('p', {}, 'Started ', timeEl(trace.started_at), ` · ${ms(trace.duration_ms)} · `,
          h('span', { class: 'mono', style: { overflowWrap: 'anywhere' } }, trace.trace_id)),
        h('p', { class: 'muted' }, 'Log lines of this trace carry its id: ', h('code', { style: { overflowWrap: 'anywhere' } }, `"trace_id": "${trace.trace_id}"`)),
        waterfall(trace), details(trace.spans)));
  },
});
