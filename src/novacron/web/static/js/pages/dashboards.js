// Custom dashboards (/v1/dashboards): each user's own panels of PromQL queries over the tenant's
// series, drawn with uPlot from /v1/metrics/query_range (a stat panel: /v1/metrics/query).

import { ApiError, get, listAll, post, request } from '../api.js';
import { h, clear, card, pageHead, table, link, errorBox, confirmDialog, toast } from '../ui.js';
import { registerPage } from '../registry.js';
import { apiForm } from './common.js';
import { LineChart, RANGES, fmtUnit, rangePicker } from './metric_chart.js';

const UNITS = [['', 'no unit'], ['cores', 'cores'], ['bytes', 'bytes (MiB, GiB)'], ['bytes/s', 'bytes per second'],
  ['ops/s', 'operations per second'], ['percent', 'percent'], ['seconds', 'seconds'], ['load', 'load'], ['count', 'count']];
const CHART_TYPES = [['line', 'Line chart'], ['area', 'Area chart'], ['stat', 'Latest value']];
const PANEL_FIELDS = [
  { name: 'title', label: 'Panel title' },
  { name: 'query', label: 'PromQL query', type: 'textarea', hint: 'Over your tenant\'s series, e.g. sum by (vm_id) (rate(novacron_vm_cpu_seconds_total[1m]))' },
  { name: 'unit', label: 'Unit', type: 'select', options: UNITS },
  { name: 'chart', label: 'Chart type', type: 'select', options: CHART_TYPES },
];
const REFRESH_MS = 5000;

function panelOf(values) {
  return { title: values.title, query: values.query, unit: values.unit, chart: values.chart };
}

/** A result's label set as a line name (its tenant label left out: it is always the caller's). */
function lineName(metric, fallback) {
  const labels = Object.entries(metric).filter(([k]) => k !== 'tenant_id' && k !== '__name__');
  return labels.length ? labels.map(([k, v]) => `${k}=${v}`).join(', ') : (metric.__name__ || fallback);
}

/** An API refusal of a panel (`body.panels.0.query`) put on the form's own field (`query`). */
async function onPanelFields(action) {
  try {
    return await action();
  } catch (err) {
    for (const e of err?.problem?.errors || []) e.field = String(e.field).replace(/^body\.panels\.\d+\./, '');
    throw err;
  }
}

function stepFor(rangeS) { return Math.max(1, Math.ceil(rangeS / 300)); }

/** One panel: a uPlot chart over the picked range, or the latest value(s). Returns {refresh, destroy}. */
function mountPanel(grid, panel, signal) {
  const box = h('section', { class: 'card', 'aria-label': panel.title, 'data-panel': panel.title });
  grid.append(box);
  const problem = h('div');
  if (panel.chart === 'stat') {
    const value = h('div', { class: 'stat-value' });
    box.append(h('h2', {}, panel.title), value, problem);
    return {
      async refresh() {
        const answer = await get(`/v1/metrics/query?${new URLSearchParams({ query: panel.query })}`, { signal });
        const result = answer.data.result;
        const v = answer.data.resultType === 'scalar' ? [{ metric: {}, value: result }] : result;
        value.textContent = v.length ? v.map((r) => fmtUnit(panel.unit, Number(r.value[1]))).join(' · ') : 'no data';
      },
      destroy() {},
    };
  }
  const chart = new LineChart(box, { title: panel.title, unit: panel.unit, area: panel.chart === 'area' });
  box.append(problem);
  return {
    async refresh(rangeS) {
      const end = Math.floor(Date.now() / 1000);
      const step = stepFor(rangeS);
      const q = new URLSearchParams({ query: panel.query, start: String(end - rangeS), end: String(end), step: String(step) });
      try {
        const answer = await get(`/v1/metrics/query_range?${q}`, { signal });
        clear(problem);
        chart.set(answer.data.result.map((r) => ({ label: lineName(r.metric, panel.title), points: r.values.map(([t, v]) => [t, Number(v)]) })));
      } catch (err) {
        if (!signal.aborted) clear(problem, errorBox(err));
      }
    },
    resize() { chart.resize(); },
    destroy() { chart.destroy(); },
  };
}

