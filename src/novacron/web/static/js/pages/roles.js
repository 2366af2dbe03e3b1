// Roles (issue 18 "Authorization"): the built-in roles (read-only) and the tenant's custom ones, who
// holds which role where (role assignments: the tenant or one project, optionally only on VMs with
// some labels), and why a user may or may not do something (GET /v1/auth/explain).

import { get, listAll, post, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, pageHead, table, toast } from '../ui.js';
import { checkField, field, onSubmit } from './common.js';

/** "team=blue\ntier=web" -> {team: "blue", tier: "web"} (blank lines skipped). */
function parseLabels(text) {
  const labels = {};
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf('=');
    if (at > 0) labels[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    else labels[line] = '';
  }
  return labels;
}

const shownLabels = (labels) => Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(', ') || '–';

async function remove(path, what, message, done) {
  if (!(await confirmDialog(`Delete ${what}?`, message, { confirm: 'Delete', danger: true }))) return;
  try {
    await request(path, { method: 'DELETE' });
    toast(`${what} deleted.`);
    await done();
  } catch (err) { toast(err.message, 'bad'); }
}

function roleForm(ctx, done) {
  const held = [...ctx.me.permissions].filter((p) => p !== 'global').sort();
  const boxes = held.map((p, i) => h('input', { id: `role-perm-${i}`, type: 'checkbox', value: p }));
  const perms = h('fieldset', { id: 'role-permissions', tabindex: '-1', 'aria-describedby': 'role-permissions-error' },
    h('legend', {}, 'Permissions (each one you hold)'),
    h('div', { class: 'form-grid' }, boxes.map((b, i) => checkField(b.id, held[i], b))),
    h('div', { class: 'error', id: 'role-permissions-error' }));
  const c = {
    name: h('input', { id: 'role-name', autocomplete: 'off', autocapitalize: 'none', placeholder: 'blue-ops' }),
    description: h('input', { id: 'role-description', autocomplete: 'off' }),
    labels: h('textarea', { id: 'role-labels', rows: '2', placeholder: 'team=blue' }),
    permissions: perms,
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create role');
  const form = h('form', { novalidate: true, 'aria-label': 'New role' }, formError,
    h('div', { class: 'form-grid' },
      field('role-name', 'Name', c.name, '1-64 lowercase letters, digits, . _ -'),
      field('role-description', 'Description', c.description),
      field('role-labels', 'Only on VMs labelled', c.labels, 'KEY=VALUE, one a line; empty: any VM.')),
    perms, submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = {
      name: c.name.value.trim(), description: c.description.value.trim(),
      permissions: boxes.filter((b) => b.checked).map((b) => b.value), labels: parseLabels(c.labels.value),
    };
    await post('/v1/roles', body, { idempotent: true });
    toast(`Role ${body.name} created.`);
    form.reset();
    await done();
  });
  return form;
}

const option = (value, label) => h('option', { value }, label);

/** The roles one can assign, as the options of `select` (refreshed when a role is made or deleted). */
function roleOptions(select, roles) {
  clear(select, ...roles.map((r) => option(r.name, r.builtin ? r.name : `${r.name} (custom)`)));
}

function assignmentForm(users, roleSelect, projects, done) {
  const c = {
    user: h('select', { id: 'ra-user' }, users.map((u) => option(u.username, u.username))),
    role: roleSelect,
    project: h('select', { id: 'ra-project' }, option('', 'The whole tenant'), projects.map((p) => option(p.id, p.name))),
    labels: h('textarea', { id: 'ra-labels', rows: '2', placeholder: 'team=blue' }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Assign');
  const form = h('form', { novalidate: true, 'aria-label': 'New role assignment' }, formError,
    h('div', { class: 'form-grid' },
      field('ra-user', 'User', c.user), field('ra-role', 'Role', c.role),
      field('ra-project', 'Where', c.project),
      field('ra-labels', 'Only on VMs labelled', c.labels, 'KEY=VALUE, one a line; empty: any VM.')),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { user: c.user.value, role: c.role.value, labels: parseLabels(c.labels.value) };
    if (c.project.value) body.project = c.project.value;
    await post('/v1/role-assignments', body, { idempotent: true });
    toast(`${body.role} assigned to ${body.user}.`);
    c.labels.value = '';
    await done();
  });
  return form;
}

function explainForm(ctx) {
  const c = {
    user: h('input', { id: 'explain-user', autocomplete: 'off', value: ctx.me.username }),
    action: h('input', { id: 'explain-action', autocomplete: 'off', placeholder: 'vm:delete' }),
    resource: h('input', { id: 'explain-resource', autocomplete: 'off', placeholder: 'vm/web-1' }),
  };
  const result = h('div', { 'aria-live': 'polite', 'data-testid': 'explain-result' });
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Explain');
  const form = h('form', { novalidate: true, 'aria-label': 'Explain a decision' }, formError,
    h('div', { class: 'form-grid' },
      field('explain-user', 'User', c.user, 'Yourself, or a user you administer.'),
      field('explain-action', 'Action', c.action, 'A permission, e.g. vm:delete.'),
      field('explain-resource', 'Resource', c.resource, 'vm/<id or name>, project/<id or name> or tenant.')),
    submit, result);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const q = new URLSearchParams({ user: c.user.value.trim(), action: c.action.value.trim(), resource: c.resource.value.trim() });
    const d = await get(`/v1/auth/explain?${q}`);
    clear(result, h('p', {}, badge(d.decision === 'allow' ? 'allowed' : 'denied'), ` ${d.username} ${d.action} on ${d.resource}`),
      h('ul', {}, d.reasons.map((r) => h('li', {}, r))));
  });
  return form;
}

