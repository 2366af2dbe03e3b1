// API keys (issue 18): your machine identities, and for an administrator those of everyone it
// administers. A new key's token is shown once, in a box on this page only: it is held nowhere
// else (not in storage, not in the URL), so leaving the page loses it, as the API intends.

import { listAll, post, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, pageHead, table, timeEl, toast } from '../ui.js';
import { checkField, field, onSubmit } from './common.js';

function lastUsed(k) {
  if (!k.last_used_at) return 'never';
  return h('span', {}, timeEl(k.last_used_at), k.last_used_from ? ` from ${k.last_used_from}` : '');
}

/** The one showing of a token: a read-only box, a copy button, and what to do with it. */
function tokenBox(key) {
  if (!key.token) {
    // the answer to the creation was lost and its retry replayed: the API never repeats a token
    return h('div', { class: 'alert info', role: 'status', 'data-testid': 'new-key' },
      `Key ${key.name} was created, but its token was lost on the way (the API shows it only once). Revoke it and make another.`);
  }
  const input = h('input', {
    id: 'new-key-token', readonly: true, value: key.token, class: 'mono', 'data-testid': 'new-key-token',
    'aria-describedby': 'new-key-note', spellcheck: 'false', autocomplete: 'off',
  });
  const copy = async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(key.token);
    } catch {
      document.execCommand('copy'); // no clipboard API (a plain-http page): the selection
    }
    toast('Token copied.');
  };
  return h('div', { class: 'alert info', role: 'status', 'data-testid': 'new-key' },
    h('p', {}, h('strong', {}, `Key ${key.name} created.`)),
    field('new-key-token', 'Its token', input),
    h('p', { id: 'new-key-note' }, h('strong', {}, 'Store it now: it will not be shown again. '),
      'Leaving this page loses it; if it is lost, revoke the key and make a new one. Send it as ',
      h('code', {}, 'Authorization: Bearer <token>'), ' (the CLI reads it from ', h('code', {}, 'NOVACRON_TOKEN'), ').'),
    h('button', { type: 'button', class: 'primary', onclick: copy }, 'Copy token'));
}

/** Name, permissions (those the caller holds, none ticked: all of them) and expiry. */
function keyForm(ctx, shown, done) {
  const held = [...ctx.me.permissions].sort();
  const boxes = held.map((p, i) => h('input', { id: `key-perm-${i}`, type: 'checkbox', value: p }));
  const perms = h('fieldset', { id: 'key-permissions', tabindex: '-1', 'aria-describedby': 'key-permissions-hint key-permissions-error' },
    h('legend', {}, 'Permissions'),
    h('div', { class: 'hint', id: 'key-permissions-hint' }, 'What the key may do: each one your role holds. None ticked: all of yours.'),
    h('div', { class: 'form-grid' }, boxes.map((b, i) => checkField(b.id, held[i], b))),
    h('div', { class: 'error', id: 'key-permissions-error' }));
  const c = {
    name: h('input', { id: 'key-name', autocomplete: 'off', autocapitalize: 'none', placeholder: 'ci-deploy' }),
    expires_in_days: h('input', { id: 'key-expires', type: 'number', inputmode: 'numeric', min: '1', max: '365', value: '90' }),
    permissions: perms,
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create key');
  const form = h('form', { novalidate: true, 'aria-label': 'New API key' }, formError,
    h('div', { class: 'form-grid' },
      field('key-name', 'Name', c.name, '1-64 lowercase letters, digits, . _ -; unique among your keys.'),
      field('key-expires', 'Expires in (days)', c.expires_in_days, '1 to 365.')),
    perms, submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    // a refused permission comes back as permissions[i]: its error goes under the fieldset
    chosen.forEach((_, i) => { c[`permissions[${i}]`] = perms; });
    const body = { name: c.name.value.trim(), expires_in_days: Number(c.expires_in_days.value) };
    if (c.expires_in_days.value.trim() === '') delete body.expires_in_days;
    if (chosen.length) body.permissions = chosen;
    const key = await post('/v1/api-keys', body, { idempotent: true });
    form.reset();
    clear(shown, tokenBox(key));
    shown.scrollIntoView({ block: 'nearest' });
    document.getElementById('new-key-token').focus();
    await done();
  });
  return form;
}

registerPage({
  path: '/api-keys',
  title: 'API keys',
  section: 'Administration',
  order: 45,
  async render(ctx) {
    const admin = ctx.can('global') || ctx.can('user:read');
    const everyone = admin && ctx.query.get('everyone') === 'true';
    const box = h('div', { 'aria-live': 'polite' });
    const shown = h('div');
    const users = everyone && ctx.can('user:read')
      ? Object.fromEntries((await listAll('/v1/users')).map((u) => [u.id, u.username])) : {};
    const revoke = async (k) => {
      if (!(await confirmDialog(`Revoke ${k.name}?`, 'Requests made with it are refused from now on; this cannot be undone.', { confirm: 'Revoke', danger: true }))) return;
      try {
        await request(`/v1/api-keys/${k.id}`, { method: 'DELETE' });
        toast(`Key ${k.name} revoked.`);
        await load();
      } catch (err) { toast(err.message, 'bad'); }
    };
    const load = async () => {
      const params = { sort: '-created_at', ...(everyone ? { everyone: 'true' } : {}) };
      const keys = await listAll('/v1/api-keys', params);
      clear(box, table([
        { label: 'Name', cell: (k) => h('strong', {}, k.name) },
        ...(everyone ? [{ label: 'Owner', cell: (k) => (k.user_id === ctx.me.user_id ? 'you' : users[k.user_id] || k.user_id) }] : []),
        { label: 'State', cell: (k) => badge(k.state) },
        { label: 'Permissions', cell: (k) => h('span', { class: 'mono' }, k.permissions.join(', ')) },
        { label: 'Expires', cell: (k) => timeEl(k.expires_at) },
        { label: 'Last used', cell: lastUsed },
        {
          label: 'Revoke',
          cell: (k) => (k.state === 'revoked' ? '–'
            : h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke ${k.name}`, onclick: () => revoke(k) }, 'Revoke')),
        },
      ], keys, { caption: everyone ? 'API keys of everyone you administer' : 'Your API keys', empty: 'No API keys yet.', rowAttrs: (k) => ({ 'data-key': k.name }) }));
    };
    const toggle = admin ? h('a', { href: everyone ? '#/api-keys' : '#/api-keys?everyone=true', class: 'button', 'data-testid': 'keys-scope' },
      everyone ? 'Show only mine' : 'Show everyone’s') : null;
    clear(ctx.main, pageHead('API keys', toggle),
      h('p', { class: 'muted' }, 'Keys let scripts, CI jobs and the SDK act as you with some of your permissions, until they expire or are revoked.'),
      shown, card(null, box), card('New API key', keyForm(ctx, shown, load)));
    await load();
  },
});
