// The tenant's key service (issue 18): its keys, their state and version, rotate / disable /
// enable / shred; and its secrets, whose values go in and never come back (a VM gets them with
// `secrets: [name]`, written by cloud-init). Shredding asks first: what the key encrypted (all the
// tenant's backups, for the backup key) is lost for ever.

import { listAll, post, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, pageHead, table, timeEl, toast } from '../ui.js';
import { apiForm } from './common.js';

const ALGORITHMS = [['aes-256-gcm', 'AES-256-GCM'], ['chacha20-poly1305', 'ChaCha20-Poly1305']];

async function act(key, action, done) {
  if (action === 'shred') {
    const what = key.purpose === 'backup'
      ? 'Every backup of your tenant, in every target, becomes unreadable for ever.'
      : 'Everything it encrypted becomes unreadable for ever.';
    if (!(await confirmDialog(`Destroy key ${key.name}?`, what, { confirm: 'Destroy', danger: true }))) return;
  }
  try {
    const out = await post(`/v1/kms/keys/${key.id}/${action}`, {}, { idempotent: true });
    toast(`Key ${out.name}: ${out.state}, version ${out.primary_version}.`);
    await done();
  } catch (err) { toast(err.message, 'bad'); }
}

function actions(ctx, key, done) {
  if (!ctx.can('kms:write') || key.state === 'destroyed') return '–';
  const button = (action, label, cls = '') => h('button', {
    type: 'button', class: cls, 'aria-label': `${label} ${key.name}`, onclick: () => act(key, action, done),
  }, label);
  return h('span', { class: 'actions' },
    key.state === 'enabled' ? button('rotate', 'Rotate') : null,
    key.state === 'enabled' ? button('disable', 'Disable') : null,
    key.state === 'disabled' ? button('enable', 'Enable') : null,
    key.state === 'pending-deletion' ? button('cancel-deletion', 'Cancel deletion') : null,
    button('shred', 'Shred', 'danger'));
}

registerPage({
  path: '/kms',
  title: 'Keys & secrets',
  section: 'Administration',
  permission: 'kms:read',
  order: 47,
  async render(ctx) {
    const keysBox = h('div', { 'aria-live': 'polite', 'data-testid': 'kms-keys' });
    const secretsBox = h('div', { 'aria-live': 'polite', 'data-testid': 'kms-secrets' });
    const load = async () => {
      const [keys, secrets] = await Promise.all([listAll('/v1/kms/keys'), listAll('/v1/kms/secrets')]);
      const names = Object.fromEntries(keys.map((k) => [k.id, k.name]));
      clear(keysBox, table([
        { label: 'Name', cell: (k) => h('strong', {}, k.name) },
        { label: 'Algorithm', cell: (k) => k.algorithm },
        { label: 'State', cell: (k) => badge(k.state) },
        { label: 'Version', cell: (k) => String(k.primary_version) },
        { label: 'Purpose', cell: (k) => k.purpose },
        { label: 'Rotated', cell: (k) => (k.rotated_at ? timeEl(k.rotated_at) : 'never') },
        { label: 'Actions', cell: (k) => actions(ctx, k, load) },
      ], keys, { caption: 'Your tenant’s keys', empty: 'No keys yet.', rowAttrs: (k) => ({ 'data-key': k.name }) }));
      clear(secretsBox, table([
        { label: 'Name', cell: (s) => h('strong', {}, s.name) },
        { label: 'Path in the guest', cell: (s) => h('span', { class: 'mono' }, s.path) },
        { label: 'Key', cell: (s) => names[s.key_id] || s.key_id },
        { label: 'Created', cell: (s) => timeEl(s.created_at) },
        {
          label: 'Delete',
          cell: (s) => (ctx.can('secret:write') ? h('button', {
            type: 'button', class: 'danger', 'aria-label': `Delete ${s.name}`,
            onclick: async () => {
              if (!(await confirmDialog(`Delete secret ${s.name}?`, 'VMs started from now on no longer get it.', { confirm: 'Delete', danger: true }))) return;
              try {
                await request(`/v1/kms/secrets/${s.id}`, { method: 'DELETE' });
                await load();
              } catch (err) { toast(err.message, 'bad'); }
            },
          }, 'Delete') : '–'),
        },
      ], secrets, { caption: 'Your tenant’s secrets (values are never shown)', empty: 'No secrets yet.', rowAttrs: (s) => ({ 'data-secret': s.name }) }));
    };
    const keyForm = ctx.can('kms:write') ? card('New key', apiForm('kms-key', [
      { name: 'name', label: 'Name', hint: 'Lowercase letters, digits, . _ -; unique in your tenant.' },
      { name: 'algorithm', label: 'Algorithm', type: 'select', options: ALGORITHMS },
    ], 'Create key', async (v) => {
      const k = await post('/v1/kms/keys', { name: v.name.trim(), algorithm: v.algorithm }, { idempotent: true });
      toast(`Key ${k.name} created.`);
      await load();
    })) : null;
    const secretForm = ctx.can('secret:write') ? card('New secret', apiForm('kms-secret', [
      { name: 'name', label: 'Name', hint: 'VMs ask for it by this name (secrets: [name]).' },
      { name: 'secret_value', label: 'Value', type: 'password', hint: 'Write-only: it is never shown again.' },
      { name: 'path', label: 'Path in the guest', hint: 'Default: /run/novacron/secrets/<name>.' },
    ], 'Store secret', async (v) => {
      const body = { name: v.name.trim(), secret_value: v.secret_value };
      if (v.path.trim()) body.path = v.path.trim();
      const s = await post('/v1/kms/secrets', body, { idempotent: true });
      toast(`Secret ${s.name} stored.`);
      await load();
    })) : null;
    clear(ctx.main, pageHead('Keys & secrets'),
      h('p', { class: 'muted' }, 'Your tenant’s keys encrypt its data and secrets; the backup key wraps the key of all its backups. Rotating keeps old versions for decryption; shredding destroys a key for ever.'),
      card('Keys', keysBox), keyForm, card('Secrets', secretsBox), secretForm);
    await load();
  },
});
