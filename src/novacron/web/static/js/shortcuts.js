// Keyboard shortcuts beyond "/" (search.js): "g" then a letter goes to a list page, "c" creates on
// a list page (its control marked data-shortcut=create, else its "New ..." form's first field),
// "?" opens the help listing them. None fires while the user types (a field, the console's
// textarea, an editable element) or with Ctrl/Alt/Meta held, nor while a dialog is open.

import { h } from './ui.js';

const GO = [
  ['o', '/', 'Overview'],
  ['v', '/vms', 'Virtual machines'],
  ['n', '/networks', 'Networks'],
  ['s', '/volumes', 'Volumes'],
  ['i', '/images', 'Images'],
  ['t', '/tasks', 'Tasks'],
];
const PREFIX_MS = 1500;

// inputs nobody types text into: a focused checkbox (a row just selected) leaves the shortcuts on
const NOT_TEXT = new Set(['checkbox', 'radio', 'button', 'submit', 'reset', 'range', 'color', 'file', 'image']);

function typing(t) {
  if (!(t instanceof Element)) return false;
  if (t.tagName === 'INPUT') return !NOT_TEXT.has(t.type);
  // the consoles take every key (xterm's is a textarea; noVNC listens on its canvas)
  return t.isContentEditable || ['TEXTAREA', 'SELECT'].includes(t.tagName) || !!t.closest('.xterm, canvas');
}

/** "c": the page's create control, or the first field of its "New ..." form. */
function create() {
  const main = document.getElementById('main');
  const target = main?.querySelector('[data-shortcut=create]');
  if (target) { target.click(); return; }
  const field = main?.querySelector("form[aria-label^='New'] input, form[aria-label^='New'] select");
  if (field) field.focus();
}

function help() {
  if (document.getElementById('shortcut-help')) return;
  const row = (keys, what) => h('tr', {}, h('td', {}, keys.map((k, i) => [i ? ' then ' : '', h('kbd', {}, k)])), h('td', {}, what));
  const dlg = h('dialog', { id: 'shortcut-help', 'aria-labelledby': 'shortcut-help-t' },
    h('h2', { id: 'shortcut-help-t' }, 'Keyboard shortcuts'),
    h('table', {}, h('caption', { class: 'visually-hidden' }, 'Keyboard shortcuts'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Keys'), h('th', { scope: 'col' }, 'Does'))),
      h('tbody', {},
        row(['/'], 'Focus the search'),
        GO.map(([k, , title]) => row(['g', k], `Go to ${title}`)),
        row(['c'], 'Create (on a list page)'),
        row(['?'], 'Show this help'),
        row(['Esc'], 'Close a dialog or the search'))),
    h('p', { class: 'muted' }, 'Shortcuts do nothing while you type in a field or the console.'),
    h('div', { class: 'buttons' }, h('button', { type: 'button', class: 'primary', onclick: () => dlg.close() }, 'Close')));
  dlg.addEventListener('close', () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
}

/** Listen on the document (once, at start). */
export function installShortcuts() {
  let prefixAt = 0;
  document.addEventListener('keydown', (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.defaultPrevented || typing(ev.target)) return;
    if (document.querySelector('dialog[open]') || !document.getElementById('main')) return;
    const pending = Date.now() - prefixAt < PREFIX_MS;
    prefixAt = 0;
    if (pending) {
      const go = GO.find(([k]) => k === ev.key);
      if (go) { ev.preventDefault(); location.hash = `#${go[1]}`; }
      return;
    }
    if (ev.key === 'g') { prefixAt = Date.now(); ev.preventDefault(); }
    else if (ev.key === 'c') { ev.preventDefault(); create(); }
    else if (ev.key === '?') { ev.preventDefault(); help(); }
  });
}
