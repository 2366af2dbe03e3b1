// The header's global search: VMs, images, networks and volumes by name or id, matched in the
// browser over the list endpoints (fetched once per 30 s while typing), each result a link to its
// page. "/" anywhere outside a field focuses it; Enter follows the first result, Escape closes.

import { listAll } from './api.js';
import { h, clear } from './ui.js';

const KINDS = [
  { kind: 'VM', path: '/v1/vms', perm: 'vm:read', href: (x) => `#/vms/${x.id}` },
  { kind: 'Image', path: '/v1/images', perm: 'image:read', href: () => '#/images' },
  { kind: 'Network', path: '/v1/networks', perm: 'network:read', href: (x) => `#/networks/${x.id}` },
  { kind: 'Volume', path: '/v1/volumes', perm: 'volume:read', href: () => '#/volumes' },
];
const FRESH_MS = 30_000;
const MAX_SHOWN = 12;

/** The search box for a user holding `permissions`; returns its element. */
export function searchBox(permissions) {
  const kinds = KINDS.filter((k) => permissions.includes(k.perm));
  let cache = null;
  let cachedAt = 0;
  const load = async () => {
    if (!cache || Date.now() - cachedAt > FRESH_MS) {
      cachedAt = Date.now();
      cache = Promise.all(kinds.map((k) => listAll(k.path, {}, 1000)
        .then((items) => items.map((x) => ({ k, x })), () => []))).then((lists) => lists.flat());
    }
    return cache;
  };
  const input = h('input', {
    id: 'global-search', type: 'search', autocomplete: 'off', placeholder: 'Search ( / )',
    'aria-label': 'Search VMs, images, networks and volumes by name or id',
    'aria-controls': 'global-search-results',
  });
  const list = h('ul', { id: 'global-search-results', 'aria-label': 'Search results', hidden: true });
  const status = h('span', { class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });
  const close = () => { list.hidden = true; };
  let seq = 0;
  const update = async () => {
    const q = input.value.trim().toLowerCase();
    const mine = ++seq;
    if (!q) { close(); clear(status); return; }
    const all = await load();
    if (mine !== seq) return; // a later keystroke already answered
    const found = all.filter(({ x }) => String(x.name || '').toLowerCase().includes(q) || String(x.id).toLowerCase().startsWith(q));
    clear(list, found.slice(0, MAX_SHOWN).map(({ k, x }) => h('li', {},
      h('a', { href: k.href(x), 'data-kind': k.kind.toLowerCase(), onclick: () => { input.value = ''; close(); } },
        `${k.kind} ${x.name || x.id} `, h('span', { class: 'muted' }, x.id)))));
    if (!found.length) list.append(h('li', { class: 'muted' }, h('span', { class: 'empty' }, 'Nothing found.')));
    list.hidden = false;
    status.textContent = `${found.length} found`;
  };
  input.addEventListener('input', update);
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') { input.value = ''; close(); }
    if (ev.key === 'Enter') list.querySelector('a')?.click();
    if (ev.key === 'ArrowDown') { ev.preventDefault(); list.querySelector('a')?.focus(); }
  });
  const box = h('div', { class: 'search', role: 'search' }, input, list, status);
  box.addEventListener('focusout', (ev) => { if (!box.contains(ev.relatedTarget)) close(); });
  return box;
}

/** "/" focuses the search, unless the user is typing somewhere (a field, the console). */
export function slashFocuses() {
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== '/' || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t instanceof HTMLElement && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName))) return;
    const input = document.getElementById('global-search');
    if (!input) return;
    ev.preventDefault();
    input.focus();
  });
}
