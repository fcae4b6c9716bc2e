// What each kind of token-endpoint error means, end to end: the example identity provider
// (oidc-provider, examples/idp.mjs) made to fail on purpose (`idp.failTokenRequests`), the
// JWT-validating SDK backend, `node cli.js` under the SDK Client, and the Node API.
//  - transient (`temporarily_unavailable`, `server_error`, 429, 5xx with or without JSON):
//    tried again with backoff honouring Retry-After; the user's call waits, no error, no
//    browser; when the provider keeps failing, an error saying it is having trouble;
//  - `invalid_grant` at refresh: a new login;
//  - `invalid_client` / `unauthorized_client`: a hint at the client ID and secret;
//  - `invalid_scope`: a hint at the scopes;
// for refresh, code exchange, device code polling and client credentials.
//   node --test --test-concurrency=1 __test__/oauth-errors.test.mjs

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killStrayBrowsers, waitFor, startRig, freePort, browserEnv, readBrowserLog } from './helpers/rig.mjs';
import { completeDeviceLogin, parseDevicePrompt } from './helpers/device.mjs';
import { AUTH_ERROR, setup as baseSetup, startProxy, connectProxy, whoami } from './helpers/proxy.mjs';

const require = createRequire(import.meta.url);
const api = require('../index.js');

const T = { timeout: 90_000 };
const scratch = mkdtempSync(join(tmpdir(), 'authful-oauth-errors-'));
const pidFile = join(scratch, 'browsers.pids');
after(async () => {
  await killStrayBrowsers(pidFile);
  rmSync(scratch, { recursive: true, force: true });
});
const setup = (t, opts = {}) => baseSetup(t, { pidFile, ...opts });

const TEMPORARILY_UNAVAILABLE = { status: 400, error: 'temporarily_unavailable', description: 'try later' };
const SERVER_ERROR = { status: 500, error: 'server_error' };

/** Log in through the proxy (browser), then make the next call's token refused (401). */
async function loggedIn(t) {
  const ctx = await setup(t);
  const p = await connectProxy(ctx);
  assert.equal((await whoami(p.client)).sub, 'alice');
  assert.equal((await ctx.opened()).length, 1);
  const refuseNextCall = () => ctx.rig.backend.rejectNextValid(1, (e) => e.rpcMethod === 'tools/call');
  return { ctx, p, idp: ctx.rig.idp, refuseNextCall };
}

test('refresh: two temporarily_unavailable and two server_error cost a short wait, no error, no browser', T, async (t) => {
  const { ctx, p, idp, refuseNextCall } = await loggedIn(t);
  const refreshes = idp.stats.refreshes;
  idp.failTokenRequests(TEMPORARILY_UNAVAILABLE, TEMPORARILY_UNAVAILABLE, SERVER_ERROR, SERVER_ERROR);
  refuseNextCall();
  const started = Date.now();
  assert.equal((await whoami(p.client)).sub, 'alice');
  const took = Date.now() - started;
  console.log(`# refresh through 2× temporarily_unavailable + 2× server_error: ${took} ms`);
  assert.equal(idp.stats.injectedFailures, 4);
  assert.equal(idp.stats.refreshes, refreshes + 1, 'then one refresh succeeded');
  assert.equal((await ctx.opened()).length, 1, 'no new browser login');
  assert.ok(took < 10_000, `${took} ms`);
  assert.match(p.stderr(), /the identity provider is having trouble: `temporarily_unavailable`: try later.*trying again/);
});

test('refresh: a 503 page and a 429 with Retry-After are waited out as asked', T, async (t) => {
  const { ctx, p, idp, refuseNextCall } = await loggedIn(t);
  idp.failTokenRequests(
    { status: 503, body: '<html><body>Service Unavailable</body></html>', retryAfter: 1 },
    { status: 429, body: '', retryAfter: 1 },
  );
  refuseNextCall();
  const started = Date.now();
  assert.equal((await whoami(p.client)).sub, 'alice');
  const took = Date.now() - started;
  console.log(`# refresh through a 503 page and a 429, each with Retry-After: 1: ${took} ms`);
  assert.equal(idp.stats.injectedFailures, 2);
  assert.ok(took >= 1900 && took < 10_000, `${took} ms`);
  assert.equal((await ctx.opened()).length, 1, 'no new browser login');
  assert.match(p.stderr(), /having trouble: HTTP 503/);
});

test('refresh: a provider that asks for more time than the call has: an error that says so, no browser', T, async (t) => {
  const { ctx, p, idp, refuseNextCall } = await loggedIn(t);
  idp.failTokenRequests({ status: 503, error: 'temporarily_unavailable', retryAfter: 3600 });
  refuseNextCall();
  const started = Date.now();
  await assert.rejects(whoami(p.client), (err) => {
    assert.equal(err.code, AUTH_ERROR, err.message);
    assert.match(err.message, /identity provider is having trouble: `temporarily_unavailable`/);
    assert.match(err.message, /try again in a while/);
    assert.doesNotMatch(err.message, /OIDC_CLIENT_ID|redirect URL/, 'no misleading hint');
    return true;
  });
  assert.ok(Date.now() - started < 5_000, 'at once');
  assert.equal((await ctx.opened()).length, 1, 'no browser');
  // The provider is back: the next call refreshes and works.
  assert.equal((await whoami(p.client)).sub, 'alice');
});

