#!/usr/bin/env node
// `npm run bench`: what the proxy costs, measured with the official MCP SDK client against
// what the same client gets without it. One command: starts the example identity provider
// and two backends on loopback (bench/servers.mjs, own process), logs in once (headless
// browser), then, in the same run and interleaved, measures these columns:
//
//   direct      the SDK client's Streamable HTTP transport straight to the backend (bearer
//               token in requestInit headers)
//   floor       an instant stdio MCP server in Node (bench/floor-server.cjs): the least any
//               stdio proxy can cost. Backend-independent: measured once per repetition and
//               shown in both tables
//   proxy       `node cli.js <backend>` under StdioClientTransport, warm token cache
//   mcp-remote  when node_modules/mcp-remote (or BENCH_MCP_REMOTE=<package dir>) exists,
//               with the bearer token as a static --header
//
// over two backends: "instant" (bench/instant-backend.mjs: node:http, fixed answers) and
// "sdk" (examples/backend.mjs, validates each JWT; SSE responses by default).
//
// Figures (median over BENCH_RUNS repetitions, each a fresh process/connection):
//   spawn → initialize result; sequential tool calls p50/p95/p99; throughput with 16 calls in
//   flight; a 1 MiB tool result (median of BENCH_BIG calls); peak resident memory of the
//   spawned process tree (VmRSS of the child and its descendants, sampled every 20 ms, and at
//   least the child's VmHWM); stdin EOF → process exit (the proxy DELETEs its session first).
//
// Knobs (env): BENCH_RUNS=5 BENCH_SEQ=300 BENCH_TPUT=2000 BENCH_INFLIGHT=16 BENCH_BIG=20
//   BENCH_WARMUP=30 (calls before measuring, per session) BENCH_WARMUP_PASS=1 (one unrecorded
//   round first) BENCH_SDK_MODE=sse|json BENCH_ADDON=<.node/.so to run instead of the one
//   next to cli.js> BENCH_MCP_REMOTE=<dir> BENCH_TIMEOUT_S=900 BENCH_COLUMNS=direct,floor,proxy,mcp-remote
//   BENCH_BACKENDS=instant,sdk
// Results: printed, and written to bench/results/<timestamp>.json and (complete runs only)
// bench/results/latest.json, which the next run compares the proxy column with.

import { fork, execFile, execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setMaxListeners } from 'node:events';
import {
  mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, existsSync, statSync, copyFileSync,
  readdirSync, openSync, readSync, closeSync,
} from 'node:fs';
import { tmpdir, cpus, loadavg, totalmem } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { freePort, killStrayBrowsers } from '../__test__/helpers/rig.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const CLI = join(root, 'cli.js');
const FLOOR = join(here, 'floor-server.cjs');
const BROWSER = join(root, '__test__', 'helpers', 'browser.mjs');
const RESULTS = join(here, 'results');

const int = (name, def) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v >= 0 && process.env[name] !== '' && process.env[name] !== undefined ? Math.floor(v) : def;
};
const CFG = {
  runs: Math.max(1, int('BENCH_RUNS', 5)),
  seq: Math.max(10, int('BENCH_SEQ', 300)),
  tput: Math.max(16, int('BENCH_TPUT', 2000)),
  inflight: Math.max(1, int('BENCH_INFLIGHT', 16)),
  big: Math.max(1, int('BENCH_BIG', 20)),
  bigBytes: 1 << 20,
  warmup: int('BENCH_WARMUP', 30),
  warmupPass: int('BENCH_WARMUP_PASS', 1) > 0,
  sdkMode: process.env.BENCH_SDK_MODE || 'sse',
  timeoutS: Math.max(30, int('BENCH_TIMEOUT_S', 900)),
  columns: (process.env.BENCH_COLUMNS || 'direct,floor,proxy,mcp-remote').split(',').map((s) => s.trim()).filter(Boolean),
  backends: (process.env.BENCH_BACKENDS || 'instant,sdk').split(',').map((s) => s.trim()).filter(Boolean),
};

const say = (m = '') => process.stdout.write(`${m}\n`);
const note = (m) => process.stderr.write(`bench: ${m}\n`);
const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function within(ms, p, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// ---- statistics ------------------------------------------------------------------------

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx];
}
function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---- process-tree memory ----------------------------------------------------------------

