// Synthetic probes: ICMP, TCP and HTTP(S) checks of a VM's port, run from inside its tenant network.
// The list shows each probe's last result and when it ran (read again every few seconds); the form
// follows the kind (a port for TCP and HTTP, path/status/body for HTTP) and puts the API's refusals
// next to their fields.

import { listAll, post, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, ago, card, confirmDialog, link, pageHead, table, timeEl, toast } from '../ui.js';
import { field, onSubmit } from './common.js';
import { MONITORING, pill } from './alerts.js';

const KINDS = [['http', 'HTTP'], ['https', 'HTTPS'], ['tcp', 'TCP'], ['icmp', 'ICMP (ping)']];
/** The fields each kind sends (the others are hidden). */
const KIND_FIELDS = {
  icmp: [],
  tcp: ['target_port'],
  http: ['target_port', 'path', 'expected_status', 'body_contains'],
  https: ['target_port', 'path', 'expected_status', 'body_contains', 'tls_verify', 'tls_server_name', 'tls_ca_pem'],
};
const REFRESH_MS = 5000;

/** The probe's last result as a badge, its error and when it ran. */
export function lastResult(p) {
  const r = p.last_result;
  if (!r) return h('span', { class: 'muted', 'data-result': 'none' }, 'not run yet');
  return h('span', { 'data-result': r.success ? 'up' : 'down' },
    pill(r.success ? 'up' : 'down', r.success ? 'ok' : 'bad'), ' ',
    h('span', { class: 'muted' }, `${(r.duration_s * 1000).toFixed(0)} ms · `, timeEl(r.checked_at), ` (${ago(r.checked_at)})`),
    r.error ? h('div', { class: 'muted' }, r.error) : null);
}

/** What a probe checks: kind://address:port/path. */
export function targetText(p) {
  if (p.kind === 'icmp') return `ping ${p.address}`;
  if (p.kind === 'tcp') return `tcp ${p.address}:${p.target_port}`;
  const tls = p.kind !== 'https' ? '' : p.tls_verify ? ` (certificate verified${p.tls_server_name ? ` for ${p.tls_server_name}` : ''})` : ' (certificate not verified)';
  return `${p.kind}://${p.address}:${p.target_port}${p.path} → ${p.expected_status}${p.body_contains ? ` with "${p.body_contains}"` : ''}${tls}`;
}

function probeControls(vms) {
  const num = (id, value, extra = {}) => h('input', { id, type: 'number', inputmode: 'decimal', value, ...extra });
  return {
    name: h('input', { id: 'prb-name', autocomplete: 'off' }),
    kind: h('select', { id: 'prb-kind' }, KINDS.map(([v, t]) => h('option', { value: v }, t))),
    vm_id: h('select', { id: 'prb-vm_id' }, h('option', { value: '' }, 'choose a VM'),
      vms.map((v) => h('option', { value: v.id }, v.name))),
    port_id: h('select', { id: 'prb-port_id' }, h('option', { value: '' }, 'its first port')),
    target_port: num('prb-target_port', '80', { inputmode: 'numeric' }),
    path: h('input', { id: 'prb-path', autocomplete: 'off', value: '/', spellcheck: 'false' }),
    expected_status: num('prb-expected_status', '200', { inputmode: 'numeric' }),
    body_contains: h('input', { id: 'prb-body_contains', autocomplete: 'off' }),
    tls_verify: h('input', { id: 'prb-tls_verify', type: 'checkbox', checked: true }),
    tls_server_name: h('input', { id: 'prb-tls_server_name', autocomplete: 'off', spellcheck: 'false' }),
    tls_ca_pem: h('textarea', { id: 'prb-tls_ca_pem', rows: 3, spellcheck: 'false', placeholder: '-----BEGIN CERTIFICATE-----' }),
    interval_s: num('prb-interval_s', '10', { inputmode: 'numeric' }),
    timeout_s: num('prb-timeout_s', '2', { step: 'any' }),
  };
}

function probeBody(c) {
  const body = { name: c.name.value.trim(), kind: c.kind.value, vm_id: c.vm_id.value };
  if (c.port_id.value) body.port_id = c.port_id.value;
  const used = KIND_FIELDS[body.kind];
  const number = (el) => (el.value === '' ? null : Number(el.value));
  if (used.includes('target_port')) body.target_port = number(c.target_port);
  if (used.includes('path')) body.path = c.path.value.trim();
  if (used.includes('expected_status')) body.expected_status = number(c.expected_status);
  if (used.includes('body_contains') && c.body_contains.value) body.body_contains = c.body_contains.value;
  if (used.includes('tls_verify')) {
    body.tls_verify = c.tls_verify.checked;
    if (c.tls_verify.checked && c.tls_server_name.value.trim()) body.tls_server_name = c.tls_server_name.value.trim();
    if (c.tls_verify.checked && c.tls_ca_pem.value.trim()) body.tls_ca_pem = c.tls_ca_pem.value.trim();
  }
  body.interval_s = number(c.interval_s);
  body.timeout_s = number(c.timeout_s);
  return body;
}

