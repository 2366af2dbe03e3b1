// Backup: snapshots (per VM too), verify and restore with their task progress, and schedules
// (backup policies). DR runbooks are in dr.js.

import { listAll, post } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, fmtBytes, link, pageHead, table, throttle, timeEl, toast } from '../ui.js';
import { checkField, field, fmtSeconds, onSubmit, taskBox } from './common.js';

export function verifyCell(b) {
  const v = b.verify_result;
  if (!v) return h('span', { class: 'muted' }, 'not verified');
  return h('span', { 'data-testid': 'verify', 'data-at': v.at }, badge(v.ok ? 'verified' : 'corrupt'),
    ` ${v.chunks_checked} chunks, ${fmtBytes(v.bytes_checked)}${v.bad_chunks ? `, ${v.bad_chunks} bad` : ''} · `,
    timeEl(v.at));
}

/** The disks a backup holds: the root disk and each volume (by id; a boot volume is the guest's vda). */
export function disksCell(b) {
  const disks = b.disks || [];
  if (!disks.length) return h('span', { class: 'muted' }, '–');
  return h('div', { 'data-testid': 'backup-disks' }, disks.map((d) => h('div', { 'data-disk': d.name },
    d.volume_id ? h('span', {}, 'volume ', link('#/volumes', d.volume_id), d.device === 'vda' ? ' (boot, vda)' : '') : 'root disk vda',
    ` · ${fmtBytes(d.size)}`, d.mode && d.mode !== b.mode ? ` · ${d.mode}` : '')));
}

async function restoreVolumeDialog(b) {
  const name = h('input', { id: 'restore-name', autocomplete: 'off', value: `${b.vm_name}-restored`.slice(0, 63) });
  const ok = await confirmDialog(`Restore volume ${b.vm_name}?`, 'The backup becomes a new volume of its project.',
    { confirm: 'Restore', body: h('div', { class: 'field' }, h('label', { for: 'restore-name' }, 'New volume name'), name) });
  if (!ok) return;
  await post(`/v1/backups/${b.id}/restore`, { new_volume: name.value.trim() }, { idempotent: true });
  toast(h('span', {}, 'Restoring into volume ', link('#/volumes', name.value.trim()), '.'));
}

async function restoreDialog(b) {
  if (b.volume_id) return restoreVolumeDialog(b);
  const name = h('input', { id: 'restore-name', autocomplete: 'off', value: `${b.vm_name}-restored`.slice(0, 63) });
  const instant = h('input', { id: 'restore-instant', type: 'checkbox' });
  const ok = await confirmDialog(`Restore ${b.vm_name}?`, (b.disks || []).some((d) => d.volume_id)
    ? 'The backup becomes a new VM, booted from the restored disk, with a new volume for each volume it holds.'
    : 'The backup becomes a new VM, booted from the restored disk.',
    { confirm: 'Restore', body: h('div', {},
      h('div', { class: 'field' }, h('label', { for: 'restore-name' }, 'New VM name'), name),
      checkField('restore-instant', 'Instant: boot now, reading from the backup, and copy the disk in behind', instant)) });
  if (!ok) return;
  const body = { new_vm: name.value.trim() };
  if (instant.checked) body.instant = true;
  const r = await post(`/v1/backups/${b.id}/restore`, body, { idempotent: true });
  toast(h('span', {}, instant.checked ? 'Booting from the backup as ' : 'Restoring into ', link(`#/vms/${r.vm_id}`, name.value.trim()), '.'));
}

/**
 * The snapshots table with verify and restore; `vmId` narrows it to one VM (the VM page's card).
 * Returns a loader, to call again when something changed.
 */
