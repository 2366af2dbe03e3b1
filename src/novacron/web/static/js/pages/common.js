// Pieces several pages share: host names, task progress rows, event lines.

import { get, listAll } from '../api.js';
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
  return page.items.filter((t) => t.state === 'queued' || t.state === 'running');
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
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(formError);
    for (const [name, el] of Object.entries(controls)) {
      el.removeAttribute('aria-invalid');
      document.getElementById(`${idPrefix}-${name}-error`).textContent = '';
    }
    const values = Object.fromEntries(Object.entries(controls).map(([k, el]) => [k, el.value]));
    button.disabled = true;
    try {
      await submit(values);
      form.reset();
    } catch (err) {
      for (const e of err.problem?.errors || []) {
        const name = String(e.field).replace(/^body\./, '').split('.')[0];
        if (controls[name]) {
          controls[name].setAttribute('aria-invalid', 'true');
          document.getElementById(`${idPrefix}-${name}-error`).textContent = e.reason;
        }
      }
      formError.append(errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
