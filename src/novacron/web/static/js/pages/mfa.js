// Second factor (issue 18): enrol an authenticator app (TOTP), see the recovery codes once, prove a
// code for sensitive actions (step-up), regenerate the codes, or remove the factor. The secret and
// the codes are shown in this page only, held nowhere else, as the API intends (shown once).

import { get, post, refresh, request } from '../api.js';
import { registerPage } from '../registry.js';
import { h, clear, badge, card, pageHead, timeEl, toast } from '../ui.js';
import { field, onSubmit } from './common.js';
import { addPasskey, passkeysSupported, verifyWithPasskey } from '../webauthn.js';

function codeInput(id, recovery = false) {
  return h('input', {
    id, autocomplete: 'one-time-code', inputmode: recovery ? 'text' : 'numeric', autocapitalize: 'none', spellcheck: 'false',
  });
}

/** A form with one code field posting to `path`; `done` gets the answer. */
function codeForm(label, id, path, button, done, { recovery = false, hint } = {}) {
  const c = { code: codeInput(id, recovery) };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, button);
  const form = h('form', { novalidate: true, 'aria-label': label }, formError,
    field(id, recovery ? 'Code or recovery code' : 'Code', c.code,
      hint || 'The 6 digits your authenticator app shows now.'),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const answer = await post(path, { code: c.code.value.trim() });
    form.reset();
    await done(answer);
  });
  return form;
}

function recoveryBox(codes, onContinue) {
  return h('div', { class: 'alert info', role: 'status', 'data-testid': 'mfa-recovery' },
    h('p', {}, h('strong', {}, 'Your recovery codes. '), 'Each replaces a code once (a lost phone). ',
      h('strong', {}, 'Store them now: they will not be shown again.')),
    h('ul', { id: 'mfa-recovery-codes', class: 'mono' }, codes.map((code) => h('li', {}, code))),
    onContinue ? h('button', { type: 'button', class: 'primary', id: 'mfa-continue', onclick: onContinue }, 'Continue') : null);
}

function enrolBox(ctx, made, shown, reload) {
  const uri = h('input', { id: 'mfa-uri', readonly: true, value: made.otpauth_uri, class: 'mono', spellcheck: 'false' });
  const secret = h('input', { id: 'mfa-secret', readonly: true, value: made.secret, class: 'mono', spellcheck: 'false' });
  const confirmed = async (answer) => {
    // a token that could only enrol becomes a whole one at the next refresh
    const onContinue = ctx.me.mfa_enrol_required
      ? async () => { await refresh(); location.hash = '#/'; location.reload(); } : null;
    clear(shown, recoveryBox(answer.recovery_codes, onContinue));
    toast('Second factor confirmed.');
    if (!onContinue) await reload();
  };
  return h('div', { 'data-testid': 'mfa-enrol' },
    h('p', {}, 'Add this account to your authenticator app: a QR code of the URI below, or the secret typed in. It is shown only now.'),
    field('mfa-uri', 'otpauth URI (for a QR code)', uri),
    field('mfa-secret', 'Secret', secret),
    codeForm('Confirm second factor', 'mfa-confirm-code', '/v1/mfa/totp/confirm', 'Confirm', confirmed));
}

