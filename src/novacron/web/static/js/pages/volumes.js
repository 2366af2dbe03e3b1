// Volumes: block storage of a project (list, create blank, from an image, a snapshot or as a clone,
// with I/O limits; attach to a VM and detach, change limits, snapshot, delete), their snapshots,
// and the volume list of one VM (exported for vm_detail.js). Attach, detach, create, limits and
// snapshots are tasks: the tables follow them through the volume.* and volume_snapshot.* events.

import { listAll, post, request } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, link, pageHead, table, throttle, timeEl, toast, fmtGiB } from '../ui.js';
import { field, onSubmit } from './common.js';
import { projectOptions } from './networks.js';
import { editLimits, limitsText, snapshotTable, sourceOptions, takeSnapshot } from './volume_extras.js';

async function act(fn) {
  try { await fn(); } catch (err) { toast(err.message, 'bad'); }
}

async function attach(vol, vms) {
  const select = h('select', { id: 'attach-vm', 'aria-label': 'VM' },
    vms.filter((v) => v.project_id === vol.project_id).map((v) => h('option', { value: v.id }, `${v.name} (${v.state})`)));
  const body = h('div', {}, field('attach-vm', 'VM', select, 'Running: hot-plugged now. Stopped: at its next start.'));
  if (!(await confirmDialog(`Attach ${vol.name}`, '', { confirm: 'Attach', body }))) return;
  await post(`/v1/volumes/${vol.id}/attach`, { vm: select.value }, { idempotent: true });
  toast(`Attaching ${vol.name}…`);
}

async function detach(vol) {
  if (!(await confirmDialog(`Detach ${vol.name}?`, 'A running guest must release the disk first (unmount it).', { confirm: 'Detach' }))) return;
  await post(`/v1/volumes/${vol.id}/detach`, {}, { idempotent: true });
  toast(`Detaching ${vol.name}…`);
}

async function remove(vol) {
  if (!(await confirmDialog(`Delete ${vol.name}?`, 'Its data is gone for good.', { confirm: 'Delete', danger: true }))) return;
  await request(`/v1/volumes/${vol.id}`, { method: 'DELETE' });
  toast(`Volume ${vol.name} deleted.`);
}

/** The table of `volumes`; with `vms` (id -> VM) the VM column links to it; `canWrite`: actions. */
export function volumeTable(volumes, vms, canWrite, vmList = []) {
  const busy = (v) => ['creating', 'attaching', 'detaching', 'extending', 'limiting', 'snapshotting', 'cloning'].includes(v.status);
  return table([
    { label: 'Name', cell: (v) => h('strong', {}, v.name) },
    { label: 'Size', cell: (v) => fmtGiB(v.size_gb) },
    { label: 'Pool', cell: (v) => v.pool },
    { label: 'Status', cell: (v) => badge(v.status, v.boot ? 'boot disk' : '') },
    { label: 'VM', cell: (v) => (v.vm_id ? link(`#/vms/${v.vm_id}`, vms[v.vm_id]?.name || v.vm_id) : '–') },
    { label: 'I/O limits', cell: (v) => h('span', { 'data-limits': '' }, limitsText(v.io_limits)) },
    { label: 'Created', cell: (v) => timeEl(v.created_at) },
    ...(canWrite ? [{
      label: 'Actions',
      cell: (v) => h('div', { class: 'actions', style: { display: 'flex', gap: '.4rem' } },
        h('button', { type: 'button', disabled: busy(v), 'aria-label': `Limits of ${v.name}`, onclick: () => act(() => editLimits(v)) }, 'Limits'),
        h('button', { type: 'button', disabled: busy(v), 'aria-label': `Snapshot ${v.name}`, onclick: () => act(() => takeSnapshot(v)) }, 'Snapshot'),
        v.boot ? null : v.vm_id
          ? h('button', { type: 'button', disabled: busy(v), 'aria-label': `Detach ${v.name}`, onclick: () => act(() => detach(v)) }, 'Detach')
          : h('button', { type: 'button', disabled: busy(v) || !vmList.length, 'aria-label': `Attach ${v.name}`, onclick: () => act(() => attach(v, vmList)) }, 'Attach'),
        v.vm_id ? null : h('button', { type: 'button', class: 'danger', disabled: busy(v), 'aria-label': `Delete ${v.name}`, onclick: () => act(() => remove(v)) }, 'Delete')),
    }] : []),
  ], volumes, { caption: 'Volumes', empty: 'No volumes.', rowAttrs: (v) => ({ 'data-volume': v.name }) });
}

