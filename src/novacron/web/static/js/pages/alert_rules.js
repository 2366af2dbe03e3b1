// Alert rules and receivers: list, create (a form per rule kind; the API's refusals next to their
// fields), delete. A webhook's signing secret is write-only: the list says only whether one is set.

import { listAll, post, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, card, confirmDialog, link, pageHead, table, timeEl, toast } from '../ui.js';
import { field, fmtSeconds, onSubmit } from './common.js';
import { MONITORING, fieldError, pill } from './alerts.js';

const KINDS = [
  ['threshold', 'Threshold'],
  ['rate_of_change', 'Rate of change'],
  ['absence', 'Absence'],
  ['anomaly', 'Anomaly'],
];
/** The fields each kind reads (the others are hidden and not sent). */
const KIND_FIELDS = {
  threshold: ['metric', 'function', 'window', 'op', 'value'],
  rate_of_change: ['metric', 'window', 'op', 'value'],
  absence: ['metric', 'window'],
  anomaly: ['metric', 'window', 'op', 'value'],
};
const FUNCTIONS = ['', 'rate', 'increase', 'avg_over_time', 'max_over_time', 'min_over_time'];
const OPS = ['>', '>=', '<', '<=', '==', '!='];
const HINTS = {
  threshold: 'Fires when the series (after the function, if any) compares true for the whole "for" time.',
  rate_of_change: 'Fires on the per-second slope of a gauge over the window (deriv).',
  absence: 'Fires when the series has no sample in the window.',
  anomaly: 'Fires on the anomaly score (0 to 1) of the series named; 0.8 if no value is given.',
};

