// `authful-mcp-proxy setup`: each broken configuration gives its failing line and fix, and a
// good one prints five host configurations, one of which is then used literally to start the
// proxy under the SDK client. Real parts as in auth.test.mjs (oidc-provider IdP, the
// JWT-validating SDK backend, a headless $BROWSER).
//
//   node --test --test-concurrency=1 __test__/setup.test.mjs

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { killStrayBrowsers, freePort } from './helpers/rig.mjs';
import { CLI, setup as baseSetup, runCli, whoami, mergeEnv, within } from './helpers/proxy.mjs';

const T = { timeout: 90_000 };

const scratch = mkdtempSync(join(tmpdir(), 'authful-setup-test-'));
const pidFile = join(scratch, 'browsers.pids');
after(async () => {
  await killStrayBrowsers(pidFile);
  rmSync(scratch, { recursive: true, force: true });
});

const setup = (t, opts = {}) => baseSetup(t, {
  pidFile, homePrefix: 'authful-setup-home-', clientName: 'setup-test', ...opts,
});

/** The step lines of the text report: [{ mark, step, detail, fix }]. */
function lines(stdout) {
  const out = [];
  for (const line of stdout.split('\n')) {
    const m = /^(ok  |warn|skip|FAIL)  ([^:]+): (.*)$/.exec(line);
    if (m) out.push({ mark: m[1].trim(), step: m[2], detail: m[3] });
    const f = /^ {6}fix: (.*)$/.exec(line);
    if (f && out.length) out[out.length - 1].fix = f[1];
  }
  return out;
}

function failing(stdout) {
  const fails = lines(stdout).filter((l) => l.mark === 'FAIL');
  assert.ok(fails.length >= 1, `a failing step expected:\n${stdout}`);
  return fails[0];
}

const HOSTS = ['Claude Desktop', 'Cursor', 'Windsurf', 'VS Code', 'Claude Code'];

test('happy path: every step ok, five host configurations that start a working proxy', T, async (t) => {
  const ctx = await setup(t, { redirectEnv: false });
  const args = ['setup', ...ctx.redirectArgs, '--token-store', 'file', ctx.rig.backendUrl];
  const r = await runCli(ctx, args, { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const steps = lines(r.stdout);
  assert.deepEqual(steps.filter((s) => s.mark === 'FAIL'), []);
  for (const name of ['backend reachable', '401 challenge', 'protected resource metadata', 'authorization server', 'client',
    'redirect URI accepted', 'callback', 'clock', 'login', 'MCP initialize + tools/list', 'token audience and scopes']) {
    assert.ok(steps.some((s) => s.step === name && s.mark === 'ok'), `step \`${name}\` ok:\n${r.stdout}`);
  }
  assert.match(steps.find((s) => s.step === 'MCP initialize + tools/list').detail, /\d+ tool\(s\)/);
  for (const host of HOSTS) assert.ok(r.stdout.includes(`== ${host} (`), `${host} configuration:\n${r.stdout}`);
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'one login');

  // --json: the same walk for tools; the login is cached now.
  const j = await runCli(ctx, [...args.slice(0, 1), '--json', ...args.slice(1)], { timeoutMs: 60_000 });
  assert.equal(j.code, 0, j.stderr);
  const report = JSON.parse(j.stdout);
  assert.equal(report.ok, true);
  assert.deepEqual(report.configurations.map((c) => c.host), HOSTS);
  const cursor = report.configurations.find((c) => c.host === 'Cursor').config.mcpServers;
  const [server] = Object.values(cursor);
  // Exactly the options used, nothing from the setup command itself.
  assert.deepEqual(server.args, ['-y', 'authful-mcp-proxy', ...ctx.redirectArgs, '--token-store', 'file', ctx.rig.backendUrl]);
  assert.equal(server.env.OIDC_ISSUER_URL, ctx.rig.issuer);
  assert.equal(server.env.OIDC_CLIENT_ID, 'demo-client');

  // Use the printed configuration literally (with this checkout instead of `npx -y authful-mcp-proxy`).
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, ...server.args.slice(2)],
    env: mergeEnv({ PATH: process.env.PATH, ...ctx.home.env, MCP_PROXY_CACHE_DIR: ctx.cacheDir }, server.env),
    stderr: 'pipe',
  });
  const client = new Client({ name: 'setup-test', version: '1.0.0' });
  ctx.defer(() => within(client.close(), 10_000, 'client.close'));
  await within(client.connect(transport), 30_000, 'initialize with the printed configuration');
  assert.equal((await whoami(client)).sub, 'alice');
  assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'the host configuration uses the cached login');
});

