// WebAuthn passkeys (issue 18): the browser's side of the ceremonies. The server's options come
// as JSON with base64url strings (py_webauthn's options_to_json); navigator.credentials wants
// ArrayBuffers, and its answer goes back as JSON with base64url strings again.

import { post, session, signInStep } from './api.js';

const fromB64 = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(s.length / 4) * 4, '=')), (c) => c.charCodeAt(0)).buffer;
const toB64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const descriptors = (list) => (list || []).map((d) => ({ ...d, id: fromB64(d.id) }));

function credentialJSON(cred) {
  const r = cred.response;
  const response = { clientDataJSON: toB64(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64(r.attestationObject);
    if (r.getTransports) response.transports = r.getTransports();
  } else {
    response.authenticatorData = toB64(r.authenticatorData);
    response.signature = toB64(r.signature);
    if (r.userHandle) response.userHandle = toB64(r.userHandle);
  }
  return { id: cred.id, rawId: toB64(cred.rawId), type: cred.type, response, clientExtensionResults: {} };
}

/** Register a passkey for the signed-in user (navigator.credentials.create); the stored passkey. */
export async function addPasskey(name) {
  const o = await post('/v1/mfa/webauthn/register/options', {});
  const publicKey = {
    ...o, challenge: fromB64(o.challenge), user: { ...o.user, id: fromB64(o.user.id) },
    excludeCredentials: descriptors(o.excludeCredentials),
  };
  const cred = await navigator.credentials.create({ publicKey });
  return post('/v1/mfa/webauthn/register', { credential: credentialJSON(cred), name }, { idempotent: true });
}

/** Step-up with a passkey: this login session may do sensitive actions for five minutes. */
export async function verifyWithPasskey() {
  const o = await post('/v1/mfa/webauthn/verify/options', {});
  const publicKey = { ...o, challenge: fromB64(o.challenge), allowCredentials: descriptors(o.allowCredentials) };
  const cred = await navigator.credentials.get({ publicKey });
  return post('/v1/mfa/webauthn/verify', { credential: credentialJSON(cred) });
}

/** The login's second step with a passkey (navigator.credentials.get); keeps the tokens. */
export async function signInWithPasskey(mfaToken) {
  const o = await signInStep('/v1/tokens/mfa/webauthn/options', { mfa_token: mfaToken });
  const publicKey = { ...o, challenge: fromB64(o.challenge), allowCredentials: descriptors(o.allowCredentials) };
  const cred = await navigator.credentials.get({ publicKey });
  session.set(await signInStep('/v1/tokens/mfa/webauthn', { mfa_token: mfaToken, credential: credentialJSON(cred) }));
}

export const passkeysSupported = () => typeof window.PublicKeyCredential === 'function';