test('refresh: invalid_grant means a new login', T, async (t) => {
  const { ctx, p, idp, refuseNextCall } = await loggedIn(t);
  idp.failTokenRequests({ status: 400, error: 'invalid_grant', description: 'grant revoked' });
  refuseNextCall();
  assert.equal((await whoami(p.client)).sub, 'alice');
  assert.equal((await ctx.opened()).length, 2, 'one more browser login');
  assert.equal(idp.stats.injectedFailures, 1);
});

test('device code polling: transient failures between the polls do not end the login', T, async (t) => {
  const ctx = await setup(t, { clientId: 'device-client' });
  const { idp } = ctx.rig;
  idp.failTokenRequests(TEMPORARILY_UNAVAILABLE, { status: 502, body: 'Bad Gateway', contentType: 'text/plain' });
  const p = startProxy(ctx, { args: ['--device-code'], timeoutMs: 60_000 });
  const prompt = await waitFor(() => parseDevicePrompt(p.stderr()), { timeoutMs: 20_000, what: 'the device prompt' });
  // Let the failures be served first (the proxy polls every few seconds).
  await waitFor(() => idp.stats.injectedFailures === 2, { timeoutMs: 30_000, what: 'both failures served' });
  const done = await completeDeviceLogin(prompt.complete);
  assert.equal(done.outcome, 'success');
  await p.connected;
  assert.equal((await whoami(p.client)).client_id, 'device-client');
  assert.equal(idp.stats.deviceCodeExchanges, 1);
});

// ---- the Node API: client credentials and code exchange --------------------------------------

test('API: getAccessToken with clientCredentials: a token, also through two transient failures', T, async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const base = { issuerUrl: rig.issuer, clientId: 'service-client', clientSecret: 'service-secret', clientCredentials: true, silent: true };
  const token = await api.getAccessToken({ ...base, cacheDir: join(scratch, 'cc1') });
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT');
  rig.idp.failTokenRequests(SERVER_ERROR, { status: 504, body: '' });
  const again = await api.getAccessToken({ ...base, cacheDir: join(scratch, 'cc2') });
  assert.match(again, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  assert.equal(rig.idp.stats.injectedFailures, 2);
  assert.equal(rig.idp.stats.clientCredentials, 2);
});

test('API: each refusal names its fix (invalid_client, unauthorized_client, invalid_scope, a provider in trouble)', T, async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  let n = 0;
  const opts = (extra) => ({ issuerUrl: rig.issuer, clientCredentials: true, silent: true, cacheDir: join(scratch, `refused-${n++}`), ...extra });
  const service = { clientId: 'service-client', clientSecret: 'service-secret' };
  // (options, failure made on purpose, error code in the message, what the hint must name)
  // with the reason per row.
  const rows = [
    [{ ...service, clientSecret: 'wrong' }, null, 'invalid_client', /OIDC_CLIENT_ID.*OIDC_CLIENT_SECRET/], // a wrong secret
    // oidc-provider says `invalid_request` for a grant the client may not use; others say this.
    [service, { error: 'unauthorized_client' }, 'unauthorized_client', /OIDC_CLIENT_ID.*OIDC_CLIENT_SECRET/],
    // (oidc-provider drops scopes it does not know; others refuse them.)
    [{ ...service, scopes: 'mcp:admin' }, { error: 'invalid_scope' }, 'invalid_scope', /OIDC_SCOPES/],
  ];
  for (const [extra, fail, code, hint] of rows) {
    if (fail) rig.idp.failTokenRequests(fail);
    await assert.rejects(api.getAccessToken(opts(extra)), (e) => {
      assert.equal(e.code, 'ERR_TOKEN_REFUSED', `${code}: ${e.message}`);
      assert.match(e.message, new RegExp(`\`${code}\``));
      assert.match(e.hint, hint, `${code}: ${e.hint}`);
      return true;
    });
  }
  rig.idp.failTokenRequests({ status: 503, body: 'down', retryAfter: 3600 });
  await assert.rejects(api.getAccessToken(opts({ clientId: 'service-client', clientSecret: 'service-secret' })), (e) => {
    assert.equal(e.code, 'ERR_PROVIDER_UNAVAILABLE', e.message);
    assert.match(e.message, /having trouble: HTTP 503/);
    assert.match(e.hint, /try again in a while/);
    return true;
  });
});

test('API: the code exchange after a browser login outlasts a server_error and a 502 page', T, async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const log = join(scratch, 'browser.log');
  const saved = { ...process.env };
  // The core reads $BROWSER from this process's environment.
  Object.assign(process.env, browserEnv({ log, pidFile }));
  t.after(() => { for (const k of Object.keys(browserEnv({ log, pidFile }))) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k]; });
  rig.idp.failTokenRequests(SERVER_ERROR, { status: 502, body: '<h1>Bad Gateway</h1>' });
  const status = await api.login({
    issuerUrl: rig.issuer, clientId: 'demo-client', silent: true, authTimeout: 30,
    redirectUrl: `http://127.0.0.1:${await freePort()}/auth/callback`, cacheDir: join(scratch, 'code'),
  });
  assert.equal(status.loggedIn, true);
  assert.equal(rig.idp.stats.injectedFailures, 2);
  assert.equal(rig.idp.stats.codeExchanges, 1);
  assert.equal((await readBrowserLog(log)).filter((e) => e.event === 'opened').length, 1, 'one browser login');
});
