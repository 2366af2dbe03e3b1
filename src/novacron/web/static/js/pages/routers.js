// Routers (list, create, and one router's interfaces and gateway) and floating IPs (allocate,
// associate, disassociate, release). Split from networks.js to keep each module small.

import { listAll, post, request } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, link, pageHead, table, throttle, timeEl, toast } from '../ui.js';
import { checkField, field, onSubmit } from './common.js';
import { projectOptions } from './networks.js';

const options = (pairs, empty) => [empty ? h('option', { value: '' }, empty) : null, pairs.map(([v, t]) => h('option', { value: v }, t))];

/** A destructive call behind a confirmation; the API's refusal becomes a toast. Resolves true when done. */
async function confirmed(title, message, confirm, call) {
  if (!(await confirmDialog(title, message, { confirm, danger: true }))) return false;
  try {
    await call();
    return true;
  } catch (err) {
    toast(err.message, 'bad');
    return false;
  }
}

function routerForm(projects, externals, done) {
  const c = {
    name: h('input', { id: 'rt-name', autocomplete: 'off' }),
    external_network: h('select', { id: 'rt-gateway' }, options(externals.map((n) => [n.id, n.name]), 'none (internal only)')),
    snat: h('input', { id: 'rt-snat', type: 'checkbox', checked: true }),
    project_id: h('select', { id: 'rt-project' }, options(projects)),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create router');
  const form = h('form', { novalidate: true, 'aria-label': 'New router' }, formError,
    field('rt-name', 'Name', c.name, 'Letters, digits, . _ -'),
    field('rt-gateway', 'Gateway network', c.external_network, 'An external network to route out through.'),
    checkField('rt-snat', 'SNAT (VMs without a floating IP reach out through the gateway address)', c.snat),
    projects.length > 1 ? field('rt-project', 'Project', c.project_id) : null,
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { name: c.name.value.trim(), snat: c.snat.checked };
    if (c.external_network.value) body.external_network = c.external_network.value;
    if (projects.length > 1) body.project_id = c.project_id.value;
    const r = await post('/v1/routers', body, { idempotent: true });
    toast(`Router ${r.name} created.`);
    form.reset();
    await done();
  });
  return form;
}

registerPage({
  path: '/routers',
  title: 'Routers',
  section: 'Network',
  permission: 'network:read',
  order: 30,
  async render(ctx) {
    const nets = await listAll('/v1/networks');
    const netName = Object.fromEntries(nets.map((n) => [n.id, n.name]));
    const box = h('div', { 'aria-live': 'polite' });
    const load = async () => {
      const routers = await listAll('/v1/routers', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (r) => link(`#/routers/${r.id}`, r.name) },
        // a router without a gateway only joins its subnets; with one it also routes out (SNAT or not)
        { label: 'State', cell: (r) => badge(r.external_network_id ? 'active' : 'internal', r.external_network_id ? (r.snat ? 'SNAT' : 'no SNAT') : 'no gateway') },
        { label: 'Gateway', cell: (r) => (r.external_network_id ? `${netName[r.external_network_id] || r.external_network_id} · ${r.external_ip || '–'}` : '–') },
        { label: 'Interfaces', cell: (r) => (r.interfaces.length ? h('ul', { class: 'plain' }, r.interfaces.map((i) => h('li', {}, `${i.ip} on `, link(`#/networks/${i.network_id}`, netName[i.network_id] || i.network_id)))) : 'none') },
        { label: 'Created', cell: (r) => timeEl(r.created_at) },
      ], routers, { caption: 'Routers', empty: 'No routers yet.', rowAttrs: (r) => ({ 'data-router': r.name }) }));
    };
    const projects = ctx.can('network:write') ? await projectOptions(ctx) : [];
    clear(ctx.main, pageHead('Routers'), h('div', { class: 'grid' }, card(null, box),
      ctx.can('network:write') ? card('New router', routerForm(projects, nets.filter((n) => n.external), load)) : null));
    await load();
    ctx.onCleanup(subscribe(['router.*'], throttle(() => load().catch(() => {}), 500)));
  },
});

