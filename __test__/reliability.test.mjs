// Reliability and security of authful-mcp-proxy, end to end with real parts: faults (backend
// killed, broken replies, IdP outage, unusable cache folder, SIGKILL during a cache write,
// a dead lock holder, a client that vanishes), bounded load on loopback, and the secret
// handling promised in README.md "Security model".
//
//   node --test --test-concurrency=1 __test__/reliability.test.mjs
//
// Every test cleans up after itself (servers, processes, temp dirs, detached browser
// workers recorded in this file's own pid file).

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  mkdtempSync, mkdirSync, rmSync, existsSync, readdirSync, readFileSync, writeFileSync, chmodSync, statSync, watch,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startBackend } from '../examples/backend.mjs';
import { freePort, browserEnv, killStrayBrowsers, waitFor } from './helpers/rig.mjs';
import { sleep, within, rawProxy as rawDriver } from './helpers/stdio.mjs';
import { setup } from './helpers/proxy.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'cli.js');
const TOKEN = `tok-${randomBytes(12).toString('hex')}`;
const AUTH_HEADER = `Authorization: Bearer ${TOKEN}`;
const T = { timeout: 60_000 };
const AUTH_ERROR = -32001;

const scratch = mkdtempSync(join(tmpdir(), 'authful-reliability-test-'));
const pidFile = join(scratch, 'browsers.pids'); // this file's own browser workers only
const strayPids = new Set(); // processes a test may leave behind on failure
after(async () => {
  for (const pid of strayPids) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  await killStrayBrowsers(pidFile);
  rmSync(scratch, { recursive: true, force: true });
});

/** A clean child environment: PATH, TMPDIR and what the test passes; nothing else. */
function childEnv(extra = {}) {
  const env = { PATH: process.env.PATH, ...(process.env.TMPDIR && { TMPDIR: process.env.TMPDIR }) };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

const textOf = (result) => result?.content?.map((c) => c.text).join('');

/** Is `pid` still a running (not zombie) process? */
function alive(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    return !/^State:\s+Z/m.test(st);
  } catch {
    return false;
  }
}

