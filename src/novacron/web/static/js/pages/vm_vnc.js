// The graphical console: noVNC (pinned in web/package.json, served under /vendor/novnc/) speaking
// RFB over the WebSocket /v1/vms/{id}/vnc, which the server relays to QEMU's VNC server on a
// unix socket of the VM's host. Like the serial console, the handshake carries a single-use,
// 30-second ticket for this path (POST /v1/tickets): each open asks for a new one.

import RFB from '/vendor/novnc/core/rfb.js';
import { post } from '../api.js';

/** Open the screen of `vmId` in `el`; returns { close, ctrlAltDel, rfb }. */
export async function openVnc(el, vmId, onStatus) {
  const path = `/v1/vms/${vmId}/vnc`;
  onStatus('Asking for a console ticket…');
  const { ticket } = await post('/v1/tickets', { path });
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const rfb = new RFB(el, `${proto}//${location.host}${path}?ticket=${encodeURIComponent(ticket)}`);
  // the screen is scaled into the box (and into the whole screen in full screen); the guest's
  // resolution is its own: QEMU's VGA does not follow the browser's size
  rfb.scaleViewport = true;
  rfb.resizeSession = false;
  rfb.focusOnClick = true;
  onStatus('Connecting…');
  rfb.addEventListener('connect', () => {
    onStatus('Connected: click the screen to give it the keyboard.');
    rfb.focus();
  });
  rfb.addEventListener('disconnect', (e) => {
    onStatus(e.detail.clean ? 'Graphical console closed.' : 'Graphical console lost (is the VM running?).');
  });
  return {
    rfb,
    ctrlAltDel: () => rfb.sendCtrlAltDel(),
    close: () => { try { rfb.disconnect(); } catch { /* already closed */ } },
  };
}
