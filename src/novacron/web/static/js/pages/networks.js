// Networking: networks with their subnets (add, delete) and ports. Routers and floating IPs are in
// routers.js, security groups in security_groups.js. The API scopes everything by tenant.

import { get, listAll, post, refuseInvalid, request } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, card, confirmDialog, link, pageHead, table, throttle, timeEl, toast } from '../ui.js';
import { checkField, field, onSubmit } from './common.js';

const csv = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

export function fixedIps(port) {
  return port.fixed_ips.map((f) => f.ip).join(', ') || '–';
}

/** [[id, 'tenant / project'], ...] of the projects the caller sees, for a form's Project field. */
export async function projectOptions(ctx) {
  const [projects, tenants] = await Promise.all([
    listAll('/v1/projects', { sort: 'name' }),
    ctx.can('tenant:read') ? listAll('/v1/tenants') : [],
  ]);
  const tenantName = Object.fromEntries(tenants.map((t) => [t.id, t.name]));
  return projects.map((p) => [p.id, tenantName[p.tenant_id] ? `${tenantName[p.tenant_id]} / ${p.name}` : p.name]);
}

/**
 * The network + subnet form. Two API calls: when the subnet is refused the new network is deleted
 * again, so a refused form leaves nothing behind, and the subnet's errors show next to its fields.
 */
