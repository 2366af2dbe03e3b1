// Resize a VM: a stopped one takes its new size at its next start; a running one grows live
// (vCPUs and memory hot-added, root disk grown) up to the limits its API answer shows.

import { request } from '../api.js';
import { h, confirmDialog, fmtMB, toast } from '../ui.js';

/** What a running VM can grow to, or why it cannot: shown on the VM page and in the dialog. */
export function liveLimits(vm) {
  if (vm.max_vcpus == null) return 'no live resize (booted without headroom: stop and start it once)';
  return `up to ${vm.max_vcpus} vCPU · ${fmtMB(vm.max_ram_mb)} RAM while it runs`;
}

function numberField(id, label, value, { min, max } = {}) {
  const input = h('input', { id, name: id, type: 'number', min: String(min ?? 1), value: String(value), ...(max ? { max: String(max) } : {}) });
  return { input, el: h('div', { class: 'field' }, h('label', { for: id }, label), input) };
}

/** The resize dialog; resolves once the change is sent (a live one goes on as the VM's task). */
export async function resizeDialog(vm) {
  const live = vm.state === 'running';
  // a running VM only grows: the current size is the least it accepts
  const vcpus = numberField('resize-vcpus', 'vCPUs', vm.vcpus, { min: live ? vm.vcpus : 1, max: live ? vm.max_vcpus : null });
  const ram = numberField('resize-ram', 'RAM (MiB)', vm.ram_mb, { min: live ? vm.ram_mb : 64, max: live ? vm.max_ram_mb : null });
  const disk = numberField('resize-disk', 'Root disk (GiB, grows only)', vm.disk_gb, { min: vm.disk_gb });
  const message = live
    ? `It grows while it runs: ${liveLimits(vm)}, memory in steps of 128 MiB. Making it smaller needs a stop.`
    : 'The new size applies at its next start.';
  const ok = await confirmDialog(`Resize ${vm.name}?`, message,
    { confirm: 'Resize', body: h('div', { 'data-testid': 'resize-fields' }, vcpus.el, ram.el, disk.el) });
  if (!ok) return;
  const body = {};
  for (const [key, field, now] of [['vcpus', vcpus, vm.vcpus], ['ram_mb', ram, vm.ram_mb], ['disk_gb', disk, vm.disk_gb]]) {
    const value = Number(field.input.value);
    if (value !== now) body[key] = value;
  }
  if (!Object.keys(body).length) return;
  try {
    // If-Match: a change made meanwhile by someone else is refused (412), not overwritten
    const { etag } = await request(`/v1/vms/${vm.id}`);
    await request(`/v1/vms/${vm.id}`, { method: 'PATCH', body, ifMatch: etag });
    toast(live ? `Growing ${vm.name} while it runs.` : `${vm.name} takes its new size at its next start.`);
  } catch (err) { toast(err.message, 'bad'); }
}
