// Alerts and silences: the alerts pending, firing or lately resolved (live from the event stream),
// and the silences that mute them: create one from an alert (its labels prefilled), list, expire.

import { get, post, request } from '../api.js';
import { subscribe } from '../live.js';
import { addSection, registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, link, pageHead, table, throttle, timeEl, toast, ago } from '../ui.js';
import { field, onSubmit } from './common.js';

export const MONITORING = 'Monitoring';
addSection(MONITORING, { before: 'Infrastructure' });

/** Labels the platform or vmalert sets on every alert: shown apart, never silenced on by hand. */
const ROUTING = new Set(['alertname', 'alertgroup', 'severity', 'tenant_id', 'novacron_scope', 'novacron_rule_id', 'novacron_receivers']);
const SEVERITY_TONE = { critical: 'bad', warning: 'warn', info: 'info' };
const ALERT_TONE = { firing: 'bad', pending: 'warn', resolved: 'ok' };

/** A state badge in the tone given (alert states read differently from a VM's). */
export function pill(text, toneName) {
  return h('span', { class: `badge ${toneName || 'info'}`, 'data-state': text }, text);
}

export function labelText(labels) {
  return Object.entries(labels || {}).filter(([k]) => !ROUTING.has(k)).map(([k, v]) => `${k}=${v}`).join(', ');
}

/** The matcher lines a silence of this alert starts from: its own labels, exactly. */
function silenceLink(a) {
  const q = new URLSearchParams();
  q.append('m', `alertname=${a.name}`);
  if (a.rule_id) q.append('m', `novacron_rule_id=${a.rule_id}`);
  for (const [k, v] of Object.entries(a.labels || {})) if (!ROUTING.has(k)) q.append('m', `${k}=${v}`);
  return `#/silences?${q}`;
}

registerPage({
  path: '/alerts',
  title: 'Alerts',
  section: MONITORING,
  permission: 'alert:read',
  order: 10,
  async render(ctx) {
    const state = h('select', { id: 'alert-state' }, h('option', { value: '' }, 'any'),
      ['firing', 'pending', 'resolved'].map((s) => h('option', { value: s, selected: ctx.query.get('state') === s }, s)));
    const box = h('div', { 'aria-live': 'polite' });
    const canSilence = ctx.can('alert:write');
    clear(ctx.main, pageHead('Alerts', link('#/alert-rules', 'Rules'), link('#/silences', 'Silences')), card(null,
      h('div', { class: 'filters' }, h('div', { class: 'field' }, h('label', { for: 'alert-state' }, 'State'), state)), box));
    const load = async () => {
      const q = state.value ? `?state=${state.value}` : '';
      const { items } = await get(`/v1/alerts${q}`);
      const order = { firing: 0, pending: 1, resolved: 2 };
      items.sort((a, b) => order[a.state] - order[b.state] || String(b.active_at).localeCompare(String(a.active_at)));
      clear(box, table([
        { label: 'Alert', cell: (a) => h('strong', {}, a.name) },
        { label: 'State', cell: (a) => pill(a.state, ALERT_TONE[a.state]) },
        { label: 'Severity', cell: (a) => pill(a.severity || 'none', SEVERITY_TONE[a.severity]) },
        { label: 'Labels', cell: (a) => h('span', { class: 'muted' }, labelText(a.labels) || '–') },
        { label: 'Since', cell: (a) => (a.active_at ? h('span', {}, timeEl(a.active_at), ' ', h('span', { class: 'muted' }, `(${ago(a.active_at)})`)) : '–') },
        { label: 'Resolved', cell: (a) => (a.ends_at ? timeEl(a.ends_at) : '–') },
        { label: 'Value', cell: (a) => (a.value === null || a.value === undefined ? '–' : String(Number(a.value.toPrecision(4)))) },
        { label: 'VM', cell: (a) => (a.labels?.vm_id ? link(`#/vms/${a.labels.vm_id}`, a.labels.vm_name || a.labels.vm_id.slice(0, 8)) : '–') },
        ...(canSilence ? [{
          label: 'Silence',
          cell: (a) => (a.state === 'resolved' ? '–' : link(silenceLink(a), 'Silence', { 'aria-label': `Silence ${a.name}` })),
        }] : []),
      ], items, { caption: 'Alerts', empty: 'No alerts.', rowAttrs: (a) => ({ 'data-alert': a.name, 'data-alert-state': a.state }) }));
    };
    state.addEventListener('change', () => load());
    await load();
    const reload = throttle(() => load().catch(() => {}), 500);
    ctx.onCleanup(subscribe(['alert.*'], reload));
    // pending and firing come from the evaluator, which publishes no event for pending: poll too
    const timer = setInterval(reload, 5000);
    ctx.onCleanup(() => clearInterval(timer));
  },
});