export function backupList(ctx, box, vmId = null) {
  const canRestore = ctx.can('backup:restore');
  const verify = async (b) => {
    try {
      await post(`/v1/backups/${b.id}/verify`, undefined, { idempotent: true });
      toast(`Verifying the backup of ${b.vm_name}.`);
    } catch (err) { toast(err.message, 'bad'); }
  };
  return async () => {
    const params = { sort: '-created_at' };
    if (vmId) params.vm_id = vmId;
    const rows = await listAll('/v1/backups', params, 500);
    clear(box, table([
      ...(vmId ? [] : [{ label: 'VM', cell: (b) => (b.vm_id ? link(`#/vms/${b.vm_id}`, b.vm_name)
        : (b.volume_id ? h('span', {}, 'volume ', link('#/volumes', b.vm_name)) : `${b.vm_name} (deleted)`)) }]),
      { label: 'State', cell: (b) => badge(b.state, b.legal_hold ? 'legal hold' : null) },
      { label: 'Taken', cell: (b) => timeEl(b.completed_at || b.created_at) },
      { label: 'Kind', cell: (b) => `${b.mode || '–'}${b.consistency ? ` · ${b.consistency}` : ''}` },
      { label: 'Size', cell: (b) => `${fmtBytes(b.size_bytes)} (${fmtBytes(b.bytes_uploaded)} sent)` },
      { label: 'Disks', cell: disksCell },
      { label: 'Verified', cell: verifyCell },
      ...(canRestore ? [{
        label: 'Actions',
        cell: (b) => (b.state === 'available' ? h('div', { class: 'row-actions' },
          h('button', { type: 'button', 'aria-label': `Verify backup of ${b.vm_name} taken ${b.created_at}`, onclick: () => verify(b) }, 'Verify'),
          h('button', { type: 'button', 'aria-label': `Restore backup of ${b.vm_name} taken ${b.created_at}`, onclick: () => restoreDialog(b).catch((err) => toast(err.message, 'bad')) }, 'Restore'))
          : (b.error ? h('span', { class: 'muted' }, b.error) : '–')),
      }] : []),
    ], rows, { caption: vmId ? 'Backups of this VM' : 'Backups', empty: 'No backups yet.', rowAttrs: (b) => ({ 'data-backup': b.id }) }));
  };
}

registerPage({
  path: '/backups',
  title: 'Backups',
  section: 'Backup',
  permission: 'backup:read',
  order: 10,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const tasks = h('div', { 'aria-live': 'polite', 'data-testid': 'backup-tasks' });
    const vmSel = h('select', { id: 'backup-vm' });
    const vms = ctx.can('vm:read') ? await listAll('/v1/vms', { sort: 'name' }) : [];
    vmSel.append(...vms.map((v) => h('option', { value: v.id }, v.name)));
    // where to: the only target goes unnamed; with several the user picks; with none, the way to one
    const targets = await listAll('/v1/backup-targets');
    const targetSel = h('select', { id: 'backup-target' }, targets.map((t) => h('option', { value: t.name }, t.name)));
    const noTarget = targets.length ? null : h('p', { class: 'muted', 'data-testid': 'no-target' },
      'There is no backup target yet: ', ctx.can('backup-target:write')
        ? link('#/backup-targets', 'create one on the Backup targets page') : 'an administrator creates one',
      ', then back VMs up to it.');
    const backupNow = async (ev) => {
      ev.preventDefault();
      try {
        await post('/v1/backups', { vm: vmSel.value, ...(targets.length > 1 ? { target: targetSel.value } : {}) }, { idempotent: true });
        toast('Backup started.');
      } catch (err) { toast(err.message, 'bad'); }
    };
    const load = backupList(ctx, box);
    clear(ctx.main, pageHead('Backups'),
      tasks,
      noTarget,
      ctx.can('backup:create') && vms.length && targets.length ? card('Back up now', h('form', { class: 'filters', onsubmit: backupNow },
        h('div', { class: 'field' }, h('label', { for: 'backup-vm' }, 'VM'), vmSel),
        targets.length > 1 ? h('div', { class: 'field' }, h('label', { for: 'backup-target' }, 'Target'), targetSel) : null,
        h('button', { type: 'submit', class: 'primary' }, 'Back up'))) : null,
      card(null, box));
    await Promise.all([load(), taskBox(tasks, ['backup.'])]);
    const reload = throttle(() => { load().catch(() => {}); taskBox(tasks, ['backup.']).catch(() => {}); }, 500);
    ctx.onCleanup(subscribe(['backup.*', 'task.*'], reload));
  },
});