function treePids(rootPid) {
  const out = [rootPid];
  for (let i = 0; i < out.length; i += 1) {
    let tasks = [];
    try { tasks = readdirSync(`/proc/${out[i]}/task`); } catch { continue; }
    for (const t of tasks) {
      try {
        const c = readFileSync(`/proc/${out[i]}/task/${t}/children`, 'utf8').trim();
        if (c) for (const p of c.split(/\s+/)) if (!out.includes(Number(p))) out.push(Number(p));
      } catch { /* gone, or no CONFIG_PROC_CHILDREN */ }
    }
  }
  return out;
}
function statusKiB(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s*kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}
class TreeSampler {
  constructor(pid) {
    this.pid = pid;
    this.peakKiB = 0;
    this.maxProcs = 0;
    this.sample();
    this.timer = setInterval(() => this.sample(), 20);
  }
  sample() {
    const pids = treePids(this.pid);
    let sum = 0;
    for (const p of pids) sum += statusKiB(p, 'VmRSS');
    this.peakKiB = Math.max(this.peakKiB, sum);
    this.maxProcs = Math.max(this.maxProcs, pids.length);
  }
  /** Last sample plus the root's own high-water mark (catches peaks between samples). */
  stop() {
    this.sample();
    clearInterval(this.timer);
    return Math.max(this.peakKiB, statusKiB(this.pid, 'VmHWM')) / 1024;
  }
}

// ---- the addon being measured -------------------------------------------------------------

function elfHasDebugInfo(file) {
  let fd;
  try {
    fd = openSync(file, 'r');
    const h = Buffer.alloc(64);
    readSync(fd, h, 0, 64, 0);
    if (h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2) return undefined;
    const shoff = Number(h.readBigUInt64LE(0x28));
    const shentsize = h.readUInt16LE(0x3a);
    const shnum = h.readUInt16LE(0x3c);
    const shstrndx = h.readUInt16LE(0x3e);
    const sh = Buffer.alloc(shentsize * shnum);
    readSync(fd, sh, 0, sh.length, shoff);
    const strOff = Number(sh.readBigUInt64LE(shstrndx * shentsize + 0x18));
    const strSize = Number(sh.readBigUInt64LE(shstrndx * shentsize + 0x20));
    const strs = Buffer.alloc(strSize);
    readSync(fd, strs, 0, strSize, strOff);
    for (let i = 0; i < shnum; i += 1) {
      const off = sh.readUInt32LE(i * shentsize);
      if (strs.toString('latin1', off, strs.indexOf(0, off)) === '.debug_info') return true;
    }
    return false;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
function newestMtime(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}
function addonInfo(overridePath) {
  const path = overridePath ?? join(root, readdirSync(root).find((f) => /^authful-mcp-proxy\..*\.node$/.test(f)) ?? 'authful-mcp-proxy.node');
  if (!existsSync(path)) return { path, missing: true };
  const st = statSync(path);
  let profile;
  if (overridePath) profile = /[/\\]debug[/\\]/.test(path) ? 'debug' : /[/\\]release[/\\]/.test(path) ? 'release' : 'unknown';
  else {
    try { profile = readFileSync(join(root, 'target', '.authful-build-profile'), 'utf8').trim() || 'unknown'; } catch { profile = 'unknown'; }
  }
  let srcNewer = false;
  try { srcNewer = newestMtime(join(root, 'src')) > st.mtimeMs; } catch { /* no sources */ }
  return { path, bytes: st.size, mtime: new Date(st.mtimeMs).toISOString(), profile, debugInfo: elfHasDebugInfo(path), olderThanSources: srcNewer };
}

// ---- environment ---------------------------------------------------------------------------

/** A clean child environment: nothing from our own that configures the proxy. */
function childEnv(extra = {}) {
  const env = { ...getDefaultEnvironment(), ...extra };
  for (const k of Object.keys(env)) if (/^(MCP_|OIDC_|NAPI_RS_)/.test(k) && !(k in extra)) delete env[k];
  // Internal switches of the proxy (AUTHFUL_STDIO_THREADS=1, say) reach it for A/B runs.
  for (const [k, v] of Object.entries(process.env)) if (k.startsWith('AUTHFUL_') && !(k in env)) env[k] = v;
  return env;
}

function execNode(args, env, timeoutMs) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { env, timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

function gitInfo() {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'Cargo.toml', 'Cargo.lock', 'cli.js', 'index.js'], { cwd: root, encoding: 'utf8' }).trim() !== '';
    return { commit, dirty };
  } catch {
    return { commit: undefined, dirty: undefined };
  }
}

