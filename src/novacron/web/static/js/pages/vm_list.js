// The VM list: filters, the API's order (a header asks GET /v1/vms?sort=, so the order is over all
// VMs, not the rows loaded), pages of a chosen size with "Load more", image and project by name,
// live usage (guest CPU and memory), the selection with bulk actions and each row's action menu
// (vm_bulk.js).

import { get, listAll } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, link, pageHead, table, fmtMB, timeEl, throttle, fmtGiB } from '../ui.js';
import { hostNames } from './common.js';
import { ipCell } from './guest_info.js';
import { bulkActions, rowMenu } from './vm_bulk.js';
import { fmtUnit } from './metric_chart.js';
import { OVERVIEW_QUERIES } from './monitoring_overview.js';

const STATES = ['building', 'running', 'stopped', 'paused', 'migrating', 'error', 'host_down'];
// the API's sort fields for this list (compute/vms.py LIST_SORTS)
const SORTS = ['name', 'state', 'created_at', 'updated_at', 'vcpus', 'ram_mb'];
const SIZES = [25, 50, 100, 200];
const USAGE_MS = 10_000;

/**
 * Live usage: guest CPU (cores) and guest memory used of every VM, from the monitoring overview's
 * PromQL (GET /v1/metrics/query, tenant-scoped by the API), re-read every 10 s and written into the
 * rows' Usage cells in place (no redraw: an open menu or a focused box stays). '–' without data.
 */
function liveUsage(ctx, main) {
  const values = [{}, {}];
  const text = (id) => (id in values[0] || id in values[1]
    ? `${fmtUnit('cores', values[0][id])} · ${fmtUnit('bytes', values[1][id])}` : '–');
  const paint = () => { for (const el of main.querySelectorAll('[data-usage]')) el.textContent = text(el.dataset.usage); };
  const read = async () => {
    const answers = await Promise.all(OVERVIEW_QUERIES.slice(0, 2).map(([, , q]) => get(`/v1/metrics/query?${new URLSearchParams({ query: q })}`)));
    answers.forEach((a, i) => { values[i] = Object.fromEntries(a.data.result.map((r) => [r.metric.vm_id, Number(r.value[1])])); });
    paint();
  };
  if (ctx.can('metrics:read')) {
    read().catch(() => {});
    const timer = setInterval(() => read().catch(() => {}), USAGE_MS);
    ctx.onCleanup(() => clearInterval(timer));
  }
  return (vm) => h('span', { 'data-usage': vm.id }, text(vm.id));
}

function field(id, label, control, hint) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), control,
    hint ? h('div', { class: 'hint', id: `${id}-hint` }, hint) : null,
    h('div', { class: 'error', id: `${id}-error`, 'aria-live': 'polite' }));
}

/** id -> name of the images and projects the user may read (a name, not an id, in the list). */
async function names(can) {
  const byId = (xs) => Object.fromEntries(xs.map((x) => [x.id, x.name]));
  const [images, projects] = await Promise.all([
    can('image:read') ? listAll('/v1/images').catch(() => []) : [],
    can('project:read') ? listAll('/v1/projects').catch(() => []) : [],
  ]);
  return { images: byId(images), projects: byId(projects) };
}

function pageSize(query) {
  const n = Number(query.get('limit'));
  return Number.isInteger(n) && n >= 1 && n <= 500 ? n : 50;
}

/** The list's columns: the selection, the API-sortable ones (sortField), names for ids, the menu. */
function columns(bulk, named, hosts, can, usage) {
  return [
    { label: 'Select', head: bulk.headBox(), cell: (v) => bulk.checkbox(v) },
    { label: 'Name', sortField: 'name', cell: (v) => link(`#/vms/${v.id}`, v.name) },
    { label: 'State', sortField: 'state', cell: (v) => badge(v.state, v.task_state) },
    { label: 'IP', cell: ipCell },
    { label: 'Image', cell: (v) => (v.image_id ? named.images[v.image_id] || v.image_id.slice(0, 12) : 'boot volume') },
    { label: 'Project', cell: (v) => named.projects[v.project_id] || v.project_id.slice(0, 12) },
    { label: 'Usage', cell: usage },
    { label: 'Size', sortField: 'ram_mb', cell: (v) => `${v.vcpus} vCPU · ${fmtMB(v.ram_mb)} · ${fmtGiB(v.disk_gb)}` },
    { label: 'Host', cell: (v) => (v.host_id ? hosts[v.host_id] || v.host_id.slice(0, 8) : '–') },
    { label: 'HA', cell: (v) => (v.ha ? `yes (${v.ha_priority})` : 'no') },
    { label: 'Created', sortField: 'created_at', cell: (v) => timeEl(v.created_at) },
    { label: 'Actions', cell: (v) => rowMenu(v, can, bulk.ops) },
  ];
}