function networkForm(projects, done) {
  const c = {
    name: h('input', { id: 'net-name', autocomplete: 'off' }),
    mtu: h('input', { id: 'net-mtu', type: 'number', value: '1450', inputmode: 'numeric' }),
    project_id: h('select', { id: 'net-project' }, projects.map(([v, t]) => h('option', { value: v }, t))),
  };
  const s = {
    name: h('input', { id: 'sub-name', autocomplete: 'off', value: '' }),
    cidr: h('input', { id: 'sub-cidr', autocomplete: 'off', placeholder: '10.0.0.0/24' }),
    gateway_ip: h('input', { id: 'sub-gateway', autocomplete: 'off' }),
    dns_servers: h('input', { id: 'sub-dns', autocomplete: 'off' }),
    dhcp: h('input', { id: 'sub-dhcp', type: 'checkbox', checked: true }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create network');
  const form = h('form', { novalidate: true, 'aria-label': 'New network' }, formError,
    field('net-name', 'Network name', c.name, 'Letters, digits, . _ -'),
    field('net-mtu', 'MTU', c.mtu, 'The guests\' MTU; VXLAN adds 50 bytes.'),
    projects.length > 1 ? field('net-project', 'Project', c.project_id) : null,
    h('fieldset', {}, h('legend', {}, 'First subnet (optional)'),
      field('sub-name', 'Subnet name', s.name, 'Default: the network name with -subnet.'),
      field('sub-cidr', 'CIDR', s.cidr, 'e.g. 10.0.0.0/24 or fd00::/64; empty: no subnet yet.'),
      field('sub-gateway', 'Gateway', s.gateway_ip, 'Default: the first usable address.'),
      field('sub-dns', 'DNS servers', s.dns_servers, 'Comma-separated addresses.'),
      checkField('sub-dhcp', 'DHCP', s.dhcp)),
    submit);
  onSubmit(form, { controls: [c, s], submit, formError }, async (errorsTo) => {
    const body = { name: c.name.value.trim(), mtu: Number(c.mtu.value) };
    if (projects.length > 1 && c.project_id.value) body.project_id = c.project_id.value;
    const sub = s.cidr.value.trim() ? {
      name: s.name.value.trim() || `${body.name}-subnet`, cidr: s.cidr.value.trim(),
      dns_servers: csv(s.dns_servers.value), dhcp: s.dhcp.checked,
    } : null;
    if (sub && s.gateway_ip.value.trim()) sub.gateway_ip = s.gateway_ip.value.trim();
    if (sub) {
      // the subnet's schema checks before the network is made (its id stands in as "new")
      errorsTo(s);
      await refuseInvalid('POST', '/v1/subnets', { ...sub, network: 'new' });
      errorsTo(c);
    }
    const net = await post('/v1/networks', body, { idempotent: true });
    if (sub) {
      sub.network = net.id;
      errorsTo(s);
      try {
        await post('/v1/subnets', sub, { idempotent: true });
      } catch (err) {
        // no half-created network: the subnet was part of the request
        await request(`/v1/networks/${net.id}`, { method: 'DELETE' }).catch(() => {});
        throw err;
      }
    }
    form.reset();
    toast(`Network ${net.name} created.`);
    await done(net);
  });
  return form;
}

registerPage({
  path: '/networks',
  title: 'Networks',
  section: 'Network',
  permission: 'network:read',
  order: 10,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const load = async () => {
      const [nets, subnets] = await Promise.all([listAll('/v1/networks', { sort: 'name' }), listAll('/v1/subnets')]);
      const byNet = {};
      for (const s of subnets) (byNet[s.network_id] ||= []).push(s);
      clear(box, table([
        { label: 'Name', cell: (n) => link(`#/networks/${n.id}`, n.name) },
        { label: 'Subnets', cell: (n) => (byNet[n.id] || []).map((s) => `${s.cidr}`).join(', ') || 'none' },
        { label: 'VNI', cell: (n) => String(n.vni) },
        { label: 'MTU', cell: (n) => String(n.mtu) },
        { label: 'Kind', cell: (n) => [n.external ? 'external' : 'tenant', n.shared ? 'shared' : null].filter(Boolean).join(', ') },
        { label: 'Created', cell: (n) => timeEl(n.created_at) },
      ], nets, { caption: 'Networks', empty: 'No networks yet.', rowAttrs: (n) => ({ 'data-network': n.name }) }));
    };
    const projects = ctx.can('network:write') ? await projectOptions(ctx) : [];
    clear(ctx.main, pageHead('Networks'), h('div', { class: 'grid' }, card(null, box),
      ctx.can('network:write') ? card('New network', networkForm(projects, load)) : null));
    await load();
    ctx.onCleanup(subscribe(['network.*', 'subnet.*'], throttle(() => load().catch(() => {}), 500)));
  },
});

/** Add a subnet to an existing network; the API's reasons show next to the fields they name. */
function subnetForm(net, done) {
  const c = {
    name: h('input', { id: 'nsub-name', autocomplete: 'off' }),
    cidr: h('input', { id: 'nsub-cidr', autocomplete: 'off', placeholder: '10.1.0.0/24' }),
    gateway_ip: h('input', { id: 'nsub-gateway', autocomplete: 'off' }),
    dns_servers: h('input', { id: 'nsub-dns', autocomplete: 'off' }),
    dhcp: h('input', { id: 'nsub-dhcp', type: 'checkbox', checked: true }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add subnet');
  const form = h('form', { novalidate: true, 'aria-label': 'Add a subnet' }, formError,
    field('nsub-name', 'Name', c.name, 'Letters, digits, . _ -'),
    field('nsub-cidr', 'CIDR', c.cidr, 'e.g. 10.1.0.0/24 or fd00:1::/64'),
    field('nsub-gateway', 'Gateway', c.gateway_ip, 'Default: the first usable address.'),
    field('nsub-dns', 'DNS servers', c.dns_servers, 'Comma-separated addresses.'),
    checkField('nsub-dhcp', 'DHCP', c.dhcp),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = {
      network: net.id, name: c.name.value.trim(), cidr: c.cidr.value.trim(),
      dns_servers: csv(c.dns_servers.value), dhcp: c.dhcp.checked,
    };
    if (c.gateway_ip.value.trim()) body.gateway_ip = c.gateway_ip.value.trim();
    const sub = await post('/v1/subnets', body, { idempotent: true });
    form.reset();
    toast(`Subnet ${sub.name} (${sub.cidr}) added.`);
    await done();
  });
  return form;
}

registerPage({
  path: '/networks/:id',
  title: 'Network',
  permission: 'network:read',
  async render(ctx) {
    const net = await get(`/v1/networks/${encodeURIComponent(ctx.params.id)}`, { signal: ctx.signal });
    document.title = `${net.name} · NovaCron`;
    const canWrite = ctx.can('network:write');
    const subnetBox = h('div', { 'aria-live': 'polite' });
    const portBox = h('div');
    const remove = async () => {
      if (!(await confirmDialog(`Delete ${net.name}?`, 'The network and its subnets are deleted.', { confirm: 'Delete', danger: true }))) return;
      try {
        await request(`/v1/networks/${net.id}`, { method: 'DELETE' });
        toast(`Network ${net.name} deleted.`);
        ctx.navigate('/networks');
      } catch (err) { toast(err.message, 'bad'); }
    };
    const removeSubnet = async (s) => {
      if (!(await confirmDialog(`Delete subnet ${s.name}?`, `${s.cidr} is removed from ${net.name}; the API refuses while ports hold addresses in it.`, { confirm: 'Delete subnet', danger: true }))) return;
      try {
        await request(`/v1/subnets/${s.id}`, { method: 'DELETE' });
        toast(`Subnet ${s.name} deleted.`);
      } catch (err) { toast(err.message, 'bad'); }
      await load();
    };
    const load = async () => {
      const [subnets, ports] = await Promise.all([
        listAll('/v1/subnets', { network_id: net.id }), listAll('/v1/ports', { network_id: net.id }),
      ]);
      clear(subnetBox, table([
        { label: 'Name', cell: (s) => h('strong', {}, s.name) },
        { label: 'CIDR', cell: (s) => h('code', {}, s.cidr) },
        { label: 'Gateway', cell: (s) => s.gateway_ip || 'none' },
        { label: 'Pools', cell: (s) => s.allocation_pools.map((p) => `${p.start}–${p.end}`).join(', ') },
        { label: 'DNS', cell: (s) => s.dns_servers.join(', ') || '–' },
        { label: 'DHCP', cell: (s) => (s.dhcp ? 'on' : 'off') },
        { label: 'Used IPs', cell: (s) => (s.used_ips === null ? '–' : String(s.used_ips)) },
        ...(canWrite ? [{
          label: 'Delete',
          cell: (s) => h('button', { type: 'button', class: 'danger', 'aria-label': `Delete subnet ${s.name} (${s.cidr})`, onclick: () => removeSubnet(s) }, 'Delete'),
        }] : []),
      ], subnets, { caption: 'Subnets', empty: 'No subnets.', rowAttrs: (s) => ({ 'data-subnet': s.name }) }));
      clear(portBox, portTable(ports));
    };
    clear(ctx.main, h('p', {}, link('#/networks', '← Networks')),
      pageHead(net.name, canWrite ? h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete') : null),
      card('Details', h('dl', { class: 'kv' }, [
        ['ID', h('code', {}, net.id)], ['VNI', String(net.vni)], ['MTU', String(net.mtu)],
        ['External', net.external ? `yes${net.physical_interface ? ` (${net.physical_interface})` : ''}` : 'no'],
        ['Shared', net.shared ? 'yes' : 'no'], ['Project', h('code', {}, net.project_id)], ['Created', timeEl(net.created_at)],
      ].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
      card('Subnets', subnetBox),
      canWrite ? card('Add a subnet', subnetForm(net, load)) : null,
      card('Ports', portBox));
    await load();
    const reload = throttle(() => load().catch(() => {}), 500);
    ctx.onCleanup(subscribe(['subnet.*', 'port.*'], reload));
  },
});

export function portTable(ports, empty = 'No ports.') {
  return table([
    { label: 'Port', cell: (p) => h('code', {}, p.name || p.id) },
    { label: 'Owner', cell: (p) => (p.vm_id ? link(`#/vms/${p.vm_id}`, `VM ${p.vm_id.slice(0, 11)}`) : p.owner) },
    { label: 'Network', cell: (p) => link(`#/networks/${p.network_id}`, p.network_id.slice(0, 12)) },
    { label: 'MAC', cell: (p) => h('code', {}, p.mac) },
    { label: 'Addresses', cell: (p) => fixedIps(p) },
    { label: 'Security groups', cell: (p) => (p.port_security ? h('span', {}, p.security_groups.map((g) => [link(`#/security-groups/${g}`, g.slice(0, 12)), ' '])) : 'port security off') },
  ], ports, { caption: 'Ports', empty });
}
