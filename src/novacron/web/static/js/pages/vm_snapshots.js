// The snapshot tree of one VM (for vm_detail.js): take a live snapshot (optionally with the guest's
// RAM), revert to any snapshot, delete any. Each is a task of the VM; the panel reloads on the
// vm_snapshot.* and task.* events. Children are drawn under their parent; "current" marks the
// snapshot the VM's disk stands on now.

import { get, post, request } from '../api.js';
import { h, clear, badge, confirmDialog, latestOnly, timeEl, toast } from '../ui.js';
import { checkField, field, onSubmit } from './common.js';

async function act(fn) {
  try { await fn(); } catch (err) { toast(err.message, 'bad'); }
}

async function revert(vm, s) {
  const how = s.memory && vm.state === 'running'
    ? 'The guest resumes where it was when the snapshot was taken (its RAM is in the snapshot).'
    : vm.state === 'stopped' ? 'The disk goes back to the snapshot.'
      : 'The VM restarts on the disk as it was at the snapshot.';
  if (!(await confirmDialog(`Revert ${vm.name} to ${s.name}?`, `${how} What was written since is lost.`, { confirm: 'Revert', danger: true }))) return;
  await post(`/v1/vms/${vm.id}/snapshots/${s.id}/revert`, {}, { idempotent: true });
  toast(`Reverting ${vm.name} to ${s.name}…`);
}

async function remove(vm, s) {
  if (!(await confirmDialog(`Delete snapshot ${s.name}?`, 'The other snapshots keep their data; its children move up to its parent.', { confirm: 'Delete', danger: true }))) return;
  await request(`/v1/vms/${vm.id}/snapshots/${s.id}`, { method: 'DELETE', idempotent: true });
  toast(`Deleting snapshot ${s.name}…`);
}

function node(vm, s, children, canWrite) {
  const busy = !!vm.task_state || s.status !== 'available';
  const kind = s.memory ? 'disk + RAM' : 'disk';
  return h('li', { 'data-snapshot': s.name },
    h('div', { class: 'actions', style: { display: 'flex', gap: '.5rem', alignItems: 'center', flexWrap: 'wrap' } },
      h('strong', {}, s.name),
      badge(s.status),
      s.current ? h('span', { class: 'badge ok', 'data-testid': 'snapshot-current' }, 'current') : null,
      h('span', { class: 'muted' }, `${kind} · ${s.consistency || '…'}-consistent`),
      timeEl(s.created_at),
      canWrite ? h('button', { type: 'button', disabled: busy, 'aria-label': `Revert to ${s.name}`, onclick: () => act(() => revert(vm, s)) }, 'Revert') : null,
      canWrite ? h('button', { type: 'button', class: 'danger', disabled: busy, 'aria-label': `Delete snapshot ${s.name}`, onclick: () => act(() => remove(vm, s)) }, 'Delete') : null),
    children.length ? h('ul', { style: { paddingLeft: '1.5rem' } }, children) : null);
}

/** The snapshots as a nested list: each under its parent, oldest first. */
export function snapshotTree(vm, snaps, canWrite) {
  const ids = new Set(snaps.map((s) => s.id));
  const kids = new Map();
  for (const s of snaps) {
    const parent = ids.has(s.parent_id) ? s.parent_id : null;
    if (!kids.has(parent)) kids.set(parent, []);
    kids.get(parent).push(s);
  }
  const walk = (parent) => (kids.get(parent) || []).map((s) => node(vm, s, walk(s.id), canWrite));
  if (!snaps.length) return h('p', { class: 'muted' }, 'No snapshots.');
  return h('ul', { 'aria-label': 'Snapshot tree', 'data-testid': 'snapshot-tree', style: { paddingLeft: '1rem' } }, walk(null));
}

function createForm(vmRef) {
  const c = {
    name: h('input', { id: 'snap-name', autocomplete: 'off' }),
    memory: h('input', { id: 'snap-memory', type: 'checkbox' }),
    quiesce: h('input', { id: 'snap-quiesce', type: 'checkbox', checked: true }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Take snapshot');
  const form = h('form', { novalidate: true, 'aria-label': 'New snapshot' }, formError,
    field('snap-name', 'Name', c.name, 'Lower-case letters, digits and -'),
    checkField('snap-memory', 'Include the guest\'s RAM (a revert resumes the running guest there)', c.memory),
    checkField('snap-quiesce', 'Freeze the guest\'s filesystems (needs qemu-guest-agent in the guest)', c.quiesce),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const vm = vmRef();
    const body = { name: c.name.value.trim(), memory: c.memory.checked, quiesce: c.quiesce.checked };
    const out = await post(`/v1/vms/${vm.id}/snapshots`, body, { idempotent: true });
    form.reset();
    toast(`Taking snapshot ${out.snapshot.name} of ${vm.name}…`);
  });
  return form;
}

/** Fill `box` with the VM's snapshot tree (and, with `canWrite`, the form); returns its reloader. */
export function snapshotPanel(box, vmRef, canWrite) {
  const treeBox = h('div', { 'aria-live': 'polite' });
  clear(box, treeBox, canWrite ? createForm(vmRef) : null);
  const read = latestOnly((id) => get(`/v1/vms/${id}/snapshots`));
  return async () => {
    const page = await read(vmRef().id);
    // drawn with the VM as it is now: an older answer never brings back buttons a finished task enabled
    if (page) clear(treeBox, snapshotTree(vmRef(), page.items, canWrite));
  };
}
