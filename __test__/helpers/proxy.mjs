// Running `node cli.js` against a rig in tests: per-test setup (IdP + backend, temp HOME,
// cache dir, callback port, headless $BROWSER), the proxy under the SDK Client or on raw
// stdio, and subcommands. Used by auth.test.mjs and grants.test.mjs (setup also by
// reliability.test.mjs); the OIDC_* variables are optional (discovery, registration, device
// and client-credentials tests).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startRig, tmpHome, freePort, browserEnv, readBrowserLog, killStrayBrowsers } from './rig.mjs';
import { sleep, within } from './stdio.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'cli.js');
export const AUTH_ERROR = -32001;

/** `base` merged with `env`; an `undefined` value removes the variable. */
export function mergeEnv(base, env) {
  const out = { ...base, ...env };
  for (const [k, v] of Object.entries(out)) if (v === undefined) delete out[k];
  return out;
}

/**
 * A rig, a temp HOME, a cache dir (not created: the proxy must create it), a free callback
 * port and a browser log, torn down after the test. The child environment is built from
 * scratch (PATH, TMPDIR, HOME...), so no DISPLAY, SSH_* or OIDC_* variable of the test
 * runner leaks in.
 * @param {import('node:test').TestContext} t
 * @param {object} opts  startRig options, plus:
 * @param {string} opts.pidFile            where browser workers are recorded (killed after)
 * @param {boolean} [opts.issuer=true]     set OIDC_ISSUER_URL
 * @param {string|null} [opts.clientId='demo-client']  null: no OIDC_CLIENT_ID
 * @param {string} [opts.clientSecret]
 * @param {boolean} [opts.redirectEnv=true]  set OIDC_REDIRECT_URL (else pass `ctx.redirectArgs`)
 * @param {string} [opts.action='login']   BROWSER_ACTION
 * @param {boolean} [opts.chromium=false]  real Chromium as $BROWSER
 * @param {string} [opts.host='127.0.0.1']  callback host
 * @param {string} [opts.homePrefix='authful-grants-home-']  temp HOME name prefix
 * @param {string} [opts.clientName='grants-test']  the SDK Client's name (startProxy)
 */
export async function setup(t, opts) {
  const {
    pidFile, issuer = true, clientId = 'demo-client', clientSecret, redirectEnv = true, action = 'login',
    chromium = false, host = '127.0.0.1', homePrefix = 'authful-grants-home-', clientName = 'grants-test', ...rigOpts
  } = opts;
  const rig = await startRig(rigOpts);
  const home = await tmpHome(homePrefix);
  const port = await freePort();
  const cacheDir = join(home.dir, 'cache');
  const browserLog = join(home.dir, 'browser.log');
  const redirectUrl = `http://${host}:${port}/auth/callback`;
  const env = {
    PATH: process.env.PATH,
    ...(process.env.TMPDIR && { TMPDIR: process.env.TMPDIR }),
    ...home.env,
    ...(issuer && { OIDC_ISSUER_URL: rig.issuer }),
    ...(clientId && { OIDC_CLIENT_ID: clientId }),
    ...(clientSecret && { OIDC_CLIENT_SECRET: clientSecret }),
    ...(redirectEnv && { OIDC_REDIRECT_URL: redirectUrl }),
    MCP_PROXY_CACHE_DIR: cacheDir,
    ...browserEnv({ action, log: browserLog, pidFile, chromium }),
  };
  const closers = [];
  const ctx = {
    rig, home, port, cacheDir, browserLog, redirectUrl, env, pidFile, clientName,
    redirectArgs: ['--oidc-redirect-url', redirectUrl],
    /** Register something to close after the test (LIFO). */
    defer(fn) { closers.push(fn); },
    browserEvents: () => readBrowserLog(browserLog),
    async opened() { return (await readBrowserLog(browserLog)).filter((e) => e.event === 'opened'); },
    /** Cache files (`*_tokens.json`) in the cache dir. */
    cacheFiles() {
      if (!existsSync(cacheDir)) return [];
      return readdirSync(cacheDir).filter((n) => n.endsWith('_tokens.json')).map((n) => join(cacheDir, n));
    },
    /** The single cache entry (parsed) and its path. */
    readCache() {
      const files = ctx.cacheFiles();
      assert.equal(files.length, 1, `exactly one cache file expected, found ${files.length}`);
      return { path: files[0], entry: JSON.parse(readFileSync(files[0], 'utf8')) };
    },
  };
  t.after(async () => {
    for (const fn of closers.reverse()) {
      try { await fn(); } catch { /* best effort */ }
    }
    await killStrayBrowsers(pidFile);
    await rig.close();
    await home.cleanup();
  });
  return ctx;
}

