// Proves the real-parts test rig works on its own, without the proxy:
// oidc-provider IdP + SDK backend + headless/real browsers.
//   node --test __test__/rig.test.mjs

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import {
  startRig, pkce, killStrayBrowsers, readBrowserLog, waitFor, BROWSER_SCRIPT, tmpHome,
} from './helpers/rig.mjs';
import { completeLogin } from './helpers/browser.mjs';
import { chromiumLogin, chromiumAvailable, CHROMIUM_PATH } from './helpers/chromium.mjs';

const T = { timeout: 30_000 };
const scratch = mkdtempSync(join(tmpdir(), 'authful-rig-test-'));
const pidFile = join(scratch, 'browsers.pids'); // our own, so parallel runs don't kill each other's workers
after(async () => {
  await killStrayBrowsers(pidFile);
  rmSync(scratch, { recursive: true, force: true });
});

/** A one-shot loopback callback listener on a random port (not the registered 8080). */
async function callbackServer(host = '127.0.0.1') {
  let resolveHit;
  const hits = [];
  const firstHit = new Promise((r) => { resolveHit = r; });
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname !== '/auth/callback') { res.writeHead(404).end(); return; }
    hits.push(u.searchParams);
    resolveHit(u.searchParams);
    res.setHeader('content-type', 'text/html');
    res.end('<html><title>Signed in</title><body><h1>Authentication complete</h1></body></html>');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const redirectUri = `http://${host}:${server.address().port}/auth/callback`;
  return { redirectUri, hits, firstHit, close: () => new Promise((r) => { server.close(r); server.closeAllConnections(); }) };
}

function authorizeUrl(issuer, { redirectUri, challenge, state = 'state-1', scope, clientId = 'demo-client' }) {
  const u = new URL(`${issuer}/auth`);
  const params = {
    client_id: clientId, response_type: 'code', redirect_uri: redirectUri, state,
    code_challenge: challenge, code_challenge_method: 'S256',
  };
  if (scope) params.scope = scope;
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
}

async function tokenRequest(issuer, params) {
  const res = await fetch(`${issuer}/token`, { method: 'POST', body: new URLSearchParams(params) });
  return { status: res.status, body: await res.json() };
}

/** Full authorization-code + PKCE flow with the in-process headless browser. */
async function login(rig, { scope, host } = {}) {
  const cb = await callbackServer(host);
  try {
    const { verifier, challenge } = pkce();
    const url = authorizeUrl(rig.issuer, { redirectUri: cb.redirectUri, challenge, scope });
    const result = await completeLogin(url, { user: 'alice' });
    assert.equal(result.status, 200);
    const params = await cb.firstHit;
    assert.equal(params.get('state'), 'state-1');
    assert.equal(params.get('iss'), rig.issuer); // RFC 9207
    const { status, body } = await tokenRequest(rig.issuer, {
      grant_type: 'authorization_code', code: params.get('code'), redirect_uri: cb.redirectUri,
      client_id: 'demo-client', code_verifier: verifier,
    });
    assert.equal(status, 200, JSON.stringify(body));
    return body;
  } finally {
    await cb.close();
  }
}

async function connect(url, token, { legacy = false, client: clientOpts } = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const client = new Client({ name: 'rig-test', version: '1.0.0' }, clientOpts ?? {});
  const transport = legacy
    ? new SSEClientTransport(new URL(url), { requestInit: { headers } })
    : new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers },
      reconnectionOptions: { initialReconnectionDelay: 50, maxReconnectionDelay: 500, reconnectionDelayGrowFactor: 1.5, maxRetries: 5 },
    });
  await client.connect(transport);
  return { client, transport };
}

/** The SDK's StreamableHTTPError carries the HTTP status in `code`. */
const is401 = (err) => err?.code === 401 || /401|invalid_token/.test(err?.message);

const toolText = async (client, name, args = {}, opts) => (await client.callTool({ name, arguments: args }, undefined, opts)).content[0].text;

