// Live configuration (issue 19): the settings operators change while the platform runs. Each
// field shows its value in force and whether it was set live or comes from start-up; a change is
// sent as one new version (If-Match: a stale page is refused, not silently overwritten), a bad
// value is shown under its field with the API's reason, and the history rolls back.

import { ApiError, get, post, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, errorBox, pageHead, table, timeEl, toast } from '../ui.js';
import { field, fieldSentence } from './common.js';

const idOf = (key) => `cfg-${key.replace('.', '-')}`;

function control(info, value) {
  const id = idOf(info.key);
  if (info.enum) {
    return h('select', { id, 'data-key': info.key }, info.enum.map((v) => h('option', { value: v, selected: v === value }, v)));
  }
  const attrs = { id, 'data-key': info.key, type: 'number', step: 'any', value: String(value), inputmode: 'decimal' };
  if (info.minimum !== null) attrs.min = String(info.minimum);
  if (info.maximum !== null) attrs.max = String(info.maximum);
  return h('input', attrs);
}

const valueOf = (info, el) => (info.enum ? el.value : Number(el.value));

/** The form: one field per live setting, grouped by section; sends only what was changed. */
function settingsForm(config, etag, reload) {
  const controls = {};
  const flat = (key) => { const [s, k] = key.split('.'); return config.effective[s][k]; };
  const isLive = (key) => { const [s, k] = key.split('.'); return k in (config.document[s] || {}); };
  const groups = {};
  for (const info of config.settings) {
    const section = info.key.split('.')[0];
    controls[info.key] = control(info, flat(info.key));
    const hint = `${info.description}. ${isLive(info.key) ? 'Set live.' : 'Start-up value.'}`;
    (groups[section] ||= []).push(field(idOf(info.key), info.key.split('.')[1].replaceAll('_', ' '), controls[info.key], hint));
  }
  const reason = h('input', { id: 'cfg-reason', autocomplete: 'off', maxlength: 500, placeholder: 'why (kept in the history)' });
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Save a new version');
  const form = h('form', { novalidate: true, 'aria-label': 'Live settings' }, formError,
    Object.entries(groups).map(([section, fields]) => h('fieldset', {}, h('legend', {}, section), h('div', { class: 'form-grid' }, fields))),
    field('cfg-reason', 'Reason', reason), submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(formError);
    for (const el of Object.values(controls)) {
      el.removeAttribute('aria-invalid');
      clear(document.getElementById(`${el.id}-error`));
    }
    const body = {};
    for (const info of config.settings) {
      const value = valueOf(info, controls[info.key]);
      if (value === flat(info.key)) continue;
      const [s, k] = info.key.split('.');
      (body[s] ||= {})[k] = value;
    }
    if (!Object.keys(body).length) { toast('Nothing changed.'); return; }
    body.reason = reason.value.trim();
    submit.disabled = true;
    try {
      const r = await request('/v1/config', { method: 'PATCH', body, ifMatch: etag, idempotent: true });
      toast(`Version ${r.data.version} saved: applied on every replica.`);
      await reload();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      let placed = 0;
      for (const e of err.problem?.errors || []) {
        const el = controls[String(e.field).replace(/^body\./, '')];
        if (!el) continue;
        el.setAttribute('aria-invalid', 'true');
        document.getElementById(`${el.id}-error`).textContent = e.reason;
        if (!placed) el.focus();
        placed += 1;
      }
      if (!placed) formError.append(errorBox(err));
      else if (err.status !== 422) formError.append(errorBox({ problem: err.problem, message: (err.problem?.errors || []).map(fieldSentence).join('; ') }));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

const setText = (doc) => Object.entries(doc).flatMap(([s, keys]) => Object.entries(keys).map(([k, v]) => `${s}.${k}=${v}`)).join(', ') || 'start-up values';

function historyTable(items, current, rollback, compare) {
  return table([
    { label: 'Version', cell: (v) => h('strong', {}, String(v.version)) },
    { label: 'When', cell: (v) => (v.created_at ? timeEl(v.created_at) : 'at start') },
    { label: 'Author', cell: (v) => v.author },
    { label: 'Reason', cell: (v) => v.reason || '–' },
    { label: 'Set', cell: (v) => h('span', { class: 'mono' }, setText(v.document)) },
    { label: 'Actions', cell: (v) => (v.version === current ? badge('current') : h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: () => compare(v) }, 'Compare'),
      h('button', { type: 'button', onclick: () => rollback(v) }, 'Roll back to this'))) },
  ], items, { caption: 'Versions, newest first', empty: 'No change yet: every value is the start-up one.', rowAttrs: (v) => ({ 'data-version': v.version }) });
}

registerPage({
  path: '/settings',
  title: 'Live settings',
  section: 'Administration',
  permission: 'config:read',
  order: 60,
  async render(ctx) {
    const formBox = h('div');
    const diffBox = h('div', { 'data-testid': 'config-diff', 'aria-live': 'polite' });
    const historyBox = h('div', { 'data-testid': 'config-history' });
    const status = h('p', { class: 'muted', 'data-testid': 'config-version' });
    const load = async () => {
      const r = await request('/v1/config');
      const config = r.data;
      clear(status, `Version ${config.version}; this replica runs version ${config.applied_version}.`);
      clear(formBox, ctx.can('config:write') ? settingsForm(config, r.etag, load) : table([
        { label: 'Setting', cell: (s) => s.key },
        { label: 'Value', cell: (s) => String(config.effective[s.key.split('.')[0]][s.key.split('.')[1]]) },
      ], config.settings, { caption: 'Live settings' }));
      const history = await get('/v1/config/history?limit=50');
      const rollback = async (v) => {
        if (!(await confirmDialog(`Roll back to version ${v.version}?`, 'A new version with its values is applied on every replica; the history keeps every version.', { confirm: 'Roll back' }))) return;
        try {
          const done = await post('/v1/config/rollback', { version: v.version, reason: `rollback to ${v.version} from the dashboard` }, { idempotent: true });
          toast(`Version ${done.version} restores version ${v.version}.`);
          await load();
        } catch (err) { toast(err.message, 'bad'); }
      };
      const compare = async (v) => {
        const d = await get(`/v1/config/diff?from=${v.version}&to=${config.version}`);
        clear(diffBox, card(`Version ${v.version} → ${config.version}`, table([
          { label: 'Setting', cell: (c) => c.key },
          { label: `In ${v.version}`, cell: (c) => String(c.old) },
          { label: `In ${config.version}`, cell: (c) => String(c.new) },
        ], d.changes, { caption: 'What differs', empty: 'No difference.' })));
      };
      // version 0 is no row: it is the start-up values, which a rollback may restore too
      const startUp = { version: 0, created_at: null, author: '–', reason: 'start-up values', document: {} };
      const items = history.items.length ? [...history.items, startUp] : [];
      clear(historyBox, historyTable(items, config.version, rollback, compare));
    };
    clear(ctx.main, pageHead('Live settings'),
      h('p', { class: 'muted' }, 'Scheduler policy, login throttle, token lifetime, webhook retries and controller intervals: changed here, validated, versioned, audited, and applied on every replica without a restart. Addresses, paths and engines stay in the environment.'),
      status, card(null, formBox), card('History', historyBox), diffBox);
    await load();
  },
});
