// Pieces several pages share: host names, task progress rows, event lines.

import { ApiError, get, listAll } from '../api.js';
import { loadSchema } from '../formcheck.js';
import { h, clear, badge, progress, timeEl, link, errorBox } from '../ui.js';

/** {id: name} of the hosts the caller may see (empty when it may not read hosts). */
export async function hostNames(can) {
  if (!can('host:read')) return {};
  const hosts = await listAll('/v1/hosts');
  return Object.fromEntries(hosts.map((x) => [x.id, x.name]));
}

export async function activeTasks(params = {}) {
  const q = new URLSearchParams({ limit: '100', sort: '-created_at', ...params });
  const page = await get(`/v1/tasks?${q}`);
  return page.items.filter((t) => t.state === 'pending' || t.state === 'running');
}

export function taskLine(t) {
  const target = t.resource_type === 'vm' ? link(`#/vms/${t.resource_id}`, t.resource_id.slice(0, 8)) : t.resource_id.slice(0, 8);
  return h('li', { class: 'stack', 'data-task': t.id },
    h('div', {}, h('strong', {}, t.kind), ' ', target, ' ', badge(t.state), ' ',
      h('span', { class: 'muted' }, t.current_step ? `step ${t.current_step}` : '')),
    progress(`${t.kind} progress`, t.progress));
}

export function eventLine(e) {
  const d = e.data || {};
  const detail = d.state || d.name || d.step || '';
  const pages = { vm: 'vms', task: 'tasks' };
  const label = d.name || e.resource_id.slice(0, 13);
  const target = pages[e.resource_type]
    ? link(`#/${pages[e.resource_type]}/${e.resource_id}`, `${e.resource_type} ${label}`)
    : h('span', {}, `${e.resource_type} ${label}`);
  return h('li', {}, timeEl(e.time), h('strong', {}, e.type), target,
    detail && detail !== d.name ? h('span', { class: 'muted' }, String(detail)) : null,
    d.progress !== undefined ? h('span', { class: 'muted' }, `${d.progress}%`) : null);
}


/**
 * A small create form. fields: [{name, label, type: 'text'|'password'|'select'|'textarea', options, hint}].
 * submit(values) calls the API; a problem+json answer puts each `errors[].reason` next to its field.
 */
export function apiForm(idPrefix, fields, submitLabel, submit) {
  const controls = {};
  const formError = h('div', { role: 'alert' });
  const button = h('button', { type: 'submit', class: 'primary' }, submitLabel);
  const rows = fields.map((f) => {
    const id = `${idPrefix}-${f.name}`;
    let el;
    if (f.type === 'select') {
      el = h('select', { id, name: f.name }, f.options.map(([v, t]) => h('option', { value: v }, t)));
    } else if (f.type === 'textarea') {
      el = h('textarea', { id, name: f.name });
    } else {
      el = h('input', { id, name: f.name, type: f.type || 'text', autocomplete: f.type === 'password' ? 'new-password' : 'off' });
    }
    el.setAttribute('aria-describedby', `${id}-error${f.hint ? ` ${id}-hint` : ''}`);
    controls[f.name] = el;
    return h('div', { class: 'field' }, h('label', { for: id }, f.label), el,
      f.hint ? h('div', { class: 'hint', id: `${id}-hint` }, f.hint) : null,
      h('div', { class: 'error', id: `${id}-error` }));
  });
  const form = h('form', { novalidate: true }, formError, rows, button);
  // these forms have always shown every error (a failed fetch too), not only the API's
  onSubmit(form, { controls, submit: button, formError, anyError: true }, async () => {
    await submit(Object.fromEntries(Object.entries(controls).map(([k, el]) => [k, el.value])));
    form.reset();
  });
  return form;
}

/**
 * Run `action` when `form` is submitted: the old errors cleared, `submit` disabled meanwhile, an API
 * refusal put next to its fields and into `formError`; any other error propagates (unless
 * `anyError`). `controls`: a control map, or several (all cleared); the errors go to the first,
 * or to the one `action` last passed to its argument (a form whose later step has other fields).
 */
export function onSubmit(form, { controls, submit, formError, anyError = false }, action) {
  const maps = [].concat(controls);
  // the schema the API's request() checks writes against, read now so a submit waits for nothing
  loadSchema();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(formError);
    maps.forEach(clearFieldErrors);
    let errorsTo = maps[0];
    submit.disabled = true;
    try {
      await action((m) => { errorsTo = m; });
    } catch (err) {
      if (!anyError && !(err instanceof ApiError)) throw err;
      const placed = showFieldErrors(err, errorsTo);
      // a field's reason shows once, under the field; the banner only says what no field shows
      const left = (err?.problem?.errors || []).filter((e) => !placed.has(e));
      if (!placed.size) formError.append(errorBox(err));
      else if (left.length) formError.append(errorBox({ problem: err.problem, message: left.map(fieldSentence).join('; ') }));
    } finally {
      submit.disabled = false;
    }
  });
}

/** A labelled control with its hint and the slot its API error goes into (`<id>-error`). */
export function field(id, label, control, hint) {
  control.setAttribute('aria-describedby', `${hint ? `${id}-hint ` : ''}${id}-error`);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control,
    hint ? h('div', { class: 'hint', id: `${id}-hint` }, hint) : null,
    h('div', { class: 'error', id: `${id}-error` }));
}

export function checkField(id, label, control) {
  return h('div', { class: 'field' }, h('label', { class: 'check', for: id }, control, label),
    h('div', { class: 'error', id: `${id}-error` }));
}

export function clearFieldErrors(controls) {
  for (const el of Object.values(controls)) {
    el.removeAttribute('aria-invalid');
    const slot = document.getElementById(`${el.id}-error`);
    if (slot) slot.textContent = '';
  }
}

/**
 * Put each problem+json `errors[].reason` next to the control its field names: `controls` maps the
 * API's field (`name` for `body.name`, `dns_servers` for `body.dns_servers.2`) to the element.
 * Focuses the first; returns the set of the errors placed.
 */
export function showFieldErrors(err, controls) {
  const placed = new Set();
  for (const e of err?.problem?.errors || []) {
    const key = String(e.field).replace(/^(body|query|path)\./, '').split('.')[0];
    const el = controls[key];
    const slot = el && document.getElementById(`${el.id}-error`);
    if (!slot) continue;
    el.setAttribute('aria-invalid', 'true');
    slot.textContent = slot.textContent ? `${slot.textContent}; ${e.reason}` : e.reason;
    if (!placed.size) el.focus();
    placed.add(e);
  }
  return placed;
}

/** A problem's field error as a sentence: "name: use 1-63 lowercase letters…" (no `body.`). */
export function fieldSentence(e) {
  const name = String(e.field || '').replace(/^(body|query|path|header)\./, '');
  return name && name !== 'body' ? `${name}: ${e.reason}` : e.reason;
}

/** Running tasks of the given kinds (prefix match), as progress lines; re-read on task events. */
export async function taskBox(box, kinds) {
  const tasks = (await activeTasks()).filter((t) => kinds.some((k) => t.kind.startsWith(k)));
  clear(box, tasks.length ? h('ul', { class: 'events' }, tasks.map(taskLine)) : null);
}

/** Seconds as the largest sensible unit: 90 -> "1.5 min". */
export function fmtSeconds(s) {
  if (s === null || s === undefined) return '–';
  if (s < 120) return `${Number(s).toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}
