// "Login beyond the browser", end to end against real parts: discovery of the authorization
// server from the MCP server (RFC 9728 + RFC 8414), dynamic client registration (RFC 7591),
// the device authorization grant (RFC 8628, explicit and chosen on a headless machine), client
// credentials, step-up on 403 insufficient_scope, --authorize-param, and resource indicators
// (RFC 8707). oidc-provider (examples/idp.mjs), the JWT-validating SDK backend
// (examples/backend.mjs), `node cli.js` under the SDK Client or on raw stdio, a headless
// $BROWSER (helpers/browser.mjs) and a headless second device (helpers/device.mjs).
//
//   node --test --test-concurrency=1 __test__/grants.test.mjs

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { killStrayBrowsers, waitFor } from './helpers/rig.mjs';
import { completeDeviceLogin, parseDevicePrompt } from './helpers/device.mjs';
import { completeLogin } from './helpers/browser.mjs';
import { startIdp } from '../examples/idp.mjs';
import { startBackend } from '../examples/backend.mjs';
import {
  AUTH_ERROR, CLI, setup as baseSetup, startProxy, connectProxy, whoami, callJson, spawnRaw, runCli,
  waitPastExpiry, within, sleep, freePort,
} from './helpers/proxy.mjs';

const T = { timeout: 60_000 };

const scratch = mkdtempSync(join(tmpdir(), 'authful-grants-test-'));
const pidFile = join(scratch, 'browsers.pids'); // this file's own browser workers only
after(async () => {
  await killStrayBrowsers(pidFile);
  rmSync(scratch, { recursive: true, force: true });
});

const setup = (t, opts = {}) => baseSetup(t, { pidFile, ...opts });

/** No OIDC_* variable at all; the callback URL is given as a flag (port 8080 may be taken). */
const DISCOVERY = { issuer: false, clientId: null, redirectEnv: false };

/** The environment of a machine where no browser can be opened. */
const HEADLESS = {
  BROWSER: undefined, DISPLAY: undefined, WAYLAND_DISPLAY: undefined, SSH_CONNECTION: undefined, SSH_TTY: undefined,
};

const scopesOf = (s) => new Set(String(s ?? '').split(' ').filter(Boolean));
const isDiscovery = (r) => r.path.startsWith('/.well-known/') || r.path === '/jwks';

/** Wait for the device prompt on stderr. */
function devicePrompt(stderr, timeoutMs = 20_000) {
  return waitFor(() => parseDevicePrompt(stderr()), { timeoutMs, what: 'the device code prompt on stderr' })
    .catch((err) => { err.message += `\n--- proxy stderr ---\n${stderr()}`; throw err; });
}

// ---- 1, 2: discovery and dynamic registration --------------------------------------------

