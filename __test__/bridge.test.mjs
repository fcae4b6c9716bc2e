// End-to-end tests of the bridge with real parts: the official SDK Client over
// StdioClientTransport spawning `node cli.js`, against the rig's SDK backend (static bearer
// token, no IdP). Low-level tests drive the proxy's stdin/stdout directly.
//   node --test --test-concurrency=1 __test__/bridge.test.mjs

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  CreateMessageRequestSchema, ElicitRequestSchema, LoggingMessageNotificationSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { startBackend } from '../examples/backend.mjs';
import { freePort, waitFor } from './helpers/rig.mjs';
import { within, rawProxy as rawDriver } from './helpers/stdio.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'cli.js');
const TOKEN = `tok-${randomBytes(12).toString('hex')}`;
const AUTH_HEADER = `Authorization: Bearer ${TOKEN}`;
const T = { timeout: 30_000 };

// ---- helpers -------------------------------------------------------------------------

/** A clean child environment: nothing from the parent that configures the proxy. */
function childEnv(extra = {}) {
  const env = { ...getDefaultEnvironment(), ...extra };
  for (const k of Object.keys(env)) {
    if (/^(MCP_|OIDC_)/.test(k) && !(k in extra)) delete env[k];
  }
  return env;
}

const proxyArgs = (url, extra = []) => [CLI, '--header', AUTH_HEADER, '--no-banner', ...extra, url];

/** The raw stdio driver (helpers/stdio.mjs) on `node <args>` with childEnv(env). */
const rawProxy = (args, { env = {} } = {}) => rawDriver(args, { env: childEnv(env) });

const httpLog = (backend) => backend.log.filter((e) => e.kind === 'http');
const initializes = (backend) => httpLog(backend).filter((e) => e.method === 'POST' && e.rpcMethods.includes('initialize'));

/**
 * Wait until the proxy's standalone GET stream for the newest session is open. The backend
 * keeps no event store, so anything it sends "unrelated" (in json mode: progress, sampling
 * and elicitation requests too) before that stream exists is lost. The proxy opens the
 * stream right after notifications/initialized, like the SDK's own HTTP client, so a call
 * made at once can race it.
 */
async function waitForGetStream(backend) {
  const sid = initializes(backend).at(-1)?.sessionId;
  assert.ok(sid, 'a session was initialized');
  await waitFor(() => httpLog(backend).some((e) => e.method === 'GET' && e.sessionId === sid && e.status === 200),
    { timeoutMs: 5_000, what: 'the proxy to open the GET stream' });
  return sid;
}

/**
 * An SDK Client talking to the proxy over stdio. Records transport errors (a stdout line
 * that is not JSON-RPC ends up there) and protocol errors separately.
 */
async function sdkSession(backendUrl, { args = [], env = {}, capabilities = {}, onClient } = {}) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: proxyArgs(backendUrl, args),
    env: childEnv(env),
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr.on('data', (d) => { stderr += d; });
  const transportErrors = [];
  transport.onerror = (err) => transportErrors.push(err);
  const client = new Client({ name: 'bridge-test', version: '1.0.0' }, { capabilities });
  const protocolErrors = [];
  client.onerror = (err) => protocolErrors.push(err);
  onClient?.(client);
  try {
    await within(client.connect(transport), 15_000, 'connect');
  } catch (err) {
    await client.close().catch(() => {});
    throw new Error(`${err.message}\nproxy stderr:\n${stderr}`);
  }
  // Every message the proxy wrote, in stdout order, as the transport parsed it (before the
  // SDK client's own dispatch, which handles notifications a microtask after responses).
  const received = [];
  const dispatch = transport.onmessage;
  transport.onmessage = (message, extra) => {
    received.push(message);
    dispatch?.(message, extra);
  };
  return {
    client,
    transport,
    received,
    /** The progress values written before the response whose text is `resultText`. */
    progressBefore(resultText) {
      const end = received.findIndex((m) => m.result?.content?.[0]?.text === resultText);
      assert.ok(end >= 0, `no response "${resultText}" on stdout`);
      return received.slice(0, end).filter((m) => m.method === 'notifications/progress').map((m) => m.params.progress);
    },
    transportErrors,
    protocolErrors,
    stderr: () => stderr,
    /** No stdout line failed to parse (transport errors) during the session. */
    assertClean() {
      assert.deepEqual(transportErrors.map((e) => e.message), [], `transport errors; stderr:\n${stderr}`);
    },
    async close() { await within(client.close(), 8_000, 'client.close').catch(() => {}); },
  };
}

