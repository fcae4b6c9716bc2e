// The MCP 2026-07-28 era through the proxy, with real parts: backends from the TypeScript
// server SDK 2.x (`createMcpHandler`, once modern-only with legacy:'reject', once serving
// both eras) and today's SDK 1.x (old era only); clients the Python SDK 2.x `mcp.Client`
// (2026-07-28, dual-era: it probes with server/discover), today's SDK 1.x client, and a raw
// line driver for the wire details.
//   node --test --test-concurrency=1 __test__/modern.test.mjs

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ElicitRequestSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Client as Client2 } from '@modelcontextprotocol/client';
import { StdioClientTransport as StdioClientTransport2 } from '@modelcontextprotocol/client/stdio';
import { startModernBackend, startOldBackend, CONFIRM_STATE } from './helpers/modern-backend.mjs';
import { rawProxy } from './helpers/stdio.mjs';
import { waitFor, freePort, browserEnv, killStrayBrowsers } from './helpers/rig.mjs';
import { startIdp } from '../examples/idp.mjs';
import { pythonEnv } from '../scripts/pyenv.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'cli.js');
const DRIVER = join(here, 'helpers', 'modern_client.py');
const TOKEN = `tok-${randomBytes(12).toString('hex')}`;
const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': {},
  'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
};
const T = { timeout: 90_000 };

/** A clean child environment: nothing from the parent that configures the proxy. */
function childEnv(extra = {}) {
  const env = { ...getDefaultEnvironment(), ...extra };
  for (const k of Object.keys(env)) if (/^(MCP_|OIDC_)/.test(k) && !(k in extra)) delete env[k];
  return env;
}

let cacheDirs = [];
async function freshCache() {
  const d = await mkdtemp(join(tmpdir(), 'authful-modern-'));
  cacheDirs.push(d);
  return d;
}
const proxyArgs = (url, cache, extra = []) => [CLI, '--header', `Authorization: Bearer ${TOKEN}`, '--no-banner', '--cache-dir', cache, ...extra, url];

/** The Python SDK 2.x client through the proxy: its JSON report. */
async function pythonClient(python, url, cache, { mode = 'auto', args, env = {} } = {}) {
  const cfg = { command: process.execPath, args: args ?? proxyArgs(url, cache), env: childEnv(env), mode };
  const { stdout, stderr } = await new Promise((resolve, reject) => {
    execFile(python, [DRIVER, JSON.stringify(cfg)], { timeout: 60_000, env: childEnv() }, (err, so, se) => {
      if (err && !so) reject(new Error(`python client failed: ${err.message}\n${se}`));
      else resolve({ stdout: so, stderr: se });
    });
  });
  const report = JSON.parse(stdout.trim().split('\n').at(-1));
  report.stderr = stderr;
  return report;
}

/** Today's SDK 1.x client through the proxy (it answers elicitation with ok=true). */
async function oldClient(url, cache, extra = []) {
  const transport = new StdioClientTransport({ command: process.execPath, args: proxyArgs(url, cache, extra), env: childEnv(), stderr: 'pipe' });
  let stderr = '';
  transport.stderr.on('data', (d) => { stderr += d; });
  const client = new Client({ name: 'old-client', version: '1.0.0' }, { capabilities: { elicitation: { form: {} } } });
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { ok: true } }));
  let changed = false;
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => { changed = true; });
  await client.connect(transport);
  return { client, stderr: () => stderr, changed: () => changed };
}

const textOf = (r) => r.content?.map((c) => c.text).join('');

/**
 * An old client in front of a server that speaks 2026-07-28, translated: every step of the
 * matrix, including the ones that need the new era (x-mcp-header, input_required, listen).
 */
