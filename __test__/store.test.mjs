// Token stores (`--token-store file|keychain|memory`) end to end: the keychain against a real
// Secret Service (gnome-keyring-daemon on a private D-Bus session, checked with secret-tool),
// its fallback to the file when the bus has no Secret Service or never answers, and `memory`,
// which writes nothing. Same real parts as auth.test.mjs (oidc-provider IdP, SDK backend and
// client, headless $BROWSER).
//
//   node --test --test-concurrency=1 __test__/store.test.mjs
//
// Needs the Debian packages dbus, gnome-keyring and libsecret-tools (.ci/run installs them);
// without them the keychain tests are skipped and say why.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killStrayBrowsers } from './helpers/rig.mjs';
import { setup as baseSetup, connectProxy, whoami, runCli, waitPastExpiry } from './helpers/proxy.mjs';
import { secretServiceMissing, startSessionBus, startSilentBus } from './helpers/keyring.mjs';

const T = { timeout: 90_000 };
const KT = { ...T, skip: secretServiceMissing() };

const scratch = mkdtempSync(join(tmpdir(), 'authful-store-test-'));
const pidFile = join(scratch, 'browsers.pids');
after(async () => {
  await killStrayBrowsers(pidFile);
  rmSync(scratch, { recursive: true, force: true });
});

const setup = (t, opts = {}) => baseSetup(t, {
  pidFile, homePrefix: 'authful-store-home-', clientName: 'store-test', ...opts,
});

const KEYCHAIN = ['--token-store', 'keychain'];
const LOOKUP = ['lookup', 'application', 'authful-mcp-proxy'];
const fallbackWarnings = (stderr) => stderr.split('\n').filter((l) => l.includes('cannot use the system keychain'));

/** The keychain item's JSON (or null when there is none). */
function keptSecrets(bus) {
  const r = bus.secretTool(LOOKUP);
  return r.code === 0 && r.stdout ? JSON.parse(r.stdout) : null;
}

test('keychain: the refresh token lands in the Secret Service, not in the file; refresh and logout use it', KT, async (t) => {
  const bus = await startSessionBus(t);
  const ctx = await setup(t, { accessTokenTtl: 5, rotateRefreshToken: true, idp: { recordTokenRequests: true } });
  const env = bus.env;
  const login = await runCli(ctx, ['login', '--no-banner', ...KEYCHAIN], { env });
  assert.equal(login.code, 0, login.stderr);
  assert.deepEqual(fallbackWarnings(login.stderr), [], login.stderr);

  const kept = keptSecrets(bus);
  assert.ok(kept && typeof kept.refresh_token === 'string' && kept.refresh_token.length > 8, `keychain item: ${JSON.stringify(kept && Object.keys(kept))}`);
  const { path, entry } = ctx.readCache();
  assert.equal(entry.tokens.refresh_token ?? null, null, 'no refresh token in the cache file');
  assert.ok(!readFileSync(path, 'utf8').includes(kept.refresh_token), 'the file never holds it');
  assert.ok(typeof entry.tokens.access_token === 'string', 'the access token stays in the file');
  // The item is named so a person recognises it.
  const search = bus.secretTool(['search', '--all', 'application', 'authful-mcp-proxy']);
  assert.match(search.stdout + search.stderr, new RegExp(`label = authful-mcp-proxy: ${ctx.rig.issuer.replace(/[.]/g, '\\.')} \\(demo-client\\)`));

  const status = await runCli(ctx, ['status', '--json', ...KEYCHAIN], { env });
  const report = JSON.parse(status.stdout);
  assert.equal(report.hasRefreshToken, true, 'status finds the refresh token in the keychain');
  assert.equal(report.tokenStore, 'keychain');

  // The access token expires: the proxy refreshes with the keychain's refresh token (no new
  // login), and the rotated one replaces it there.
  await waitPastExpiry(ctx);
  const p = await connectProxy(ctx, { args: KEYCHAIN, env });
  assert.equal((await whoami(p.client)).sub, 'alice');
  const stats = ctx.rig.idp.stats;
  assert.equal(stats.codeExchanges, 1, 'no second login');
  assert.equal(stats.refreshes, 1, JSON.stringify(stats.grantErrors));
  const sent = ctx.rig.idp.tokenRequests.filter((r) => r.refreshToken).map((r) => r.refreshToken);
  assert.deepEqual(sent, [kept.refresh_token], 'the refresh used the keychain item');
  const rotated = keptSecrets(bus);
  assert.ok(rotated.refresh_token !== kept.refresh_token, 'the rotated refresh token was saved to the keychain');
  assert.equal(ctx.readCache().entry.tokens.refresh_token ?? null, null);
  await p.client.close();

  const logout = await runCli(ctx, ['logout', ...KEYCHAIN], { env });
  assert.equal(logout.code, 0, logout.stderr);
  assert.match(logout.stderr, /logged out/);
  assert.equal(keptSecrets(bus), null, 'the keychain item is gone');
  assert.deepEqual(ctx.cacheFiles(), []);
});

test('keychain: five proxies at once make one login', KT, async (t) => {
  const bus = await startSessionBus(t);
  const ctx = await setup(t);
  const proxies = await Promise.all(Array.from({ length: 5 }, () => connectProxy(ctx, { args: KEYCHAIN, env: bus.env, timeoutMs: 60_000 })));
  const whos = await Promise.all(proxies.map((p) => whoami(p.client)));
  assert.deepEqual(whos.map((w) => w.sub), Array(5).fill('alice'));
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'exactly one code exchange');
  assert.equal((await ctx.opened()).length, 1, 'exactly one browser window');
  assert.ok(keptSecrets(bus)?.refresh_token, 'the refresh token is in the keychain');
  for (const p of proxies) assert.deepEqual(fallbackWarnings(p.stderr()), [], p.stderr());
});