test('discovery without issuer or client ID: browser login, cache records issuer + registration; a warm start asks the IdP nothing', T, async (t) => {
  const ctx = await setup(t, DISCOVERY);
  const { idp, backend } = ctx.rig;
  for (const k of Object.keys(ctx.env)) assert.ok(!k.startsWith('OIDC_'), `no OIDC_* in the env (${k})`);

  const first = await connectProxy(ctx, { args: ctx.redirectArgs });
  const who = await whoami(first.client);
  assert.equal(who.sub, 'alice');
  assert.equal(who.aud, ctx.rig.backendUrl);
  assert.equal(idp.stats.registrations, 1, 'one dynamic registration');
  assert.equal(idp.stats.codeExchanges, 1);

  // The proxy found the IdP through the backend: the unauthenticated probe and RFC 9728.
  assert.ok(backend.log.some((e) => e.kind === 'http' && e.path.startsWith('/.well-known/oauth-protected-resource')),
    'the protected resource metadata was fetched');
  // RFC 8414 first, as the MCP specification says.
  const firstMeta = idp.requests.find((r) => r.path.startsWith('/.well-known/'));
  assert.equal(firstMeta?.path, '/.well-known/oauth-authorization-server');

  const { entry } = ctx.readCache();
  const d = entry.discovered;
  assert.equal(d?.issuer, idp.issuer, `discovered issuer in the cache: ${JSON.stringify(d)}`);
  assert.ok(d.registration?.client_id, 'the registration is cached');
  assert.equal(d.registration.client_id, who.client_id, 'the token was issued to the registered client');
  assert.equal(d.registration.redirect_uri, ctx.redirectUrl);
  assert.equal(d.resource, ctx.rig.backendUrl);

  const opened = await ctx.opened();
  assert.equal(opened.length, 1);
  const authUrl = new URL(opened[0].url);
  assert.equal(`${authUrl.origin}${authUrl.pathname}`, `${idp.issuer}/auth`);
  assert.equal(authUrl.searchParams.get('client_id'), d.registration.client_id);
  // Scopes from the PRM's scopes_supported (no OIDC_SCOPES).
  assert.ok(scopesOf(authUrl.searchParams.get('scope')).has('mcp:tools'), `PRM scopes requested: ${authUrl.searchParams.get('scope')}`);
  await first.client.close();

  // Warm start: cached issuer, registration and tokens; nothing is asked of the IdP.
  const idpBefore = idp.requests.length;
  const beBefore = backend.log.length;
  const second = await connectProxy(ctx, { args: ctx.redirectArgs });
  assert.equal((await whoami(second.client)).client_id, d.registration.client_id);
  const idpAfter = idp.requests.slice(idpBefore);
  assert.equal(idp.stats.registrations, 1, 'no new registration');
  assert.deepEqual(idpAfter.filter((r) => r.path === '/reg'), [], 'no registration request');
  assert.deepEqual(idpAfter.filter(isDiscovery).map((r) => r.path), [], 'no discovery request to the IdP');
  assert.equal(idp.stats.codeExchanges, 1, 'no new login');
  assert.equal((await ctx.opened()).length, 1, 'no new browser window');
  const prm = backend.log.slice(beBefore).filter((e) => e.kind === 'http' && e.path.startsWith('/.well-known/'));
  assert.deepEqual(prm.map((e) => e.path), [], 'the backend metadata is not fetched again either');
  await second.client.close();

  // `status` names what was discovered and registered, from the cache alone.
  const st = await runCli(ctx, ['status', '--json', ...ctx.redirectArgs, ctx.rig.backendUrl]);
  assert.equal(st.code, 0, st.stderr);
  const report = JSON.parse(st.stdout);
  assert.equal(report.issuer, idp.issuer);
  assert.equal(report.clientId, d.registration.client_id);
  assert.equal(report.loggedIn, true);
});

test('registration is redone when OIDC_REDIRECT_URL changes; the login works', T, async (t) => {
  const ctx = await setup(t, { ...DISCOVERY, accessTokenTtl: 5 });
  const { idp } = ctx.rig;
  const first = await connectProxy(ctx, { args: ctx.redirectArgs });
  const who1 = await whoami(first.client);
  await first.client.close();
  const reg1 = ctx.readCache().entry.discovered.registration;
  assert.equal(reg1.client_id, who1.client_id);
  assert.equal(idp.stats.registrations, 1);

  // The callback URL is another one now, but the token only expired: the refresh token
  // belongs to the old registration and needs no redirect, so it is used as it is.
  await waitPastExpiry(ctx);
  const otherRedirect = `http://127.0.0.1:${await freePort()}/auth/callback`;
  const refreshed = await connectProxy(ctx, { env: { OIDC_REDIRECT_URL: otherRedirect } });
  assert.equal((await whoami(refreshed.client)).client_id, reg1.client_id);
  await refreshed.client.close();
  assert.equal(idp.stats.registrations, 1, 'a refresh needs no new registration');
  assert.equal((await ctx.opened()).length, 1, 'and no browser');

  // Now a login is due (the grant was revoked): it registers again with the new redirect URL.
  idp.revokeAllGrants();
  await waitPastExpiry(ctx);
  const second = await connectProxy(ctx, { env: { OIDC_REDIRECT_URL: otherRedirect } });
  const who2 = await whoami(second.client);
  assert.equal(who2.sub, 'alice');
  assert.equal(idp.stats.registrations, 2, 'a second registration');
  const reg2 = ctx.readCache().entry.discovered.registration;
  assert.equal(reg2.redirect_uri, otherRedirect);
  assert.notEqual(reg2.client_id, reg1.client_id);
  assert.equal(who2.client_id, reg2.client_id, 'the new token belongs to the new registration');
  const opened = await ctx.opened();
  assert.equal(opened.length, 2, 'a browser login with the new client');
  assert.equal(new URL(opened[1].url).searchParams.get('redirect_uri'), otherRedirect);
  assert.equal(new URL(opened[1].url).searchParams.get('client_id'), reg2.client_id);
});

