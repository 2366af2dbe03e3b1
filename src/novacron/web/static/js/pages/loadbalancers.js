// Load balancers (issue 14): the list with a create form, and one load balancer's listeners, pools
// and members with their operating status. Every change answers at once with the load balancer
// PENDING_* while its task realises it; the page follows the `loadbalancer.*` events and, while
// anything is pending, polls every few seconds, so statuses turn ACTIVE / ONLINE on their own.

import { get, listAll, post, request } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, card, confirmDialog, link, pageHead, table, throttle, timeEl, toast } from '../ui.js';
import { checkField, field, onSubmit } from './common.js';
import { projectOptions } from './networks.js';

const BASE = '/v1/loadbalancers';
const POLL_MS = 3000;
const TONE = {
  ACTIVE: 'ok', ONLINE: 'ok', ERROR: 'bad', OFFLINE: 'bad', DEGRADED: 'warn', DRAINING: 'warn',
  DISABLED: 'idle', NO_MONITOR: 'idle', PENDING_CREATE: 'info', PENDING_UPDATE: 'info', PENDING_DELETE: 'info',
};
const LISTENER_PROTOCOLS = ['HTTP', 'TCP', 'HTTPS', 'TERMINATED_HTTPS'];
const POOL_PROTOCOLS = ['HTTP', 'TCP', 'HTTPS', 'PROXY', 'PROXYV2'];
const ALGORITHMS = ['ROUND_ROBIN', 'LEAST_CONNECTIONS', 'SOURCE_IP', 'URI_HASH', 'RANDOM_TWO'];

const options = (pairs, empty) => [empty ? h('option', { value: '' }, empty) : null,
  pairs.map((p) => (Array.isArray(p) ? h('option', { value: p[0] }, p[1]) : h('option', { value: p }, p)))];
const pending = (lb) => lb.provisioning_status.startsWith('PENDING_');

/** An Octavia status as a badge (its own words, coloured by what it means). */
export function statusBadge(status) {
  return h('span', { class: `badge ${TONE[status] || 'info'}`, 'data-state': status }, status);
}

/** A change refused by the API (a 409 while a task is in flight, say) becomes a toast. */
async function attempt(call, ok) {
  try {
    await call();
    if (ok) toast(ok);
    return true;
  } catch (err) {
    toast(err.message, 'bad');
    return false;
  }
}

/** Re-run `load` on this area's events, and every few seconds while `busy()` says something is pending. */
function follow(ctx, load, busy) {
  const reload = throttle(() => load().catch(() => {}), 500);
  ctx.onCleanup(subscribe(['loadbalancer.*'], reload));
  const timer = setInterval(() => { if (busy()) reload(); }, POLL_MS);
  ctx.onCleanup(() => clearInterval(timer));
}

function lbForm(projects, subnets, done) {
  const c = {
    name: h('input', { id: 'lb-name', autocomplete: 'off' }),
    vip_subnet_id: h('select', { id: 'lb-subnet' }, options(subnets)),
    vip_address: h('input', { id: 'lb-vip', autocomplete: 'off', placeholder: 'the next free address' }),
    topology: h('select', { id: 'lb-topology' }, options([['SINGLE', 'Single (one host)'], ['ACTIVE_STANDBY', 'Active / standby (two hosts)']])),
    project_id: h('select', { id: 'lb-project' }, options(projects)),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create load balancer');
  const form = h('form', { novalidate: true, 'aria-label': 'New load balancer' }, formError,
    field('lb-name', 'Name', c.name, 'Letters, digits, . _ -'),
    field('lb-subnet', 'VIP subnet', c.vip_subnet_id, 'The virtual IP is an address of this subnet.'),
    field('lb-vip', 'VIP address (optional)', c.vip_address),
    field('lb-topology', 'Topology', c.topology, 'Active / standby moves the VIP to the second host when the first fails.'),
    projects.length > 1 ? field('lb-project', 'Project', c.project_id) : null,
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { name: c.name.value.trim(), vip_subnet_id: c.vip_subnet_id.value, topology: c.topology.value };
    if (c.vip_address.value.trim()) body.vip_address = c.vip_address.value.trim();
    if (projects.length > 1) body.project_id = c.project_id.value;
    const lb = await post(BASE, body, { idempotent: true });
    toast(`Load balancer ${lb.name} is being created (${lb.vip_address}).`);
    form.reset();
    await done();
  });
  return form;
}

