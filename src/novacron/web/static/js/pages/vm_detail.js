// One VM: live state, metrics charts (chart API, range picker), the serial console, actions, its tasks.

import { ApiError, get, listAll, request } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, errorBox, fmtMB, latestOnly, link, pageHead, progress, table, throttle, timeEl, toast, fmtGiB } from '../ui.js';
import { backupList } from './backups.js';
import { cloneButtons } from './clones.js';
import { mountGuest } from './guest_info.js';
import { portTable } from './networks.js';
import { liveLimits, resizeDialog } from './vm_resize.js';
import { snapshotPanel } from './vm_snapshots.js';
import { volumeTable } from './volumes.js';

// which action makes sense in which state; the API has the last word
const ACTIONS = [
  { action: 'start', label: 'Start', states: ['stopped', 'error', 'host_down'], perm: 'vm:power' },
  { action: 'stop', label: 'Stop', states: ['running', 'paused'], perm: 'vm:power', danger: true },
  { action: 'reboot', label: 'Reboot', states: ['running'], perm: 'vm:power' },
  { action: 'pause', label: 'Pause', states: ['running'], perm: 'vm:power' },
  { action: 'resume', label: 'Resume', states: ['paused'], perm: 'vm:power' },
];

/* machine type and firmware, e.g. "q35 · UEFI (own NVRAM) · Secure Boot" */
function machine(hw) {
  const parts = [hw.machine || 'pc', hw.firmware === 'uefi' ? 'UEFI (own NVRAM)' : 'BIOS'];
  if (hw.secure_boot) parts.push('Secure Boot');
  if (hw.tpm) parts.push('vTPM');
  return parts.join(' · ');
}