function rssKb(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/**
 * The raw stdio driver (helpers/stdio.mjs) on `node cli.js ...args` with childEnv(env);
 * the pid is in `strayPids` until the process exits. Bad stdout lines are kept up to 300
 * characters (the load tests push large payloads).
 */
function rawProxy(args, { env = {}, uid, gid, cwd } = {}) {
  return rawDriver([CLI, ...args], {
    env: childEnv(env), uid, gid, cwd, pids: strayPids,
    clientInfo: { name: 'reliability-test', version: '1.0.0' }, badLineChars: 300,
  });
}

const staticArgs = (url, extra = []) => ['--header', AUTH_HEADER, '--no-banner', ...extra, url];

/**
 * Requests through the raw driver with `inFlight` outstanding at once. `make(i)` gives
 * [method, params]; `check(i, answer)` looks at each answer. Every answer is matched to its
 * id; `progress(done)` is called after each answer. Returns the per-id answer counts.
 */
async function pipeline(p, total, inFlight, make, { check, progress, ms = 60_000 } = {}) {
  const prefix = `L${randomBytes(3).toString('hex')}-`;
  const counts = new Map();
  const pending = new Map(); // id -> i
  let sent = 0;
  let done = 0;
  let resolveAll;
  let rejectAll;
  const all = new Promise((res, rej) => { resolveAll = res; rejectAll = rej; });
  const sendOne = () => {
    const i = sent++;
    const id = `${prefix}${i}`;
    const [method, params] = make(i);
    pending.set(id, i);
    p.send({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
  };
  const onData = () => {
    // Scan new messages (the driver keeps them all; we consume from an index).
    while (scan < p.messages.length) {
      const m = p.messages[scan++];
      if (typeof m.id !== 'string' || !m.id.startsWith(prefix) || !('result' in m || 'error' in m)) continue;
      counts.set(m.id, (counts.get(m.id) ?? 0) + 1);
      const i = pending.get(m.id);
      if (i === undefined) continue; // duplicate: counted above, asserted by the caller
      pending.delete(m.id);
      try { check?.(i, m); } catch (err) { rejectAll(err); return; }
      done += 1;
      progress?.(done);
      if (sent < total) sendOne();
      else if (pending.size === 0) resolveAll();
    }
  };
  let scan = p.messages.length;
  p.child.stdout.on('data', onData);
  try {
    for (let k = 0; k < Math.min(inFlight, total); k += 1) sendOne();
    await within(all, ms, `${total} pipelined requests (${done} answered)`);
    await sleep(200); // let any duplicate answer arrive
    onData();
  } finally {
    p.child.stdout.off('data', onData);
    // Free the memory the driver holds for these (the 10,000-request test).
    p.messages.length = 0;
  }
  return { counts, prefix };
}

/** A tiny node:http server on 127.0.0.1 (or `host`); `handler(req, res, body)`. */
async function miniServer(handler, { host = '127.0.0.1', port = 0 } = {}) {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString('utf8');
    requests.push({ method: req.method, url: req.url, headers: req.headers, body });
    try {
      await handler(req, res, body);
    } catch {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const actual = server.address().port;
  return {
    server,
    port: actual,
    requests,
    url: (path = '/mcp') => `http://${host.includes(':') ? `[${host}]` : host}:${actual}${path}`,
    close: () => new Promise((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}

function sendJson(res, status, obj, headers = {}) {
  const data = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

/** A minimal JSON-mode Streamable HTTP server: initialize, notifications, and `tools(name, msg, res)`. */
function miniMcp(tools) {
  return async (req, res, body) => {
    if (req.method === 'GET') { res.writeHead(405, { allow: 'POST, DELETE' }).end(); return; }
    if (req.method === 'DELETE') { res.writeHead(200).end(); return; }
    const msg = JSON.parse(body);
    if (msg.method === 'initialize') {
      sendJson(res, 200, {
        jsonrpc: '2.0', id: msg.id,
        result: { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'mini', version: '1' } },
      }, { 'mcp-session-id': 'mini-session' });
      return;
    }
    if (msg.id === undefined) { res.writeHead(202).end(); return; }
    if (msg.method === 'tools/call') { await tools(msg.params.name, msg, res); return; }
    sendJson(res, 200, { jsonrpc: '2.0', id: msg.id, result: {} });
  };
}

// ---- login setup (IdP + backend + headless browser) ----------------------------------------

/**
 * helpers/proxy.mjs's setup (a rig, a temp HOME with a cache dir, a free callback port and a
 * browser log; all torn down after the test; `env` is ready for the proxy), plus `proxy()`.
 */
async function loginSetup(t, opts = {}) {
  const ctx = await setup(t, { pidFile, homePrefix: 'authful-rel-home-', ...opts });
  /** A raw proxy for the rig's backend, killed after the test. */
  ctx.proxy = (args = [], extraEnv = {}, spawnOpts = {}) => {
    const p = rawProxy(['--no-banner', ...args, ctx.rig.backendUrl], { env: { ...ctx.env, ...extraEnv }, ...spawnOpts });
    ctx.defer(() => p.kill());
    return p;
  };
  return ctx;
}

// =============================================================================================
// Faults
// =============================================================================================

describe('faults', () => {
  test('backend killed mid-response: that request gets a JSON-RPC error; after a restart on the same port, requests work again', T, async (t) => {
    const port = await freePort();
    const backendUrl = `http://127.0.0.1:${port}/mcp`;
    const script = `import { startBackend } from ${JSON.stringify(pathToFileURL(join(ROOT, 'examples', 'backend.mjs')).href)};
      const be = await startBackend({ port: ${port}, mode: 'sse', auth: { staticToken: ${JSON.stringify(TOKEN)} } });
      process.stdout.write('ready ' + be.url + '\\n');`;
    const children = [];
    const startChild = async () => {
      const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(c);
      strayPids.add(c.pid);
      let out = '';
      c.stdout.on('data', (d) => { out += d; });
      await within(waitFor(() => out.includes('ready'), { timeoutMs: 10_000, what: 'backend child' }), 10_000, 'backend child start');
      return c;
    };
    t.after(() => { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });

    const first = await startChild();
    const p = rawProxy(staticArgs(backendUrl));
    t.after(() => p.close());
    await p.initialize();
    assert.equal(textOf((await p.call('echo', { text: 'before' })).result), 'before');

    const slowId = 'slow-1';
    p.send({ jsonrpc: '2.0', id: slowId, method: 'tools/call', params: { name: 'slow', arguments: { ms: 8_000 } } });
    await sleep(400); // the POST is in and its SSE response open
    first.kill('SIGKILL');
    const t0 = Date.now();
    const answer = await p.next((m) => m.id === slowId, 8_000, 'the error for the interrupted call');
    assert.ok(answer.error, `expected a JSON-RPC error, got ${JSON.stringify(answer)}`);
    assert.equal(typeof answer.error.code, 'number');
    assert.ok(answer.error.message.length > 0);
    assert.ok(Date.now() - t0 < 6_000, 'the error came promptly, not after the tool would have finished');
    assert.equal(p.child.exitCode, null, 'the proxy keeps running');
    t.diagnostic(`interrupted call: ${JSON.stringify(answer.error)}`);

    // While the backend is down: an error too, not a hang.
    const down = await p.call('echo', { text: 'down' }, 15_000);
    assert.ok(down.error, JSON.stringify(down));

    await startChild(); // same port; it knows nothing of the old session
    const back = await p.call('echo', { text: 'after restart' }, 15_000);
    assert.equal(textOf(back.result), 'after restart', `${JSON.stringify(back)}\n${p.stderr()}`);
    assert.equal(textOf((await p.call('add', { a: 1, b: 2 })).result), '3');
    assert.equal(p.messages.filter((m) => m.id === slowId).length, 1, 'the interrupted call was answered exactly once');
    p.assertClean();
  });

  test('broken backend replies (HTML 502, invalid JSON as application/json, text/plain 200) each give a clear JSON-RPC error', T, async (t) => {
    const mini = await miniServer(miniMcp(async (name, msg, res) => {
      if (name === 'html502') {
        res.writeHead(502, { 'content-type': 'text/html' });
        res.end('<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>');
      } else if (name === 'badjson') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"jsonrpc":"2.0","id":${JSON.stringify(msg.id)},"result":{"content":[{"type":"text","te`);
      } else if (name === 'textplain') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('all good, honestly');
      } else {
        sendJson(res, 200, { jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: `ok ${name}` }] } });
      }
    }));
    t.after(() => mini.close());
    const p = rawProxy(staticArgs(mini.url()));
    t.after(() => p.close());
    await p.initialize();

    const expectations = {
      html502: /502/,
      badjson: /JSON/i,
      textplain: /text\/plain/,
    };
    for (const [tool, pattern] of Object.entries(expectations)) {
      const r = await p.call(tool, {}, 8_000);
      assert.ok(r.error, `${tool}: expected an error, got ${JSON.stringify(r)}`);
      assert.equal(typeof r.error.code, 'number', tool);
      assert.match(r.error.message, pattern, `${tool}: ${r.error.message}`);
      t.diagnostic(`${tool}: ${JSON.stringify(r.error)}`);
      assert.ok(!r.error.message.includes('<html>'), `${tool}: the HTML page is not pasted into the error`);
      // The session survives: a good call right after works.
      assert.equal(textOf((await p.call('fine')).result), 'ok fine', `after ${tool}`);
    }
    assert.equal(p.child.exitCode, null);
    p.assertClean();
  });

  test('IdP down when a refresh is due: a clear JSON-RPC error, no crash; recovery without restart when it is back', { timeout: 90_000 }, async (t) => {
    const ctx = await loginSetup(t, { accessTokenTtl: 3 });
    const p = ctx.proxy();
    await p.initialize({ ms: 30_000 });
    const who = await p.call('whoami', {}, 15_000);
    assert.equal(JSON.parse(textOf(who.result)).sub, 'alice');
    assert.equal(ctx.rig.idp.stats.codeExchanges, 1);

    await ctx.rig.idp.pause(); // same keys and grants when it comes back (an outage, not a reset)
    await sleep(3_500); // the access token expires
    const t0 = Date.now();
    const failed = await p.call('whoami', {}, 30_000);
    assert.ok(failed.error, `expected an error while the IdP is down: ${JSON.stringify(failed)}`);
    assert.equal(failed.error.code, AUTH_ERROR, JSON.stringify(failed));
    assert.match(failed.error.message, /identity provider|refresh|reach/i);
    assert.ok(Date.now() - t0 < 25_000, `the error took ${Date.now() - t0} ms`);
    assert.equal(p.child.exitCode, null, 'the proxy is still running');
    t.diagnostic(`after ${Date.now() - t0} ms: ${JSON.stringify(failed.error)}`);
    assert.match(p.stderr(), /retrying|not answering|reach/i, 'the outage is logged on stderr');
    const opened = (await ctx.browserEvents()).filter((e) => e.event === 'opened').length;
    assert.equal(opened, 1, 'a network blip never opens the browser');

    await ctx.rig.idp.resume();
    const back = await p.call('whoami', {}, 30_000);
    assert.ok(back.result, `after the IdP is back: ${JSON.stringify(back)}\n${p.stderr()}`);
    assert.equal(JSON.parse(textOf(back.result)).sub, 'alice');
    assert.ok(ctx.rig.idp.stats.refreshes >= 1, 'recovered by a refresh');
    assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'no new login');
    assert.equal((await ctx.browserEvents()).filter((e) => e.event === 'opened').length, 1);
    p.assertClean();
  });

  test('cache folder unusable (below a regular file): the proxy works with tokens in memory and warns', T, async (t) => {
    const ctx = await loginSetup(t);
    const file = join(ctx.home.dir, 'file.txt');
    writeFileSync(file, 'not a folder\n');
    const p = ctx.proxy(['--cache-dir', join(file, 'sub')]);
    await p.initialize({ ms: 30_000 });
    for (let i = 0; i < 3; i += 1) {
      const r = await p.call('whoami', {}, 15_000);
      assert.equal(JSON.parse(textOf(r.result)).sub, 'alice', JSON.stringify(r));
    }
    assert.equal(ctx.rig.idp.stats.codeExchanges, 1, 'one login, then the tokens from memory');
    assert.equal((await ctx.browserEvents()).filter((e) => e.event === 'opened').length, 1);
    assert.match(p.stderr(), /in memory/i, `a warning on stderr:\n${p.stderr()}`);
    assert.equal(readFileSync(file, 'utf8'), 'not a folder\n', 'the file was left alone');
    p.assertClean();
  });

  test('no home folder (HOME unset, a uid without a passwd entry): tokens in memory, a warning', {
    ...T, skip: process.getuid?.() !== 0 && 'needs root to run the proxy under an unknown uid',
  }, async (t) => {
    const ctx = await loginSetup(t);
    chmodSync(ctx.home.dir, 0o777); // the browser worker (same uid as the proxy) writes its log here
    const uid = 48_213; // no passwd entry: no home folder at all
    assert.ok(!readFileSync('/etc/passwd', 'utf8').split('\n').some((l) => l.split(':')[2] === String(uid)));
    const env = { ...ctx.env, HOME: undefined, USERPROFILE: undefined, XDG_CACHE_HOME: undefined, XDG_CONFIG_HOME: undefined, XDG_DATA_HOME: undefined, MCP_PROXY_CACHE_DIR: undefined };
    const p = rawProxy(['--no-banner', ctx.rig.backendUrl], { env, uid, gid: uid, cwd: ctx.home.dir });
    t.after(() => p.kill());
    await p.initialize({ ms: 30_000 });
    const r = await p.call('whoami', {}, 15_000);
    assert.equal(JSON.parse(textOf(r.result)).sub, 'alice', JSON.stringify(r));
    assert.equal(textOf((await p.call('echo', { text: 'again' })).result), 'again');
    assert.equal(ctx.rig.idp.stats.codeExchanges, 1);
    assert.match(p.stderr(), /in memory/i, `a warning on stderr:\n${p.stderr()}`);
    p.assertClean();
  });

  test('SIGKILL during login / cache write: the cache entry is absent or complete JSON; temp files never count as the entry', { timeout: 120_000 }, async (t) => {
    const ctx = await loginSetup(t);
    const checkDir = (label) => {
      if (!existsSync(ctx.cacheDir)) return { entry: false, tmp: [] };
      const names = readdirSync(ctx.cacheDir);
      const entries = names.filter((n) => n.endsWith('_tokens.json'));
      assert.ok(entries.length <= 1, `${label}: ${names}`);
      for (const n of entries) {
        const text = readFileSync(join(ctx.cacheDir, n), 'utf8');
        let parsed;
        assert.doesNotThrow(() => { parsed = JSON.parse(text); }, `${label}: ${n} is complete JSON (${text.length} bytes)`);
        assert.equal(typeof parsed.tokens?.access_token, 'string', `${label}: the entry holds an access token`);
        assert.equal((statSync(join(ctx.cacheDir, n)).mode & 0o777), 0o600, `${label}: the entry is 0600`);
      }
      const tmp = names.filter((n) => n.endsWith('.tmp'));
      for (const n of tmp) {
        assert.ok(n.startsWith('.') && !n.endsWith('_tokens.json'), `${label}: temp file ${n} cannot be taken for the entry`);
        assert.equal((statSync(join(ctx.cacheDir, n)).mode & 0o777), 0o600, `${label}: a leftover temp file is private`);
      }
      return { entry: entries.length === 1, tmp };
    };

    // Measure how long a full login takes until the entry appears, to aim the kills at it.
    const t0 = Date.now();
    const first = ctx.proxy();
    first.send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
    await waitFor(() => ctx.cacheFiles().length === 1, { timeoutMs: 30_000, intervalMs: 2, what: 'the first cache write' });
    const saveAt = Date.now() - t0;
    await first.kill();
    checkDir('measurement run');

    const outcomes = [];
    let lastHadEntry = false;
    for (let i = 0; i < 12; i += 1) {
      rmSync(ctx.cacheDir, { recursive: true, force: true });
      mkdirSync(ctx.cacheDir, { mode: 0o700 });
      await killStrayBrowsers(pidFile);
      const p = ctx.proxy();
      const started = Date.now();
      let how;
      let watcher;
      if (i % 2 === 0) {
        // Kill the moment the temp file shows up: in the middle of write/fsync/rename.
        how = 'on .tmp';
        watcher = watch(ctx.cacheDir, (_ev, name) => {
          if (String(name).endsWith('.tmp')) {
            try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
          }
        });
      } else {
        // At a random moment of the login, around the write.
        const delay = Math.round(saveAt * (0.5 + Math.random() * 0.7));
        how = `at ${delay} ms`;
        setTimeout(() => { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }, Math.max(0, delay - (Date.now() - started)));
      }
      p.send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
      await within(p.exited, 30_000, `kill #${i} (${how})`);
      watcher?.close();
      const r = checkDir(`kill #${i} (${how})`);
      lastHadEntry = r.entry;
      outcomes.push(`${how}: ${r.entry ? 'entry' : 'none'}${r.tmp.length ? ` +${r.tmp.length} tmp` : ''}`);
    }
    await killStrayBrowsers(pidFile);

    // Whatever was left, a new proxy starts from it: the complete entry, or (without one) a
    // fresh login; a leftover temp file is never used.
    const exchanges = ctx.rig.idp.stats.codeExchanges;
    const last = ctx.proxy();
    await last.initialize({ ms: 30_000 });
    const r = await last.call('whoami', {}, 15_000);
    assert.equal(JSON.parse(textOf(r.result)).sub, 'alice');
    assert.equal(ctx.rig.idp.stats.codeExchanges, exchanges + (lastHadEntry ? 0 : 1), 'the cached entry was used if and only if one was complete');
    checkDir('after a clean run');
    assert.equal(ctx.cacheFiles().length, 1);
    t.diagnostic(`save at ~${saveAt} ms; ${outcomes.join('; ')}`);
  });

  test('a lock holder killed while it waits in the browser login: the next instance is not blocked and logs in', T, async (t) => {
    const ctx = await loginSetup(t, { action: 'ignore' });
    const a = ctx.proxy(['--auth-timeout', '60']);
    a.send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'a', version: '1' } } });
    await waitFor(async () => (await ctx.browserEvents()).some((e) => e.event === 'opened'), { timeoutMs: 15_000, what: 'the first proxy to open the browser' });
    const lockFiles = readdirSync(ctx.cacheDir).filter((n) => n.endsWith('.lock'));
    assert.equal(lockFiles.length, 1, 'the first proxy holds the lock file');
    await a.kill();

    const logB = join(ctx.home.dir, 'browser-b.log');
    const b = ctx.proxy(['--auth-timeout', '20'], browserEnv({ action: 'login', log: logB, pidFile }));
    const t0 = Date.now();
    await b.initialize({ ms: 15_000 });
    assert.ok(Date.now() - t0 < 12_000, `the second proxy was not held up by a stale lock (${Date.now() - t0} ms)`);
    const r = await b.call('whoami', {}, 15_000);
    assert.equal(JSON.parse(textOf(r.result)).sub, 'alice');
    assert.ok(!/gave up waiting/.test(b.stderr()), b.stderr());
    assert.equal(ctx.cacheFiles().length, 1, 'the second proxy cached its login');
  });

  describe('client disconnects abruptly', () => {
    let backend;
    before(async () => { backend = await startBackend({ mode: 'sse', auth: { staticToken: TOKEN } }); });
    after(async () => { await backend?.close(); });
    const sidOf = () => backend.log.filter((e) => e.kind === 'http' && e.rpcMethods?.includes('initialize')).at(-1)?.sessionId;

    test('stdin destroyed while a call is in flight: the proxy exits and the backend sees the DELETE', T, async () => {
      const p = rawProxy(staticArgs(backend.url));
      try {
        await p.initialize();
        await p.request('tools/list');
        const sid = sidOf();
        assert.ok(sid);
        p.send({ jsonrpc: '2.0', id: 'inflight', method: 'tools/call', params: { name: 'slow', arguments: { ms: 3_000 } } });
        await sleep(200);
        p.child.stdin.destroy();
        p.child.stdout.destroy(); // the reader is gone too
        const { signal } = await within(p.exited, 6_000, 'the proxy to exit');
        assert.equal(signal, null, 'it exited by itself');
        await waitFor(() => backend.log.some((e) => e.method === 'DELETE' && e.sessionId === sid), { timeoutMs: 3_000, what: 'the DELETE' });
      } finally {
        await p.kill();
      }
    });

    test('the parent process is SIGKILLed: the orphaned proxy exits and the backend sees the DELETE', T, async () => {
      // A middleman that owns the proxy's stdio, initializes, reports the pid, then idles.
      const script = `const { spawn } = require('node:child_process');
        const p = spawn(process.execPath, ${JSON.stringify([CLI, ...staticArgs(backend.url)])}, { stdio: ['pipe', 'pipe', 'ignore'], env: { PATH: process.env.PATH } });
        let buf = '';
        p.stdout.on('data', (d) => {
          buf += d;
          if (buf.includes('"id":1')) {
            p.stdin.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\\n');
            p.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'slow', arguments: { ms: 2000 } } }) + '\\n');
            process.stdout.write('pid ' + p.pid + '\\n');
          }
        });
        p.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'm', version: '1' } } }) + '\\n');
        setInterval(() => {}, 1000);`;
      const mid = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      strayPids.add(mid.pid);
      let out = '';
      mid.stdout.on('data', (d) => { out += d; });
      let proxyPid;
      try {
        proxyPid = Number(await within(waitFor(() => /pid (\d+)/.exec(out)?.[1], { timeoutMs: 15_000, what: 'the middleman' }), 15_000, 'middleman'));
        strayPids.add(proxyPid);
        const sid = sidOf();
        assert.ok(sid);
        await sleep(300); // the slow call is in flight
        mid.kill('SIGKILL');
        await waitFor(() => !alive(proxyPid), { timeoutMs: 6_000, what: `the orphaned proxy (pid ${proxyPid}) to exit` });
        await waitFor(() => backend.log.some((e) => e.method === 'DELETE' && e.sessionId === sid), { timeoutMs: 3_000, what: 'the DELETE' });
      } finally {
        try { mid.kill('SIGKILL'); } catch { /* gone */ }
        if (proxyPid && alive(proxyPid)) process.kill(proxyPid, 'SIGKILL');
      }
    });
  });
});

