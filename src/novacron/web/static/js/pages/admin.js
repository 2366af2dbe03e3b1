// Administration: tenants, projects, users, roles and the audit log. The API scopes each list:
// a tenant-admin sees its own tenant, a platform admin all of them.

import { get, listAll, post } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, pageHead, table, timeEl, toast } from '../ui.js';
import { apiForm } from './common.js';
import { auditProof } from './audit_chain.js';

registerPage({
  path: '/tenants',
  title: 'Tenants',
  section: 'Administration',
  permission: 'tenant:read',
  order: 10,
  async render(ctx) {
    const box = h('div');
    const load = async () => {
      const tenants = await listAll('/v1/tenants', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (t) => h('strong', {}, t.name) },
        { label: 'Description', cell: (t) => t.description || '–' },
        { label: 'ID', cell: (t) => h('code', {}, t.id) },
        { label: 'Created', cell: (t) => timeEl(t.created_at) },
      ], tenants, { caption: 'Tenants' }));
    };
    clear(ctx.main, pageHead('Tenants'), h('div', { class: 'grid' }, card(null, box),
      ctx.can('tenant:write') ? card('New tenant', apiForm('tenant', [
        { name: 'name', label: 'Name', hint: 'lower-case letters, digits, . _ -' },
        { name: 'description', label: 'Description' },
      ], 'Create tenant', async (v) => { await post('/v1/tenants', v, { idempotent: true }); toast(`Tenant ${v.name} created.`); await load(); })) : null));
    await load();
  },
});

registerPage({
  path: '/projects',
  title: 'Projects',
  section: 'Administration',
  permission: 'project:read',
  order: 20,
  async render(ctx) {
    const box = h('div');
    const tenants = ctx.can('tenant:read') ? await listAll('/v1/tenants', { sort: 'name' }) : [];
    const names = Object.fromEntries(tenants.map((t) => [t.id, t.name]));
    const load = async () => {
      const projects = await listAll('/v1/projects', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (p) => h('strong', {}, p.name) },
        { label: 'Tenant', cell: (p) => names[p.tenant_id] || ctx.me.tenant_name || p.tenant_id },
        { label: 'Description', cell: (p) => p.description || '–' },
        { label: 'ID', cell: (p) => h('code', {}, p.id) },
      ], projects, { caption: 'Projects' }));
    };
    const fields = [{ name: 'name', label: 'Name' }, { name: 'description', label: 'Description' }];
    if (ctx.me.tenant_id === null) fields.push({ name: 'tenant_id', label: 'Tenant', type: 'select', options: tenants.map((t) => [t.id, t.name]) });
    clear(ctx.main, pageHead('Projects'), h('div', { class: 'grid' }, card(null, box),
      ctx.can('project:write') ? card('New project', apiForm('project', fields, 'Create project', async (v) => {
        await post('/v1/projects', v, { idempotent: true }); toast(`Project ${v.name} created.`); await load();
      })) : null));
    await load();
  },
});

registerPage({
  path: '/users',
  title: 'Users',
  section: 'Administration',
  permission: 'user:read',
  order: 30,
  async render(ctx) {
    const box = h('div');
    const tenants = ctx.can('tenant:read') ? await listAll('/v1/tenants', { sort: 'name' }) : [];
    const names = Object.fromEntries(tenants.map((t) => [t.id, t.name]));
    const load = async () => {
      const users = await listAll('/v1/users', { sort: 'username' });
      clear(box, table([
        { label: 'Username', cell: (u) => h('strong', {}, u.username) },
        { label: 'Role', cell: (u) => u.role },
        { label: 'Tenant', cell: (u) => (u.tenant_id ? names[u.tenant_id] || ctx.me.tenant_name || u.tenant_id : 'platform') },
        { label: 'Status', cell: (u) => badge(u.disabled ? 'disabled' : 'enabled') },
        { label: 'Created', cell: (u) => timeEl(u.created_at) },
      ], users, { caption: 'Users' }));
    };
    const roles = ctx.me.tenant_id === null ? ['member', 'viewer', 'tenant-admin', 'none', 'admin'] : ['member', 'viewer', 'tenant-admin', 'none'];
    const fields = [
      { name: 'username', label: 'Username' },
      { name: 'password', label: 'Password', type: 'password', hint: 'at least 12 characters, not a common password: a passphrase of several uncommon words' },
      { name: 'role', label: 'Role', type: 'select', options: roles.map((r) => [r, r]) },
    ];
    if (ctx.me.tenant_id === null) {
      fields.push({ name: 'tenant_id', label: 'Tenant', type: 'select', options: [['', 'none (platform admin)'], ...tenants.map((t) => [t.id, t.name])] });
    }
    clear(ctx.main, pageHead('Users'), h('div', { class: 'grid' }, card(null, box),
      ctx.can('user:write') ? card('New user', apiForm('user', fields, 'Create user', async (v) => {
        const body = { ...v };
        if (!body.tenant_id) delete body.tenant_id;
        await post('/v1/users', body, { idempotent: true }); toast(`User ${v.username} created.`); await load();
      })) : null));
    await load();
  },
});

registerPage({
  path: '/audit',
  title: 'Audit log',
  section: 'Administration',
  permission: 'audit:read',
  order: 50,
  async render(ctx) {
    const actor = h('input', { id: 'audit-actor', placeholder: 'username or id' });
    const action = h('input', { id: 'audit-action', placeholder: 'e.g. vm.create' });
    const outcome = h('select', { id: 'audit-outcome' }, ['', 'success', 'denied', 'failed'].map((o) => h('option', { value: o }, o || 'any')));
    const box = h('div', { 'aria-live': 'polite' });
    const more = h('button', { type: 'button', hidden: true }, 'Load more');
    let cursor = null;
    let rows = [];
    const draw = () => clear(box, table([
      { label: 'Time', cell: (a) => timeEl(a.time) },
      { label: 'Actor', cell: (a) => a.actor_name || a.actor_id || '–' },
      { label: 'Action', cell: (a) => h('code', {}, a.action) },
      { label: 'Request', cell: (a) => `${a.method} ${a.path}` },
      { label: 'Outcome', cell: (a) => badge(a.outcome, String(a.status_code)) },
      { label: 'Source', cell: (a) => a.source_ip || '–' },
    ], rows, { caption: 'Audit records, newest first', empty: 'No records match.' }));
    const load = async (reset) => {
      const q = new URLSearchParams({ limit: '100' });
      if (actor.value.trim()) q.set('actor', actor.value.trim());
      if (action.value.trim()) q.set('action', action.value.trim());
      if (outcome.value) q.set('outcome', outcome.value);
      if (!reset && cursor) q.set('cursor', cursor);
      const page = await get(`/v1/audit?${q}`);
      rows = reset ? page.items : rows.concat(page.items);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      draw();
    };
    const form = h('form', { class: 'filters', role: 'search' },
      h('div', { class: 'field' }, h('label', { for: 'audit-actor' }, 'Actor'), actor),
      h('div', { class: 'field' }, h('label', { for: 'audit-action' }, 'Action'), action),
      h('div', { class: 'field' }, h('label', { for: 'audit-outcome' }, 'Outcome'), outcome),
      h('button', { type: 'submit' }, 'Filter'));
    form.addEventListener('submit', (e) => { e.preventDefault(); load(true); });
    more.addEventListener('click', () => load(false));
    clear(ctx.main, pageHead('Audit log'), auditProof(ctx), card(null, form, box, more));
    await load(true);
  },
});