registerPage({
  path: '/dashboards',
  title: 'Dashboards',
  section: 'Monitoring',
  permission: 'metrics:read',
  order: 20,
  async render(ctx) {
    const { main, can, navigate } = ctx;
    const list = h('div');
    clear(main, pageHead('Custom dashboards'), card('Your dashboards', list));
    const load = async () => {
      const rows = await listAll('/v1/dashboards', { sort: 'name' });
      clear(list, table([
        { label: 'Name', cell: (d) => link(`#/dashboards/${d.id}`, d.name) },
        { label: 'Panels', cell: (d) => String(d.panels.length) },
      ], rows, { caption: 'Your dashboards (only you see them)', empty: 'No dashboards yet.', rowAttrs: (d) => ({ 'data-dashboard': d.name }) }));
    };
    await load();
    if (can('dashboard:write')) {
      main.append(card('New dashboard', apiForm('dash', [{ name: 'name', label: 'Dashboard name' }, ...PANEL_FIELDS], 'Create dashboard', async (v) => {
        const made = await onPanelFields(() => post('/v1/dashboards', { name: v.name, panels: [panelOf(v)] }, { idempotent: true }));
        navigate(`/dashboards/${made.id}`);
      })));
    }
  },
});

registerPage({
  path: '/dashboards/:id',
  title: 'Dashboard',
  async render(ctx) {
    const { main, params, signal, can, navigate } = ctx;
    let dash;
    try {
      dash = await get(`/v1/dashboards/${encodeURIComponent(params.id)}`, { signal });
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) { clear(main, pageHead('Not found'), h('p', {}, link('#/dashboards', 'Your dashboards'))); return; }
      throw err;
    }
    let rangeS = RANGES[1][2];
    const grid = h('div', { class: 'panels' });
    const del = h('button', { type: 'button', class: 'danger' }, 'Delete');
    clear(main, pageHead(dash.name, can('dashboard:write') ? del : null),
      h('div', { class: 'chart-bar' }, rangePicker('1h', (r) => { rangeS = RANGES.find((x) => x[0] === r)[2]; refresh(); })),
      grid);
    const panels = dash.panels.map((p) => mountPanel(grid, p, signal));
    const refresh = () => Promise.all(panels.map((p) => p.refresh(rangeS).catch(() => {})));
    await refresh();
    const timer = setInterval(refresh, REFRESH_MS);
    const resize = new ResizeObserver(() => panels.forEach((p) => p.resize?.()));
    resize.observe(grid);
    ctx.onCleanup(() => { clearInterval(timer); resize.disconnect(); panels.forEach((p) => p.destroy()); });
    del.addEventListener('click', async () => {
      if (!(await confirmDialog(`Delete ${dash.name}?`, 'Its panels are deleted with it.', { confirm: 'Delete', danger: true }))) return;
      try {
        const { etag } = await request(`/v1/dashboards/${dash.id}`);
        await request(`/v1/dashboards/${dash.id}`, { method: 'DELETE', ifMatch: etag });
        navigate('/dashboards');
      } catch (err) { toast(err.message, 'bad'); }
    });
    if (can('dashboard:write')) {
      main.append(card('Add a panel', apiForm('panel', PANEL_FIELDS, 'Add panel', async (v) => {
        const { data, etag } = await request(`/v1/dashboards/${dash.id}`);
        const body = { name: data.name, panels: [...data.panels, panelOf(v)] };
        await onPanelFields(() => request(`/v1/dashboards/${dash.id}`, { method: 'PUT', ifMatch: etag, body }));
        const added = mountPanel(grid, panelOf(v), signal);
        panels.push(added);
        await added.refresh(rangeS);
      })));
    }
  },
});
