// A VM's guest information: its addresses and where they come from (the VM list's IP column), and
// the VM page's Guest panel (what the guest's qemu-guest-agent tells: hostname, OS, addresses per
// NIC, filesystems and their use). The API keeps it current from the host agents' reports.

import { get } from '../api.js';
import { h, clear, ago, fmtBytes } from '../ui.js';

export const SOURCES = { agent: 'guest agent', lease: 'DHCP lease', port: 'port (assigned, not yet leased)' };
// the panel re-reads the VM this often: guest information changes without a VM event
const REFRESH_MS = 10_000;

/** The list's IP cell: the first address, with how many more and the source as a tooltip. */
export function ipCell(vm) {
  const ips = vm.ips || [];
  if (!ips.length) return h('span', { class: 'muted', 'data-testid': 'vm-ip' }, '–');
  const more = ips.length > 1 ? ` +${ips.length - 1}` : '';
  return h('span', { 'data-testid': 'vm-ip', title: `${ips.join(', ')} (source: ${SOURCES[vm.ip_source] || '?'})` },
    h('code', {}, ips[0]), more);
}

function osText(os) {
  const name = os['pretty-name'] || os.name || '';
  const kernel = os['kernel-release'] ? `kernel ${os['kernel-release']}` : '';
  return [name, kernel, os.machine].filter(Boolean).join(' · ') || '–';
}

function filesystem(f) {
  const known = f.total_bytes && f.used_bytes !== null && f.used_bytes !== undefined;
  const pct = known ? Math.round((100 * f.used_bytes) / f.total_bytes) : null;
  return h('li', {}, h('code', {}, f.mountpoint), ` (${f.type}) `,
    known ? `${fmtBytes(f.used_bytes)} of ${fmtBytes(f.total_bytes)} used (${pct}%)` : 'use unknown');
}

function draw(box, vm) {
  const g = vm.guest || {};
  const ips = vm.ips || [];
  const rows = [
    ['Addresses', ips.length ? [h('code', {}, ips.join(', ')), ` (source: ${SOURCES[vm.ip_source] || '?'})`] : 'none known yet'],
    ['Guest agent', g.agent_at ? `answers (last ${ago(g.agent_at)})` : 'none answers: addresses from DHCP or the ports'],
  ];
  if (g.agent_at) {
    rows.push(['Hostname', g.hostname || '–'], ['OS', osText(g.os || {})],
      ['NICs', h('ul', { class: 'plain' }, (g.interfaces || []).map((n) => h('li', {},
        `${n.name} `, h('code', {}, n.mac), ' ', n.ips.length ? n.ips.join(', ') : 'no address')))],
      ['Filesystems', (g.filesystems || []).length ? h('ul', { class: 'plain' }, g.filesystems.map(filesystem)) : 'none reported']);
  }
  clear(box, h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
}

/** The Guest panel's content in `box`, re-read every REFRESH_MS while the page is open. */
export function mountGuest(ctx, box, vm) {
  box.dataset.testid = 'vm-guest';
  draw(box, vm);
  const timer = setInterval(() => {
    get(`/v1/vms/${encodeURIComponent(vm.id)}`).then((fresh) => draw(box, fresh)).catch(() => {});
  }, REFRESH_MS);
  ctx.onCleanup(() => clearInterval(timer));
  return (fresh) => draw(box, fresh);
}
