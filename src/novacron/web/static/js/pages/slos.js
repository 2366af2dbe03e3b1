// SLOs: the list (target, SLI, error budget left as a bar, burn rates), the create form, and one
// SLO's page: its status figures and a budget burn chart over its window, drawn from the tenant
// PromQL API (/v1/metrics/query_range) over the probe's own series.

import uPlot from '/vendor/uPlot.esm.js';
import { get, listAll, post, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, card, confirmDialog, errorBox, link, loadCss, pageHead, table, timeEl, toast } from '../ui.js';
import { checkField, field, onSubmit } from './common.js';
import { MONITORING, pill } from './alerts.js';
import { lastResult, targetText } from './probes.js';

/** Points drawn over an SLO's window (each the probe's good share over one step). */
const CHART_POINTS = 500;
const REFRESH_MS = 10000;

function pct(v, digits = 3) { return v === null || v === undefined ? '–' : `${(v * 100).toFixed(digits)} %`; }
function rate(v) { return v === null || v === undefined ? '–' : `${v.toFixed(2)}×`; }

/** The error budget left as a bar: full when untouched, red when (nearly) spent or overspent. */
export function budgetBar(name, remaining) {
  if (remaining === null || remaining === undefined) return h('span', { class: 'muted' }, 'no data yet');
  const shown = Math.max(0, Math.min(100, remaining * 100));
  const cls = remaining <= 0.1 ? 'fill full' : remaining <= 0.5 ? 'fill hot' : 'fill';
  return h('div', { class: 'meter' },
    h('div', { class: 'label' }, h('span', { class: 'muted' }, `${(remaining * 100).toFixed(1)} % left`)),
    h('div', {
      class: 'track', role: 'progressbar', 'aria-label': `Error budget left of ${name}`,
      'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': shown.toFixed(0),
    }, h('div', { class: cls, style: { width: `${shown}%` } })));
}

async function statusOf(slo) {
  try { return await get(`/v1/slos/${slo.id}/status`); } catch (err) { return { error: err }; }
}

function sloControls(probes, receivers) {
  return {
    name: h('input', { id: 'slo-name', autocomplete: 'off' }),
    probe_id: h('select', { id: 'slo-probe_id' }, h('option', { value: '' }, 'choose a probe'),
      probes.map((p) => h('option', { value: p.id }, `${p.name} (${p.kind})`))),
    indicator: h('select', { id: 'slo-indicator' },
      h('option', { value: 'success' }, 'Success'),
      h('option', { value: 'latency' }, 'Latency')),
    latency_threshold_s: h('input', { id: 'slo-latency_threshold_s', type: 'number', step: 'any', inputmode: 'decimal', value: '0.5' }),
    target_percent: h('input', { id: 'slo-target_percent', type: 'number', step: 'any', inputmode: 'decimal', value: '99.9' }),
    window_days: h('input', { id: 'slo-window_days', type: 'number', inputmode: 'numeric', value: '30' }),
    alerts: h('input', { id: 'slo-alerts', type: 'checkbox', checked: true }),
    alert_receivers: h('select', { id: 'slo-alert_receivers', multiple: true, size: String(Math.min(4, Math.max(2, receivers.length))) },
      receivers.map((r) => h('option', { value: r.id }, `${r.name} (${r.kind})`))),
  };
}

function sloForm(probes, receivers, done) {
  const c = sloControls(probes, receivers);
  const latencyRow = field('slo-latency_threshold_s', 'Within (s)', c.latency_threshold_s, 'A run slower than this counts as bad.');
  const showIndicator = () => { latencyRow.hidden = c.indicator.value !== 'latency'; };
  c.indicator.addEventListener('change', showIndicator);
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create SLO');
  const form = h('form', { novalidate: true, 'aria-label': 'New SLO' }, formError,
    h('div', { class: 'form-grid' },
      field('slo-name', 'Name', c.name, 'Letters, digits, . _ -'),
      field('slo-probe_id', 'Probe', c.probe_id, probes.length ? 'Its results are the indicator.' : 'Create a probe first.'),
      field('slo-indicator', 'Indicator', c.indicator, 'Success: the share of runs that succeed. Latency: that succeed in time.'),
      latencyRow,
      field('slo-target_percent', 'Target (%)', c.target_percent, 'The good share aimed at, like 99.9.'),
      field('slo-window_days', 'Window (days)', c.window_days, 'Rolling, 1 to 90.')),
    checkField('slo-alerts', 'Burn-rate alerts (page at 14.4× and 6×, ticket at 1×)', c.alerts),
    field('slo-alert_receivers', 'Alert receivers', c.alert_receivers, receivers.length ? 'Where its alerts go (Ctrl/Cmd-click for several).' : 'No receivers: its alerts show on the Alerts page only.'),
    submit);
  showIndicator();
  onSubmit(form, { controls: c, submit, formError, anyError: true }, async () => {
    const number = (el) => (el.value === '' ? null : Number(el.value));
    const body = {
      name: c.name.value.trim(),
      probe_id: c.probe_id.value,
      indicator: c.indicator.value,
      target_percent: number(c.target_percent),
      window_days: number(c.window_days),
      alerts: c.alerts.checked,
      alert_receivers: [...c.alert_receivers.selectedOptions].map((o) => o.value),
    };
    if (body.indicator === 'latency') body.latency_threshold_s = number(c.latency_threshold_s);
    const slo = await post('/v1/slos', body, { idempotent: true });
    form.reset();
    showIndicator();
    toast(`SLO ${slo.name} created.`);
    await done();
  });
  return form;
}

