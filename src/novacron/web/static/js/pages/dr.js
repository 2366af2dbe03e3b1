// DR runbooks: RPO and RTO against their targets, a create form, and the runs (drill, dry run,
// failover, fail-back) with the started task's progress followed live.

import { get, listAll, post } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, link, pageHead, progress, table, throttle, timeEl, toast } from '../ui.js';
import { field, fmtSeconds, onSubmit, taskBox } from './common.js';
import { projectOptions } from './networks.js';

/** A figure against its target: "12 s of 60 s", red with "missed" when over. */
function against(value, target, met) {
  if (value === null || value === undefined) return h('span', { class: 'badge bad', 'data-state': 'missed' }, 'no backup');
  return h('span', {}, `${fmtSeconds(value)} of ${fmtSeconds(target)} `, badge(met ? 'met' : 'missed'));
}

/**
 * The VMs in recovery order: picked from a select, each movable up and removable. The select is the
 * control the API's `steps` errors show next to.
 */
function stepPicker(vms) {
  const chosen = [];
  const select = h('select', { id: 'rb-steps' }, vms.map((v) => h('option', { value: v.id }, v.name)));
  const list = h('ol', { 'aria-label': 'Recovery order', 'data-testid': 'rb-order' });
  const name = Object.fromEntries(vms.map((v) => [v.id, v.name]));
  const draw = () => clear(list, chosen.map((id, i) => h('li', { 'data-vm': id },
    h('span', {}, name[id] || id), ' ',
    h('span', { class: 'row-actions' },
      i > 0 ? h('button', { type: 'button', 'aria-label': `Move ${name[id]} up`, onclick: () => { chosen.splice(i - 1, 0, chosen.splice(i, 1)[0]); draw(); } }, 'Up') : null,
      h('button', { type: 'button', 'aria-label': `Remove ${name[id]} from the order`, onclick: () => { chosen.splice(i, 1); draw(); } }, 'Remove')))));
  const add = h('button', { type: 'button', onclick: () => { if (select.value && !chosen.includes(select.value)) chosen.push(select.value); draw(); } }, 'Add VM');
  return {
    select,
    ui: [field('rb-steps', 'VMs in recovery order', select, 'Add each VM; they are restored in this order.'), h('div', { class: 'field' }, add), list],
    steps: () => chosen.map((vm) => ({ vm })),
    reset: () => { chosen.length = 0; draw(); },
  };
}

function runbookForm(projects, vms, groups, networks, done) {
  const picker = stepPicker(vms);
  const c = {
    name: h('input', { id: 'rb-name', autocomplete: 'off' }),
    project_id: h('select', { id: 'rb-project' }, projects.map(([v, t]) => h('option', { value: v }, t))),
    steps: picker.select,
    // tenants cannot list host groups: they type the name their operator gave them
    recovery_group: groups ? h('select', { id: 'rb-group' }, h('option', { value: '' }, 'none yet'), groups.map((g) => h('option', { value: g.name }, g.name)))
      : h('input', { id: 'rb-group', autocomplete: 'off' }),
    rpo_target_s: h('input', { id: 'rb-rpo', type: 'number', inputmode: 'numeric', value: '86400' }),
    rto_target_s: h('input', { id: 'rb-rto', type: 'number', inputmode: 'numeric', value: '3600' }),
    test_network: h('select', { id: 'rb-testnet' }, h('option', { value: '' }, 'none (no NIC in a dry run)'), networks.map((n) => h('option', { value: n.id }, n.name))),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create runbook');
  const form = h('form', { novalidate: true, 'aria-label': 'New runbook' }, formError,
    field('rb-name', 'Name', c.name, 'Lower-case letters, digits and dashes.'),
    projects.length > 1 ? field('rb-project', 'Project', c.project_id, 'The VMs and their backups are looked up in it.') : null,
    picker.ui,
    field('rb-group', 'Recovery host group', c.recovery_group, 'The aggregate failover restores into.'),
    field('rb-rpo', 'RPO target (seconds)', c.rpo_target_s, 'The newest backup at most this old.'),
    field('rb-rto', 'RTO target (seconds)', c.rto_target_s, 'Every VM up within this long.'),
    field('rb-testnet', 'Dry-run network', c.test_network, 'An isolated network for dry runs.'),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { name: c.name.value.trim(), steps: picker.steps() };
    if (projects.length > 1) body.project_id = c.project_id.value;
    for (const k of ['rpo_target_s', 'rto_target_s']) if (c[k].value !== '') body[k] = Number(c[k].value);
    if (c.recovery_group.value.trim()) body.recovery_group = c.recovery_group.value.trim();
    if (c.test_network.value) body.test_network = c.test_network.value;
    const r = await post('/v1/dr/runbooks', body, { idempotent: true });
    toast(`Runbook ${r.name} created.`);
    form.reset();
    picker.reset();
    await done();
  });
  return form;
}

const RUNS = {
  drill: {
    label: 'Run drill', path: 'drill', body: undefined, danger: false,
    says: 'Every VM of the runbook is restored from its newest backup as a new VM, in order, and RPO and RTO are measured.',
  },
  dry: {
    label: 'Dry run', path: 'failover', body: { dry_run: true }, danger: false,
    says: 'Each VM is restored from the recovery site into the recovery group, checked, and removed again; production is not touched.',
  },
  failover: {
    label: 'Fail over', path: 'failover', body: {}, danger: true,
    says: 'The VMs are restored at the recovery site and the originals are stopped. Production moves there until you fail back.',
  },
  failback: {
    label: 'Fail back', path: 'failback', body: undefined, danger: true,
    says: 'The recovered VMs are shut down, backed up and restored over the originals, which start again; the recovered VMs are removed.',
  },
};

