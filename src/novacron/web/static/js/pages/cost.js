// Cost (issue 15): what the tenant's VMs cost per hour and month in the platform's currency, VM by
// VM beside the cheapest AWS, Azure and Google Cloud shape that fits (each with its region, date and
// source), and the rightsizing recommendations with what they save. Platform administrators, who
// belong to no tenant, choose the tenant. Capacity (administrators): when each host group and
// subnet runs out, the resource that runs out first, with the forecast's interval.

import { get, listAll } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, card, errorBox, fmtMB, fmtTime, meter, pageHead, table, fmtGiB, timeEl } from '../ui.js';
import { field, onSubmit } from './common.js';

const CLOUDS = [['aws', 'AWS'], ['azure', 'Azure'], ['gcp', 'Google Cloud']];

/** An amount with its currency: "0.0312 EUR" (small hourly prices keep four decimals). */
const money = (v, currency, digits = 2) => `${Number(v).toFixed(digits)} ${currency}`;

/** The cheapest cloud shape that fits, with what it costs and where the figure comes from. */
function cloudCell(shape) {
  if (!shape) return h('span', { class: 'muted' }, 'no shape fits');
  return h('span', { class: 'stack' },
    h('strong', {}, shape.type), ` ${money(shape.per_hour, 'USD', 4)}/h · ${money(shape.per_month, 'USD')}/month`,
    h('span', { class: 'muted' }, ` ${shape.region}, as of ${shape.as_of}, `,
      h('a', { href: shape.source, rel: 'noopener noreferrer', target: '_blank' }, 'source')));
}

