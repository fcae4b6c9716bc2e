// What users behind corporate networks and MCP hosts rely on, end to end with `node cli.js`:
// HTTP(S)_PROXY / NO_PROXY through a forward proxy, HTTPS with a private CA (--ca-file,
// SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, MCP_PROXY_CA_FILE), piping a few lines and closing
// stdin, SIGTERM while a login is pending, --debug / --silent output, and the empty
// environment values MCP host configs often hold.
//
//   node --test --test-concurrency=1 __test__/network.test.mjs
//
// Every server binds 127.0.0.1. The forward proxy routes names that do not resolve
// (`mcp.test`) to loopback ports and refuses everything else, so nothing ever leaves this
// machine; a request that reached `mcp.test` can only have gone through it.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBackend } from '../examples/backend.mjs';
import { waitFor, killStrayBrowsers } from './helpers/rig.mjs';
import { setup, spawnRaw, connectProxy, whoami, runCli as runCliIn } from './helpers/proxy.mjs';
import { rawProxy as spawnDriver, within, sleep } from './helpers/stdio.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'cli.js');
const TOKEN = `tok-${randomBytes(12).toString('hex')}`;
const AUTH_HEADER = `Authorization: Bearer ${TOKEN}`;
const T = { timeout: 30_000 };
const T_LOGIN = { timeout: 60_000 };
const BACKEND_ERROR = -32000;

const scratch = mkdtempSync(join(tmpdir(), 'authful-network-test-'));
const pidFile = join(scratch, 'browsers.pids'); // this file's own browser workers only
const children = new Set(); // every proxy process spawned here, killed at the end if alive
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await killStrayBrowsers(pidFile);
  rmSync(scratch, { recursive: true, force: true });
});

// ---- helpers -------------------------------------------------------------------------

const textOf = (result) => result?.content?.map((c) => c.text).join('');

/**
 * A child environment built from scratch: PATH, TMPDIR, a scratch HOME. Nothing of the
 * runner's proxy, CA or MCP_/OIDC_ settings leaks in. `undefined` values are dropped.
 */
function cleanEnv(extra = {}) {
  const env = {
    PATH: process.env.PATH,
    ...(process.env.TMPDIR && { TMPDIR: process.env.TMPDIR }),
    HOME: scratch,
    ...extra,
  };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return env;
}

/**
 * Spawn `node cli.js args` and drive it on raw stdio (helpers/stdio.mjs: every stdout line
 * must be JSON-RPC, others land in `bad`). `closed` resolves after exit AND the end of
 * stdout/stderr; `initialize` returns the whole reply, error or not; `close` throws if the
 * proxy does not exit within `ms` of stdin EOF.
 */
function rawProxy(args, { env = {} } = {}) {
  const p = spawnDriver([CLI, ...args], { env: cleanEnv(env), clientInfo: { name: 'network-test', version: '1.0.0' } });
  const { child, exited } = p;
  children.add(child);
  const closed = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal, at: Date.now() })));
  return {
    ...p,
    closed,
    async initialize(ms = 15_000) {
      const r = await p.request('initialize', {
        protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'network-test', version: '1.0.0' },
      }, ms);
      if (r.result) p.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
      return r;
    },
    async close(ms = 6_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.stdin.end();
      let timer;
      const done = await Promise.race([closed, new Promise((r) => { timer = setTimeout(() => r(null), ms); })]);
      clearTimeout(timer);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`the proxy did not exit within ${ms} ms of stdin EOF\n${p.stderr()}`);
      }
      return done;
    },
    kill() { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); },
  };
}

/** Run cli.js with stdin left open (helpers/proxy.mjs); { code, signal, stdout, stderr }. */
function runCli(args, { env = {}, ms = 8_000 } = {}) {
  return runCliIn({ env: cleanEnv() }, args, { env, timeoutMs: ms });
}

/** A session through `p`: initialize, one tools/call; asserts both worked. */
async function exerciseSession(p) {
  const init = await p.initialize();
  assert.ok(init.result, `initialize failed: ${JSON.stringify(init)}\nstderr:\n${p.stderr()}`);
  const r = await p.request('tools/call', { name: 'echo', arguments: { text: 'through' } });
  assert.equal(textOf(r.result), 'through', JSON.stringify(r));
  const who = await p.request('tools/call', { name: 'whoami', arguments: {} });
  assert.equal(JSON.parse(textOf(who.result)).static, true, 'the static bearer token was accepted');
}

