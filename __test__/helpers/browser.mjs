#!/usr/bin/env node
// A headless stand-in for a web browser, for tests.
//
// As $BROWSER:  BROWSER="node /abs/path/__test__/helpers/browser.mjs"  (or the path alone:
// the file is executable). Invoked as `browser.mjs <url>`, it returns at once, like
// xdg-open, and a detached worker process completes the login:
//   GET the authorization URL (cookie jar, redirects followed by hand), submit
//   oidc-provider's devInteractions login form and then its consent form, follow the
//   redirects up to the loopback redirect_uri and GET it (retrying "connection refused"
//   for up to 10 s, since the listener may not be up yet).
//
// Env knobs:
//   BROWSER_ACTION  login (default) | deny (abort at consent -> error=access_denied)
//                   | wrong-state (callback with a tampered state, then after 500 ms
//                   the right one) | wrong-state-only (only the tampered callback)
//                   | ignore (do nothing; for timeout tests)
//   BROWSER_USER    username typed into the login form (default "alice")
//   BROWSER_LOG     file that gets one JSON line per event:
//                   {event:'opened',url,pid} {event:'callback',status,body,url} {event:'error',message}
//   BROWSER_PIDS    file the launcher appends worker pids to (for killStrayBrowsers);
//                   default: $TMPDIR/authful-test-browsers.pids
//
// In-process: `await completeLogin(url, { action, user, log })`.

import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const DEFAULT_PID_FILE = join(tmpdir(), 'authful-test-browsers.pids');
const WORKER_FLAG = '--browser-worker';
const WORKER_DEADLINE_MS = 60_000; // a worker never outlives this

/** Append a JSON line to `file` (no-op without a file). */
export function logEvent(file, event) {
  if (!file) return;
  try {
    appendFileSync(file, `${JSON.stringify({ time: Date.now(), ...event })}\n`);
  } catch {
    // logging must never break the login
  }
}

/**
 * Re-run `scriptPath` detached (own process group, no stdio) with WORKER_FLAG and `url`,
 * record its pid, and return without waiting. Shared with chromium.mjs.
 */
export function launchDetached(scriptPath, url, env = process.env) {
  const child = spawn(process.execPath, [scriptPath, WORKER_FLAG, url], {
    detached: true,
    stdio: 'ignore',
    env,
  });
  child.unref();
  try {
    appendFileSync(env.BROWSER_PIDS || DEFAULT_PID_FILE, `${child.pid}\n`);
  } catch {
    // best effort
  }
  return child.pid;
}

/** Shared main(): launcher mode or worker mode. `work(url)` runs in the worker. */
export async function browserMain(scriptPath, argv, work) {
  const log = process.env.BROWSER_LOG;
  if (argv[0] === WORKER_FLAG) {
    const url = argv[1];
    const deadline = setTimeout(() => {
      logEvent(log, { event: 'error', message: 'worker deadline exceeded' });
      process.exit(2);
    }, WORKER_DEADLINE_MS);
    deadline.unref();
    try {
      await work(url);
    } catch (err) {
      logEvent(log, { event: 'error', message: err?.message ?? String(err) });
    }
    process.exit(0);
  }
  const url = argv.find((a) => /^https?:/.test(a));
  if (!url) {
    console.error(`usage: ${scriptPath} <url>`);
    process.exit(64);
  }
  const pid = launchDetached(scriptPath, url);
  logEvent(log, { event: 'opened', url, pid });
  process.exit(0);
}

// --- tiny cookie jar (per host; path/expiry handling only as much as needed) ---------
export class CookieJar {
  #jars = new Map(); // host -> Map(name -> value)

  store(url, response) {
    const host = new URL(url).host;
    const jar = this.#jars.get(host) ?? new Map();
    this.#jars.set(host, jar);
    for (const line of response.headers.getSetCookie?.() ?? []) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k, v] = a.trim().split('=');
        if (k.toLowerCase() === 'max-age') return Number(v) <= 0;
        if (k.toLowerCase() === 'expires') return Date.parse(v) <= Date.now();
        return false;
      });
      if (expired || value === '') jar.delete(name);
      else jar.set(name, value);
    }
  }

  header(url) {
    const jar = this.#jars.get(new URL(url).host);
    if (!jar || jar.size === 0) return undefined;
    return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function isConnRefused(err) {
  const code = err?.cause?.code ?? err?.code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET';
}

/** GET a URL, retrying while the listener is not up yet. Returns {status, body}. */
export async function getWithRetry(url, { timeoutMs = 10_000 } = {}) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(10_000) });
      const body = await res.text();
      return { status: res.status, body, location: res.headers.get('location') };
    } catch (err) {
      if (!isConnRefused(err) || Date.now() > until) throw err;
      await sleep(100);
    }
  }
}

/**
 * One hop of a hand-driven browser: `req` ({url, method, body}) with the jar's cookies and no
 * automatic redirects; the reply's cookies go into the jar. A 3xx with a Location gives
 * { redirect: {url, method: 'GET'} } (body drained); anything else { res, html }.
 */
