// Backup targets (issue 17 item 7): where backups are stored. Everyone who reads backups sees the
// list; administrators (backup-target:write) see each target's settings (credentials only as
// "set": they are write-only), create one (each kind's settings named in the form), rename and
// reconfigure one (PATCH with If-Match; a credential left empty keeps its value) and delete one
// (refused by the API while schedules, replication or backups use it; "also delete its backups"
// is the API's force).

import { ApiError, listAll, post, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, card, confirmDialog, errorBox, fmtBytes, pageHead, table, toast } from '../ui.js';
import { checkField, field, onSubmit } from './common.js';

/** Each kind's settings, as the form's hint says them; `secret`: its credential's key. */
const KINDS = {
  local: { keys: 'path=/var/lib/novacron/backups (absolute; a new or empty directory, or an existing store)', secret: null },
  s3: { keys: 'bucket=NAME, and optionally prefix=, endpoint_url=, region_name=, aws_access_key_id=', secret: 'aws_secret_access_key' },
  azure: { keys: 'container=NAME, optionally prefix=', secret: 'connection_string' },
  gcs: { keys: 'bucket=NAME, optionally prefix=, project=, endpoint=', secret: null },
};

/** "KEY=VALUE" lines as an object (blank lines skipped). */
function parseSettings(text) {
  const out = {};
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf('=');
    if (at < 1) throw Object.assign(new Error(`"${line}" is not KEY=VALUE`), { field: 'config' });
    out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

function settingsText(t) {
  return Object.entries(t.config || {}).filter(([k]) => !(t.secrets_set || []).includes(k))
    .map(([k, v]) => `${k}=${v}`).join('\n');
}

/** A settings problem found before sending, shown like the API's own under the field. */
function localError(err) {
  return new ApiError(422, { title: 'Invalid request', detail: err.message, errors: [{ field: `body.${err.field}`, reason: err.message }] });
}

function createForm(done) {
  const c = {
    name: h('input', { id: 'bt-name', autocomplete: 'off', required: true }),
    type: h('select', { id: 'bt-type' }, Object.keys(KINDS).map((k) => h('option', { value: k }, k))),
    config: h('textarea', { id: 'bt-config', rows: 3, placeholder: 'path=/var/lib/novacron/backups' }),
    secret: h('input', { id: 'bt-secret', type: 'password', autocomplete: 'new-password' }),
  };
  const hint = h('span', {});
  const secretRow = field('bt-secret', 'Credential (write-only)', c.secret);
  const showKind = () => {
    const kind = KINDS[c.type.value];
    hint.textContent = `One KEY=VALUE a line: ${kind.keys}.`;
    secretRow.hidden = !kind.secret;
    secretRow.querySelector('label').textContent = kind.secret ? `${kind.secret} (write-only)` : '';
  };
  c.type.addEventListener('change', showKind);
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create target');
  const form = h('form', { 'aria-label': 'New backup target', novalidate: true }, formError,
    field('bt-name', 'Name', c.name), field('bt-type', 'Kind', c.type),
    field('bt-config', 'Settings', c.config, hint), secretRow, submit);
  showKind();
  onSubmit(form, { controls: c, submit, formError }, async () => {
    let config;
    try { config = parseSettings(c.config.value); } catch (err) { throw localError(err); }
    const secret = KINDS[c.type.value].secret;
    if (secret && c.secret.value) config[secret] = c.secret.value;
    await post('/v1/backup-targets', { name: c.name.value.trim(), type: c.type.value, config }, { idempotent: true });
    toast(`Backup target ${c.name.value.trim()} created.`);
    form.reset();
    showKind();
    await done();
  });
  return form;
}

/** The edit form of one target, in `box`: name, settings (a removed line unsets it), credential. */
async function editForm(box, t, done) {
  const { data: fresh, etag } = await request(`/v1/backup-targets/${t.id}`);
  const secret = KINDS[fresh.type]?.secret;
  const c = {
    name: h('input', { id: 'bte-name', autocomplete: 'off', value: fresh.name }),
    config: h('textarea', { id: 'bte-config', rows: 3 }),
    secret: h('input', { id: 'bte-secret', type: 'password', autocomplete: 'new-password' }),
  };
  c.config.value = settingsText(fresh);
  const before = parseSettings(c.config.value);
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Save');
  const cancel = h('button', { type: 'button', onclick: () => clear(box) }, 'Cancel');
  const setNote = (fresh.secrets_set || []).length ? `set: ${fresh.secrets_set.join(', ')}; ` : '';
  const form = h('form', { 'aria-label': `Edit backup target ${fresh.name}`, novalidate: true }, formError,
    field('bte-name', 'Name', c.name),
    field('bte-config', 'Settings', c.config, `One KEY=VALUE a line: ${KINDS[fresh.type]?.keys || ''}. A line removed unsets it.`),
    secret ? field('bte-secret', `${secret} (write-only)`, c.secret, `${setNote}empty keeps the stored value`) : null,
    h('div', { class: 'actions' }, submit, cancel));
  onSubmit(form, { controls: c, submit, formError }, async () => {
    let now;
    try { now = parseSettings(c.config.value); } catch (err) { throw localError(err); }
    const config = {};
    for (const [k, v] of Object.entries(now)) if (before[k] !== v) config[k] = v;
    for (const k of Object.keys(before)) if (!(k in now)) config[k] = null;
    if (secret && c.secret.value) config[secret] = c.secret.value;
    const body = {};
    if (c.name.value.trim() !== fresh.name) body.name = c.name.value.trim();
    if (Object.keys(config).length) body.config = config;
    if (Object.keys(body).length) await request(`/v1/backup-targets/${t.id}`, { method: 'PATCH', body, ifMatch: etag });
    toast(`Backup target ${c.name.value.trim()} saved.`);
    clear(box);
    await done();
  });
  clear(box, card(`Edit ${fresh.name}`, form));
  c.name.focus();
}

async function deleteTarget(t, done, problemBox) {
  const force = h('input', { id: 'bt-force', type: 'checkbox' });
  const ok = await confirmDialog(`Delete backup target ${t.name}?`,
    'The catalogue forgets it; its directory or bucket is left in place. A target that holds backups is refused unless they are deleted with it.',
    { confirm: 'Delete', danger: true, body: checkField('bt-force', 'Also delete every backup stored on it', force) });
  if (!ok) return;
  clear(problemBox);
  try {
    await request(`/v1/backup-targets/${t.id}${force.checked ? '?force=true' : ''}`, { method: 'DELETE' });
    toast(`Backup target ${t.name} deleted.`);
    await done();
  } catch (err) {
    problemBox.append(errorBox(err));
  }
}

registerPage({
  path: '/backup-targets',
  title: 'Backup targets',
  section: 'Backup',
  permission: 'backup:read',
  order: 30,
  async render(ctx) {
    const admin = ctx.can('backup-target:write');
    const box = h('div', { 'aria-live': 'polite' });
    const editBox = h('div');
    const problemBox = h('div', { 'data-testid': 'target-problem' });
    const load = async () => {
      const targets = await listAll('/v1/backup-targets');
      const names = Object.fromEntries(targets.map((t) => [t.id, t.name]));
      clear(box, table([
        { label: 'Name', cell: (t) => h('strong', {}, t.name) },
        { label: 'Kind', cell: (t) => t.type },
        ...(admin ? [{ label: 'Settings', cell: (t) => [settingsText(t).replaceAll('\n', ', '), ...(t.secrets_set || []).map((s) => ` · ${s}: set`)].join('') || '–' }] : []),
        { label: 'Chunk size', cell: (t) => fmtBytes(t.chunk_size) },
        { label: 'Copies to', cell: (t) => (t.replica_target_id ? names[t.replica_target_id] || t.replica_target_id : '–') },
        ...(admin ? [{
          label: 'Actions',
          cell: (t) => h('div', { class: 'row-actions' },
            h('button', { type: 'button', 'aria-label': `Edit ${t.name}`, onclick: () => editForm(editBox, t, load).catch((err) => toast(err.message, 'bad')) }, 'Edit'),
            h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${t.name}`, onclick: () => deleteTarget(t, load, problemBox) }, 'Delete')),
        }] : []),
      ], targets, {
        caption: 'Backup targets',
        empty: admin ? 'No backup target yet: create one below, then back VMs up to it.' : 'No backup target yet: an administrator creates one.',
        rowAttrs: (t) => ({ 'data-target': t.name }),
      }));
    };
    clear(ctx.main, pageHead('Backup targets'), problemBox, card(null, box), editBox,
      admin ? card('New backup target', createForm(load)) : null);
    await load();
  },
});