/** The caller's passkeys: listed with their last use, added (navigator.credentials.create), removed. */
function passkeysCard(ctx, reloadStatus) {
  const list = h('ul', { id: 'passkeys', 'aria-live': 'polite' });
  const verify = h('button', { type: 'button', id: 'passkey-verify', hidden: true }, 'Verify with a passkey');
  verify.addEventListener('click', async () => {
    verify.disabled = true;
    try {
      const { step_up_until: until } = await verifyWithPasskey();
      toast('Verified.');
      await reloadStatus();
      verify.dataset.until = until;
    } catch (err) { toast(err.message, 'bad'); } finally { verify.disabled = false; }
  });
  const name = h('input', { id: 'passkey-name', value: 'Passkey', maxlength: 64 });
  const add = h('button', { type: 'button', class: 'primary', id: 'passkey-add' }, 'Add a passkey');
  const load = async () => {
    const { items } = await get('/v1/mfa/webauthn/credentials');
    verify.hidden = !items.length || !passkeysSupported();
    clear(list, items.length ? null : h('li', { class: 'muted' }, 'No passkey yet.'), items.map((p) => {
      const remove = h('button', { type: 'button', class: 'danger' }, 'Remove');
      remove.addEventListener('click', async () => {
        try {
          await request(`/v1/mfa/webauthn/credentials/${encodeURIComponent(p.id)}`, { method: 'DELETE' });
          toast('Passkey removed.');
          await load();
        } catch (err) { toast(err.message, 'bad'); }
      });
      return h('li', { 'data-passkey': p.id }, h('strong', {}, p.name), ' added ', timeEl(p.created_at),
        p.last_used_at ? h('span', {}, ', last used ', timeEl(p.last_used_at)) : ' (never used) ', remove);
    }));
  };
  add.addEventListener('click', async () => {
    add.disabled = true;
    try {
      await addPasskey(name.value.trim() || 'Passkey');
      toast('Passkey added.');
      // a token that could only enrol becomes a whole one at the next refresh
      if (ctx.me.mfa_enrol_required) { await refresh(); location.hash = '#/'; location.reload(); return; }
      await load();
    } catch (err) { toast(err.message, 'bad'); } finally { add.disabled = false; }
  });
  const controls = passkeysSupported()
    ? [field('passkey-name', 'Name', name, 'To tell your passkeys apart.'), add]
    : [h('p', { class: 'muted' }, 'This browser does not offer passkeys (WebAuthn).')];
  load().catch((err) => toast(err.message, 'bad'));
  return card('Passkeys', h('p', { class: 'muted' },
    'A passkey (a security key, or this device\'s screen lock) instead of a code at sign-in, and for sensitive actions.'),
  list, ...controls, verify);
}

registerPage({
  path: '/mfa',
  title: 'Second factor',
  section: 'Administration',
  order: 44,
  async render(ctx) {
    const shown = h('div', { 'aria-live': 'polite' });
    const body = h('div');
    const load = async () => {
      const st = await get('/v1/mfa');
      const rows = [
        h('p', {}, 'Authenticator app: ', badge(st.totp)),
        st.totp === 'enrolled' ? h('p', {}, `Recovery codes left: ${st.recovery_codes_left}`) : null,
        st.step_up_until ? h('p', {}, 'Sensitive actions allowed until ', timeEl(st.step_up_until)) : null,
      ];
      if (st.totp !== 'enrolled') {
        const start = h('button', { type: 'button', class: 'primary', id: 'mfa-enrol' }, 'Enrol an authenticator app');
        start.addEventListener('click', async () => {
          try {
            clear(shown, enrolBox(ctx, await post('/v1/mfa/totp', {}, { idempotent: true }), shown, load));
            document.getElementById('mfa-confirm-code').focus();
          } catch (err) { toast(err.message, 'bad'); }
        });
        clear(body, card('Status', ...rows, start));
        return;
      }
      const regenerate = h('button', { type: 'button', id: 'mfa-regenerate' }, 'New recovery codes');
      regenerate.addEventListener('click', async () => {
        try {
          clear(shown, recoveryBox((await post('/v1/mfa/recovery-codes', {}, { idempotent: true })).recovery_codes));
          await load();
        } catch (err) { toast(err.message, 'bad'); }
      });
      clear(body,
        card('Status', ...rows, regenerate),
        card('Verify for sensitive actions', h('p', { class: 'muted' },
          'Deleting a tenant, rotating keys, new recovery codes and new API keys need a code from the last 5 minutes.'),
        codeForm('Verify code', 'mfa-verify-code', '/v1/mfa/verify', 'Verify', async () => { toast('Verified.'); await load(); })),
        card('Remove second factor', codeForm('Remove second factor', 'mfa-disable-code', '/v1/mfa/totp/disable', 'Remove',
          async () => { toast('Second factor removed.'); clear(shown); await load(); }, { recovery: true, hint: 'A current code, or one of your recovery codes.' })));
    };
    const required = ctx.me.mfa_enrol_required
      ? h('div', { class: 'alert', role: 'alert', 'data-testid': 'mfa-required' },
        'Your tenant requires a second factor: enrol an authenticator app to use NovaCron.') : null;
    clear(ctx.main, pageHead('Second factor'), required,
      h('p', { class: 'muted' }, 'A code from an authenticator app (TOTP), or a passkey, after your password at sign-in.'),
      shown, body, passkeysCard(ctx, load));
    await load();
  },
});