test('secrets are printed as variable references, never inline', T, async (t) => {
  const ctx = await setup(t, { clientId: 'confidential-client', clientSecret: 'confidential-secret' });
  const r = await runCli(ctx, ['setup', '--json', ctx.rig.backendUrl], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.ok(!r.stdout.includes('confidential-secret') && !r.stderr.includes('confidential-secret'));
  const byHost = Object.fromEntries(JSON.parse(r.stdout).configurations.map((c) => [c.host, c]));
  const env = (c) => Object.values(c.config.mcpServers ?? c.config.servers)[0].env;
  assert.equal(env(byHost.Cursor).OIDC_CLIENT_SECRET, '${env:OIDC_CLIENT_SECRET}');
  assert.equal(env(byHost.Windsurf).OIDC_CLIENT_SECRET, '${env:OIDC_CLIENT_SECRET}');
  assert.equal(env(byHost['VS Code']).OIDC_CLIENT_SECRET, '${input:oidc-client-secret}');
  assert.equal(byHost['VS Code'].config.inputs[0].password, true);
  assert.match(byHost['Claude Code'].config, /"OIDC_CLIENT_SECRET":"\$\{OIDC_CLIENT_SECRET\}"/);
  assert.equal(env(byHost['Claude Desktop']).OIDC_CLIENT_SECRET, undefined);
  assert.match(byHost['Claude Desktop'].note, /OIDC_CLIENT_SECRET/);
});

test('wrong issuer: the authorization server step names the issuer the provider states', T, async (t) => {
  const ctx = await setup(t);
  const wrong = ctx.rig.issuer.replace('127.0.0.1', 'localhost');
  const r = await runCli(ctx, ['setup', ctx.rig.backendUrl], { env: { OIDC_ISSUER_URL: wrong }, timeoutMs: 60_000 });
  assert.equal(r.code, 2, r.stdout);
  const f = failing(r.stdout);
  assert.equal(f.step, 'authorization server');
  assert.match(f.detail, /unexpected issuer/);
  assert.equal(f.fix, `the provider calls itself \`${ctx.rig.issuer}\`: set \`OIDC_ISSUER_URL\` to exactly that`);
  assert.equal((await ctx.opened()).length, 0, 'no browser was opened');
  assert.doesNotMatch(r.stdout, /== Cursor/);
});

test('unreachable backend: the first step fails and says nothing listens there', T, async (t) => {
  const ctx = await setup(t);
  const url = `http://127.0.0.1:${await freePort()}/mcp`;
  const r = await runCli(ctx, ['setup', url], { timeoutMs: 60_000 });
  assert.equal(r.code, 1, r.stdout);
  const f = failing(r.stdout);
  assert.equal(f.step, 'backend reachable');
  assert.match(f.detail, /refused/i);
  assert.match(f.fix, /nothing listens at `http:\/\/127\.0\.0\.1:\d+`/);
  assert.equal(lines(r.stdout).length, 1, 'the walk stops there');
});

test('busy callback port: the callback step names the port and the way out', T, async (t) => {
  const ctx = await setup(t);
  const blocker = net.createServer();
  await new Promise((r) => blocker.listen(ctx.port, '127.0.0.1', r));
  t.after(() => new Promise((r) => blocker.close(r)));
  const r = await runCli(ctx, ['setup', ctx.rig.backendUrl], { timeoutMs: 60_000 });
  assert.equal(r.code, 2, r.stdout);
  const f = failing(r.stdout);
  assert.equal(f.step, 'callback');
  assert.match(f.fix, new RegExp(`stop what uses port \`${ctx.port}\`.*OIDC_REDIRECT_URL`));
  assert.equal((await ctx.opened()).length, 0);
});

test('a provider that rejects the redirect URI: found before any browser opens', T, async (t) => {
  const ctx = await setup(t);
  const bad = `http://127.0.0.1:${ctx.port}/not/registered`;
  const r = await runCli(ctx, ['setup', ctx.rig.backendUrl], { env: { OIDC_REDIRECT_URL: bad }, timeoutMs: 60_000 });
  assert.equal(r.code, 2, r.stdout);
  const f = failing(r.stdout);
  assert.equal(f.step, 'redirect URI accepted');
  assert.match(f.detail, /does not accept the redirect URI/);
  assert.equal(f.fix, `register \`${bad}\` as a redirect URI of client \`demo-client\` at your identity provider, or set \`OIDC_REDIRECT_URL\` to one that is registered`);
  assert.equal((await ctx.opened()).length, 0);
});

test('a token for another audience: the MCP step fails and the token step says why', T, async (t) => {
  const other = 'http://127.0.0.1:9/another-api';
  const ctx = await setup(t, { idp: { resource: other } });
  const r = await runCli(ctx, ['setup', ctx.rig.backendUrl], { timeoutMs: 60_000 });
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  const all = lines(r.stdout);
  assert.equal(all.find((s) => s.step === 'login').mark, 'ok');
  const mcp = failing(r.stdout);
  assert.equal(mcp.step, 'MCP initialize + tools/list');
  assert.match(mcp.detail, /HTTP 401/);
  assert.match(mcp.fix, /the token step below says why/);
  const tok = all.find((s) => s.step === 'token audience and scopes');
  assert.equal(tok.mark, 'FAIL', r.stdout);
  assert.match(tok.detail, new RegExp(`the token is for \`${other}\`, not for this server`));
  assert.match(tok.fix, /--resource/);
});
