// A real OpenID provider for the OAuth tests: the npm package oidc-provider (pinned in
// scripts/npm-tools/package.json), configured the way an authorization server for MCP must be:
// resource indicators (RFC 8707) deciding each token's audience, JWT access tokens (RFC 9068),
// PKCE, dynamic client registration, token introspection (RFC 7662).
//
//   OP_MODULES=<npm tools cache>/tools/node_modules node tests/oidc_provider.mjs
//
// Started by tests/oauth_helpers.py. Everything is set through the environment:
//   OP_MODULES        where oidc-provider is installed (required)
//   OP_PORT           port on 127.0.0.1 (default 0: a free one; restarting on the same port with
//                     new keys is a key rotation)
//   OP_SCOPES         the scopes a token for a resource may carry ("images:read images:generate")
//   OP_TTL            access token lifetime in seconds (300)
//   OP_ALG            how access tokens are signed: RS256, ES256, PS256 or EdDSA (RS256)
//   OP_FORMAT         jwt, or opaque (then only introspection can check a token) (jwt)
//   OP_CLOCK_OFFSET   seconds added to this provider's clock: -600 mints tokens that expired
//                     long ago, 600 tokens that are not valid yet (0)
//   OP_SERVER_SECRET  the secret of the confidential client "atlas-server" (the MCP server's own
//                     client: the key-linking page's sign-in, and introspection)
//
// Any resource indicator that is an http URL on 127.0.0.1 or localhost is accepted, and becomes
// the token's audience: every test server (any port) gets tokens for itself, and a token for
// another resource is one request away. Accounts: any login name, any password (the library's
// development login and consent pages). Two registered clients:
//   atlas-test-client  public native client (loopback redirect URIs, any port: RFC 8252 7.3)
//   atlas-server       confidential client, client_secret_basic, redirect http://127.0.0.1/link/callback
//                      (any port, as a loopback native redirect)
// On start it prints one JSON line to stdout ({"issuer", "port", "kid"}); logs go to stderr.
import { createServer } from 'node:http';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const env = process.env;
const offsetMs = Number(env.OP_CLOCK_OFFSET ?? 0) * 1000;
if (offsetMs) {
  const realNow = Date.now;
  Date.now = () => realNow() + offsetMs;
}
const modules = env.OP_MODULES;
if (!modules) {
  console.error('OP_MODULES must name the node_modules folder that holds oidc-provider');
  process.exit(2);
}
const { default: Provider, errors } = await import(
  pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')).href
);

const scopes = env.OP_SCOPES ?? 'images:read images:generate';
const ttl = Number(env.OP_TTL ?? 300);
const alg = env.OP_ALG ?? 'RS256';
const format = env.OP_FORMAT ?? 'jwt';

// A private JWK for `alg`, with its thumbprint (RFC 7638) as kid.
function signingKey(algorithm) {
  const kinds = {
    RS256: ['rsa', { modulusLength: 2048 }],
    PS256: ['rsa', { modulusLength: 2048 }],
    ES256: ['ec', { namedCurve: 'P-256' }],
    EdDSA: ['ed25519', {}],
  };
  const [type, options] = kinds[algorithm] ?? [];
  if (!type) throw new Error(`unsupported OP_ALG ${algorithm}`);
  const { privateKey } = generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  const required = { RSA: ['e', 'kty', 'n'], EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'] }[jwk.kty];
  const canonical = JSON.stringify(Object.fromEntries(required.map((name) => [name, jwk[name]])));
  const kid = createHash('sha256').update(canonical).digest('base64url').slice(0, 16);
  return { ...jwk, alg: algorithm, use: 'sig', kid };
}

function loopbackResource(indicator) {
  try {
    const url = new URL(indicator);
    return url.protocol === 'http:' && ['127.0.0.1', 'localhost'].includes(url.hostname) && !url.hash;
  } catch {
    return false;
  }
}

// The issuer holds the port, so the port is bound before the provider exists.
const server = createServer();
await new Promise((resolve) => server.listen(Number(env.OP_PORT ?? 0), '127.0.0.1', resolve));
const port = server.address().port;
const issuer = `http://127.0.0.1:${port}`;
// ID tokens are RS256 unless a client asks otherwise, so an RS256 key is always there.
const rsa = signingKey('RS256');
const key = alg === 'RS256' ? rsa : signingKey(alg);

const provider = new Provider(issuer, {
  jwks: { keys: alg === 'RS256' ? [rsa] : [key, rsa] },
  clients: [
    {
      client_id: 'atlas-test-client',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/callback', 'http://localhost/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
    {
      client_id: 'atlas-server',
      client_secret: env.OP_SERVER_SECRET ?? 'atlas-server-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/link/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  scopes: ['openid', 'offline_access', ...scopes.split(' ')],
  claims: { openid: ['sub'] },
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  pkce: { required: () => true },
  ttl: {
    AccessToken: ttl,
    AuthorizationCode: 60,
    IdToken: 600,
    RefreshToken: 86400,
    Grant: 86400,
    Interaction: 3600, // longer than any OP_CLOCK_OFFSET used: its cookie must not be born expired
    Session: 86400,
  },
  rotateRefreshToken: true,
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No resource named: none granted (the access token is then an opaque one for userinfo).
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (!loopbackResource(indicator)) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        return {
          scope: scopes,
          audience: indicator,
          accessTokenTTL: ttl,
          accessTokenFormat: format,
          ...(format === 'jwt' ? { jwt: { sign: { alg } } } : {}),
        };
      },
    },
  },
  clientBasedCORS: () => true,
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

server.on('request', provider.callback());
process.stdout.write(JSON.stringify({ issuer, port, kid: key.kid, alg }) + '\n');
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