async function checkTranslated(be, c) {
  assert.equal(c.client.getServerVersion()?.name, 'authful-modern-backend', 'initialize answered from server/discover');
  const { tools } = await c.client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['change', 'confirm', 'echo', 'progress', 'region', 'slow']);
  assert.equal(textOf(await c.client.callTool({ name: 'echo', arguments: { text: 'hi' } })), 'hi');
  assert.deepEqual(JSON.parse(textOf(await c.client.callTool({ name: 'region', arguments: { region: 'eu-west' } }))),
    { region: 'eu-west', header: 'eu-west' }, 'the x-mcp-header argument went out as Mcp-Param-Region');
  const seen = [];
  await c.client.callTool({ name: 'progress', arguments: { steps: 3 } }, undefined, { onprogress: (p) => seen.push(p.progress) });
  assert.deepEqual(seen, [1, 2, 3]);
  const ac = new AbortController();
  const call = c.client.callTool({ name: 'slow', arguments: { ms: 15_000 } }, undefined, { signal: ac.signal });
  setTimeout(() => ac.abort('test cancel'), 500);
  await assert.rejects(call);
  await waitFor(() => be.tools('slow').length === 1, { timeoutMs: 5_000, what: 'the slow tool to end' });
  assert.equal(be.tools('slow')[0].cancelled, true, 'the server saw the stream close');
  assert.ok(be.tools('slow')[0].elapsedMs < 3_000);
  // input_required → an elicitation request to the old client → inputResponses, state intact.
  assert.deepEqual(JSON.parse(textOf(await c.client.callTool({ name: 'confirm', arguments: { what: 'x' } }))),
    { what: 'x', ok: true, stateIntact: true });
  assert.deepEqual(be.tools('confirm').map((t) => t.round), ['asked', 'answered']);
  // The change notification, from the subscription the proxy keeps open for the client.
  await c.client.callTool({ name: 'change', arguments: {} });
  await waitFor(() => c.changed(), { timeoutMs: 5_000, what: 'tools/list_changed' });
  const translated = be.posts().filter((p) => p.mcpMethod !== undefined); // all but a first initialize
  assert.ok(translated.length > 8 && translated.every((p) => p.version === '2026-07-28' && p.session === undefined),
    'only 2026-07-28 POSTs');
  assert.ok(!be.log.some((e) => e.kind === 'http' && e.method !== 'POST'), 'no GET stream, no DELETE');
}

/** Every matrix cell's steps, checked from the client's report and what the server saw. */
function checkModernClientReport(r, be, { era, mirrored = era === '2026-07-28' }) {
  assert.deepEqual(r.errors, {}, `no step failed; proxy stderr:\n${r.stderr}`);
  assert.equal(r.protocol, era);
  assert.deepEqual(r.tools, ['change', 'confirm', 'echo', 'progress', 'region', 'slow'], 'bad_header is not listed');
  assert.equal(r.echo, 'hi');
  // The x-mcp-header argument reached the server as a header (base64: it is not ASCII);
  // the old era has no such headers.
  assert.deepEqual(r.region, {
    region: 'Hello, 世界', header: mirrored ? '=?base64?SGVsbG8sIOS4lueVjA==?=' : null,
  });
  assert.deepEqual(r.progress, [1, 2, 3]);
  assert.equal(r.cancelled, true);
  assert.equal(r.afterCancel, 'after');
  const slow = be.tools('slow');
  assert.equal(slow.length, 1);
  assert.equal(slow[0].cancelled, true, 'the server saw the cancelled call end');
  assert.ok(slow[0].elapsedMs < 5_000, `stopped soon after the cancel (${slow[0].elapsedMs} ms)`);
  assert.equal(r.elicited, 'Confirm deploy?');
  assert.deepEqual(r.confirm, { what: 'deploy', ok: true, stateIntact: true });
  assert.equal(r.event, 'ToolsListChanged');
}

