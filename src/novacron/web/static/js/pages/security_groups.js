// Security groups: the list, and one group's rules with an editor (add a rule, remove a rule).

import { get, listAll, post, request } from '../api.js';
import { subscribe } from '../live.js';
import { registerPage } from '../registry.js';
import { h, clear, card, confirmDialog, link, pageHead, table, throttle, timeEl, toast } from '../ui.js';
import { deleteButton } from './actions.js';
import { apiForm, field, onSubmit } from './common.js';

const PROTOCOLS = ['', 'tcp', 'udp', 'icmp', 'icmpv6', 'http', 'tls', 'ssh', 'dns'];

export function ruleText(r) {
  const ports = r.port_min === null ? '' : r.port_min === r.port_max ? ` ${r.port_min}` : ` ${r.port_min}-${r.port_max}`;
  return `${r.protocol || 'any'}${ports}`;
}

function remote(r, groups) {
  if (r.remote_cidr) return r.remote_cidr;
  if (r.remote_group_id) return `group ${groups[r.remote_group_id] || r.remote_group_id}`;
  if (r.remote_labels) return `VMs with ${Object.entries(r.remote_labels).map(([k, v]) => `${k}=${v}`).join(', ')}`;
  return 'anywhere';
}

registerPage({
  path: '/security-groups',
  title: 'Security groups',
  section: 'Network',
  permission: 'network:read',
  order: 20,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const problems = h('div');
    const canWrite = ctx.can('network:write');
    const load = async () => {
      const groups = await listAll('/v1/security-groups', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (g) => link(`#/security-groups/${g.id}`, g.name) },
        { label: 'Description', cell: (g) => g.description || '–' },
        { label: 'Rules', cell: (g) => String(g.rules.length) },
        { label: 'Applies to', cell: (g) => (g.selector ? Object.entries(g.selector).map(([k, v]) => `${k}=${v}`).join(', ') : 'ports that name it') },
        { label: 'Created', cell: (g) => timeEl(g.created_at) },
        ...(canWrite ? [{
          label: 'Delete',
          cell: (g) => deleteButton({ what: `security group ${g.name}`, path: `/v1/security-groups/${g.id}`, problems, done: load, warning: 'Its rules go with it; a group some port still uses is refused.' }),
        }] : []),
      ], groups, { caption: 'Security groups', empty: 'No security groups yet.', rowAttrs: (g) => ({ 'data-group': g.name }) }));
    };
    clear(ctx.main, pageHead('Security groups'), problems, h('div', { class: 'grid' }, card(null, box),
      canWrite ? card('New security group', apiForm('sg', [
        { name: 'name', label: 'Name', hint: 'Letters, digits, . _ -' },
        { name: 'description', label: 'Description' },
      ], 'Create group', async (v) => {
        const g = await post('/v1/security-groups', v, { idempotent: true });
        toast(`Security group ${g.name} created.`);
        ctx.navigate(`/security-groups/${g.id}`);
      })) : null));
    await load();
    ctx.onCleanup(subscribe(['security_group.*'], throttle(() => load().catch(() => {}), 500)));
  },
});

function ruleForm(group, done) {
  const c = {
    direction: h('select', { id: 'rule-direction' }, ['ingress', 'egress'].map((d) => h('option', { value: d }, d))),
    ethertype: h('select', { id: 'rule-ethertype' }, ['IPv4', 'IPv6'].map((d) => h('option', { value: d }, d))),
    protocol: h('select', { id: 'rule-protocol' }, PROTOCOLS.map((p) => h('option', { value: p }, p || 'any'))),
    port_min: h('input', { id: 'rule-port_min', type: 'number', inputmode: 'numeric' }),
    port_max: h('input', { id: 'rule-port_max', type: 'number', inputmode: 'numeric' }),
    remote_cidr: h('input', { id: 'rule-remote_cidr', autocomplete: 'off', placeholder: '0.0.0.0/0' }),
    action: h('select', { id: 'rule-action' }, ['allow', 'deny'].map((d) => h('option', { value: d }, d))),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add rule');
  const form = h('form', { novalidate: true, 'aria-label': 'Add a rule' }, formError,
    h('div', { class: 'form-grid' },
      field('rule-direction', 'Direction', c.direction),
      field('rule-ethertype', 'Ethertype', c.ethertype),
      field('rule-protocol', 'Protocol', c.protocol),
      field('rule-port_min', 'Port from', c.port_min),
      field('rule-port_max', 'Port to', c.port_max, 'Empty: the same as from.'),
      field('rule-remote_cidr', 'Remote CIDR', c.remote_cidr, 'Empty: anywhere.'),
      field('rule-action', 'Action', c.action)),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { direction: c.direction.value, ethertype: c.ethertype.value, action: c.action.value };
    if (c.protocol.value) body.protocol = c.protocol.value;
    for (const k of ['port_min', 'port_max']) if (c[k].value !== '') body[k] = Number(c[k].value);
    if (c.remote_cidr.value.trim()) body.remote_cidr = c.remote_cidr.value.trim();
    const rule = await post(`/v1/security-groups/${group.id}/rules`, body, { idempotent: true });
    form.reset();
    toast(`Rule ${ruleText(rule)} added.`);
    await done();
  });
  return form;
}

registerPage({
  path: '/security-groups/:id',
  title: 'Security group',
  permission: 'network:read',
  async render(ctx) {
    let group = await get(`/v1/security-groups/${encodeURIComponent(ctx.params.id)}`, { signal: ctx.signal });
    document.title = `${group.name} · NovaCron`;
    const groups = Object.fromEntries((await listAll('/v1/security-groups')).map((g) => [g.id, g.name]));
    const box = h('div', { 'aria-live': 'polite' });
    const canWrite = ctx.can('network:write');
    const removeRule = async (r) => {
      if (!(await confirmDialog('Remove this rule?', `${r.direction} ${ruleText(r)} from ${remote(r, groups)} (${r.action})`, { confirm: 'Remove', danger: true }))) return;
      try {
        await request(`/v1/security-groups/${group.id}/rules/${r.id}`, { method: 'DELETE' });
        toast('Rule removed.');
        await load();
      } catch (err) { toast(err.message, 'bad'); }
    };
    const draw = () => clear(box, table([
      { label: 'Direction', cell: (r) => r.direction },
      { label: 'Protocol', cell: (r) => h('span', { 'data-testid': 'rule' }, ruleText(r)) },
      { label: 'Remote', cell: (r) => remote(r, groups) },
      { label: 'Ethertype', cell: (r) => r.ethertype },
      { label: 'Action', cell: (r) => r.action },
      ...(canWrite ? [{
        label: 'Remove',
        cell: (r) => h('button', { type: 'button', class: 'danger', 'aria-label': `Remove rule ${r.direction} ${ruleText(r)} ${remote(r, groups)}`, onclick: () => removeRule(r) }, 'Remove'),
      }] : []),
    ], group.rules, { caption: `Rules of ${group.name}`, empty: 'No rules.', rowAttrs: (r) => ({ 'data-rule': r.id }) }));
    const load = async () => {
      group = await get(`/v1/security-groups/${group.id}`);
      draw();
    };
    clear(ctx.main, h('p', {}, link('#/security-groups', '← Security groups')),
      pageHead(group.name),
      group.description ? h('p', { class: 'muted' }, group.description) : null,
      card('Rules', box),
      canWrite ? card('Add a rule', ruleForm(group, load)) : null);
    draw();
    const reload = throttle(() => load().catch(() => {}), 400);
    ctx.onCleanup(subscribe(['security_group.*'], (e) => { if (e.resource_id === group.id) reload(); }));
  },
});
