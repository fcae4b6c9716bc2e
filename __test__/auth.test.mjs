// The login and token lifecycle of authful-mcp-proxy, end to end against real parts:
// oidc-provider (examples/idp.mjs), the JWT-validating SDK backend (examples/backend.mjs),
// the official SDK Client driving `node cli.js` over stdio, and a headless $BROWSER
// (__test__/helpers/browser.mjs; one test uses real Chromium).
//
//   node --test --test-concurrency=1 __test__/auth.test.mjs
//
// Every test gets its own IdP + backend, temp HOME, cache dir and callback port; detached
// browser workers are recorded in this file's own pid file and killed after each test.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { killStrayBrowsers, waitFor } from './helpers/rig.mjs';
import { chromiumAvailable, CHROMIUM_PATH } from './helpers/chromium.mjs';
import {
  AUTH_ERROR, CLI, setup as baseSetup, connectProxy, whoami, spawnRaw, runCli, waitPastExpiry, within, sleep, freePort,
} from './helpers/proxy.mjs';

const T = { timeout: 60_000 };

const scratch = mkdtempSync(join(tmpdir(), 'authful-auth-test-'));
const pidFile = join(scratch, 'browsers.pids'); // this file's own workers only
after(async () => {
  await killStrayBrowsers(pidFile);
  rmSync(scratch, { recursive: true, force: true });
});

// ---- per-test setup ------------------------------------------------------------------------

/** helpers/proxy.mjs's setup with this file's pid file, temp HOME prefix and client name. */
const setup = (t, opts = {}) => baseSetup(t, {
  pidFile, homePrefix: 'authful-auth-home-', clientName: 'auth-test', ...opts,
});

/** Every secret a stream must never show: tokens from the cache, codes from the browser log. */
async function secretsOf(ctx) {
  const { entry } = ctx.readCache();
  const tok = entry.tokens;
  const secrets = { access_token: tok.access_token, refresh_token: tok.refresh_token, id_token: tok.id_token };
  for (const e of await ctx.browserEvents()) {
    if (e.event === 'callback' && e.url) {
      const code = new URL(e.url).searchParams.get('code');
      if (code) secrets[`code(${code.slice(0, 4)}…)`] = code;
    }
  }
  // With startIdp({ recordTokenRequests: true }): every code, PKCE verifier and refresh token sent.
  for (const [i, r] of (ctx.rig.idp.tokenRequests ?? []).entries()) {
    if (r.code) secrets[`code #${i}`] = r.code;
    if (r.codeVerifier) secrets[`code_verifier #${i}`] = r.codeVerifier;
    if (r.refreshToken) secrets[`refresh_token #${i}`] = r.refreshToken;
  }
  return Object.fromEntries(Object.entries(secrets).filter(([, v]) => typeof v === 'string' && v.length >= 8));
}

function assertNoSecrets(text, secrets, where) {
  for (const [name, value] of Object.entries(secrets)) {
    assert.ok(!text.includes(value), `${where} must not contain the ${name}`);
  }
}

const mode = (p) => statSync(p).mode & 0o777;

// ---- tests ---------------------------------------------------------------------------------

test('first login: browser login, whoami works, private cache, no secrets on stderr', T, async (t) => {
  const ctx = await setup(t, { idp: { recordTokenRequests: true } });
  assert.equal(existsSync(ctx.cacheDir), false);
  const p = await connectProxy(ctx);
  const who = await whoami(p.client);
  assert.equal(who.sub, 'alice');
  assert.equal(who.client_id, 'demo-client');
  assert.equal(who.aud, ctx.rig.backendUrl);
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1);
  assert.equal(ctx.rig.idp.stats.authorizations, 1);

  const { path, entry } = ctx.readCache();
  assert.equal(mode(path), 0o600, `cache file mode ${mode(path).toString(8)}`);
  assert.equal(mode(ctx.cacheDir), 0o700, `cache dir mode ${mode(ctx.cacheDir).toString(8)}`);
  assert.ok(entry.tokens.access_token, 'access token cached');
  assert.ok(entry.tokens.refresh_token, 'refresh token cached');

  const opened = await ctx.opened();
  assert.equal(opened.length, 1, 'the browser was opened once');
  const authUrl = new URL(opened[0].url);
  assert.equal(`${authUrl.origin}${authUrl.pathname}`, `${ctx.rig.issuer}/auth`);
  assert.equal(authUrl.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(authUrl.searchParams.get('redirect_uri'), ctx.redirectUrl);
  // The URL is also printed (for when no browser appears).
  assert.ok(p.stderr().includes(opened[0].url), `stderr shows the authorize URL:\n${p.stderr()}`);

  await whoami(p.client); // one more round trip; then look at everything stderr got
  await p.client.close();
  const secrets = await secretsOf(ctx);
  assert.ok(Object.keys(secrets).some((k) => k.startsWith('code(')), 'the code was seen in the callback');
  if (ctx.rig.idp.tokenRequests) assert.ok(Object.keys(secrets).some((k) => k.startsWith('code_verifier')), 'the verifier was recorded');
  assertNoSecrets(p.stderr(), secrets, 'stderr');
});

