// Compliance (issue 18): the last run of the automated checks for the caller's tenant (platform
// administrators: the platform), each with its status, summary, the framework controls it backs
// and its evidence; "Run the checks now"; the evidence report downloaded as HTML, CSV or JSON.

import { accessToken, get, post } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, card, pageHead, table, timeEl, toast } from '../ui.js';

const TONE = { pass: 'ok', fail: 'bad', not_applicable: 'idle' };

async function download(format) {
  // the report is behind a bearer token: fetch it, then save the blob
  const token = await accessToken();
  const resp = await fetch(`/v1/compliance/report?format=${format}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!resp.ok) { toast(`The report failed (${resp.status}).`, 'error'); return; }
  const url = URL.createObjectURL(await resp.blob());
  const a = h('a', { href: url, download: `compliance.${format}`, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function evidence(r) {
  return h('details', {}, h('summary', {}, 'Evidence'),
    h('pre', { class: 'mono', 'data-testid': `evidence-${r.check}` }, JSON.stringify(r.evidence, null, 1)));
}

registerPage({
  path: '/compliance',
  title: 'Compliance',
  section: 'Administration',
  permission: 'compliance:run',
  order: 48,
  async render(ctx) {
    const summary = h('div', { 'data-testid': 'compliance-summary', 'aria-live': 'polite' });
    const checks = h('div', { 'data-testid': 'compliance-checks' });
    let controlsOf = {};
    const show = (run) => {
      if (!run) {
        clear(summary, h('p', {}, 'No run yet: run the checks now.'));
        clear(checks);
        return;
      }
      clear(summary, h('p', {}, `Run ${run.id} (${run.trigger}), `, timeEl(run.finished_at),
        `: ${run.passed} passed, ${run.failed} failed, ${run.not_applicable} not applicable.`));
      clear(checks, table([
        { label: 'Check', cell: (r) => h('span', { class: 'mono' }, r.check) },
        { label: 'Status', cell: (r) => h('span', { class: `badge ${TONE[r.status] || 'info'}`, 'data-state': r.status }, r.status) },
        { label: 'Summary', cell: (r) => r.summary },
        { label: 'Controls', cell: (r) => (controlsOf[r.check] || []).join(', ') },
        { label: 'Checked', cell: (r) => timeEl(r.checked_at) },
        { label: 'Evidence', cell: evidence },
      ], run.results, { caption: 'Checks', rowAttrs: (r) => ({ 'data-check': r.check, 'data-status': r.status }) }));
    };
    const load = async () => {
      const cat = await get('/v1/compliance/catalogue', { signal: ctx.signal });
      controlsOf = {};
      for (const c of cat.controls) for (const id of c.checks) (controlsOf[id] ||= []).push(`${c.framework} ${c.id}`);
      // the list first: "no run yet" is an empty list, not a 404 in the console
      const runs = await get('/v1/compliance/runs', { signal: ctx.signal });
      show(runs.items.length ? await get('/v1/compliance/latest', { signal: ctx.signal }) : null);
    };
    const button = (text, fn) => {
      const b = h('button', { type: 'button' }, text);
      b.addEventListener('click', () => fn().catch((err) => toast(err.message, 'error')));
      return b;
    };
    const run = async () => {
      const done = await post('/v1/compliance/runs', {}, { idempotent: true });
      toast(`Checks run: ${done.passed} passed, ${done.failed} failed.`);
      show(done);
    };
    clear(ctx.main, pageHead('Compliance'),
      h('p', { class: 'muted' }, 'Automated checks of the platform\'s real configuration and state, mapped to SOC 2, ISO 27001, GDPR, HIPAA and PCI-DSS controls. A check that starts failing raises a compliance.drift event.'),
      card('Last run', summary, h('div', { class: 'actions' },
        button('Run the checks now', run),
        button('Report (HTML)', () => download('html')),
        button('Report (CSV)', () => download('csv')),
        button('Report (JSON)', () => download('json')))),
      card('Checks', checks));
    await load();
  },
});
