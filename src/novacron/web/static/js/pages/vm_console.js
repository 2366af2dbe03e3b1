// The serial console in xterm.js: the log so far, then live bytes both ways over the WebSocket
// /v1/vms/{id}/console. Browsers cannot set headers on a WebSocket, and a token in a URL ends up in
// logs: the handshake carries a single-use, 30-second ticket for this path (POST /v1/tickets).
// A connection that drops (the VM restarted, a server replica went away) is reopened with a new
// ticket, backing off from 1 s to 10 s, until the user closes the page; Reconnect tries at once,
// Disconnect closes it until Reconnect. `consolePanel` is the console with its buttons (Open, Full
// screen, Disconnect, Reconnect), as the VM page and the console's own page show it.
//
// Line height 1.2: xterm's DOM renderer clips each row to its cell height, and at 14 px with a
// line height of 1 the underscore of DejaVu Sans Mono (Debian's monospace font) falls just below
// the cell: "x86_64" read "x86 64" (tests/e2e/test_dashboard.py measures the underscore's pixels).

import { Terminal } from '/vendor/xterm.mjs';
import { FitAddon } from '/vendor/addon-fit.mjs';
import { AttachAddon } from '/vendor/addon-attach.mjs';
import { get, post } from '../api.js';
import { h, clear, errorBox, loadCss } from '../ui.js';

const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 10000;

/**
 * Open the console in `el`. Returns { close, reconnect, disconnect }; `onState(open)` says whether the
 * socket is open (the buttons follow it).
 */
export async function openConsole(el, vmId, onStatus, onState = () => {}) {
  loadCss('/vendor/xterm.css');
  const term = new Terminal({
    fontSize: 14, lineHeight: 1.2, scrollback: 5000, cursorBlink: true, convertEol: false,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace',
    theme: { background: '#000000', foreground: '#e6e6e6' },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  const resize = new ResizeObserver(() => fit.fit());
  resize.observe(el);
  // what the guest printed before we attached (its persistent console log)
  onStatus('Loading the console log…');
  const history = await get(`/v1/vms/${vmId}/console-log?tail=32768`);
  if (history) term.write(history);
  const path = `/v1/vms/${vmId}/console`;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  let ws = null;
  let attach = null;
  let closed = false;
  let held = false; // the user disconnected: no retry until Reconnect
  let delay = RECONNECT_MIN_MS;
  let timer = null;

  const connect = async () => {
    timer = null;
    let ticket;
    try {
      ({ ticket } = await post('/v1/tickets', { path }));
    } catch (err) {
      onStatus(`Could not get a console ticket (${err.message || err}); retrying…`);
      retry();
      return;
    }
    if (closed || held) return;
    const sock = new WebSocket(`${proto}//${location.host}${path}?ticket=${encodeURIComponent(ticket)}`);
    ws = sock;
    sock.binaryType = 'arraybuffer';
    onStatus('Connecting…');
    sock.addEventListener('open', () => {
      if (ws !== sock) { sock.close(); return; } // replaced by a Reconnect meanwhile
      // the addon wants an open socket
      attach = new AttachAddon(sock);
      term.loadAddon(attach);
      delay = RECONNECT_MIN_MS;
      onStatus('Connected: type into the console (it has the keyboard focus).');
      onState(true);
      term.focus();
    });
    sock.addEventListener('close', (e) => {
      if (ws !== sock) return; // a socket Reconnect replaced: the new one speaks for the console
      if (attach) { attach.dispose(); attach = null; }
      if (closed) return;
      onState(false);
      if (held) {
        onStatus('Console disconnected: Reconnect opens it again.');
        return;
      }
      const why = e.code === 4404 ? 'not found' : e.reason || `code ${e.code}`;
      // a refusal of access is not retried by itself (Reconnect still tries); anything else (VM
      // restarting, server restarting) is
      if (e.code === 4401 || e.code === 4403 || e.code === 4404) {
        onStatus(`Console closed (${why}). Reconnect tries again.`);
        return;
      }
      onStatus(`Console closed (${why}); reconnecting in ${Math.round(delay / 1000)} s…`);
      retry();
    });
  };
  const retry = () => {
    if (closed || held || timer) return;
    timer = setTimeout(connect, delay);
    delay = Math.min(delay * 2, RECONNECT_MAX_MS);
  };
  await connect();
  return {
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      resize.disconnect();
      if (ws) ws.close();
      term.dispose();
    },
    /** Open it again now (a new ticket), whatever the backoff was waiting for. */
    reconnect() {
      held = false;
      if (timer) { clearTimeout(timer); timer = null; }
      delay = RECONNECT_MIN_MS;
      const old = ws;
      ws = null;
      if (attach) { attach.dispose(); attach = null; }
      if (old) old.close(); // its close handler sees it was replaced, and does nothing
      connect();
    },
    disconnect() {
      held = true;
      if (timer) { clearTimeout(timer); timer = null; }
      if (ws) ws.close(1000, 'disconnected');
    },
  };
}

/** A button that shows `el` on the whole screen (Escape leaves it); enabled once `el` is open. */
export function fullScreenButton(el) {
  const btn = h('button', { type: 'button', disabled: true }, 'Full screen');
  btn.addEventListener('click', () => { el.requestFullscreen().catch(() => {}); });
  return btn;
}

/**
 * The serial console with its buttons in `box`: Open console (or opened at once with `autoOpen`),
 * Full screen, Disconnect and Reconnect (offered whenever the socket is not open, e.g. after
 * "Console closed (code 1000)"). `own`: a link to the console's own page, shown on the VM page.
 */
export function consolePanel(ctx, box, vmId, { allowed, autoOpen = false, own = null }) {
  const openBtn = h('button', { type: 'button', class: 'primary' }, 'Open console');
  const status = h('p', { class: 'muted', 'aria-live': 'polite' });
  const term = h('div', { class: 'console-wrap', hidden: true, 'data-testid': 'serial-console' });
  const fullBtn = fullScreenButton(term);
  const offBtn = h('button', { type: 'button', hidden: true }, 'Disconnect');
  const againBtn = h('button', { type: 'button', hidden: true }, 'Reconnect');
  clear(box, h('div', { class: 'actions' }, openBtn, fullBtn, offBtn, againBtn, own), status, term);
  if (!allowed) { openBtn.disabled = true; status.textContent = 'Your role cannot open consoles.'; return; }
  let session = null;
  const onState = (open) => { offBtn.hidden = !open; againBtn.hidden = open; };
  offBtn.addEventListener('click', () => session?.disconnect());
  againBtn.addEventListener('click', () => { againBtn.hidden = true; session?.reconnect(); });
  const open = async () => {
    openBtn.hidden = true;
    fullBtn.disabled = false;
    term.hidden = false;
    try {
      session = await openConsole(term, vmId, (s) => { status.textContent = s; }, onState);
      ctx.onCleanup(() => session.close());
    } catch (err) {
      box.append(errorBox(err));
    }
  };
  openBtn.addEventListener('click', open);
  if (autoOpen) open();
}
