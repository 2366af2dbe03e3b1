// Scaling groups (issue 15): the list with a create form, and one group's members (with their
// scale-in protection), its activity history (newest first: what was asked, why, with which
// numbers, how it ended) and a form for the desired count, sent with If-Match so a change made
// meanwhile is refused (the API's problem detail shows) rather than overwritten. The pages re-read
// on `scaling_group.*` and `task.*` events, and every few seconds while a scale task is in flight.
// The group page also shows its launch template's version, each member's, and the instance
// refresh: the latest one's progress (replaced of all to replace, its task's state) and a form
// that starts one (optionally with a new image) within max surge / max unavailable; and it lists
// the group's lifecycle hooks (scaling_hooks.js) and what each member waits on.

import { get, listAll, post, request } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, card, errorBox, link, pageHead, progress, table, throttle, timeEl, toast } from '../ui.js';
import { field, onSubmit } from './common.js';
import { projectOptions } from './networks.js';
import { hooksCard, waitingCell } from './scaling_hooks.js';

const BASE = '/v1/scaling-groups';
const POLL_MS = 3000;
const TONE = {
  active: 'ok', deleting: 'warn', in_service: 'ok', launching: 'info', leaving: 'warn',
  pending_launch: 'info', pending_terminate: 'warn',
  healthy: 'ok', unhealthy: 'bad', succeeded: 'ok', in_progress: 'info', failed: 'bad', cancelled: 'idle',
};

/** A group's, member's or activity's state as a badge (its own words, coloured by what they mean). */
function stateBadge(state) {
  return h('span', { class: `badge ${TONE[state] || 'info'}`, 'data-state': state }, state.replace('_', ' '));
}

const options = (pairs, empty) => [empty ? h('option', { value: '' }, empty) : null,
  pairs.map(([v, t]) => h('option', { value: v }, t))];
const sizes = (g) => `${g.desired} (${g.min_size}–${g.max_size})`;
const busy = (g) => g.status === 'deleting' || ['launching', 'leaving', 'pending_launch', 'pending_terminate']
  .some((s) => g.members[s] > 0);

/** Re-run `load` on this area's events, and every few seconds while `pending()` says a change is under way. */
function follow(ctx, load, pending) {
  const reload = throttle(() => load().catch(() => {}), 500);
  ctx.onCleanup(subscribe(['scaling_group.*', 'task.*'], reload));
  const timer = setInterval(() => { if (pending()) reload(); }, POLL_MS);
  ctx.onCleanup(() => clearInterval(timer));
}

/** [[pool id, "load balancer / pool"]] of the caller's load balancers. */
async function poolChoices(ctx) {
  if (!ctx.can('loadbalancer:read')) return [];
  const lbs = await listAll('/v1/loadbalancers', { sort: 'name' });
  const pools = await Promise.all(lbs.map((lb) => listAll(`/v1/loadbalancers/${lb.id}/pools`)));
  return lbs.flatMap((lb, i) => pools[i].map((p) => [p.id, `${lb.name} / ${p.name || p.id}`]));
}

