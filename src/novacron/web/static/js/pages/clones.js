// Clones and templates: the VM page's "Clone" and "Make template" actions, the Images page's
// template column and its "Mark as template" / "Unmark" and "New VMs" actions.

import { request } from '../api.js';
import { h, badge, confirmDialog, toast } from '../ui.js';

const NAME = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';

function field(id, label, input) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

async function cloneDialog(vm) {
  const name = h('input', { id: 'clone-name', required: true, pattern: NAME, value: `${vm.name}-clone` });
  // what the clone starts from: the disk as it is now (a full copy), or one of its snapshots (linked)
  const { data: snaps } = await request(`/v1/vms/${vm.id}/snapshots`);
  const from = h('select', { id: 'clone-from' },
    h('option', { value: '' }, 'Its disk now (full copy)'),
    snaps.items.filter((s) => s.status === 'available').flatMap((s) => [
      h('option', { value: `linked:${s.id}` }, `Snapshot ${s.name} (linked clone)`),
      h('option', { value: `full:${s.id}` }, `Snapshot ${s.name} (full copy)`),
    ]));
  const ok = await confirmDialog(`Clone ${vm.name}?`,
    (vm.state === 'running'
      ? 'A full copy of its disk is taken while it runs (a block job), then booted as a new VM on the same host.'
      : 'A full copy of its disk is made, then booted as a new VM on the same host.')
      + ' A clone of a snapshot is linked (a small overlay on what the snapshot holds) or a full, standalone copy of it.',
    { confirm: 'Clone', body: h('div', {}, field('clone-name', 'Name of the clone', name), field('clone-from', 'Clone from', from)) });
  if (!ok) return;
  const [mode, snapshot] = from.value ? from.value.split(':') : ['full', undefined];
  const body = snapshot ? { name: name.value, mode, snapshot } : { name: name.value, mode };
  const { data } = await request(`/v1/vms/${vm.id}/clone`, { method: 'POST', body, idempotent: true });
  toast(`Cloning ${vm.name} into ${data.vm.name}.`);
  window.location.hash = `#/vms/${data.vm.id}`;
}

async function templateDialog(vm) {
  const name = h('input', { id: 'template-name', required: true, value: `${vm.name}-template` });
  const ok = await confirmDialog(`Turn ${vm.name} into a template?`,
    'Its disk becomes a read-only template image, and the VM itself is removed (as Proxmox converts a VM). New VMs made from the template are linked clones.',
    { confirm: 'Make template', danger: true, body: field('template-name', 'Template name', name) });
  if (!ok) return;
  await request(`/v1/vms/${vm.id}/template`, { method: 'POST', body: { image_name: name.value }, idempotent: true });
  toast(`${vm.name} is becoming template ${name.value}.`);
}

/** The VM page's buttons: clone (running or stopped), make template (stopped). */
export function cloneButtons(vm, can) {
  const busy = !!vm.task_state;
  const run = (fn) => () => fn(vm).catch((err) => toast(err.message, 'bad'));
  return [
    can('vm:create') ? h('button', {
      type: 'button', disabled: busy || !['running', 'stopped'].includes(vm.state), onclick: run(cloneDialog),
    }, 'Clone') : null,
    can('vm:snapshot') ? h('button', {
      type: 'button', disabled: busy || vm.state !== 'stopped', title: 'Stop the VM first', onclick: run(templateDialog),
    }, 'Make template') : null,
  ];
}

async function manyDialog(image) {
  const name = h('input', { id: 'many-name', required: true, pattern: NAME, value: image.name.toLowerCase().replace(/[^a-z0-9-]/g, '-') });
  const count = h('input', { id: 'many-count', type: 'number', min: 1, max: 50, value: 5 });
  const flavor = h('input', { id: 'many-flavor', required: true, value: 'tiny' });
  const ok = await confirmDialog(`New VMs from ${image.name}`, 'Each one is a linked clone: a small overlay on the template\'s disk, named NAME-1 … NAME-N.',
    { confirm: 'Create', body: h('div', {}, field('many-name', 'Name prefix', name), field('many-count', 'How many', count), field('many-flavor', 'Flavor', flavor)) });
  if (!ok) return;
  const n = Math.max(1, Math.min(50, Number(count.value) || 1));
  for (let i = 1; i <= n; i++) {
    const body = { name: `${name.value}-${i}`, image: image.id, flavor: flavor.value, project_id: image.project_id };
    await request('/v1/vms', { method: 'POST', body, idempotent: true });
  }
  toast(`${n} VM(s) from ${image.name} are being created.`);
}

/** The Images page's template column: a badge and, for a writer, the action that fits. */
export function templateCell(image, canWrite, canCreate) {
  const mark = async (on) => {
    try {
      await request(`/v1/images/${image.id}/template`, { method: 'POST', body: { template: on }, idempotent: true });
      toast(on ? `${image.name} is a template.` : `${image.name} is an ordinary image again.`);
    } catch (err) { toast(err.message, 'bad'); }
  };
  const cell = h('span', { class: 'actions', 'data-testid': `template-${image.name}` },
    image.template ? badge('template') : null);
  if (canWrite && image.status === 'active') {
    cell.append(h('button', { type: 'button', onclick: () => mark(!image.template) }, image.template ? 'Unmark' : 'Mark as template'));
  }
  if (canCreate && image.template) {
    cell.append(h('button', { type: 'button', onclick: () => manyDialog(image).catch((err) => toast(err.message, 'bad')) }, 'New VMs'));
  }
  return cell;
}
