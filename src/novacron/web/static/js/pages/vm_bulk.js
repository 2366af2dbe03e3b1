// The VM list's actions (issue 17): the selection with its bulk bar (start, stop, reboot, delete:
// one request per VM through the same API routes as the VM page, each VM's answer and task
// progress shown in a result list), and the per-row action menu offering only what the VM's state
// allows. The API has the last word: a refusal shows as that VM's result.

import { get, request } from '../api.js';
import { subscribe } from '../live.js';
import { h, clear, confirmDialog, progress, throttle, toast } from '../ui.js';

// which action makes sense in which state (as on the VM page); a VM with a task running takes none
const POWER = [
  { action: 'start', label: 'Start', states: ['stopped', 'error', 'host_down'] },
  { action: 'stop', label: 'Stop', states: ['running', 'paused'] },
  { action: 'reboot', label: 'Reboot', states: ['running'] },
];
const PARALLEL = 4;

const idle = (vm) => !vm.task_state;

/** What the row menu offers for `vm` to a user who `can`: [{key, label, run}] */
function menuItems(vm, can, ops) {
  const items = [];
  if (can('vm:power') && idle(vm)) {
    for (const a of POWER) if (a.states.includes(vm.state)) items.push({ key: a.action, label: a.label, run: () => ops.bulk(a, [vm]) });
  }
  if (can('vm:console') && vm.state === 'running') {
    items.push({ key: 'console', label: 'Console', run: () => { location.hash = `#/vms/${vm.id}/console`; } });
  }
  if (can('vm:snapshot') && idle(vm) && ['running', 'stopped'].includes(vm.state)) {
    items.push({ key: 'snapshot', label: 'Snapshot…', run: () => snapshotDialog(vm) });
  }
  if (can('vm:delete') && vm.task_state !== 'deleting') {
    items.push({ key: 'delete', label: 'Delete…', danger: true, run: () => ops.remove([vm]) });
  }
  return items;
}

/** The row's "Actions" menu (a disclosure: native keyboard use, closes after a choice). */
export function rowMenu(vm, can, ops) {
  const items = menuItems(vm, can, ops);
  if (!items.length) return h('span', { class: 'muted' }, '–');
  const det = h('details', { class: 'row-menu', 'data-menu': vm.name });
  det.append(
    h('summary', { 'aria-label': `Actions for ${vm.name}` }, 'Actions'),
    h('ul', {}, items.map((it) => h('li', {}, h('button', {
      type: 'button', class: it.danger ? 'danger' : null, 'data-action': it.key,
      onclick: () => { det.open = false; it.run(); },
    }, it.label)))));
  return det;
}

async function snapshotDialog(vm) {
  const name = h('input', { id: 'row-snap-name', autocomplete: 'off', value: `${vm.name}-${Date.now().toString(36)}` });
  const ok = await confirmDialog(`Snapshot ${vm.name}?`, 'A disk snapshot, listed on the VM page.', {
    confirm: 'Take snapshot',
    body: h('div', { class: 'field' }, h('label', { for: 'row-snap-name' }, 'Name'), name),
  });
  if (!ok) return;
  try {
    await request(`/v1/vms/${vm.id}/snapshots`, { method: 'POST', body: { name: name.value.trim() }, idempotent: true });
    toast(`Taking snapshot ${name.value.trim()} of ${vm.name}…`);
  } catch (err) { toast(err.message, 'bad'); }
}

/**
 * The card listing a bulk action's VMs: each one's answer, then its task's progress and outcome
 * (re-read on task events). {element, start(title), run(vms, label, send)}.
 */
function resultList(ctx) {
  const element = h('section', { class: 'card bulk-results', 'aria-label': 'Bulk results', 'data-testid': 'bulk-results', hidden: true });
  const tasks = new Map(); // task id -> its result line's status element
  const followTask = async (id) => {
    const status = tasks.get(id);
    if (!status) return;
    try {
      const t = await get(`/v1/tasks/${id}`);
      const done = !['pending', 'running'].includes(t.state);
      clear(status, done ? `${t.kind}: ${t.state}${t.error ? ` (${t.error})` : ''}` : progress(`${t.kind}: ${t.current_step || t.state}`, t.progress));
      status.dataset.state = t.state;
      status.classList.toggle('bad', t.state === 'failed');
      if (done) tasks.delete(id);
    } catch { /* the next event reads it again */ }
  };
  // the few tasks started here are read again on any task event (throttled)
  ctx.onCleanup(subscribe(['task.*'], throttle(() => { for (const t of [...tasks.keys()]) followTask(t); }, 300)));

  const start = (title) => {
    element.hidden = false;
    tasks.clear();
    clear(element, h('h2', {}, title), h('ul', {}));
  };
  const line = (vm) => {
    const status = h('div', { class: 'status' }, 'waiting');
    element.querySelector('ul').append(h('li', { 'data-vm': vm.name }, h('strong', {}, vm.name), ': ', status));
    return status;
  };
  const run = async (vms, label, send) => {
    const lines = new Map(vms.map((v) => [v.id, line(v)]));
    const queue = [...vms];
    const worker = async () => {
      for (let vm = queue.shift(); vm; vm = queue.shift()) {
        const status = lines.get(vm.id);
        status.textContent = 'sending…';
        try {
          const { data } = await send(vm);
          status.textContent = `${label}: accepted`;
          if (data?.task_id) { tasks.set(data.task_id, status); followTask(data.task_id); }
        } catch (err) {
          status.textContent = `refused: ${err.message}`;
          status.classList.add('bad');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, vms.length) }, worker));
  };
  return { element, start, run };
}