async function groupForm(ctx, done) {
  const [projects, images, flavors, networks, pools] = await Promise.all([
    projectOptions(ctx), listAll('/v1/images', { sort: 'name' }), listAll('/v1/flavors', { sort: 'name' }),
    ctx.can('network:read') ? listAll('/v1/networks', { sort: 'name' }) : [], poolChoices(ctx),
  ]);
  const number = (id, value) => h('input', { id, type: 'number', min: 0, value, inputmode: 'numeric' });
  const c = {
    name: h('input', { id: 'sg-name', autocomplete: 'off' }),
    image: h('select', { id: 'sg-image' }, options(images.filter((i) => i.status === 'active').map((i) => [i.id, i.name]))),
    flavor: h('select', { id: 'sg-flavor' }, options(flavors.map((f) => [f.id, `${f.name} (${f.vcpus} vCPU, ${f.ram_mb} MiB)`]))),
    networks: h('select', { id: 'sg-network' }, options(networks.filter((n) => !n.external).map((n) => [n.id, n.name]), 'none')),
    min_size: number('sg-min', '0'),
    max_size: number('sg-max', '2'),
    desired: number('sg-desired-new', '1'),
    lb_pools: h('select', { id: 'sg-pool' }, options(pools, 'none')),
    port: h('input', { id: 'sg-port', type: 'number', min: 1, max: 65535, value: '80' }),
    drain_timeout_s: h('input', { id: 'sg-drain', type: 'number', min: 0, max: 3600, value: '30', inputmode: 'numeric' }),
    project_id: h('select', { id: 'sg-project' }, options(projects)),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create group');
  const form = h('form', { novalidate: true, 'aria-label': 'New scaling group' }, formError,
    field('sg-name', 'Name', c.name, 'Lower-case letters, digits and -; members are named <name>-<hex>.'),
    field('sg-image', 'Image', c.image), field('sg-flavor', 'Flavor', c.flavor),
    field('sg-network', 'Network', c.networks, 'Members get a port on it (security group "default").'),
    field('sg-min', 'Minimum', c.min_size), field('sg-max', 'Maximum', c.max_size),
    field('sg-desired-new', 'Desired', c.desired),
    pools.length ? field('sg-pool', 'Load balancer pool (optional)', c.lb_pools, 'A member joins it once healthy and is drained before it leaves.') : null,
    pools.length ? field('sg-port', 'Member port', c.port) : null,
    pools.length ? field('sg-drain', 'Drain timeout (s)', c.drain_timeout_s, 'A leaving member keeps its open sessions until they end or this passes (0–3600).') : null,
    projects.length > 1 ? field('sg-project', 'Project', c.project_id) : null,
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = {
      name: c.name.value.trim(), image: c.image.value, flavor: c.flavor.value,
      min_size: Number(c.min_size.value), max_size: Number(c.max_size.value), desired: Number(c.desired.value),
      networks: c.networks.value ? [{ network: c.networks.value }] : [],
      lb_pools: c.lb_pools.value ? [{ pool_id: c.lb_pools.value, protocol_port: Number(c.port.value) }] : [],
    };
    if (pools.length) body.drain_timeout_s = Number(c.drain_timeout_s.value);
    if (projects.length > 1) body.project_id = c.project_id.value;
    const g = await post(BASE, body, { idempotent: true });
    toast(`Scaling group ${g.name} created: ${g.desired} member(s) on the way.`);
    c.name.value = '';
    await done();
  });
  return form;
}

registerPage({
  path: '/scaling-groups',
  title: 'Scaling groups',
  section: 'Compute',
  permission: 'scaling-group:read',
  order: 25,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    let groups = [];
    const load = async () => {
      groups = await listAll(BASE, { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (g) => link(`#/scaling-groups/${g.id}`, g.name) },
        { label: 'Desired (min–max)', cell: sizes },
        { label: 'Members running', cell: (g) => `${g.members.in_service}${g.members.launching ? ` (+${g.members.launching} launching)` : ''}` },
        { label: 'Status', cell: (g) => stateBadge(g.status) },
        { label: 'Created', cell: (g) => timeEl(g.created_at) },
      ], groups, { caption: 'Scaling groups', empty: 'No scaling groups yet.', rowAttrs: (g) => ({ 'data-group': g.name }) }));
    };
    const form = ctx.can('scaling-group:write') ? await groupForm(ctx, load) : null;
    clear(ctx.main, pageHead('Scaling groups'), h('div', { class: 'grid' }, card(null, box),
      form ? card('New scaling group', form) : null));
    await load();
    follow(ctx, load, () => groups.some(busy));
  },
});

// ---- one group --------------------------------------------------------------------------------

/** The template's image and flavor by name (their ids when the caller may not read them). */
async function templateNames(t) {
  const name = (path, id) => get(`${path}/${id}`).then((x) => x.name, () => id);
  const [image, flavor] = await Promise.all([name('/v1/images', t.image_id), name('/v1/flavors', t.flavor_id)]);
  return `${image} · ${flavor}`;
}

/** What the members cost together (the cost API's figures for their VMs), or null when it may not be read. */
async function groupCost(ctx, members) {
  if (!ctx.can('usage:read') || !members.length) return null;
  const q = new URLSearchParams(members.map((m) => ['vm_id', m.vm_id]));
  const c = await get(`/v1/cost?${q}`);
  return `${c.per_hour.toFixed(4)} ${c.currency} per hour · ${c.per_month.toFixed(2)} ${c.currency} per month`;
}

