// A host's charts (administrators): GET /v1/hosts/{id}/metrics?range= — CPU by mode, memory, load,
// disk, network, the state directory's filesystem and the QEMU process count.

import { get } from '../api.js';
import { h, clear, card, pageHead, link } from '../ui.js';
import { registerPage } from '../registry.js';
import { mountChartSet } from './metric_chart.js';

export const HOST_CHARTS = [
  { key: 'cpu', title: 'CPU by mode', unit: 'cores', names: ['cpu', 'cpus'] },
  { key: 'memory', title: 'Memory', unit: 'bytes', names: ['memory_used', 'memory_total'] },
  { key: 'load', title: 'Load', unit: 'load', names: ['load1', 'load15'] },
  { key: 'disk', title: 'Disk throughput', unit: 'bytes/s', names: ['disk_read', 'disk_write'] },
  { key: 'network', title: 'Network', unit: 'bytes/s', names: ['net_rx', 'net_tx'] },
  { key: 'filesystem', title: 'State filesystem', unit: 'bytes', names: ['filesystem_used'] },
  { key: 'qemu', title: 'QEMU processes', unit: 'count', names: ['qemu_processes'] },
];

registerPage({
  path: '/hosts/:id/metrics',
  title: 'Host metrics',
  permission: 'global',
  async render(ctx) {
    const { main, params, signal } = ctx;
    const host = await get(`/v1/hosts/${encodeURIComponent(params.id)}`, { signal });
    const box = h('div', { 'data-testid': 'host-charts' });
    clear(main, pageHead(`${host.name}: metrics`), h('p', {}, link('#/hosts', 'All hosts')),
      card('Metrics', h('p', { class: 'muted' }, 'Sampled every second by the host agent.'), box));
    ctx.onCleanup(mountChartSet(box, `/v1/hosts/${encodeURIComponent(host.id)}/metrics`, HOST_CHARTS, signal));
  },
});
