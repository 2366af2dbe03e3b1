// Quotas and usage: the quota tree with a bar per resource, capacity reservations, and the monthly
// usage and cost report (with budgets and prices, billing.js).

import { get, listAll, post, request } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, fmtMB, meter, pageHead, table, throttle, timeEl, toast } from '../ui.js';
import { budgetCard, priceCard } from './billing.js';
import { field, hostNames, onSubmit } from './common.js';
import { projectOptions } from './networks.js';

function nodeBars(node) {
  if (!node.resources.length) return h('p', { class: 'muted' }, 'Nothing used, no limit set.');
  return h('div', { class: 'bars' }, node.resources.map((r) => {
    const label = `${node.name} ${r.resource}`;
    const unit = r.unit && r.unit !== r.resource ? ` ${r.unit}` : '';
    const el = r.effective_limit === null
      ? h('div', { class: 'meter' }, h('div', { class: 'label' }, h('span', {}, r.resource),
        h('span', { class: 'muted' }, `${r.used}${unit} used, no limit`)))
      : meter(label, r.used, r.effective_limit, (v) => `${v}${unit}`, r.resource);
    el.dataset.resource = r.resource;
    el.dataset.used = String(r.used);
    el.dataset.limit = r.effective_limit === null ? '' : String(r.effective_limit);
    if (r.limit === null && r.effective_limit !== null) el.title = 'limit inherited from above';
    return el;
  }));
}

/** Nested lists from parent_id: tenant → projects → sub-projects (→ users). */
function tree(nodes) {
  const kids = {};
  const ids = new Set(nodes.map((n) => n.id));
  for (const n of nodes) (kids[ids.has(n.parent_id) ? n.parent_id : ''] ||= []).push(n);
  const branch = (list) => h('ul', {}, list.sort((a, b) => a.depth - b.depth || a.name.localeCompare(b.name)).map((n) => h('li', {},
    h('section', { class: 'node', 'data-node': n.id, 'aria-labelledby': `q-${n.id}` },
      h('h3', { id: `q-${n.id}` }, n.name, h('span', { class: 'muted' }, n.kind)), nodeBars(n)),
    kids[n.id] ? branch(kids[n.id]) : null)));
  return h('div', { class: 'tree' }, branch(kids[''] || []));
}

/**
 * Set or unset one limit of a node. PATCH with If-Match (the node's ETag from a fresh read), so a
 * change made meanwhile is refused rather than overwritten; the API refuses a limit above the
 * parent's (or below a descendant's) and names the field.
 */
function limitForm(nodes, resources, done) {
  const c = {
    node: h('select', { id: 'lim-node' }, nodes.map((n) => h('option', { value: n.id }, `${n.name} (${n.kind})`))),
    resource: h('select', { id: 'lim-resource' }, resources.map((r) => h('option', { value: r.name }, `${r.name} (${r.unit})`))),
    limits: h('input', { id: 'lim-value', type: 'number', inputmode: 'numeric', min: '0' }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Set limit');
  const form = h('form', { novalidate: true, 'aria-label': 'Set a limit' }, formError,
    h('div', { class: 'form-grid' },
      field('lim-node', 'Node', c.node), field('lim-resource', 'Resource', c.resource),
      field('lim-value', 'Limit', c.limits, 'Empty: unset (inherit from above).')),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const node = encodeURIComponent(c.node.value);
    const { etag } = await request(`/v1/quota?node_id=${node}`);
    const value = c.limits.value === '' ? null : Number(c.limits.value);
    const { data } = await request(`/v1/quota/nodes/${node}`, {
      method: 'PATCH', body: { limits: { [c.resource.value]: value } }, ifMatch: etag,
    });
    toast([`${data.name}: ${c.resource.value} ${value === null ? 'unset' : `limit ${value}`}.`, ...data.notes].join(' '));
    await done();
  });
  return form;
}

registerPage({
  path: '/quota',
  title: 'Quotas',
  section: 'Usage',
  permission: 'quota:read',
  order: 10,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const formBox = h('div');
    const load = async () => {
      const nodes = (await listAll('/v1/quota/nodes', { sort: 'depth' })).filter((n) => n.kind !== 'user' || n.resources.length);
      if (ctx.me.tenant_id) {
        // a read never creates a node: the caller's tenant and projects not charged yet are shown as
        // they will be (version 0, the default limits); setting a limit on one creates it
        const have = new Set(nodes.map((n) => n.id));
        const unborn = have.has(`tenant:${ctx.me.tenant_id}`) ? [] : [get('/v1/quota')];
        for (const p of await listAll('/v1/projects')) {
          if (!have.has(`project:${p.id}`)) unborn.push(get(`/v1/quota?project_id=${encodeURIComponent(p.id)}`));
        }
        nodes.push(...(await Promise.all(unborn)));
        nodes.sort((a, b) => a.depth - b.depth);
      }
      clear(box, nodes.length ? tree(nodes) : h('p', { class: 'empty' }, 'No quota nodes yet.'));
      return nodes;
    };
    clear(ctx.main, pageHead('Quotas'),
      h('p', { class: 'muted' }, 'Usage against the nearest limit on the way up the tree: a project never exceeds its tenant.'),
      card(null, box), formBox);
    const nodes = await load();
    if (ctx.can('quota:write')) {
      // tenant admins set limits inside their tenant; the tenant's and the system's are the platform's
      const writable = nodes.filter((n) => ctx.me.tenant_id === null || !['system', 'tenant'].includes(n.kind));
      const resources = await get('/v1/quota/resources');
      if (writable.length) formBox.append(card('Set a limit', limitForm(writable, resources, load)));
    }
    ctx.onCleanup(subscribe(['vm.*', 'quota.*'], throttle(() => load().catch(() => {}), 800)));
  },
});