// =============================================================================================
// Load (bounded, loopback)
// =============================================================================================

describe('load', () => {
  let backend;
  let p;
  before(async () => {
    backend = await startBackend({ mode: 'sse', auth: { staticToken: TOKEN } });
    p = rawProxy(staticArgs(backend.url));
    await p.initialize();
  });
  after(async () => {
    await p?.close();
    await backend?.close();
  });

  test('2,000 requests with 32 in flight: every answer matched to its id exactly once', T, async () => {
    const { counts, prefix } = await pipeline(p, 2_000, 32, (i) => ['tools/call', { name: 'echo', arguments: { text: `n${i}` } }], {
      check: (i, m) => assert.equal(textOf(m.result), `n${i}`, `answer to request ${i}: ${JSON.stringify(m).slice(0, 300)}`),
    });
    assert.equal(counts.size, 2_000);
    for (let i = 0; i < 2_000; i += 1) assert.equal(counts.get(`${prefix}${i}`), 1, `id ${i} answered once`);
    p.assertClean();
  });

  test('a 10 MB tool result arrives intact', T, async () => {
    // 10 MB, within the default --max-output-bytes (10 MiB less 64 KiB; see host.test.mjs).
    const bytes = 10_000_000;
    const r = await p.call('big', { bytes }, 30_000);
    const text = textOf(r.result);
    assert.equal(text?.length, bytes, `length ${text?.length}`);
    assert.ok(/^x+$/.test(text), 'only the expected characters');
    p.messages.length = 0;
    p.assertClean();
  });

  test('1,000 notifications in a burst arrive in order, before the result', T, async () => {
    const start = p.messages.length;
    const r = await p.call('burst', { count: 1_000 }, 30_000);
    assert.equal(textOf(r.result), 'sent 1000');
    const seen = p.messages.slice(start);
    const notes = seen.filter((m) => m.method === 'notifications/message' && m.params?.logger === 'burst').map((m) => m.params.data);
    assert.equal(notes.length, 1_000);
    assert.deepEqual(notes, Array.from({ length: 1_000 }, (_, i) => `burst ${i + 1}/1000`));
    const lastNote = seen.findLastIndex((m) => m.method === 'notifications/message');
    assert.ok(lastNote < seen.indexOf(r), 'the result comes after the notifications');
    p.messages.length = 0;
    p.assertClean();
  });

  test('10,000 requests: resident memory does not keep growing', { timeout: 120_000 }, async (t) => {
    const samples = [];
    await pipeline(p, 10_000, 32, () => ['ping'], {
      check: (i, m) => assert.deepEqual(m.result, {}, `ping ${i}: ${JSON.stringify(m)}`),
      progress: (done) => { if (done % 2_000 === 0) samples.push(rssKb(p.pid)); },
      ms: 110_000,
    });
    assert.equal(samples.length, 5, String(samples));
    const [firstKb, , , , lastKb] = samples;
    const growthKb = lastKb - firstKb;
    const fmt = samples.map((kb) => `${(kb / 1024).toFixed(1)}MB`).join(' → ');
    t.diagnostic(`RSS every 2,000 requests: ${fmt}`);
    assert.ok(growthKb <= Math.max(firstKb * 0.2, 15 * 1024), `RSS grew too much: ${fmt}`);
    assert.equal(p.child.exitCode, null);
    p.assertClean();
  });
});

