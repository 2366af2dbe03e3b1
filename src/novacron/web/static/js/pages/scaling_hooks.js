// A scaling group's lifecycle hooks (issue 15), on the group's page: the hooks (name, transition,
// receiver URL, timeout, default result; never the secret, which the API does not return) with a
// form to add one (the URL is checked by the egress guard: a refused address shows next to the
// field) and a delete button each. The members table of the group page shows what a member
// waits on (`waitingCell`).

import { get, post, request } from '../api.js';
import { h, clear, confirmDialog, table, timeEl, toast } from '../ui.js';
import { field, onSubmit } from './common.js';

/** What a pending member waits on: the hook, until when, and whether the event reached its receiver. */
export function waitingCell(m) {
  const w = m.waiting_on;
  if (!w) return '–';
  const told = w.delivered ? 'delivered' : `not delivered yet${w.delivery_error ? ` (${w.delivery_error})` : ''}`;
  return h('span', { 'data-waiting': w.hook }, `hook ${w.hook} until `, w.deadline ? timeEl(w.deadline) : '–', ` · ${told}`);
}

function hookForm(base, done) {
  const c = {
    name: h('input', { id: 'hook-name', autocomplete: 'off' }),
    transition: h('select', { id: 'hook-transition' },
      h('option', { value: 'launching' }, 'launching (before a new member joins)'),
      h('option', { value: 'terminating' }, 'terminating (after the drain, before the delete)')),
    url: h('input', { id: 'hook-url', type: 'url', autocomplete: 'off', placeholder: 'https://' }),
    secret: h('input', { id: 'hook-secret', type: 'password', autocomplete: 'new-password' }),
    timeout_s: h('input', { id: 'hook-timeout', type: 'number', min: 1, max: 7200, value: '300', inputmode: 'numeric' }),
    default_result: h('select', { id: 'hook-default' },
      h('option', { value: 'continue' }, 'continue'), h('option', { value: 'abandon' }, 'abandon')),
  };
  const formError = h('div', { role: 'alert', 'data-testid': 'hook-error' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add hook');
  const form = h('form', { novalidate: true, 'aria-label': 'New lifecycle hook' }, formError,
    field('hook-name', 'Name', c.name, 'Hooks of a transition are called in name order.'),
    field('hook-transition', 'When', c.transition),
    field('hook-url', 'Receiver URL', c.url, 'Gets a signed POST (NovaCron-Signature); answers with the token at …/lifecycle-actions.'),
    field('hook-secret', 'Signing secret', c.secret, '16 characters or more; never shown again.'),
    field('hook-timeout', 'Timeout (seconds)', c.timeout_s),
    field('hook-default', 'Result when no answer came', c.default_result),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = {
      name: c.name.value.trim(), transition: c.transition.value, url: c.url.value.trim(),
      secret: c.secret.value, timeout_s: Number(c.timeout_s.value), default_result: c.default_result.value,
    };
    const hook = await post(`${base}/lifecycle-hooks`, body, { idempotent: true });
    toast(`Lifecycle hook ${hook.name} added.`);
    form.reset();
    await done();
  });
  return form;
}

/** The card's parts: the hooks table (re-read by `load`) and, for a writer, the form. */
export function hooksCard(base, canWrite) {
  const box = h('div', { 'aria-live': 'polite' });
  const remove = async (hook) => {
    if (!(await confirmDialog(`Delete lifecycle hook ${hook.name}?`, 'Members waiting on it get its default result at the deadline.', { confirm: 'Delete', danger: true }))) return;
    try {
      await request(`${base}/lifecycle-hooks/${hook.id}`, { method: 'DELETE' });
      toast(`Lifecycle hook ${hook.name} deleted.`);
    } catch (err) { toast(err.message, 'bad'); }
    await load();
  };
  const load = async () => {
    const hooks = await get(`${base}/lifecycle-hooks`);
    clear(box, table([
      { label: 'Name', cell: (x) => x.name },
      { label: 'When', cell: (x) => x.transition },
      { label: 'Receiver', cell: (x) => h('code', {}, x.url) },
      { label: 'Timeout', cell: (x) => `${x.timeout_s} s` },
      { label: 'Without an answer', cell: (x) => x.default_result },
      canWrite ? { label: 'Actions', cell: (x) => { const b = h('button', { type: 'button', class: 'danger' }, 'Delete', h('span', { class: 'visually-hidden' }, ` hook ${x.name}`)); b.addEventListener('click', () => remove(x)); return b; } } : null,
    ].filter(Boolean), hooks, { caption: 'Lifecycle hooks', empty: 'No lifecycle hooks: members join and leave without waiting.', rowAttrs: (x) => ({ 'data-hook': x.name }) }));
  };
  return { box, form: canWrite ? hookForm(base, load) : null, load };
}