/** `a=b, c=d` as {a: 'b', c: 'd'}; a part without `=` is a field error. */
function parsePairs(text, name) {
  const out = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf('=');
    if (at < 1) throw fieldError(name, `not name=value: ${part}`);
    out[part.slice(0, at).trim()] = part.slice(at + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return out;
}

function options(list) { return list.map(([v, t]) => h('option', { value: v }, t)); }

function ruleControls(receivers) {
  return {
    name: h('input', { id: 'ar-name', autocomplete: 'off' }),
    kind: h('select', { id: 'ar-kind' }, options(KINDS)),
    metric: h('input', { id: 'ar-metric', autocomplete: 'off', spellcheck: 'false', placeholder: 'novacron_vm_cpu_seconds_total' }),
    matchers: h('input', { id: 'ar-matchers', autocomplete: 'off', spellcheck: 'false', placeholder: 'vm_id=…' }),
    function: h('select', { id: 'ar-function' }, options(FUNCTIONS.map((f) => [f, f || 'none']))),
    window: h('input', { id: 'ar-window', autocomplete: 'off', value: '1m' }),
    op: h('select', { id: 'ar-op' }, options(OPS.map((o) => [o, o]))),
    value: h('input', { id: 'ar-value', type: 'number', step: 'any', inputmode: 'decimal' }),
    for: h('input', { id: 'ar-for', autocomplete: 'off', value: '0s' }),
    severity: h('select', { id: 'ar-severity' }, options([['warning', 'warning'], ['critical', 'critical'], ['info', 'info']])),
    summary: h('input', { id: 'ar-summary', autocomplete: 'off' }),
    receivers: h('select', { id: 'ar-receivers', multiple: true, size: String(Math.min(4, Math.max(2, receivers.length))) },
      receivers.map((r) => h('option', { value: r.id }, `${r.name} (${r.kind})`))),
  };
}

function ruleBody(c) {
  const kind = c.kind.value;
  const body = { name: c.name.value.trim(), kind, for: c.for.value.trim(), severity: c.severity.value };
  const used = KIND_FIELDS[kind];
  if (used.includes('metric') && c.metric.value.trim()) body.metric = c.metric.value.trim();
  if (used.includes('function') && c.function.value) body.function = c.function.value;
  if (used.includes('window')) body.window = c.window.value.trim();
  if (used.includes('op')) body.op = c.op.value;
  if (used.includes('value') && c.value.value !== '') body.value = Number(c.value.value);
  body.matchers = parsePairs(c.matchers.value, 'matchers');
  if (c.summary.value.trim()) body.annotations = { summary: c.summary.value.trim() };
  body.receivers = [...c.receivers.selectedOptions].map((o) => o.value);
  return body;
}

function ruleForm(receivers, done) {
  const c = ruleControls(receivers);
  const hint = h('p', { class: 'hint', id: 'ar-kind-hint' });
  const rows = {
    metric: field('ar-metric', 'Metric', c.metric, 'A series name.'),
    function: field('ar-function', 'Function', c.function, 'rate for counters.'),
    window: field('ar-window', 'Window', c.window, 'The range read, like 30s or 5m.'),
    op: field('ar-op', 'Comparison', c.op),
    value: field('ar-value', 'Value', c.value),
  };
  const showKind = () => {
    const used = KIND_FIELDS[c.kind.value];
    for (const [k, row] of Object.entries(rows)) row.hidden = !used.includes(k);
    hint.textContent = HINTS[c.kind.value];
  };
  c.kind.addEventListener('change', showKind);
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create rule');
  const form = h('form', { novalidate: true, 'aria-label': 'New alert rule' }, formError,
    h('div', { class: 'form-grid' },
      field('ar-name', 'Name', c.name, 'Letters, digits, . _ -'),
      field('ar-kind', 'Kind', c.kind)),
    hint,
    h('div', { class: 'form-grid' }, rows.metric, field('ar-matchers', 'Label filters', c.matchers, 'name=value, comma separated.'),
      rows.function, rows.window, rows.op, rows.value,
      field('ar-for', 'For', c.for, 'How long it must hold to fire, like 1m.'),
      field('ar-severity', 'Severity', c.severity)),
    field('ar-summary', 'Summary', c.summary, 'Shown in the notification; may use {{ $value }} and {{ $labels.name }}.'),
    field('ar-receivers', 'Receivers', c.receivers, receivers.length ? 'Where it is sent (Ctrl/Cmd-click for several).' : 'No receivers yet: the alert shows here only.'),
    submit);
  showKind();
  onSubmit(form, { controls: c, submit, formError, anyError: true }, async () => {
    const rule = await post('/v1/alert-rules', ruleBody(c), { idempotent: true });
    form.reset();
    showKind();
    toast(`Alert rule ${rule.name} created.`);
    await done();
  });
  return form;
}

async function removeThing(kind, path, item, load) {
  if (!(await confirmDialog(`Delete ${kind} ${item.name}?`, 'This cannot be undone.', { confirm: 'Delete', danger: true }))) return;
  try {
    await request(path, { method: 'DELETE' });
    toast(`${kind[0].toUpperCase()}${kind.slice(1)} ${item.name} deleted.`);
    await load();
  } catch (err) { toast(err.message, 'bad'); }
}

registerPage({
  path: '/alert-rules',
  title: 'Alert rules',
  section: MONITORING,
  permission: 'alert:read',
  order: 30,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const canWrite = ctx.can('alert:write');
    const receivers = await listAll('/v1/alert-receivers', { sort: 'name' });
    const names = Object.fromEntries(receivers.map((r) => [r.id, r.name]));
    const toggle = async (r) => {
      try {
        await request(`/v1/alert-rules/${r.id}`, { method: 'PATCH', body: { enabled: !r.enabled } });
        toast(`Rule ${r.name} ${r.enabled ? 'disabled: its alerts resolve' : 'enabled'}.`);
        await load();
      } catch (err) { toast(err.message, 'bad'); }
    };
    const load = async () => {
      const rules = await listAll('/v1/alert-rules', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (r) => h('strong', {}, r.name) },
        { label: 'Kind', cell: (r) => r.kind.replace(/_/g, ' ') },
        { label: 'Expression', cell: (r) => h('code', {}, r.expr) },
        { label: 'For', cell: (r) => (r.for_s ? fmtSeconds(r.for_s) : 'at once') },
        { label: 'Severity', cell: (r) => pill(r.severity, { critical: 'bad', warning: 'warn' }[r.severity]) },
        { label: 'Receivers', cell: (r) => r.receiver_ids.map((id) => names[id] || id.slice(0, 8)).join(', ') || '–' },
        { label: 'State', cell: (r) => pill(r.enabled ? 'enabled' : 'disabled', r.enabled ? 'ok' : 'idle') },
        ...(canWrite ? [{
          label: 'Actions',
          cell: (r) => h('div', { class: 'row-actions' },
            h('button', { type: 'button', 'aria-label': `${r.enabled ? 'Disable' : 'Enable'} rule ${r.name}`, onclick: () => toggle(r) }, r.enabled ? 'Disable' : 'Enable'),
            h('button', { type: 'button', class: 'danger', 'aria-label': `Delete rule ${r.name}`, onclick: () => removeThing('rule', `/v1/alert-rules/${r.id}`, r, load) }, 'Delete')),
        }] : []),
      ], rules, { caption: 'Alert rules', empty: 'No alert rules yet.', rowAttrs: (r) => ({ 'data-rule': r.name }) }));
    };
    clear(ctx.main, pageHead('Alert rules', link('#/alerts', 'Alerts'), link('#/alert-receivers', 'Receivers')),
      card(null, box),
      canWrite ? card('New alert rule', ruleForm(receivers, load)) : null);
    await load();
  },
});

