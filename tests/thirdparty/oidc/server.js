// node oidc-provider for tests/thirdparty_oidc.rs: `node server.js PORT [ISSUER]`.
//
// Two confidential clients, one per tenant (alpha-web → app-alpha, beta-web → app-beta),
// authorization_code + refresh_token (rotated) + client_credentials, RS256 JWT access tokens for
// the resource server urn:authtrail:api (JWKS at /jwks), opaque refresh tokens and codes,
// revocation and RP-initiated logout. The login and consent pages (the "interactions") are the
// small JSON handler below: it checks the password, so a wrong one really fails. Everything else
// is oidc-provider's own behaviour. Listens on 127.0.0.1:PORT only.
// oidc-provider 8.x (package-lock.json): it supports Node.js 18+, 9.x asks for 22+.
import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.argv[2]);
if (!port) throw new Error('usage: node server.js PORT [ISSUER]');
const issuer = process.argv[3] || `http://127.0.0.1:${port}`;

const API = 'urn:authtrail:api';
// Fixed users: the test knows these passwords (and scans the trail for them).
const USERS = {
  alice: 'alice-pw-Correct-Horse-7731',
  bob: 'bob-pw-Battery-Staple-4402',
};

const client = (id, secret, scope) => ({
  client_id: id,
  client_secret: secret,
  // Unused local URLs: the test reads the Location header and never follows it.
  redirect_uris: [`http://127.0.0.1:9/${id}/cb`],
  post_logout_redirect_uris: [`http://127.0.0.1:9/${id}/bye`],
  grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  scope,
});

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'oidc-test-rs256', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [
    client('alpha-web', 'alpha-secret-Zq81-Vw3e-Kk20', 'openid offline_access api:read api:write'),
    // beta-web may not ask for api:write (invalid_scope)
    client('beta-web', 'beta-secret-Lm55-Tr9u-Hx04', 'openid offline_access api:read'),
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: ['cookie-signing-key-Pp47-Yy12-Nn93'] },
  scopes: ['openid', 'offline_access', 'api:read', 'api:write'],
  async findAccount(_ctx, id) {
    if (!Object.hasOwn(USERS, id)) return undefined;
    return { accountId: id, async claims() { return { sub: id }; } };
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => false },
  rotateRefreshToken: true,
  // A refresh token for every code exchange of a client allowed the grant (no offline_access
  // prompt dance needed).
  issueRefreshToken: async (_ctx, c) => c.grantTypeAllowed('refresh_token'),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = `<!DOCTYPE html><html><body>${form}<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button></body></html>`;
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = '<!DOCTYPE html><html><body>Signed out</body></html>';
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => API,
      useGrantedResource: () => true,
      async getResourceServerInfo(_ctx, indicator) {
        if (indicator !== API) throw new errors.InvalidTarget();
        return {
          audience: API,
          scope: 'api:read api:write',
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  async renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

// ---- the interactions: login (password checked) and consent, answered in JSON -------------

function form(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { body += c; });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

function json(res, status, body) {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('cache-control', 'no-store');
  res.end(JSON.stringify(body));
}

async function interaction(req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (e) {
    return json(res, 400, { error: 'invalid_request', error_description: 'interaction not found' });
  }
  if (details.uid !== uid) return json(res, 400, { error: 'invalid_request', error_description: 'interaction mismatch' });
  const { prompt, params, session, grantId } = details;
  if (req.method === 'GET' && !action) {
    return json(res, 200, { uid, prompt: prompt.name, client_id: params.client_id, account: session?.accountId });
  }
  if (req.method !== 'POST') return json(res, 405, { error: 'invalid_request' });
  const body = await form(req);
  if (action === 'login' && prompt.name === 'login') {
    const login = body.get('login') || '';
    if (!Object.hasOwn(USERS, login) || body.get('password') !== USERS[login]) {
      return json(res, 401, { error: 'invalid_credentials', error_description: 'wrong user name or password', client_id: params.client_id });
    }
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm' && prompt.name === 'consent') {
    const grant = grantId ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const result = { consent: { grantId: await grant.save() } };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  }
  if (action === 'abort') {
    const result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  return json(res, 400, { error: 'invalid_request', error_description: `cannot ${action} at ${prompt.name}` });
}

const callback = provider.callback();
http.createServer((req, res) => {
  const m = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/.exec(req.url.split('?')[0]);
  if (!m) return callback(req, res);
  interaction(req, res, m[1], m[2]).catch((e) => {
    console.error(e);
    if (!res.headersSent) json(res, 500, { error: 'server_error' });
  });
}).listen(port, '127.0.0.1', () => console.log(`listening on ${port} as ${issuer}`));
