// Images and flavors: what VMs are made from. Images are uploaded from a local file and deleted
// here; flavors are created and deleted by administrators (flavor:write).

import { listAll } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, pageHead, table, fmtBytes, fmtMB, timeEl, throttle, fmtGiB } from '../ui.js';
import { deleteButton } from './actions.js';
import { flavorForm, imageUploadForm } from './catalog_forms.js';
import { templateCell } from './clones.js';

registerPage({
  path: '/images',
  title: 'Images',
  section: 'Compute',
  permission: 'image:read',
  order: 30,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const problems = h('div');
    const canWrite = ctx.can('image:write');
    const load = async () => {
      const images = await listAll('/v1/images', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (i) => h('strong', {}, i.name) },
        { label: 'Status', cell: (i) => badge(i.status) },
        { label: 'Format', cell: (i) => i.disk_format || '–' },
        { label: 'Size', cell: (i) => `${fmtBytes(i.size_bytes)} (virtual ${fmtBytes(i.virtual_size_bytes)})` },
        { label: 'Visibility', cell: (i) => (i.public ? 'public' : 'private') },
        { label: 'Boot', cell: (i) => (i.has_kernel ? `kernel${i.has_initrd ? ' + initrd' : ''}` : 'disk') },
        { label: 'Template', cell: (i) => templateCell(i, ctx.can('image:write'), ctx.can('vm:create')) },
        { label: 'SHA-256', cell: (i) => (i.checksum_sha256 ? h('code', { title: i.checksum_sha256 }, `${i.checksum_sha256.slice(0, 12)}…`) : '–') },
        { label: 'Created', cell: (i) => timeEl(i.created_at) },
        ...(canWrite ? [{
          label: 'Delete',
          cell: (i) => deleteButton({ what: `image ${i.name}`, path: `/v1/images/${i.id}`, problems, done: load, warning: 'VMs made from it keep their disks; no new VM can use it.' }),
        }] : []),
      ], images, { caption: 'Images', empty: 'No images yet: upload one below, or import one with novacron image create.', rowAttrs: (i) => ({ 'data-image': i.name }) }));
    };
    clear(ctx.main, pageHead('Images'), problems, card(null, box),
      canWrite ? card('Upload an image', imageUploadForm(ctx, load)) : null);
    await load();
    ctx.onCleanup(subscribe(['image.*'], throttle(() => load().catch(() => {}), 500)));
  },
});

registerPage({
  path: '/flavors',
  title: 'Flavors',
  section: 'Compute',
  permission: 'flavor:read',
  order: 40,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const problems = h('div');
    const canWrite = ctx.can('flavor:write');
    const load = async () => {
      const flavors = await listAll('/v1/flavors', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (f) => h('strong', {}, f.name) },
        { label: 'vCPUs', cell: (f) => String(f.vcpus) },
        { label: 'RAM', cell: (f) => fmtMB(f.ram_mb) },
        { label: 'Disk', cell: (f) => fmtGiB(f.disk_gb) },
        { label: 'Machine', cell: (f) => [f.hardware.machine, f.hardware.firmware].filter(Boolean).join(', ') || 'default' },
        { label: 'Required traits', cell: (f) => f.required_traits.join(', ') || '–' },
        { label: 'Forbidden traits', cell: (f) => f.forbidden_traits.join(', ') || '–' },
        ...(canWrite ? [{
          label: 'Delete',
          cell: (f) => deleteButton({ what: `flavor ${f.name}`, path: `/v1/flavors/${f.id}`, problems, done: load }),
        }] : []),
      ], flavors, { caption: 'Flavors', empty: 'No flavors yet.', rowAttrs: (f) => ({ 'data-flavor': f.name }) }));
    };
    clear(ctx.main, pageHead('Flavors'), problems, card(null, box),
      canWrite ? card('New flavor', flavorForm(load)) : null);
    await load();
    ctx.onCleanup(subscribe(['flavor.*'], throttle(() => load().catch(() => {}), 500)));
  },
});