function volumeForm(projects, images, snaps, volumes) {
  const c = {
    name: h('input', { id: 'vol-name', autocomplete: 'off' }),
    size_gb: h('input', { id: 'vol-size', type: 'number', inputmode: 'numeric', min: '1', value: '1' }),
    image: h('select', { id: 'vol-image' }, sourceOptions(images, snaps, volumes)),
    io_limits: h('input', { id: 'vol-iops', type: 'number', inputmode: 'numeric', min: '0', placeholder: 'no limit' }),
    project_id: h('select', { id: 'vol-project' }, projects.map(([v, t]) => h('option', { value: v }, t))),
    pool: h('select', { id: 'vol-pool' }, h('option', { value: 'file' }, 'file (qcow2 files)'), h('option', { value: 'rbd' }, 'rbd (Ceph)')),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create volume');
  const form = h('form', { novalidate: true, 'aria-label': 'New volume' }, formError,
    field('vol-name', 'Name', c.name, 'Lower-case letters, digits and -'),
    field('vol-size', 'Size (GiB)', c.size_gb, 'Empty with an image: the image\'s size.'),
    field('vol-image', 'Content', c.image, 'Blank, or a copy of an image, a snapshot or a volume.'),
    field('vol-iops', 'IOPS limit', c.io_limits, 'Operations a second (change all limits later with Limits).'),
    field('vol-pool', 'Storage pool', c.pool, 'rbd: only where the platform has a Ceph cluster.'),
    projects.length > 1 ? field('vol-project', 'Project', c.project_id) : null,
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { name: c.name.value.trim() };
    if (c.size_gb.value.trim()) body.size_gb = Number(c.size_gb.value);
    if (c.image.value) {
      const [kind, id] = c.image.value.split(':');
      body[kind] = id;
    }
    if (Number(c.io_limits.value) > 0) body.io_limits = { iops_total: Number(c.io_limits.value) };
    if (c.pool.value !== 'file') body.pool = c.pool.value;
    if (projects.length > 1 && c.project_id.value) body.project_id = c.project_id.value;
    const out = await post('/v1/volumes', body, { idempotent: true });
    form.reset();
    toast(`Creating volume ${out.volume.name}…`);
  });
  return form;
}

registerPage({
  path: '/volumes',
  title: 'Volumes',
  section: 'Compute',
  permission: 'volume:read',
  order: 30,
  async render(ctx) {
    const canWrite = ctx.can('volume:write');
    const box = h('div', { 'aria-live': 'polite' });
    const snapBox = h('div', { 'aria-live': 'polite', 'data-testid': 'volume-snapshots' });
    const load = async () => {
      const [volumes, vmList, snaps] = await Promise.all([listAll('/v1/volumes', { sort: 'name' }),
        listAll('/v1/vms', { sort: 'name' }), listAll('/v1/volume-snapshots', { sort: 'name' })]);
      const vms = Object.fromEntries(vmList.map((v) => [v.id, v]));
      clear(box, volumeTable(volumes, vms, canWrite, vmList.filter((v) => ['running', 'stopped'].includes(v.state))));
      clear(snapBox, snapshotTable(snaps, Object.fromEntries(volumes.map((v) => [v.id, v])), canWrite, act));
      return { volumes, snaps };
    };
    const [projects, images] = canWrite
      ? await Promise.all([projectOptions(ctx), listAll('/v1/images', { sort: 'name' })]) : [[], []];
    const formBox = h('div');
    clear(ctx.main, pageHead('Volumes'), h('div', { class: 'grid' }, card(null, box), formBox),
      card('Volume snapshots', snapBox));
    const { volumes, snaps } = await load();
    if (canWrite) {
      clear(formBox, card('New volume', volumeForm(projects, images.filter((i) => i.status === 'active'),
        snaps.filter((s) => s.status === 'available'), volumes.filter((v) => ['available', 'in-use'].includes(v.status)))));
    }
    ctx.onCleanup(subscribe(['volume.*', 'volume_snapshot.*', 'task.*'], throttle(() => load().catch(() => {}), 500)));
  },
});
