// The shell: sign-in, header, navigation built from the page registry, and the hash router.

import * as api from './api.js';
import * as live from './live.js';
import { match, navFor } from './registry.js';
import { searchBox, slashFocuses } from './search.js';
import { installShortcuts } from './shortcuts.js';
import { h, clear, errorBox, pageHead } from './ui.js';
import { passkeysSupported, signInWithPasskey } from './webauthn.js';
import './pages/index.js';

const app = document.getElementById('app');
let me = null;
let current = null; // {controller, cleanups}

// --- theme: the system's unless the user chose one ----------------------------------------------
const THEME_KEY = 'novacron.theme';
function applyTheme() {
  const t = localStorage.getItem(THEME_KEY);
  if (t) document.documentElement.dataset.theme = t; else delete document.documentElement.dataset.theme;
}
function effectiveTheme() {
  return document.documentElement.dataset.theme
    || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
}
applyTheme();
slashFocuses();
installShortcuts();

// --- sign-in ------------------------------------------------------------------------------------
function renderLogin(message) {
  live.stop();
  me = null;
  document.title = 'Sign in · NovaCron';
  const error = h('div', { id: 'login-error', role: 'alert' });
  if (message) error.append(h('div', { class: 'alert info' }, message));
  // a tenant user names its tenant (Keystone's domains, Proxmox's user@realm): "bob@acme" in the
  // username, or the Tenant field; platform users and users of tenant "default" need neither
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', placeholder: 'name, or name@tenant' });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const tenant = h('input', { id: 'tenant', name: 'tenant', autocomplete: 'organization', autocapitalize: 'none', placeholder: "unless you wrote name@tenant or are in 'default'" });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card', novalidate: false },
    h('div', { class: 'field' }, h('label', { for: 'username' }, 'Username'), user),
    h('div', { class: 'field' }, h('label', { for: 'password' }, 'Password'), pass),
    h('div', { class: 'field' }, h('label', { for: 'tenant' }, 'Tenant (optional)'), tenant),
    submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    clear(error);
    try {
      const challenge = await api.login(user.value.trim(), pass.value, tenant.value.trim());
      if (challenge) { renderCodeStep(challenge.mfaToken, form, error); return; }
      await boot();
    } catch (err) {
      error.append(errorBox(err));
      submit.disabled = false;
      pass.select();
    }
  });
  const sso = h('div', { class: 'sso-buttons', 'data-testid': 'sso-buttons' });
  const showProviders = () => ssoButtons(sso, tenant.value.trim() || 'default');
  tenant.addEventListener('change', showProviders);
  showProviders();
  clear(app, h('main', { class: 'login', id: 'main' },
    h('h1', {}, h('span', { class: 'brand' }, 'Nova', h('span', {}, 'Cron')), ' sign in'),
    error, form, sso));
  user.focus();
}

/** "Sign in with <provider>" for each identity provider of the tenant (single sign-on). */
async function ssoButtons(box, tenant) {
  try {
    const resp = await fetch(`/v1/sso/providers?tenant=${encodeURIComponent(tenant)}`);
    const providers = resp.ok ? await resp.json() : [];
    clear(box, providers.map((p) => h('a', {
      class: 'button', href: `/v1/sso/authorize?tenant=${encodeURIComponent(tenant)}&provider=${encodeURIComponent(p.name)}`,
    }, `Sign in with ${p.display_name}`)));
  } catch { clear(box); }
}

/** The login's second step: the password was right, the account has a second factor. */
function renderCodeStep(mfaToken, passwordForm, error) {
  const code = h('input', {
    id: 'otp', name: 'otp', autocomplete: 'one-time-code', inputmode: 'numeric', required: true,
    autocapitalize: 'none', spellcheck: 'false', 'aria-describedby': 'otp-hint',
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Verify');
  const form = h('form', { class: 'card', 'aria-label': 'Second factor' },
    h('div', { class: 'field' }, h('label', { for: 'otp' }, 'Authentication code'), code,
      h('div', { class: 'hint', id: 'otp-hint' }, 'The 6 digits your authenticator app shows now, or one of your recovery codes.')),
    submit, passkeyButton(mfaToken, error));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    clear(error);
    try {
      await api.loginCode(mfaToken, code.value.trim());
      await boot();
    } catch (err) {
      error.append(errorBox(err));
      submit.disabled = false;
      code.select();
    }
  });
  passwordForm.replaceWith(form);
  code.focus();
}

/** "Use a passkey" in the login's second step: navigator.credentials.get instead of a code. */
function passkeyButton(mfaToken, error) {
  if (!passkeysSupported()) return null;
  const button = h('button', { type: 'button', id: 'use-passkey' }, 'Use a passkey');
  button.addEventListener('click', async () => {
    button.disabled = true;
    clear(error);
    try {
      await signInWithPasskey(mfaToken);
      await boot();
    } catch (err) {
      error.append(errorBox(err));
      button.disabled = false;
    }
  });
  return button;
}

api.setUnauthorizedHandler(() => {
  if (me) renderLogin('Your session ended; sign in again.');
});

// --- shell --------------------------------------------------------------------------------------
let mainEl;
let navEl;