function receiverForm(done) {
  const c = {
    name: h('input', { id: 'rcv-name', autocomplete: 'off' }),
    kind: h('select', { id: 'rcv-kind' }, options([['webhook', 'Webhook'], ['email', 'Email']])),
    url: h('input', { id: 'rcv-url', type: 'url', autocomplete: 'off', placeholder: 'https://…' }),
    signing_secret: h('input', { id: 'rcv-signing_secret', type: 'password', autocomplete: 'new-password' }),
    email_to: h('input', { id: 'rcv-email_to', type: 'email', autocomplete: 'off' }),
    group_by: h('input', { id: 'rcv-group_by', autocomplete: 'off', placeholder: 'alertname, vm_id' }),
    repeat_interval_s: h('input', { id: 'rcv-repeat_interval_s', type: 'number', inputmode: 'numeric', value: '14400' }),
  };
  const rows = {
    url: field('rcv-url', 'URL', c.url, 'Where each notification is POSTed.'),
    signing_secret: field('rcv-signing_secret', 'Signing secret', c.signing_secret, 'At least 16 characters; it signs each POST (NovaCron-Signature) and is never shown again.'),
    email_to: field('rcv-email_to', 'Send to', c.email_to),
  };
  const showKind = () => {
    const webhook = c.kind.value === 'webhook';
    rows.url.hidden = !webhook;
    rows.signing_secret.hidden = !webhook;
    rows.email_to.hidden = webhook;
  };
  c.kind.addEventListener('change', showKind);
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create receiver');
  const form = h('form', { novalidate: true, 'aria-label': 'New receiver' }, formError,
    h('div', { class: 'form-grid' },
      field('rcv-name', 'Name', c.name, 'Letters, digits, . _ -'),
      field('rcv-kind', 'Kind', c.kind)),
    rows.url, rows.signing_secret, rows.email_to,
    h('div', { class: 'form-grid' },
      field('rcv-group_by', 'Group by', c.group_by, 'Labels, comma separated; empty: one notification per alert.'),
      field('rcv-repeat_interval_s', 'Repeat every (s)', c.repeat_interval_s)),
    submit);
  showKind();
  onSubmit(form, { controls: c, submit, formError, anyError: true }, async () => {
    const body = { name: c.name.value.trim(), kind: c.kind.value };
    if (body.kind === 'webhook') {
      body.url = c.url.value.trim();
      if (c.signing_secret.value) body.signing_secret = c.signing_secret.value;
    } else body.email_to = c.email_to.value.trim();
    body.group_by = c.group_by.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (c.repeat_interval_s.value !== '') body.repeat_interval_s = Number(c.repeat_interval_s.value);
    const r = await post('/v1/alert-receivers', body, { idempotent: true });
    form.reset();
    showKind();
    toast(`Receiver ${r.name} created.`);
    await done();
  });
  return form;
}

registerPage({
  path: '/alert-receivers',
  title: 'Alert receivers',
  section: MONITORING,
  permission: 'alert:read',
  order: 40,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const canWrite = ctx.can('alert-receiver:write');
    const load = async () => {
      const receivers = await listAll('/v1/alert-receivers', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (r) => h('strong', {}, r.name) },
        { label: 'Kind', cell: (r) => r.kind },
        { label: 'Target', cell: (r) => (r.kind === 'webhook' ? r.url : r.email_to) },
        { label: 'Signed', cell: (r) => (r.kind === 'webhook' ? (r.signing_secret_set ? 'yes (secret set)' : 'no') : '–') },
        { label: 'Grouping', cell: (r) => `${r.group_by.join(', ') || 'each alert'} · repeat every ${fmtSeconds(r.repeat_interval_s)}` },
        { label: 'Filters', cell: (r) => r.matchers.map((m) => `${m.name}${m.op}${m.value}`).join(', ') || '–' },
        { label: 'Created', cell: (r) => timeEl(r.created_at) },
        ...(canWrite ? [{
          label: 'Delete',
          cell: (r) => h('button', { type: 'button', class: 'danger', 'aria-label': `Delete receiver ${r.name}`, onclick: () => removeThing('receiver', `/v1/alert-receivers/${r.id}`, r, load) }, 'Delete'),
        }] : []),
      ], receivers, { caption: 'Receivers', empty: 'No receivers yet.', rowAttrs: (r) => ({ 'data-receiver': r.name }) }));
    };
    clear(ctx.main, pageHead('Alert receivers', link('#/alert-rules', 'Rules')),
      card(null, box),
      canWrite ? card('New receiver', receiverForm(load)) : null);
    await load();
  },
});
