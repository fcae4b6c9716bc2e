#!/usr/bin/env node
// A local OpenID Connect identity provider for tests and demos, built on
// `oidc-provider` (v9). Binds 127.0.0.1 only; everything is kept in memory.
//
//   import { startIdp } from './examples/idp.mjs';
//   const idp = await startIdp({ resource: 'http://127.0.0.1:9401/mcp' });
//   ... idp.issuer, idp.stats.codeExchanges, await idp.revokeAllGrants() ...
//   await idp.close();
//
// Run directly: `node examples/idp.mjs` (IDP_PORT, MCP_BACKEND_URL).

import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { randomBytes, randomUUID } from 'node:crypto';
import { generateKeyPair, exportJWK, importJWK, SignJWT, jwtVerify, createLocalJWKSet } from 'jose';

export const DEFAULT_SCOPE = 'openid profile email';
const RESOURCE_SCOPE = 'openid profile email offline_access mcp:tools';

/** Default clients. Redirect URIs of the native client are port-agnostic (see below). */
export function defaultClients() {
  return [
    {
      // Public native client, as used by the proxy: PKCE, no secret.
      client_id: 'demo-client',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://localhost:8080/auth/callback', 'http://127.0.0.1:8080/auth/callback'],
    },
    {
      client_id: 'confidential-client',
      client_secret: 'confidential-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://localhost:8080/auth/callback', 'http://127.0.0.1:8080/auth/callback'],
    },
    {
      client_id: 'post-client',
      client_secret: 'post-secret',
      token_endpoint_auth_method: 'client_secret_post',
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://localhost:8080/auth/callback', 'http://127.0.0.1:8080/auth/callback'],
    },
    {
      // Public client for the device authorization grant (RFC 8628): no redirect, no secret.
      client_id: 'device-client',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'service-client',
      client_secret: 'service-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
  ];
}

/**
 * Start the identity provider.
 * @param {object} [opts]
 * @param {number} [opts.port=0]                 0 = random free port
 * @param {string} [opts.resource]               backend URL: audience of the JWT access tokens
 * @param {number} [opts.accessTokenTtl=300]     seconds
 * @param {number} [opts.refreshTokenTtl=86400]  seconds
 * @param {boolean} [opts.rotateRefreshToken=true]
 * @param {object[]} [opts.clients]              extra client metadata, added to the defaults
 * @param {string} [opts.defaultScope]           applied to /auth requests without `scope`
 * @param {boolean} [opts.quiet=true]            silence oidc-provider's dev-mode warnings
 * @param {boolean} [opts.recordTokenRequests=false]  test knob: keep the secrets of every
 *                                              token-endpoint request (code, code_verifier,
 *                                              refresh_token) in `idp.tokenRequests`, so a test
 *                                              can check they never leak anywhere else
 *                                              (each record also has `resource`, the RFC 8707
 *                                              parameter(s) sent, if any)
 * @param {string[]} [opts.extraResourceScopes=[]]  test knob: more scopes the backend (resource
 *                                              server) grants, e.g. ['mcp:admin'] for step-up
 * @param {boolean} [opts.plainOAuth=false]   serve `/.well-known/oauth-authorization-server` as
 *                                              a plain OAuth 2.1 server would (RFC 8414: no
 *                                              `jwks_uri`, no OpenID fields, no `openid` scope)
 * @param {string} [opts.mcpUpstream]         forward `/mcp` on this provider's origin to this MCP
 *                                              server URL (an MCP server and its authorization
 *                                              server on one origin, as MCP 2025-03-26 has it)
 * @param {number} [opts.deviceCodeTtl=600]     seconds a device code (RFC 8628) stays valid
 * @param {object} [opts.crossApp]              test knob: enterprise-managed authorization
 *                                              (SEP-990) with this provider as both the company
 *                                              IdP and the MCP server's authorization server:
 *                                              the token-exchange grant (ID token -> ID-JAG for
 *                                              `crossApp.mcpClientId`) and the jwt-bearer grant
 *                                              (ID-JAG -> JWT access token for its resource);
 *                                              counted in stats.tokenExchanges/jwtBearerGrants
 *
 * Test knob: `idp.failTokenRequests(...failures)` makes the next token-endpoint requests fail,
 * one failure each, before oidc-provider sees them: `{ status = 400, error, description,
 * body, retryAfter, contentType }` (`error` gives an OAuth JSON error body; `body` a raw one,
 * e.g. an HTML error page). `idp.stats.injectedFailures` counts those served.
 *
 * Every request is also counted in `idp.requests` ({ method, path, query, time }; no bodies)
 * and `idp.stats` has registrations, discoveryRequests, deviceAuthorizations and
 * deviceCodeExchanges.
 */