function probeForm(vms, done) {
  const c = probeControls(vms);
  const rows = {
    target_port: field('prb-target_port', 'Port', c.target_port, 'The TCP port checked.'),
    path: field('prb-path', 'Path', c.path, 'Requested with GET.'),
    expected_status: field('prb-expected_status', 'Expected status', c.expected_status),
    body_contains: field('prb-body_contains', 'Body contains', c.body_contains, 'Optional text the answer must hold.'),
    tls_verify: field('prb-tls_verify', 'Verify the certificate', c.tls_verify, 'Unticked: only reachability and the answer are checked.'),
    tls_server_name: field('prb-tls_server_name', 'Certificate name', c.tls_server_name, 'The name the certificate is for (default: the address).'),
    tls_ca_pem: field('prb-tls_ca_pem', 'Trusted CA (PEM)', c.tls_ca_pem, 'Optional: the CA that signed it, instead of the public ones.'),
  };
  const showKind = () => {
    for (const [k, row] of Object.entries(rows)) row.hidden = !KIND_FIELDS[c.kind.value].includes(k);
  };
  c.kind.addEventListener('change', showKind);
  const noPorts = () => clear(c.port_id, h('option', { value: '' }, 'its first port'));
  c.vm_id.addEventListener('change', async () => {
    noPorts();
    if (!c.vm_id.value) return;
    const ports = await listAll('/v1/ports', { vm_id: c.vm_id.value });
    c.port_id.append(...ports.map((p) => h('option', { value: p.id },
      `${p.name || p.id.slice(0, 8)} (${(p.fixed_ips || []).map((ip) => ip.ip).join(', ') || 'no address'})`)));
  });
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create probe');
  const form = h('form', { novalidate: true, 'aria-label': 'New probe' }, formError,
    h('div', { class: 'form-grid' },
      field('prb-name', 'Name', c.name, 'Letters, digits, . _ -'),
      field('prb-kind', 'Kind', c.kind),
      field('prb-vm_id', 'VM', c.vm_id, vms.length ? 'The VM checked, from inside its network.' : 'You have no VMs to probe yet.'),
      field('prb-port_id', 'VM port', c.port_id)),
    h('div', { class: 'form-grid' }, rows.target_port, rows.path, rows.expected_status, rows.body_contains),
    h('div', { class: 'form-grid' }, rows.tls_verify, rows.tls_server_name, rows.tls_ca_pem),
    h('div', { class: 'form-grid' },
      field('prb-interval_s', 'Every (s)', c.interval_s),
      field('prb-timeout_s', 'Timeout (s)', c.timeout_s, 'At most the interval.')),
    submit);
  showKind();
  onSubmit(form, { controls: c, submit, formError, anyError: true }, async () => {
    const probe = await post('/v1/probes', probeBody(c), { idempotent: true });
    form.reset();
    noPorts();
    showKind();
    toast(`Probe ${probe.name} created.`);
    await done();
  });
  return form;
}

registerPage({
  path: '/probes',
  title: 'Probes',
  section: MONITORING,
  permission: 'slo:read',
  order: 50,
  async render(ctx) {
    const box = h('div', { 'aria-live': 'polite' });
    const canWrite = ctx.can('slo:write');
    const vms = canWrite && ctx.can('vm:read') ? await listAll('/v1/vms', { sort: 'name' }) : [];
    const vmNames = Object.fromEntries(vms.map((v) => [v.id, v.name]));
    const remove = async (p) => {
      if (!(await confirmDialog(`Delete probe ${p.name}?`, 'Its results stop; its history stays in the metrics.', { confirm: 'Delete', danger: true }))) return;
      try {
        await request(`/v1/probes/${p.id}`, { method: 'DELETE' });
        toast(`Probe ${p.name} deleted.`);
        await load();
      } catch (err) { toast(err.message, 'bad'); }
    };
    const load = async () => {
      const probes = await listAll('/v1/probes', { sort: 'name' });
      clear(box, table([
        { label: 'Name', cell: (p) => h('strong', {}, p.name) },
        { label: 'Checks', cell: (p) => h('code', {}, targetText(p)) },
        { label: 'VM', cell: (p) => (p.vm_id ? link(`#/vms/${p.vm_id}`, vmNames[p.vm_id] || p.vm_id.slice(0, 8)) : '–') },
        { label: 'Every', cell: (p) => `${p.interval_s} s (timeout ${p.timeout_s} s)` },
        { label: 'Last result', cell: lastResult },
        ...(canWrite ? [{
          label: 'Delete',
          cell: (p) => h('button', { type: 'button', class: 'danger', 'aria-label': `Delete probe ${p.name}`, onclick: () => remove(p) }, 'Delete'),
        }] : []),
      ], probes, { caption: 'Probes', empty: 'No probes yet.', rowAttrs: (p) => ({ 'data-probe': p.name }) }));
    };
    clear(ctx.main, pageHead('Probes', link('#/slos', 'SLOs')),
      card(null, box),
      canWrite ? card('New probe', probeForm(vms, load)) : null);
    await load();
    const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
    ctx.onCleanup(() => clearInterval(timer));
  },
});