/** Run cli.js to completion (for usage errors): { code, stdout, stderr }. */
async function runCli(args, { env = {}, ms = 10_000 } = {}) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv(env) });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  try {
    const [code] = await within(once(child, 'exit'), ms, `cli ${args.join(' ')}`);
    return { code, stdout, stderr };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

const textOf = (result) => result.content?.map((c) => c.text).join('');

// ---- the same session over both Streamable HTTP reply styles --------------------------

for (const mode of ['sse', 'json']) {
  describe(`Streamable HTTP backend (${mode} replies)`, () => {
    let backend;
    before(async () => { backend = await startBackend({ mode, auth: { staticToken: TOKEN } }); });
    after(async () => { await backend?.close(); });

    test(`tools/list and tools/call (echo, add) [${mode}]`, T, async () => {
      const s = await sdkSession(backend.url);
      try {
        const { tools } = await s.client.listTools();
        const names = tools.map((t) => t.name);
        for (const n of ['echo', 'add', 'slow', 'progress', 'sample', 'elicit', 'notify', 'cut_stream']) {
          assert.ok(names.includes(n), `tools/list lacks ${n}: ${names}`);
        }
        assert.equal(textOf(await s.client.callTool({ name: 'echo', arguments: { text: 'héllo "wörld"\n2nd line' } })), 'héllo "wörld"\n2nd line');
        assert.equal(textOf(await s.client.callTool({ name: 'add', arguments: { a: 2, b: 40 } })), '42');
        // A tool error travels as a JSON-RPC error (schema validation) without breaking the session.
        const bad = await s.client.callTool({ name: 'add', arguments: { a: 'x', b: 1 } }).catch((e) => e);
        assert.ok(bad instanceof Error || bad.isError, `expected an error for bad arguments: ${JSON.stringify(bad)}`);
        assert.equal(textOf(await s.client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
        s.assertClean();
      } finally {
        await s.close();
      }
    });

    test(`concurrent calls are not serialized; a 2 MB reply arrives intact [${mode}]`, T, async () => {
      const s = await sdkSession(backend.url);
      try {
        const order = [];
        const slow = s.client.callTool({ name: 'slow', arguments: { ms: 1_500 } }).then((r) => { order.push('slow'); return r; });
        const fast = s.client.callTool({ name: 'echo', arguments: { text: 'fast' } }).then((r) => { order.push('echo'); return r; });
        const big = s.client.callTool({ name: 'big', arguments: { bytes: 2 * 1024 * 1024 } }).then((r) => { order.push('big'); return r; });
        const [rs, rf, rb] = await within(Promise.all([slow, fast, big]), 10_000, 'three concurrent calls');
        assert.equal(textOf(rs), 'slept 1500ms');
        assert.equal(textOf(rf), 'fast');
        assert.equal(textOf(rb), 'x'.repeat(2 * 1024 * 1024));
        assert.equal(order.at(-1), 'slow', `the slow call did not hold up the others: ${order}`);
        s.assertClean();
      } finally {
        await s.close();
      }
    });

    test(`resources/list+read and prompts/list+get [${mode}]`, T, async () => {
      const s = await sdkSession(backend.url);
      try {
        const { resources } = await s.client.listResources();
        assert.deepEqual(resources.map((r) => r.uri), ['info://server']);
        const { contents } = await s.client.readResource({ uri: 'info://server' });
        assert.equal(JSON.parse(contents[0].text).mode, mode);
        const { prompts } = await s.client.listPrompts();
        assert.deepEqual(prompts.map((p) => p.name), ['greet']);
        const prompt = await s.client.getPrompt({ name: 'greet', arguments: { name: 'Ada' } });
        assert.equal(prompt.messages[0].content.text, 'Hello, Ada!');
        s.assertClean();
      } finally {
        await s.close();
      }
    });

    test(`progress notifications for a call with a progressToken [${mode}]`, T, async () => {
      const s = await sdkSession(backend.url);
      try {
        if (mode === 'json') await waitForGetStream(backend); // progress travels on it there
        const seen = [];
        const result = await s.client.callTool({ name: 'progress', arguments: { steps: 4, delayMs: 20 } }, undefined, {
          onprogress: (p) => seen.push(p),
          timeout: 15_000,
        });
        assert.equal(textOf(result), 'done 4 steps');
        // What the proxy delivered: every step, in order, before the result; and the SDK
        // client saw each one (the proxy holds the answer until the progress was read).
        assert.deepEqual(s.progressBefore('done 4 steps'), [1, 2, 3, 4]);
        if (mode === 'sse') {
          assert.deepEqual(seen.map((p) => p.progress), [1, 2, 3, 4]);
          assert.deepEqual(s.protocolErrors.map((e) => e.message), []);
        } else {
          // json: progress travels on the GET stream, the answer on the POST; the proxy
          // passes them on as they come, and they may come in either order.
          assert.ok(seen.length >= 3 && seen[0].progress === 1 && seen[0].total === 4, JSON.stringify(seen));
        }
        s.assertClean();
      } finally {
        await s.close();
      }
    });

    test(`server→client sampling and elicitation requests are answered by the client [${mode}]`, T, async () => {
      const asked = { sampling: [], elicitation: [] };
      const s = await sdkSession(backend.url, {
        capabilities: { sampling: {}, elicitation: {} },
        onClient: (client) => {
          client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
            asked.sampling.push(req.params);
            return { role: 'assistant', model: 'test-model', content: { type: 'text', text: `sampled: ${req.params.messages[0].content.text}` } };
          });
          client.setRequestHandler(ElicitRequestSchema, async (req) => {
            asked.elicitation.push(req.params);
            return { action: 'accept', content: { answer: '42' } };
          });
        },
      });
      try {
        if (mode === 'json') await waitForGetStream(backend); // the requests travel on it there
        const sampled = await s.client.callTool({ name: 'sample', arguments: { prompt: 'hi model' } }, undefined, { timeout: 15_000 });
        assert.equal(textOf(sampled), 'sampled: hi model');
        assert.equal(asked.sampling.length, 1);
        const elicited = await s.client.callTool({ name: 'elicit', arguments: { message: 'your answer?' } }, undefined, { timeout: 15_000 });
        assert.deepEqual(JSON.parse(textOf(elicited)), { action: 'accept', content: { answer: '42' } });
        assert.equal(asked.elicitation[0].message, 'your answer?');
        // The client's answers went back to the backend as POSTed JSON-RPC responses.
        assert.ok(httpLog(backend).filter((e) => e.method === 'POST' && e.rpcMethods.includes('response')).length >= 2);
        s.assertClean();
      } finally {
        await s.close();
      }
    });

    test(`logging and tools/list_changed notifications arrive via the GET stream [${mode}]`, T, async () => {
      const logs = [];
      let listChanged = 0;
      const s = await sdkSession(backend.url, {
        onClient: (client) => {
          client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => { logs.push(n.params.data); });
          client.setNotificationHandler(ToolListChangedNotificationSchema, () => { listChanged += 1; });
        },
      });
      try {
        const before = backend.log.length;
        await waitForGetStream(backend);
        const r = await s.client.callTool({ name: 'notify', arguments: { count: 3, delayMs: 100 } });
        assert.equal(textOf(r), 'scheduled 3 notifications');
        await waitFor(() => logs.length >= 3 && listChanged >= 1, { timeoutMs: 8_000, what: `3 log messages + list_changed (got ${logs.length}, ${listChanged})` });
        assert.deepEqual(logs, ['notify 1/3', 'notify 2/3', 'notify 3/3']);
        assert.equal(listChanged, 1);
        assert.ok(!backend.log.slice(before).some((e) => e.tool === 'notify' && e.error), 'backend failed to send notifications');
        s.assertClean();
      } finally {
        await s.close();
      }
    });

    test(`cancellation: aborting a call sends notifications/cancelled to the backend [${mode}]`, T, async () => {
      const s = await sdkSession(backend.url);
      try {
        const ac = new AbortController();
        const call = s.client.callTool({ name: 'slow', arguments: { ms: 8_000 } }, undefined, { signal: ac.signal });
        const sid = initializes(backend).at(-1).sessionId;
        await waitFor(() => httpLog(backend).some((e) => e.sessionId === sid && e.tool === 'slow'), { timeoutMs: 5_000, what: 'the slow call to reach the backend' });
        ac.abort('test aborts');
        await assert.rejects(within(call, 3_000, 'the aborted call'));
        const entry = await waitFor(() => backend.log.find((e) => e.kind === 'tool' && e.tool === 'slow' && e.sessionId === sid), { timeoutMs: 5_000, what: 'the backend to finish the slow tool' });
        assert.equal(entry.cancelled, true, `backend saw no cancellation: ${JSON.stringify(entry)}`);
        assert.ok(entry.elapsedMs < 6_000);
        assert.ok(httpLog(backend).some((e) => e.sessionId === sid && e.rpcMethods.includes('notifications/cancelled')));
        // The session still works.
        assert.equal(textOf(await s.client.callTool({ name: 'echo', arguments: { text: 'after cancel' } })), 'after cancel');
        s.assertClean();
      } finally {
        await s.close();
      }
    });

    test(`--request-timeout: a call without an answer in time gets an error, the backend a cancel [${mode}]`, T, async () => {
      const s = await sdkSession(backend.url, { args: ['--request-timeout', '1'] });
      try {
        const t0 = Date.now();
        const sid = initializes(backend).at(-1).sessionId;
        await assert.rejects(
          within(s.client.callTool({ name: 'slow', arguments: { ms: 8_000 } }), 5_000, 'the timed-out call'),
          (e) => /request-timeout/.test(e.message) && /did not answer within 1s/.test(e.message),
        );
        const took = Date.now() - t0;
        assert.ok(took >= 900 && took < 3_000, `answered after the 1 s limit (${took} ms)`);
        const entry = await waitFor(() => backend.log.find((e) => e.kind === 'tool' && e.tool === 'slow' && e.sessionId === sid), { timeoutMs: 5_000, what: 'the backend to stop the slow tool' });
        assert.equal(entry.cancelled, true, `backend saw no cancellation: ${JSON.stringify(entry)}`);
        assert.ok(httpLog(backend).some((e) => e.sessionId === sid && e.rpcMethods.includes('notifications/cancelled')));
        // Quick calls are not affected, and the session goes on.
        assert.equal(textOf(await s.client.callTool({ name: 'echo', arguments: { text: 'in time' } })), 'in time');
        s.assertClean();
      } finally {
        await s.close();
      }
    });

    test(`backend restarted mid-session: the next call succeeds after a transparent re-initialize [${mode}]`, T, async () => {
      const s = await sdkSession(backend.url);
      try {
        const initsBefore = initializes(backend).length;
        const oldSid = initializes(backend).at(-1).sessionId;
        assert.equal(textOf(await s.client.callTool({ name: 'echo', arguments: { text: 'one' } })), 'one');
        await backend.restart();
        assert.equal(textOf(await within(s.client.callTool({ name: 'echo', arguments: { text: 'two' } }), 10_000, 'call after restart')), 'two');
        const inits = initializes(backend);
        assert.ok(inits.length >= initsBefore + 1, 'the backend saw a second initialize');
        const newSid = inits.at(-1).sessionId;
        assert.ok(newSid && newSid !== oldSid, 'a new session was started');
        // The replayed initialize is followed by notifications/initialized on the new session.
        await waitFor(() => httpLog(backend).some((e) => e.sessionId === newSid && e.rpcMethods.includes('notifications/initialized')), { timeoutMs: 5_000, what: 'notifications/initialized on the new session' });
        // The client never saw the proxy's private initialize answer or an error.
        s.assertClean();
        assert.deepEqual(s.protocolErrors.map((e) => e.message), []);
        assert.equal(textOf(await s.client.callTool({ name: 'add', arguments: { a: 1, b: 2 } })), '3');
      } finally {
        await s.close();
      }
    });
  });
}