export async function fetchHop(jar, req, signal) {
  const headers = { accept: 'text/html' };
  const cookie = jar.header(req.url);
  if (cookie) headers.cookie = cookie;
  if (req.body) headers['content-type'] = 'application/x-www-form-urlencoded';
  const res = await fetch(req.url, { method: req.method, headers, body: req.body, redirect: 'manual', signal });
  jar.store(req.url, res);
  const location = res.headers.get('location');
  if (res.status >= 300 && res.status < 400 && location) {
    await res.arrayBuffer();
    return { redirect: { url: new URL(location, req.url).href, method: 'GET' } };
  }
  return { res, html: await res.text() };
}

/** Extract `<form ... action="...">` and its hidden inputs from oidc-provider's pages. */
export function parseForm(html, baseUrl) {
  const form = /<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return undefined;
  const fields = {};
  for (const m of form[2].matchAll(/<input[^>]*>/gi)) {
    const name = /name="([^"]*)"/.exec(m[0])?.[1];
    const value = /value="([^"]*)"/.exec(m[0])?.[1] ?? '';
    if (name) fields[name] = decodeEntities(value);
  }
  return { action: new URL(decodeEntities(form[1]), baseUrl).href, fields };
}

export function decodeEntities(s) {
  return s.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#x2F;/gi, '/').replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<').replace(/&gt;/g, '>');
}

/** Is `candidate` the client's redirect_uri (same origin+path; loopback port may differ)? */
function isCallback(candidate, redirectUri) {
  if (!redirectUri) return false;
  const a = new URL(candidate);
  const b = new URL(redirectUri);
  return a.protocol === b.protocol && a.hostname === b.hostname && a.port === b.port && a.pathname === b.pathname;
}

/**
 * Drive oidc-provider's devInteractions login + consent for an authorization URL.
 * @param {string} url  the authorization request URL
 * @param {object} [opts]
 * @param {'login'|'deny'|'wrong-state'|'wrong-state-only'|'ignore'} [opts.action='login']
 * @param {string} [opts.user='alice']
 * @param {string} [opts.password='secret']
 * @param {string} [opts.log]            BROWSER_LOG-style file
 * @param {boolean} [opts.deliver=true]  GET the callback URL (false: just return it)
 * @param {number} [opts.callbackTimeoutMs=10000]
 * @returns {Promise<{callbackUrl?: string, status?: number, body?: string}>}
 */
export async function completeLogin(url, opts = {}) {
  const {
    action = 'login',
    user = 'alice',
    password = 'secret',
    log,
    deliver = true,
    callbackTimeoutMs = 10_000,
  } = opts;
  if (action === 'ignore') return {};

  const redirectUri = new URL(url).searchParams.get('redirect_uri');
  const jar = new CookieJar();
  let next = { url, method: 'GET', body: undefined };
  let callbackUrl;

  for (let hop = 0; hop < 25 && !callbackUrl; hop += 1) {
    if (isCallback(next.url, redirectUri)) {
      callbackUrl = next.url;
      break;
    }
    const hop = await fetchHop(jar, next, AbortSignal.timeout(10_000));
    if (hop.redirect) {
      next = hop.redirect;
      continue;
    }
    const { res, html } = hop;
    if (res.status !== 200) {
      throw new Error(`unexpected ${res.status} from ${next.url}: ${html.slice(0, 300)}`);
    }
    const form = parseForm(html, next.url);
    if (!form) throw new Error(`no form on ${next.url}: ${html.slice(0, 300)}`);
    if (form.fields.prompt === 'login') {
      const body = new URLSearchParams({ ...form.fields, login: user, password });
      next = { url: form.action, method: 'POST', body: body.toString() };
    } else if (form.fields.prompt === 'consent') {
      if (action === 'deny') {
        // devInteractions: ".../interaction/<uid>/abort" => error=access_denied
        const abort = /href="([^"]*\/abort)"/.exec(html)?.[1];
        next = { url: new URL(decodeEntities(abort ?? `${new URL(form.action).pathname.replace(/\/submit$/, '')}/abort`), next.url).href, method: 'GET' };
      } else {
        next = { url: form.action, method: 'POST', body: new URLSearchParams(form.fields).toString() };
      }
    } else {
      throw new Error(`unknown form on ${next.url}`);
    }
  }
  if (!callbackUrl) throw new Error('never reached the redirect_uri');
  if (!deliver) return { callbackUrl };

  if (action === 'wrong-state' || action === 'wrong-state-only') {
    const bad = new URL(callbackUrl);
    bad.searchParams.set('state', 'tampered-state');
    try {
      const r = await getWithRetry(bad.href, { timeoutMs: callbackTimeoutMs });
      logEvent(log, { event: 'callback', status: r.status, body: r.body.slice(0, 200), url: bad.href, tampered: true });
    } catch (err) {
      logEvent(log, { event: 'error', message: `tampered callback: ${err.message}` });
    }
    if (action === 'wrong-state-only') return { callbackUrl: bad.href };
    await sleep(500);
  }
  const r = await getWithRetry(callbackUrl, { timeoutMs: callbackTimeoutMs });
  logEvent(log, { event: 'callback', status: r.status, body: r.body.slice(0, 200), url: callbackUrl });
  return { callbackUrl, status: r.status, body: r.body };
}

const thisFile = fileURLToPath(import.meta.url);
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await browserMain(thisFile, process.argv.slice(2), (url) => completeLogin(url, {
    action: process.env.BROWSER_ACTION || 'login',
    user: process.env.BROWSER_USER || 'alice',
    log: process.env.BROWSER_LOG,
  }));
}