// =============================================================================================
// Secrets
// =============================================================================================

describe('secrets', () => {
  test('login, refresh and traffic with --debug and a confidential client: no secret in stderr, other cache files, or the command line', { timeout: 90_000 }, async (t) => {
    const clientSecret = `cs-${randomBytes(18).toString('base64url')}`;
    const clientId = 'reliability-confidential';
    const ctx = await loginSetup(t, {
      accessTokenTtl: 3,
      clientId,
      clientSecret,
      idp: {
        recordTokenRequests: true,
        clients: [{
          client_id: clientId,
          client_secret: clientSecret,
          token_endpoint_auth_method: 'client_secret_basic',
          application_type: 'native',
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          redirect_uris: ['http://127.0.0.1:8080/auth/callback'],
        }],
      },
      backend: { logHeaders: ['authorization'] },
    });
    const p = ctx.proxy(['--debug']);
    const cmdlines = [];
    const snapCmdline = () => { try { cmdlines.push(readFileSync(`/proc/${p.pid}/cmdline`, 'utf8')); } catch { /* exited */ } };
    snapCmdline();
    await p.initialize({ ms: 30_000 });
    snapCmdline();
    const first = await p.call('whoami', {}, 15_000);
    assert.equal(JSON.parse(textOf(first.result)).client_id, clientId);
    const entry1 = JSON.parse(readFileSync(ctx.cacheFiles()[0], 'utf8'));
    await sleep(3_500); // expire: the next call refreshes
    const second = await p.call('whoami', {}, 20_000);
    assert.equal(JSON.parse(textOf(second.result)).sub, 'alice', JSON.stringify(second));
    assert.ok(ctx.rig.idp.stats.refreshes >= 1, 'a refresh happened');
    assert.equal(textOf((await p.call('echo', { text: 'traffic' })).result), 'traffic');
    snapCmdline();
    await p.close();

    const entry2 = JSON.parse(readFileSync(ctx.cacheFiles()[0], 'utf8'));
    const callback = (await ctx.browserEvents()).find((e) => e.event === 'callback');
    const code = new URL(callback.url).searchParams.get('code');
    const codeReqs = ctx.rig.idp.tokenRequests.filter((r) => r.grantType === 'authorization_code');
    assert.equal(codeReqs.length, 1);
    const bearerSeen = ctx.rig.backend.log
      .map((e) => e.headers?.authorization).filter(Boolean).map((h) => h.replace(/^Bearer\s+/i, ''));
    const secrets = {
      'client secret': [clientSecret],
      'access token': [entry1.tokens.access_token, entry2.tokens.access_token, ...bearerSeen],
      'refresh token': [entry1.tokens.refresh_token, entry2.tokens.refresh_token,
        ...ctx.rig.idp.tokenRequests.map((r) => r.refreshToken)],
      'ID token': [entry1.tokens.id_token, entry2.tokens.id_token],
      'authorization code': [code, codeReqs[0].code],
      'PKCE verifier': [codeReqs[0].codeVerifier],
    };
    for (const [what, values] of Object.entries(secrets)) {
      const real = values.filter((v) => typeof v === 'string' && v.length >= 16);
      assert.ok(real.length > 0, `the test knows at least one ${what}`);
      secrets[what] = [...new Set(real)];
    }
    assert.notEqual(entry1.tokens.access_token, entry2.tokens.access_token, 'the refresh produced a new access token');
    assert.ok(secrets['access token'].length >= 2);

    // Where they must not be.
    const places = { stderr: p.stderr() };
    cmdlines.forEach((c, i) => { places[`/proc/<pid>/cmdline #${i}`] = c; });
    for (const name of readdirSync(ctx.cacheDir)) {
      if (name.endsWith('_tokens.json')) continue;
      places[`cache dir file ${name}`] = readFileSync(join(ctx.cacheDir, name), 'latin1');
    }
    assert.ok(cmdlines.length >= 2, 'the command line was read while the proxy ran');
    assert.ok(/tools\/call|whoami|→|←/.test(places.stderr), '--debug traced the traffic');
    for (const [place, content] of Object.entries(places)) {
      for (const [what, values] of Object.entries(secrets)) {
        for (const v of values) {
          assert.ok(!content.includes(v), `the ${what} appears in ${place}`);
        }
      }
    }
    // The client secret is never stored, not even in the token file.
    assert.ok(!readFileSync(ctx.cacheFiles()[0], 'utf8').includes(clientSecret), 'the client secret is not in the token file');
  });

  describe('the Authorization header never goes to another origin', () => {
    test('a legacy SSE `endpoint` on another origin is refused; that origin receives nothing', T, async (t) => {
      const other = await miniServer((req, res) => { res.writeHead(202).end(); }, { host: '127.0.0.1' });
      t.after(() => other.close());
      let other6;
      try {
        other6 = await miniServer((req, res) => { res.writeHead(202).end(); }, { host: '::1', port: other.port });
        t.after(() => other6.close());
      } catch { /* no IPv6: localhost is 127.0.0.1 */ }
      const foreignEndpoint = `http://localhost:${other.port}/messages?sessionId=abc`;
      const legacy = await miniServer((req, res) => {
        if (req.method === 'GET') {
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
          res.write(`event: endpoint\ndata: ${foreignEndpoint}\n\n`);
          return new Promise((resolve) => req.on('close', resolve)); // keep the stream open
        }
        res.writeHead(405, { allow: 'GET' }).end();
        return undefined;
      });
      t.after(() => legacy.close());
      const p = rawProxy(staticArgs(legacy.url(), ['--header', 'X-Api-Key: k-secret-1']));
      t.after(() => p.close());
      const r = await p.request('initialize', { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'x', version: '1' } }, 20_000);
      assert.ok(r.error, `initialize must fail: ${JSON.stringify(r)}`);
      assert.match(r.error.message, /origin/i);
      assert.ok(legacy.requests.some((q) => q.method === 'GET'), 'the proxy did open the SSE stream (so the endpoint was seen)');
      await sleep(300);
      assert.deepEqual([...other.requests, ...(other6?.requests ?? [])].map((q) => `${q.method} ${q.url}`), [], 'the other origin got no request');
      p.assertClean();
    });

    test('a 307 redirect to another origin is not followed with the token (a same-origin one is)', T, async (t) => {
      const mcp = miniMcp(async (name, msg, res) => sendJson(res, 200, { jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: `ok ${name}` }] } }));
      const other = await miniServer(mcp);
      t.after(() => other.close());
      const foreign = `http://localhost:${other.port}/mcp`;
      const front = await miniServer(async (req, res, body) => {
        if (req.url === '/same') return mcp(req, res, body); // same-origin redirect target
        if (req.url === '/mcp-same') { res.writeHead(307, { location: '/same' }).end(); return undefined; }
        res.writeHead(307, { location: foreign }).end();
        return undefined;
      });
      t.after(() => front.close());

      // Positive control: a same-origin 307 is followed, token and all.
      const same = rawProxy(staticArgs(front.url('/mcp-same'), ['--header', 'X-Api-Key: k-secret-2']));
      t.after(() => same.close());
      await same.initialize();
      const sameHits = front.requests.filter((q) => q.url === '/same');
      assert.ok(sameHits.length >= 1, 'the same-origin redirect was followed');
      assert.equal(sameHits[0].headers.authorization, `Bearer ${TOKEN}`);
      await same.close();

      const p = rawProxy(staticArgs(front.url('/mcp'), ['--header', 'X-Api-Key: k-secret-2']));
      t.after(() => p.close());
      const r = await p.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } }, 20_000);
      assert.ok(r.error, `initialize must not succeed through a foreign redirect: ${JSON.stringify(r)}`);
      assert.ok(front.requests.some((q) => q.url === '/mcp'), 'the front server was asked');
      await sleep(300);
      const leaked = other.requests.filter((q) => q.headers.authorization || q.headers['x-api-key']);
      assert.deepEqual(leaked.map((q) => `${q.method} ${q.url}`), [], 'no credentials reached the other origin');
      p.assertClean();
    });
  });

  test('a callback with a valid code but a wrong state never leads to a code exchange; the login times out', T, async (t) => {
    const ctx = await loginSetup(t, { action: 'wrong-state-only' });
    const p = ctx.proxy(['--auth-timeout', '3']);
    const t0 = Date.now();
    const r = await p.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } }, 20_000);
    assert.ok(r.error, JSON.stringify(r));
    assert.equal(r.error.code, AUTH_ERROR);
    assert.match(r.error.message, /3\s*s|timed out|no browser login/i);
    assert.ok(Date.now() - t0 >= 2_500, 'it waited for the login to time out');
    const events = await ctx.browserEvents();
    const cb = events.find((e) => e.event === 'callback' && e.tampered);
    assert.ok(cb, `the tampered callback was delivered: ${JSON.stringify(events)}`);
    assert.ok(cb.status >= 400, `the proxy refused it (HTTP ${cb.status})`);
    assert.ok(new URL(cb.url).searchParams.get('code'), 'the tampered callback carried a real code');
    assert.equal(ctx.rig.idp.stats.authorizationSuccesses, 1, 'the IdP issued that code');
    assert.equal(ctx.rig.idp.stats.tokenEndpointRequests, 0, 'no token request at all');
    assert.equal(ctx.rig.idp.stats.codeExchanges, 0);
    p.assertClean();
  });

  test('the callback listener binds loopback only, and only while a login waits', T, async (t) => {
    const ctx = await loginSetup(t, { action: 'ignore', host: 'localhost' });
    const listeners = () => {
      const rows = [];
      for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
        let text = '';
        try { text = readFileSync(f, 'utf8'); } catch { continue; }
        for (const line of text.split('\n').slice(1)) {
          const cols = line.trim().split(/\s+/);
          if (cols.length < 4 || cols[3] !== '0A') continue; // LISTEN
          const [addr, portHex] = cols[1].split(':');
          if (parseInt(portHex, 16) === ctx.port) rows.push({ file: f, addr });
        }
      }
      return rows;
    };
    const LOOPBACK = new Set(['0100007F', '00000000000000000000000001000000']); // 127.0.0.1, ::1
    const p = ctx.proxy(['--auth-timeout', '4']);
    p.send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
    await waitFor(async () => (await ctx.browserEvents()).some((e) => e.event === 'opened'), { timeoutMs: 15_000, what: 'the login to start' });
    const during = listeners();
    assert.ok(during.length >= 1, 'the callback port is listening during the login');
    for (const l of during) assert.ok(LOOPBACK.has(l.addr), `bound on a non-loopback address: ${JSON.stringify(l)}`);
    const r = await p.next((m) => m.id === 1, 15_000, 'the login timeout');
    assert.equal(r.error?.code, AUTH_ERROR, JSON.stringify(r));
    await waitFor(() => listeners().length === 0, { timeoutMs: 3_000, what: 'the callback listener to close after the login' });
  });
});
