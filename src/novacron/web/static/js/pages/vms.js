// VMs: the create form (the list is vm_list.js, imported first so it keeps its place in the menu).

import './vm_list.js';
import { listAll, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, pageHead, fmtMB, toast, fmtGiB } from '../ui.js';
import { checkField, onSubmit } from './common.js';
import { nicPicker } from './vm_create_nics.js';

function field(id, label, control, hint) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), control,
    hint ? h('div', { class: 'hint', id: `${id}-hint` }, hint) : null,
    h('div', { class: 'error', id: `${id}-error`, 'aria-live': 'polite' }));
}

registerPage({
  path: '/vms/new',
  title: 'Create VM',
  permission: 'vm:create',
  async render(ctx) {
    const { main, navigate } = ctx;
    const netRead = ctx.can('network:read');
    const [images, flavors, projects, tenants, networks, groups, volumes] = await Promise.all([
      listAll('/v1/images'), listAll('/v1/flavors'), listAll('/v1/projects'),
      ctx.can('tenant:read') ? listAll('/v1/tenants') : [],
      netRead ? listAll('/v1/networks', { sort: 'name' }) : [],
      netRead ? listAll('/v1/security-groups', { sort: 'name' }) : [],
      ctx.can('volume:read') ? listAll('/v1/volumes', { sort: 'name' }) : [],
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
    // the API boots from one available volume (its root disk) and attaches others from the first start
    const free = volumes.filter((v) => v.status === 'available' && !v.vm_id);
    const dataBoxes = free.map((v) => h('input', { id: `f-volume-${v.id}`, type: 'checkbox', value: v.id }));
    const dataVolumes = h('fieldset', { id: 'f-volumes', tabindex: '-1', 'aria-describedby': 'f-volumes-error' },
      h('legend', {}, 'Data volumes'),
      free.length ? h('div', { class: 'form-grid' }, dataBoxes.map((b, i) => checkField(b.id, `${free[i].name} (${fmtGiB(free[i].size_gb)})`, b)))
        : h('p', { class: 'hint' }, 'No available volume: make one on the Volumes page.'),
      h('div', { class: 'error', id: 'f-volumes-error' }));
    const bootVolume = h('select', { id: 'f-boot_volume', 'aria-describedby': 'f-boot_volume-hint f-boot_volume-error' },
      h('option', { value: '' }, 'None: a new disk from the image'),
      free.map((v) => h('option', { value: v.id }, `${v.name} (${fmtGiB(v.size_gb)})`)));
    const userData = h('textarea', { id: 'f-user_data', spellcheck: false, 'aria-describedby': 'f-user_data-hint f-user_data-error' });
    const ha = h('input', { id: 'f-ha', type: 'checkbox' });
    const formError = h('div', { role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Create');
    const inputs = { name, image, flavor, boot_volume: bootVolume, project_id: project, user_data: userData, ha, networks: nics.control };
    free.forEach((_, i) => { inputs[`volumes[${i}]`] = dataVolumes; });
    const form = h('form', { class: 'card', novalidate: true },
      formError,
      field('f-name', 'Name', name, 'Lower-case letters, digits and dashes; also the hostname.'),
      field('f-image', 'Image', image),
      field('f-flavor', 'Flavor', flavor),
      ctx.can('volume:read') ? field('f-boot_volume', 'Boot volume', bootVolume,
        'Boot from an available volume instead of a new disk (the image may then be left unchosen).') : null,
      ctx.can('volume:read') ? dataVolumes : null,
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
      if (bootVolume.value) {
        body.boot_volume = bootVolume.value;
        if (!image.value) delete body.image;
      }
      const chosen = dataBoxes.filter((b) => b.checked).map((b) => b.value);
      if (chosen.length) body.volumes = chosen;
      if (project.value) body.project_id = project.value;
      const nets = nics.body();
      if (nets) body.networks = nets;
      const { data } = await request('/v1/vms', { method: 'POST', body, idempotent: true });
      toast(`VM ${data.vm.name} is being created.`);
      navigate(`/vms/${data.vm.id}`);
    });
  },
});