test('keychain: logout --all clears every item and file', KT, async (t) => {
  const bus = await startSessionBus(t);
  const ctx = await setup(t);
  for (const scopes of ['openid profile', 'openid email']) {
    const r = await runCli(ctx, ['login', '--no-banner', ...KEYCHAIN, '--oidc-scopes', scopes], { env: bus.env });
    assert.equal(r.code, 0, r.stderr);
  }
  const before = bus.secretTool(['search', '--all', 'application', 'authful-mcp-proxy']);
  assert.equal((before.stdout.match(/^\[/gm) ?? []).length, 2, before.stdout);
  assert.equal(ctx.cacheFiles().length, 2);
  const r = await runCli(ctx, ['logout', '--all', ...KEYCHAIN], { env: bus.env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /removed 2 cached login\(s\) from .* and the system keychain/);
  assert.equal(keptSecrets(bus), null);
  assert.deepEqual(ctx.cacheFiles(), []);
});

test('keychain: no Secret Service on the bus → the file, with one warning saying why', KT, async (t) => {
  const bus = await startSessionBus(t, { keyring: false });
  const ctx = await setup(t);
  const started = Date.now();
  const login = await runCli(ctx, ['login', '--no-banner', ...KEYCHAIN], { env: bus.env });
  assert.equal(login.code, 0, login.stderr);
  const warnings = fallbackWarnings(login.stderr);
  assert.equal(warnings.length, 1, login.stderr);
  assert.match(warnings[0], /Secret Service|secrets/i);
  assert.match(warnings[0], /keeping the tokens in the token cache file/);
  assert.ok(Date.now() - started < 15_000);
  const { entry } = ctx.readCache();
  assert.ok(entry.tokens.refresh_token, 'the refresh token is in the file instead');
  // The next run reads it back (still one warning, no second login).
  const p = await connectProxy(ctx, { args: KEYCHAIN, env: bus.env });
  assert.equal((await whoami(p.client)).sub, 'alice');
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1);
  assert.equal(fallbackWarnings(p.stderr()).length, 1, p.stderr());
});

test('keychain: a locked keyring (it would need a password prompt) → the file, one warning', KT, async (t) => {
  const bus = await startSessionBus(t);
  const locked = bus.lock();
  assert.equal(locked.code, 0, locked.stderr);
  const ctx = await setup(t);
  const login = await runCli(ctx, ['login', '--no-banner', ...KEYCHAIN], { env: bus.env });
  assert.equal(login.code, 0, login.stderr);
  const warnings = fallbackWarnings(login.stderr);
  assert.equal(warnings.length, 1, login.stderr);
  assert.match(warnings[0], /locked/);
  assert.ok(ctx.readCache().entry.tokens.refresh_token, 'the refresh token is in the file');
});

test('keychain: a bus that never answers → the file within the time limit, one warning', KT, async (t) => {
  const bus = await startSilentBus(t);
  const ctx = await setup(t);
  const started = Date.now();
  const login = await runCli(ctx, ['login', '--no-banner', ...KEYCHAIN], { env: bus.env });
  const took = Date.now() - started;
  assert.equal(login.code, 0, login.stderr);
  const warnings = fallbackWarnings(login.stderr);
  assert.equal(warnings.length, 1, login.stderr);
  assert.match(warnings[0], /did not answer within 3s/);
  // One 3 s wait (the first call), then the file: not one wait per call.
  assert.ok(took >= 3000 && took < 12_000, `took ${took} ms`);
  assert.ok(ctx.readCache().entry.tokens.refresh_token, 'the refresh token is in the file');
});

test('memory: nothing is written, not even a lock file; each process logs in for itself', T, async (t) => {
  const ctx = await setup(t);
  const env = { MCP_PROXY_TOKEN_STORE: 'memory' };
  const a = await connectProxy(ctx, { env });
  assert.equal((await whoami(a.client)).sub, 'alice');
  await a.client.close();
  const b = await connectProxy(ctx, { env });
  assert.equal((await whoami(b.client)).sub, 'alice');
  await b.client.close();
  assert.equal(ctx.rig.idp.stats.codeExchanges, 2, 'two processes, two logins');
  assert.equal(existsSync(ctx.cacheDir), false, 'the cache folder was never created');
  const status = await runCli(ctx, ['status', '--json'], { env });
  assert.equal(status.code, 4);
  const report = JSON.parse(status.stdout);
  assert.equal(report.tokenStore, 'memory');
  assert.equal(report.cacheFile, null);
  const all = await runCli(ctx, ['logout', '--all'], { env });
  assert.equal(all.code, 0, all.stderr);
  assert.equal(existsSync(ctx.cacheDir), false);
});

test('--token-store: a wrong value is a usage error that names the choices', T, async (t) => {
  const ctx = await setup(t);
  const r = await runCli(ctx, ['status', '--token-store', 'vault']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /`vault` is not one of `file`, `keychain`, `memory`/);
  const help = await runCli(ctx, ['--help']);
  assert.match(help.stdout, /--token-store <STORE>[\s\S]*MCP_PROXY_TOKEN_STORE/);
});