/** [[subnet id, "network / subnet (cidr)"]] of the caller's tenant networks (not external ones). */
async function subnetChoices() {
  const [nets, subnets] = await Promise.all([listAll('/v1/networks'), listAll('/v1/subnets', { sort: 'name' })]);
  const own = Object.fromEntries(nets.filter((n) => !n.external).map((n) => [n.id, n.name]));
  return subnets.filter((s) => own[s.network_id]).map((s) => [s.id, `${own[s.network_id]} / ${s.name} (${s.cidr})`]);
}

registerPage({
  path: '/loadbalancers',
  title: 'Load balancers',
  section: 'Network',
  permission: 'loadbalancer:read',
  order: 35,
  async render(ctx) {
    const canWrite = ctx.can('loadbalancer:write');
    const box = h('div', { 'aria-live': 'polite' });
    let lbs = [];
    const load = async () => {
      lbs = await listAll(BASE, { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (lb) => link(`#/loadbalancers/${lb.id}`, lb.name) },
        { label: 'VIP', cell: (lb) => h('code', {}, lb.vip_address) },
        { label: 'Provisioning', cell: (lb) => statusBadge(lb.provisioning_status) },
        { label: 'Operating', cell: (lb) => statusBadge(lb.operating_status) },
        { label: 'Listeners', cell: (lb) => String(lb.listeners.length) },
        { label: 'Pools', cell: (lb) => String(lb.pools.length) },
        { label: 'Topology', cell: (lb) => lb.topology },
        { label: 'Created', cell: (lb) => timeEl(lb.created_at) },
      ], lbs, { caption: 'Load balancers', empty: 'No load balancers yet.', rowAttrs: (lb) => ({ 'data-lb': lb.name }) }));
    };
    const [projects, subnets] = canWrite ? await Promise.all([projectOptions(ctx), subnetChoices()]) : [[], []];
    const form = subnets.length ? lbForm(projects, subnets, load)
      : h('p', { class: 'empty' }, 'Create a network with a subnet first: the VIP is one of its addresses.');
    clear(ctx.main, pageHead('Load balancers'), h('div', { class: 'grid' }, card(null, box),
      canWrite ? card('New load balancer', form) : null));
    await load();
    follow(ctx, load, () => lbs.some(pending));
  },
});

// ---- one load balancer ------------------------------------------------------------------------

function poolForm(base, done) {
  const c = {
    name: h('input', { id: 'pool-name', autocomplete: 'off' }),
    protocol: h('select', { id: 'pool-protocol' }, options(POOL_PROTOCOLS)),
    lb_algorithm: h('select', { id: 'pool-algorithm' }, options(ALGORITHMS)),
    session_persistence: h('select', { id: 'pool-persistence' }, options(['SOURCE_IP', 'HTTP_COOKIE'], 'none')),
    healthmonitor: h('select', { id: 'pool-monitor' }, options(['TCP', 'HTTP'], 'none')),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add pool');
  const form = h('form', { novalidate: true, 'aria-label': 'New pool' }, formError,
    field('pool-name', 'Name', c.name), field('pool-protocol', 'Protocol', c.protocol),
    field('pool-algorithm', 'Algorithm', c.lb_algorithm), field('pool-persistence', 'Session persistence', c.session_persistence),
    field('pool-monitor', 'Health monitor', c.healthmonitor, 'Checks each member every 5 s.'), submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { name: c.name.value.trim(), protocol: c.protocol.value, lb_algorithm: c.lb_algorithm.value };
    if (c.session_persistence.value) body.session_persistence = { type: c.session_persistence.value };
    if (c.healthmonitor.value) body.healthmonitor = { type: c.healthmonitor.value };
    const pool = await post(`${base}/pools`, body, { idempotent: true });
    toast(`Pool ${pool.name || pool.id} added.`);
    form.reset();
    await done();
  });
  return form;
}

