// Identity providers (issue 18, single sign-on): a tenant's OpenID Connect providers (presets for
// Google, Microsoft Entra ID and GitHub), their group → role mappings, and the form adding one. The
// client secret is write-only: the API says only whether one is stored.

import { listAll, post, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, pageHead, table, toast } from '../ui.js';
import { apiForm } from './common.js';

/** "group=role" lines → [{group, role}] (the API names a bad one group_roles[i].role). */
function mappings(text) {
  return text.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    const at = l.lastIndexOf('=');
    return { group: l.slice(0, at).trim(), role: l.slice(at + 1).trim() };
  });
}

const FIELDS = [
  { name: 'name', label: 'Name', hint: '1-64 lowercase letters, digits, . _ -' },
  { name: 'display_name', label: 'Button text', hint: 'The sign-in page shows "Sign in with <this>".' },
  { name: 'preset', label: 'Kind', type: 'select', options: [['oidc', 'OpenID Connect'], ['google', 'Google'], ['entra', 'Microsoft Entra ID'], ['github', 'GitHub (OAuth 2.0)']] },
  { name: 'issuer', label: 'Issuer URL', hint: 'Not for Google and GitHub. Entra ID: https://login.microsoftonline.com/<directory id>/v2.0' },
  { name: 'client_id', label: 'Client ID' },
  { name: 'client_secret', label: 'Client secret', type: 'password', hint: 'Stored sealed; never shown again.' },
  { name: 'group_roles', label: 'Group → role', type: 'textarea', hint: 'One "group=role" a line (tenant-admin, member, compliance, viewer).' },
  { name: 'default_role', label: 'Role of users in no mapped group', type: 'select', options: [['', 'none: they may not sign in'], ['viewer', 'viewer'], ['member', 'member']] },
];

registerPage({
  path: '/identity-providers',
  title: 'Identity providers',
  section: 'Administration',
  order: 46,
  permission: 'user:read',
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const remove = async (p) => {
      if (!(await confirmDialog(`Delete ${p.name}?`, 'Its users can no longer sign in with it; their sessions end at their next refresh.', { confirm: 'Delete', danger: true }))) return;
      try {
        await request(`/v1/identity-providers/${p.id}`, { method: 'DELETE' });
        toast(`Provider ${p.name} deleted.`);
        await load();
      } catch (err) { toast(err.message, 'bad'); }
    };
    const load = async () => {
      const providers = await listAll('/v1/identity-providers');
      clear(box, table([
        { label: 'Name', cell: (p) => h('strong', {}, p.name) },
        { label: 'Button', cell: (p) => `Sign in with ${p.display_name}` },
        { label: 'Kind', cell: (p) => p.preset },
        { label: 'Issuer', cell: (p) => h('span', { class: 'mono' }, p.issuer) },
        { label: 'Client', cell: (p) => h('span', { class: 'mono' }, p.client_id) },
        { label: 'Groups', cell: (p) => p.group_roles.map((m) => `${m.group} → ${m.role}`).join(', ') || '–' },
        { label: 'Default role', cell: (p) => p.default_role || 'none' },
        { label: 'State', cell: (p) => badge(p.enabled ? 'enabled' : 'disabled') },
        ...(ctx.can('user:write') ? [{
          label: 'Delete',
          cell: (p) => h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${p.name}`, onclick: () => remove(p) }, 'Delete'),
        }] : []),
      ], providers, { caption: 'Identity providers', empty: 'No identity providers yet: users sign in with a password.', rowAttrs: (p) => ({ 'data-provider': p.name }) }));
    };
    const form = ctx.can('user:write') ? apiForm('idp', FIELDS, 'Add provider', async (v) => {
      const body = { name: v.name.trim(), preset: v.preset, client_id: v.client_id.trim(), client_secret: v.client_secret };
      if (v.display_name.trim()) body.display_name = v.display_name.trim();
      if (v.issuer.trim()) body.issuer = v.issuer.trim();
      if (v.group_roles.trim()) body.group_roles = mappings(v.group_roles);
      if (v.default_role) body.default_role = v.default_role;
      await post('/v1/identity-providers', body, { idempotent: true });
      toast(`Provider ${body.name} added.`);
      await load();
    }) : null;
    clear(ctx.main, pageHead('Identity providers'),
      h('p', { class: 'muted' }, 'Single sign-on: your users sign in at these providers; their groups give their role.'),
      card(null, box), form ? card('Add a provider', form) : null);
    await load();
  },
});