registerPage({
  path: '/vms',
  title: 'Virtual machines',
  section: 'Compute',
  permission: 'vm:read',
  order: 10,
  async render(ctx) {
    const { main, query, can } = ctx;
    const search = h('input', { id: 'vm-search', type: 'search', value: query.get('q') || '', placeholder: 'name or id' });
    const state = h('select', { id: 'vm-state' }, h('option', { value: '' }, 'any'),
      STATES.map((s) => h('option', { value: s, selected: query.get('state') === s }, s)));
    const hostSel = h('select', { id: 'vm-host' }, h('option', { value: '' }, 'any'));
    let limit = pageSize(query);
    const sizeSel = h('select', { id: 'vm-limit' },
      [...new Set([...SIZES, limit])].sort((a, b) => a - b).map((n) => h('option', { value: String(n), selected: n === limit }, String(n))));
    let sort = SORTS.includes((query.get('sort') || '').replace(/^-/, '')) ? query.get('sort') : '-created_at';
    let vms = [];
    let pages = 1;
    let next = null;
    const bulk = bulkActions(ctx, () => vms);
    const results = h('div', { 'aria-live': 'polite' });
    clear(main,
      pageHead('Virtual machines', can('vm:create') ? link('#/vms/new', 'Create VM', { class: 'button primary', 'data-shortcut': 'create' }) : null),
      h('div', { class: 'card' },
        h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
          field('vm-search', 'Search', search),
          field('vm-state', 'State', state),
          can('host:read') ? field('vm-host', 'Host', hostSel) : null,
          field('vm-limit', 'Per page', sizeSel)),
        bulk.bar,
        results),
      bulk.results);

    const [hosts, named] = await Promise.all([hostNames(can), names(can)]);
    for (const [id, name] of Object.entries(hosts).sort((a, b) => a[1].localeCompare(b[1]))) {
      hostSel.append(h('option', { value: id, selected: query.get('host') === id }, name));
    }
    const cols = columns(bulk, named, hosts, can, liveUsage(ctx, main));
    const draw = () => {
      const q = search.value.trim().toLowerCase();
      const rows = vms.filter((v) => !q || v.name.includes(q) || v.id.startsWith(q));
      const more = next ? h('button', { type: 'button', id: 'vm-more', onclick: () => { pages += 1; load(); } }, 'Load more') : null;
      clear(results,
        h('p', { class: 'muted', 'data-testid': 'vm-count' }, `${rows.length} of ${vms.length} loaded shown${next ? ' · more in the API' : ''}`),
        table(cols, rows, {
          caption: 'Virtual machines', empty: vms.length ? 'No VM matches.' : 'No VMs yet.', rowAttrs: (v) => ({ 'data-vm': v.name }),
          serverSort: { current: sort, onSort: (s) => { sort = s; pages = 1; sync(); load(); } },
        }),
        more);
      bulk.prune();
    };
    let seq = 0;
    // one request for the pages shown so far, so a live refresh keeps what "Load more" added
    const load = async () => {
      const mine = ++seq;
      const params = new URLSearchParams({ sort, limit: String(Math.min(500, limit * pages)) });
      if (state.value) params.set('state', state.value);
      if (hostSel.value) params.set('host_id', hostSel.value);
      const page = await get(`/v1/vms?${params}`);
      if (mine !== seq) return;
      vms = page.items;
      next = page.next_cursor || null;
      draw();
    };
    const sync = () => {
      const p = new URLSearchParams();
      if (search.value) p.set('q', search.value);
      if (state.value) p.set('state', state.value);
      if (hostSel.value) p.set('host', hostSel.value);
      if (sort !== '-created_at') p.set('sort', sort);
      if (limit !== 50) p.set('limit', String(limit));
      history.replaceState(null, '', `#/vms${p.toString() ? `?${p}` : ''}`);
    };
    search.addEventListener('input', () => { sync(); draw(); });
    state.addEventListener('change', () => { sync(); pages = 1; load(); });
    hostSel.addEventListener('change', () => { sync(); pages = 1; load(); });
    sizeSel.addEventListener('change', () => { limit = Number(sizeSel.value); pages = 1; sync(); load(); });
    await load();
    // a redraw would close a row menu the user has open: wait until it is closed
    const refresh = throttle(() => {
      if (main.querySelector('details.row-menu[open]')) refresh();
      else load().catch(() => {});
    }, 500);
    ctx.onCleanup(subscribe(['vm.*'], refresh));
  },
});