test('second start uses the cached tokens: no browser, no code exchange', T, async (t) => {
  const ctx = await setup(t);
  const first = await connectProxy(ctx);
  assert.equal((await whoami(first.client)).sub, 'alice');
  await first.client.close();
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1);
  assert.equal((await ctx.opened()).length, 1);

  const second = await connectProxy(ctx);
  assert.equal((await whoami(second.client)).sub, 'alice');
  assert.equal((await ctx.opened()).length, 1, 'no new browser window');
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'no new code exchange');
  assert.equal(ctx.rig.idp.stats.refreshes, 0, 'a fresh cached token is used as is');
  assert.ok(!/log in at/.test(second.stderr()), `no login prompt on stderr:\n${second.stderr()}`);
});

test('access token expiry mid-session: silent refresh, no new login', T, async (t) => {
  const ctx = await setup(t, { accessTokenTtl: 5 });
  const p = await connectProxy(ctx);
  const before = await whoami(p.client);
  await waitPastExpiry(ctx);
  const afterExpiry = await whoami(p.client);
  assert.equal(afterExpiry.sub, 'alice');
  assert.ok(afterExpiry.exp > before.exp, 'a new access token was used');
  assert.ok(ctx.rig.idp.stats.refreshes >= 1, 'refreshed');
  assert.equal(ctx.rig.idp.stats.refreshFailures, 0);
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'no new login');
  assert.equal((await ctx.opened()).length, 1, 'no new browser window');
  // The refreshed tokens were written back.
  assert.equal(ctx.readCache().entry.tokens.expires_at, afterExpiry.exp);
  const http401 = ctx.rig.backend.log.filter((e) => e.kind === 'http' && e.rpcMethod === 'tools/call' && e.status === 401);
  assert.equal(http401.length, 0, 'the proxy refreshes before sending an expired token');
});

test('revoked refresh token + expired access token: a new browser login, the call succeeds', T, async (t) => {
  const ctx = await setup(t, { accessTokenTtl: 5 });
  const p = await connectProxy(ctx);
  await whoami(p.client);
  const revoked = await ctx.rig.idp.revokeAllGrants();
  assert.ok(revoked >= 1, 'a grant was revoked');
  await waitPastExpiry(ctx);
  const who = await whoami(p.client, 40_000);
  assert.equal(who.sub, 'alice');
  assert.ok(ctx.rig.idp.stats.refreshFailures >= 1, 'the refresh was refused');
  assert.equal(ctx.rig.idp.stats.codeExchanges, 2, 'a second login happened');
  assert.equal((await ctx.opened()).length, 2, 'the browser was opened again');
});

test('401 from the backend: one refresh and one retry; a second 401 is reported, not looped', T, async (t) => {
  const ctx = await setup(t);
  const p = await connectProxy(ctx);
  await whoami(p.client);
  const calls = () => ctx.rig.backend.log.filter((e) => e.kind === 'http' && e.rpcMethod === 'tools/call');
  const isCall = (e) => e.rpcMethod === 'tools/call';

  // (a) the server refuses one (valid, unexpired) token → refresh, retry, success.
  const n0 = calls().length;
  ctx.rig.backend.rejectNextValid(1, isCall);
  const who = await whoami(p.client);
  assert.equal(who.sub, 'alice');
  const a = calls().slice(n0);
  assert.deepEqual(a.map((e) => e.status), [401, 200], 'one 401, then one retry that succeeded');
  assert.equal(ctx.rig.idp.stats.refreshes, 1, 'exactly one refresh');
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'no new login');
  assert.equal((await ctx.opened()).length, 1);

  // (b) the server refuses twice → exactly one refresh + one retry, then an error reply.
  const n1 = calls().length;
  ctx.rig.backend.rejectNextValid(2, isCall);
  await assert.rejects(whoami(p.client), (err) => {
    assert.match(String(err.message), /401/, err.message);
    return true;
  });
  const b = calls().slice(n1);
  assert.deepEqual(b.map((e) => e.status), [401, 401], 'exactly one retry');
  assert.equal(ctx.rig.idp.stats.refreshes, 2, 'exactly one more refresh');
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'still no new login');

  // (c) and the session keeps working afterwards.
  assert.equal((await whoami(p.client)).sub, 'alice');
});