// ---- resumption ----------------------------------------------------------------------

describe('SSE resumption', () => {
  let backend;
  before(async () => { backend = await startBackend({ mode: 'sse', eventStore: true, auth: { staticToken: TOKEN } }); });
  after(async () => { await backend?.close(); });

  for (const how of ['destroy', 'close']) {
    test(`a response stream cut mid-response (${how}) is resumed with Last-Event-ID`, T, async () => {
      const s = await sdkSession(backend.url);
      try {
        const sid = initializes(backend).at(-1).sessionId;
        const seen = [];
        const r = await s.client.callTool({ name: 'cut_stream', arguments: { how } }, undefined, { onprogress: (p) => seen.push(p), timeout: 15_000 });
        assert.equal(textOf(r), 'survived the cut');
        assert.ok(backend.log.some((e) => e.kind === 'tool' && e.tool === 'cut_stream' && e.sessionId === sid && e.how === how), 'the backend really cut the stream');
        const resumes = httpLog(backend).filter((e) => e.method === 'GET' && e.sessionId === sid && e.lastEventId && !e.lastEventId.startsWith('_GET_stream'));
        assert.ok(resumes.length >= 1, `no GET with the POST stream's Last-Event-ID: ${JSON.stringify(httpLog(backend).filter((e) => e.method === 'GET'))}`);
        assert.equal(seen.length, 1, 'the progress notification sent before the cut arrives exactly once');
        s.assertClean();
      } finally {
        await s.close();
      }
    });
  }
});

