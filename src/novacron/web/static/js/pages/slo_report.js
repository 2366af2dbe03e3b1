// The monthly SLA report (/v1/slo-report): a month picker, the report's HTML shown in the page and its
// CSV as a download link. The report's markup is rebuilt element by element from a short list of
// allowed tags, its text set as text, so the page never takes markup from an answer as it is.

import { get, listAll, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, card, errorBox, pageHead, link } from '../ui.js';
import { MONITORING } from './alerts.js';

/** The report's tags and what each becomes here (its headings one level down, under the page's). */
const TAGS = { h1: 'h2', h2: 'h3', table: 'table', thead: 'thead', tbody: 'tbody', tr: 'tr', th: 'th', td: 'td', ul: 'ul', li: 'li', p: 'p' };

/** `html` (the report) as our own nodes: allowed tags only, text as text, a table's cells labelled
 * by their column (a phone shows each row as a card). */
export function reportNodes(html) {
  const doc = new DOMParser().parseFromString(html, 'text/html');
  const copy = (node, columns) => {
    if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.textContent);
    const tag = TAGS[node.tagName?.toLowerCase()];
    if (!tag) return null;
    const attrs = {};
    if (tag === 'table') {
      attrs.class = 'responsive';
      columns = [...node.querySelectorAll('thead th')].map((th) => th.textContent);
    }
    if (tag === 'th') attrs.scope = 'col';
    if (tag === 'tr' && node.classList.contains('missed')) attrs['data-missed'] = 'true';
    if (tag === 'td') attrs['data-label'] = columns?.[node.cellIndex] || '';
    return h(tag, attrs, [...node.childNodes].map((c) => copy(c, columns)));
  };
  return [...doc.body.childNodes].map((c) => copy(c, null));
}

function thisMonth() { return new Date().toISOString().slice(0, 7); }

registerPage({
  path: '/slo-report',
  title: 'SLA report',
  section: MONITORING,
  permission: 'slo:read',
  order: 70,
  async render(ctx) {
    const month = h('input', { id: 'report-month', type: 'month', value: ctx.query.get('month') || thisMonth(), required: true });
    // a platform administrator names the tenant reported
    const tenants = ctx.me.tenant_id ? [] : await listAll('/v1/tenants', { sort: 'name' }).catch(() => []);
    const tenant = tenants.length ? h('select', { id: 'report-tenant' }, tenants.map((t) => h('option', { value: t.id }, t.name))) : null;
    const download = h('a', { class: 'button', hidden: true, 'data-testid': 'report-csv' }, 'Download CSV');
    const view = h('div', { class: 'report', 'aria-live': 'polite', 'data-testid': 'report' });
    const show = h('button', { type: 'submit', class: 'primary' }, 'Show');
    const form = h('form', { class: 'filters', 'aria-label': 'Report month' },
      h('div', { class: 'field' }, h('label', { for: 'report-month' }, 'Month (UTC)'), month),
      tenant ? h('div', { class: 'field' }, h('label', { for: 'report-tenant' }, 'Tenant'), tenant) : null,
      show, download);
    let blobUrl = null;
    const forget = () => { if (blobUrl) URL.revokeObjectURL(blobUrl); blobUrl = null; };
    ctx.onCleanup(forget);
    const load = async () => {
      const q = new URLSearchParams({ month: month.value });
      if (tenant) q.set('tenant_id', tenant.value);
      show.disabled = true;
      try {
        const [page, csv] = await Promise.all([get(`/v1/slo-report?${q}&format=html`, { signal: ctx.signal }),
          request(`/v1/slo-report?${q}&format=csv`, { signal: ctx.signal })]);
        clear(view, reportNodes(page));
        forget();
        blobUrl = URL.createObjectURL(new Blob([csv.data], { type: 'text/csv' }));
        Object.assign(download, { href: blobUrl, download: `sla-${month.value}.csv`, hidden: false });
      } catch (err) {
        download.hidden = true;
        clear(view, errorBox(err));
      } finally {
        show.disabled = false;
      }
    };
    form.addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
    clear(ctx.main, pageHead('SLA report', link('#/slos', 'SLOs')),
      card(null, form, h('p', { class: 'muted' }, 'Each SLO over the month: its target, the share achieved, the error budget used and the periods its probe failed.')),
      card(null, view));
    await load();
  },
});