registerPage({
  path: '/slos',
  title: 'SLOs',
  section: MONITORING,
  permission: 'slo:read',
  order: 60,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const canWrite = ctx.can('slo:write');
    const receivers = canWrite && ctx.can('alert:read') ? await listAll('/v1/alert-receivers', { sort: 'name' }) : [];
    let probes = [];
    const load = async () => {
      const [slos, allProbes] = await Promise.all([listAll('/v1/slos', { sort: 'name' }), listAll('/v1/probes', { sort: 'name' })]);
      probes = allProbes;
      const names = Object.fromEntries(probes.map((p) => [p.id, p.name]));
      const statuses = await Promise.all(slos.map(statusOf));
      const rows = slos.map((s, i) => ({ ...s, status: statuses[i] }));
      clear(box, table([
        { label: 'Name', cell: (s) => link(`#/slos/${s.id}`, s.name) },
        { label: 'Probe', cell: (s) => names[s.probe_id] || s.probe_id.slice(0, 8) },
        { label: 'Target', cell: (s) => `${s.target_percent} % over ${s.window_days} d${s.indicator === 'latency' ? ` within ${s.latency_threshold_s} s` : ''}` },
        { label: 'SLI', cell: (s) => (s.status.error ? h('span', { class: 'muted' }, s.status.error.message) : pct(s.status.sli)) },
        { label: 'Budget left', cell: (s) => budgetBar(s.name, s.status.budget_remaining) },
        { label: 'Burn 5 min / 1 h', cell: (s) => `${rate(s.status.burn_rate_5m)} / ${rate(s.status.burn_rate_1h)}` },
      ], rows, { caption: 'Service level objectives', empty: 'No SLOs yet.', rowAttrs: (s) => ({ 'data-slo': s.name }) }));
    };
    await load();
    clear(ctx.main, pageHead('SLOs', link('#/probes', 'Probes'), link('#/slo-report', 'Monthly report')),
      card(null, box),
      canWrite ? card('New SLO', sloForm(probes, receivers, load)) : null);
    const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
    ctx.onCleanup(() => clearInterval(timer));
  },
});

// --- one SLO: figures and the budget burn chart ------------------------------------------------

/** PromQL of the probe's good share over each `step` seconds (the same indicator the API measures). */
export function goodShareQuery(slo, probe, step) {
  const sel = (metric) => `${metric}{probe_id=${JSON.stringify(probe.id)}}`;
  if (slo.indicator === 'latency') {
    const good = `(${sel('novacron_probe_duration_seconds')} <= bool ${slo.latency_threshold_s}) * ${sel('novacron_probe_success')}`;
    return `avg_over_time((${good})[${step}s:${probe.interval_s}s])`;
  }
  return `avg_over_time(${sel('novacron_probe_success')}[${step}s])`;
}

/**
 * The budget burn over the window from the per-step good shares: the budget left after each step
 * (the bad share so far over the window's measured steps, against the allowed bad share; it ends
 * near the status's `budget_remaining`, which weighs each run rather than each step) and each step's burn rate (1 = on course to spend
 * exactly the budget in the window).
 */
export function burnSeries(points, errorBudget) {
  const t = [];
  const left = [];
  const burn = [];
  let bad = 0;
  for (const [time, value] of points) {
    const share = Number(value);
    bad += 1 - share;
    t.push(Number(time));
    left.push(100 * (1 - bad / points.length / errorBudget));
    burn.push((1 - share) / errorBudget);
  }
  return { t, left, burn };
}

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