test('wrong state: the tampered callback is ignored and the login completes', T, async (t) => {
  const ctx = await setup(t, { action: 'wrong-state' });
  const p = await connectProxy(ctx);
  assert.equal((await whoami(p.client)).sub, 'alice');
  const callbacks = (await ctx.browserEvents()).filter((e) => e.event === 'callback');
  const tampered = callbacks.find((e) => e.tampered);
  assert.ok(tampered, 'the tampered callback was delivered');
  assert.ok(tampered.status >= 400 && tampered.status < 500, `tampered callback answered ${tampered.status}`);
  assert.doesNotMatch(tampered.body, /<title>Logged in/i, 'the tampered callback is not accepted');
  const good = callbacks.find((e) => !e.tampered);
  assert.equal(good?.status, 200);
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1);
  assert.match(p.stderr(), /state/i, 'a warning about the ignored callback');
});

test('access_denied: initialize gets a -32001 error naming access_denied; the proxy keeps running', T, async (t) => {
  const ctx = await setup(t, { action: 'deny' });
  const raw = spawnRaw(ctx);
  const reply = await raw.initialize(30_000);
  assert.equal(reply.error?.code, AUTH_ERROR, JSON.stringify(reply));
  assert.match(reply.error.message, /access_denied/);
  assert.equal(ctx.rig.idp.stats.codeExchanges, 0);
  // Still alive and answering: a second attempt gets its own reply (another denied login).
  await sleep(200);
  assert.equal(raw.child.exitCode, null, 'still running');
  const again = await raw.initialize(30_000);
  assert.equal(again.error?.code, AUTH_ERROR);
  const { code, signal } = await raw.close();
  assert.equal(signal, null);
  assert.equal(code, 0, `clean exit on stdin EOF\n${raw.stderr()}`);
  assert.doesNotMatch(raw.stderr(), /panicked|RUST_BACKTRACE/);
  const denied = (await ctx.browserEvents()).filter((e) => e.event === 'callback');
  assert.ok(denied.length >= 1 && denied.every((e) => e.status >= 400), 'the callback page reported the failure');
});

test('login timeout (--auth-timeout 2): a JSON-RPC error about the timeout, within seconds', T, async (t) => {
  const ctx = await setup(t, { action: 'ignore' });
  const raw = spawnRaw(ctx, { args: ['--auth-timeout', '2'] });
  const started = Date.now();
  const reply = await raw.initialize(15_000);
  const elapsed = Date.now() - started;
  assert.equal(reply.error?.code, AUTH_ERROR, JSON.stringify(reply));
  assert.match(reply.error.message, /time(d)? ?out|within 2 ?s/i, reply.error.message);
  assert.ok(elapsed >= 1900, `waited for the timeout (${elapsed} ms)`);
  assert.ok(elapsed < 8000, `answered within a few seconds (${elapsed} ms)`);
  assert.equal((await ctx.opened()).length, 1, 'the browser was opened');
  const { code } = await raw.close();
  assert.equal(code, 0);
});

test('callback port in use: the error names the port and OIDC_REDIRECT_URL', T, async (t) => {
  const ctx = await setup(t);
  const blocker = net.createServer((s) => s.destroy());
  await new Promise((resolve, reject) => { blocker.once('error', reject); blocker.listen(ctx.port, '127.0.0.1', resolve); });
  ctx.defer(() => new Promise((r) => blocker.close(r)));

  // `login`: exit code 3, error + hint on stderr.
  const r = await runCli(ctx, ['login', '--no-banner']);
  assert.equal(r.code, 3, `exit code\n${r.stderr}`);
  assert.ok(r.stderr.includes(String(ctx.port)), `stderr names the port:\n${r.stderr}`);
  assert.match(r.stderr, /OIDC_REDIRECT_URL/);
  assert.equal(r.stdout, '');

  // Proxy mode: the initialize request gets the error (the MCP client shows only that).
  const raw = spawnRaw(ctx);
  const reply = await raw.initialize(15_000);
  assert.equal(reply.error?.code, AUTH_ERROR, JSON.stringify(reply));
  assert.ok(reply.error.message.includes(String(ctx.port)), `message names the port: ${reply.error.message}`);
  assert.match(reply.error.message, /OIDC_REDIRECT_URL/, `message says what to change: ${reply.error.message}`);
  assert.equal((await ctx.opened()).length, 0, 'no browser is opened when the callback cannot be received');
  await raw.close();
});

