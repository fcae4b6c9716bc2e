// Shared test utilities: a wired IdP + backend pair, temp homes, free ports, PKCE,
// and cleanup of leftover detached browser workers.

import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startIdp } from '../../examples/idp.mjs';
import { startBackend } from '../../examples/backend.mjs';
import { DEFAULT_PID_FILE } from './browser.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const BROWSER_SCRIPT = join(here, 'browser.mjs');
export const CHROMIUM_SCRIPT = join(here, 'chromium.mjs');

/**
 * Start an IdP and a backend that trust each other, on random ports.
 * The backend listens first (its URL is the token audience the IdP must know); it reads
 * the issuer lazily, so the IdP can start second.
 * @param {object} [opts]
 * @param {'sse'|'json'|'legacy'} [opts.mode='sse']
 * @param {number} [opts.accessTokenTtl=300]
 * @param {boolean} [opts.rotateRefreshToken=true]
 * @param {'jwt'|'none'|{staticToken:string}} [opts.auth='jwt']
 * @param {boolean} [opts.eventStore=false]
 * @param {object} [opts.idp]      extra startIdp options
 * @param {object} [opts.backend]  extra startBackend options
 */
export async function startRig(opts = {}) {
  const { mode = 'sse', accessTokenTtl = 300, rotateRefreshToken = true, auth = 'jwt', eventStore = false } = opts;
  let issuer;
  const backend = await startBackend({ mode, auth, eventStore, issuer: () => issuer, ...opts.backend });
  let idp;
  try {
    idp = await startIdp({ resource: backend.url, accessTokenTtl, rotateRefreshToken, ...opts.idp });
  } catch (err) {
    await backend.close();
    throw err;
  }
  issuer = idp.issuer;
  return {
    idp,
    backend,
    issuer: idp.issuer,
    backendUrl: backend.url,
    async close() {
      await Promise.allSettled([backend.close(), idp.close()]);
    },
  };
}

/** A temp dir to use as HOME / XDG cache+config. `env` is ready to merge into a child env. */
export async function tmpHome(prefix = 'authful-home-') {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return {
    dir,
    env: {
      HOME: dir,
      USERPROFILE: dir,
      XDG_CACHE_HOME: join(dir, '.cache'),
      XDG_CONFIG_HOME: join(dir, '.config'),
      XDG_DATA_HOME: join(dir, '.local', 'share'),
    },
    cleanup: () => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }),
  };
}

/** A port that was free a moment ago (on 127.0.0.1). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** PKCE verifier + S256 challenge. */
export function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/**
 * Env for a program that opens $BROWSER: our headless browser (or chromium), with its
 * action and a log file to assert on.
 */
export function browserEnv({ action = 'login', log, user, pidFile, chromium = false } = {}) {
  const env = {
    BROWSER: `${process.execPath} ${chromium ? CHROMIUM_SCRIPT : BROWSER_SCRIPT}`,
    BROWSER_ACTION: action,
  };
  if (log) env.BROWSER_LOG = log;
  if (user) env.BROWSER_USER = user;
  if (pidFile) env.BROWSER_PIDS = pidFile;
  return env;
}

/** Parse a BROWSER_LOG file (missing file => []). */
export async function readBrowserLog(file) {
  try {
    return (await readFile(file, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
  } catch (err) {
    if (err.code === 'ENOENT') return [];
    throw err;
  }
}

/** Poll `fn` until it returns a truthy value (or throw after timeoutMs). */
export async function waitFor(fn, { timeoutMs = 10_000, intervalMs = 50, what = 'condition' } = {}) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Kill detached browser workers started by browser.mjs / chromium.mjs (pids recorded in
 * `pidFile`). Each worker leads its own process group, so the group is signalled (this
 * also reaches a Chromium started by a worker). SIGTERM first, SIGKILL after 300 ms.
 * Only pids whose command line still names one of our scripts are touched.
 * @returns {Promise<number>} how many were signalled
 */
export async function killStrayBrowsers(pidFile = process.env.BROWSER_PIDS || DEFAULT_PID_FILE) {
  if (!existsSync(pidFile)) return 0;
  const pids = [...new Set(readFileSync(pidFile, 'utf8').split('\n').map(Number).filter((p) => p > 0))];
  writeFileSync(pidFile, '');
  const ours = pids.filter((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return cmd.includes('browser.mjs') || cmd.includes('chromium.mjs');
    } catch {
      return false; // gone already
    }
  });
  const signal = (pid, sig) => {
    try { process.kill(-pid, sig); } catch { try { process.kill(pid, sig); } catch { /* gone */ } }
  };
  for (const pid of ours) signal(pid, 'SIGTERM');
  if (ours.length) {
    await new Promise((r) => setTimeout(r, 300));
    for (const pid of ours) signal(pid, 'SIGKILL');
  }
  return ours.length;
}