function totals(report) {
  const c = report.currency;
  return h('dl', { class: 'kv', 'data-testid': 'cost-total' }, [
    ['Per hour', money(report.per_hour, c, 4)],
    ['Per month', money(report.per_month, c)],
    ['Compute per hour', money(report.compute_per_hour, c, 4)],
    ...CLOUDS.map(([key, label]) => {
      const t = report.clouds[key];
      return [`On ${label}`, t ? `${money(t.per_month, 'USD')}/month${t.unmatched ? ` (${t.unmatched} VM(s) with no fitting shape)` : ''}` : '–'];
    }),
  ].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function vmTable(report) {
  const c = report.currency;
  return table([
    { label: 'VM', cell: (v) => h('a', { href: `#/vms/${v.vm_id}` }, v.name) },
    { label: 'Shape', cell: (v) => `${v.flavor || 'custom'}: ${v.vcpus} vCPU, ${fmtMB(v.ram_mb)}, ${fmtGiB(v.disk_gb)}` },
    { label: 'State', cell: (v) => v.state },
    { label: 'Per hour', cell: (v) => money(v.per_hour, c, 4) },
    { label: 'Per month', cell: (v) => money(v.per_month, c) },
    ...CLOUDS.map(([key, label]) => ({ label, cell: (v) => cloudCell(v.clouds[key]) })),
  ], report.items, { caption: 'Cost per VM', empty: 'No VMs.', rowAttrs: (v) => ({ 'data-vm': v.name }) });
}

function rightsizingTable(r) {
  const c = r.currency;
  const p95 = (v, unit) => (v === null ? 'no data' : `${v} ${unit}`);
  return [
    h('p', { 'data-testid': 'rightsizing-total' }, `Changing every VM below saves ${money(r.saving_per_month, c)} a month `
      + `(p95 over the last ${Math.round(r.window_s / 86400) || 1} day(s)).`),
    table([
      { label: 'VM', cell: (x) => x.name },
      { label: 'Now', cell: (x) => `${x.vcpus} vCPU, ${fmtMB(x.ram_mb)}` },
      { label: 'p95 CPU', cell: (x) => p95(x.cpu_p95_cores, 'cores') },
      { label: 'p95 memory', cell: (x) => p95(x.memory_p95_mb, 'MiB') },
      { label: 'Status', cell: (x) => x.status },
      { label: 'Suggested flavor', cell: (x) => x.flavor || '–' },
      { label: 'Saving per month', cell: (x) => money(x.saving_per_month, c) },
      { label: 'Why', cell: (x) => x.reason },
    ], r.items, { caption: 'Rightsizing', empty: 'No running VMs to size.', rowAttrs: (x) => ({ 'data-rightsizing': x.name }) }),
  ];
}

registerPage({
  path: '/cost',
  title: 'Cost',
  section: 'Usage',
  permission: 'usage:read',
  order: 40,
  async render(ctx) {
    // a platform administrator belongs to no tenant: it picks one (kept in the URL)
    const tenants = ctx.me.tenant_id ? [] : await listAll('/v1/tenants', { sort: 'name' });
    const tenant = ctx.query.get('tenant') || tenants[0]?.id || null;
    const q = tenant && tenants.length ? `?${new URLSearchParams({ tenant_id: tenant })}` : '';
    // rightsizing reads the metrics store: when it cannot, the costs still show, with its reason
    const [report, sizing] = await Promise.all([get(`/v1/cost${q}`), get(`/v1/cost/rightsizing${q}`).catch((err) => err)]);
    let picker = null;
    if (tenants.length) {
      const select = h('select', { id: 'cost-tenant' }, tenants.map((t) => h('option', { value: t.id, selected: t.id === tenant }, t.name)));
      select.addEventListener('change', () => ctx.navigate(`/cost?tenant=${encodeURIComponent(select.value)}`));
      picker = field('cost-tenant', 'Tenant', select);
    }
    clear(ctx.main, pageHead('Cost'), picker,
      card('Total', totals(report), h('p', { class: 'muted' }, report.note)),
      card('Per VM, beside the clouds', vmTable(report)),
      card('Rightsizing', sizing instanceof Error ? errorBox(sizing) : rightsizingTable(sizing)));
  },
});

// ---- capacity (administrators) ------------------------------------------------------------------

function runsOut(p) {
  if (!p.exhausted_expected) return h('span', { class: 'muted' }, 'not within the horizon');
  const range = `between ${p.exhausted_earliest ? fmtTime(p.exhausted_earliest) : 'now'} and ${p.exhausted_latest ? fmtTime(p.exhausted_latest) : 'after the horizon'}`;
  return h('span', {}, timeEl(p.exhausted_expected), h('span', { class: 'muted' }, ` (${range})`));
}

function groupCard(g, coverage) {
  const fmt = (unit) => (v) => (unit === 'MiB' ? fmtMB(v) : `${Number.isInteger(v) ? v : Number(v).toFixed(1)} ${unit}`);
  const first = g.pools.find((p) => p.resource === g.bottleneck);
  return h('section', { class: 'card', 'aria-label': `${g.kind} ${g.name}`, 'data-capacity': g.name },
    h('h2', {}, `${g.kind === 'subnet' ? 'Subnet' : 'Host group'} ${g.name}`),
    // the bottleneck is what runs out first, or else the fullest resource
    h('p', { 'data-testid': 'bottleneck' }, !g.bottleneck ? 'No resources metered yet.'
      : first?.exhausted_expected ? ['Runs out first: ', h('strong', {}, g.bottleneck)]
        : ['Nothing runs out within the horizon; the fullest is ', h('strong', {}, g.bottleneck), '.']),
    table([
      { label: 'Resource', cell: (p) => p.resource },
      { label: 'Used', cell: (p) => meter(`${g.name} ${p.resource}`, p.used, p.capacity, fmt(p.unit), '') },
      { label: 'Model', cell: (p) => `${p.model} · ${p.history_points} history points` },
      { label: `Runs out (${Math.round(coverage * 100)} % interval)`, cell: runsOut },
    ], g.pools, { caption: `Pools of ${g.name}`, rowAttrs: (p) => ({ 'data-resource': p.resource }) }));
}

registerPage({
  path: '/capacity',
  title: 'Capacity',
  section: 'Infrastructure',
  permission: 'host:read',
  order: 30,
  async render(ctx) {
    const horizon = Number(ctx.query.get('days')) || 90;
    const forecast = await get(`/v1/capacity/forecast?${new URLSearchParams({ horizon_days: String(horizon) })}`);
    const c = { horizon_days: h('input', { id: 'cap-days', type: 'number', min: 1, max: 730, value: String(horizon), inputmode: 'numeric' }) };
    const formError = h('div', { role: 'alert' });
    const submit = h('button', { type: 'submit' }, 'Forecast');
    const form = h('form', { novalidate: true, class: 'filters', 'aria-label': 'Horizon' }, formError,
      field('cap-days', 'Horizon (days)', c.horizon_days), submit);
    onSubmit(form, { controls: c, submit, formError }, async () => ctx.navigate(`/capacity?days=${encodeURIComponent(c.horizon_days.value)}`));
    clear(ctx.main, pageHead('Capacity'), form,
      h('p', { class: 'muted' }, `Forecast at ${fmtTime(forecast.now)} over ${forecast.horizon_hours / 24} days.`),
      forecast.groups.length ? forecast.groups.map((g) => groupCard(g, forecast.coverage)) : h('p', { class: 'empty' }, 'No host groups or subnets yet.'));
  },
});
