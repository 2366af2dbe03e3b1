// A VM's charts from the chart API (GET /v1/vms/{id}/metrics?range=): CPU of the guest's vCPUs and
// of the QEMU process, guest memory as the guest sees it (virtio-balloon) next to the QEMU process's
// RSS, disk and network; a range picker from live 5 minutes to 30 days.

import { mountChartSet } from './metric_chart.js';

export const VM_CHARTS = [
  { key: 'cpu', title: 'CPU', unit: 'cores', names: ['cpu', 'process_cpu'] },
  { key: 'memory', title: 'Memory: guest view vs QEMU process', unit: 'bytes', names: ['guest_memory_used', 'guest_memory_total', 'process_rss'] },
  { key: 'disk', title: 'Disk throughput', unit: 'bytes/s', names: ['disk_read', 'disk_write'] },
  { key: 'disk_ops', title: 'Disk operations', unit: 'ops/s', names: ['disk_read_ops', 'disk_write_ops'] },
  { key: 'network', title: 'Network', unit: 'bytes/s', names: ['net_rx', 'net_tx'] },
];

export function mountCharts(container, vmId, signal) {
  return mountChartSet(container, `/v1/vms/${encodeURIComponent(vmId)}/metrics`, VM_CHARTS, signal);
}