function plot(el, label, color, fmt, data) {
  const axis = { stroke: css('--text'), grid: { stroke: css('--border'), width: 1 }, ticks: { stroke: css('--border') } };
  return new uPlot({
    width: Math.max(240, el.clientWidth - 4),
    height: 170,
    legend: { show: true, live: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [axis, { ...axis, size: 70, values: (u, vals) => vals.map(fmt) }],
    series: [{ label: 'Time' }, { label, stroke: css(color), width: 2, points: { show: false }, value: (u, v) => (v === null ? '–' : fmt(v)) }],
  }, data, el);
}

function mountBurnChart(container, slo, probe, status, signal) {
  loadCss('/vendor/uPlot.min.css');
  const windowS = slo.window_days * 86400;
  const step = Math.max(probe.interval_s, Math.ceil(windowS / CHART_POINTS));
  const charts = [
    { key: 'budget', title: 'Error budget left', label: 'budget left', color: '--accent', fmt: (v) => `${v.toFixed(1)} %` },
    { key: 'burn', title: 'Burn rate', label: 'burn rate', color: '--warn', fmt: (v) => `${v.toFixed(2)}×` },
  ].map((spec) => {
    const plotEl = h('div', { role: 'img', 'aria-label': `${spec.title} of ${slo.name} over its ${slo.window_days}-day window` });
    const fig = h('figure', { class: 'chart', 'data-chart': spec.key, style: { margin: 0 } }, h('h3', {}, spec.title), plotEl);
    return { ...spec, plotEl, fig, plot: null };
  });
  const note = h('p', { class: 'muted', 'data-testid': 'chart-step' });
  const problem = h('div');
  clear(container, note, problem, h('div', { class: 'charts' }, charts.map((c) => c.fig)));
  let data = null;
  const draw = () => {
    for (const c of charts) {
      c.plot?.destroy();
      c.plot = plot(c.plotEl, c.label, c.color, c.fmt, [data.t, c.key === 'budget' ? data.left : data.burn]);
    }
  };
  (async () => {
    const end = Math.floor(Date.now() / 1000);
    const q = new URLSearchParams({ query: goodShareQuery(slo, probe, step), start: String(end - windowS + step), end: String(end), step: `${step}s` });
    try {
      const answer = await get(`/v1/metrics/query_range?${q}`, { signal });
      const points = answer.data.result[0]?.values || [];
      data = burnSeries(points, status.error_budget);
      container.dataset.points = String(points.length);
      note.textContent = points.length
        ? `${slo.window_days}-day window, one point every ${step >= 3600 ? `${(step / 3600).toFixed(1)} h` : step >= 60 ? `${Math.round(step / 60)} min` : `${step} s`}; ${points.length} with results.`
        : 'No probe results in the window yet.';
      draw();
    } catch (err) {
      if (!signal.aborted) clear(problem, errorBox(err));
    }
  })();
  const resize = new ResizeObserver(() => charts.forEach((c) => c.plot?.setSize({ width: Math.max(240, c.plotEl.clientWidth - 4), height: 170 })));
  resize.observe(container);
  const retheme = () => { if (data) draw(); };
  window.addEventListener('novacron:theme', retheme);
  return () => { resize.disconnect(); window.removeEventListener('novacron:theme', retheme); charts.forEach((c) => c.plot?.destroy()); };
}

function figure(label, value, key) {
  return h('div', { class: 'field', 'data-figure': key }, h('div', { class: 'muted' }, label), h('strong', {}, value));
}

registerPage({
  path: '/slos/:id',
  title: 'SLO',
  permission: 'slo:read',
  async render(ctx) {
    const slo = await get(`/v1/slos/${encodeURIComponent(ctx.params.id)}`);
    const [probe, status] = await Promise.all([get(`/v1/probes/${slo.probe_id}`), statusOf(slo)]);
    document.title = `SLO ${slo.name} · NovaCron`;
    const remove = async () => {
      if (!(await confirmDialog(`Delete SLO ${slo.name}?`, 'Its burn-rate alert rules go with it; the probe stays.', { confirm: 'Delete', danger: true }))) return;
      try {
        await request(`/v1/slos/${slo.id}`, { method: 'DELETE' });
        toast(`SLO ${slo.name} deleted.`);
        ctx.navigate('/slos');
      } catch (err) { toast(err.message, 'bad'); }
    };
    const figures = status.error ? errorBox(status.error) : h('div', { class: 'form-grid', 'data-testid': 'slo-figures' },
      figure('Target', `${slo.target_percent} %`, 'target'),
      figure(`SLI over ${slo.window_days} d`, pct(status.sli), 'sli'),
      figure('Error budget', pct(status.error_budget), 'budget'),
      figure('Budget used', pct(status.budget_consumed, 1), 'consumed'),
      figure('Burn rate 5 min', rate(status.burn_rate_5m), 'burn5m'),
      figure('Burn rate 1 h', rate(status.burn_rate_1h), 'burn1h'));
    const chartBox = h('div', { 'data-testid': 'burn-chart' });
    clear(ctx.main,
      pageHead(`SLO ${slo.name}`, link('#/slos', 'All SLOs'),
        ctx.can('slo:write') ? h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete') : null),
      card('Status', status.error ? null : budgetBar(slo.name, status.budget_remaining), figures,
        status.at ? h('p', { class: 'muted' }, 'As of ', timeEl(status.at)) : null),
      card('Budget burn', chartBox),
      card('Probe', h('p', {}, h('strong', {}, probe.name), ' ', h('code', {}, targetText(probe))), lastResult(probe)),
      card('Burn-rate alerts', table([
        { label: 'Alert', cell: (r) => r.name.replace(`${slo.id}-`, '') },
        { label: 'Severity', cell: (r) => pill(r.severity, { critical: 'bad', warning: 'warn' }[r.severity]) },
        { label: 'Rule', cell: (r) => (r.rule_id ? link('#/alert-rules', 'in alert rules') : 'not made') },
        { label: 'Expression', cell: (r) => h('code', {}, r.expr) },
      ], slo.alert_rules, { caption: 'Multiwindow burn-rate alerts', empty: 'No alerts.' })));
    if (!status.error) ctx.onCleanup(mountBurnChart(chartBox, slo, probe, status, ctx.signal));
  },
});
