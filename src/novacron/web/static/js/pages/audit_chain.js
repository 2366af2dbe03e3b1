// The audit page's proof and export: verify the log's hash chain and signed checkpoints and sign a
// checkpoint (administrators: audit:verify), and download the log (what this user may read) as
// JSON lines or RFC 5424 syslog lines for a SIEM.

import { accessToken, get, post } from '../api.js';
import { h, clear, badge, card, table, timeEl, toast } from '../ui.js';

async function download(format) {
  // the export is streamed by the API behind a bearer token: fetch it, then save the blob
  const token = await accessToken();
  const resp = await fetch(`/v1/audit/export?format=${format}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!resp.ok) { toast(`The export failed (${resp.status}).`, 'error'); return; }
  const url = URL.createObjectURL(await resp.blob());
  const a = h('a', { href: url, download: format === 'jsonl' ? 'audit.jsonl' : 'audit-syslog.log', hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function summary(r) {
  const last = r.last_checkpoint;
  return h('p', {},
    badge(r.ok ? 'verified' : 'corrupt'),
    ` ${r.records} records chained, ${r.checkpoints} signed checkpoints verified. `,
    last ? h('span', {}, `The last covers ${last.count} records (`, timeEl(last.time), `); ${r.unsigned} written since.`)
      : 'No checkpoint signed yet.');
}

function problems(r) {
  return table([
    { label: 'What', cell: (p) => badge(p.kind === 'deleted' || p.kind === 'truncated' ? 'deleted' : 'corrupt', p.kind) },
    { label: 'Record', cell: (p) => (p.record_id !== null ? String(p.record_id) : `position ${p.seq}`) },
    { label: 'Detail', cell: (p) => p.detail },
  ], r.problems, { caption: 'What was tampered with' });
}

/** The card on the audit page: verify and checkpoint for administrators, export for all readers. */
export function auditProof(ctx) {
  const out = h('div', { 'data-testid': 'audit-verify', 'aria-live': 'polite' });
  const verify = async () => {
    const r = await get('/v1/audit/verify');
    clear(out, summary(r), r.ok ? null : problems(r));
  };
  const sign = async () => {
    const point = await post('/v1/audit/checkpoints', {});
    toast(point ? `Checkpoint signed: ${point.count} records.` : 'The last checkpoint already covers the log.');
    await verify();
  };
  const button = (text, fn) => {
    const b = h('button', { type: 'button' }, text);
    b.addEventListener('click', () => fn().catch((err) => toast(err.message, 'error')));
    return b;
  };
  const admin = ctx.can('audit:verify');
  return card('Proof and export',
    h('p', { class: 'muted' }, 'Each record is a link of a hash chain; checkpoints sign its head with the platform\'s signing key.'),
    h('div', { class: 'actions' },
      admin ? button('Verify the chain', verify) : null,
      admin ? button('Sign a checkpoint', sign) : null,
      button('Export JSON lines', () => download('jsonl')),
      button('Export syslog (RFC 5424)', () => download('syslog'))),
    out);
}