/**
 * Watch the IdP's token endpoint: record how each request authenticated the client
 * ('basic' = Authorization header, 'body' = none, i.e. client_secret_post or public), and
 * when `strictPostFor` is set, refuse Basic for that client with invalid_client, as strict
 * providers do (Auth0, Okta; oidc-provider itself lets Basic pass for a "post" client).
 */
function watchTokenEndpoint(idp, { strictPostFor } = {}) {
  const seen = [];
  const original = idp.server.listeners('request');
  idp.server.removeAllListeners('request');
  idp.server.on('request', (req, res) => {
    if (req.method === 'POST' && new URL(req.url, 'http://x').pathname === '/token') {
      const m = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
      const basicId = m ? decodeURIComponent(Buffer.from(m[1], 'base64').toString().split(':')[0]) : undefined;
      seen.push(m ? 'basic' : 'body');
      if (strictPostFor && basicId === strictPostFor) {
        const body = JSON.stringify({ error: 'invalid_client', error_description: 'client authentication method mismatch: client_secret_post required' });
        res.writeHead(401, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
    }
    for (const l of original) l.call(idp.server, req, res);
  });
  return seen;
}

for (const [clientId, clientSecret, method] of [
  ['confidential-client', 'confidential-secret', 'client_secret_basic'],
  ['post-client', 'post-secret', 'client_secret_post'],
]) {
  test(`confidential client (${method}): login, whoami, refresh`, T, async (t) => {
    const ctx = await setup(t, { clientId, clientSecret, accessTokenTtl: 5 });
    const tokenAuth = watchTokenEndpoint(ctx.rig.idp, { strictPostFor: method === 'client_secret_post' ? clientId : undefined });
    const p = await connectProxy(ctx);
    const who = await whoami(p.client);
    assert.equal(who.client_id, clientId);
    assert.equal(ctx.rig.idp.stats.codeExchanges, 1, JSON.stringify(ctx.rig.idp.stats.grantErrors));
    // The refresh grant authenticates the client the same way.
    await waitPastExpiry(ctx);
    assert.equal((await whoami(p.client)).client_id, clientId);
    assert.equal(ctx.rig.idp.stats.refreshes, 1, JSON.stringify(ctx.rig.idp.stats.grantErrors));
    assert.equal(ctx.rig.idp.stats.codeExchanges, 1);
    // The provider advertises both methods, so the proxy starts with Basic (the default). A
    // client registered for the body is refused once (`invalid_client`); the proxy then sends
    // the secret in the body, and keeps doing so for the refresh.
    const want = method === 'client_secret_basic' ? ['basic', 'basic'] : ['basic', 'body', 'body'];
    assert.deepEqual(tokenAuth, want, `code exchange and refresh use ${method}`);
    await p.client.close();
    assert.ok(!p.stderr().includes(clientSecret), 'the client secret never reaches stderr');
    assert.ok(!readFileSync(ctx.readCache().path, 'utf8').includes(clientSecret), 'nor the cache file');
  });
}

test('5 concurrent cold starts, one cache dir and callback port: exactly one login', T, async (t) => {
  const ctx = await setup(t);
  const proxies = await Promise.all(Array.from({ length: 5 }, () => connectProxy(ctx, { timeoutMs: 45_000 })));
  const whos = await Promise.all(proxies.map((p) => whoami(p.client)));
  assert.deepEqual(whos.map((w) => w.sub), Array(5).fill('alice'));
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'exactly one code exchange');
  assert.equal((await ctx.opened()).length, 1, 'exactly one browser window');
  assert.equal(ctx.cacheFiles().length, 1);
  const errors = proxies.map((p) => p.stderr()).filter((s) => /already in use|ERROR/.test(s));
  assert.deepEqual(errors, [], 'no proxy hit the busy callback port');
});

test('5 concurrent refreshes with rotation: exactly one refresh, no failures', T, async (t) => {
  const ctx = await setup(t, { accessTokenTtl: 5, rotateRefreshToken: true });
  const seed = await runCli(ctx, ['login', '--no-banner']);
  assert.equal(seed.code, 0, seed.stderr);
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1);
  const oldRt = ctx.readCache().entry.tokens.refresh_token;
  await waitPastExpiry(ctx);
  const proxies = await Promise.all(Array.from({ length: 5 }, () => connectProxy(ctx)));
  const whos = await Promise.all(proxies.map((p) => whoami(p.client)));
  assert.deepEqual(whos.map((w) => w.sub), Array(5).fill('alice'));
  assert.equal(ctx.rig.idp.stats.refreshes, 1, `exactly one refresh (stats ${JSON.stringify(ctx.rig.idp.stats)})`);
  assert.equal(ctx.rig.idp.stats.refreshFailures, 0, JSON.stringify(ctx.rig.idp.stats.grantErrors));
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'no new login');
  assert.equal((await ctx.opened()).length, 1, 'only the seeding login opened a browser');
  assert.notEqual(ctx.readCache().entry.tokens.refresh_token, oldRt, 'the rotated refresh token was saved');
});