for (const mode of ['sse', 'json']) {
  test(`(a) auth code + PKCE, then whoami over Streamable HTTP (${mode})`, T, async (t) => {
    const rig = await startRig({ mode });
    t.after(() => rig.close());
    // json: no scope at all -> the IdP applies its default scope.
    const tokens = await login(rig, { scope: mode === 'sse' ? 'openid profile email' : undefined, host: mode === 'sse' ? '127.0.0.1' : 'localhost' });
    assert.ok(tokens.refresh_token, 'refresh token issued without offline_access');
    assert.equal(tokens.access_token.split('.').length, 3, 'JWT access token');
    assert.equal(rig.idp.stats.authorizations, 1);
    assert.equal(rig.idp.stats.codeExchanges, 1);

    const { client, transport } = await connect(rig.backendUrl, tokens.access_token);
    const who = JSON.parse(await toolText(client, 'whoami'));
    assert.equal(who.sub, 'alice');
    assert.equal(who.aud, rig.backendUrl);
    assert.equal(who.client_id, 'demo-client');
    assert.match(who.scope, /openid profile email/);
    assert.equal(await toolText(client, 'add', { a: 2, b: 40 }), '42');
    await transport.terminateSession();
    await client.close();

    const http = rig.backend.log.filter((e) => e.kind === 'http');
    assert.equal(http[0].rpcMethod, 'initialize');
    assert.ok(http.every((e) => e.authorization));
    assert.ok(http.some((e) => e.method === 'DELETE' && e.status === 200), 'DELETE logged');
    assert.ok(http.filter((e) => e.rpcMethod === 'tools/call').every((e) => e.protocolVersion === '2025-11-25'));
  });
}

test('(b) backend answers 401 invalid_token without / with a bad token', T, async (t) => {
  const rig = await startRig({ mode: 'sse' });
  t.after(() => rig.close());
  const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
  for (const authorization of [undefined, 'Bearer not-a-jwt']) {
    const res = await fetch(rig.backendUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...(authorization && { authorization }) },
      body: init,
    });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate'), /^Bearer .*error="invalid_token"/);
    assert.match(res.headers.get('www-authenticate'), /resource_metadata="[^"]+\/\.well-known\/oauth-protected-resource\/mcp"/);
  }
  // The SDK client surfaces the 401 too.
  await assert.rejects(connect(rig.backendUrl, undefined), is401);
  const unauthorized = rig.backend.log.filter((e) => e.status === 401);
  assert.ok(unauthorized.length >= 3);
  assert.equal(unauthorized[0].authorization, false);
  assert.equal(unauthorized[1].authorization, true);

  // RFC 9728 metadata points at the IdP; RFC 8414 metadata is served by the IdP.
  const prm = await (await fetch(`${rig.backend.origin}/.well-known/oauth-protected-resource/mcp`)).json();
  assert.deepEqual(prm.authorization_servers, [rig.issuer]);
  const asm = await (await fetch(`${rig.issuer}/.well-known/oauth-authorization-server`)).json();
  assert.equal(asm.issuer, rig.issuer);
  assert.deepEqual(asm.code_challenge_methods_supported, ['S256']);
});