const toIso = (local) => (local ? new Date(local).toISOString() : '');
function localInput(date) {
  const d = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

function reservationForm(projects, done) {
  const start = new Date(Date.now() + 3600_000);
  const c = {
    name: h('input', { id: 'res-name', autocomplete: 'off' }),
    vcpus: h('input', { id: 'res-vcpus', type: 'number', inputmode: 'numeric', value: '1' }),
    ram_mb: h('input', { id: 'res-ram_mb', type: 'number', inputmode: 'numeric', value: '512' }),
    starts_at: h('input', { id: 'res-starts_at', type: 'datetime-local', value: localInput(start) }),
    ends_at: h('input', { id: 'res-ends_at', type: 'datetime-local', value: localInput(new Date(start.getTime() + 3600_000)) }),
    project_id: h('select', { id: 'res-project' }, projects.map(([v, t]) => h('option', { value: v }, t))),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Reserve');
  const form = h('form', { novalidate: true, 'aria-label': 'New reservation' }, formError,
    field('res-name', 'Name', c.name, 'Lower-case letters, digits and dashes.'),
    h('div', { class: 'form-grid' }, field('res-vcpus', 'vCPUs', c.vcpus), field('res-ram_mb', 'RAM (MiB)', c.ram_mb)),
    field('res-starts_at', 'Starts (your time zone)', c.starts_at),
    field('res-ends_at', 'Ends', c.ends_at),
    projects.length > 1 ? field('res-project', 'Project', c.project_id) : null,
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = {
      name: c.name.value.trim(), vcpus: Number(c.vcpus.value), ram_mb: Number(c.ram_mb.value),
      starts_at: toIso(c.starts_at.value), ends_at: toIso(c.ends_at.value),
    };
    if (projects.length > 1) body.project_id = c.project_id.value;
    const r = await post('/v1/reservations', body, { idempotent: true });
    toast(`Reservation ${r.name} booked.`);
    await done();
  });
  return form;
}

registerPage({
  path: '/reservations',
  title: 'Reservations',
  section: 'Usage',
  permission: 'reservation:read',
  order: 20,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const hosts = await hostNames(ctx.can);
    const cancel = async (r) => {
      if (!(await confirmDialog(`Cancel ${r.name}?`, 'Its unused room is freed at once; VMs placed through it keep running.', { confirm: 'Cancel reservation', danger: true }))) return;
      try {
        await request(`/v1/reservations/${r.id}`, { method: 'DELETE' });
        toast(`Reservation ${r.name} cancelled.`);
        await load();
      } catch (err) { toast(err.message, 'bad'); }
    };
    const load = async () => {
      const rows = await listAll('/v1/reservations', { sort: 'starts_at' });
      clear(box, table([
        { label: 'Name', cell: (r) => h('strong', {}, r.name) },
        { label: 'Status', cell: (r) => badge(r.status) },
        { label: 'vCPUs', cell: (r) => `${r.vcpus_used} of ${r.vcpus} used` },
        { label: 'RAM', cell: (r) => `${fmtMB(r.ram_mb_used)} of ${fmtMB(r.ram_mb)} used` },
        { label: 'Window', cell: (r) => h('span', {}, timeEl(r.starts_at), ' – ', timeEl(r.ends_at)) },
        { label: 'Host', cell: (r) => hosts[r.host_id] || h('code', {}, r.host_id) },
        ...(ctx.can('reservation:write') ? [{
          label: 'Cancel',
          cell: (r) => (['pending', 'active'].includes(r.status)
            ? h('button', { type: 'button', 'aria-label': `Cancel reservation ${r.name}`, onclick: () => cancel(r) }, 'Cancel') : '–'),
        }] : []),
      ], rows, { caption: 'Capacity reservations', empty: 'No reservations.', rowAttrs: (r) => ({ 'data-reservation': r.name }) }));
    };
    const projects = ctx.can('reservation:write') ? await projectOptions(ctx) : [];
    clear(ctx.main, pageHead('Reservations'), h('div', { class: 'grid' }, card(null, box),
      ctx.can('reservation:write') ? card('Reserve capacity', reservationForm(projects, load)) : null));
    await load();
  },
});