/** Add an interface: one of the caller's subnets on a tenant network (external ones are gateways). */
function interfaceForm(router, subnets, done) {
  const c = { subnet: h('select', { id: 'rif-subnet' }, options(subnets)) };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add interface');
  const form = h('form', { novalidate: true, 'aria-label': 'Add an interface' }, formError,
    field('rif-subnet', 'Subnet', c.subnet, 'The router takes the subnet\'s gateway address.'), submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const r = await request(`/v1/routers/${router().id}/interfaces`, { method: 'POST', body: { subnet: c.subnet.value }, ifMatch: router().etag });
    toast(`Interface on ${c.subnet.selectedOptions[0]?.textContent || 'the subnet'} added.`);
    await done(r.data);
  });
  return form;
}

function gatewayForm(router, externals, done) {
  const c = {
    network: h('select', { id: 'rgw-network' }, options(externals.map((n) => [n.id, n.name]))),
    snat: h('input', { id: 'rgw-snat', type: 'checkbox', checked: router().snat }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Set gateway');
  const form = h('form', { novalidate: true, 'aria-label': 'Set the gateway' }, formError,
    field('rgw-network', 'External network', c.network),
    checkField('rgw-snat', 'SNAT', c.snat), submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const r = await request(`/v1/routers/${router().id}/gateway`, {
      method: 'PUT', body: { network: c.network.value, snat: c.snat.checked }, ifMatch: router().etag,
    });
    toast('Gateway set.');
    await done(r.data);
  });
  return form;
}

registerPage({
  path: '/routers/:id',
  title: 'Router',
  permission: 'network:read',
  async render(ctx) {
    const first = await request(`/v1/routers/${encodeURIComponent(ctx.params.id)}`, { signal: ctx.signal });
    // the etag goes with each change, so a change made from a stale copy is refused (412)
    let router = { ...first.data, etag: first.etag };
    document.title = `${router.name} · NovaCron`;
    const canWrite = ctx.can('network:write');
    const [nets, subnets] = await Promise.all([listAll('/v1/networks', { sort: 'name' }), listAll('/v1/subnets', { sort: 'name' })]);
    const netName = Object.fromEntries(nets.map((n) => [n.id, n.name]));
    const external = new Set(nets.filter((n) => n.external).map((n) => n.id));
    const subnetOf = Object.fromEntries(subnets.map((s) => [`${s.network_id} ${s.gateway_ip}`, s]));
    const tenantSubnets = subnets.filter((s) => !external.has(s.network_id) && s.gateway_ip)
      .map((s) => [s.id, `${netName[s.network_id] || s.network_id} / ${s.name} (${s.cidr})`]);
    const detailBox = h('div');
    const ifBox = h('div', { 'aria-live': 'polite' });
    const gwActions = h('div');

    const load = async () => {
      const r = await request(`/v1/routers/${router.id}`);
      router = { ...r.data, etag: r.etag };
      draw();
    };
    const removeInterface = async (i) => {
      const s = subnetOf[`${i.network_id} ${i.ip}`];
      const ref = s ? s.id : i.ip;
      const done = await confirmed(`Remove the interface ${i.ip}?`,
        `${router.name} stops routing for ${netName[i.network_id] || i.network_id}.`, 'Remove interface',
        () => request(`/v1/routers/${router.id}/interfaces/${encodeURIComponent(ref)}`, { method: 'DELETE' }));
      if (done) toast(`Interface ${i.ip} removed.`);
      await load();
    };
    const clearGateway = async () => {
      const done = await confirmed(`Clear the gateway of ${router.name}?`,
        'Its subnets lose the way out, and floating IPs through it stop working.', 'Clear gateway',
        () => request(`/v1/routers/${router.id}/gateway`, { method: 'DELETE' }));
      if (done) toast('Gateway cleared.');
      await load();
    };
    const remove = async () => {
      const done = await confirmed(`Delete ${router.name}?`, 'Its interfaces and gateway go with it.', 'Delete',
        () => request(`/v1/routers/${router.id}`, { method: 'DELETE', ifMatch: router.etag }));
      if (done) {
        toast(`Router ${router.name} deleted.`);
        ctx.navigate('/routers');
      }
    };
    const draw = () => {
      const gw = router.external_network_id;
      clear(detailBox, h('dl', { class: 'kv', 'data-testid': 'router-details' }, [
        ['ID', h('code', {}, router.id)],
        ['State', badge(gw ? 'active' : 'internal', gw ? (router.snat ? 'SNAT' : 'no SNAT') : 'no gateway')],
        ['Gateway', gw ? `${netName[gw] || gw} · ${router.external_ip || '–'}` : 'none'],
        ['Created', timeEl(router.created_at)],
      ].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
      clear(ifBox, table([
        { label: 'Address', cell: (i) => h('code', {}, i.ip) },
        { label: 'Network', cell: (i) => link(`#/networks/${i.network_id}`, netName[i.network_id] || i.network_id) },
        { label: 'Subnet', cell: (i) => subnetOf[`${i.network_id} ${i.ip}`]?.cidr || '–' },
        ...(canWrite ? [{
          label: 'Remove',
          cell: (i) => h('button', { type: 'button', class: 'danger', 'aria-label': `Remove interface ${i.ip}`, onclick: () => removeInterface(i) }, 'Remove'),
        }] : []),
      ], router.interfaces, { caption: `Interfaces of ${router.name}`, empty: 'No interfaces.', rowAttrs: (i) => ({ 'data-interface': i.ip }) }));
      clear(gwActions, canWrite && gw
        ? h('button', { type: 'button', class: 'danger', onclick: clearGateway }, 'Clear gateway') : null);
    };
    const externals = nets.filter((n) => n.external);
    const after = async (data) => { router = { ...router, ...data }; await load(); };
    clear(ctx.main, h('p', {}, link('#/routers', '← Routers')),
      pageHead(router.name, canWrite ? h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete') : null),
      h('div', { class: 'grid' }, card('Details', detailBox, gwActions), card('Interfaces', ifBox)),
      canWrite ? h('div', { class: 'grid' },
        card('Add an interface', tenantSubnets.length ? interfaceForm(() => router, tenantSubnets, after) : h('p', { class: 'empty' }, 'No subnet with a gateway to join.')),
        card('Gateway', externals.length ? gatewayForm(() => router, externals, after) : h('p', { class: 'empty' }, 'No external network to route out through.'))) : null);
    draw();
    ctx.onCleanup(subscribe(['router.*'], (e) => { if (e.resource_id === router.id) load().catch(() => {}); }));
  },
});

/** [[port id, label]] of the VM ports that can take a floating IP (IPv4, the caller's own). */
function vmPorts(ports, vmName) {
  return ports.filter((p) => p.owner === 'compute' && p.fixed_ips.some((f) => !f.ip.includes(':')))
    .map((p) => [p.id, `${p.vm_id ? vmName[p.vm_id] || p.vm_id : p.name || 'unattached port'} · ${p.fixed_ips.map((f) => f.ip).join(', ')}`]);
}

function allocateForm(externals, ports, done) {
  const c = {
    network: h('select', { id: 'fip-network' }, options(externals.map((n) => [n.id, n.name]))),
    port: h('select', { id: 'fip-port' }, options(ports, 'not yet')),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Allocate');
  const form = h('form', { novalidate: true, 'aria-label': 'Allocate a floating IP' }, formError,
    field('fip-network', 'External network', c.network),
    field('fip-port', 'Associate with', c.port, 'A VM port; its network needs a router with a gateway here.'), submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { network: c.network.value };
    if (c.port.value) body.port = c.port.value;
    const f = await post('/v1/floating-ips', body, { idempotent: true });
    toast(`Floating IP ${f.ip} allocated.`);
    await done();
  });
  return form;
}

function associateForm(fips, ports, done) {
  const c = {
    fip: h('select', { id: 'fipa-fip' }, options(fips.map((f) => [f.id, f.ip]))),
    port: h('select', { id: 'fipa-port' }, options(ports)),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Associate');
  const form = h('form', { novalidate: true, 'aria-label': 'Associate a floating IP' }, formError,
    field('fipa-fip', 'Floating IP', c.fip), field('fipa-port', 'VM port', c.port), submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const { etag } = await request(`/v1/floating-ips/${c.fip.value}`);
    const r = await request(`/v1/floating-ips/${c.fip.value}`, { method: 'PATCH', body: { port: c.port.value }, ifMatch: etag });
    toast(`${r.data.ip} now maps to ${r.data.fixed_ip}.`);
    await done();
  });
  return form;
}

registerPage({
  path: '/floating-ips',
  title: 'Floating IPs',
  section: 'Network',
  permission: 'network:read',
  order: 40,
  async render(ctx) {
    const canWrite = ctx.can('network:write');
    const [nets, vms] = await Promise.all([listAll('/v1/networks'), ctx.can('vm:read') ? listAll('/v1/vms') : []]);
    const netName = Object.fromEntries(nets.map((n) => [n.id, n.name]));
    const vmName = Object.fromEntries(vms.map((v) => [v.id, v.name]));
    const externals = nets.filter((n) => n.external);
    const box = h('div', { 'aria-live': 'polite' });
    const forms = h('div', { class: 'grid' });
    const act = async (title, message, confirm, call, ok) => {
      if (await confirmed(title, message, confirm, call)) toast(ok);
      await load();
    };
    const disassociate = (f) => act(`Disassociate ${f.ip}?`, `${f.ip} stops reaching ${f.fixed_ip || 'its VM'}.`, 'Disassociate',
      async () => {
        const { etag } = await request(`/v1/floating-ips/${f.id}`);
        await request(`/v1/floating-ips/${f.id}`, { method: 'PATCH', body: { port: null }, ifMatch: etag });
      }, `${f.ip} disassociated.`);
    const release = (f) => act(`Release ${f.ip}?`, 'The address goes back to the external network\'s pool; another project may get it.', 'Release',
      () => request(`/v1/floating-ips/${f.id}`, { method: 'DELETE' }), `${f.ip} released.`);
    const load = async () => {
      const [fips, ports] = await Promise.all([listAll('/v1/floating-ips'), listAll('/v1/ports')]);
      const portVm = Object.fromEntries(ports.map((p) => [p.id, p.vm_id]));
      clear(box, table([
        { label: 'Address', cell: (f) => h('code', {}, f.ip) },
        { label: 'State', cell: (f) => badge(f.port_id ? 'associated' : 'unassociated') },
        { label: 'Maps to', cell: (f) => (f.port_id ? h('span', {}, f.fixed_ip || '–', ' ', portVm[f.port_id] ? link(`#/vms/${portVm[f.port_id]}`, vmName[portVm[f.port_id]] || 'VM') : null) : '–') },
        { label: 'Network', cell: (f) => netName[f.network_id] || f.network_id },
        { label: 'Created', cell: (f) => timeEl(f.created_at) },
        ...(canWrite ? [{
          label: 'Actions',
          cell: (f) => h('div', { class: 'row-actions' },
            f.port_id ? h('button', { type: 'button', 'aria-label': `Disassociate ${f.ip}`, onclick: () => disassociate(f) }, 'Disassociate') : null,
            h('button', { type: 'button', class: 'danger', 'aria-label': `Release ${f.ip}`, onclick: () => release(f) }, 'Release')),
        }] : []),
      ], fips, { caption: 'Floating IPs', empty: 'No floating IPs yet.', rowAttrs: (f) => ({ 'data-fip': f.ip }) }));
      if (!canWrite) return;
      const choices = vmPorts(ports, vmName);
      const free = fips.filter((f) => !f.port_id);
      clear(forms,
        card('Allocate', externals.length ? allocateForm(externals, choices, load) : h('p', { class: 'empty' }, 'No external network to allocate from.')),
        free.length && choices.length ? card('Associate', associateForm(free, choices, load)) : null);
    };
    clear(ctx.main, pageHead('Floating IPs'), card(null, box), canWrite ? forms : null);
    await load();
  },
});