test('(c) refresh grant works, rotation invalidates the old refresh token, revokeAllGrants', T, async (t) => {
  const rig = await startRig({ mode: 'json', accessTokenTtl: 2 });
  t.after(() => rig.close());
  const first = await login(rig);
  assert.ok(first.expires_in <= 2);

  const refresh = (rt) => tokenRequest(rig.issuer, { grant_type: 'refresh_token', refresh_token: rt, client_id: 'demo-client' });
  const second = await refresh(first.refresh_token);
  assert.equal(second.status, 200);
  assert.notEqual(second.body.refresh_token, first.refresh_token, 'rotated');
  assert.notEqual(second.body.access_token, first.access_token);
  assert.equal(rig.idp.stats.refreshes, 1);

  // The new access token works at the backend.
  const { client } = await connect(rig.backendUrl, second.body.access_token);
  assert.equal(JSON.parse(await toolText(client, 'whoami')).sub, 'alice');
  await client.close();

  // Expired access token -> 401.
  await new Promise((r) => setTimeout(r, 2100));
  await assert.rejects(connect(rig.backendUrl, second.body.access_token), is401);
  assert.equal(rig.backend.log.at(-1).authError, 'token expired');

  // Replaying the rotated-out token fails ... and oidc-provider then revokes the whole
  // grant (reuse detection), so the newest refresh token dies as well.
  const replay = await refresh(first.refresh_token);
  assert.equal(replay.status, 400);
  assert.equal(replay.body.error, 'invalid_grant');
  assert.equal(rig.idp.stats.refreshFailures, 1);
  assert.equal((await refresh(second.body.refresh_token)).status, 400, 'reuse detection revoked the grant');

  // revokeAllGrants(): a fresh login's refresh token stops working.
  const third = await login(rig);
  assert.equal((await refresh(third.refresh_token)).status, 200);
  const fourth = rig.idp.stats.refreshes;
  assert.ok(await rig.idp.revokeAllGrants() >= 1);
  const dead = await refresh(third.refresh_token);
  assert.equal(dead.status, 400);
  assert.equal(rig.idp.stats.refreshes, fourth);
});

test('(c2) rotateRefreshToken: false keeps the refresh token', T, async (t) => {
  const rig = await startRig({ rotateRefreshToken: false });
  t.after(() => rig.close());
  const first = await login(rig);
  const r1 = await tokenRequest(rig.issuer, { grant_type: 'refresh_token', refresh_token: first.refresh_token, client_id: 'demo-client' });
  assert.equal(r1.status, 200);
  assert.equal(r1.body.refresh_token, first.refresh_token);
  const r2 = await tokenRequest(rig.issuer, { grant_type: 'refresh_token', refresh_token: first.refresh_token, client_id: 'demo-client' });
  assert.equal(r2.status, 200);
});

test('(d) legacy HTTP+SSE (2024-11-05) backend with SSEClientTransport', T, async (t) => {
  const rig = await startRig({ mode: 'legacy' });
  t.after(() => rig.close());
  const tokens = await login(rig);
  // A Streamable HTTP POST to the URL gets 405 -> clients fall back to GET on the same URL.
  const post = await fetch(rig.backendUrl, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
  });
  assert.equal(post.status, 405);

  const { client } = await connect(rig.backendUrl, tokens.access_token, { legacy: true });
  assert.equal(JSON.parse(await toolText(client, 'whoami')).sub, 'alice');
  assert.equal(await toolText(client, 'echo', { text: 'héllo' }), 'héllo');
  await client.close();
  const get = rig.backend.log.find((e) => e.method === 'GET' && e.path === '/mcp');
  assert.equal(get.status, 200);
  assert.ok(rig.backend.log.some((e) => e.method === 'POST' && e.path === '/messages' && e.status === 202));
});

test('(e) real Chromium completes the login', { timeout: 60_000, skip: !chromiumAvailable() && `Chromium not found at ${CHROMIUM_PATH} (apt-get install -y chromium)` }, async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const cb = await callbackServer();
  t.after(() => cb.close());
  const { verifier, challenge } = pkce();
  const result = await chromiumLogin(authorizeUrl(rig.issuer, { redirectUri: cb.redirectUri, challenge }), { screenshotDir: scratch });
  assert.equal(result.status, 200);
  assert.match(result.text, /Authentication complete/);
  assert.ok(existsSync(result.screenshot));
  const params = await cb.firstHit;
  const { status } = await tokenRequest(rig.issuer, {
    grant_type: 'authorization_code', code: params.get('code'), redirect_uri: cb.redirectUri, client_id: 'demo-client', code_verifier: verifier,
  });
  assert.equal(status, 200);
});