describe('MCP 2026-07-28 through the proxy', () => {
  let python;
  before(() => { python = pythonEnv(); }, { timeout: 600_000 });
  after(async () => {
    for (const d of cacheDirs) await rm(d, { recursive: true, force: true });
    cacheDirs = [];
  });

  describe('modern client (Python SDK 2.x) ×', () => {
    test('modern-only server (TS SDK 2.x, legacy: reject)', T, async () => {
      const be = await startModernBackend({ token: TOKEN, legacy: 'reject' });
      try {
        const r = await pythonClient(python, be.url, await freshCache());
        checkModernClientReport(r, be, { era: '2026-07-28' });
        const posts = be.posts();
        assert.ok(posts.every((p) => p.version === '2026-07-28' && p.mcpMethod && p.session === undefined),
          'every POST names the version and method, none a session');
        assert.ok(!be.log.some((e) => e.kind === 'http' && e.method !== 'POST'), 'no GET, no DELETE');
        const listen = posts.find((p) => p.mcpMethod === 'subscriptions/listen');
        assert.equal(listen.closedEarly, true, 'the listen stream was closed when the client cancelled it');
        const confirms = be.tools('confirm');
        assert.deepEqual(confirms.map((c) => c.round), ['asked', 'answered']);
        assert.equal(confirms[1].state, CONFIRM_STATE, 'requestState came back byte-exact');
      } finally { await be.close(); }
    });

    test('modern-only server, the client pinned to 2026-07-28 (no probe: its first request decides)', T, async () => {
      const be = await startModernBackend({ token: TOKEN, legacy: 'reject' });
      try {
        const r = await pythonClient(python, be.url, await freshCache(), { mode: '2026-07-28' });
        checkModernClientReport(r, be, { era: '2026-07-28' });
        assert.ok(!be.posts().some((p) => p.mcpMethod === 'server/discover'), 'no probe');
      } finally { await be.close(); }
    });

    test('dual-era server (TS SDK 2.x, default)', T, async () => {
      const be = await startModernBackend({ token: TOKEN });
      try {
        const r = await pythonClient(python, be.url, await freshCache());
        checkModernClientReport(r, be, { era: '2026-07-28' });
      } finally { await be.close(); }
    });

    test('old-only server (SDK 1.x): the probe falls back at once, then the old era works; the verdict is remembered', T, async () => {
      const be = await startOldBackend({ token: TOKEN });
      const cache = await freshCache();
      try {
        const r = await pythonClient(python, be.url, cache);
        checkModernClientReport(r, be, { era: '2025-11-25' });
        assert.equal(be.posts().filter((p) => p.rpcMethod === 'server/discover').length, 1, 'one probe reached the server');
        assert.ok((await readdir(cache)).some((f) => f.endsWith('_era.json')), 'the verdict is kept beside the token cache');
        // A second session: the probe is answered from memory, without a round trip.
        const raw = rawProxy(proxyArgs(be.url, cache), { env: childEnv() });
        try {
          const t0 = Date.now();
          const a = await raw.request('server/discover', { _meta: META });
          assert.equal(a.error?.code, -32601);
          assert.ok(Date.now() - t0 < 1_000, `answered in ${Date.now() - t0} ms`);
          assert.equal(be.posts().filter((p) => p.rpcMethod === 'server/discover').length, 1, 'no second probe');
        } finally { await raw.close(); }
      } finally { await be.close(); }
    });
  });

  describe('modern client (TypeScript SDK 2.x, probing on a second copy of the proxy) ×', () => {
    for (const legacy of ['reject', undefined]) {
      test(`${legacy ? 'modern-only' : 'dual-era'} server`, T, async () => {
        const be = await startModernBackend({ token: TOKEN, legacy });
        const transport = new StdioClientTransport2({ command: process.execPath, args: proxyArgs(be.url, await freshCache()), env: childEnv(), stderr: 'pipe' });
        let stderr = '';
        transport.stderr?.on('data', (d) => { stderr += d; });
        const client = new Client2({ name: 'ts2-client', version: '1.0.0' }, {
          capabilities: { elicitation: { form: {} } }, versionNegotiation: { mode: 'auto' },
        });
        client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { ok: true } }));
        let changed = 0;
        client.setNotificationHandler('notifications/tools/list_changed', () => { changed += 1; });
        try {
          await client.connect(transport);
          const { tools } = await client.listTools();
          assert.deepEqual(tools.map((t) => t.name).sort(), ['change', 'confirm', 'echo', 'progress', 'region', 'slow']);
          assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: 'region', arguments: { region: 'ap-south' } }))),
            { region: 'ap-south', header: 'ap-south' });
          const seen = [];
          await client.callTool({ name: 'progress', arguments: { steps: 3 } }, { onprogress: (p) => seen.push(p.progress) });
          assert.deepEqual(seen, [1, 2, 3]);
          const ac = new AbortController();
          const call = client.callTool({ name: 'slow', arguments: { ms: 15_000 } }, { signal: ac.signal });
          setTimeout(() => ac.abort('test cancel'), 500);
          await assert.rejects(call);
          await waitFor(() => be.tools('slow').length === 1, { timeoutMs: 5_000, what: 'the slow tool to end' });
          assert.equal(be.tools('slow')[0].cancelled, true);
          assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: 'confirm', arguments: { what: 'y' } }))),
            { what: 'y', ok: true, stateIntact: true });
          const sub = await client.listen({ toolsListChanged: true });
          await client.callTool({ name: 'change', arguments: {} });
          await waitFor(() => changed > 0, { timeoutMs: 5_000, what: 'tools/list_changed on the listen stream' });
          await sub.close();
          assert.ok(be.posts().every((p) => p.version === '2026-07-28'), 'only 2026-07-28 POSTs');
        } catch (err) {
          throw new Error(`${err.stack}\nproxy stderr:\n${stderr}`);
        } finally {
          await client.close().catch(() => {});
          await be.close();
        }
      });
    }
  });

  describe('old client (SDK 1.x) ×', () => {
    test('dual-era server: tools, progress, cancellation (the stream is closed)', T, async () => {
      const be = await startModernBackend({ token: TOKEN });
      const c = await oldClient(be.url, await freshCache());
      try {
        const { tools } = await c.client.listTools();
        assert.ok(tools.some((t) => t.name === 'region'));
        assert.equal(textOf(await c.client.callTool({ name: 'echo', arguments: { text: 'hi' } })), 'hi');
        assert.deepEqual(JSON.parse(textOf(await c.client.callTool({ name: 'region', arguments: { region: 'eu' } }))),
          { region: 'eu', header: null });
        const seen = [];
        await c.client.callTool({ name: 'progress', arguments: { steps: 3 } }, undefined, { onprogress: (p) => seen.push(p.progress) });
        assert.deepEqual(seen, [1, 2, 3]);
        // Cancel: the SDK 2.x server serves the old era without sessions and cannot match the
        // forwarded notification; it sees the closed stream.
        const ac = new AbortController();
        const call = c.client.callTool({ name: 'slow', arguments: { ms: 15_000 } }, undefined, { signal: ac.signal });
        setTimeout(() => ac.abort('test cancel'), 500);
        await assert.rejects(call);
        await waitFor(() => be.tools('slow').length === 1, { timeoutMs: 5_000, what: 'the slow tool to end' });
        assert.equal(be.tools('slow')[0].cancelled, true);
        assert.ok(be.tools('slow')[0].elapsedMs < 3_000, `stopped at once (${be.tools('slow')[0].elapsedMs} ms)`);
        // Not here: elicitation and change notifications. The SDK 2.x server serves the old
        // era statelessly (a fresh instance per request, GET answered 405), so it neither
        // knows the client's capabilities nor has a stream for notifications; only the
        // translator (old client ↔ 2026-07-28 server) could offer them.
      } finally {
        await c.client.close();
        await be.close();
      }
    });

    test('modern-only server: translated (tools, x-mcp-header, progress, cancel, elicitation, notifications)', T, async () => {
      const be = await startModernBackend({ token: TOKEN, legacy: 'reject' });
      const c = await oldClient(be.url, await freshCache());
      try {
        await checkTranslated(be, c);
        assert.equal(be.posts().filter((p) => p.mcpMethod === undefined).length, 1, 'one initialize was tried, then translated');
      } finally {
        await c.client.close();
        await be.close();
      }
    });

    test('dual-era server with --protocol modern: translated, so elicitation and notifications work too', T, async () => {
      const be = await startModernBackend({ token: TOKEN });
      const c = await oldClient(be.url, await freshCache(), ['--protocol', 'modern']);
      try {
        await checkTranslated(be, c);
      } finally {
        await c.client.close();
        await be.close();
      }
    });

    test('modern-only server with --protocol legacy: the server\'s own -32022 reaches the client, not an HTTP+SSE guess', T, async () => {
      const be = await startModernBackend({ token: TOKEN, legacy: 'reject' });
      const raw = rawProxy(proxyArgs(be.url, await freshCache(), ['--protocol', 'legacy']), { env: childEnv() });
      try {
        const r = await raw.request('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } });
        assert.equal(r.error?.code, -32022, JSON.stringify(r));
        assert.deepEqual(r.error.data?.supported, ['2026-07-28']);
        assert.ok(!be.log.some((e) => e.kind === 'http' && e.method === 'GET'), 'no HTTP+SSE attempt');
        raw.assertClean();
      } finally {
        await raw.close();
        await be.close();
      }
    });
  });

  describe('with an OIDC login (oidc-provider; the modern-only server validates the JWTs)', () => {
    const pidFile = join(tmpdir(), `authful-modern-browsers-${process.pid}.pids`);
    after(() => killStrayBrowsers(pidFile));

    test('first session: the probe does not wait for the login, the client falls back and is translated; '
      + 'then 2026-07-28 end to end, and a refused token is refreshed once and the request retried', T, async () => {
      let issuer;
      const be = await startModernBackend({ issuer: () => issuer, legacy: 'reject' });
      const idp = await startIdp({ resource: be.url, accessTokenTtl: 300 });
      issuer = idp.issuer;
      const cache = await freshCache();
      const port = await freePort();
      const env = {
        OIDC_ISSUER_URL: idp.issuer,
        OIDC_CLIENT_ID: 'demo-client',
        OIDC_REDIRECT_URL: `http://127.0.0.1:${port}/auth/callback`,
        MCP_PROXY_CACHE_DIR: cache,
        ...browserEnv({ action: 'login', pidFile }),
      };
      const args = [CLI, '--no-banner', be.url];
      try {
        // No token yet: the probe gets -32601 at once, the client sends initialize, the login
        // runs, the server refuses initialize with -32022, and the proxy translates.
        const first = await pythonClient(python, be.url, cache, { args, env });
        checkModernClientReport(first, be, { era: '2025-11-25', mirrored: true });
        assert.equal(idp.stats.codeExchanges, 1, 'one login');
        // A token at hand: the probe reaches the server, and the session is 2026-07-28.
        be.log.length = 0;
        const second = await pythonClient(python, be.url, cache, { args, env });
        checkModernClientReport(second, be, { era: '2026-07-28' });
        assert.equal(idp.stats.codeExchanges, 1, 'no second login');
        // The server refuses a valid token once: refresh, then the same request again.
        const raw = rawProxy(args, { env: childEnv(env) });
        try {
          assert.ok((await raw.request('server/discover', { _meta: META })).result);
          const refreshes = idp.stats.refreshes;
          be.rejectValidTokens(1);
          const r = await raw.request('tools/list', { _meta: META });
          assert.ok(r.result?.tools?.length > 0, JSON.stringify(r));
          assert.equal(idp.stats.refreshes, refreshes + 1, 'one refresh');
        } finally { await raw.close(); }
      } finally {
        await be.close();
        await idp.close();
      }
    });
  });

  describe('wire details (raw driver, modern-only server)', () => {
    let be;
    before(async () => { be = await startModernBackend({ token: TOKEN, legacy: 'reject' }); });
    after(async () => { await be?.close(); });

    test('a call before any tools/list: the proxy lists the tools itself, and the header goes out', T, async () => {
      const raw = rawProxy(proxyArgs(be.url, await freshCache()), { env: childEnv() });
      try {
        const before = be.posts().length;
        const r = await raw.request('tools/call', { name: 'region', arguments: { region: ' padded ' }, _meta: META });
        assert.deepEqual(JSON.parse(r.result.content[0].text), { region: ' padded ', header: '=?base64?IHBhZGRlZCA=?=' });
        const posts = be.posts().slice(before);
        assert.deepEqual(posts.map((p) => p.mcpMethod), ['tools/list', 'tools/call']);
        assert.equal(posts[1].mcpName, 'region');
        assert.ok(!raw.messages.some((m) => String(m.id).startsWith('authful-mcp-proxy')), 'the proxy\'s own list is not shown');
        raw.assertClean();
      } finally { await raw.close(); }
    });

    test('HeaderMismatch (the tool\'s annotation changed): one re-list, one retry', T, async () => {
      const raw = rawProxy(proxyArgs(be.url, await freshCache()), { env: childEnv() });
      try {
        await raw.request('tools/list', { _meta: META });
        be.setRegionHeader('Zone');
        const before = be.posts().length;
        const r = await raw.request('tools/call', { name: 'region', arguments: { region: 'eu' }, _meta: META });
        assert.deepEqual(JSON.parse(r.result.content[0].text), { region: 'eu', header: 'eu' });
        const posts = be.posts().slice(before);
        assert.deepEqual(posts.map((p) => [p.mcpMethod, p.status]), [['tools/call', 400], ['tools/list', 200], ['tools/call', 200]]);
        assert.deepEqual(posts[2].params, { 'mcp-param-zone': 'eu' });
      } finally {
        be.setRegionHeader('Region');
        await raw.close();
      }
    });

    test('an old client with --transport streamable-http is translated too (no HTTP+SSE fallback to skip)', T, async () => {
      const raw = rawProxy(proxyArgs(be.url, await freshCache(), ['--transport', 'streamable-http']), { env: childEnv() });
      try {
        const init = await raw.initialize({ protocolVersion: '2025-06-18' });
        assert.equal(init.serverInfo?.name, 'authful-modern-backend');
        assert.equal(init.protocolVersion, '2025-06-18');
        const r = await raw.call('echo', { text: 'translated' });
        assert.equal(r.result?.content?.[0]?.text, 'translated');
        assert.equal(r.result.resultType, undefined, 'resultType is not shown to an old client');
        assert.equal((await raw.request('ping')).result !== undefined, true, 'ping answered by the proxy');
        raw.assertClean();
      } finally { await raw.close(); }
    });

    test('the server\'s own errors reach the client unchanged: 404 -32601, 400 -32022', T, async () => {
      const raw = rawProxy(proxyArgs(be.url, await freshCache()), { env: childEnv() });
      try {
        const a = await raw.request('nope/x', { _meta: META });
        assert.deepEqual(a.error, { code: -32601, message: 'Method not found' });
        const b = await raw.request('tools/list', { _meta: { ...META, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } });
        assert.equal(b.error?.code, -32022, JSON.stringify(b));
        assert.ok(Array.isArray(b.error.data?.supported));
        raw.assertClean();
      } finally { await raw.close(); }
    });

    test('a server that cannot be reached: the proxy\'s own error, outside the reserved range', T, async () => {
      const raw = rawProxy(proxyArgs('http://127.0.0.1:9/mcp', await freshCache()), { env: childEnv() });
      try {
        const a = await raw.request('tools/list', { _meta: META });
        assert.equal(a.error?.code, -31000);
        assert.match(a.error.message, /cannot reach the MCP server/);
        // The probe: answered (non-modern, so a dual-era client falls back), not left hanging.
        const p = await raw.request('server/discover', { _meta: META });
        assert.equal(p.error?.code, -32601);
      } finally { await raw.close(); }
    });

    test('the probe is answered in milliseconds while a login would be needed', T, async () => {
      // An issuer that accepts connections and never answers: a login could not even start.
      const { createServer } = await import('node:net');
      const silent = createServer(() => {});
      await new Promise((r) => silent.listen(0, '127.0.0.1', r));
      const issuer = `http://127.0.0.1:${silent.address().port}`;
      const args = [CLI, '--no-banner', '--cache-dir', await freshCache(), '--oidc-issuer-url', issuer, '--oidc-client-id', 'c', be.url];
      const raw = rawProxy(args, { env: childEnv({ BROWSER: 'true' }) });
      try {
        const t0 = Date.now();
        const a = await raw.request('server/discover', { _meta: META });
        const ms = Date.now() - t0;
        assert.equal(a.error?.code, -32601);
        assert.ok(ms < 1_000, `answered in ${ms} ms`);
      } finally {
        await raw.kill();
        silent.close();
      }
    });
  });
});