export async function startIdp(opts = {}) {
  const {
    port = 0,
    resource = 'http://127.0.0.1:9401/mcp',
    accessTokenTtl = 300,
    refreshTokenTtl = 86400,
    rotateRefreshToken = true,
    clients = [],
    defaultScope = DEFAULT_SCOPE,
    quiet = true,
    recordTokenRequests = false,
    extraResourceScopes = [],
    deviceCodeTtl = 600,
    crossApp,
  } = opts;
  const resourceScope = [RESOURCE_SCOPE, ...extraResourceScopes].join(' ');

  // The issuer must be known when the Provider is constructed, so listen first.
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;

  // A fresh signing key per instance (avoids oidc-provider's shared dev keys).
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: `k-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };

  const configuration = {
    clients: [...defaultClients(), ...clients],
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    // Any username logs in; it becomes the subject.
    async findAccount(_ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { sub, name: sub, preferred_username: sub, email: `${sub}@example.test`, email_verified: true };
        },
      };
    },
    pkce: { required: () => true },
    // oidc-provider only issues refresh tokens when `offline_access` was granted, and it
    // silently drops `offline_access` unless the request also has `prompt=consent`.
    // Real IdPs (Keycloak, Entra, ...) hand out refresh tokens to code-flow clients anyway,
    // and the proxy asks for `openid profile email` only: issue one whenever the client
    // may use the refresh_token grant.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken,
    // Without offline_access, tokens would be bound to the login session; keep them independent.
    expiresWithSession: async () => false,
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      AuthorizationCode: 120,
      RefreshToken: refreshTokenTtl,
      IdToken: 3600,
      Interaction: 600,
      Session: 86400,
      Grant: refreshTokenTtl,
      DeviceCode: deviceCodeTtl,
    },
    features: {
      devInteractions: { enabled: true }, // plain HTML login + consent forms
      resourceIndicators: {
        enabled: true,
        // No `resource` parameter => the backend is the audience.
        defaultResource: async () => resource,
        useGrantedResource: async () => true,
        // Any resource indicator gets a JWT for the configured backend.
        getResourceServerInfo: async () => ({
          audience: resource,
          scope: resourceScope,
          accessTokenFormat: 'jwt',
          accessTokenTTL: accessTokenTtl,
        }),
      },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
      registration: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
    },
    clientBasedCORS: () => true,
  };

  const restoreWarn = quiet ? silenceAttention() : () => {};
  let provider;
  try {
    // Imported lazily so the "Unsupported runtime" (Node 20) warning printed at import
    // time can be silenced too.
    const { default: Provider, errors } = await import('oidc-provider');
    provider = new Provider(issuer, configuration);
    if (crossApp) await enableCrossApp(provider, errors, { issuer, jwk, accessTokenTtl, crossApp, count: (k) => { stats[k] += 1; } });
  } finally {
    restoreWarn();
  }

  // NOTE on RFC 8252 §7.3 (loopback redirect ports): oidc-provider 9 already ignores the
  // port when comparing http://localhost|127.0.0.1|[::1] redirect URIs of clients with
  // application_type "native" (Client#redirectUriAllowed -> stripLoopbackPort), so no
  // override is needed. rig.test.mjs checks that a random callback port is accepted.

  const stats = {
    authorizationRequests: 0, // every hit on the authorization endpoint
    authorizations: 0, // authorization requests that reached the login form
    authorizationSuccesses: 0, // redirects back to the client with a code
    authorizationErrors: 0,
    codeExchanges: 0, // successful authorization_code grants
    codeFailures: 0,
    refreshes: 0, // successful refresh_token grants
    refreshFailures: 0, // failed refresh_token grants (e.g. invalid_grant)
    clientCredentials: 0,
    grantErrors: [], // { grantType, error, description }
    tokenEndpointRequests: 0, // every hit on the token endpoint, whatever the outcome
    registrations: 0, // successful dynamic client registrations (RFC 7591)
    discoveryRequests: 0, // every GET of a /.well-known/* document (and of the JWKS)
    deviceAuthorizations: 0, // every hit on the device authorization endpoint
    deviceCodeExchanges: 0, // successful device_code grants
    tokenExchanges: 0, // ID-JAGs issued (crossApp)
    jwtBearerGrants: 0, // access tokens issued for an ID-JAG (crossApp)
    injectedFailures: 0, // token-endpoint requests failed on purpose (failTokenRequests)
  };
  const failures = []; // queued by failTokenRequests()
  const requests = []; // { method, path, query, time } of every request, no bodies
  const tokenRequests = []; // only filled with recordTokenRequests
  const grantIds = new Set();

  const grantTypeOf = (ctx) => ctx.oidc?.params?.grant_type ?? ctx.oidc?.body?.grant_type;
  provider.on('interaction.started', (_ctx, prompt) => {
    if (prompt?.name === 'login') stats.authorizations += 1;
  });
  provider.on('authorization.success', () => { stats.authorizationSuccesses += 1; });
  provider.on('authorization.error', () => { stats.authorizationErrors += 1; });
  provider.on('grant.success', (ctx) => {
    const type = grantTypeOf(ctx);
    if (type === 'authorization_code') stats.codeExchanges += 1;
    else if (type === 'refresh_token') stats.refreshes += 1;
    else if (type === 'client_credentials') stats.clientCredentials += 1;
    else if (type === 'urn:ietf:params:oauth:grant-type:device_code') stats.deviceCodeExchanges += 1;
  });
  provider.on('registration_create.success', () => { stats.registrations += 1; });
  provider.on('grant.error', (ctx, err) => {
    const type = grantTypeOf(ctx);
    if (type === 'refresh_token') stats.refreshFailures += 1;
    if (type === 'authorization_code') stats.codeFailures += 1;
    stats.grantErrors.push({ grantType: type, error: err?.error ?? err?.message, description: err?.error_description });
  });
  provider.on('grant.saved', (grant) => grantIds.add(grant.jti));
  provider.on('refresh_token.saved', (token) => token.grantId && grantIds.add(token.grantId));
  // Keep test output clean; uncomment when debugging.
  provider.on('server_error', (_ctx, err) => console.error('[idp] server_error', err));

  provider.use(async (ctx, next) => {
    requests.push({ method: ctx.method, path: ctx.path, query: { ...ctx.query }, time: Date.now(), ua: ctx.get('user-agent') });
    if (ctx.path.startsWith('/.well-known/') || ctx.path === '/jwks') stats.discoveryRequests += 1;
    if (ctx.path === '/device/auth') stats.deviceAuthorizations += 1;
    // RFC 8414 metadata: same document as OIDC discovery (less the OpenID parts for a plain
    // OAuth 2.1 server).
    if (ctx.path === '/.well-known/oauth-authorization-server') {
      ctx.path = '/.well-known/openid-configuration';
      if (opts.plainOAuth) {
        await next();
        const doc = { ...ctx.body };
        for (const k of Object.keys(doc)) {
          if (/^(jwks_uri|id_token_|userinfo_|subject_types|claims?_|request_object_|end_session|check_session|frontchannel|backchannel)/.test(k)) delete doc[k];
        }
        doc.scopes_supported = (doc.scopes_supported ?? []).filter((x) => x !== 'openid');
        ctx.body = doc;
        return;
      }
    }
    if (ctx.path === '/token') {
      stats.tokenEndpointRequests += 1;
      const f = failures.shift();
      if (f) {
        stats.injectedFailures += 1;
        ctx.status = f.status ?? 400;
        if (f.retryAfter !== undefined) ctx.set('Retry-After', String(f.retryAfter));
        if (f.body !== undefined) {
          ctx.type = f.contentType ?? 'text/html';
          ctx.body = f.body;
        } else {
          ctx.type = 'application/json';
          ctx.body = JSON.stringify({ error: f.error ?? 'server_error', ...(f.description && { error_description: f.description }) });
        }
        return;
      }
      if (recordTokenRequests) {
        await next();
        const p = ctx.oidc?.params ?? {};
        tokenRequests.push({ grantType: p.grant_type, code: p.code, codeVerifier: p.code_verifier, refreshToken: p.refresh_token, resource: p.resource, status: ctx.status });
        return;
      }
    }
    if (ctx.path === '/auth' || ctx.path.startsWith('/auth?')) {
      stats.authorizationRequests += 1;
      // Apply a default scope (oidc-provider answers access_denied/invalid otherwise).
      if (ctx.method === 'GET' && !ctx.query.scope) {
        ctx.query = { ...ctx.query, scope: defaultScope };
      }
    }
    await next();
  });

  const callback = provider.callback();
  server.on('request', (req, res) => {
    // An MCP server on the provider's own origin (a 2025-03-26 deployment: no protected
    // resource metadata, the authorization server at the MCP server's origin).
    if (opts.mcpUpstream && (req.url === '/mcp' || req.url.startsWith('/mcp?'))) return forward(req, res, opts.mcpUpstream);
    return callback(req, res);
  });

  /** Fail the next token-endpoint requests on purpose, one failure each (see startIdp). */
  function failTokenRequests(...list) {
    failures.push(...list);
  }

  /** Revoke every grant (and so every refresh token) issued so far. */
  async function revokeAllGrants() {
    const ids = [...grantIds];
    grantIds.clear();
    for (const id of ids) {
      await provider.RefreshToken.adapter.revokeByGrantId(id);
      await provider.AuthorizationCode.adapter.revokeByGrantId(id);
      await provider.Grant.adapter.destroy(id);
    }
    return ids.length;
  }

  async function close() {
    if (!server.listening) return;
    await new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  /**
   * Test knob: take the provider off the network (stop listening, drop connections) while
   * keeping its state (keys, grants, refresh tokens), like an outage of a real IdP.
   */
  async function pause() {
    await close();
  }

  /** Listen again on the same port after `pause()`. */
  async function resume() {
    if (server.listening) return;
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(actualPort, '127.0.0.1', () => { server.off('error', reject); resolve(); });
    });
  }

  return { issuer, port: actualPort, provider, server, stats, tokenRequests, requests, revokeAllGrants, failTokenRequests, close, pause, resume, resource };
}

/**
 * SEP-990 on oidc-provider, for tests: RFC 8693 token exchange of an ID token issued here
 * for an ID-JAG (typ `oauth-id-jag+jwt`), and the RFC 7523 jwt-bearer grant of an ID-JAG for
 * a JWT access token (audience: the ID-JAG's resource). Both signed with the provider's key.
 */
async function enableCrossApp(provider, errors, { issuer, jwk, accessTokenTtl, crossApp, count }) {
  const signer = await importJWK(jwk, 'RS256');
  const { d, p, q, dp, dq, qi, ...pub } = jwk;
  const ownKeys = createLocalJWKSet({ keys: [pub] });
  const sign = (claims, typ, aud, ttl) => new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ })
    .setIssuer(issuer).setAudience(aud).setIssuedAt().setExpirationTime(`${ttl}s`).setJti(randomUUID())
    .sign(signer);
  const verify = async (jwt, opts) => {
    try { return (await jwtVerify(jwt, ownKeys, { issuer, ...opts })).payload; } catch (e) { throw new errors.InvalidGrant(e.message); }
  };
  provider.registerGrantType('urn:ietf:params:oauth:grant-type:token-exchange', async (ctx) => {
    const prm = ctx.oidc.params;
    if (prm.subject_token_type !== 'urn:ietf:params:oauth:token-type:id_token') throw new errors.InvalidRequest('subject_token_type must be id_token');
    if (prm.requested_token_type !== 'urn:ietf:params:oauth:token-type:id-jag') throw new errors.InvalidRequest('requested_token_type must be id-jag');
    if (!prm.audience || !prm.resource) throw new errors.InvalidRequest('audience and resource are required');
    const idToken = await verify(prm.subject_token, { audience: ctx.oidc.client.clientId });
    const jag = await sign({ sub: idToken.sub, client_id: crossApp.mcpClientId, resource: prm.resource, ...(prm.scope && { scope: prm.scope }) },
      'oauth-id-jag+jwt', prm.audience, 300);
    count('tokenExchanges');
    ctx.body = { access_token: jag, issued_token_type: 'urn:ietf:params:oauth:token-type:id-jag', token_type: 'N_A', expires_in: 300 };
  }, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope']);
  provider.registerGrantType('urn:ietf:params:oauth:grant-type:jwt-bearer', async (ctx) => {
    const jag = await verify(ctx.oidc.params.assertion, { audience: issuer, typ: 'oauth-id-jag+jwt' });
    if (jag.client_id !== ctx.oidc.client.clientId) throw new errors.InvalidGrant('the ID-JAG is for another client');
    const scope = jag.scope ?? 'mcp:tools';
    const at = await sign({ sub: jag.sub, client_id: jag.client_id, scope }, 'at+jwt', jag.resource, accessTokenTtl);
    count('jwtBearerGrants');
    ctx.body = { access_token: at, token_type: 'Bearer', expires_in: accessTokenTtl, scope };
  }, ['assertion', 'scope']);
}

// oidc-provider prints loud "attention" warnings for devInteractions/dev keys; hide them.
function silenceAttention() {
  const { warn, info } = console;
  const filter = (orig) => (...args) => {
    if (String(args[0] ?? '').includes('oidc-provider')) return;
    orig(...args);
  };
  console.warn = filter(warn);
  console.info = filter(info);
  return () => { console.warn = warn; console.info = info; };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const idp = await startIdp({
    port: Number(process.env.IDP_PORT ?? 9400),
    resource: process.env.MCP_BACKEND_URL ?? 'http://127.0.0.1:9401/mcp',
    accessTokenTtl: Number(process.env.ACCESS_TOKEN_TTL ?? 300),
    quiet: false,
  });
  console.error(`idp: issuer ${idp.issuer} (resource ${idp.resource})`);
  console.error('idp: clients demo-client (public), confidential-client/confidential-secret, post-client/post-secret, service-client/service-secret');
  const stop = async () => { await idp.close(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/** Pipe one HTTP request to `target` (a URL) and its answer back, streams as they come. */
function forward(req, res, target) {
  const url = new URL(target);
  const upstream = http.request(
    { host: url.hostname, port: url.port, path: url.pathname + (req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : ''), method: req.method, headers: { ...req.headers, host: url.host } },
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
  res.on('close', () => upstream.destroy());
  req.pipe(upstream);
}
