// The serial console in xterm.js: the log so far, then live bytes both ways over the WebSocket
// /v1/vms/{id}/console. Browsers cannot set headers on a WebSocket, and a token in a URL ends up in
// logs: the handshake carries a single-use, 30-second ticket for this path (POST /v1/tickets).

import { Terminal } from '/vendor/xterm.mjs';
import { FitAddon } from '/vendor/addon-fit.mjs';
import { AttachAddon } from '/vendor/addon-attach.mjs';
import { get, post } from '../api.js';
import { loadCss } from '../ui.js';

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
  const { ticket } = await post('/v1/tickets', { path });
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}${path}?ticket=${encodeURIComponent(ticket)}`);
  ws.binaryType = 'arraybuffer';
  onStatus('Connecting…');
  ws.addEventListener('open', () => {
    // the addon wants an open socket
    term.loadAddon(new AttachAddon(ws));
    onStatus('Connected: type into the console (it has the keyboard focus).');
    term.focus();
  });
  ws.addEventListener('close', (e) => {
    const why = e.code === 4404 ? 'not found' : e.reason || `code ${e.code}`;
    onStatus(`Console closed (${why}).`);
  });
  return () => {
    resize.disconnect();
    ws.close();
    term.dispose();
  };
}
