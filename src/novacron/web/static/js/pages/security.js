// Threat detection (administrators): the sources blocked now, with a Lift button, and the latest
// security.* events (credential stuffing, enumeration, token misuse, bursts of deletions), each
// with what its event says about why.

import { get, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, confirmDialog, pageHead, table, timeEl, toast } from '../ui.js';

const why = (e) => e.data.reason || (e.data.sources ? `from ${e.data.sources.join(' and ')}` : `${e.data.count ?? ''} by ${e.data.actor ?? e.data.source}`);

registerPage({
  path: '/security',
  title: 'Security',
  section: 'Administration',
  permission: 'global',
  order: 47,
  async render(ctx) {
    const blocks = h('div', { 'data-testid': 'security-blocks', 'aria-live': 'polite' });
    const detections = h('div', { 'data-testid': 'security-events' });
    const lift = async (b) => {
      if (!(await confirmDialog(`Lift the block of ${b.source}?`, 'Its requests are served again at once.', { confirm: 'Lift' }))) return;
      try {
        await request(`/v1/security/blocks/${b.id}`, { method: 'DELETE' });
        toast(`${b.source} is served again.`);
        await load();
      } catch (err) { toast(err.message, 'bad'); }
    };
    const load = async () => {
      const [active, events] = await Promise.all([
        get('/v1/security/blocks', { signal: ctx.signal }),
        get('/v1/events?types=security.*&tail=true&limit=100', { signal: ctx.signal }),
      ]);
      clear(blocks, table([
        { label: 'Source', cell: (b) => h('span', { class: 'mono' }, b.source) },
        { label: 'Kind', cell: (b) => badge(b.kind) },
        { label: 'Reason', cell: (b) => b.reason },
        { label: 'Until', cell: (b) => timeEl(b.expires_at) },
        { label: 'Actions', cell: (b) => h('button', { type: 'button', 'aria-label': `Lift the block of ${b.source}`, onclick: () => lift(b) }, 'Lift') },
      ], active.items, { caption: 'Blocked sources', empty: 'No source is blocked.', rowAttrs: (b) => ({ 'data-source': b.source }) }));
      clear(detections, table([
        { label: 'When', cell: (e) => timeEl(e.time) },
        { label: 'What', cell: (e) => e.type.replace('security.', '') },
        { label: 'Source', cell: (e) => h('span', { class: 'mono' }, e.data.source || '') },
        { label: 'Why', cell: why },
        { label: 'Action', cell: (e) => e.data.action || '' },
      ], [...events.items].reverse(), { caption: 'Detections', empty: 'Nothing detected.' }));
    };
    clear(ctx.main, pageHead('Security'),
      h('p', { class: 'muted' }, 'Threats detected in the API\'s own traffic. Credential stuffing and enumeration block their source for a while; token misuse and bursts of deletions are reported.'),
      card('Blocked sources', blocks), card('Detections', detections));
    await load();
  },
});