// ---- 3, 4, 5: device authorization grant ---------------------------------------------------

test('--device-code: the prompt on stderr, a second device completes it, the session works', T, async (t) => {
  const ctx = await setup(t, { clientId: 'device-client' });
  const { idp } = ctx.rig;
  const p = startProxy(ctx, { args: ['--device-code'], timeoutMs: 45_000 });
  const prompt = await devicePrompt(p.stderr);
  assert.equal(prompt.uri, `${idp.issuer}/device`);
  assert.match(prompt.userCode, /^[A-Z]{4}-[A-Z]{4}$/);
  assert.ok(prompt.complete, `verification_uri_complete is shown:\n${p.stderr()}`);
  assert.equal(new URL(prompt.complete).searchParams.get('user_code'), prompt.userCode);

  const done = await completeDeviceLogin(prompt.complete);
  assert.equal(done.outcome, 'success', JSON.stringify(done));
  await p.connected;
  const who = await whoami(p.client);
  assert.equal(who.sub, 'alice');
  assert.equal(who.client_id, 'device-client');
  assert.equal(idp.stats.deviceCodeExchanges, 1);
  assert.equal(idp.stats.codeExchanges, 0, 'no authorization code flow');
  assert.equal((await ctx.opened()).length, 0, 'no browser was opened');
  const { entry } = ctx.readCache();
  assert.ok(entry.tokens.refresh_token, 'a refresh token was cached');
  assert.equal(entry.tokens.subject, 'alice', 'the ID token was verified and its subject recorded');
});

for (const [name, env] of [
  ['no BROWSER, no DISPLAY/WAYLAND_DISPLAY', HEADLESS],
  ['BROWSER=lynx', { ...HEADLESS, BROWSER: 'lynx' }],
]) {
  test(`headless (${name}): the proxy picks the device flow by itself`, T, async (t) => {
    const ctx = await setup(t, { clientId: 'device-client' });
    const { idp } = ctx.rig;
    const p = startProxy(ctx, { env, timeoutMs: 45_000 });
    const prompt = await devicePrompt(p.stderr);
    assert.match(p.stderr(), /device code/i);
    assert.match(p.stderr(), /no browser/i, `stderr says why:\n${p.stderr()}`);
    // This time the "user" types the code at verification_uri.
    const done = await completeDeviceLogin(prompt.uri, prompt.userCode);
    assert.equal(done.outcome, 'success', JSON.stringify(done));
    await p.connected;
    assert.equal((await whoami(p.client)).client_id, 'device-client');
    assert.equal(idp.stats.deviceCodeExchanges, 1);
    assert.equal(idp.stats.authorizationRequests, 0, 'no authorization request at all');
  });
}

test('headless, but the client may not use a device code: the login URL is printed and a browser login completes', T, async (t) => {
  const ctx = await setup(t); // demo-client: authorization code only
  const { idp } = ctx.rig;
  const p = startProxy(ctx, { env: HEADLESS, timeoutMs: 45_000 });
  await waitFor(() => /code_challenge=\S+/.test(p.stderr()), { timeoutMs: 20_000, what: `the login URL on stderr:\n${p.stderr()}` });
  assert.match(p.stderr(), /may not use a device code/, p.stderr());
  // The user opens the printed URL somewhere else.
  const url = p.stderr().match(/https?:\/\/\S*code_challenge=\S+/)[0];
  await completeLogin(url);
  await p.connected;
  assert.equal((await whoami(p.client)).client_id, 'demo-client');
  assert.equal(idp.stats.codeExchanges, 1);
  assert.equal(idp.stats.deviceCodeExchanges, 0);
});