function renderShell() {
  const liveLabel = h('span', { class: 'label' }, 'offline');
  const liveEl = h('span', { class: 'live', 'data-state': 'off', title: 'Live updates' }, liveLabel);
  live.onStatus((s) => {
    liveEl.dataset.state = s;
    liveLabel.textContent = s === 'live' ? 'live' : s === 'retrying' ? 'reconnecting' : 'offline';
  });
  const themeBtn = h('button', { type: 'button' });
  const setThemeLabel = () => {
    const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
    themeBtn.textContent = next === 'dark' ? 'Dark' : 'Light';
    themeBtn.setAttribute('aria-label', `${themeBtn.textContent} theme`);
  };
  themeBtn.addEventListener('click', () => {
    localStorage.setItem(THEME_KEY, effectiveTheme() === 'dark' ? 'light' : 'dark');
    applyTheme();
    setThemeLabel();
    window.dispatchEvent(new CustomEvent('novacron:theme'));
  });
  setThemeLabel();
  navEl = h('nav', { class: 'sidenav', id: 'sidenav', 'aria-label': 'Main' });
  const menuBtn = h('button', {
    type: 'button', class: 'menu-toggle', 'aria-controls': 'sidenav', 'aria-expanded': 'false',
  }, 'Menu');
  menuBtn.addEventListener('click', () => {
    const open = navEl.classList.toggle('open');
    menuBtn.setAttribute('aria-expanded', String(open));
  });
  const skip = h('button', { type: 'button', class: 'visually-hidden-focusable', onclick: () => mainEl.focus() }, 'Skip to content');
  skip.classList.add('skip');
  mainEl = h('main', { id: 'main', tabindex: '-1' });
  const who = `${me.username} · ${me.role}${me.tenant_name ? ` · ${me.tenant_name}` : ''}`;
  const signOut = h('button', { type: 'button' }, 'Sign out');
  signOut.addEventListener('click', async () => {
    const atProvider = await api.logout();
    if (atProvider) location.assign(atProvider); else renderLogin('Signed out.');
  });
  clear(app, h('div', { class: 'shell' },
    h('header', { class: 'topbar' },
      menuBtn,
      h('a', { class: 'brand', href: '#/' }, 'Nova', h('span', {}, 'Cron')),
      liveEl,
      searchBox(me.permissions),
      h('span', { class: 'spacer' }),
      h('span', { class: 'who', 'data-testid': 'who' }, who),
      themeBtn, signOut),
    navEl, mainEl));
  renderNav();
}

function currentPath() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  return { path, query: new URLSearchParams(query) };
}

function renderNav() {
  const { path } = currentPath();
  const groups = navFor(me.permissions);
  clear(navEl, groups.map((g) => {
    const id = `nav-${g.section.toLowerCase().replace(/\W+/g, '-')}`;
    return h('div', {},
      h('h2', { id }, g.section),
      h('ul', { 'aria-labelledby': id }, g.pages.map((p) => {
        const active = p.path === '/' ? path === '/' : path === p.path || path.startsWith(`${p.path}/`);
        return h('li', {}, h('a', { href: `#${p.path}`, 'aria-current': active ? 'page' : null }, p.title));
      })));
  }));
}

async function route() {
  if (!me) return;
  if (current) {
    current.controller.abort();
    for (const fn of current.cleanups) { try { fn(); } catch { /* page already gone */ } }
  }
  const { path, query } = currentPath();
  const controller = new AbortController();
  const cleanups = [];
  current = { controller, cleanups };
  renderNav();
  navEl.classList.remove('open');
  delete mainEl.dataset.ready;
  const found = match(path);
  clear(mainEl);
  if (!found) {
    document.title = 'Not found · NovaCron';
    mainEl.append(pageHead('Not found'), h('p', {}, 'There is no such page. ', h('a', { href: '#/' }, 'Back to the overview')));
    mainEl.dataset.ready = 'true';
    return;
  }
  document.title = `${found.page.title} · NovaCron`;
  const ctx = {
    main: mainEl,
    params: found.params,
    query,
    me,
    can: (perm) => me.permissions.includes(perm),
    signal: controller.signal,
    onCleanup: (fn) => cleanups.push(fn),
    navigate: (to) => { location.hash = `#${to}`; },
  };
  live.pageStarted();
  try {
    await found.page.render(ctx);
  } catch (err) {
    if (controller.signal.aborted) return;
    clear(mainEl, pageHead(err?.status === 404 ? 'Not found' : found.page.title), errorBox(err));
  }
  if (controller.signal.aborted) return;
  // a hook for people and tests alike: the page has its data
  mainEl.dataset.ready = 'true';
  if (document.activeElement === document.body) mainEl.focus({ preventScroll: true });
}

// why a sign-in at an identity provider failed, by the code the callback sends the browser back
// with: the page says it in its own words (a URL anyone can make must not put text on this page)
const SSO_ERRORS = {
  provider: 'the identity provider did not sign you in.',
  browser: 'this sign-in was not begun in this browser; sign in again.',
  refused: 'your sign-in was refused (it expired or was used already, or your account may not sign in to this tenant); sign in again, or ask an administrator.',
  unavailable: 'the identity provider could not be reached; try again later.',
};
function ssoError() {
  const code = new URLSearchParams(location.search).get('sso_error');
  if (code) history.replaceState(null, '', location.pathname + location.hash);
  return code ? `Single sign-on failed: ${SSO_ERRORS[code] || 'sign in again.'}` : undefined;
}

async function boot() {
  // a new tab, a reload or a deep link: the session cookie (if any) gives this page its token
  if (!api.session.get() && !(await api.refresh())) { renderLogin(ssoError()); return; }
  try {
    me = await api.get('/v1/tokens/current');
  } catch {
    api.session.clear();
    renderLogin();
    return;
  }
  renderShell();
  // the tenant requires a second factor this user has not enrolled: the API answers only that page
  // (no live updates either) until it has enrolled one and refreshed its token
  if (me.mfa_enrol_required && currentPath().path !== '/mfa') { location.hash = '#/mfa'; return; }
  if (!me.mfa_enrol_required) live.start();
  await route();
}

window.addEventListener('hashchange', () => { route(); });
boot();