// ---- legacy HTTP+SSE -----------------------------------------------------------------

describe('legacy HTTP+SSE backend (2024-11-05)', () => {
  let backend;
  before(async () => { backend = await startBackend({ mode: 'legacy', auth: { staticToken: TOKEN } }); });
  after(async () => { await backend?.close(); });

  async function fullSession(args) {
    const asked = [];
    const s = await sdkSession(backend.url, {
      args,
      capabilities: { sampling: {} },
      onClient: (client) => client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
        asked.push(req.params);
        return { role: 'assistant', model: 'm', content: { type: 'text', text: 'legacy sampled' } };
      }),
    });
    try {
      const { tools } = await s.client.listTools();
      assert.ok(tools.some((t) => t.name === 'echo'));
      assert.equal(textOf(await s.client.callTool({ name: 'echo', arguments: { text: 'old school' } })), 'old school');
      assert.equal(textOf(await s.client.callTool({ name: 'add', arguments: { a: 20, b: 22 } })), '42');
      const seen = [];
      const p = await s.client.callTool({ name: 'progress', arguments: { steps: 3 } }, undefined, { onprogress: (x) => seen.push(x.progress) });
      assert.equal(textOf(p), 'done 3 steps');
      // Every step, in order, before the result on stdout (see progressBefore).
      assert.deepEqual(s.progressBefore('done 3 steps'), [1, 2, 3]);
      assert.deepEqual(seen, [1, 2, 3].slice(0, seen.length), 'the client saw them in order');
      assert.equal(textOf(await s.client.callTool({ name: 'sample', arguments: { prompt: 'q' } }, undefined, { timeout: 15_000 })), 'legacy sampled');
      const { contents } = await s.client.readResource({ uri: 'info://server' });
      assert.equal(JSON.parse(contents[0].text).mode, 'legacy');
      const prompt = await s.client.getPrompt({ name: 'greet', arguments: { name: 'Bob' } });
      assert.equal(prompt.messages[0].content.text, 'Hello, Bob!');
      s.assertClean();
    } finally {
      await s.close();
    }
  }

  test('--transport auto falls back to HTTP+SSE and a full session works', T, async () => {
    const before = backend.log.length;
    await fullSession(['--transport', 'auto']);
    const log = backend.log.slice(before).filter((e) => e.kind === 'http');
    const firstPost = log.find((e) => e.method === 'POST' && e.path === '/mcp');
    assert.equal(firstPost?.status, 405, 'tried Streamable HTTP first');
    assert.ok(log.some((e) => e.method === 'GET' && e.path === '/mcp' && e.status === 200), 'opened the SSE stream');
    assert.ok(log.filter((e) => e.method === 'POST' && e.path === '/messages' && e.status === 202).length >= 5);
  });

  test('--transport streamable-http does not fall back: initialize gets a JSON-RPC error', T, async () => {
    const before = backend.log.length;
    const p = rawProxy(proxyArgs(backend.url, ['--transport', 'streamable-http']));
    try {
      const r = await p.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } });
      assert.equal(r.id, 1);
      assert.ok(r.error, JSON.stringify(r));
      assert.equal(p.child.exitCode, null, 'still running');
      const log = backend.log.slice(before).filter((e) => e.kind === 'http');
      assert.ok(!log.some((e) => e.method === 'GET'), 'no HTTP+SSE attempt');
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('--transport sse uses HTTP+SSE directly', T, async () => {
    const before = backend.log.length;
    await fullSession(['--transport', 'sse']);
    const log = backend.log.slice(before).filter((e) => e.kind === 'http');
    assert.ok(!log.some((e) => e.method === 'POST' && e.path === '/mcp'), 'no Streamable HTTP attempt when sse is forced');
    assert.ok(log.some((e) => e.method === 'GET' && e.path === '/mcp' && e.status === 200));
  });
});