const retentionText = (r) => Object.entries(r).map(([k, v]) => `${k.replace('keep_', '')} ${v}`).join(', ') || 'keep all';

const INTERVALS = [[3600, 'every hour'], [21600, 'every 6 hours'], [86400, 'every day'], [604800, 'every week']];

function policyForm(vms, done) {
  const c = {
    name: h('input', { id: 'pol-name', autocomplete: 'off' }),
    vm: h('select', { id: 'pol-vm' }, h('option', { value: '' }, 'every VM of my project'), vms.map((v) => h('option', { value: v.id }, v.name))),
    interval_s: h('select', { id: 'pol-interval' }, INTERVALS.map(([v, t]) => h('option', { value: String(v), selected: v === 86400 }, t))),
    retention: h('input', { id: 'pol-keep', type: 'number', inputmode: 'numeric', value: '7' }),
    enabled: h('input', { id: 'pol-enabled', type: 'checkbox', checked: true }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create schedule');
  const form = h('form', { novalidate: true, 'aria-label': 'New schedule' }, formError,
    field('pol-name', 'Name', c.name, 'Lower-case letters, digits and dashes.'),
    field('pol-vm', 'Covers', c.vm),
    field('pol-interval', 'Runs', c.interval_s),
    field('pol-keep', 'Keep the last', c.retention, 'backups; older ones are pruned.'),
    checkField('pol-enabled', 'Enabled', c.enabled),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { name: c.name.value.trim(), interval_s: Number(c.interval_s.value), enabled: c.enabled.checked };
    if (c.vm.value) body.vm = c.vm.value;
    if (c.retention.value !== '') body.retention = { keep_last: Number(c.retention.value) };
    const p = await post('/v1/backup-policies', body, { idempotent: true });
    toast(`Schedule ${p.name} created.`);
    form.reset();
    await done();
  });
  return form;
}

registerPage({
  path: '/backup-policies',
  title: 'Schedules',
  section: 'Backup',
  permission: 'backup:read',
  order: 20,
  async render(ctx) {
    const vms = ctx.can('vm:read') ? await listAll('/v1/vms', { sort: 'name' }) : [];
    const vmName = Object.fromEntries(vms.map((v) => [v.id, v.name]));
    const box = h('div', { 'aria-live': 'polite' });
    const load = async () => {
      const policies = await listAll('/v1/backup-policies');
      clear(box, table([
        { label: 'Name', cell: (p) => h('strong', {}, p.name) },
        { label: 'Covers', cell: (p) => (p.vm_id ? link(`#/vms/${p.vm_id}`, vmName[p.vm_id] || p.vm_id) : 'every VM of the project') },
        { label: 'Every', cell: (p) => fmtSeconds(p.interval_s) },
        { label: 'Retention', cell: (p) => retentionText(p.retention) },
        { label: 'Immutable for', cell: (p) => (p.immutable_s ? fmtSeconds(p.immutable_s) : '–') },
        { label: 'State', cell: (p) => badge(p.enabled ? 'enabled' : 'disabled') },
        { label: 'Last run', cell: (p) => (p.last_run_at ? timeEl(p.last_run_at) : 'never') },
      ], policies, { caption: 'Backup schedules', empty: 'No schedules: backups run only when asked.', rowAttrs: (p) => ({ 'data-policy': p.name }) }));
    };
    clear(ctx.main, pageHead('Backup schedules'), h('div', { class: 'grid' }, card(null, box),
      ctx.can('backup:policy') ? card('New schedule', policyForm(vms, load)) : null));
    await load();
  },
});
