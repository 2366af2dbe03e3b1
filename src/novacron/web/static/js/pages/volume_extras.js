// Volumes' depth, for volumes.js: I/O limits (shown in the table, changed in a dialog: a running
// guest has them at once), snapshots (taken from a volume's row, listed with a "New volume" and a
// "Delete" action), and the sources a new volume may copy (image, snapshot, or a volume: a clone).

import { post, request } from '../api.js';
import { h, badge, confirmDialog, table, timeEl, toast, fmtGiB } from '../ui.js';
import { field } from './common.js';

const MIB = 1 << 20;

/** "100 IOPS (burst 400 for 5 s) · 8 MiB/s write", or "–" when unlimited. */
export function limitsText(limits = {}) {
  const parts = [];
  const bytes = (n) => (n % MIB === 0 ? `${n / MIB} MiB/s` : `${n} B/s`);
  for (const side of ['total', 'read', 'write']) {
    const iops = limits[`iops_${side}`];
    const bps = limits[`bps_${side}`];
    const tail = side === 'total' ? '' : ` ${side}`;
    if (iops) {
      const burst = side === 'total' && limits.iops_total_max
        ? ` (burst ${limits.iops_total_max} for ${limits.iops_total_max_length || 1} s)` : '';
      parts.push(`${iops} IOPS${tail}${burst}`);
    }
    if (bps) {
      const burst = side === 'total' && limits.bps_total_max
        ? ` (burst ${bytes(limits.bps_total_max)} for ${limits.bps_total_max_length || 1} s)` : '';
      parts.push(`${bytes(bps)}${tail}${burst}`);
    }
  }
  return parts.join(' · ') || '–';
}

const LIMIT_FIELDS = [
  ['iops_total', 'IOPS (total)'], ['iops_read', 'Read IOPS'], ['iops_write', 'Write IOPS'],
  ['iops_total_max', 'Burst IOPS'], ['iops_total_max_length', 'Burst length (s)'],
  ['bps_total', 'Bytes/s (total)'], ['bps_read', 'Read bytes/s'], ['bps_write', 'Write bytes/s'],
];

/** The dialog replacing a volume's limits (empty or 0: no limit). */
export async function editLimits(vol) {
  const inputs = Object.fromEntries(LIMIT_FIELDS.map(([k]) => [k, h('input', {
    id: `lim-${k}`, type: 'number', inputmode: 'numeric', min: '0', value: String(vol.io_limits?.[k] || ''),
  })]));
  const body = h('div', {}, LIMIT_FIELDS.map(([k, label]) => field(`lim-${k}`, label, inputs[k])));
  const msg = vol.vm_id ? 'The running guest has the new limits at once.' : 'Applied when the volume is next plugged in.';
  if (!(await confirmDialog(`I/O limits of ${vol.name}`, msg, { confirm: 'Save limits', body }))) return;
  const limits = Object.fromEntries(LIMIT_FIELDS.map(([k]) => [k, Number(inputs[k].value || 0)]));
  await request(`/v1/volumes/${vol.id}/limits`, { method: 'PUT', body: limits, idempotent: true });
  toast(`Limiting ${vol.name}…`);
}

/** Snapshot a volume (live when a guest runs it). */
export async function takeSnapshot(vol) {
  const name = h('input', { id: 'snap-name', autocomplete: 'off', value: `${vol.name}-snap` });
  const body = h('div', {}, field('snap-name', 'Snapshot name', name));
  if (!(await confirmDialog(`Snapshot ${vol.name}`, 'A point in time of the volume, taken live when attached.', { confirm: 'Snapshot', body }))) return;
  await post('/v1/volume-snapshots', { volume: vol.id, name: name.value.trim() }, { idempotent: true });
  toast(`Snapshotting ${vol.name}…`);
}

async function volumeFrom(snap) {
  const name = h('input', { id: 'from-snap-name', autocomplete: 'off', value: `${snap.name}-vol` });
  const body = h('div', {}, field('from-snap-name', 'Volume name', name));
  if (!(await confirmDialog(`New volume from ${snap.name}`, `A copy of the volume as it was (${snap.size_gb} GiB).`, { confirm: 'Create', body }))) return;
  await post('/v1/volumes', { name: name.value.trim(), snapshot: snap.id, project_id: snap.project_id }, { idempotent: true });
  toast(`Creating volume ${name.value.trim()}…`);
}

async function removeSnapshot(snap) {
  if (!(await confirmDialog(`Delete snapshot ${snap.name}?`, 'Volumes made from it stay.', { confirm: 'Delete', danger: true }))) return;
  await request(`/v1/volume-snapshots/${snap.id}`, { method: 'DELETE', idempotent: true });
  toast(`Deleting snapshot ${snap.name}…`);
}

/** The snapshots table; `volumes`: id -> volume; `act` runs an action and toasts its error. */
export function snapshotTable(snaps, volumes, canWrite, act) {
  const busy = (s) => ['creating', 'deleting'].includes(s.status);
  return table([
    { label: 'Name', cell: (s) => h('strong', {}, s.name) },
    { label: 'Volume', cell: (s) => volumes[s.volume_id]?.name || s.volume_id },
    { label: 'Size', cell: (s) => fmtGiB(s.size_gb) },
    { label: 'Status', cell: (s) => badge(s.status) },
    { label: 'Created', cell: (s) => timeEl(s.created_at) },
    ...(canWrite ? [{
      label: 'Actions',
      cell: (s) => h('div', { class: 'actions', style: { display: 'flex', gap: '.4rem' } },
        h('button', { type: 'button', disabled: s.status !== 'available', 'aria-label': `New volume from ${s.name}`, onclick: () => act(() => volumeFrom(s)) }, 'New volume'),
        h('button', { type: 'button', class: 'danger', disabled: busy(s), 'aria-label': `Delete snapshot ${s.name}`, onclick: () => act(() => removeSnapshot(s)) }, 'Delete')),
    }] : []),
  ], snaps, { caption: 'Volume snapshots', empty: 'No volume snapshots.', rowAttrs: (s) => ({ 'data-snapshot': s.name }) });
}

/** The options of a new volume's content: blank, images, snapshots, volumes (a clone). */
export function sourceOptions(images, snaps, volumes) {
  return [
    h('option', { value: '' }, 'Blank'),
    images.length ? h('optgroup', { label: 'Copy of an image' }, images.map((i) => h('option', { value: `image:${i.id}` }, i.name))) : null,
    snaps.length ? h('optgroup', { label: 'From a snapshot' }, snaps.map((s) => h('option', { value: `snapshot:${s.id}` }, s.name))) : null,
    volumes.length ? h('optgroup', { label: 'Clone of a volume' }, volumes.map((v) => h('option', { value: `source_volume:${v.id}` }, v.name))) : null,
  ];
}