const MATCHER = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$/;

/** `name=value` lines (also !=, =~, !~) as the API's matchers; a bad line throws a field error. */
function parseMatchers(text) {
  return text.split('\n').filter((l) => l.trim()).map((line) => {
    const m = MATCHER.exec(line);
    if (!m) throw fieldError('matchers', `not a matcher (name=value): ${line.trim()}`);
    return { name: m[1], op: m[2], value: m[3] };
  });
}

/** A refusal made in the page, shaped as the API's, so it lands next to its field the same way. */
export function fieldError(name, reason) {
  const err = new Error(reason);
  err.problem = { title: 'Invalid input', errors: [{ field: name, reason }] };
  return err;
}

const DURATIONS = [[3600, '1 hour'], [900, '15 minutes'], [4 * 3600, '4 hours'], [86400, '1 day'], [7 * 86400, '1 week']];

function silenceForm(ctx, done) {
  const c = {
    matchers: h('textarea', { id: 'sil-matchers', rows: 4, spellcheck: 'false' }, ctx.query.getAll('m').join('\n')),
    duration_s: h('select', { id: 'sil-duration_s' }, DURATIONS.map(([s, t]) => h('option', { value: String(s) }, t))),
    comment: h('input', { id: 'sil-comment', autocomplete: 'off' }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create silence');
  const form = h('form', { novalidate: true, 'aria-label': 'New silence' }, formError,
    field('sil-matchers', 'Matchers', c.matchers, 'One per line: name=value (or !=, =~ regex, !~). Your own alerts only.'),
    h('div', { class: 'form-grid' },
      field('sil-duration_s', 'For', c.duration_s),
      field('sil-comment', 'Comment', c.comment, 'Why it is muted.')),
    submit);
  onSubmit(form, { controls: c, submit, formError, anyError: true }, async () => {
    const body = { matchers: parseMatchers(c.matchers.value), duration_s: Number(c.duration_s.value), comment: c.comment.value.trim() };
    const s = await post('/v1/silences', body, { idempotent: true });
    form.reset();
    c.matchers.value = '';
    toast(`Silence ${s.id.slice(0, 8)} created.`);
    await done();
  });
  return form;
}

registerPage({
  path: '/silences',
  title: 'Silences',
  section: MONITORING,
  permission: 'alert:read',
  order: 20,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const canWrite = ctx.can('alert:write');
    const expire = async (s) => {
      if (!(await confirmDialog('Expire this silence?', `Its alerts notify again: ${matcherText(s.matchers)}`, { confirm: 'Expire', danger: true }))) return;
      try {
        await request(`/v1/silences/${s.id}`, { method: 'DELETE' });
        toast('Silence expired.');
        await load();
      } catch (err) { toast(err.message, 'bad'); }
    };
    const load = async () => {
      const { items } = await get('/v1/silences');
      const order = { active: 0, pending: 1, expired: 2 };
      items.sort((a, b) => (order[a.state] ?? 3) - (order[b.state] ?? 3) || b.ends_at.localeCompare(a.ends_at));
      clear(box, table([
        { label: 'Matchers', cell: (s) => h('code', {}, matcherText(s.matchers)) },
        { label: 'State', cell: (s) => badge(s.state) },
        { label: 'Comment', cell: (s) => s.comment },
        { label: 'By', cell: (s) => s.created_by },
        { label: 'Starts', cell: (s) => timeEl(s.starts_at) },
        { label: 'Ends', cell: (s) => timeEl(s.ends_at) },
        ...(canWrite ? [{
          label: 'Expire',
          cell: (s) => (s.state === 'expired' ? '–' : h('button', { type: 'button', class: 'danger', 'aria-label': `Expire silence ${s.comment}`, onclick: () => expire(s) }, 'Expire')),
        }] : []),
      ], items, { caption: 'Silences', empty: 'No silences.', rowAttrs: (s) => ({ 'data-silence': s.id, 'data-silence-state': s.state }) }));
    };
    clear(ctx.main, pageHead('Silences', link('#/alerts', 'Alerts')),
      canWrite ? card('New silence', silenceForm(ctx, load)) : null,
      card(null, box));
    await load();
  },
});

function matcherText(matchers) {
  return matchers.filter((m) => m.name !== 'tenant_id' && m.name !== 'novacron_scope')
    .map((m) => `${m.name}${m.op}${m.value}`).join(', ');
}