test('(f) $BROWSER mode: returns at once, a detached worker delivers the callback; deny / wrong-state', T, async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const home = await tmpHome();
  t.after(() => home.cleanup());

  for (const action of ['login', 'deny', 'wrong-state']) {
    const cb = await callbackServer();
    const log = join(home.dir, `${action}.jsonl`);
    const { challenge } = pkce();
    const url = authorizeUrl(rig.issuer, { redirectUri: cb.redirectUri, challenge });
    const started = Date.now();
    const r = spawnSync(process.execPath, [BROWSER_SCRIPT, url], {
      env: { ...process.env, BROWSER_ACTION: action, BROWSER_LOG: log, BROWSER_PIDS: pidFile }, stdio: 'ignore', timeout: 5000,
    });
    assert.equal(r.status, 0);
    assert.ok(Date.now() - started < 2000, 'launcher returns immediately');
    const events = await waitFor(async () => {
      const ev = await readBrowserLog(log);
      return ev.filter((e) => e.event === 'callback').length === (action === 'wrong-state' ? 2 : 1) && ev;
    }, { what: `${action} callback` });
    assert.equal(events[0].event, 'opened');
    if (action === 'login') assert.ok(cb.hits[0].get('code'));
    if (action === 'deny') assert.equal(cb.hits[0].get('error'), 'access_denied');
    if (action === 'wrong-state') {
      assert.deepEqual(cb.hits.map((h) => h.get('state')), ['tampered-state', 'state-1']);
    }
    await cb.close();
  }
});

test('(g) cut_stream is recovered by SSE resumption; restart() forgets sessions; notify uses the GET stream', T, async (t) => {
  const rig = await startRig({ mode: 'sse', eventStore: true });
  t.after(() => rig.close());
  const tokens = await login(rig);
  const { client, transport } = await connect(rig.backendUrl, tokens.access_token);
  const messages = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => messages.push(n.params.data));

  assert.equal(await toolText(client, 'cut_stream'), 'survived the cut');
  const resumed = rig.backend.log.find((e) => e.method === 'GET' && e.lastEventId);
  assert.ok(resumed, 'client resumed with GET + Last-Event-ID');
  assert.equal(resumed.status, 200);
  assert.ok(messages.includes('before cut'));

  assert.equal(await toolText(client, 'notify', { count: 2, delayMs: 20 }), 'scheduled 2 notifications');
  await waitFor(() => messages.includes('notify 2/2'), { what: 'notify on GET stream' });

  const oldSession = transport.sessionId;
  await rig.backend.restart();
  assert.equal(rig.backend.sessions.size, 0);
  const res = await fetch(rig.backendUrl, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${tokens.access_token}`, 'mcp-session-id': oldSession,
      'content-type': 'application/json', accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'ping' }),
  });
  assert.equal(res.status, 404);
  await client.close();
});

test('(h) other clients: client_credentials, client_secret_basic, client_secret_post', T, async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const basic = (id, secret) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  const cc = await fetch(`${rig.issuer}/token`, {
    method: 'POST',
    headers: { authorization: basic('service-client', 'service-secret') },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'mcp:tools' }),
  });
  const ccBody = await cc.json();
  assert.equal(cc.status, 200, JSON.stringify(ccBody));
  const { client } = await connect(rig.backendUrl, ccBody.access_token);
  const who = JSON.parse(await toolText(client, 'whoami'));
  assert.equal(who.client_id, 'service-client');
  assert.equal(who.scope, 'mcp:tools');
  await client.close();
  assert.equal(rig.idp.stats.clientCredentials, 1);

  // Client authentication is accepted (the bogus code is what fails), wrong secret is not.
  const code = { grant_type: 'authorization_code', code: 'bogus', redirect_uri: 'http://127.0.0.1:1/auth/callback', code_verifier: 'x'.repeat(43) };
  const viaBasic = await fetch(`${rig.issuer}/token`, { method: 'POST', headers: { authorization: basic('confidential-client', 'confidential-secret') }, body: new URLSearchParams(code) });
  assert.equal((await viaBasic.json()).error, 'invalid_grant');
  const viaPost = await tokenRequest(rig.issuer, { ...code, client_id: 'post-client', client_secret: 'post-secret' });
  assert.equal(viaPost.body.error, 'invalid_grant');
  const wrong = await tokenRequest(rig.issuer, { ...code, client_id: 'post-client', client_secret: 'nope' });
  assert.equal(wrong.body.error, 'invalid_client');
});
