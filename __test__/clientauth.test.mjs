// Client authentication beyond a secret, end to end: `private_key_jwt` (RFC 7523) and
// cross-app access (SEP-990). For `private_key_jwt`:
// oidc-provider (examples/idp.mjs) with clients that authenticate only with a signed JWT
// (their public keys registered as `jwks`), the JWT-validating SDK backend, and `node cli.js`
// under the SDK Client. The IdP checks the assertion itself (iss = sub = client_id, aud,
// exp, unique jti, signature with the registered key, its `kid`).
//
//   node --test --test-concurrency=1 __test__/clientauth.test.mjs

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import { startBackend } from '../examples/backend.mjs';
import { killStrayBrowsers } from './helpers/rig.mjs';
import { setup as baseSetup, connectProxy, whoami, runCli, waitPastExpiry, sleep } from './helpers/proxy.mjs';

const T = { timeout: 60_000 };

const scratch = mkdtempSync(join(tmpdir(), 'authful-clientauth-test-'));
const pidFile = join(scratch, 'browsers.pids');
after(async () => {
  await killStrayBrowsers(pidFile);
  rmSync(scratch, { recursive: true, force: true });
});

/** A key pair: its PKCS#8 PEM in a 0600 file, and its public JWK (with `kid`, if given). */
async function keyPair(type, options, kid) {
  const { privateKey, publicKey } = generateKeyPairSync(type, options);
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  const file = join(scratch, `${type}-${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(file, pem, { mode: 0o600 });
  const jwk = await exportJWK(publicKey);
  return { file, pem, jwk: { ...jwk, kid: kid ?? (await calculateJwkThumbprint(jwk)) } };
}

const noKeyMaterial = (stderr, key) => {
  const body = key.pem.split('\n').filter((l) => l && !l.startsWith('-----'));
  for (const line of body) assert.ok(!stderr.includes(line), 'no line of the private key on stderr');
  assert.doesNotMatch(stderr, /client_assertion=|eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/, 'no assertion (or any JWT) on stderr');
};

test('client credentials with private_key_jwt (ES256, kid = RFC 7638 thumbprint): the IdP verifies the assertion; a wrong key is refused', T, async (t) => {
  const key = await keyPair('ec', { namedCurve: 'P-256' });
  const ctx = await baseSetup(t, {
    pidFile,
    clientId: 'jwt-service',
    accessTokenTtl: 5,
    idp: {
      clients: [{
        client_id: 'jwt-service',
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [key.jwk] },
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      }],
    },
  });
  const { idp } = ctx.rig;
  // The key comes from the variable (an MCP client config's `env` block).
  const env = { MCP_PROXY_CLIENT_PRIVATE_KEY: key.file };
  const p = await connectProxy(ctx, { args: ['--client-credentials'], env });
  const who = await whoami(p.client);
  assert.equal(who.client_id, 'jwt-service');
  assert.equal(who.sub, 'jwt-service', 'the client is the subject');
  assert.equal(idp.stats.clientCredentials, 1, JSON.stringify(idp.stats.grantErrors));

  // After expiry: a new grant with a new assertion (oidc-provider refuses a reused jti).
  await waitPastExpiry(ctx);
  const again = await whoami(p.client);
  assert.ok(again.exp > who.exp, 'a new access token');
  assert.equal(idp.stats.clientCredentials, 2, JSON.stringify(idp.stats.grantErrors));
  assert.deepEqual(idp.stats.grantErrors, []);
  await p.client.close();
  noKeyMaterial(p.stderr(), key);
  assert.equal((await ctx.opened()).length, 0, 'no browser');

  // Another key (its kid unknown to the IdP): refused, exit 3, the IdP's error named, no key
  // material on stderr.
  const other = await keyPair('ec', { namedCurve: 'P-256' });
  const bad = await runCli(ctx, ['token', '--client-credentials', '--client-private-key', other.file, ctx.rig.backendUrl], {
    env: { MCP_PROXY_CACHE_DIR: join(ctx.home.dir, 'other-cache') },
  });
  assert.equal(bad.code, 3, bad.stderr);
  assert.match(bad.stderr, /invalid_client/);
  assert.equal(bad.stdout, '', 'no token on stdout');
  noKeyMaterial(bad.stderr, other);
});

test('authorization code and refresh with private_key_jwt (RS256, --client-key-id): login, silent refresh, the IdP checks every assertion', T, async (t) => {
  const key = await keyPair('rsa', { modulusLength: 2048 }, 'proxy-key-1');
  const ctx = await baseSetup(t, {
    pidFile,
    clientId: 'jwt-native',
    accessTokenTtl: 5,
    idp: {
      recordTokenRequests: true,
      clients: [{
        client_id: 'jwt-native',
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'RS256',
        jwks: { keys: [key.jwk] },
        application_type: 'native',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1:8080/auth/callback', 'http://localhost:8080/auth/callback'],
      }],
    },
  });
  const { idp } = ctx.rig;
  const args = ['--client-private-key', key.file, '--client-key-id', 'proxy-key-1'];
  const p = await connectProxy(ctx, { args });
  const who = await whoami(p.client);
  assert.equal(who.client_id, 'jwt-native');
  assert.equal(who.sub, 'alice');
  assert.equal(idp.stats.codeExchanges, 1, JSON.stringify(idp.stats.grantErrors));
  assert.equal((await ctx.opened()).length, 1, 'one browser login');

  await waitPastExpiry(ctx);
  const again = await whoami(p.client);
  assert.ok(again.exp > who.exp, 'a refreshed access token');
  assert.equal(idp.stats.refreshes, 1, JSON.stringify(idp.stats.grantErrors));
  assert.equal(idp.stats.codeExchanges, 1, 'no second login');
  assert.equal((await ctx.opened()).length, 1, 'no second browser window');
  assert.deepEqual(idp.stats.grantErrors, []);
  assert.deepEqual(idp.tokenRequests.map((r) => [r.grantType, r.status]),
    [['authorization_code', 200], ['refresh_token', 200]]);
  await p.client.close();
  noKeyMaterial(p.stderr(), key);
});

test('cross-app access (SEP-990): one IdP login, ID token -> ID-JAG -> access token; a new exchange after expiry and for a second MCP server, no second login', T, async (t) => {
  const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
  const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
  // The example IdP plays both the company IdP and the MCP server's authorization server.
  const ctx = await baseSetup(t, {
    pidFile,
    clientId: 'xaa-idp-client',
    accessTokenTtl: 5,
    idp: {
      crossApp: { mcpClientId: 'xaa-mcp-client' },
      clients: [
        {
          client_id: 'xaa-idp-client',
          token_endpoint_auth_method: 'none',
          application_type: 'native',
          grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
          response_types: ['code'],
          redirect_uris: ['http://127.0.0.1:8080/auth/callback', 'http://localhost:8080/auth/callback'],
        },
        {
          client_id: 'xaa-mcp-client',
          client_secret: 'xaa-mcp-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: [JWT_BEARER],
          response_types: [],
          redirect_uris: [],
        },
      ],
    },
  });
  const { idp } = ctx.rig;
  const env = { MCP_PROXY_CROSS_APP_ACCESS: '1', MCP_PROXY_MCP_CLIENT_ID: 'xaa-mcp-client', MCP_PROXY_MCP_CLIENT_SECRET: 'xaa-mcp-secret' };
  const p = await connectProxy(ctx, { env });
  const who = await whoami(p.client);
  assert.equal(who.sub, 'alice', 'the user who logged in at the IdP');
  assert.equal(who.client_id, 'xaa-mcp-client', 'issued to the MCP client, by the jwt-bearer grant');
  assert.equal(who.aud, ctx.rig.backendUrl);
  assert.equal(idp.stats.codeExchanges, 1, JSON.stringify(idp.stats.grantErrors));
  assert.equal(idp.stats.tokenExchanges, 1);
  assert.equal(idp.stats.jwtBearerGrants, 1);
  assert.equal((await ctx.opened()).length, 1, 'one browser login (at the IdP)');

  // Two cache entries: the IdP login (shared by every MCP server) and this server's token.
  assert.equal(ctx.cacheFiles().length, 2);
  // Expiry: a new exchange with the cached ID token; no login, no browser.
  await sleep(who.exp * 1000 - Date.now() + 1200);
  const again = await whoami(p.client);
  assert.ok(again.exp > who.exp, 'a new access token');
  assert.equal(idp.stats.tokenExchanges, 2);
  assert.equal(idp.stats.jwtBearerGrants, 2);
  assert.equal(idp.stats.codeExchanges, 1, 'no second login');
  await p.client.close();
  assert.ok(!p.stderr().includes('xaa-mcp-secret'), 'the secret never reaches stderr');
  assert.doesNotMatch(p.stderr(), /eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/, 'no token on stderr');

  // A second MCP server with the same IdP: the cached login serves it too.
  const second = await startBackend({ mode: 'sse', auth: 'jwt', issuer: ctx.rig.issuer });
  t.after(() => second.close());
  const q = await connectProxy(ctx, { env, backendUrl: second.url });
  const who2 = await whoami(q.client);
  assert.equal(who2.aud, second.url, 'a token for the second server');
  assert.equal(who2.sub, 'alice');
  assert.equal(idp.stats.tokenExchanges, 3);
  assert.equal(idp.stats.codeExchanges, 1, 'still one login');
  assert.equal((await ctx.opened()).length, 1, 'still one browser window');
  await q.client.close();
});
