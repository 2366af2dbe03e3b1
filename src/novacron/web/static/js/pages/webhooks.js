// Webhooks (issue 19): the tenant's URLs that receive its events, signed as Standard Webhooks
// specifies. A new (or rotated) signing secret is shown once, in a box on this page only; the
// delivery log of a subscription opens under the list, with a retry for failed deliveries.

import { listAll, post, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, pageHead, table, timeEl, toast } from '../ui.js';
import { field, onSubmit } from './common.js';

const split = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

/** The one showing of a signing secret, with what the receiver does with it. */
function secretBox(hook) {
  if (!hook.secret) {
    return h('div', { class: 'alert info', role: 'status', 'data-testid': 'new-secret' },
      `Webhook ${hook.name} was saved, but its secret was lost on the way (the API shows it only once). Rotate it to get a new one.`);
  }
  const input = h('input', { id: 'new-secret-value', readonly: true, value: hook.secret, class: 'mono', 'data-testid': 'new-secret-value', spellcheck: 'false', autocomplete: 'off' });
  const copy = async () => {
    input.select();
    try { await navigator.clipboard.writeText(hook.secret); } catch { document.execCommand('copy'); }
    toast('Secret copied.');
  };
  return h('div', { class: 'alert info', role: 'status', 'data-testid': 'new-secret' },
    h('p', {}, h('strong', {}, `Signing secret of ${hook.name}.`)),
    field('new-secret-value', 'Secret', input),
    h('p', {}, h('strong', {}, 'Store it now: it will not be shown again. '),
      'Your receiver checks each message\'s ', h('code', {}, 'webhook-signature'),
      ' with it (any Standard Webhooks library does).'),
    h('button', { type: 'button', class: 'primary', onclick: copy }, 'Copy secret'));
}

function hookForm(shown, done) {
  const c = {
    name: h('input', { id: 'hook-name', autocomplete: 'off', autocapitalize: 'none', placeholder: 'ops-chat' }),
    url: h('input', { id: 'hook-url', type: 'url', autocomplete: 'off', placeholder: 'https://hooks.example.com/novacron' }),
    event_types: h('input', { id: 'hook-events', autocomplete: 'off', value: 'vm.*' }),
    resource_types: h('input', { id: 'hook-resources', autocomplete: 'off', placeholder: 'vm, volume' }),
  };
  for (let i = 0; i < 32; i += 1) { c[`event_types[${i}]`] = c.event_types; c[`resource_types[${i}]`] = c.resource_types; }
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create webhook');
  const form = h('form', { novalidate: true, 'aria-label': 'New webhook' }, formError,
    h('div', { class: 'form-grid' },
      field('hook-name', 'Name', c.name, '1-64 lowercase letters, digits, . _ -'),
      field('hook-url', 'URL', c.url, 'Where each event is POSTed; internal addresses are refused.'),
      field('hook-events', 'Event types', c.event_types, 'Comma-separated: vm.created, vm.*, backup.*'),
      field('hook-resources', 'Resource types (optional)', c.resource_types, 'Only events about these: vm, volume…')),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { name: c.name.value.trim(), url: c.url.value.trim(), event_types: split(c.event_types.value) };
    const kinds = split(c.resource_types.value);
    if (kinds.length) body.resource_types = kinds;
    const hook = await post('/v1/webhooks', body, { idempotent: true });
    form.reset();
    clear(shown, secretBox(hook));
    shown.scrollIntoView({ block: 'nearest' });
    await done();
  });
  return form;
}