/**
 * A forward proxy on 127.0.0.1. Absolute-form requests (`GET http://host:port/path`) and
 * CONNECT tunnels are routed by `routes` ('host:port' → a loopback port); requests for
 * 127.0.0.1/localhost go to that loopback port; anything else gets 502 and no connection
 * is made. `log` records { method, url, authorization }.
 */
async function startForwardProxy(routes = {}) {
  const log = [];
  const tunnels = new Set();
  const route = (host, port) => {
    const key = `${host}:${port}`;
    if (Object.hasOwn(routes, key)) return routes[key];
    if (host === '127.0.0.1' || host === 'localhost') return Number(port);
    return undefined;
  };
  const server = http.createServer((req, res) => {
    let target;
    try { target = new URL(req.url); } catch { /* origin-form: not a proxy request */ }
    log.push({ method: req.method, url: req.url, authorization: req.headers.authorization });
    if (!target || target.protocol !== 'http:') {
      res.writeHead(400, { 'content-type': 'text/plain' });
      return res.end('this proxy expects absolute-form http:// requests');
    }
    const port = route(target.hostname, target.port || '80');
    if (!port) {
      res.writeHead(502, { 'content-type': 'text/plain' });
      return res.end(`no route to ${target.host}`);
    }
    const headers = { ...req.headers };
    delete headers['proxy-connection'];
    delete headers['proxy-authorization'];
    const up = http.request({
      host: '127.0.0.1', port, method: req.method, path: `${target.pathname}${target.search}`, headers, agent: false,
    }, (upRes) => {
      res.writeHead(upRes.statusCode, upRes.headers);
      res.flushHeaders(); // an SSE stream may send no body for a while: pass its headers on now
      upRes.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) { res.writeHead(502); res.end(); } else res.destroy();
    });
    res.on('close', () => up.destroy()); // the client went away (GET stream closed, ...)
    req.pipe(up);
  });
  server.on('connect', (req, client, head) => {
    log.push({ method: 'CONNECT', url: req.url, authorization: req.headers.authorization });
    tunnels.add(client);
    client.on('close', () => tunnels.delete(client));
    client.on('error', () => {});
    const colon = req.url.lastIndexOf(':');
    const port = route(req.url.slice(0, colon), req.url.slice(colon + 1));
    if (!port) {
      client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const up = net.connect(port, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    tunnels.add(up);
    up.on('close', () => { tunnels.delete(up); client.destroy(); });
    up.on('error', () => client.destroy());
    client.on('close', () => up.destroy());
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log,
    async close() {
      for (const s of tunnels) s.destroy();
      await new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

const httpLog = (backend) => backend.log.filter((e) => e.kind === 'http');

// ---- 1. HTTP_PROXY / HTTPS_PROXY / NO_PROXY -----------------------------------------------

describe('forward proxy from the environment', () => {
  let backend;
  let fwd;
  const FAKE = 'http://mcp.test:1234/mcp'; // does not resolve: reachable only through `fwd`
  before(async () => {
    backend = await startBackend({ auth: { staticToken: TOKEN }, mode: 'sse' });
    fwd = await startForwardProxy({ 'mcp.test:1234': backend.port });
  });
  after(async () => {
    await fwd?.close();
    await backend?.close();
  });

  for (const vars of [['HTTP_PROXY', 'http_proxy'], ['HTTP_PROXY'], ['http_proxy']]) {
    test(`${vars.join(' + ')}: requests go through the proxy, with the Authorization header`, T, async () => {
      const before = fwd.log.length;
      const env = Object.fromEntries(vars.map((v) => [v, fwd.url]));
      const p = rawProxy(['--no-banner', '--allow-http', '--header', AUTH_HEADER, FAKE], { env });
      try {
        await exerciseSession(p);
        const seen = fwd.log.slice(before);
        const posts = seen.filter((e) => e.method === 'POST');
        assert.ok(posts.length >= 4, `the proxy saw initialize, notifications/initialized and the calls: ${JSON.stringify(seen)}`);
        assert.ok(seen.some((e) => e.method === 'GET'), 'the GET stream went through the proxy');
        for (const e of seen) {
          assert.equal(e.url, FAKE, 'absolute-form request for the configured backend URL');
          assert.equal(e.authorization, `Bearer ${TOKEN}`, `${e.method} carried the bearer token`);
        }
        const { code } = await p.close();
        assert.equal(code, 0, p.stderr());
        assert.ok(fwd.log.slice(before).some((e) => e.method === 'DELETE'), 'the session DELETE went through the proxy too');
        p.assertClean();
      } finally {
        p.kill();
      }
    });
  }

  test('NO_PROXY=mcp.test: no proxy is used, so the backend cannot be reached: a clear JSON-RPC error, no hang', T, async () => {
    const before = fwd.log.length;
    const p = rawProxy(['--no-banner', '--allow-http', '--header', AUTH_HEADER, FAKE], {
      env: { HTTP_PROXY: fwd.url, http_proxy: fwd.url, NO_PROXY: 'mcp.test', no_proxy: 'mcp.test' },
    });
    try {
      const t0 = Date.now();
      const r = await p.initialize(15_000);
      assert.ok(Date.now() - t0 < 12_000, `answered within the connect timeout (${Date.now() - t0} ms)`);
      assert.equal(r.error?.code, BACKEND_ERROR, JSON.stringify(r));
      assert.match(r.error.message, /mcp\.test/, 'the message names the server');
      assert.match(r.error.message, /connect|lookup|resolve|reach/i, r.error.message);
      assert.equal(fwd.log.length, before, 'the forward proxy saw nothing');
      const { code } = await p.close();
      assert.equal(code, 0, p.stderr());
      p.assertClean();
    } finally {
      p.kill();
    }
  });

  for (const noProxy of ['', '127.0.0.1,localhost']) {
    test(`a loopback backend is reached directly even with HTTP_PROXY set (NO_PROXY=${JSON.stringify(noProxy)})`, T, async () => {
      // This machine itself never goes through a forward proxy (as Go's net/http does; curl
      // and reqwest's defaults would send loopback requests to the proxy too).
      const before = fwd.log.length;
      const p = rawProxy(['--no-banner', '--header', AUTH_HEADER, backend.url], {
        env: { HTTP_PROXY: fwd.url, http_proxy: fwd.url, NO_PROXY: noProxy, no_proxy: noProxy },
      });
      try {
        await exerciseSession(p);
        assert.deepEqual(fwd.log.slice(before), [], 'the forward proxy saw nothing');
        const { code } = await p.close();
        assert.equal(code, 0, p.stderr());
      } finally {
        p.kill();
      }
    });
  }
});

// ---- 2. HTTPS with a private CA -------------------------------------------------------------

function haveOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A CA and a server certificate for localhost, 127.0.0.1 and mcp.test, made with openssl. */
function makeCerts(dir) {
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=authful network test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  writeFileSync(join(dir, 'ext.cnf'), [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:mcp.test',
    '',
  ].join('\n'));
  run(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf']);
  return {
    ca: join(dir, 'ca.pem'),
    key: readFileSync(join(dir, 'server.key')),
    cert: readFileSync(join(dir, 'server.pem')),
  };
}

describe('HTTPS backend with a private CA', { skip: haveOpenssl() ? false : 'the openssl CLI is not installed' }, () => {
  let backend;
  let certs;
  let dir;
  before(async () => {
    dir = mkdtempSync(join(scratch, 'tls-'));
    certs = makeCerts(dir);
    backend = await startBackend({ auth: { staticToken: TOKEN }, mode: 'sse', tls: { key: certs.key, cert: certs.cert } });
    assert.match(backend.url, /^https:\/\/127\.0\.0\.1:\d+\/mcp$/);
  });
  after(async () => { await backend?.close(); });

  test('without the CA: the first request fails with a JSON-RPC error about the certificate', T, async () => {
    const p = rawProxy(['--no-banner', '--header', AUTH_HEADER, backend.url]);
    try {
      const r = await p.initialize();
      assert.equal(r.error?.code, BACKEND_ERROR, JSON.stringify(r));
      assert.match(r.error.message, /certificate/i, r.error.message);
      assert.ok(r.error.message.includes(backend.url), `the message names the server: ${r.error.message}`);
      assert.equal(httpLog(backend).length, 0, 'no request got past the TLS handshake');
      const { code } = await p.close();
      assert.equal(code, 0, p.stderr());
      p.assertClean();
    } finally {
      p.kill();
    }
  });

  const trusted = [
    ['--ca-file ca.pem', () => ({ args: ['--ca-file', certs.ca] })],
    ['--ca-file ca.pem, https://localhost', () => ({ args: ['--ca-file', certs.ca], host: 'localhost' })],
    ['SSL_CERT_FILE=ca.pem', () => ({ env: { SSL_CERT_FILE: certs.ca } })],
    ['NODE_EXTRA_CA_CERTS=ca.pem', () => ({ env: { NODE_EXTRA_CA_CERTS: certs.ca } })],
    ['MCP_PROXY_CA_FILE=ca.pem', () => ({ env: { MCP_PROXY_CA_FILE: certs.ca } })],
  ];
  for (const [name, make] of trusted) {
    test(`${name}: the session works`, T, async () => {
      const { args = [], env = {}, host } = make();
      const url = host ? backend.url.replace('127.0.0.1', host) : backend.url;
      const p = rawProxy(['--no-banner', '--header', AUTH_HEADER, ...args, url], { env });
      try {
        await exerciseSession(p);
        const { code } = await p.close();
        assert.equal(code, 0, p.stderr());
        p.assertClean();
      } finally {
        p.kill();
      }
    });
  }

  test('HTTPS_PROXY: a CONNECT tunnel; the proxy never sees the bearer token', T, async () => {
    const fwd = await startForwardProxy({ 'mcp.test:8443': backend.port });
    const p = rawProxy(['--no-banner', '--ca-file', certs.ca, '--header', AUTH_HEADER, 'https://mcp.test:8443/mcp'], {
      env: { HTTPS_PROXY: fwd.url, https_proxy: fwd.url },
    });
    try {
      await exerciseSession(p);
      const { code } = await p.close();
      assert.equal(code, 0, p.stderr());
      assert.ok(fwd.log.length >= 1, 'the proxy was used');
      for (const e of fwd.log) {
        assert.equal(e.method, 'CONNECT');
        assert.equal(e.url, 'mcp.test:8443');
        assert.equal(e.authorization, undefined, 'no Authorization header on the CONNECT');
      }
    } finally {
      p.kill();
      await fwd.close();
    }
  });

  /** A failed start: exit 1 or 2, nothing on stdout, a first stderr line naming `file`. */
  function assertCaFileError(r, file) {
    assert.ok(r.code === 1 || r.code === 2, `exit code 1 or 2, got ${r.code} (signal ${r.signal})\n${r.stderr}`);
    assert.equal(r.stdout, '', 'nothing on stdout');
    const first = r.stderr.trim().split('\n')[0];
    assert.ok(first.includes(file), `the first stderr line names ${file}: ${r.stderr}`);
    assert.match(first, /^authful-mcp-proxy: /);
    assert.doesNotMatch(r.stderr, /panicked|RUST_BACKTRACE/);
  }

  test('--ca-file that does not exist: fails at start with a one-line message naming the file', T, async () => {
    const missing = join(dir, 'no-such-ca.pem');
    const r = await runCli(['--no-banner', '--ca-file', missing, '--header', AUTH_HEADER, backend.url]);
    assertCaFileError(r, missing);
  });

  test('--ca-file that is not PEM: fails at start with a one-line message naming the file', T, async () => {
    const notPem = join(dir, 'not-a-cert.pem');
    writeFileSync(notPem, 'this is not a certificate\n');
    const r = await runCli(['--no-banner', '--ca-file', notPem, '--header', AUTH_HEADER, backend.url]);
    assertCaFileError(r, notPem);
  });
});

// ---- 3. piping then closing stdin -------------------------------------------------------------

describe('stdio lifecycle', () => {
  let backend;
  before(async () => { backend = await startBackend({ auth: { staticToken: TOKEN }, mode: 'sse' }); });
  after(async () => { await backend?.close(); });

  test('lines piped and stdin closed at once: the slow call is still answered, then exit 0', T, async () => {
    const p = rawProxy(['--no-banner', '--header', AUTH_HEADER, backend.url]);
    try {
      const lines = [
        { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'pipe', version: '1' } } },
        { jsonrpc: '2.0', method: 'notifications/initialized' },
        { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'slow', arguments: { ms: 300 } } },
      ];
      const t0 = Date.now();
      p.child.stdin.end(`${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
      const { code, signal, at } = await within(p.closed, 8_000, 'exit after stdin EOF');
      assert.equal(signal, null);
      assert.equal(code, 0, p.stderr());
      const init = p.messages.find((m) => m.id === 1);
      const call = p.messages.find((m) => m.id === 2);
      assert.ok(init?.result, `initialize answered: ${JSON.stringify(p.messages)}\n${p.stderr()}`);
      assert.ok(call?.result, `the slow call was answered before exit: ${JSON.stringify(p.messages)}\n${p.stderr()}`);
      assert.equal(call.result.isError, undefined, JSON.stringify(call));
      assert.ok(at - t0 < 5_000, `exited promptly (${at - t0} ms)`);
      const tool = backend.log.find((e) => e.kind === 'tool' && e.tool === 'slow');
      assert.equal(tool?.cancelled, false, 'the call ran to its end on the backend');
      p.assertClean();
    } finally {
      p.kill();
    }
  });

  // ---- 5. --debug and --silent ----------------------------------------------------------------

  test('--debug: one line per direction with method and id, never the token', T, async () => {
    const p = rawProxy(['--debug', '--header', AUTH_HEADER, backend.url]);
    try {
      await p.initialize();
      await p.request('tools/list'); // id 2
      const r = await p.request('tools/call', { name: 'echo', arguments: { text: 'dbg' } }); // id 3
      assert.equal(r.id, 3);
      assert.equal(textOf(r.result), 'dbg');
      const { code } = await p.close();
      assert.equal(code, 0);
      const lines = p.stderr().split('\n');
      const out = lines.filter((l) => /→/.test(l) && /tools\/call/.test(l) && /\bid 3\b/.test(l));
      const back = lines.filter((l) => /←/.test(l) && /\bid 3\b/.test(l));
      assert.equal(out.length, 1, `one → line for tools/call (id 3):\n${p.stderr()}`);
      assert.equal(back.length, 1, `one ← line for the answer to id 3:\n${p.stderr()}`);
      assert.match(back[0], /response/, back[0]);
      assert.ok(!p.stderr().includes(TOKEN), 'the token never appears in debug output');
      assert.ok(!p.stderr().includes('dbg'), 'message bodies never appear in debug output');
      p.assertClean();
    } finally {
      p.kill();
    }
  });

  test('--silent: nothing on stderr for a normal session (no banner, no info lines)', T, async () => {
    const p = rawProxy(['--silent', '--header', AUTH_HEADER, backend.url]);
    try {
      await exerciseSession(p);
      const { code } = await p.close();
      assert.equal(code, 0);
      assert.equal(p.stderr(), '', 'stderr is empty');
      p.assertClean();
    } finally {
      p.kill();
    }
  });

  // ---- 6. empty environment values ---------------------------------------------------------

  const EMPTY = {
    MCP_PROXY_CACHE_DIR: '',
    MCP_PROXY_AUTH_TIMEOUT: '',
    MCP_PROXY_TRANSPORT: '',
    MCP_PROXY_MAX_MESSAGE_BYTES: '',
    OIDC_SCOPES: '',
  };

  test('empty MCP_PROXY_*/OIDC_SCOPES values count as unset (static header session)', T, async () => {
    const p = rawProxy(['--no-banner', '--header', AUTH_HEADER, backend.url], {
      env: {
        ...EMPTY,
        // more of what host configs leave empty
        MCP_PROXY_CA_FILE: '', MCP_PROXY_RESOURCE: '', MCP_PROXY_DEBUG: '', OIDC_ISSUER_URL: '', OIDC_CLIENT_ID: '',
        OIDC_CLIENT_SECRET: '', SSL_CERT_FILE: '', NODE_EXTRA_CA_CERTS: '',
      },
    });
    try {
      await exerciseSession(p);
      const { code } = await p.close();
      assert.equal(code, 0, p.stderr());
      assert.doesNotMatch(p.stderr(), /error|invalid/i, p.stderr());
      p.assertClean();
    } finally {
      p.kill();
    }
  });
});

describe('with an identity provider', () => {
  test('empty MCP_PROXY_*/OIDC_SCOPES values count as unset (browser login, default cache folder)', T_LOGIN, async (t) => {
    const ctx = await setup(t, { pidFile });
    const p = await connectProxy(ctx, {
      env: {
        MCP_PROXY_CACHE_DIR: '',
        MCP_PROXY_AUTH_TIMEOUT: '',
        MCP_PROXY_TRANSPORT: '',
        MCP_PROXY_MAX_MESSAGE_BYTES: '',
        OIDC_SCOPES: '',
      },
    });
    const who = await whoami(p.client);
    assert.equal(who.sub, 'alice');
    for (const s of ['openid', 'profile', 'email']) assert.ok(who.scope.split(' ').includes(s), `default scope ${s}: ${who.scope}`);
    const dflt = join(ctx.home.dir, '.fastmcp', 'oauth-mcp-client-cache');
    assert.ok(existsSync(dflt) && readdirSync(dflt).some((n) => n.endsWith('_tokens.json')),
      `tokens cached in the default folder ${dflt}`);
    assert.ok(!existsSync(ctx.cacheDir), 'not in the (unset) MCP_PROXY_CACHE_DIR');
  });

  // ---- 4. SIGTERM while a login is pending ----------------------------------------------------

  const AUTHORIZE_URL = /https?:\/\/\S*code_challenge=\S+/;

  for (const closeStdinFirst of [false, true]) {
    const name = closeStdinFirst ? 'stdin closed, then SIGTERM' : 'SIGTERM';
    test(`${name} while the browser login is pending: exit 0 within 2 s`, T_LOGIN, async (t) => {
      const ctx = await setup(t, { pidFile, action: 'ignore' });
      const raw = spawnRaw(ctx);
      children.add(raw.child);
      // Never answered: the login never completes (raw.send: no reply timer left behind).
      raw.send({
        jsonrpc: '2.0', id: 1, method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'network-test', version: '1' } },
      });
      await waitFor(() => AUTHORIZE_URL.test(raw.stderr()), { timeoutMs: 15_000, what: `the authorize URL on stderr (${raw.stderr()})` });
      if (closeStdinFirst) {
        // (Exiting on EOF alone would be fine too; the SIGTERM must not make it worse.)
        raw.child.stdin.end();
        await sleep(300);
      }
      const t0 = Date.now();
      raw.child.kill('SIGTERM');
      const { code, signal } = await within(raw.exited, 5_000, 'exit after SIGTERM').catch((err) => {
        raw.child.kill('SIGKILL');
        throw err;
      });
      const took = Date.now() - t0;
      assert.equal(signal, null, 'exited by itself');
      assert.equal(code, 0, raw.stderr());
      assert.ok(took < 2_000, `exited within 2 s (${took} ms)`);
      assert.doesNotMatch(raw.stderr(), /panicked|RUST_BACKTRACE/);
      // The callback listener is gone with the process.
      await assert.rejects(fetch(`${ctx.redirectUrl}?code=x&state=y`, { signal: AbortSignal.timeout(2_000) }));
    });
  }

  // An MCP host that quits (or crashes) closes the proxy's stdin and may send no signal at
  // all. The proxy then has no one to answer: it should not sit on the pending login (and
  // its callback port) until --auth-timeout (300 s by default).
  test('stdin closed (no signal) while the browser login is pending: exit 0 within a few seconds', T_LOGIN, async (t) => {
    const ctx = await setup(t, { pidFile, action: 'ignore' });
    const raw = spawnRaw(ctx);
    children.add(raw.child);
    raw.send({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'network-test', version: '1' } },
    });
    await waitFor(() => AUTHORIZE_URL.test(raw.stderr()), { timeoutMs: 15_000, what: `the authorize URL on stderr (${raw.stderr()})` });
    const t0 = Date.now();
    raw.child.stdin.end();
    let result;
    try {
      result = await within(raw.exited, 5_000, 'exit after stdin EOF with a login pending');
    } finally {
      raw.child.kill('SIGKILL');
    }
    const took = Date.now() - t0;
    assert.equal(result.signal, null);
    assert.equal(result.code, 0, raw.stderr());
    assert.ok(took < 4_000, `exited within 4 s (the 2 s grace for in-flight requests, plus slack): ${took} ms`);
  });
});