test('a plain OAuth 2.1 authorization server (RFC 8414, no jwks_uri, no openid): login without OpenID, no keys fetched', T, async (t) => {
  const ctx = await setup(t, { ...DISCOVERY, idp: { plainOAuth: true } });
  const { idp } = ctx.rig;
  const p = await connectProxy(ctx, { args: ctx.redirectArgs });
  const who = await whoami(p.client);
  assert.equal(who.sub, 'alice');
  assert.equal(who.aud, ctx.rig.backendUrl);
  const mine = idp.requests.filter((r) => String(r.ua).startsWith('authful-mcp-proxy/'));
  const meta = mine.filter((r) => r.path.startsWith('/.well-known/'));
  assert.deepEqual(meta.map((r) => r.path), ['/.well-known/oauth-authorization-server'], 'RFC 8414 metadata only');
  assert.deepEqual(mine.filter((r) => r.path === '/jwks'), [], 'no keys fetched: no ID token to verify');
  const opened = await ctx.opened();
  assert.equal(opened.length, 1);
  const scope = scopesOf(new URL(opened[0].url).searchParams.get('scope'));
  assert.ok(!scope.has('openid'), `no openid asked of a plain OAuth server: ${[...scope]}`);
  assert.ok(scope.has('mcp:tools'), `the server's scopes: ${[...scope]}`);
  assert.ok(scope.has('offline_access'), `offline_access, which the server lists: ${[...scope]}`);
  assert.ok(ctx.readCache().entry.tokens.refresh_token, 'a refresh token came back');
});

test('a 2025-03-26 server (no protected resource metadata, its authorization server on its own origin): discovered there, login works', T, async (t) => {
  const ctx = await setup(t, DISCOVERY);
  // The example parts on one origin: the identity provider serves /mcp by forwarding it to a
  // backend that offers no protected resource metadata.
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const backend = await startBackend({ issuer: origin, audience: `${origin}/mcp`, protectedResourceMetadata: false });
  ctx.defer(() => backend.close());
  const idp = await startIdp({ port, resource: `${origin}/mcp`, mcpUpstream: backend.url });
  ctx.defer(() => idp.close());
  // Such a server names no scopes: the user gives them (the example provider grants
  // nothing for `offline_access` alone).
  const p = await connectProxy(ctx, { args: ctx.redirectArgs, backendUrl: `${origin}/mcp`, env: { OIDC_SCOPES: 'mcp:tools' } });
  const who = await whoami(p.client);
  assert.equal(who.iss, origin);
  assert.equal(who.aud, `${origin}/mcp`);
  const meta = idp.requests.filter((r) => String(r.ua).startsWith('authful-mcp-proxy/') && r.path.startsWith('/.well-known/'));
  assert.ok(meta.some((r) => r.path === '/.well-known/oauth-protected-resource/mcp'), 'protected resource metadata asked for first');
  assert.ok(meta.some((r) => r.path === '/.well-known/oauth-authorization-server'), 'then the metadata on the MCP server\'s origin');
  assert.equal(idp.stats.registrations, 1, 'registered there');
  const d = ctx.readCache().entry.discovered;
  assert.equal(d.issuer, origin);
  assert.equal(d.fallback, true, 'cached as a 2025-03-26 server');
});

test('a server that needs no login, no OIDC_ISSUER_URL: bridged without a token, one notice, no login', T, async (t) => {
  const ctx = await setup(t, { ...DISCOVERY, auth: 'none' });
  const p = startProxy(ctx, { args: ctx.redirectArgs });
  await p.connected;
  const tools = await p.client.listTools();
  assert.ok(tools.tools.length > 0, 'tools listed');
  const who = await callJson(p.client, 'whoami');
  assert.deepEqual(who, { anonymous: true }, 'no token was sent');
  assert.equal(ctx.rig.idp.requests.length, 0, 'the IdP was never contacted');
  assert.ok(!ctx.rig.backend.log.some((e) => e.kind === 'http' && e.path?.startsWith('/.well-known/')), 'no discovery');
  assert.equal((await ctx.opened()).length, 0, 'no browser');
  assert.equal(p.stderr().match(/no login configured/g)?.length, 1, `one notice:\n${p.stderr()}`);
  assert.deepEqual(ctx.cacheFiles(), [], 'nothing cached');
});

