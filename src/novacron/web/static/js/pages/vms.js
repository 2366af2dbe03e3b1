// VMs: the list with search and filters, and the create form.

import { listAll, request } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, link, pageHead, table, fmtMB, timeEl, throttle, toast, fmtGiB } from '../ui.js';
import { hostNames, onSubmit } from './common.js';
import { ipCell } from './guest_info.js';
import { nicPicker } from './vm_create_nics.js';

const STATES = ['building', 'running', 'stopped', 'paused', 'migrating', 'error', 'host_down'];

function field(id, label, control, hint) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), control,
    hint ? h('div', { class: 'hint', id: `${id}-hint` }, hint) : null,
    h('div', { class: 'error', id: `${id}-error`, 'aria-live': 'polite' }));
}

registerPage({
  path: '/vms',
  title: 'Virtual machines',
  section: 'Compute',
  permission: 'vm:read',
  order: 10,
  async render(ctx) {
    const { main, query, can } = ctx;
    const search = h('input', { id: 'vm-search', type: 'search', value: query.get('q') || '', placeholder: 'name or id' });
    const state = h('select', { id: 'vm-state' }, h('option', { value: '' }, 'any'),
      STATES.map((s) => h('option', { value: s, selected: query.get('state') === s }, s)));
    const hostSel = h('select', { id: 'vm-host' }, h('option', { value: '' }, 'any'));
    const results = h('div', { 'aria-live': 'polite' });
    clear(main,
      pageHead('Virtual machines', can('vm:create') ? link('#/vms/new', 'Create VM', { class: 'button primary' }) : null),
      h('div', { class: 'card' },
        h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
          field('vm-search', 'Search', search),
          field('vm-state', 'State', state),
          can('host:read') ? field('vm-host', 'Host', hostSel) : null),
        results));

    const hosts = await hostNames(can);
    for (const [id, name] of Object.entries(hosts).sort((a, b) => a[1].localeCompare(b[1]))) {
      hostSel.append(h('option', { value: id, selected: query.get('host') === id }, name));
    }
    let vms = [];
    const draw = () => {
      const q = search.value.trim().toLowerCase();
      const rows = vms.filter((v) => !q || v.name.includes(q) || v.id.startsWith(q));
      clear(results,
        h('p', { class: 'muted' }, `${rows.length} of ${vms.length} shown`),
        table([
          { label: 'Name', cell: (v) => link(`#/vms/${v.id}`, v.name) },
          { label: 'State', cell: (v) => badge(v.state, v.task_state) },
          { label: 'IP', cell: ipCell },
          { label: 'Size', cell: (v) => `${v.vcpus} vCPU · ${fmtMB(v.ram_mb)} · ${fmtGiB(v.disk_gb)}` },
          { label: 'Host', cell: (v) => (v.host_id ? hosts[v.host_id] || v.host_id.slice(0, 8) : '–') },
          { label: 'HA', cell: (v) => (v.ha ? `yes (${v.ha_priority})` : 'no') },
          { label: 'Created', cell: (v) => timeEl(v.created_at) },
        ], rows, { caption: 'Virtual machines', empty: vms.length ? 'No VM matches.' : 'No VMs yet.', rowAttrs: (v) => ({ 'data-vm': v.name }) }));
    };
    const load = async () => {
      const params = { sort: '-created_at' };
      if (state.value) params.state = state.value;
      if (hostSel.value) params.host_id = hostSel.value;
      vms = await listAll('/v1/vms', params);
      draw();
    };
    const sync = () => {
      const p = new URLSearchParams();
      if (search.value) p.set('q', search.value);
      if (state.value) p.set('state', state.value);
      if (hostSel.value) p.set('host', hostSel.value);
      history.replaceState(null, '', `#/vms${p.toString() ? `?${p}` : ''}`);
    };
    search.addEventListener('input', () => { sync(); draw(); });
    state.addEventListener('change', () => { sync(); load(); });
    hostSel.addEventListener('change', () => { sync(); load(); });
    await load();
    const refresh = throttle(() => load().catch(() => {}), 500);
    ctx.onCleanup(subscribe(['vm.*'], refresh));
  },
});

registerPage({
  path: '/vms/new',
  title: 'Create VM',
  permission: 'vm:create',
  async render(ctx) {
    const { main, navigate } = ctx;
    const netRead = ctx.can('network:read');
    const [images, flavors, projects, tenants, networks, groups] = await Promise.all([
      listAll('/v1/images'), listAll('/v1/flavors'), listAll('/v1/projects'),
      ctx.can('tenant:read') ? listAll('/v1/tenants') : [],
      netRead ? listAll('/v1/networks', { sort: 'name' }) : [],
      netRead ? listAll('/v1/security-groups', { sort: 'name' }) : [],
    ]);
    const tenantName = Object.fromEntries(tenants.map((t) => [t.id, t.name]));
    const nics = nicPicker(networks, groups, tenantName);
    const active = images.filter((i) => i.status === 'active');
    const name = h('input', { id: 'f-name', name: 'name', autocomplete: 'off', 'aria-describedby': 'f-name-hint f-name-error' });
    const image = h('select', { id: 'f-image', 'aria-describedby': 'f-image-error' }, h('option', { value: '' }, 'Choose an image'),
      active.map((i) => h('option', { value: i.name }, `${i.name} (${i.disk_format || '?'}${i.public ? ', public' : ''})`)));
    const flavor = h('select', { id: 'f-flavor', 'aria-describedby': 'f-flavor-error' }, h('option', { value: '' }, 'Choose a flavor'),
      flavors.map((f) => h('option', { value: f.name }, `${f.name}: ${f.vcpus} vCPU, ${fmtMB(f.ram_mb)}, ${fmtGiB(f.disk_gb)}`)));
    const project = h('select', { id: 'f-project', 'aria-describedby': 'f-project-error' },
      projects.map((p) => h('option', { value: p.id }, tenantName[p.tenant_id] ? `${tenantName[p.tenant_id]} / ${p.name}` : p.name)));
    const userData = h('textarea', { id: 'f-user_data', spellcheck: false, 'aria-describedby': 'f-user_data-hint f-user_data-error' });
    const ha = h('input', { id: 'f-ha', type: 'checkbox' });
    const formError = h('div', { role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Create');
    const inputs = { name, image, flavor, project_id: project, user_data: userData, ha, networks: nics.control };
    const form = h('form', { class: 'card', novalidate: true },
      formError,
      field('f-name', 'Name', name, 'Lower-case letters, digits and dashes; also the hostname.'),
      field('f-image', 'Image', image),
      field('f-flavor', 'Flavor', flavor),
      field('f-project', 'Project', project),
      field('f-user_data', 'User data', userData, 'cloud-init user-data (a #! script runs at boot).'),
      h('div', { class: 'field' }, h('label', { class: 'check', for: 'f-ha' }, ha, 'Restart on another host when its host fails (HA)'),
        h('div', { class: 'error', id: 'f-ha-error' })),
      netRead ? nics.element : null,
      submit);
    clear(main, pageHead('Create VM'), form);
    name.focus();

    onSubmit(form, { controls: inputs, submit, formError }, async () => {
      const body = { name: name.value.trim(), image: image.value, flavor: flavor.value, user_data: userData.value, ha: ha.checked };
      if (project.value) body.project_id = project.value;
      const nets = nics.body();
      if (nets) body.networks = nets;
      const { data } = await request('/v1/vms', { method: 'POST', body, idempotent: true });
      toast(`VM ${data.vm.name} is being created.`);
      navigate(`/vms/${data.vm.id}`);
    });
  },
});
