// Overview: cluster capacity, VMs by state, recent events and the tasks running now.

import { get, listAll } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, card, meter, progress, pageHead, fmtMB, tone, STATE_COLORS, throttle, badge } from '../ui.js';
import { activeTasks, eventLine, taskLine } from './common.js';

// tenant roles get a capacity summary of shared hosts (free room in 25 % steps), not allocations
function summary(hosts) {
  const up = hosts.filter((x) => x.state === 'up');
  return card('Cluster capacity',
    h('p', { class: 'muted' }, `${up.length} of ${hosts.length} hosts up`),
    hosts.slice(0, 12).map((x) => h('div', {},
      h('h3', { class: 'muted', style: { fontSize: '.9rem', margin: '.6rem 0 .2rem' } }, x.name, ' ', badge(x.state)),
      progress(`${x.name} vCPUs free`, x.vcpus_free_percent),
      progress(`${x.name} RAM free`, x.ram_free_percent))));
}

function capacity(hosts) {
  if (hosts.length && hosts[0].vcpus_used === undefined) return summary(hosts);
  const up = hosts.filter((x) => x.state === 'up');
  const sum = (f) => up.reduce((a, x) => a + f(x), 0);
  return card('Cluster capacity',
    h('p', { class: 'muted' }, `${up.length} of ${hosts.length} hosts up`),
    meter('vCPUs allocated', sum((x) => x.vcpus_used), sum((x) => Math.floor(x.cpus * x.cpu_allocation_ratio))),
    meter('RAM allocated', sum((x) => x.ram_mb_used), sum((x) => Math.floor(x.ram_mb * x.ram_allocation_ratio)), fmtMB),
    hosts.slice(0, 12).map((x) => h('div', {},
      h('h3', { class: 'muted', style: { fontSize: '.9rem', margin: '.6rem 0 .2rem' } }, x.name, ' ', badge(x.state)),
      meter(`${x.name} vCPUs`, x.vcpus_used, Math.floor(x.cpus * x.cpu_allocation_ratio)),
      meter(`${x.name} RAM`, x.ram_mb_used, Math.floor(x.ram_mb * x.ram_allocation_ratio), fmtMB))));
}

function vmsByState(vms) {
  const counts = {};
  for (const vm of vms) counts[vm.state] = (counts[vm.state] || 0) + 1;
  const states = Object.keys(counts).sort();
  const total = vms.length;
  return card('VMs by state',
    h('p', {}, h('a', { href: '#/vms' }, `${total} VM${total === 1 ? '' : 's'}`)),
    total ? h('div', { class: 'statbar', role: 'img', 'aria-label': states.map((s) => `${s}: ${counts[s]}`).join(', ') },
      states.map((s) => h('span', { style: { width: `${(100 * counts[s]) / total}%`, background: STATE_COLORS[tone(s)] } }))) : null,
    h('ul', { class: 'legend' }, states.map((s) => h('li', {},
      h('i', { style: { background: STATE_COLORS[tone(s)] } }),
      h('a', { href: `#/vms?state=${encodeURIComponent(s)}` }, `${s}: ${counts[s]}`)))));
}

registerPage({
  path: '/',
  title: 'Overview',
  section: 'Compute',
  order: 0,
  async render(ctx) {
    const { main, can } = ctx;
    clear(main, pageHead('Overview'));
    const top = h('div', { class: 'grid' });
    const eventsList = h('ul', { class: 'events', 'aria-label': 'Recent events' });
    const tasksList = h('ul', { class: 'events', 'aria-label': 'Running tasks' });
    main.append(top, h('div', { class: 'grid' },
      card('Running tasks', tasksList), card('Recent events', eventsList)));

    const loadTop = async () => {
      const [hosts, vms] = await Promise.all([
        can('host:read') ? listAll('/v1/hosts') : [],
        listAll('/v1/vms'),
      ]);
      clear(top, can('host:read') ? capacity(hosts) : null, vmsByState(vms));
    };
    const loadTasks = async () => {
      const tasks = await activeTasks();
      clear(tasksList, tasks.length ? tasks.map(taskLine) : h('li', { class: 'muted' }, 'No task is running.'));
    };
    const page = await get('/v1/events?tail=true&limit=15');
    clear(eventsList, page.items.slice().reverse().map(eventLine));
    if (!page.items.length) eventsList.append(h('li', { class: 'muted' }, 'No events yet.'));
    await Promise.all([loadTop(), loadTasks()]);

    const refreshTop = throttle(() => loadTop().catch(() => {}), 700);
    const refreshTasks = throttle(() => loadTasks().catch(() => {}), 400);
    const shown = Math.max(0, ...page.items.map((e) => e.seq));
    ctx.onCleanup(subscribe(['*'], (e) => {
      if (e.seq <= shown) return; // already in the list loaded above
      eventsList.querySelector('li.muted')?.remove();
      eventsList.prepend(eventLine(e));
      while (eventsList.children.length > 15) eventsList.lastChild.remove();
      if (e.type.startsWith('task.')) refreshTasks();
      if (e.type.startsWith('vm.') || e.type.startsWith('host.')) refreshTop();
    }));
  },
});
