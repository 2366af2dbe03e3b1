// The REST API with the user's own access token: every page reads and writes through here, so
// authentication and tenant scoping are the API's, never the dashboard's.

import { checkBody } from './formcheck.js';

// refresh this long before the access token expires
const REFRESH_MARGIN_MS = 60_000;

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
  /** problem+json `errors[]` as {field: reason}, field names as the API gives them (body.name). */
  get fieldErrors() {
    const out = {};
    for (const e of this.problem.errors || []) out[e.field] = e.reason;
    return out;
  }
}

// The access token lives in this page's memory only (never in sessionStorage or localStorage,
// where any script could read it): it is sent only in the Authorization header and never written
// into a URL (the console WebSocket opens with a single-use ticket). The refresh token is an
// HttpOnly cookie the server sets for /v1/tokens/refresh alone, so a new tab, a reload or a
// bookmarked deep link trades it for an access token without asking to sign in again.
let current = null; // {access, expires}
export const session = {
  get() { return current; },
  set(tokens) {
    current = { access: tokens.access_token, expires: Date.now() + tokens.expires_in * 1000 };
  },
  clear() { current = null; },
};

// the custom header the server requires before it uses the session cookie (a cross-site page
// cannot send it without a CORS preflight, which the API never grants)
const COOKIE_MODE = { 'X-Requested-With': 'novacron-dashboard' };
// tabs tell each other about a sign-out, so none goes on showing a session that ended
const tabs = typeof BroadcastChannel === 'function' ? new BroadcastChannel('novacron.session') : null;

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }
if (tabs) tabs.onmessage = (ev) => { if (ev.data === 'signed-out') { session.clear(); onUnauthorized(); } };

async function parse(resp) {
  const type = resp.headers.get('content-type') || '';
  if (resp.status === 204) return null;
  if (type.includes('json')) return resp.json();
  return resp.text();
}

export async function login(username, password, tenant) {
  // usernames are unique per tenant: the tenant is sent only when given; without it the server
  // reads "name@tenant" (split on the last "@"), else platform users and tenant "default"'s
  const grant = tenant ? { username, password, tenant } : { username, password };
  const resp = await fetch('/v1/tokens', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...COOKIE_MODE },
    body: JSON.stringify(grant),
  });
  const body = await parse(resp);
  if (!resp.ok) throw new ApiError(resp.status, typeof body === 'object' && body ? body : { detail: String(body) });
  // a second factor: no tokens yet, a challenge to answer with a code (loginCode)
  if (body.mfa_required) return { mfaToken: body.mfa_token };
  session.set(body);
  return null;
}

/** The second step of a login with a second factor: the challenge and a TOTP or recovery code. */
export async function loginCode(mfaToken, code) {
  session.set(await signInStep('/v1/tokens/mfa', { mfa_token: mfaToken, code }));
}

/** A POST of the login's second step (no token yet): the code, or a passkey's options and assertion. */
export async function signInStep(path, grant) {
  const resp = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...COOKIE_MODE },
    body: JSON.stringify(grant),
  });
  const body = await parse(resp);
  if (!resp.ok) throw new ApiError(resp.status, typeof body === 'object' && body ? body : { detail: String(body) });
  return body;
}

async function spendCookie() {
  const resp = await fetch('/v1/tokens/refresh', { method: 'POST', headers: COOKIE_MODE, credentials: 'same-origin' });
  if (!resp.ok) return false;
  session.set(await resp.json());
  return true;
}

let refreshing = null;
/** Trade the session cookie for a new access token; false when there is no session (any more). */
export async function refresh() {
  // one refresh at a time, across tabs too (the cookie is shared and single use: a second spend
  // of the same one would end the login session as a suspected theft)
  refreshing ??= (navigator.locks ? navigator.locks.request('novacron.refresh', spendCookie) : spendCookie())
    .catch(() => false)
    .finally(() => { refreshing = null; });
  return refreshing;
}