test('the authorization server moves: a 401 naming another one leads to a login there, and the old one gets no refresh token', T, async (t) => {
  let current; // the issuer the backend trusts and names in its metadata
  const ctx = await setup(t, { ...DISCOVERY, backend: { issuer: () => current } });
  const a = ctx.rig.idp;
  current = a.issuer;
  const p = await connectProxy(ctx, { args: ctx.redirectArgs });
  assert.equal((await whoami(p.client)).iss, a.issuer);

  const b = await startIdp({ resource: ctx.rig.backendUrl });
  ctx.defer(() => b.close());
  current = b.issuer;
  const aBefore = a.requests.length;
  const who = await whoami(p.client);
  assert.equal(who.iss, b.issuer, 'logged in at the new authorization server');
  assert.equal(who.sub, 'alice');
  assert.deepEqual(a.requests.slice(aBefore).filter((r) => r.path === '/token'), [], 'nothing sent to the old token endpoint');
  assert.equal(b.stats.registrations, 1, 'registered anew at the new server');
  assert.equal((await ctx.opened()).length, 2, 'one login at each server');
  const d = ctx.readCache().entry.discovered;
  assert.equal(d.issuer, b.issuer, 'the cached login is the new server\'s');
  assert.match(p.stderr(), /authorization server moved/);
});

test('headless with discovery and a dynamically registered client: the device flow works', T, async (t) => {
  const ctx = await setup(t, DISCOVERY);
  const { idp } = ctx.rig;
  const p = startProxy(ctx, { args: ctx.redirectArgs, env: HEADLESS, timeoutMs: 45_000 });
  const raced = await Promise.race([
    devicePrompt(p.stderr).then((v) => ({ prompt: v })),
    p.connected.then(() => ({ connected: true }), (err) => ({ err })),
  ]);
  assert.ok(raced.prompt, `a device prompt expected; got ${raced.err?.message ?? 'a session without login'}\nIdP grant errors: ${JSON.stringify(idp.stats.grantErrors)}`);
  const done = await completeDeviceLogin(raced.prompt.complete ?? raced.prompt.uri, raced.prompt.userCode);
  assert.equal(done.outcome, 'success');
  await p.connected;
  const who = await whoami(p.client);
  assert.equal(who.client_id, ctx.readCache().entry.discovered.registration.client_id);
  assert.equal(idp.stats.deviceCodeExchanges, 1);
});

