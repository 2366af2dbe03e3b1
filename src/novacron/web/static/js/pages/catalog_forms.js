// The create forms of the catalog pages: a flavor (administrators), and an image uploaded from a
// local file with a progress bar (POST /v1/images, then the bytes PUT to /v1/images/{id}/file).

import { accessToken, post, request, ApiError } from '../api.js';
import { h, clear, fmtBytes, progress, toast } from '../ui.js';
import { checkField, field, onSubmit } from './common.js';

function select(id, options) {
  return h('select', { id }, options.map(([v, t]) => h('option', { value: v }, t)));
}

/** Name, vCPUs, RAM (MiB), disk (GiB) and the optional machine and firmware of a new flavor. */
export function flavorForm(done) {
  const c = {
    name: h('input', { id: 'fl-name', autocomplete: 'off', autocapitalize: 'none', placeholder: 'm1.small' }),
    vcpus: h('input', { id: 'fl-vcpus', type: 'number', inputmode: 'numeric', min: '1', max: '64', value: '1' }),
    ram_mb: h('input', { id: 'fl-ram', type: 'number', inputmode: 'numeric', min: '64', max: '262144', value: '512' }),
    disk_gb: h('input', { id: 'fl-disk', type: 'number', inputmode: 'numeric', min: '0', max: '16384', value: '1' }),
    hardware: select('fl-machine', [['', 'default (pc)'], ['pc', 'pc'], ['q35', 'q35']]),
  };
  const firmware = select('fl-firmware', [['', 'default (BIOS)'], ['bios', 'BIOS'], ['uefi', 'UEFI']]);
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create flavor');
  const form = h('form', { novalidate: true, 'aria-label': 'New flavor' }, formError,
    h('div', { class: 'form-grid' },
      field('fl-name', 'Name', c.name, 'Lowercase letters, digits, . _ -; up to 63.'),
      field('fl-vcpus', 'vCPUs', c.vcpus, '1 to 64.'),
      field('fl-ram', 'RAM (MiB)', c.ram_mb, '64 to 262144.'),
      field('fl-disk', 'Disk (GiB)', c.disk_gb, 'Root disk; 0: the image’s size.'),
      field('fl-machine', 'Machine (optional)', c.hardware),
      field('fl-firmware', 'Firmware (optional)', firmware)),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { name: c.name.value.trim() };
    for (const k of ['vcpus', 'ram_mb', 'disk_gb']) body[k] = c[k].value.trim() === '' ? null : Number(c[k].value);
    const hardware = {};
    if (c.hardware.value) hardware.machine = c.hardware.value;
    if (firmware.value) hardware.firmware = firmware.value;
    if (Object.keys(hardware).length) body.hardware = hardware;
    const flavor = await post('/v1/flavors', body, { idempotent: true });
    form.reset();
    toast(`Flavor ${flavor.name} created.`);
    await done();
  });
  return form;
}

/** PUT a file's bytes with upload progress (fetch has none for request bodies): resolves the image. */
function putWithProgress(path, file, token, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', path);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json, application/problem+json');
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(Math.floor((100 * e.loaded) / e.total)); };
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = { detail: xhr.responseText || xhr.statusText }; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data && typeof data === 'object' ? data : { detail: String(data) }));
    };
    xhr.onerror = () => reject(new Error('The upload was interrupted (network error).'));
    xhr.send(file);
  });
}

/** Name, a local raw or qcow2 file, public (administrators); the bar follows the bytes sent. */
export function imageUploadForm(ctx, done) {
  const c = {
    name: h('input', { id: 'img-name', autocomplete: 'off', autocapitalize: 'none', placeholder: 'debian-12' }),
    file: h('input', { id: 'img-file', type: 'file', accept: '.img,.raw,.qcow2,application/octet-stream' }),
    public: h('input', { id: 'img-public', type: 'checkbox' }),
  };
  const bar = h('div', { 'data-testid': 'upload-progress', 'aria-live': 'polite' });
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Upload image');
  const admin = ctx.can('global');
  const form = h('form', { novalidate: true, 'aria-label': 'Upload an image' }, formError,
    h('div', { class: 'form-grid' },
      field('img-name', 'Name', c.name, 'Letters, digits, . _ -; empty: the file’s name.'),
      field('img-file', 'Disk file', c.file, 'raw or qcow2, from this computer.')),
    admin ? checkField('img-public', 'Public: every tenant may boot it', c.public) : null,
    bar, submit);
  c.file.addEventListener('change', () => {
    const f = c.file.files[0];
    if (f && !c.name.value.trim()) c.name.value = f.name.replace(/\.(img|raw|qcow2)$/i, '').replace(/[^A-Za-z0-9._-]/g, '-');
  });
  // anyError: a dropped connection during the upload is shown too, not only the API's refusals
  onSubmit(form, { controls: c, submit, formError, anyError: true }, async () => {
    const file = c.file.files[0];
    if (!file) {
      throw new ApiError(422, { title: 'Choose a file', errors: [{ field: 'body.file', reason: 'choose a raw or qcow2 disk file' }] });
    }
    const body = { name: c.name.value.trim() };
    if (admin && c.public.checked) body.public = true;
    const image = await post('/v1/images', body, { idempotent: true });
    const show = (pct) => clear(bar, progress(`Uploading ${file.name} (${fmtBytes(file.size)})`, pct));
    show(0);
    try {
      await putWithProgress(`/v1/images/${image.id}/file`, file, await accessToken(), show);
    } catch (err) {
      // an image without its bytes is of no use: removed, so a retry can take the same name
      await request(`/v1/images/${image.id}`, { method: 'DELETE' }).catch(() => {});
      clear(bar);
      throw err;
    }
    clear(bar);
    form.reset();
    toast(`Image ${image.name} uploaded.`);
    await done();
  });
  return form;
}