/** A valid access token (refreshed when close to expiry), or null when signed out. */
export async function accessToken() {
  if (!current || current.expires - Date.now() < REFRESH_MARGIN_MS) {
    if (!(await refresh())) { session.clear(); return null; }
  }
  return current.access;
}

/**
 * fetch, sent again (twice at most) when the answer was lost on the way: browsers abort requests
 * in flight when the machine's network changes (ERR_NETWORK_CHANGED), which on a hypervisor host
 * happens whenever a VM's interface comes or goes. Only requests safe to repeat are resent.
 */
async function fetchResending(path, init, safe) {
  for (let n = 0; ; n++) {
    try {
      return { resp: await fetch(path, init), resent: n > 0 };
    } catch (err) {
      if (!safe || n >= 2 || err.name === 'AbortError') throw err;
      await new Promise((done) => setTimeout(done, 250 * (n + 1)));
    }
  }
}

function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Call the API. Returns {data, etag, status}. Throws ApiError with the problem+json body.
 * `idempotent: true` sends an Idempotency-Key so a retried create is not done twice.
 */
export async function request(path, { method = 'GET', body, ifMatch, idempotent = false, signal } = {}) {
  if (body !== undefined && method !== 'GET') await refuseInvalid(method, path, body);
  // one key for every attempt: a create whose answer was lost is answered, not done twice
  const key = idempotent ? randomKey() : null;
  for (let attempt = 0; attempt < 2; attempt++) {
    const token = await accessToken();
    if (!token) { onUnauthorized(); throw new ApiError(401, { title: 'Signed out' }); }
    const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json, application/problem+json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (ifMatch) headers['If-Match'] = ifMatch;
    if (key) headers['Idempotency-Key'] = key;
    const init = { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) };
    const { resp, resent } = await fetchResending(path, init, method === 'GET' || key !== null || method === 'DELETE');
    if (resent && method === 'DELETE' && resp.status === 404) return { data: null, etag: null, status: 204 };
    if (resp.status === 401 && attempt === 0 && (await refresh())) continue;
    const data = await parse(resp);
    if (resp.status === 401) { session.clear(); onUnauthorized(); }
    if (!resp.ok) {
      throw new ApiError(resp.status, data && typeof data === 'object' ? data : { detail: String(data || resp.statusText) });
    }
    return { data, etag: resp.headers.get('etag'), status: resp.status };
  }
  throw new ApiError(401, { title: 'Signed out' });
}

/**
 * Every write is checked before it is sent, with the schema's rules and the API's sentences
 * (formcheck.js): a body the API would refuse is refused here, as the same 422 problem, unsent.
 */
export async function refuseInvalid(method, path, body) {
  let errors = [];
  try { errors = await checkBody(method, path, body); } catch { errors = []; /* the server checks anyway */ }
  if (!errors.length) return;
  const short = (f) => f.replace(/^body\./, '').replace(/^body$/, 'request body');
  throw new ApiError(422, {
    title: 'Invalid request', status: 422, checked: 'before sending',
    detail: errors.map((e) => `${short(e.field)}: ${e.reason}`).join('; '),
    errors: errors.map(({ field, reason }) => ({ field, reason })),
  });
}

export async function get(path, opts) { return (await request(path, opts)).data; }
export async function post(path, body, opts = {}) { return (await request(path, { ...opts, method: 'POST', body })).data; }

/** Every item of a paginated list, following next_cursor up to `max` items. */
export async function listAll(path, params = {}, max = 2000) {
  const items = [];
  let cursor = null;
  do {
    const q = new URLSearchParams({ limit: '500', ...params });
    if (cursor) q.set('cursor', cursor);
    const page = await get(`${path}?${q}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

export async function logout() {
  // the answer also clears the refresh cookie; the server ends the login session (its family) and,
  // for a user of single sign-on, names where to sign out at the provider too (returned)
  let atProvider = null;
  try { atProvider = (await post('/v1/sso/logout')).end_session_url; } catch { /* signed out anyway */ }
  session.clear();
  if (tabs) tabs.postMessage('signed-out');
  return atProvider;
}