test('`login --device-code <backend>`, then `status --json`; the proxy uses the cached login', T, async (t) => {
  const ctx = await setup(t, { clientId: 'device-client' });
  const { idp } = ctx.rig;
  const child = spawn(process.execPath, [CLI, 'login', '--no-banner', '--device-code', ctx.rig.backendUrl], { env: ctx.env, stdio: ['ignore', 'pipe', 'pipe'] });
  ctx.defer(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const prompt = await devicePrompt(() => stderr);
  assert.equal((await completeDeviceLogin(prompt.complete ?? prompt.uri, prompt.userCode)).outcome, 'success');
  const code = await within(exited, 20_000, '`login --device-code` exit');
  assert.equal(code, 0, stderr);
  assert.equal(stdout, '', 'login prints nothing on stdout');
  assert.match(stderr, /logged in/i);

  const status = await runCli(ctx, ['status', '--json', ctx.rig.backendUrl]);
  assert.equal(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout);
  assert.equal(s.loggedIn, true);
  assert.equal(s.subject, 'alice');
  assert.equal(s.clientId, 'device-client');

  const p = await connectProxy(ctx, { args: ['--device-code'] });
  assert.equal((await whoami(p.client)).sub, 'alice');
  assert.doesNotMatch(p.stderr(), /to log in, open/, 'no new device prompt');
  assert.equal(idp.stats.deviceAuthorizations, 1);
  assert.equal(idp.stats.deviceCodeExchanges, 1);
});

test('device flow denied: initialize gets a -32001 error naming access_denied; no crash', T, async (t) => {
  const ctx = await setup(t, { clientId: 'device-client' });
  const raw = spawnRaw(ctx, { args: ['--device-code'] });
  const reply = raw.initialize(45_000);
  const prompt = await devicePrompt(raw.stderr);
  const done = await completeDeviceLogin(prompt.complete, undefined, { action: 'deny' });
  assert.equal(done.outcome, 'denied');
  const r = await reply;
  assert.equal(r.error?.code, AUTH_ERROR, JSON.stringify(r));
  assert.match(r.error.message, /access_denied|denied|refused/i, r.error.message);
  await sleep(200);
  assert.equal(raw.child.exitCode, null, 'still running');
  const { code, signal } = await raw.close();
  assert.equal(signal, null);
  assert.equal(code, 0, `clean exit on stdin EOF\n${raw.stderr()}`);
  assert.doesNotMatch(raw.stderr(), /panicked|RUST_BACKTRACE/);
  assert.equal(ctx.rig.idp.stats.deviceCodeExchanges, 0);
});

test('device code expired (IdP device code TTL 2 s): a clear timeout error; no crash', T, async (t) => {
  const ctx = await setup(t, { clientId: 'device-client', idp: { deviceCodeTtl: 2 } });
  const raw = spawnRaw(ctx, { args: ['--device-code'] });
  const started = Date.now();
  const r = await raw.initialize(30_000);
  const elapsed = Date.now() - started;
  assert.ok(parseDevicePrompt(raw.stderr()), `the prompt was shown:\n${raw.stderr()}`);
  assert.equal(r.error?.code, AUTH_ERROR, JSON.stringify(r));
  assert.match(r.error.message, /expired|time(d)? ?out|within \d+ ?s/i, r.error.message);
  assert.ok(elapsed < 20_000, `answered within seconds (${elapsed} ms)`);
  assert.equal(raw.child.exitCode, null, 'still running');
  const { code, signal } = await raw.close();
  assert.equal(signal, null);
  assert.equal(code, 0, raw.stderr());
  assert.doesNotMatch(raw.stderr(), /panicked|RUST_BACKTRACE/);
});

// ---- 6: client credentials -----------------------------------------------------------------

test('--client-credentials: the client is the subject, no browser, a new grant after expiry; `token` prints one', T, async (t) => {
  const ctx = await setup(t, { clientId: 'service-client', clientSecret: 'service-secret', accessTokenTtl: 5 });
  const { idp } = ctx.rig;
  const args = ['--client-credentials'];
  const p = await connectProxy(ctx, { args });
  const who = await whoami(p.client);
  assert.equal(who.client_id, 'service-client');
  assert.equal(who.sub, 'service-client', 'the client is the subject');
  assert.equal(idp.stats.clientCredentials, 1, JSON.stringify(idp.stats.grantErrors));
  assert.equal((await ctx.opened()).length, 0, 'no browser');
  assert.equal(idp.stats.authorizationRequests, 0);

  await waitPastExpiry(ctx);
  const again = await whoami(p.client);
  assert.equal(again.client_id, 'service-client');
  assert.ok(again.exp > who.exp, 'a new access token');
  assert.equal(idp.stats.clientCredentials, 2, 'asked again with client credentials');
  assert.equal(idp.stats.refreshes, 0);
  assert.equal(idp.stats.codeExchanges, 0);
  assert.equal((await whoami(p.client)).client_id, 'service-client', 'calls keep working');
  await p.client.close();
  assert.ok(!p.stderr().includes('service-secret'), 'the secret never reaches stderr');

  const tok = await runCli(ctx, ['token', ...args, ctx.rig.backendUrl]);
  assert.equal(tok.code, 0, tok.stderr);
  const jwt = tok.stdout.trim();
  assert.match(jwt, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT on stdout');
  const client = new Client({ name: 'token-user', version: '1' });
  ctx.defer(() => client.close());
  await within(client.connect(new StreamableHTTPClientTransport(new URL(ctx.rig.backendUrl), {
    requestInit: { headers: { Authorization: `Bearer ${jwt}` } },
  })), 10_000, 'direct connect with the printed token');
  assert.equal((await whoami(client)).client_id, 'service-client');
  assert.equal((await ctx.opened()).length, 0);
});

// ---- 7: step-up ----------------------------------------------------------------------------

test('403 insufficient_scope: one more login with the union of scopes, the call is retried and succeeds', T, async (t) => {
  const ctx = await setup(t, {
    idp: { extraResourceScopes: ['mcp:admin'] },
    backend: { requireScopes: { admin: 'mcp:admin' } },
  });
  const { idp, backend } = ctx.rig;
  const p = await connectProxy(ctx);
  const who = await whoami(p.client);
  const before = scopesOf(who.scope);
  assert.ok(!before.has('mcp:admin'), `the first token lacks mcp:admin (${who.scope})`);
  assert.equal(idp.stats.codeExchanges, 1);

  const admin = await callJson(p.client, 'admin', 45_000);
  const after = scopesOf(admin.scope);
  assert.ok(after.has('mcp:admin'), `the new token has mcp:admin (${admin.scope})`);
  for (const s of before) assert.ok(after.has(s), `the new token keeps ${s} (${admin.scope})`);
  assert.equal(idp.stats.codeExchanges, 2, 'exactly one extra login');
  const opened = await ctx.opened();
  assert.equal(opened.length, 2);
  const asked = scopesOf(new URL(opened[1].url).searchParams.get('scope'));
  for (const s of [...before, 'mcp:admin']) assert.ok(asked.has(s), `the step-up login asks for ${s}`);
  const calls = backend.log.filter((e) => e.kind === 'http' && e.tool === 'admin').map((e) => e.status);
  assert.deepEqual(calls, [403, 200], 'one 403, one retry');

  // The session goes on with the wider token; no more logins.
  assert.ok(scopesOf((await whoami(p.client)).scope).has('mcp:admin'));
  await callJson(p.client, 'admin');
  assert.equal(idp.stats.codeExchanges, 2);
  assert.ok(scopesOf(ctx.readCache().entry.tokens.scope).has('mcp:admin'), 'the cache holds the wider token');
});

test('403 insufficient_scope for a scope the IdP never grants: one extra login, then an error, no loop', T, async (t) => {
  const ctx = await setup(t, { backend: { requireScopes: { root: 'mcp:root' } } });
  const { idp, backend } = ctx.rig;
  const p = await connectProxy(ctx);
  await whoami(p.client);
  await assert.rejects(callJson(p.client, 'root', 45_000), (err) => {
    assert.match(String(err.message), /403/, err.message);
    return true;
  });
  assert.equal(idp.stats.codeExchanges, 2, 'exactly one step-up login');
  const rootCalls = () => backend.log.filter((e) => e.kind === 'http' && e.tool === 'root').map((e) => e.status);
  assert.deepEqual(rootCalls(), [403, 403], 'one retry after the step-up');
  // Asking again for the same scope does not start another login.
  await assert.rejects(callJson(p.client, 'root', 45_000));
  assert.equal(idp.stats.codeExchanges, 2, 'no login for a scope already asked for');
  assert.deepEqual(rootCalls(), [403, 403, 403]);
  assert.equal((await whoami(p.client)).sub, 'alice', 'the session still works');
});

// ---- 8: --authorize-param ------------------------------------------------------------------

test('--authorize-param: prompt=consent and audience=x reach the authorize URL; state=x exits 2', T, async (t) => {
  const ctx = await setup(t);
  const p = await connectProxy(ctx, { args: ['--authorize-param', 'prompt=consent', '--authorize-param', 'audience=x'] });
  assert.equal((await whoami(p.client)).sub, 'alice');
  const opened = await ctx.opened();
  assert.equal(opened.length, 1);
  const q = new URL(opened[0].url).searchParams;
  assert.equal(q.get('prompt'), 'consent');
  assert.equal(q.get('audience'), 'x');
  assert.equal(q.getAll('state').length, 1);

  const r = await runCli(ctx, ['--no-banner', '--authorize-param', 'state=x', ctx.rig.backendUrl], { timeoutMs: 15_000 });
  assert.equal(r.code, 2, `exit code\n${r.stderr}`);
  assert.match(r.stderr, /authorize-param/);
  assert.equal(r.stdout, '');
  assert.equal((await ctx.opened()).length, 1, 'no browser for the refused configuration');
});

// ---- 9: resource indicators ----------------------------------------------------------------

/** `resource` values sent with authorization_code token requests. */
const codeResources = (idp) => idp.tokenRequests.filter((r) => r.grantType === 'authorization_code').map((r) => r.resource);

test('resource: discovery sends resource=<backend> on authorize and token requests', T, async (t) => {
  const ctx = await setup(t, { ...DISCOVERY, idp: { recordTokenRequests: true } });
  const p = await connectProxy(ctx, { args: ctx.redirectArgs });
  assert.equal((await whoami(p.client)).sub, 'alice');
  const opened = await ctx.opened();
  assert.deepEqual(new URL(opened[0].url).searchParams.getAll('resource'), [ctx.rig.backendUrl]);
  assert.deepEqual(codeResources(ctx.rig.idp), [ctx.rig.backendUrl]);
});

test('resource: --no-resource sends none (discovery mode)', T, async (t) => {
  const ctx = await setup(t, { ...DISCOVERY, idp: { recordTokenRequests: true } });
  const p = await connectProxy(ctx, { args: [...ctx.redirectArgs, '--no-resource'] });
  assert.equal((await whoami(p.client)).sub, 'alice');
  const opened = await ctx.opened();
  assert.deepEqual(new URL(opened[0].url).searchParams.getAll('resource'), []);
  assert.deepEqual(codeResources(ctx.rig.idp), [undefined]);
});

test('resource: with an issuer configured, none by default; --resource <url> is sent', T, async (t) => {
  const ctx = await setup(t, { idp: { recordTokenRequests: true } });
  const plain = await runCli(ctx, ['login', '--no-banner', ctx.rig.backendUrl]);
  assert.equal(plain.code, 0, plain.stderr);
  let opened = await ctx.opened();
  assert.deepEqual(new URL(opened[0].url).searchParams.getAll('resource'), [], 'no resource unless asked');
  assert.deepEqual(codeResources(ctx.rig.idp), [undefined]);

  const p = await connectProxy(ctx, { args: ['--resource', ctx.rig.backendUrl] });
  assert.equal((await whoami(p.client)).aud, ctx.rig.backendUrl);
  opened = await ctx.opened();
  assert.equal(opened.length, 2, '--resource is another cache entry: a login');
  assert.deepEqual(new URL(opened[1].url).searchParams.getAll('resource'), [ctx.rig.backendUrl]);
  assert.deepEqual(codeResources(ctx.rig.idp), [undefined, ctx.rig.backendUrl]);
});

// ---- 10: nothing to discover -----------------------------------------------------------------

test('a backend that names no authorization server, no OIDC_ISSUER_URL: initialize gets the reason and the hint, no browser', T, async (t) => {
  const ctx = await setup(t, { ...DISCOVERY, backend: { protectedResourceMetadata: false } });
  // No protected resource metadata, no authorization server metadata at its origin and no
  // `/authorize` there (the MCP 2025-03-26 fallbacks): nowhere to log in.
  const p = spawnRaw(ctx, { args: ctx.redirectArgs });
  const reply = await p.initialize(15_000);
  assert.ok(reply.error, JSON.stringify(reply));
  assert.match(reply.error.message, /names no authorization server/, reply.error.message);
  assert.match(reply.error.message, /OIDC_ISSUER_URL/, reply.error.message);
  assert.equal(p.child.exitCode, null, 'the proxy is still running');
  await p.close();
  assert.ok(ctx.rig.backend.log.some((e) => e.kind === 'http' && e.method === 'POST' && e.status === 401), 'the backend was asked');
  assert.equal(ctx.rig.idp.requests.length, 0, 'the IdP was never contacted');
  assert.equal((await ctx.opened()).length, 0);
});

test('`login <backend>` for a backend that names no authorization server: exit 2 with the hint', T, async (t) => {
  const ctx = await setup(t, { ...DISCOVERY, backend: { protectedResourceMetadata: false } });
  const r = await runCli(ctx, ['login', '--no-banner', ...ctx.redirectArgs, ctx.rig.backendUrl], { timeoutMs: 15_000 });
  assert.equal(r.code, 2, `exit code\n${r.stderr}`);
  assert.match(r.stderr, /OIDC_ISSUER_URL/, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(ctx.rig.idp.requests.length, 0, 'the IdP was never contacted');
});
