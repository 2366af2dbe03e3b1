// Tasks: the durable work queue with live progress, and one task's steps, result and cancel.

import { get, listAll, post } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, link, pageHead, progress, table, timeEl, throttle, toast } from '../ui.js';

const STATES = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];

registerPage({
  path: '/tasks',
  title: 'Tasks',
  section: 'Administration',
  permission: 'task:read',
  order: 60,
  async render(ctx) {
    const { main, query } = ctx;
    const state = h('select', { id: 'task-state' }, h('option', { value: '' }, 'any'),
      STATES.map((s) => h('option', { value: s, selected: query.get('state') === s }, s)));
    const box = h('div', { 'aria-live': 'polite' });
    clear(main, pageHead('Tasks'), card(null,
      h('div', { class: 'filters' }, h('div', { class: 'field' }, h('label', { for: 'task-state' }, 'State'), state)), box));
    const load = async () => {
      const params = { sort: '-created_at' };
      if (state.value) params.state = state.value;
      const tasks = await listAll('/v1/tasks', params, 500);
      clear(box, table([
        { label: 'Task', cell: (t) => link(`#/tasks/${t.id}`, t.kind) },
        { label: 'Resource', cell: (t) => (t.resource_type === 'vm' ? link(`#/vms/${t.resource_id}`, `vm ${t.resource_id.slice(0, 8)}`) : `${t.resource_type} ${t.resource_id.slice(0, 8)}`) },
        { label: 'State', cell: (t) => badge(t.state) },
        { label: 'Progress', cell: (t) => progress(`${t.kind} ${t.id.slice(0, 8)}`, t.progress) },
        { label: 'Step', cell: (t) => t.current_step || '–' },
        { label: 'Created', cell: (t) => timeEl(t.created_at) },
      ], tasks, { caption: 'Tasks', empty: 'No tasks.' }));
    };
    state.addEventListener('change', () => load());
    await load();
    ctx.onCleanup(subscribe(['task.*'], throttle(() => load().catch(() => {}), 500)));
  },
});

registerPage({
  path: '/tasks/:id',
  title: 'Task',
  permission: 'task:read',
  async render(ctx) {
    const { main, params, can } = ctx;
    const draw = async () => {
      const t = await get(`/v1/tasks/${encodeURIComponent(params.id)}`);
      const cancel = can('task:cancel') && ['pending', 'running'].includes(t.state) && !t.cancel_requested
        ? h('button', {
          type: 'button', class: 'danger', onclick: async () => {
            if (!(await confirmDialog('Cancel this task?', 'Only some steps can be cancelled; the API answers if it is too late.', { confirm: 'Cancel task', danger: true }))) return;
            try { await post(`/v1/tasks/${t.id}/cancel`); toast('Cancel requested.'); } catch (err) { toast(err.message, 'bad'); }
          },
        }, 'Cancel task') : null;
      clear(main, h('p', {}, link('#/tasks', '← Tasks')), pageHead(`${t.kind}`, cancel),
        card(null,
          h('p', {}, badge(t.state), ' ', t.resource_type === 'vm' ? link(`#/vms/${t.resource_id}`, `VM ${t.resource_id}`) : `${t.resource_type} ${t.resource_id}`),
          progress('Progress', t.progress),
          h('ol', {}, t.steps.map((s, i) => h('li', {}, s, ' ',
            h('span', { class: 'muted' }, i < t.step_index ? 'done' : i === t.step_index && t.state === 'running' ? 'running' : '')))),
          t.error ? h('div', { class: 'alert', role: 'alert' }, t.error) : null,
          h('p', { class: 'muted' }, 'Created ', timeEl(t.created_at), t.finished_at ? [' · finished ', timeEl(t.finished_at)] : null),
          t.result ? h('details', {}, h('summary', {}, 'Result'), h('pre', { class: 'mono', style: { whiteSpace: 'pre-wrap' } }, JSON.stringify(t.result, null, 2))) : null));
    };
    await draw();
    ctx.onCleanup(subscribe(['task.*'], (e) => { if (e.resource_id === params.id) draw().catch(() => {}); }));
  },
});