function csvOf(report) {
  const q = (v) => `"${String(v).replaceAll('"', '""')}"`;
  const lines = [['project', 'resource', 'quantity', 'unit', 'cost'].join(',')];
  for (const i of report.items) lines.push([q(i.project), q(i.resource), i.quantity, q(i.unit), i.cost].join(','));
  lines.push(['"total"', '', '', '', report.total_cost].join(','));
  return lines.join('\n');
}

registerPage({
  path: '/usage',
  title: 'Usage and cost',
  section: 'Usage',
  permission: 'usage:read',
  order: 30,
  async render(ctx) {
    const { main, query } = ctx;
    const now = new Date();
    const month = h('input', { id: 'usage-month', type: 'month', value: query.get('month') || `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}` });
    const tenants = ctx.me.tenant_id ? [] : await listAll('/v1/tenants', { sort: 'name' });
    const tenant = h('select', { id: 'usage-tenant' }, tenants.map((t) => h('option', { value: t.id, selected: query.get('tenant') === t.id }, t.name)));
    const box = h('div', { 'aria-live': 'polite' });
    // amounts are in the price list's currency (the usage report does not repeat it)
    const cur = await get('/v1/prices').then((p) => p.items[0]?.currency || '', () => '');
    const money = (v, digits = 2) => `${v.toFixed(digits)}${cur ? ` ${cur}` : ''}`;
    let url = null;
    ctx.onCleanup(() => { if (url) URL.revokeObjectURL(url); });
    const load = async () => {
      const q = new URLSearchParams({ month: month.value });
      if (tenants.length) q.set('tenant_id', tenant.value);
      try {
        const report = await get(`/v1/usage?${q}`);
        if (url) URL.revokeObjectURL(url);
        // the API answers JSON only; the CSV is the same rows, made here
        url = URL.createObjectURL(new Blob([csvOf(report)], { type: 'text/csv' }));
        const budget = report.budget;
        clear(box,
          h('p', {}, h('strong', { 'data-testid': 'usage-total' }, `Total ${money(report.total_cost)}`),
            budget !== null ? [' of a budget of ', money(budget)] : ' (no budget set)', ' · ',
            h('a', { href: url, download: `usage-${report.month}.csv` }, 'Download CSV')),
          budget ? meter('Budget spent', report.total_cost, budget, (v) => money(v)) : null,
          table([
            { label: 'Project', cell: (i) => i.project },
            { label: 'Resource', cell: (i) => i.resource },
            { label: 'Quantity', cell: (i) => `${i.quantity} ${i.unit}` },
            { label: 'Cost', cell: (i) => money(i.cost, 4), sortKey: (i) => i.cost },
          ], report.items, { caption: `Usage in ${report.month}`, rowAttrs: (i) => ({ 'data-usage': i.resource }), empty: 'Nothing metered in this month yet (metering runs hourly).' }));
      } catch (err) {
        clear(box, errorBox(err));
      }
    };
    const form = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); load(); } },
      h('div', { class: 'field' }, h('label', { for: 'usage-month' }, 'Month'), month),
      tenants.length ? h('div', { class: 'field' }, h('label', { for: 'usage-tenant' }, 'Tenant'), tenant) : null,
      h('button', { type: 'submit' }, 'Show'));
    clear(main, pageHead('Usage and cost'), card(null, form, box));
    await load();
    const reload = () => load();
    main.append(h('div', { class: 'grid' }, await budgetCard(ctx, reload), await priceCard(ctx, reload)));
  },
});