/**
 * The selection and bulk actions of the list. `getVms()` is the rows loaded now. Returns
 * {bar, results, checkbox(vm), headBox(), ops, prune()} for the page to place.
 */
export function bulkActions(ctx, getVms) {
  const { can } = ctx;
  const selected = new Set();
  const { element: results, start, run } = resultList(ctx);
  const count = h('span', { class: 'muted', 'aria-live': 'polite' }, 'None selected');
  const buttons = [];
  const bar = h('div', { class: 'bulk-bar', role: 'group', 'aria-label': 'Bulk actions' }, count);

  const chosen = () => getVms().filter((v) => selected.has(v.id));
  const update = () => {
    const n = chosen().length;
    count.textContent = n ? `${n} selected` : 'None selected';
    for (const b of buttons) b.disabled = !n;
    // the head box speaks for the rows shown (a search may hide some of those loaded)
    const head = document.getElementById('vm-select-all');
    const boxes = [...document.querySelectorAll('input.select[data-id]')];
    if (head) {
      const on = boxes.filter((b) => selected.has(b.dataset.id)).length;
      head.checked = on > 0 && on === boxes.length;
      head.indeterminate = on > 0 && on < boxes.length;
    }
  };

  const ops = {
    bulk: async (a, vms) => {
      start(`${a.label}: ${vms.length} VM${vms.length === 1 ? '' : 's'}`);
      await run(vms, a.label, (vm) => request(`/v1/vms/${vm.id}/actions/${a.action}`, { method: 'POST', idempotent: true }));
    },
    remove: async (vms) => {
      const n = vms.length;
      const what = n === 1 ? vms[0].name : `${n} VMs`;
      const ok = await confirmDialog(`Delete ${what}?`,
        `${n === 1 ? 'The VM and its disk are' : `These ${n} VMs and their disks are`} destroyed. This cannot be undone.`,
        { confirm: `Delete ${what}`, danger: true });
      if (!ok) return;
      start(`Delete: ${n} VM${n === 1 ? '' : 's'}`);
      for (const v of vms) selected.delete(v.id);
      update();
      await run(vms, 'Delete', (vm) => request(`/v1/vms/${vm.id}`, { method: 'DELETE', idempotent: true }));
    },
  };
  if (can('vm:power')) {
    for (const a of POWER) buttons.push(h('button', { type: 'button', 'data-bulk': a.action, onclick: () => ops.bulk(a, chosen()) }, a.label));
  }
  if (can('vm:delete')) buttons.push(h('button', { type: 'button', class: 'danger', 'data-bulk': 'delete', onclick: () => ops.remove(chosen()) }, 'Delete…'));
  bar.append(...buttons);

  const checkbox = (vm) => h('input', {
    type: 'checkbox', class: 'select', 'data-id': vm.id, 'aria-label': `Select ${vm.name}`, checked: selected.has(vm.id),
    onchange: (ev) => { if (ev.target.checked) selected.add(vm.id); else selected.delete(vm.id); update(); },
  });
  const headBox = () => h('input', {
    type: 'checkbox', id: 'vm-select-all', 'aria-label': 'Select all on this page',
    onchange: (ev) => {
      for (const box of document.querySelectorAll('input.select[data-id]')) {
        box.checked = ev.target.checked;
        if (box.checked) selected.add(box.dataset.id); else selected.delete(box.dataset.id);
      }
      update();
    },
  });
  /** After a redraw: forget VMs no longer listed, and set the counts and the head box. */
  const prune = () => {
    const ids = new Set(getVms().map((v) => v.id));
    for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
    update();
  };
  update();
  return { bar: buttons.length ? bar : null, results, checkbox, headBox, ops, prune };
}