/**
 * Start `node cli.js --no-banner [args] <backend>` under the SDK Client; `connected` settles
 * when initialize is done (so a test can act on stderr, e.g. a device code, meanwhile).
 */
export function startProxy(ctx, { args = [], env = {}, timeoutMs = 30_000, backendUrl = ctx.rig.backendUrl } = {}) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, '--no-banner', ...args, backendUrl],
    env: mergeEnv(ctx.env, env),
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d) => { stderr += d; });
  const client = new Client({ name: ctx.clientName, version: '1.0.0' });
  ctx.defer(() => within(client.close(), 10_000, 'client.close'));
  const connected = within(client.connect(transport, { timeout: timeoutMs }), timeoutMs + 2000, 'initialize through the proxy')
    .catch((err) => {
      err.message += `\n--- proxy stderr ---\n${stderr}`;
      throw err;
    });
  connected.catch(() => {}); // handled by whoever awaits it
  return { client, transport, connected, stderr: () => stderr };
}

/** startProxy + wait for initialize. Returns { client, transport, connected, stderr() }. */
export async function connectProxy(ctx, opts = {}) {
  const p = startProxy(ctx, opts);
  await p.connected;
  return p;
}

/**
 * tools/call `name` → parsed JSON text (whoami and the step-up tools answer JSON); a tool
 * error result (isError) throws with its content.
 */
export async function callJson(client, name, timeoutMs = 30_000) {
  const r = await client.callTool({ name, arguments: {} }, undefined, { timeout: timeoutMs });
  if (r.isError) throw new Error(`${name} failed: ${JSON.stringify(r.content)}`);
  return JSON.parse(r.content[0].text);
}

export const whoami = (client, timeoutMs) => callJson(client, 'whoami', timeoutMs);

/**
 * The proxy on raw stdio (exit codes, error replies the SDK would hide).
 * `request(method, params)` resolves with the whole JSON-RPC reply; `ask()` sends without
 * waiting and returns the reply promise.
 */
export function spawnRaw(ctx, { args = [], env = {}, backendUrl = ctx.rig.backendUrl } = {}) {
  const child = spawn(process.execPath, [CLI, '--no-banner', ...args, backendUrl], {
    env: mergeEnv(ctx.env, env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  let buf = '';
  let nextId = 1;
  const messages = [];
  const waiters = [];
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line);
      messages.push(msg);
      for (const w of [...waiters]) {
        if (w.id === msg.id) { waiters.splice(waiters.indexOf(w), 1); w.resolve(msg); }
      }
    }
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.stdin.on('error', () => {}); // EPIPE after exit
  const raw = {
    child,
    messages,
    exited,
    stderr: () => stderr,
    send(obj) { child.stdin.write(`${JSON.stringify(obj)}\n`); },
    request(method, params, timeoutMs = 30_000) {
      const id = nextId++;
      const p = new Promise((resolve) => waiters.push({ id, resolve }));
      raw.send({ jsonrpc: '2.0', id, method, params });
      return within(p, timeoutMs, `reply to ${method} (stderr: ${stderr})`);
    },
    initialize(timeoutMs) {
      return raw.request('initialize', {
        protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' },
      }, timeoutMs);
    },
    /** End stdin and wait for the exit (SIGKILL after timeoutMs). */
    async close(timeoutMs = 10_000) {
      child.stdin.end();
      try {
        return await within(exited, timeoutMs, 'proxy exit after stdin EOF');
      } catch (err) {
        child.kill('SIGKILL');
        throw err;
      }
    },
  };
  ctx.defer(async () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  return raw;
}

/**
 * Run `node cli.js args` to completion: { code, signal, stdout, stderr }. By default stdin
 * stays open (a proxy that waits for stdin instead of failing fast hangs and is killed after
 * timeoutMs); `stdin: 'ignore'` gives it /dev/null instead.
 */
export function runCli(ctx, args, { env = {}, timeoutMs = 30_000, stdin = 'pipe' } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: mergeEnv(ctx.env, env), stdio: [stdin, 'pipe', 'pipe'] });
    child.stdin?.on('error', () => {});
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`\`${args.join(' ')}\` did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    // 'close', not 'exit': stdout and stderr are read to their end before resolving.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Wait until the access token in the cache has expired (plus slack). */
export async function waitPastExpiry(ctx, slackMs = 1200) {
  const { entry } = ctx.readCache();
  const exp = entry.tokens.expires_at;
  assert.ok(Number.isFinite(exp), 'the cache records expires_at');
  const waitMs = exp * 1000 - Date.now() + slackMs;
  assert.ok(waitMs < 15_000, `token lifetime too long for the test (${waitMs} ms)`);
  if (waitMs > 0) await sleep(waitMs);
}

export { freePort, sleep, within };