// ---- low-level stdio behaviour -----------------------------------------------------------

describe('stdio framing and lifecycle', () => {
  let backend;
  before(async () => {
    backend = await startBackend({ mode: 'sse', auth: { staticToken: TOKEN }, logHeaders: ['x-api-key', 'x-env-header'] });
  });
  after(async () => { await backend?.close(); });

  test('backend down: requests get a JSON-RPC error quickly and the proxy keeps running', T, async () => {
    const port = await freePort();
    const p = rawProxy(proxyArgs(`http://127.0.0.1:${port}/mcp`));
    try {
      const t0 = Date.now();
      const r1 = await p.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } }, 5_000);
      assert.ok(Date.now() - t0 < 5_000);
      assert.equal(r1.id, 1);
      assert.equal(typeof r1.error?.code, 'number', JSON.stringify(r1));
      assert.ok(r1.error.message.length > 0);
      assert.equal(p.child.exitCode, null, 'still running');
      const r2 = await p.request('tools/list', undefined, 5_000);
      assert.equal(r2.id, 2);
      assert.equal(typeof r2.error?.code, 'number', JSON.stringify(r2));
      const r3 = await p.request('ping', undefined, 5_000);
      assert.ok(r3.error);
      assert.equal(p.child.exitCode, null, 'still running after errors');
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('a malformed stdin line gets -32700 with id null; the next request is answered', T, async () => {
    const p = rawProxy(proxyArgs(backend.url));
    try {
      await p.initialize();
      p.send('{"jsonrpc":"2.0","id":77,"method":');
      const err = await p.next((m) => m.error?.code === -32700, 5_000, 'the parse error');
      assert.equal(err.id, null);
      assert.equal(typeof err.error.message, 'string');
      p.send('definitely not json');
      await waitFor(() => p.messages.filter((m) => m.error?.code === -32700).length === 2, { timeoutMs: 5_000, what: 'a second parse error' });
      const r = await p.request('tools/call', { name: 'echo', arguments: { text: 'alive' } });
      assert.equal(textOf(r.result), 'alive');
      assert.ok(!p.messages.some((m) => m.id === 77), 'nothing answers the id inside the broken line');
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('a batch on stdin is split and every member answered', T, async () => {
    const p = rawProxy(proxyArgs(backend.url));
    try {
      await p.initialize();
      p.send([
        { jsonrpc: '2.0', id: 'b1', method: 'tools/call', params: { name: 'echo', arguments: { text: 'first' } } },
        { jsonrpc: '2.0', method: 'notifications/roots/list_changed' },
        { jsonrpc: '2.0', id: 'b2', method: 'tools/call', params: { name: 'add', arguments: { a: 3, b: 4 } } },
        { jsonrpc: '2.0', id: 'b3', method: 'ping' },
      ]);
      const [b1, b2, b3] = await Promise.all(['b1', 'b2', 'b3'].map((id) => p.next((m) => m.id === id, 10_000, `answer ${id}`)));
      assert.equal(textOf(b1.result), 'first');
      assert.equal(textOf(b2.result), '7');
      assert.deepEqual(b3.result, {});
      // Split: each member travelled as its own message (never as a JSON array).
      const sid = initializes(backend).at(-1).sessionId;
      const posts = httpLog(backend).filter((e) => e.method === 'POST' && e.sessionId === sid);
      assert.ok(posts.every((e) => e.rpcMethods.length === 1), JSON.stringify(posts.map((e) => e.rpcMethods)));
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('with MCP 2025-03-26 a batch goes to the server as one POST, every member answered', T, async () => {
    const p = rawProxy(proxyArgs(backend.url));
    try {
      const init = await p.initialize({ protocolVersion: '2025-03-26' });
      assert.equal(init.protocolVersion, '2025-03-26');
      p.send([
        { jsonrpc: '2.0', id: 'k1', method: 'tools/call', params: { name: 'echo', arguments: { text: 'one' } } },
        { jsonrpc: '2.0', method: 'notifications/roots/list_changed' },
        { jsonrpc: '2.0', id: 'k2', method: 'ping' },
      ]);
      const [k1, k2] = await Promise.all(['k1', 'k2'].map((id) => p.next((m) => m.id === id, 10_000, `answer ${id}`)));
      assert.equal(textOf(k1.result), 'one');
      assert.deepEqual(k2.result, {});
      const sid = initializes(backend).at(-1).sessionId;
      const posts = httpLog(backend).filter((e) => e.method === 'POST' && e.sessionId === sid);
      assert.ok(
        posts.some((e) => e.rpcMethods.length === 3),
        `one POST carried the whole batch: ${JSON.stringify(posts.map((e) => e.rpcMethods))}`,
      );
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('a message over --max-message-bytes gets -32600; the proxy goes on', T, async () => {
    const p = rawProxy(proxyArgs(backend.url, ['--max-message-bytes', '2048']));
    try {
      await p.initialize();
      p.send({ jsonrpc: '2.0', id: 'big', method: 'tools/call', params: { name: 'echo', arguments: { text: 'x'.repeat(10_000) } } });
      const err = await p.next((m) => m.error?.code === -32600, 5_000, 'the -32600 for the oversize line');
      assert.notEqual(err.id, 'big', 'the oversize message was not read, so its id is unknown');
      const r = await p.request('tools/call', { name: 'echo', arguments: { text: 'small' } });
      assert.equal(textOf(r.result), 'small');
      assert.ok(!p.messages.some((m) => m.id === 'big' && m.result), 'the oversize request was not forwarded');
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  // The proxy reads and writes stdio in one of three ways: a Node parent gives it sockets
  // (read on the runtime, written directly when that cannot block), a shell pipeline gives
  // it pipes (read on a thread, written directly while the pipe is empty), and
  // AUTHFUL_STDIO_THREADS=1 forces the two threads. The same traffic must come through each
  // whole and in order.
  const stdioWays = [
    { name: 'sockets from a Node parent', stdin: 'a socket, read on the bridge', stdout: 'stdout: a socket, written directly' },
    { name: 'pipes in a shell pipeline', via: ['sh', '-c', 'cat | "$0" "$@" | cat'], stdin: 'stdin: read on a thread', stdout: 'stdout: a pipe, written directly' },
    { name: 'AUTHFUL_STDIO_THREADS=1', env: { AUTHFUL_STDIO_THREADS: '1' }, stdin: 'stdin: read on a thread', stdout: 'stdout: written on a thread' },
  ];
  for (const way of stdioWays) {
    test(`stdio through ${way.name}: 300 pipelined calls and a 3 MiB result arrive whole and in order`, T, async () => {
      const p = rawDriver(proxyArgs(backend.url, ['--debug']), { env: childEnv(way.env), via: way.via });
      try {
        await p.initialize();
        assert.ok(p.stderr().includes(way.stdin), `stdin path (${way.stdin}):\n${p.stderr()}`);
        assert.ok(p.stderr().includes(way.stdout), `stdout path (${way.stdout}):\n${p.stderr()}`);
        // One write with 300 requests in it; answers come as the backend finishes them.
        const lines = [];
        for (let i = 0; i < 300; i++) {
          lines.push(JSON.stringify({ jsonrpc: '2.0', id: `p${i}`, method: 'tools/call', params: { name: 'echo', arguments: { text: `n${i}` } } }));
        }
        p.child.stdin.write(`${lines.join('\n')}\n`);
        const bytes = 3 * 1024 * 1024;
        const big = p.call('big', { bytes }, 20_000);
        const answers = await within(Promise.all(lines.map((_, i) => p.next((m) => m.id === `p${i}`, 20_000, `answer p${i}`))), 25_000, '300 answers');
        answers.forEach((a, i) => assert.equal(textOf(a.result), `n${i}`));
        const b = await big;
        assert.equal(textOf(b.result).length, bytes);
        assert.ok(/^x+$/.test(textOf(b.result)), 'the big text arrived unchanged');
        assert.equal(p.messages.filter((m) => typeof m.id === 'string' && m.id.startsWith('p')).length, 300, 'each answer once');
        p.assertClean();
        p.child.stdin.end();
        const { code } = await within(p.exited, 5_000, 'exit after EOF');
        assert.equal(code, 0, p.stderr());
      } finally {
        await p.close();
      }
    });
  }

  test('stdin EOF: the session is DELETEd and the process exits 0 within 3 s', T, async () => {
    const p = rawProxy(proxyArgs(backend.url));
    try {
      await p.initialize();
      await p.request('tools/list');
      const sid = initializes(backend).at(-1).sessionId;
      assert.ok(sid);
      const t0 = Date.now();
      p.child.stdin.end();
      const { code, signal, at } = await within(p.exited, 5_000, 'exit after EOF');
      assert.equal(signal, null);
      assert.equal(code, 0, p.stderr());
      assert.ok(at - t0 < 3_000, `exit took ${at - t0} ms`);
      const del = httpLog(backend).find((e) => e.method === 'DELETE' && e.sessionId === sid);
      assert.ok(del, 'the backend saw a DELETE for the session');
      assert.ok(!backend.sessions.has(sid), 'the backend forgot the session');
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('SIGTERM: the session is DELETEd and the process exits 0', T, async () => {
    const p = rawProxy(proxyArgs(backend.url));
    try {
      await p.initialize();
      await p.request('tools/list');
      const sid = initializes(backend).at(-1).sessionId;
      const t0 = Date.now();
      p.child.kill('SIGTERM');
      const { code, signal, at } = await within(p.exited, 5_000, 'exit after SIGTERM');
      assert.equal(signal, null, 'exited by itself, not killed by the signal');
      assert.equal(code, 0, p.stderr());
      assert.ok(at - t0 < 3_000, `exit took ${at - t0} ms`);
      assert.ok(httpLog(backend).some((e) => e.method === 'DELETE' && e.sessionId === sid), 'the backend saw a DELETE for the session');
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('headers: `Name:value` without a space and ${VAR} expansion reach the backend', T, async () => {
    const env = { AUTHFUL_BRIDGE_TEST_TOKEN: TOKEN, AUTHFUL_BRIDGE_TEST_VAR: 'expanded' };
    const p = rawProxy([
      CLI, '--no-banner',
      '--header', 'Authorization: Bearer ${AUTHFUL_BRIDGE_TEST_TOKEN}', // eslint-disable-line no-template-curly-in-string
      '--header', 'X-Api-Key:k1',
      '--header', 'X-Env-Header: pre-${AUTHFUL_BRIDGE_TEST_VAR}-post', // eslint-disable-line no-template-curly-in-string
      backend.url,
    ], { env });
    try {
      await p.initialize();
      const r = await p.request('tools/call', { name: 'whoami', arguments: {} });
      assert.equal(JSON.parse(textOf(r.result)).static, true, 'the expanded bearer token was accepted');
      const sid = initializes(backend).at(-1).sessionId;
      const entries = httpLog(backend).filter((e) => e.sessionId === sid);
      assert.ok(entries.length >= 3);
      for (const e of entries) {
        assert.equal(e.authError, undefined);
        assert.deepEqual(e.headers, { 'x-api-key': 'k1', 'x-env-header': 'pre-expanded-post' }, `${e.method} ${e.rpcMethod}`);
      }
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('a ${VAR} that is not set is a usage error (exit 2)', T, async () => {
    const { code, stderr } = await runCli(['--no-banner', '--header', 'Authorization: Bearer ${AUTHFUL_BRIDGE_UNSET_VAR}', backend.url]); // eslint-disable-line no-template-curly-in-string
    assert.equal(code, 2);
    assert.match(stderr, /AUTHFUL_BRIDGE_UNSET_VAR/);
  });

  test('MCP-Protocol-Version and Mcp-Session-Id are sent on every request after initialize', T, async () => {
    const p = rawProxy(proxyArgs(backend.url));
    try {
      const before = backend.log.length;
      const init = await p.initialize();
      await p.request('tools/list');
      await p.request('tools/call', { name: 'echo', arguments: { text: 'v' } });
      const sid = initializes(backend).at(-1).sessionId;
      await waitFor(() => httpLog(backend).some((e) => e.method === 'GET' && e.sessionId === sid), { timeoutMs: 5_000, what: 'the GET stream' });
      const log = backend.log.slice(before).filter((e) => e.kind === 'http' && e.path === '/mcp');
      const initEntry = log.find((e) => e.rpcMethods.includes('initialize'));
      assert.equal(initEntry.protocolVersion, undefined, 'initialize carries no MCP-Protocol-Version');
      const after = log.filter((e) => e !== initEntry);
      assert.ok(after.length >= 4, JSON.stringify(after));
      for (const e of after) {
        assert.equal(e.sessionId, sid, `${e.method} ${e.rpcMethod} carries Mcp-Session-Id`);
        assert.equal(e.protocolVersion, init.protocolVersion, `${e.method} ${e.rpcMethod} carries MCP-Protocol-Version`);
      }
      assert.ok(after.some((e) => e.method === 'GET'));
      assert.ok(after.some((e) => e.rpcMethods.includes('notifications/initialized')));
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('--debug never prints header values or the token to stderr', T, async () => {
    const apiKey = `key-${randomBytes(8).toString('hex')}`;
    const p = rawProxy([CLI, '--debug', '--header', AUTH_HEADER, '--header', `X-Api-Key: ${apiKey}`, backend.url]);
    try {
      await p.initialize();
      await p.request('tools/call', { name: 'echo', arguments: { text: 'debug me' } });
      await p.request('tools/list');
      await p.close();
      const err = p.stderr();
      assert.ok(/tools\/list|tools\/call/.test(err), `--debug traces messages:\n${err}`);
      assert.ok(!err.includes(TOKEN), 'the bearer token is not in stderr');
      assert.ok(!err.includes(apiKey), 'the X-Api-Key value is not in stderr');
      assert.ok(!err.includes('debug me'), 'message bodies are not logged');
      p.assertClean();
    } finally {
      await p.close();
    }
  });
});

// ---- usage errors ----------------------------------------------------------------------

describe('usage errors', () => {
  test('a plain-http backend that is not on loopback is refused: exit 2, a short message', T, async () => {
    const { code, stdout, stderr } = await runCli(['--header', AUTH_HEADER, '--no-banner', 'http://example.com/mcp']);
    assert.equal(code, 2, stderr);
    assert.equal(stdout, '', 'nothing on stdout');
    const lines = stderr.split('\n').filter((l) => l.trim());
    assert.match(lines[0], /^authful-mcp-proxy: .*http:\/\/example\.com\/mcp/);
    // One line says what is wrong; at most one more names the fix.
    assert.ok(lines.length <= 2, `expected a one-line message (+ hint), got:\n${stderr}`);
    assert.ok(!stderr.includes(TOKEN));
  });

  test('--allow-http lifts the refusal (fails later, at connect time, not with exit 2)', T, async () => {
    // 192.0.2.1 (TEST-NET-1) is never routed; the proxy starts and stdin EOF ends it.
    const p = rawProxy([CLI, '--header', AUTH_HEADER, '--no-banner', '--allow-http', 'http://192.0.2.1:9/mcp']);
    try {
      p.child.stdin.end();
      const { code } = await within(p.exited, 5_000, 'exit after EOF');
      assert.equal(code, 0, p.stderr());
    } finally {
      await p.close();
    }
  });

  test('a missing backend URL exits 2', T, async () => {
    const { code, stdout, stderr } = await runCli(['--header', AUTH_HEADER, '--no-banner']);
    assert.equal(code, 2, stderr);
    assert.equal(stdout, '');
    assert.match(stderr.split('\n')[0], /^authful-mcp-proxy: .*backend URL/i);
  });
});
