// The serial console in xterm.js: the log so far, then live bytes both ways over the WebSocket
// /v1/vms/{id}/console. Browsers cannot set headers on a WebSocket, and a token in a URL ends up in
// logs: the handshake carries a single-use, 30-second ticket for this path (POST /v1/tickets).
// A connection that drops (the VM restarted, a server replica went away) is reopened with a new
// ticket, backing off from 1 s to 10 s, until the user closes the page.

import { Terminal } from '/vendor/xterm.mjs';
import { FitAddon } from '/vendor/addon-fit.mjs';
import { AttachAddon } from '/vendor/addon-attach.mjs';
import { get, post } from '../api.js';
import { loadCss } from '../ui.js';

const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 10000;

/** Open the console in `el`; returns a function that closes it. */
export async function openConsole(el, vmId, onStatus) {
  loadCss('/vendor/xterm.css');
  const term = new Terminal({
    fontSize: 14, scrollback: 5000, cursorBlink: true, convertEol: false,
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
    if (closed) return;
    ws = new WebSocket(`${proto}//${location.host}${path}?ticket=${encodeURIComponent(ticket)}`);
    ws.binaryType = 'arraybuffer';
    onStatus('Connecting…');
    ws.addEventListener('open', () => {
      // the addon wants an open socket
      attach = new AttachAddon(ws);
      term.loadAddon(attach);
      delay = RECONNECT_MIN_MS;
      onStatus('Connected: type into the console (it has the keyboard focus).');
      term.focus();
    });
    ws.addEventListener('close', (e) => {
      if (attach) { attach.dispose(); attach = null; }
      if (closed) return;
      const why = e.code === 4404 ? 'not found' : e.reason || `code ${e.code}`;
      // a refusal of access is final; anything else (VM restarting, server restarting) is retried
      if (e.code === 4401 || e.code === 4403 || e.code === 4404) {
        onStatus(`Console closed (${why}).`);
        return;
      }
      onStatus(`Console closed (${why}); reconnecting in ${Math.round(delay / 1000)} s…`);
      retry();
    });
  };
  const retry = () => {
    if (closed || timer) return;
    timer = setTimeout(connect, delay);
    delay = Math.min(delay * 2, RECONNECT_MAX_MS);
  };
  await connect();
  return () => {
    closed = true;
    if (timer) clearTimeout(timer);
    resize.disconnect();
    if (ws) ws.close();
    term.dispose();
  };
}
