// The tenant's monitoring overview: every VM with its current CPU and guest memory, each column one
// PromQL query over the tenant's series (GET /v1/metrics/query), each VM linking to its charts.

import { get, listAll } from '../api.js';
import { h, clear, card, pageHead, table, link, badge } from '../ui.js';
import { addSection, registerPage } from '../registry.js';
import { fmtUnit } from './metric_chart.js';

addSection('Monitoring', { before: 'Infrastructure' });

/** The overview's columns: [label, unit, PromQL giving one value per vm_id]. */
export const OVERVIEW_QUERIES = [
  ['CPU (vCPUs)', 'cores', 'sum by (vm_id) (rate(novacron_vm_cpu_seconds_total[1m]))'],
  ['Guest memory used', 'bytes', 'sum by (vm_id) (novacron_vm_guest_memory_total_bytes - novacron_vm_guest_memory_available_bytes)'],
  ['QEMU process RSS', 'bytes', 'sum by (vm_id) (novacron_vm_process_resident_memory_bytes)'],
];

async function byVm(promql, signal) {
  const answer = await get(`/v1/metrics/query?${new URLSearchParams({ query: promql })}`, { signal });
  return Object.fromEntries(answer.data.result.map((r) => [r.metric.vm_id, Number(r.value[1])]));
}

registerPage({
  path: '/monitoring',
  title: 'Usage overview',
  section: 'Monitoring',
  permission: 'metrics:read',
  order: 10,
  async render(ctx) {
    const { main, signal } = ctx;
    const box = h('div', { 'aria-live': 'polite' });
    clear(main, pageHead('Monitoring overview'),
      card('Your VMs now', h('p', { class: 'muted' }, 'Current guest CPU and memory of each VM; select a VM for its charts.'), box));
    const load = async () => {
      const [vms, ...columns] = await Promise.all([listAll('/v1/vms', { sort: 'name' }),
        ...OVERVIEW_QUERIES.map(([, , q]) => byVm(q, signal))]);
      clear(box, table([
        { label: 'VM', cell: (vm) => link(`#/vms/${vm.id}`, vm.name) },
        { label: 'State', cell: (vm) => badge(vm.state) },
        ...OVERVIEW_QUERIES.map(([label, unit], i) => ({ label, cell: (vm) => fmtUnit(unit, columns[i][vm.id]) })),
      ], vms, { caption: 'VMs and their current usage', empty: 'No VMs yet.', rowAttrs: (vm) => ({ 'data-vm': vm.name }) }));
    };
    await load();
    let timer = setInterval(() => load().catch(() => {}), 10000);
    ctx.onCleanup(() => { clearInterval(timer); timer = null; });
  },
});
