// A VM's serial console on a page of its own (#/vms/<id>/console): opened at once, as tall as the
// window, with Full screen, Disconnect and Reconnect; the VM page links here. xterm.js loads with
// this page (vm_console.js), not with the shell.

import { get } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, link, pageHead } from '../ui.js';

registerPage({
  path: '/vms/:id/console',
  title: 'Serial console',
  permission: 'vm:read',
  async render(ctx) {
    const { main, params, can, signal } = ctx;
    const vm = await get(`/v1/vms/${encodeURIComponent(params.id)}`, { signal });
    document.title = `${vm.name} console · NovaCron`;
    const box = h('div', { class: 'stack console-page' });
    clear(main, pageHead(`${vm.name}: serial console`, link(`#/vms/${vm.id}`, `Back to ${vm.name}`)), box);
    const { consolePanel } = await import('./vm_console.js');
    consolePanel(ctx, box, vm.id, { allowed: can('vm:console'), autoOpen: true });
  },
});
