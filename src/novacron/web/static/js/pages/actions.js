// Per-row delete buttons that every list shares: a confirmation dialog, the DELETE, and the API's
// refusal (a 409 "in use", a 403) shown plainly in the page's own alert slot, not only in a toast.

import { request } from '../api.js';
import { h, clear, confirmDialog, errorBox, toast } from '../ui.js';

/**
 * A "Delete" button for one row. `what` names it in the dialog ("flavor small"), `path` is its
 * API URL, `problems` the element refusals are written into, `done` reloads the list.
 */
export function deleteButton({ what, path, problems, done, warning = 'This cannot be undone.' }) {
  const run = async () => {
    if (!(await confirmDialog(`Delete ${what}?`, warning, { confirm: 'Delete', danger: true }))) return;
    clear(problems);
    try {
      await request(path, { method: 'DELETE' });
      toast(`Deleted ${what}.`);
      await done();
    } catch (err) {
      problems.append(errorBox(err));
      problems.scrollIntoView({ block: 'nearest' });
    }
  };
  return h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${what}`, onclick: run }, 'Delete');
}