/** The task a run started: kind, state, progress, and its error once it failed. */
function runLine(t) {
  return h('div', { class: 'stack', 'data-testid': 'run', 'data-task': t.id, 'data-state': t.state },
    h('div', {}, h('strong', {}, t.kind), ' ', badge(t.state), ' ', link(`#/tasks/${t.id}`, 'details'),
      t.current_step ? h('span', { class: 'muted' }, ` step ${t.current_step}`) : null),
    progress(`${t.kind} progress`, t.progress),
    t.error ? h('div', { class: 'alert', role: 'alert' }, t.error) : null);
}

function lastTest(t) {
  if (!t) return 'never';
  if (!t.ok) return [badge('failed'), ` ${t.error || ''}`];
  return ['RTO ', against(t.rto_s, t.rto_target_s, t.rto_met), t.started_at ? [' · ', timeEl(t.started_at)] : null];
}

registerPage({
  path: '/dr',
  title: 'DR runbooks',
  section: 'Backup',
  permission: 'dr:read',
  order: 30,
  async render(ctx) {
    const canWrite = ctx.can('dr:write');
    const box = h('div', { 'aria-live': 'polite' });
    const tasks = h('div', { 'aria-live': 'polite' });
    // runbook id -> the task last started from this page, shown in its card until the page is left
    const started = new Map();
    const start = async (r, run) => {
      if (!(await confirmDialog(`${run.label}: ${r.name}?`, run.says, { confirm: run.label, danger: run.danger }))) return;
      try {
        const res = await post(`/v1/dr/runbooks/${r.id}/${run.path}`, run.body, { idempotent: true });
        started.set(r.id, res.task_id);
        toast(`${run.label} of ${r.name} started.`);
      } catch (err) { toast(err.message, 'bad'); }
      await load();
    };
    const actions = (r) => {
      const runs = [RUNS.drill, RUNS.dry, r.state === 'failed-over' ? RUNS.failback : RUNS.failover];
      return h('div', { class: 'actions' }, runs.map((run) => h('button', {
        type: 'button', class: run.danger ? 'danger' : null, onclick: () => start(r, run),
      }, run.label)));
    };
    const load = async () => {
      // the list leaves out each VM's current RPO; one read per runbook has it
      const runbooks = await Promise.all((await listAll('/v1/dr/runbooks')).map((r) => get(`/v1/dr/runbooks/${r.id}`)));
      const runs = Object.fromEntries(await Promise.all([...started].map(async ([id, t]) => [id, await get(`/v1/tasks/${t}`)])));
      clear(box, runbooks.length ? runbooks.map((r) => {
        const d = r.last_drill;
        return h('section', { class: 'card', 'aria-labelledby': `rb-${r.id}`, 'data-runbook': r.name },
          h('div', { class: 'page-head' }, h('h2', { id: `rb-${r.id}` }, r.name), canWrite ? actions(r) : null),
          runs[r.id] ? runLine(runs[r.id]) : null,
          h('dl', { class: 'kv' },
            h('dt', {}, 'State'), h('dd', { 'data-testid': 'rb-state' }, badge(r.state), r.state_changed_at ? [' ', timeEl(r.state_changed_at)] : null),
            h('dt', {}, 'Targets'), h('dd', {}, `RPO ${fmtSeconds(r.rpo_target_s)} · RTO ${fmtSeconds(r.rto_target_s)}`),
            h('dt', {}, 'Recovery group'), h('dd', {}, r.recovery_group || 'none'),
            h('dt', {}, 'Last drill'), h('dd', { 'data-testid': 'last-drill' }, !d ? 'never'
              : d.ok ? ['RTO ', against(d.rto_s, d.rto_target_s, d.rto_met), ' · RPO ', badge(d.rpo_met ? 'met' : 'missed'), ' · ', timeEl(r.last_drill_at)]
                : [badge('failed'), ` ${d.error || ''}`]),
            h('dt', {}, 'Last dry run'), h('dd', { 'data-testid': 'last-test' }, lastTest(r.last_test))),
          table([
            { label: 'Step', cell: (s) => String(s.n) },
            { label: 'VM', cell: (s) => s.vm },
            { label: 'RPO now', cell: (s) => h('span', { 'data-testid': 'rpo' }, against(s.rpo_s, r.rpo_target_s, s.rpo_met)) },
          ], r.rpo.map((s, i) => ({ ...s, n: i + 1 })), { caption: `Recovery order of ${r.name}` }));
      }) : h('p', { class: 'empty' }, 'No runbooks yet.'));
    };
    let form = null;
    if (canWrite) {
      const [projects, vms, groups, networks] = await Promise.all([
        projectOptions(ctx),
        ctx.can('vm:read') ? listAll('/v1/vms', { sort: 'name' }) : [],
        ctx.can('host:read') ? listAll('/v1/aggregates').catch(() => null) : null,
        ctx.can('network:read') ? listAll('/v1/networks', { sort: 'name' }) : [],
      ]);
      form = card('New runbook', runbookForm(projects, vms, groups, networks.filter((n) => !n.external), load));
    }
    clear(ctx.main, pageHead('DR runbooks'), tasks, box, form);
    await Promise.all([load(), taskBox(tasks, ['dr.'])]);
    const reload = throttle(() => { load().catch(() => {}); taskBox(tasks, ['dr.']).catch(() => {}); }, 800);
    ctx.onCleanup(subscribe(['task.*', 'dr.*', 'backup.*'], reload));
  },
});
