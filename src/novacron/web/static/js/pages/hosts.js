// Hosts: capacity, maintenance, drain, and the cluster rebalance plan (dry run, then apply).

import { listAll, post, request } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, ago, badge, card, confirmDialog, errorBox, meter, pageHead, table, fmtMB, throttle, toast, agoEl } from '../ui.js';

async function setMaintenance(host, on) {
  const ok = await confirmDialog(on ? `Put ${host.name} in maintenance?` : `Take ${host.name} out of maintenance?`,
    on ? 'It keeps its VMs but gets no new ones.' : 'It gets new VMs again.', { confirm: on ? 'Maintenance on' : 'Maintenance off' });
  if (!ok) return;
  const { etag } = await request(`/v1/hosts/${host.id}`);
  await request(`/v1/hosts/${host.id}`, { method: 'PATCH', body: { state: on ? 'maintenance' : 'up' }, ifMatch: etag });
  toast(`${host.name}: ${on ? 'in maintenance' : 'back in service'}.`);
}

async function drain(host) {
  const ok = await confirmDialog(`Drain ${host.name}?`,
    'The host goes into maintenance and every idle VM on it migrates away (live if running, cold if stopped).',
    { confirm: 'Drain', danger: true });
  if (!ok) return;
  const out = await post(`/v1/hosts/${host.id}/drain`, undefined, { idempotent: true });
  toast(`${host.name}: ${out.task_ids.length} migration(s) started${out.left.length ? `, ${out.left.length} VM(s) left` : ''}.`);
}

function loadBars(label, l) {
  return h('div', {}, meter(`${label} load`, Math.round(100 * l.load), 100, (v) => `${v}%`),
    h('p', { class: 'muted' }, `CPU ${(100 * l.cpu).toFixed(0)}% · vCPU ${(100 * l.vcpu).toFixed(0)}% · RAM ${(100 * l.ram).toFixed(0)}% · ${l.vms} VMs`));
}

function planView(plan, onApply) {
  return h('div', { class: 'stack', 'data-testid': 'rebalance-plan' },
    h('p', {}, `Imbalance ${plan.imbalance_before.toFixed(3)} → ${plan.imbalance_after.toFixed(3)}; `
      + `spread ${plan.spread_before.toFixed(2)} → ${plan.spread_after.toFixed(2)} (threshold ${plan.threshold}).`),
    table([
      { label: 'VM', cell: (m) => h('a', { href: `#/vms/${m.vm}` }, m.vm_name) },
      { label: 'From', cell: (m) => m.from_name },
      { label: 'To', cell: (m) => m.to_name },
      { label: 'Why', cell: (m) => m.reason },
    ], plan.moves, { caption: 'Planned moves', empty: 'Balanced: no move would help.' }),
    h('div', { class: 'grid' }, plan.hosts.map((x) => h('div', {}, h('h3', { style: { fontSize: '.95rem' } }, x.name),
      loadBars('before', x.before), loadBars('after', x.after)))),
    Object.keys(plan.skipped).length
      ? h('p', { class: 'muted' }, `Left alone: ${Object.entries(plan.skipped).map(([k, v]) => `${v} ${k}`).join(', ')}.`) : null,
    plan.moves.length && onApply ? h('button', { type: 'button', class: 'primary', onclick: onApply }, `Apply these ${plan.moves.length} moves`) : null);
}

registerPage({
  path: '/hosts',
  title: 'Hosts',
  section: 'Infrastructure',
  permission: 'host:read',
  order: 10,
  async render(ctx) {
    const { main, can } = ctx;
    const box = h('div');
    const planBox = h('div', { 'aria-live': 'polite' });
    clear(main, pageHead('Hosts'), card(null, box));
    if (can('cluster:rebalance')) {
      const planBtn = h('button', { type: 'button' }, 'Plan a rebalance (dry run)');
      main.append(card('Cluster rebalance', h('p', { class: 'muted' },
        'A dry run plans live migrations that even out CPU, vCPU and RAM load; nothing moves until you apply it.'), planBtn, planBox));
      planBtn.addEventListener('click', async () => {
        planBtn.disabled = true;
        try {
          const plan = await post('/v1/cluster/rebalance', { dry_run: true });
          const apply = async () => {
            if (!(await confirmDialog('Apply the rebalance?', `${plan.moves.length} VM(s) will migrate live.`, { confirm: 'Apply' }))) return;
            try {
              const moves = plan.moves.map((m) => ({ vm: m.vm, from: m.from, to: m.to }));
              const out = await post('/v1/cluster/rebalance', { dry_run: false, moves }, { idempotent: true });
              toast(`${out.task_ids.length} migration(s) started.`);
            } catch (err) { toast(err.message, 'bad'); }
          };
          clear(planBox, planView(plan, apply));
        } catch (err) {
          clear(planBox, errorBox(err));
        } finally { planBtn.disabled = false; }
      });
    }
    const act = (fn) => async () => { try { await fn(); } catch (err) { toast(err.message, 'bad'); } };
    const load = async () => {
      const hosts = await listAll('/v1/hosts', { sort: 'name' });
      clear(box, table([
        { label: 'Host', cell: (x) => h('div', {}, h('strong', {}, x.name), h('div', { class: 'muted' }, [x.driver, x.accelerator, x.cpu_model].filter(Boolean).join(' · '))) },
        { label: 'State', cell: (x) => badge(x.state) },
        // tenant roles get free room in 25 % steps instead of the allocation counters
        { label: 'vCPUs', cell: (x) => (x.vcpus_used === undefined ? `${x.vcpus_free_percent}% free`
          : meter(`${x.name} vCPUs`, x.vcpus_used, Math.floor(x.cpus * x.cpu_allocation_ratio), String, '')) },
        { label: 'RAM', cell: (x) => (x.ram_mb_used === undefined ? `${x.ram_free_percent}% free`
          : meter(`${x.name} RAM`, x.ram_mb_used, Math.floor(x.ram_mb * x.ram_allocation_ratio), fmtMB, '')) },
        { label: 'Heartbeat', cell: (x) => agoEl(x.last_heartbeat) },
        { label: 'Labels', cell: (x) => Object.entries(x.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '–' },
        { label: 'Actions', cell: (x) => h('div', { class: 'actions', style: { display: 'flex', gap: '.4rem', flexWrap: 'wrap' } },
          can('host:write') ? h('button', { type: 'button', onclick: act(() => setMaintenance(x, x.state !== 'maintenance')) },
            x.state === 'maintenance' ? 'End maintenance' : 'Maintenance') : null,
          can('vm:migrate') ? h('button', { type: 'button', onclick: act(() => drain(x)) }, 'Drain') : null,
          h('a', { href: `#/vms?host=${x.id}` }, 'VMs'),
          can('global') ? h('a', { href: `#/hosts/${x.id}/metrics` }, 'Metrics') : null) },
      ], hosts, { caption: 'Hosts', empty: 'No hosts have joined.' }));
    };
    await load();
    ctx.onCleanup(subscribe(['host.*', 'vm.*'], throttle(() => load().catch(() => {}), 1000)));
  },
});