// ---- one measured session ----------------------------------------------------------------

const live = new Set(); // child processes we spawned and have not seen exit

/** Wrap transport.start so the initialize result is timestamped and memory is sampled. */
function instrument(transport, sampleMemory) {
  const t = { init: 0, sampler: undefined };
  const start = transport.start.bind(transport);
  transport.start = async () => {
    const inner = transport.onmessage; // set by Protocol.connect before start()
    transport.onmessage = (msg, extra) => {
      if (!t.init && msg && msg.result && typeof msg.result.protocolVersion === 'string') t.init = now();
      inner?.(msg, extra);
    };
    await start();
    const proc = transport._process;
    if (proc) {
      live.add(proc);
      proc.once('exit', () => live.delete(proc));
    }
    if (sampleMemory && transport.pid) t.sampler = new TreeSampler(transport.pid);
  };
  return t;
}

function makeTransport(column, backend, ctx) {
  const url = backend === 'sdk' ? ctx.sdkUrl : ctx.instantUrl;
  if (column === 'direct') {
    return new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${ctx.token}` } } });
  }
  let args;
  let env;
  if (column === 'floor') {
    args = [FLOOR];
    env = childEnv();
  } else if (column === 'proxy') {
    args = [CLI, '--no-banner', url];
    env = childEnv({ ...ctx.proxyEnv, BROWSER: 'false', MCP_PROXY_AUTH_TIMEOUT: '15' });
  } else if (column === 'mcp-remote') {
    args = [ctx.mcpRemote.entry, url, '--allow-http', '--transport', 'http-only', '--header', `Authorization:Bearer ${ctx.token}`];
    env = childEnv({ MCP_REMOTE_CONFIG_DIR: join(ctx.tmp, 'mcp-remote') });
  } else {
    throw new Error(`unknown column ${column}`);
  }
  return new StdioClientTransport({ command: process.execPath, args, env, stderr: 'pipe' });
}

async function session(column, backend, ctx, counts) {
  const transport = makeTransport(column, backend, ctx);
  const stdio = column !== 'direct';
  let stderr = '';
  if (stdio) transport.stderr?.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  const t = instrument(transport, stdio);
  const client = new Client({ name: 'authful-bench', version: '1.0.0' });
  const r = { column, backend };
  const fail = (err) => new Error(`${column}@${backend}: ${err.message}${stderr ? `\n--- child stderr ---\n${stderr}` : ''}`);
  try {
    const t0 = now();
    await within(30_000, client.connect(transport), 'connect');
    r.initMs = t.init - t0;
    // The SDK's HTTP transport hangs an abort listener per request on one long-lived signal
    // (released only when the session ends); keep Node from warning about it.
    if (transport._abortController?.signal) setMaxListeners(0, transport._abortController.signal);

    const small = { name: 'echo', arguments: { text: 'hi' } };
    const big = { name: 'big', arguments: { bytes: counts.bigBytes } };
    const call = () => client.callTool(small);

    // Warm-up (connection pools, JIT) and a correctness check of both tools.
    const first = await within(10_000, call(), 'first tool call');
    if (!first?.content?.[0]?.text) throw new Error(`unexpected tool result ${JSON.stringify(first).slice(0, 200)}`);
    for (let i = 0; i < counts.warmup; i += 1) await call();
    const b = await within(20_000, client.callTool(big), '1 MiB call');
    if (b?.content?.[0]?.text?.length !== counts.bigBytes) throw new Error('the 1 MiB result came back with a different size');

    // Sequential calls.
    const lat = new Array(counts.seq);
    const seqStart = now();
    for (let i = 0; i < counts.seq; i += 1) {
      const s = now();
      await call();
      lat[i] = now() - s;
    }
    r.seqWallMs = now() - seqStart;
    lat.sort((x, y) => x - y);
    r.p50 = quantile(lat, 0.5);
    r.p95 = quantile(lat, 0.95);
    r.p99 = quantile(lat, 0.99);
    r.mean = lat.reduce((a, x) => a + x, 0) / lat.length;

    // Throughput: `inflight` workers, `tput` calls in all.
    let issued = 0;
    const worker = async () => {
      while (issued < counts.tput) {
        issued += 1;
        await call();
      }
    };
    const tp0 = now();
    await within(120_000, Promise.all(Array.from({ length: counts.inflight }, worker)), 'throughput run');
    r.tput = counts.tput / ((now() - tp0) / 1000);

    // 1 MiB results.
    const bigs = [];
    for (let i = 0; i < counts.big; i += 1) {
      const s = now();
      await client.callTool(big);
      bigs.push(now() - s);
    }
    r.bigMs = median(bigs);

    // Memory, then stdin EOF → exit (or, direct: DELETE + close).
    if (t.sampler) {
      r.rssMiB = t.sampler.stop();
      r.procs = t.sampler.maxProcs;
    }
    const before = backend === 'instant' ? await ctx.stats() : undefined;
    if (stdio) {
      const proc = transport._process;
      const exited = new Promise((res) => {
        if (proc.exitCode !== null || proc.signalCode !== null) res({ at: now(), code: proc.exitCode, signal: proc.signalCode });
        else proc.once('exit', (code, signal) => res({ at: now(), code, signal }));
      });
      const c0 = now();
      const closing = client.close();
      const ex = await within(10_000, exited, 'exit after stdin EOF');
      r.exitMs = ex.at - c0;
      r.exitCode = ex.code;
      r.exitSignal = ex.signal;
      await closing;
    } else {
      const c0 = now();
      await transport.terminateSession();
      await client.close();
      r.exitMs = now() - c0;
    }
    if (before) r.sessionDeleted = (await ctx.stats()).instant.deletes > before.instant.deletes;
    return r;
  } catch (err) {
    t.sampler?.stop();
    await client.close().catch(() => {});
    throw fail(err);
  }
}

// ---- output ------------------------------------------------------------------------------------

const METRICS = [
  { key: 'initMs', label: 'spawn → initialize result (ms)', digits: 1, better: 'lower' },
  { key: 'p50', label: 'tool call p50 (ms)', digits: 3, better: 'lower' },
  { key: 'p95', label: 'tool call p95 (ms)', digits: 3, better: 'lower' },
  { key: 'p99', label: 'tool call p99 (ms)', digits: 3, better: 'lower' },
  { key: 'tput', label: 'throughput, 16 in flight (calls/s)', digits: 0, better: 'higher' },
  { key: 'bigMs', label: '1 MiB tool result (ms)', digits: 2, better: 'lower' },
  { key: 'rssMiB', label: 'peak RSS of the process tree (MiB)', digits: 1, better: 'lower' },
  { key: 'exitMs', label: 'stdin EOF → exit (ms)', digits: 1, better: 'lower' },
];

const fmt = (v, digits) => (Number.isFinite(v) ? v.toFixed(digits) : '—');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
const fmtRatio = (x) => (Number.isFinite(x) ? `${x < 10 ? x.toFixed(2) : x.toFixed(1)}×` : '—');
const pad = (s, n) => String(s).padStart(n);
const padEnd = (s, n) => String(s).padEnd(n);

/**
 * The bare loopback HTTP round trip to the instant backend: one kept-alive socket, a fixed
 * request written whole, the answer read by its Content-Length, no HTTP library. Floor plus
 * this is the least any stdio proxy in front of this backend can cost per call.
 */
async function rawRoundTrip(url, token, n) {
  const u = new URL(url);
  const sock = connect({ host: u.hostname, port: Number(u.port) });
  await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
  sock.setNoDelay(true);
  let buf = Buffer.alloc(0);
  let want = null;
  let waiter = null;
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0 || !waiter) return;
    const head = buf.subarray(0, end).toString('latin1');
    const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
    if (!Number.isFinite(len)) { waiter.rej(new Error('no Content-Length from the instant backend')); return; }
    if (buf.length < end + 4 + len) return;
    const body = buf.subarray(end + 4, end + 4 + len).toString();
    buf = buf.subarray(end + 4 + len);
    const w = waiter;
    waiter = null;
    w.res({ head, body });
  });
  const post = (body, sid) => new Promise((res, rej) => {
    waiter = { res, rej };
    const b = Buffer.from(body);
    sock.write(`POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${token}\r\n`
      + 'Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n'
      + `${sid ? `Mcp-Session-Id: ${sid}\r\n` : ''}Content-Length: ${b.length}\r\n\r\n${body}`);
  });
  try {
    const init = await post(JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench-raw', version: '1' } } }));
    const sid = /\r\nmcp-session-id: *([^\r]+)/i.exec(init.head)?.[1];
    const call = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: {} } });
    const times = [];
    for (let i = 0; i < n + 30; i++) {
      const t = now();
      const r = await post(call, sid);
      if (!r.body.includes('"result"')) throw new Error(`raw round trip: unexpected answer ${r.body.slice(0, 200)}`);
      if (i >= 30) times.push(now() - t);
    }
    return median(times);
  } finally {
    sock.destroy();
  }
}

function printTable(title, cols, med) {
  // med[column][metric] = median value
  say(title);
  const w0 = 36;
  const wv = 12;
  const wr = 8;
  let head = padEnd('', w0);
  for (const c of cols) {
    head += pad(c, wv);
    if (c !== 'direct') head += pad('/direct', wr);
    if (c !== 'direct' && c !== 'floor') head += pad('/floor', wr);
  }
  say(head);
  say('-'.repeat(head.length));
  for (const m of METRICS) {
    let line = padEnd(m.label, w0);
    for (const c of cols) {
      const v = med[c]?.[m.key];
      line += pad(fmt(v, m.digits), wv);
      if (c !== 'direct') line += pad(fmtRatio(ratio(v, med.direct?.[m.key])), wr);
      if (c !== 'direct' && c !== 'floor') line += pad(fmtRatio(ratio(v, med.floor?.[m.key])), wr);
    }
    say(line);
  }
}

function targets(med) {
  const out = [];
  const add = (backend, what, value, ok, detail) => out.push({ backend, target: what, value, pass: ok, detail });
  const I = med.instant;
  const S = med.sdk;
  if (I?.proxy) {
    const p = I.proxy;
    add('instant', 'call p50 ≤ 1.0 ms', p.p50, p.p50 <= 1.0, `${fmt(p.p50, 3)} ms`);
    if (I.direct) {
      const bound = Number.isFinite(I.rtt) && I.floor ? ` (floor + bare HTTP round trip: ${fmtRatio(ratio(I.floor.p50 + I.rtt, I.direct.p50))})` : '';
      add('instant', 'call p50 ≤ 0.5× direct', ratio(p.p50, I.direct.p50), ratio(p.p50, I.direct.p50) <= 0.5, `${fmtRatio(ratio(p.p50, I.direct.p50))}${bound}`);
    }
    if (I.floor) add('instant', 'call p50 within 0.7 ms of the floor', p.p50 - I.floor.p50, p.p50 - I.floor.p50 <= 0.7, `+${fmt(p.p50 - I.floor.p50, 3)} ms`);
    if (I.direct) add('instant', 'throughput ≥ 2× direct', ratio(p.tput, I.direct.tput), ratio(p.tput, I.direct.tput) >= 2, fmtRatio(ratio(p.tput, I.direct.tput)));
  }
  if (S?.proxy && S.direct) {
    const p = S.proxy;
    add('sdk', 'call p50 ≤ 1.0× direct', ratio(p.p50, S.direct.p50), ratio(p.p50, S.direct.p50) <= 1.0, fmtRatio(ratio(p.p50, S.direct.p50)));
    add('sdk', 'throughput ≥ 1.0× direct', ratio(p.tput, S.direct.tput), ratio(p.tput, S.direct.tput) >= 1.0, fmtRatio(ratio(p.tput, S.direct.tput)));
  }
  for (const [name, B] of Object.entries(med)) {
    const p = B?.proxy;
    if (!p) continue;
    if (B.direct) add(name, '1 MiB result ≤ 1.2× direct', ratio(p.bigMs, B.direct.bigMs), ratio(p.bigMs, B.direct.bigMs) <= 1.2, fmtRatio(ratio(p.bigMs, B.direct.bigMs)));
    if (B.floor) add(name, 'spawn → initialize ≤ 1.3× floor', ratio(p.initMs, B.floor.initMs), ratio(p.initMs, B.floor.initMs) <= 1.3, fmtRatio(ratio(p.initMs, B.floor.initMs)));
    add(name, 'peak memory ≤ 60 MiB', p.rssMiB, p.rssMiB <= 60, `${fmt(p.rssMiB, 1)} MiB`);
    add(name, 'exit after EOF < 100 ms', p.exitMs, p.exitMs < 100, `${fmt(p.exitMs, 1)} ms`);
  }
  const rank = { instant: 0, sdk: 1 };
  return out.sort((a, b) => (rank[a.backend] ?? 9) - (rank[b.backend] ?? 9));
}

// ---- main ------------------------------------------------------------------------------------

const tmp = mkdtempSync(join(tmpdir(), 'authful-bench-'));
const pidsFile = join(tmp, 'browser.pids');
let servers;
let finished = false;

async function cleanup() {
  for (const proc of live) {
    try { proc.kill('SIGKILL'); } catch { /* gone */ }
  }
  live.clear();
  if (servers && servers.exitCode === null && servers.signalCode === null) {
    const gone = new Promise((r) => servers.once('exit', r));
    try { servers.send({ type: 'stop' }); } catch { /* ipc closed */ }
    await Promise.race([gone, sleep(3000)]);
    if (servers.exitCode === null && servers.signalCode === null) {
      try { servers.kill('SIGKILL'); } catch { /* gone */ }
    }
  }
  await killStrayBrowsers(pidsFile).catch(() => 0);
  rmSync(tmp, { recursive: true, force: true });
}

const watchdog = setTimeout(async () => {
  note(`gave up after ${CFG.timeoutS} s (BENCH_TIMEOUT_S)`);
  await cleanup();
  process.exit(1);
}, CFG.timeoutS * 1000);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    note(`${sig}: stopping`);
    await cleanup();
    process.exit(130);
  });
}

async function main() {
  const started = Date.now();
  const override = process.env.BENCH_ADDON ? resolve(process.env.BENCH_ADDON) : undefined;
  const addon = addonInfo(override);
  if (addon.missing) throw new Error(`no native addon at ${addon.path}: run \`npm run bench\` (its prebench step builds it)`);
  const addonEnv = {};
  if (override) {
    // binding.js honours NAPI_RS_NATIVE_LIBRARY_PATH; require() needs the .node extension.
    const copy = join(tmp, 'authful-mcp-proxy.node');
    copyFileSync(override, copy);
    addonEnv.NAPI_RS_NATIVE_LIBRARY_PATH = copy;
  }

  const mcpRemoteDir = process.env.BENCH_MCP_REMOTE ? resolve(process.env.BENCH_MCP_REMOTE) : join(root, 'node_modules', 'mcp-remote');
  let mcpRemote;
  if (CFG.columns.includes('mcp-remote') && existsSync(join(mcpRemoteDir, 'package.json'))) {
    const pkg = JSON.parse(readFileSync(join(mcpRemoteDir, 'package.json'), 'utf8'));
    const bin = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin?.['mcp-remote'];
    if (bin && existsSync(join(mcpRemoteDir, bin))) mcpRemote = { entry: join(mcpRemoteDir, bin), version: pkg.version };
  }
  const columns = ['direct', 'floor', 'proxy', 'mcp-remote'].filter((c) => CFG.columns.includes(c) && (c !== 'mcp-remote' || mcpRemote));

  // Servers, in their own process.
  servers = fork(join(here, 'servers.mjs'), [], {
    env: { ...process.env, BENCH_SDK_MODE: CFG.sdkMode },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await within(30_000, new Promise((res, rej) => {
    servers.once('message', res);
    servers.once('exit', (code) => rej(new Error(`bench/servers.mjs exited (${code})`)));
  }), 'starting the servers');
  let statsWaiter;
  servers.on('message', (m) => { if (m?.type === 'stats' && statsWaiter) { statsWaiter(m); statsWaiter = undefined; } });
  const stats = () => within(5000, new Promise((res) => { statsWaiter = res; servers.send({ type: 'stats' }); }), 'server stats');

  // Log in once (headless browser), then read the access token for the direct/mcp-remote columns.
  const callbackPort = await freePort();
  const proxyEnv = {
    OIDC_ISSUER_URL: ready.issuer,
    OIDC_CLIENT_ID: 'demo-client',
    OIDC_REDIRECT_URL: `http://127.0.0.1:${callbackPort}/auth/callback`,
    MCP_PROXY_CACHE_DIR: join(tmp, 'cache'),
    ...addonEnv,
  };
  const l0 = now();
  await execNode([CLI, 'login'], childEnv({ ...proxyEnv, BROWSER: `${process.execPath} ${BROWSER}`, BROWSER_PIDS: pidsFile, MCP_PROXY_AUTH_TIMEOUT: '60' }), 90_000);
  const loginMs = now() - l0;
  const token = (await execNode([CLI, 'token'], childEnv({ ...proxyEnv, BROWSER: 'false' }), 30_000)).stdout.trim();
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) throw new Error('`cli.js token` did not print a JWT');
  const ctx = { token, proxyEnv, sdkUrl: ready.sdkUrl, instantUrl: ready.instantUrl, stats, tmp, mcpRemote };

  const git = gitInfo();
  say(`authful-mcp-proxy bench — ${new Date().toISOString()}`);
  say(`commit ${git.commit?.slice(0, 12) ?? '?'}${git.dirty ? ' (+ uncommitted changes in src/)' : ''}; node ${process.version}; ${cpus().length} × ${cpus()[0]?.model ?? '?'}; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  say(`addon ${addon.path} (${(addon.bytes / 1048576).toFixed(1)} MiB, profile ${addon.profile}${addon.debugInfo ? ', with debug info' : ''}${addon.olderThanSources ? ', OLDER THAN src/' : ''})`);
  if (addon.profile === 'debug') say('WARNING: a debug build of the addon is measured; `npm run bench` builds and measures the release build.');
  if (addon.olderThanSources) say('WARNING: the addon is older than src/: the figures are for an earlier state of the code.');
  say(`servers: idp ${ready.issuer}; instant backend ${ready.instantUrl}; sdk backend ${ready.sdkUrl} (${ready.sdkMode} responses)`);
  say(`columns: ${columns.join(', ')}${CFG.columns.includes('mcp-remote') && !mcpRemote ? ' (mcp-remote not installed: skipped)' : ''}`);
  say(`runs ${CFG.runs}; per run: ${CFG.warmup} warm-up calls, ${CFG.seq} sequential calls, ${CFG.tput} calls with ${CFG.inflight} in flight, ${CFG.big} × 1 MiB results; login took ${loginMs.toFixed(0)} ms`);
  say('');

  // Every (column, backend) session of one repetition; the floor once (it has no backend).
  const plan = [];
  for (const c of columns) {
    if (c === 'floor') plan.push([c, 'none']);
    else for (const b of CFG.backends) plan.push([c, b]);
  }
  const counts = { seq: CFG.seq, tput: CFG.tput, inflight: CFG.inflight, big: CFG.big, bigBytes: CFG.bigBytes, warmup: CFG.warmup };
  if (CFG.warmupPass) {
    note('warm-up round (not recorded)');
    for (const [c, b] of plan) await session(c, b, ctx, { ...counts, seq: 50, tput: 200, big: 2 });
  }
  const raw = {}; // raw[backend][column] = [session results]
  for (let rep = 0; rep < CFG.runs; rep += 1) {
    // Rotate the order each repetition, so no column always runs first or right after another.
    const order = plan.map((_, i) => plan[(i + rep) % plan.length]);
    for (const [c, b] of order) {
      const r = await session(c, b, ctx, counts);
      (raw[b] ??= {})[c] ??= [];
      raw[b][c].push(r);
      note(`run ${rep + 1}/${CFG.runs} ${padEnd(`${c}@${b}`, 20)} init ${fmt(r.initMs, 1)} ms  p50 ${fmt(r.p50, 3)} ms  p99 ${fmt(r.p99, 2)} ms  ${fmt(r.tput, 0)}/s  1MiB ${fmt(r.bigMs, 2)} ms  rss ${fmt(r.rssMiB, 1)} MiB  exit ${fmt(r.exitMs, 1)} ms`);
    }
    if (CFG.backends.includes('instant')) {
      const rtt = await rawRoundTrip(ctx.instantUrl, token, CFG.seq);
      (raw.rtt ??= []).push(rtt);
      note(`run ${rep + 1}/${CFG.runs} ${padEnd('raw HTTP@instant', 20)} p50 ${fmt(rtt, 3)} ms`);
    }
  }

  // Medians; the floor joins both backends' tables.
  const med = {};
  for (const b of CFG.backends) {
    med[b] = {};
    for (const c of columns) {
      const rs = c === 'floor' ? raw.none?.floor : raw[b]?.[c];
      if (!rs) continue;
      med[b][c] = Object.fromEntries(METRICS.map((m) => [m.key, median(rs.map((r) => r[m.key]))]));
    }
  }
  const titles = {
    instant: 'instant backend (node:http, fixed answers, bearer presence only)',
    sdk: `SDK backend (examples/backend.mjs, JWT validated per request, ${ready.sdkMode === 'sse' ? 'SSE' : 'JSON'} responses)`,
  };
  const rtt = median(raw.rtt ?? []);
  if (med.instant) med.instant.rtt = rtt;
  for (const b of CFG.backends) {
    printTable(`${titles[b] ?? b} — medians of ${CFG.runs} runs`, columns, med[b]);
    const I = med[b];
    if (b === 'instant' && Number.isFinite(rtt) && I.floor) {
      const bound = I.floor.p50 + rtt;
      say(`bare loopback HTTP round trip to this backend (kept-alive socket, no HTTP library): ${fmt(rtt, 3)} ms p50;`);
      say(`floor + that = ${fmt(bound, 3)} ms${I.direct ? ` = ${fmtRatio(ratio(bound, I.direct.p50))} direct` : ''}: the least a stdio proxy can cost per call here.`);
      if (I.proxy) say(`The proxy's own share of a call: ${fmt(I.proxy.p50 - bound, 3)} ms.`);
    }
    say('');
  }
  say('floor: the same instant stdio server in both tables. direct: no process, so its "spawn → initialize" is the');
  say('initialize round trip alone, there is no RSS, and its "exit" is DELETE + close.');
  const checks = targets(med);
  say('');
  say('targets (proxy)');
  for (const t of checks) say(`  ${t.pass ? 'PASS' : 'MISS'}  ${padEnd(t.backend, 8)} ${padEnd(t.target, 38)} ${t.detail}`);

  // Sanity: one login, no refresh, sessions deleted.
  const final = await stats();
  const proxyRuns = Object.values(raw).flatMap((byCol) => byCol.proxy ?? []);
  const badExit = proxyRuns.filter((r) => r.exitCode !== 0);
  const notDeleted = proxyRuns.filter((r) => r.backend === 'instant' && r.sessionDeleted === false);
  say('');
  say(`checks: ${final.idp.codeExchanges} code exchange(s), ${final.idp.refreshes} refresh(es); proxy exits with code ≠ 0: ${badExit.length}; instant sessions not DELETEd by the proxy: ${notDeleted.length}; 401s at the instant backend: ${final.instant.unauthorized}`);

  // Compare with the previous run, then write the results.
  let previous;
  try { previous = JSON.parse(readFileSync(join(RESULTS, 'latest.json'), 'utf8')); } catch { /* first run */ }
  if (previous?.medians) {
    say('');
    say(`proxy vs the previous run (${previous.date}, ${previous.git?.commit?.slice(0, 12) ?? '?'}${previous.git?.dirty ? '+' : ''}, addon ${previous.addon?.profile ?? '?'})`);
    for (const b of CFG.backends) {
      const p = med[b]?.proxy;
      const q = previous.medians[b]?.proxy;
      if (!p || !q) continue;
      const parts = METRICS.map((m) => {
        const d = ratio(p[m.key], q[m.key]);
        return `${m.key} ${fmt(q[m.key], m.digits)}→${fmt(p[m.key], m.digits)}${Number.isFinite(d) ? ` (${d >= 1 ? '+' : ''}${((d - 1) * 100).toFixed(0)}%)` : ''}`;
      });
      say(`  ${padEnd(b, 8)} ${parts.join('  ')}`);
    }
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const doc = {
    date: new Date().toISOString(),
    git,
    node: process.version,
    machine: { cpus: cpus().length, model: cpus()[0]?.model, memMiB: Math.round(totalmem() / 1048576), loadavgAtEnd: loadavg() },
    addon,
    config: { ...CFG, sdkMode: ready.sdkMode, columns, mcpRemote: mcpRemote?.version ?? null },
    durationS: (Date.now() - started) / 1000,
    units: { initMs: 'ms', p50: 'ms', p95: 'ms', p99: 'ms', tput: 'calls/s', bigMs: 'ms', rssMiB: 'MiB', exitMs: 'ms' },
    medians: med,
    targets: checks,
    checks: { idp: final.idp, instant: final.instant, proxyBadExits: badExit.length, proxyUndeletedSessions: notDeleted.length },
    runs: raw,
  };
  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  // latest.json is the baseline the next run compares with: only complete runs replace it.
  const complete = ['direct', 'floor', 'proxy'].every((c) => columns.includes(c)) && ['instant', 'sdk'].every((b) => CFG.backends.includes(b));
  if (complete) writeFileSync(join(RESULTS, 'latest.json'), `${JSON.stringify(doc, null, 2)}\n`);
  say('');
  say(`results: ${file}${complete ? ' (and bench/results/latest.json)' : ' (partial run: bench/results/latest.json left alone)'}; ${doc.durationS.toFixed(0)} s`);
  finished = true;
}

try {
  await main();
} catch (err) {
  process.stderr.write(`bench failed: ${err && err.stack ? err.stack : err}\n`);
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await cleanup();
  if (!finished) process.exitCode = 1;
}