registerPage({
  path: '/roles',
  title: 'Roles',
  section: 'Administration',
  order: 40,
  async render(ctx) {
    const writer = ctx.can('user:write');
    const rolesBox = h('div', { 'aria-live': 'polite', 'data-testid': 'roles' });
    const raBox = h('div', { 'aria-live': 'polite', 'data-testid': 'role-assignments' });
    const roleSelect = h('select', { id: 'ra-role' });
    const names = {};
    const loadRoles = async () => {
      const roles = await get('/v1/roles');
      roleOptions(roleSelect, roles);
      clear(rolesBox, table([
        { label: 'Role', cell: (r) => h('strong', {}, r.name) },
        { label: 'Kind', cell: (r) => badge(r.builtin ? 'built-in' : 'custom') },
        { label: 'Only on VMs labelled', cell: (r) => shownLabels(r.labels) },
        { label: 'Permissions', cell: (r) => h('span', { class: 'mono' }, r.permissions.join(' ') || '–') },
        ...(writer ? [{
          label: 'Delete',
          cell: (r) => (r.builtin ? 'read-only' : h('button', { type: 'button', class: 'danger', 'aria-label': `Delete role ${r.name}`,
            onclick: () => remove(`/v1/roles/${r.id}`, `Role ${r.name}`, 'Only a role nobody is assigned can be deleted.', loadRoles) }, 'Delete')),
        }] : []),
      ], roles, { caption: 'Roles', rowAttrs: (r) => ({ 'data-role': r.name }) }));
    };
    const loadAssignments = async () => {
      const rows = await get('/v1/role-assignments');
      clear(raBox, table([
        { label: 'User or key', cell: (a) => (a.user_id ? names[a.user_id] || a.user_id : `key ${a.api_key_id}`) },
        { label: 'Role', cell: (a) => h('strong', {}, a.role) },
        { label: 'Where', cell: (a) => (a.project_id ? `project ${names[a.project_id] || a.project_id}` : 'whole tenant') },
        { label: 'Only on VMs labelled', cell: (a) => shownLabels(a.labels) },
        ...(writer ? [{
          label: 'Remove',
          cell: (a) => h('button', { type: 'button', class: 'danger', 'aria-label': `Remove assignment ${a.id}`,
            onclick: () => remove(`/v1/role-assignments/${a.id}`, `Assignment ${a.id}`, 'Its holder loses the role at its next request.', loadAssignments) }, 'Remove'),
        }] : []),
      ], rows, { caption: 'Role assignments', empty: 'No role assignments: each user holds its own role only.', rowAttrs: (a) => ({ 'data-assignment': a.id }) }));
    };
    await loadRoles();
    const parts = [pageHead('Roles'),
      h('p', { class: 'muted' }, `You are ${ctx.me.role}. A user holds its own role and every role assigned to it; the API checks permissions, not role names.`),
      card(null, rolesBox)];
    if (writer) parts.push(card('New role', roleForm(ctx, loadRoles)));
    if (ctx.can('user:read') && ctx.me.tenant_id) {
      const users = await listAll('/v1/users');
      const projects = await listAll('/v1/projects');
      users.forEach((u) => { names[u.id] = u.username; });
      projects.forEach((p) => { names[p.id] = p.name; });
      await loadAssignments();
      parts.push(card('Role assignments', raBox));
      if (writer) parts.push(card('Assign a role', assignmentForm(users, roleSelect, projects, loadAssignments)));
    }
    parts.push(card('Explain a decision', explainForm(ctx)));
    clear(ctx.main, ...parts);
  },
});
