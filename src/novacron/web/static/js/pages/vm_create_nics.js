// The create form's NICs: the tenant networks to plug the VM into, and the security groups each of
// its ports gets (none ticked: the API's "default" group). One port per ticked network.

import { h } from '../ui.js';
import { checkField } from './common.js';

function boxes(prefix, items, label) {
  return items.map((x, i) => h('input', { id: `${prefix}-${i}`, type: 'checkbox', value: x.id, 'data-label': label(x) }));
}

function fieldset(id, legend, hint, inputs) {
  return h('fieldset', { id, tabindex: '-1', 'aria-describedby': `${id}-hint ${id}-error` },
    h('legend', {}, legend),
    h('div', { class: 'hint', id: `${id}-hint` }, hint),
    inputs.length ? h('div', { class: 'form-grid' }, inputs.map((b) => checkField(b.id, b.dataset.label, b))) : null,
    h('div', { class: 'error', id: `${id}-error` }));
}

/**
 * {element, control, body()}: `control` takes the API's `networks` errors; body() the `networks`
 * list or null. `tenantName` ({id: name}, an administrator's) labels each with its tenant, as
 * names repeat across tenants; ids are sent for the same reason.
 */
export function nicPicker(networks, groups, tenantName = {}) {
  const label = (x) => (tenantName[x.tenant_id] ? `${tenantName[x.tenant_id]} / ${x.name}` : x.name);
  const nets = boxes('f-net', networks, label);
  const sgs = boxes('f-sg', groups, label);
  const control = fieldset('f-networks', 'Networks',
    networks.length ? 'One port on each network ticked. None: no NIC on a tenant network.' : 'No networks yet: make one on the Networks page.', nets);
  const element = h('div', {}, control,
    fieldset('f-security_groups', 'Security groups',
      groups.length ? 'For every port above. None ticked: the default group.' : 'No security groups yet.', sgs));
  const body = () => {
    const chosen = nets.filter((b) => b.checked).map((b) => b.value);
    if (!chosen.length) return null;
    const ids = sgs.filter((b) => b.checked).map((b) => b.value);
    return chosen.map((network) => (ids.length ? { network, security_groups: ids } : { network }));
  };
  return { element, control, body };
}