function listenerForm(base, pools, done) {
  const c = {
    name: h('input', { id: 'lis-name', autocomplete: 'off' }),
    protocol: h('select', { id: 'lis-protocol' }, options(LISTENER_PROTOCOLS)),
    protocol_port: h('input', { id: 'lis-port', type: 'number', min: 1, max: 65535, value: '80' }),
    default_pool_id: h('select', { id: 'lis-pool' }, options(pools.map((p) => [p.id, p.name || p.id]), 'none')),
    connection_limit: h('input', { id: 'lis-limit', type: 'number', min: 1 }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add listener');
  const form = h('form', { novalidate: true, 'aria-label': 'New listener' }, formError,
    field('lis-name', 'Name', c.name), field('lis-protocol', 'Protocol', c.protocol),
    field('lis-port', 'Port', c.protocol_port), field('lis-pool', 'Default pool', c.default_pool_id),
    field('lis-limit', 'Connection limit (optional)', c.connection_limit), submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { name: c.name.value.trim(), protocol: c.protocol.value, protocol_port: Number(c.protocol_port.value) };
    if (c.default_pool_id.value) body.default_pool_id = c.default_pool_id.value;
    if (c.connection_limit.value) body.connection_limit = Number(c.connection_limit.value);
    const listener = await post(`${base}/listeners`, body, { idempotent: true });
    toast(`Listener ${listener.protocol}:${listener.protocol_port} added.`);
    form.reset();
    await done();
  });
  return form;
}

function memberForm(base, pools, vms, done) {
  const c = {
    pool: h('select', { id: 'mem-pool' }, options(pools.map((p) => [p.id, p.name || p.id]))),
    vm_id: h('select', { id: 'mem-vm' }, options(vms.map((v) => [v.id, v.name]), 'by address')),
    address: h('input', { id: 'mem-address', autocomplete: 'off' }),
    protocol_port: h('input', { id: 'mem-port', type: 'number', min: 1, max: 65535, value: '80' }),
    weight: h('input', { id: 'mem-weight', type: 'number', min: 0, max: 256, value: '1' }),
    name: h('input', { id: 'mem-name', autocomplete: 'off' }),
    backup: h('input', { id: 'mem-backup', type: 'checkbox' }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add member');
  const form = h('form', { novalidate: true, 'aria-label': 'Add a member' }, formError,
    field('mem-pool', 'Pool', c.pool), field('mem-vm', 'VM', c.vm_id, 'Its port\'s address; or choose "by address".'),
    field('mem-address', 'Address', c.address, 'An address of one of your subnets.'),
    field('mem-port', 'Port', c.protocol_port), field('mem-weight', 'Weight', c.weight), field('mem-name', 'Name', c.name),
    checkField('mem-backup', 'Backup (used only when no other member is up)', c.backup), submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = {
      name: c.name.value.trim(), protocol_port: Number(c.protocol_port.value), weight: Number(c.weight.value), backup: c.backup.checked,
    };
    if (c.vm_id.value) body.vm_id = c.vm_id.value;
    else body.address = c.address.value.trim();
    const m = await post(`${base}/pools/${c.pool.value}/members`, body, { idempotent: true });
    toast(`Member ${m.address}:${m.protocol_port} added.`);
    c.address.value = '';
    c.name.value = '';
    await done();
  });
  return form;
}

/** A member's weight, changed in place; a refusal shows next to the field. */
function weightForm(path, member, busy, done) {
  const id = `mw-${member.id}`;
  const c = { weight: h('input', { id, type: 'number', min: 0, max: 256, value: member.weight, style: { width: '5rem' } }) };
  const submit = h('button', { type: 'submit', disabled: busy }, 'Set');
  const form = h('form', { novalidate: true, class: 'row-actions', 'aria-label': `Weight of ${member.name || member.address}` },
    h('label', { for: id, class: 'visually-hidden' }, `Weight of ${member.name || member.address}`), c.weight, submit,
    h('div', { class: 'error', id: `${id}-error` }));
  c.weight.setAttribute('aria-describedby', `${id}-error`);
  onSubmit(form, { controls: c, submit, formError: h('div') }, async () => {
    await request(path, { method: 'PATCH', body: { weight: Number(c.weight.value) } });
    toast(`Weight of ${member.name || member.address} set to ${c.weight.value}.`);
    await done();
  });
  return form;
}

/** `busy`: a change is in flight (the API refuses another until it is realised): the actions wait. */
function membersTable(base, pool, members, { canWrite, busy }, reload) {
  const path = (m) => `${base}/pools/${pool.id}/members/${m.id}`;
  const label = (m) => m.name || `${m.address}:${m.protocol_port}`;
  const drain = (m) => attempt(() => request(path(m), { method: 'PATCH', body: { drain: !m.drain } }),
    m.drain ? `${label(m)} takes new connections again.` : `${label(m)} is draining.`).then(reload);
  const remove = async (m) => {
    if (!(await confirmDialog(`Remove ${label(m)}?`, `Pool ${pool.name || pool.id} stops sending it connections.`, { confirm: 'Remove', danger: true }))) return;
    await attempt(() => request(path(m), { method: 'DELETE' }), `${label(m)} removed.`);
    await reload();
  };
  return table([
    { label: 'Member', cell: (m) => h('span', {}, m.name ? h('strong', {}, m.name) : null, ' ', h('code', {}, `${m.address}:${m.protocol_port}`)) },
    { label: 'Operating', cell: (m) => statusBadge(m.operating_status) },
    { label: 'Weight', cell: (m) => (canWrite ? weightForm(path(m), m, busy, reload) : String(m.weight)) },
    { label: 'Role', cell: (m) => [m.backup ? 'backup' : 'active', m.drain ? 'draining' : null, m.admin_state_up ? null : 'disabled'].filter(Boolean).join(', ') },
    ...(canWrite ? [{
      label: 'Actions',
      cell: (m) => h('div', { class: 'row-actions' },
        h('button', { type: 'button', disabled: busy, 'aria-label': `${m.drain ? 'Undrain' : 'Drain'} ${label(m)}`, onclick: () => drain(m) }, m.drain ? 'Undrain' : 'Drain'),
        h('button', { type: 'button', class: 'danger', disabled: busy, 'aria-label': `Remove ${label(m)}`, onclick: () => remove(m) }, 'Remove')),
    }] : []),
  ], members, { caption: `Members of ${pool.name || pool.id}`, empty: 'No members yet.', rowAttrs: (m) => ({ 'data-member': m.address }) });
}

function detailList(lb) {
  return h('dl', { class: 'kv', 'data-testid': 'lb-details' }, [
    ['ID', h('code', {}, lb.id)],
    ['VIP', h('code', {}, lb.vip_address)],
    ['Floating IP', lb.floating_ip ? h('code', {}, lb.floating_ip) : '–'],
    ['Provisioning', statusBadge(lb.provisioning_status)],
    ['Operating', statusBadge(lb.operating_status)],
    ['Topology', lb.topology],
    ['Task', lb.task_id ? link(`#/tasks/${lb.task_id}`, lb.task_id) : '–'],
    ['Created', timeEl(lb.created_at)],
  ].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

registerPage({
  path: '/loadbalancers/:id',
  title: 'Load balancer',
  permission: 'loadbalancer:read',
  async render(ctx) {
    let lb = await get(`${BASE}/${encodeURIComponent(ctx.params.id)}`, { signal: ctx.signal });
    const base = `${BASE}/${lb.id}`;
    document.title = `${lb.name} · NovaCron`;
    const canWrite = ctx.can('loadbalancer:write');
    const vms = canWrite && ctx.can('vm:read') ? await listAll('/v1/vms', { sort: 'name' }) : [];
    const detailBox = h('div', { 'aria-live': 'polite' });
    const listenerBox = h('div');
    const poolBox = h('div', { 'aria-live': 'polite' });
    const forms = h('div', { class: 'grid' });
    let poolKey = null;

    const load = async () => {
      const [fresh, listeners, pools] = await Promise.all([get(base), listAll(`${base}/listeners`), listAll(`${base}/pools`)]);
      lb = fresh;
      const members = await Promise.all(pools.map((p) => listAll(`${base}/pools/${p.id}/members`)));
      const poolName = Object.fromEntries(pools.map((p) => [p.id, p.name || p.id]));
      clear(detailBox, detailList(lb));
      clear(listenerBox, table([
        { label: 'Listener', cell: (li) => `${li.name || '–'} · ${li.protocol}:${li.protocol_port}` },
        { label: 'Default pool', cell: (li) => (li.default_pool_id ? poolName[li.default_pool_id] : 'none') },
        { label: 'Connection limit', cell: (li) => (li.connection_limit ? String(li.connection_limit) : 'none') },
        { label: 'Operating', cell: (li) => statusBadge(li.operating_status) },
        ...(canWrite ? [{
          label: 'Remove',
          cell: (li) => h('button', { type: 'button', class: 'danger', disabled: pending(lb), 'aria-label': `Remove listener ${li.protocol_port}`, onclick: () => removeChild(`listeners/${li.id}`, `listener ${li.protocol}:${li.protocol_port}`) }, 'Remove'),
        }] : []),
      ], listeners, { caption: `Listeners of ${lb.name}`, empty: 'No listeners yet.', rowAttrs: (li) => ({ 'data-listener': li.protocol_port }) }));
      clear(poolBox, pools.length ? pools.map((p, i) => h('section', { class: 'stack', 'data-pool': p.name || p.id, 'aria-label': `Pool ${poolName[p.id]}` },
        h('h3', {}, `Pool ${poolName[p.id]} `, statusBadge(p.operating_status)),
        h('p', { class: 'muted' }, [p.protocol, p.lb_algorithm, p.session_persistence ? `persistence ${p.session_persistence.type}` : null,
          p.healthmonitor ? `${p.healthmonitor.type} health monitor` : 'no health monitor'].filter(Boolean).join(' · ')),
        membersTable(base, p, members[i], { canWrite, busy: pending(lb) }, load),
        canWrite ? h('button', { type: 'button', class: 'danger', disabled: pending(lb), 'aria-label': `Delete pool ${poolName[p.id]}`, onclick: () => removeChild(`pools/${p.id}`, `pool ${poolName[p.id]}`) }, 'Delete pool') : null))
        : h('p', { class: 'empty' }, 'No pools yet.'));
      // the forms only change with the set of pools, so a form being filled in survives a refresh
      const key = pools.map((p) => `${p.id}:${p.name}`).join(',');
      if (canWrite && key !== poolKey) {
        poolKey = key;
        clear(forms, card('Add a pool', poolForm(base, load)), card('Add a listener', listenerForm(base, pools, load)),
          pools.length ? card('Add a member', memberForm(base, pools, vms, load)) : null);
      }
    };
    const removeChild = async (path, what) => {
      if (!(await confirmDialog(`Delete ${what}?`, `${lb.name} stops using it.`, { confirm: 'Delete', danger: true }))) return;
      await attempt(() => request(`${base}/${path}`, { method: 'DELETE' }), `${what[0].toUpperCase()}${what.slice(1)} deleted.`);
      await load();
    };
    const remove = async () => {
      const message = `Its listeners, pools and members go with it, and ${lb.vip_address} is released.`;
      if (!(await confirmDialog(`Delete ${lb.name}?`, message, { confirm: 'Delete', danger: true }))) return;
      if (await attempt(() => request(base, { method: 'DELETE' }), `Load balancer ${lb.name} is being deleted.`)) ctx.navigate('/loadbalancers');
    };
    clear(ctx.main, h('p', {}, link('#/loadbalancers', '← Load balancers')),
      pageHead(lb.name, canWrite ? h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete') : null),
      card('Details', detailBox), card('Listeners', listenerBox), card('Pools and members', poolBox), canWrite ? forms : null);
    await load();
    follow(ctx, load, () => pending(lb));
  },
});