function deliveriesTable(hook, rows, retry) {
  return table([
    { label: 'Message', cell: (d) => h('span', { class: 'mono' }, d.id) },
    { label: 'Event', cell: (d) => d.event_type },
    { label: 'State', cell: (d) => badge(d.state) },
    { label: 'Attempts', cell: (d) => String(d.attempts) },
    { label: 'Answer', cell: (d) => (d.last_status ? `HTTP ${d.last_status}` : d.last_error || '–') },
    { label: 'When', cell: (d) => timeEl(d.delivered_at || d.created_at) },
    { label: 'Retry', cell: (d) => (d.state === 'failed' ? h('button', { type: 'button', onclick: () => retry(d) }, 'Retry') : '–') },
  ], rows, { caption: `Deliveries of ${hook.name}, newest first`, empty: 'Nothing sent yet.', rowAttrs: (d) => ({ 'data-delivery': d.id }) });
}

registerPage({
  path: '/webhooks',
  title: 'Webhooks',
  section: 'Administration',
  permission: 'webhook:read',
  order: 46,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const shown = h('div');
    const log = h('div', { 'data-testid': 'deliveries' });
    const act = async (what, fn) => {
      try { await fn(); toast(what); await load(); } catch (err) { toast(err.message, 'bad'); }
    };
    const showLog = async (hook) => {
      const retry = (d) => act(`Delivery ${d.id} queued again.`, () => post(`/v1/webhooks/${hook.id}/deliveries/${d.id}/retry`, {}));
      clear(log, card(`Deliveries of ${hook.name}`, deliveriesTable(hook, await listAll(`/v1/webhooks/${hook.id}/deliveries`), retry)));
    };
    const setState = (w, state) => act(`Webhook ${w.name} ${state === 'active' ? 'resumed' : 'paused'}.`,
      () => request(`/v1/webhooks/${w.id}`, { method: 'PATCH', body: { state } }));
    const remove = async (w) => {
      if (!(await confirmDialog(`Delete ${w.name}?`, 'Nothing more is sent to its URL, and its delivery log goes too.', { confirm: 'Delete', danger: true }))) return;
      await act(`Webhook ${w.name} deleted.`, () => request(`/v1/webhooks/${w.id}`, { method: 'DELETE' }));
      clear(log);
    };
    const rotate = async (w) => {
      if (!(await confirmDialog(`New secret for ${w.name}?`, 'The old secret keeps signing beside the new one for a day, so your receiver can switch.', { confirm: 'Rotate' }))) return;
      try {
        clear(shown, secretBox(await post(`/v1/webhooks/${w.id}/rotate-secret`, { keep_previous_s: 86400 })));
        await load();
      } catch (err) { toast(err.message, 'bad'); }
    };
    const actions = (w) => h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: () => setState(w, w.state === 'active' ? 'paused' : 'active') }, w.state === 'active' ? 'Pause' : 'Resume'),
      h('button', { type: 'button', onclick: () => act(`Test message queued for ${w.name}.`, async () => { await post(`/v1/webhooks/${w.id}/test`, {}); await showLog(w); }) }, 'Send test'),
      h('button', { type: 'button', onclick: () => showLog(w) }, 'Deliveries'),
      h('button', { type: 'button', onclick: () => rotate(w) }, 'Rotate secret'),
      h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${w.name}`, onclick: () => remove(w) }, 'Delete'));
    const load = async () => {
      const hooks = await listAll('/v1/webhooks', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (w) => h('strong', {}, w.name) },
        { label: 'URL', cell: (w) => h('span', { class: 'mono' }, w.url) },
        { label: 'Events', cell: (w) => w.event_types.join(', ') },
        { label: 'State', cell: (w) => h('span', {}, badge(w.state), w.paused_reason ? ` ${w.paused_reason}` : '') },
        { label: 'Actions', cell: actions },
      ], hooks, { caption: 'Webhook subscriptions', empty: 'No webhooks yet.', rowAttrs: (w) => ({ 'data-hook': w.name }) }));
    };
    clear(ctx.main, pageHead('Webhooks'),
      h('p', { class: 'muted' }, 'Your events, POSTed to your URLs as they happen: signed, retried with backoff, paused after repeated failures, and logged.'),
      shown, card(null, box), log, ctx.can('webhook:write') ? card('New webhook', hookForm(shown, load)) : null);
    await load();
  },
});
