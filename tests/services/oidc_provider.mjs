// A real OpenID provider for the SSO tests: panva's oidc-provider (pinned, scripts/setup.sh installs it
// into build/oidc-provider), on a loopback address and port given by the test.
//
//   node oidc_provider.mjs HOST PORT REDIRECT_URI
//
// One client, "novacron" (secret "novacron-secret"), with the authorization code grant (PKCE required),
// refresh tokens and the device authorization grant (RFC 8628). Accounts (any password at the
// provider's development login form): alice (group ops-admins), bob (group devs), carol (no group).
// POST /test/disable/NAME disables an account: from then on the provider finds no such account, so its
// refresh tokens and access tokens are refused, as a provider does for a user an administrator
// disabled. Prints "ready" on stdout once it listens.
import { createRequire } from 'node:module';
import path from 'node:path';

const [host, port, redirectUri] = process.argv.slice(2);
const dir = process.env.OIDC_PROVIDER_DIR;
const require = createRequire(path.join(dir, 'package.json'));
const { default: Provider } = await import(require.resolve('oidc-provider'));

const accounts = {
  alice: ['ops-admins'],
  bob: ['devs'],
  carol: [],
};
const disabled = new Set();

function findAccount(ctx, sub) {
  if (!(sub in accounts) || disabled.has(sub)) return undefined;
  return {
    accountId: sub,
    async claims() {
      return { sub, preferred_username: sub, email: `${sub}@example.test`, email_verified: true, groups: accounts[sub] };
    },
  };
}

const issuer = `http://${host}:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'novacron',
    client_secret: 'novacron-secret',
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [new URL('/', redirectUri).href],
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
  }],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  findAccount,
  // a first-party client: no consent screen, every scope it asks for is granted
  async loadExistingGrant(ctx) {
    const clientId = ctx.oidc.client.clientId;
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(clientId);
    if (grantId) {
      const found = await ctx.oidc.provider.Grant.find(grantId);
      if (found) return found;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile email groups offline_access');
    await grant.save();
    ctx.oidc.session.grantIdFor(clientId, grant.jti);
    return grant;
  },
  // refresh tokens without the offline_access dance (prompt=consent): the platform re-checks each user
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  ttl: { AccessToken: 600, IdToken: 600, RefreshToken: 3600, DeviceCode: 300, Grant: 3600, Session: 3600, Interaction: 600 },
});

const callback = provider.callback();
const server = (await import('node:http')).createServer((req, res) => {
  const hit = req.method === 'POST' && req.url.match(/^\/test\/disable\/([a-z]+)$/);
  if (hit) {
    disabled.add(hit[1]);
    res.writeHead(204).end();
    return;
  }
  callback(req, res);
});
server.listen(Number(port), host, () => process.stdout.write('ready\n'));