/**
 * What scaling the members to their summed CPU load over the last week would have saved against
 * running the peak's VMs throughout (`GET /v1/cost/roi`); the API's reason when it cannot say
 * (no CPU samples yet, say).
 */
async function roiBox(members) {
  if (!members.length) return h('p', { class: 'empty' }, 'No members to compare.');
  const q = new URLSearchParams([...members.map((m) => ['vm_id', m.vm_id]), ['window', '7d']]);
  let r;
  try {
    r = await get(`/v1/cost/roi?${q}`);
  } catch (err) {
    return errorBox(err);
  }
  const row = (label, p) => [h('dt', {}, label), h('dd', {}, `${p.vm_hours.toFixed(1)} VM-hours, ${p.cost.toFixed(2)} ${r.currency}, peak ${p.peak_vms} VM(s)`)];
  return h('dl', { class: 'kv', 'data-testid': 'sg-roi' },
    row('Static for the peak', r.static), row('Scaled to the load', r.scaled),
    h('dt', {}, 'Saving'), h('dd', {}, `${r.saving.toFixed(2)} ${r.currency} (${(r.saving_share * 100).toFixed(0)} %) over ${(r.window_s / 86400).toFixed(1)} days`));
}

function detailList(g, template, cost) {
  return h('dl', { class: 'kv', 'data-testid': 'sg-details' }, [
    ['ID', h('code', {}, g.id)],
    ['Status', stateBadge(g.status)],
    ['Desired (min–max)', sizes(g)],
    ['Members', `${g.members.in_service} in service, ${g.members.launching} launching, ${g.members.leaving} leaving`
      + `${g.members.pending_launch || g.members.pending_terminate ? `, ${(g.members.pending_launch || 0) + (g.members.pending_terminate || 0)} waiting on a hook` : ''}`],
    ['Image · flavor', template],
    ['Template version', h('span', { 'data-testid': 'sg-template-version' }, `v${g.template_version}`)],
    ['Cost of the members', cost || '–'],
    ['Termination policy', g.termination_policy],
    ['Cooldown · warm-up', `${g.cooldown_s} s · ${g.warmup_s} s`],
    ['Drain timeout', `${g.drain_timeout_s} s`],
    ['Load balancer pools', g.lb_pools.length ? g.lb_pools.map((p) => `${p.pool_id}:${p.protocol_port}`).join(', ') : 'none'],
    ['Task', g.task_id ? link(`#/tasks/${g.task_id}`, g.task_id) : '–'],
    ['Created', timeEl(g.created_at)],
  ].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** The desired count, sent with the group's ETag: a change made meanwhile answers 412/409, shown. */
function desiredForm(base, state, done) {
  const c = {
    desired: h('input', { id: 'sg-desired', type: 'number', min: 0, inputmode: 'numeric', value: String(state.group.desired) }),
    reason: h('input', { id: 'sg-reason', autocomplete: 'off', maxlength: 500 }),
  };
  const formError = h('div', { role: 'alert', 'data-testid': 'desired-error' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Set desired');
  const form = h('form', { novalidate: true, 'aria-label': 'Desired count' }, formError,
    field('sg-desired', 'Desired count', c.desired, 'Held to the group\'s minimum and maximum.'),
    field('sg-reason', 'Reason (optional)', c.reason, 'Recorded in the activity history.'),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { desired: c.desired.value === '' ? null : Number(c.desired.value) };
    if (c.reason.value.trim()) body.reason = c.reason.value.trim();
    let r;
    try {
      r = await request(base, { method: 'PATCH', body, ifMatch: state.etag });
    } catch (err) {
      // changed meanwhile: the page reads the group again, so a second submit applies to what is shown
      if (err.status === 412) await done();
      throw err;
    }
    state.group = r.data;
    state.etag = r.etag;
    toast(`Desired count of ${r.data.name} set to ${r.data.desired}.`);
    c.reason.value = '';
    await done();
  });
  return form;
}

function membersTable(base, group, members, vmNames, canWrite, reload) {
  const name = (m) => vmNames[m.vm_id] || m.vm_id;
  const protect = async (m, box) => {
    box.disabled = true;
    try {
      await request(`${base}/members/${m.vm_id}/protection`, { method: 'PUT', body: { protected: box.checked } });
      toast(`${name(m)} is ${box.checked ? 'protected from' : 'no longer protected from'} scale-in.`);
    } catch (err) {
      box.checked = !box.checked;
      toast(err.message, 'bad');
    }
    await reload();
  };
  return table([
    { label: 'VM', cell: (m) => link(`#/vms/${m.vm_id}`, name(m)) },
    { label: 'State', cell: (m) => stateBadge(m.state) },
    {
      label: 'Template',
      cell: (m) => h('span', { 'data-testid': 'member-version' }, `v${m.template_version}`,
        m.template_version < group.template_version ? h('span', { class: 'muted' }, ' (older: a refresh replaces it)') : null),
    },
    { label: 'Health', cell: (m) => h('span', {}, stateBadge(m.health), m.health_reason ? h('span', { class: 'muted' }, ` ${m.health_reason}`) : null) },
    {
      label: 'Protected from scale-in',
      cell: (m) => {
        const box = h('input', {
          type: 'checkbox', id: `prot-${m.vm_id}`, checked: m.protected_from_scale_in, disabled: !canWrite,
        });
        box.addEventListener('change', () => protect(m, box));
        return h('label', { class: 'check', for: box.id }, box, h('span', { class: 'visually-hidden' }, `Protect ${name(m)} from scale-in`));
      },
    },
    { label: 'Waiting on', cell: waitingCell },
    { label: 'Launched', cell: (m) => timeEl(m.launched_at) },
  ], members, { caption: 'Member VMs, oldest first', empty: 'No members yet.', rowAttrs: (m) => ({ 'data-member': m.vm_id }) });
}

/** An activity's numbers as "desired 2, members before 1" (empty lists and maps left out). */
function numbersText(numbers) {
  const empty = (v) => v !== null && typeof v === 'object' && !Object.keys(v).length;
  return Object.entries(numbers || {}).filter(([, v]) => !empty(v)).map(([k, v]) => `${k.replace(/_/g, ' ')} ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(', ');
}

function activityTable(activities) {
  return table([
    { label: 'Action', cell: (a) => a.action.replace('_', ' ') },
    { label: 'Reason', cell: (a) => a.reason },
    { label: 'Policy', cell: (a) => a.policy || 'none (asked directly)' },
    { label: 'Numbers', cell: (a) => numbersText(a.numbers) },
    { label: 'Outcome', cell: (a) => h('span', {}, stateBadge(a.outcome), a.detail ? h('span', { class: 'muted' }, ` ${a.detail}`) : null) },
    { label: 'Started', cell: (a) => timeEl(a.started_at) },
    { label: 'Finished', cell: (a) => (a.finished_at ? timeEl(a.finished_at) : '–') },
  ], activities, { caption: 'Activity history, newest first', empty: 'No activity yet.', rowAttrs: (a) => ({ 'data-activity': a.id }) });
}

/** The latest refresh: its progress (replaced of all to replace), its task's state and its numbers. */
async function refreshStatus(a) {
  if (!a) return h('p', { class: 'empty' }, 'No refresh yet: members keep the template they were launched from.');
  const n = a.numbers;
  const total = n.replaced + n.remaining;
  const pct = total ? Math.round((100 * n.replaced) / total) : 100;
  const task = a.task_id ? await get(`/v1/tasks/${a.task_id}`).catch(() => null) : null;
  return h('div', {},
    progress(`Refresh to template v${n.template_version}: ${n.replaced} of ${total} replaced`, a.outcome === 'succeeded' ? 100 : pct),
    h('dl', { class: 'kv' }, [
      ['Outcome', h('span', {}, stateBadge(a.outcome), a.detail ? h('span', { class: 'muted' }, ` ${a.detail}`) : null)],
      ['Replaced · remaining', `${n.replaced} · ${n.remaining}`],
      ['Max surge · max unavailable', `${n.max_surge} · ${n.max_unavailable}`],
      ['Protected, skipped', n.skipped_protected.length ? n.skipped_protected.join(', ') : 'none'],
      ['Task', a.task_id ? h('span', {}, link(`#/tasks/${a.task_id}`, a.task_id), task ? ` (${task.state}, ${task.progress}%)` : '') : '–'],
      ['Started', timeEl(a.started_at)],
    ].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
}

/** Start a refresh (with a new image, if one is picked), sent with the group's ETag. */
async function refreshForm(base, state, done) {
  const images = await listAll('/v1/images', { sort: 'name' });
  const number = (id, value) => h('input', { id, type: 'number', min: 0, value, inputmode: 'numeric' });
  const c = {
    image: h('select', { id: 'rf-image' }, options(images.filter((i) => i.status === 'active').map((i) => [i.id, i.name]), 'keep the current image')),
    max_surge: number('rf-surge', '1'),
    max_unavailable: number('rf-unavailable', '0'),
  };
  const formError = h('div', { role: 'alert', 'data-testid': 'refresh-error' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Start refresh');
  const form = h('form', { novalidate: true, 'aria-label': 'Instance refresh' }, formError,
    field('rf-image', 'New image (optional)', c.image, 'A new image raises the template version.'),
    field('rf-surge', 'Max surge', c.max_surge, 'VMs allowed above the desired count while it runs.'),
    field('rf-unavailable', 'Max unavailable', c.max_unavailable, 'Members in service that may be missing below the desired count.'),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { max_surge: Number(c.max_surge.value), max_unavailable: Number(c.max_unavailable.value) };
    if (c.image.value) body.image = c.image.value;
    let r;
    try {
      r = await request(`${base}/refresh`, { method: 'POST', body, ifMatch: state.etag, idempotent: true });
    } catch (err) {
      if (err.status === 412) await done();
      throw err;
    }
    toast(`Refresh to template v${r.data.numbers.template_version} started: ${r.data.numbers.to_replace} member(s) to replace.`);
    await done();
  });
  return form;
}

registerPage({
  path: '/scaling-groups/:id',
  title: 'Scaling group',
  permission: 'scaling-group:read',
  async render(ctx) {
    const first = await request(`${BASE}/${encodeURIComponent(ctx.params.id)}`, { signal: ctx.signal });
    const state = { group: first.data, etag: first.etag };
    const base = `${BASE}/${state.group.id}`;
    document.title = `${state.group.name} · NovaCron`;
    const canWrite = ctx.can('scaling-group:write');
    const detailBox = h('div', { 'aria-live': 'polite' });
    const memberBox = h('div');
    const activityBox = h('div', { 'aria-live': 'polite' });
    const refreshBox = h('div', { 'aria-live': 'polite', 'data-testid': 'sg-refresh' });
    const roiCard = card('Scaling against static provisioning');
    const hooks = hooksCard(base, canWrite);
    const load = async () => {
      const [fresh, members, activities, vms] = await Promise.all([
        request(base), get(`${base}/members`), listAll(`${base}/activities`, { sort: '-started_at' }, 100),
        ctx.can('vm:read') ? listAll('/v1/vms') : [],
      ]);
      state.group = fresh.data;
      state.etag = fresh.etag;
      const vmNames = Object.fromEntries(vms.map((v) => [v.id, v.name]));
      const cost = await groupCost(ctx, members);
      clear(detailBox, detailList(state.group, await templateNames(state.group.template), cost));
      clear(memberBox, membersTable(base, state.group, members, vmNames, canWrite, load));
      state.refresh = activities.find((a) => a.action === 'refresh') || null;
      clear(refreshBox, await refreshStatus(state.refresh));
      clear(activityBox, activityTable(activities));
      await hooks.load();
    };
    clear(ctx.main, h('p', {}, link('#/scaling-groups', '← Scaling groups')),
      pageHead(state.group.name),
      h('div', { class: 'grid' }, card('Details', detailBox),
        canWrite ? card('Desired count', desiredForm(base, state, load)) : null),
      card('Members', memberBox),
      h('div', { class: 'grid' }, card('Instance refresh', refreshBox),
        canWrite ? card('Start a refresh', await refreshForm(base, state, load)) : null),
      h('div', { class: 'grid' }, card('Lifecycle hooks', hooks.box), hooks.form ? card('New lifecycle hook', hooks.form) : null),
      card('Activity history', activityBox), roiCard);
    await load();
    // read once: a week of metrics does not change between two events
    if (ctx.can('usage:read')) roiCard.append(await roiBox(await get(`${base}/members`)));
    else roiCard.remove();
    follow(ctx, load, () => busy(state.group) || state.refresh?.outcome === 'in_progress');
  },
});