test('corrupt cache file: a warning, a fresh login, and it works', T, async (t) => {
  const ctx = await setup(t);
  const seed = await runCli(ctx, ['login', '--no-banner']);
  assert.equal(seed.code, 0, seed.stderr);
  const { path } = ctx.readCache();
  writeFileSync(path, '{"format": "authful-mcp-proxy/1", "tokens": {trunc');
  const p = await connectProxy(ctx);
  assert.equal((await whoami(p.client)).sub, 'alice');
  assert.match(p.stderr(), /WARN|warning/i, `a warning:\n${p.stderr()}`);
  assert.match(p.stderr(), /corrupt|unreadable/i);
  assert.equal(ctx.rig.idp.stats.codeExchanges, 2, 'a fresh login');
  assert.equal((await ctx.opened()).length, 2);
  const again = ctx.readCache();
  assert.equal(again.path, path);
  assert.ok(again.entry.tokens.access_token, 'the cache was rewritten with valid JSON');
  assert.equal(mode(path), 0o600);
});

test('subcommands: login, status --json, token, logout, status → 4', T, async (t) => {
  const ctx = await setup(t);
  // --cache-dir flag instead of the environment variable.
  const env = { MCP_PROXY_CACHE_DIR: undefined };
  const cd = ['--cache-dir', ctx.cacheDir];

  const before = await runCli(ctx, ['status', ...cd], { env });
  assert.equal(before.code, 4, `status before login: ${before.stdout}${before.stderr}`);

  const login = await runCli(ctx, ['login', ...cd], { env });
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stderr, /logged in/i);
  assert.equal(login.stdout, '', 'login prints nothing on stdout');
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1);
  const secrets = await secretsOf(ctx);

  const status = await runCli(ctx, ['status', '--json', ...cd], { env });
  assert.equal(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout);
  assert.equal(s.loggedIn, true);
  assert.equal(s.hasRefreshToken, true);
  assert.equal(s.clientId, 'demo-client');
  assert.equal(s.subject, 'alice');
  assert.equal(s.expired, false);
  assertNoSecrets(status.stdout + status.stderr, secrets, 'status --json');
  const human = await runCli(ctx, ['status', ...cd], { env });
  assert.equal(human.code, 0);
  assertNoSecrets(human.stdout + human.stderr, secrets, 'status');

  const tok = await runCli(ctx, ['token', ...cd], { env });
  assert.equal(tok.code, 0, tok.stderr);
  const jwt = tok.stdout.trim();
  assert.match(jwt, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT on stdout');
  assert.equal(tok.stdout, `${jwt}\n`, 'only the token on stdout');
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'token used the cached login');
  assertNoSecrets(tok.stderr, secrets, 'token stderr');
  // The backend accepts it.
  const client = new Client({ name: 'token-user', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(ctx.rig.backendUrl), { requestInit: { headers: { Authorization: `Bearer ${jwt}` } } });
  ctx.defer(() => client.close());
  await within(client.connect(transport), 10_000, 'direct connect with the printed token');
  assert.equal((await whoami(client)).sub, 'alice');

  const logout = await runCli(ctx, ['logout', ...cd], { env });
  assert.equal(logout.code, 0, logout.stderr);
  assert.equal(ctx.cacheFiles().length, 0, 'cache file removed');
  const gone = await runCli(ctx, ['status', ...cd], { env });
  assert.equal(gone.code, 4, `status after logout: ${gone.stdout}${gone.stderr}`);
  const goneJson = await runCli(ctx, ['status', '--json', ...cd], { env });
  assert.equal(goneJson.code, 4);
  assert.equal(JSON.parse(goneJson.stdout).loggedIn, false);
  assert.equal((await ctx.opened()).length, 1, 'status/token/logout never open a browser');
});

