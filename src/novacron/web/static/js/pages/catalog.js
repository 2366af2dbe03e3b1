// Images and flavors: what VMs are made from.

import { listAll } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, pageHead, table, fmtBytes, fmtMB, timeEl, throttle, fmtGiB } from '../ui.js';

registerPage({
  path: '/images',
  title: 'Images',
  section: 'Compute',
  permission: 'image:read',
  order: 30,
  async render(ctx) {
    const box = h('div');
    clear(ctx.main, pageHead('Images'), card(null, box));
    const load = async () => {
      const images = await listAll('/v1/images', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (i) => h('strong', {}, i.name) },
        { label: 'Status', cell: (i) => badge(i.status) },
        { label: 'Format', cell: (i) => i.disk_format || '–' },
        { label: 'Size', cell: (i) => `${fmtBytes(i.size_bytes)} (virtual ${fmtBytes(i.virtual_size_bytes)})` },
        { label: 'Visibility', cell: (i) => (i.public ? 'public' : 'private') },
        { label: 'Boot', cell: (i) => (i.has_kernel ? `kernel${i.has_initrd ? ' + initrd' : ''}` : 'disk') },
        { label: 'SHA-256', cell: (i) => (i.checksum_sha256 ? h('code', { title: i.checksum_sha256 }, `${i.checksum_sha256.slice(0, 12)}…`) : '–') },
        { label: 'Created', cell: (i) => timeEl(i.created_at) },
      ], images, { caption: 'Images', empty: 'No images yet: import one with novacron image create.' }));
    };
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
    const flavors = await listAll('/v1/flavors', { sort: 'name' });
    clear(ctx.main, pageHead('Flavors'), card(null, table([
      { label: 'Name', cell: (f) => h('strong', {}, f.name) },
      { label: 'vCPUs', cell: (f) => String(f.vcpus) },
      { label: 'RAM', cell: (f) => fmtMB(f.ram_mb) },
      { label: 'Disk', cell: (f) => fmtGiB(f.disk_gb) },
      { label: 'Required traits', cell: (f) => f.required_traits.join(', ') || '–' },
      { label: 'Forbidden traits', cell: (f) => f.forbidden_traits.join(', ') || '–' },
    ], flavors, { caption: 'Flavors' })));
  },
});
