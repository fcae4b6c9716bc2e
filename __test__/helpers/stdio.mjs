// Timing helpers and a raw stdio JSON-RPC driver for `node cli.js`, shared by the end-to-end
// suites (bridge.test.mjs, reliability.test.mjs; within/sleep also via helpers/proxy.mjs).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Reject after `ms` with a message naming `what`. */
export function within(promise, ms, what = 'operation') {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A raw driver: spawn `node <argv>`, write lines to its stdin, read its stdout lines. Every
 * line is JSON.parsed and checked to be a JSON-RPC 2.0 object; failures are kept in `bad`.
 * @param {string[]} argv   node's arguments (the script, cli.js, first)
 * @param {object} opts
 * @param {object} opts.env                 the child's whole environment
 * @param {number} [opts.uid]               run as this uid (with `gid`)
 * @param {number} [opts.gid]
 * @param {string} [opts.cwd]
 * @param {Set<number>} [opts.pids]         the child's pid is in here until it exits
 * @param {{name: string, version: string}} [opts.clientInfo]  sent by initialize()
 * @param {number} [opts.badLineChars=Infinity]  how much of a bad line `bad` keeps
 * @param {string[]} [opts.via]             run `via[0] ...via[1..] node <argv>` instead (a shell
 *                                          that puts the proxy into a pipeline, say)
 */
export function rawProxy(argv, {
  env, uid, gid, cwd, pids, clientInfo = { name: 'raw-driver', version: '1.0.0' }, badLineChars = Infinity, via,
} = {}) {
  const [cmd, ...args] = via ? [...via, process.execPath, ...argv] : [process.execPath, ...argv];
  const child = spawn(cmd, args, {
    stdio: ['pipe', 'pipe', 'pipe'], env, ...(uid !== undefined && { uid, gid }), cwd,
  });
  pids?.add(child.pid);
  const messages = [];
  const bad = [];
  const waiters = new Set();
  let stderr = '';
  let buf = '';
  let nextId = 1;
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        bad.push(line.slice(0, badLineChars));
        continue;
      }
      if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || msg.jsonrpc !== '2.0') {
        bad.push(line.slice(0, badLineChars));
        continue;
      }
      messages.push(msg);
      for (const w of waiters) if (w.pred(msg)) { waiters.delete(w); w.resolve(msg); }
    }
  });
  child.stdin.on('error', () => {}); // EPIPE after exit is not what the tests look at
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    pids?.delete(child.pid);
    resolve({ code, signal, at: Date.now() });
  }));

  const api = {
    child,
    pid: child.pid,
    messages,
    bad,
    exited,
    stderr: () => stderr,
    /** Write one line (objects are JSON-encoded). */
    send(m) { child.stdin.write(`${typeof m === 'string' ? m : JSON.stringify(m)}\n`); },
    /** The first message (already seen or future) matching `pred`. */
    next(pred, ms = 10_000, what = 'a message') {
      const seen = messages.find(pred);
      if (seen) return Promise.resolve(seen);
      let w;
      const p = new Promise((resolve) => { w = { pred, resolve }; waiters.add(w); });
      return within(p, ms, `waiting for ${what} (stderr: ${stderr.slice(-2000)})`).finally(() => waiters.delete(w));
    },
    /** Send a request with a fresh numeric id; resolves with its answer. */
    request(method, params, ms = 10_000) {
      const id = nextId++;
      api.send({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
      return api.next((m) => m.id === id && ('result' in m || 'error' in m), ms, `the answer to ${method} (id ${id})`);
    },
    call(name, args = {}, ms = 10_000) { return api.request('tools/call', { name, arguments: args }, ms); },
    /** initialize (must succeed) + notifications/initialized; resolves with the result. */
    async initialize({ protocolVersion = '2025-06-18', ms = 15_000 } = {}) {
      const r = await api.request('initialize', { protocolVersion, capabilities: {}, clientInfo }, ms);
      assert.ok(r.result, `initialize failed: ${JSON.stringify(r)}\nstderr:\n${stderr}`);
      api.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
      return r.result;
    },
    assertClean() { assert.deepEqual(bad, [], 'every stdout line is a JSON-RPC message'); },
    /** End stdin, wait for exit; SIGKILL if it hangs. */
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin.end();
      const done = await Promise.race([exited, sleep(4_000).then(() => null)]);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
  return api;
}