test('missing OIDC_ISSUER_URL and a server that is not there: `login` exits 2 naming OIDC_ISSUER_URL; the proxy answers initialize with the reason', T, async (t) => {
  const ctx = await setup(t);
  const env = { ...ctx.env };
  delete env.OIDC_ISSUER_URL;
  // Without an issuer, `login` asks the MCP server (RFC 9728); this one is not there.
  const nowhere = `http://127.0.0.1:${await freePort()}/mcp`;
  const r = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'login', nowhere], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`hung: login\n${stderr}`)); }, 15_000);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
  assert.equal(r.code, 2, `login: exit code\n${r.stderr}`);
  assert.match(r.stderr, /OIDC_ISSUER_URL/, r.stderr);
  assert.match(r.stderr, /--oidc-issuer-url/, r.stderr);
  assert.equal(r.stdout, '', 'nothing on stdout');
  // The proxy waits for the server's first 401 before it looks for a login: a server that is
  // not there is a JSON-RPC error for the request, and the proxy goes on.
  const p = spawnRaw(ctx, { env: { OIDC_ISSUER_URL: '' }, backendUrl: nowhere });
  const reply = await p.initialize(15_000);
  assert.ok(reply.error, JSON.stringify(reply));
  assert.match(reply.error.message, /cannot reach the MCP server/, reply.error.message);
  assert.equal(p.child.exitCode, null, 'the proxy is still running');
  await p.close();
  assert.equal(ctx.rig.idp.stats.authorizationRequests, 0);
});

test('issuer mismatch (localhost vs 127.0.0.1): a clear discovery error, no browser', T, async (t) => {
  const ctx = await setup(t);
  const wrong = `http://localhost:${ctx.rig.idp.port}`;
  const env = { OIDC_ISSUER_URL: wrong };
  const r = await runCli(ctx, ['login', '--no-banner'], { env });
  assert.notEqual(r.code, 0);
  assert.ok([2, 3].includes(r.code), `exit code ${r.code}\n${r.stderr}`);
  assert.match(r.stderr, /discover/i, r.stderr);
  assert.ok(r.stderr.includes(wrong), `names the configured issuer:\n${r.stderr}`);
  assert.ok(r.stderr.includes(ctx.rig.issuer), `names the issuer the provider states:\n${r.stderr}`);
  assert.match(r.stderr, /OIDC_ISSUER_URL/, 'hint names the setting');

  const raw = spawnRaw(ctx, { env });
  const reply = await raw.initialize(20_000);
  assert.equal(reply.error?.code, AUTH_ERROR, JSON.stringify(reply));
  assert.match(reply.error.message, /discover/i);
  assert.ok(reply.error.message.includes(wrong), reply.error.message);
  await raw.close();
  assert.equal((await ctx.opened()).length, 0, 'no browser');
  assert.equal(ctx.rig.idp.stats.authorizationRequests, 0);
});

test('real headless Chromium: full login; the page says the user is logged in and can close the tab', { timeout: 120_000 }, async (t) => {
  if (!chromiumAvailable()) {
    t.skip(`Chromium not found at ${CHROMIUM_PATH} (apt-get install -y chromium)`);
    return;
  }
  const ctx = await setup(t, { chromium: true, host: 'localhost' });
  const p = await connectProxy(ctx, { timeoutMs: 90_000 });
  assert.equal((await whoami(p.client)).sub, 'alice');
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1);
  const cb = await waitFor(async () => (await ctx.browserEvents()).find((e) => e.event === 'callback'), { timeoutMs: 20_000, what: 'chromium callback log' });
  assert.equal(cb.status, 200);
  assert.match(cb.body, /logged in/i, `page text: ${cb.body}`);
  assert.match(cb.body, /close (this|the) tab/i, `page text: ${cb.body}`);
  assert.ok(cb.screenshot && existsSync(cb.screenshot), 'screenshot taken');
  rmSync(dirname(cb.screenshot), { recursive: true, force: true });
});