function details(vm, hosts) {
  const rows = [
    ['ID', h('code', {}, vm.id)],
    ['State', badge(vm.state)],
    ['Desired state', vm.desired_state],
    ['Task', vm.task_state || 'none'],
    ['Host', vm.host_id ? hosts[vm.host_id] || vm.host_id : 'not placed'],
    ['Size', `${vm.vcpus} vCPU · ${fmtMB(vm.ram_mb)} RAM · ${fmtGiB(vm.disk_gb)} disk`],
    ['Live resize', h('span', { 'data-testid': 'vm-limits' }, liveLimits(vm))],
    ['Machine', machine(vm.hardware || {})],
    ['HA', vm.ha ? `restart elsewhere (priority ${vm.ha_priority})` : 'off'],
    ['Project', h('code', {}, vm.project_id)],
    ['Created', timeEl(vm.created_at)],
    ['Updated', timeEl(vm.updated_at)],
  ];
  if (vm.error) rows.push(['Error', h('span', { class: 'badge bad' }, vm.error)]);
  return h('dl', { class: 'kv', 'data-testid': 'vm-details' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

async function migrateDialog(vm, hosts) {
  const sel = h('select', { id: 'migrate-host' }, h('option', { value: '' }, 'Let placement choose'),
    Object.entries(hosts).filter(([id]) => id !== vm.host_id).map(([id, name]) => h('option', { value: id }, name)));
  const ok = await confirmDialog(`Migrate ${vm.name}?`,
    vm.state === 'running' ? 'The VM moves live to another host.' : 'The stopped VM moves to another host (cold).',
    { confirm: 'Migrate', body: h('div', { class: 'field' }, h('label', { for: 'migrate-host' }, 'Target host'), sel) });
  if (!ok) return;
  const body = sel.value ? { host: sel.value } : {};
  await request(`/v1/vms/${vm.id}/migrate`, { method: 'POST', body, idempotent: true });
  toast(`Migration of ${vm.name} started.`);
}

registerPage({
  path: '/vms/:id',
  title: 'VM',
  permission: 'vm:read',
  async render(ctx) {
    const { main, params, can, signal } = ctx;
    let vm = await get(`/v1/vms/${encodeURIComponent(params.id)}`, { signal });
    const hosts = can('host:read') ? Object.fromEntries((await listAll('/v1/hosts')).map((x) => [x.id, x.name])) : {};
    document.title = `${vm.name} · NovaCron`;

    const head = h('div');
    const actions = h('div', { class: 'actions', role: 'group', 'aria-label': 'VM actions' });
    const detailBox = h('div');
    const guestBox = h('div', { 'aria-live': 'polite' });
    const tasksBox = h('div', { 'aria-live': 'polite' });
    const consoleBox = h('div', { class: 'stack' });
    const vncBox = h('div', { class: 'stack', 'data-testid': 'vm-vnc' });
    const chartsBox = h('div', { 'data-testid': 'vm-charts' });
    const portsBox = h('div');
    const backupsBox = h('div', { 'aria-live': 'polite' });
    const volumesBox = h('div', { 'aria-live': 'polite', 'data-testid': 'vm-volumes' });
    const snapshotsBox = h('div', { 'data-testid': 'vm-snapshots' });
    clear(main, head,
      h('div', { class: 'grid' }, card('Details', detailBox), card('Tasks', tasksBox)),
      card('Serial console', consoleBox),
      card('Guest', guestBox),
      card('Metrics', h('p', { class: 'muted' }, 'Guest CPU and memory as the guest sees them, next to the QEMU process\'s own CPU and RSS; sampled every second by the host agent.'), chartsBox),
      card('Snapshots', snapshotsBox),
      can('volume:read') ? card('Volumes', volumesBox) : null,
      can('backup:read') ? card('Backups', backupsBox) : null,
      can('network:read') ? card('Network ports', portsBox) : null,
      card('Graphical console', vncBox));
    // its attached volumes (detach here; attach from the Volumes page)
    const loadVolumes = async () => clear(volumesBox,
      volumeTable(await listAll('/v1/volumes', { vm_id: vm.id }), { [vm.id]: vm }, can('volume:write')));

    let reloadVm = () => {};
    const act = async (a) => {
      const ok = await confirmDialog(`${a.label} ${vm.name}?`,
        a.action === 'stop' ? 'The guest gets an ACPI shutdown, then is powered off if it does not stop.' : `The VM will ${a.action}.`,
        { confirm: a.label, danger: !!a.danger });
      if (!ok) return;
      try {
        await request(`/v1/vms/${vm.id}/actions/${a.action}`, { method: 'POST', idempotent: true });
        toast(`${a.label}: requested for ${vm.name}.`);
      } catch (err) { toast(err.message, 'bad'); }
    };
    const toggleHa = async () => {
      const on = !vm.ha;
      const ok = await confirmDialog(on ? `Turn on HA for ${vm.name}?` : `Turn off HA for ${vm.name}?`,
        on ? 'When its host fails, the VM restarts on another host (its disk must be on shared storage).'
          : 'When its host fails, the VM stays down with it.', { confirm: on ? 'HA on' : 'HA off' });
      if (!ok) return;
      try {
        // If-Match: a change made meanwhile by someone else is refused (412), not overwritten
        const { etag } = await request(`/v1/vms/${vm.id}`);
        await request(`/v1/vms/${vm.id}`, { method: 'PATCH', body: { ha: on }, ifMatch: etag });
        toast(`HA ${on ? 'on' : 'off'} for ${vm.name}.`);
        reloadVm();
      } catch (err) { toast(err.message, 'bad'); }
    };
    const remove = async () => {
      const ok = await confirmDialog(`Delete ${vm.name}?`, 'The VM and its disk are destroyed. This cannot be undone.', { confirm: 'Delete', danger: true });
      if (!ok) return;
      try {
        await request(`/v1/vms/${vm.id}`, { method: 'DELETE', idempotent: true });
        toast(`Deleting ${vm.name}.`);
      } catch (err) { toast(err.message, 'bad'); }
    };

    const drawHead = () => {
      clear(actions,
        ACTIONS.filter((a) => can(a.perm)).map((a) => h('button', {
          type: 'button', disabled: !a.states.includes(vm.state) || !!vm.task_state, onclick: () => act(a),
        }, a.label)),
        can('vm:migrate') ? h('button', {
          type: 'button', disabled: !['running', 'stopped'].includes(vm.state) || !!vm.task_state,
          onclick: () => migrateDialog(vm, hosts).catch((err) => toast(err.message, 'bad')),
        }, 'Migrate') : null,
        can('vm:update') ? h('button', {
          type: 'button', disabled: !['running', 'stopped'].includes(vm.state) || !!vm.task_state,
          onclick: () => resizeDialog(vm).then(reloadVm),
        }, 'Resize') : null,
        can('vm:update') ? h('button', { type: 'button', onclick: toggleHa }, vm.ha ? 'Turn HA off' : 'Turn HA on') : null,
        cloneButtons(vm, can),
        can('vm:delete') ? h('button', { type: 'button', class: 'danger', disabled: vm.task_state === 'deleting', onclick: remove }, 'Delete') : null);
      clear(head, h('p', {}, link('#/vms', '← Virtual machines')),
        h('div', { class: 'page-head' },
          h('h1', { id: 'page-title' }, vm.name, ' ', h('span', { 'data-testid': 'vm-state' }, badge(vm.state, vm.task_state))),
          actions));
      clear(detailBox, details(vm, hosts));
    };
    const loadTasks = async () => {
      const page = await get(`/v1/tasks?resource_id=${vm.id}&limit=10&sort=-created_at`);
      const running = page.items.filter((t) => t.state === 'running' || t.state === 'pending');
      clear(tasksBox,
        running.map((t) => progress(`${t.kind}: ${t.current_step || t.state}`, t.progress)),
        table([
          { label: 'Task', cell: (t) => link(`#/tasks/${t.id}`, t.kind) },
          { label: 'State', cell: (t) => badge(t.state) },
          { label: 'Progress', cell: (t) => `${t.progress}%${t.current_step ? ` (${t.current_step})` : ''}` },
          { label: 'Started', cell: (t) => timeEl(t.created_at) },
        ], page.items, { empty: 'No tasks.' }));
    };
    drawHead();
    const drawGuest = mountGuest(ctx, guestBox, vm);
    const loadBackups = backupList(ctx, backupsBox, vm.id);
    const loadSnapshots = snapshotPanel(snapshotsBox, () => vm, can('vm:snapshot'));
    await Promise.all([
      loadTasks(),
      loadSnapshots(),
      can('backup:read') ? loadBackups() : null,
      can('volume:read') ? loadVolumes() : null,
      can('network:read') ? listAll('/v1/ports', { vm_id: vm.id }).then((ports) => clear(portsBox, portTable(ports, 'No network ports.'))) : null,
    ]);

    const readVm = latestOnly((id) => get(`/v1/vms/${id}`));
    reloadVm = throttle(async () => {
      try {
        const fresh = await readVm(vm.id);
        if (!fresh) return; // a later reload is under way
        vm = fresh;
        drawHead();
        loadSnapshots().catch(() => {});  // its buttons follow the VM's task_state
        drawGuest(vm);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          clear(main, pageHead(`${vm.name} was deleted`), h('p', {}, link('#/vms', 'Back to the VM list')));
        }
      }
    }, 300);
    const reloadTasks = throttle(() => loadTasks().catch(() => {}), 300);
    ctx.onCleanup(subscribe(['vm.*'], (e) => { if (e.resource_id === vm.id) reloadVm(); }));
    ctx.onCleanup(subscribe(['task.*'], () => reloadTasks()));
    ctx.onCleanup(subscribe(['vm_snapshot.*'], throttle(() => loadSnapshots().catch(() => {}), 300)));
    if (can('volume:read')) ctx.onCleanup(subscribe(['volume.*'], throttle(() => loadVolumes().catch(() => {}), 300)));
    if (can('backup:read')) {
      const reloadBackups = throttle(() => loadBackups().catch(() => {}), 500);
      ctx.onCleanup(subscribe(['backup.*', 'task.*'], reloadBackups));
    }
    // events arrive the moment they commit: one that came between the first reads above and these
    // subscriptions (a new VM turning running while this page loaded) is read again now
    reloadVm();
    reloadTasks();

    // the charting and terminal libraries load with the first VM page, not with the shell
    const [{ mountCharts }, { consolePanel }] = await Promise.all([import('./vm_metrics.js'), import('./vm_console.js')]);
    ctx.onCleanup(mountCharts(chartsBox, vm.id, signal));
    // near the top, not under the charts and tables; its own page gives it the whole window
    consolePanel(ctx, consoleBox, vm.id, {
      allowed: can('vm:console'), own: link(`#/vms/${vm.id}/console`, 'Open on its own page'),
    });
    mountVnc(ctx, vncBox, vm.id, can('vm:console'));
  },
});

/** A button that shows `el` on the whole screen (Escape leaves it); enabled once `el` is open. */
function fullScreenButton(el) {
  const btn = h('button', { type: 'button', disabled: true }, 'Full screen');
  btn.addEventListener('click', () => { el.requestFullscreen().catch(() => {}); });
  return btn;
}

/** The graphical console card: noVNC with Ctrl-Alt-Del and full screen, opened on demand. */
function mountVnc(ctx, box, vmId, allowed) {
  const openBtn = h('button', { type: 'button', class: 'primary' }, 'Open graphical console');
  const cadBtn = h('button', { type: 'button', disabled: true, title: 'Send Ctrl-Alt-Del to the guest' }, 'Ctrl-Alt-Del');
  const screen = h('div', { class: 'vnc-wrap', hidden: true, 'data-testid': 'vnc-screen' });
  const fullBtn = fullScreenButton(screen);
  const status = h('p', { class: 'muted', 'aria-live': 'polite' });
  clear(box, h('div', { class: 'actions' }, openBtn, cadBtn, fullBtn), status, screen);
  if (!allowed) { openBtn.disabled = true; status.textContent = 'Your role cannot open consoles.'; return; }
  let session = null;
  openBtn.addEventListener('click', async () => {
    openBtn.disabled = true;
    screen.hidden = false;
    try {
      if (session) session.close();
      const { openVnc } = await import('./vm_vnc.js');
      session = await openVnc(screen, vmId, (s) => { status.textContent = s; });
      session.rfb.addEventListener('connect', () => { cadBtn.disabled = false; fullBtn.disabled = false; });
      session.rfb.addEventListener('disconnect', () => { cadBtn.disabled = true; openBtn.disabled = false; openBtn.textContent = 'Reconnect'; });
      ctx.onCleanup(() => session && session.close());
    } catch (err) {
      openBtn.disabled = false;
      box.append(errorBox(err));
    }
  });
  cadBtn.addEventListener('click', () => session && session.ctrlAltDel());
}
