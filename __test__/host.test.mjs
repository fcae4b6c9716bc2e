// What a host's stdio client needs beyond plain JSON-RPC, with the official TypeScript SDK
// client (StdioClientTransport spawning `node cli.js`) against the SDK backend:
//  - every progress notification reaches the client's progress handler before the response
//    removes it (the SDK dispatches notifications a microtask after responses of one read);
//  - an answer larger than the client can read (its ReadBuffer stops at 10 MiB) becomes a
//    JSON-RPC error for that request, and the session goes on.
//   node --test --test-concurrency=1 __test__/host.test.mjs

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startBackend } from '../examples/backend.mjs';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { within, rawProxy } from './helpers/stdio.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'cli.js');
const TOKEN = `tok-${randomBytes(12).toString('hex')}`;
const T = { timeout: 120_000 };
const TOO_LARGE = -31000;

function childEnv(extra = {}) {
  const env = { ...getDefaultEnvironment(), ...extra };
  for (const k of Object.keys(env)) {
    if (/^(MCP_|OIDC_)/.test(k) && !(k in extra)) delete env[k];
  }
  return env;
}

async function session(url, { args = [], env = {} } = {}) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, '--header', `Authorization: Bearer ${TOKEN}`, '--no-banner', ...args, url],
    env: childEnv(env),
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr.on('data', (d) => { stderr += d; });
  const transportErrors = [];
  transport.onerror = (err) => transportErrors.push(err);
  let closed = false;
  transport.onclose = () => { closed = true; };
  const client = new Client({ name: 'host-test', version: '1.0.0' });
  const protocolErrors = [];
  client.onerror = (err) => protocolErrors.push(err);
  await within(client.connect(transport), 15_000, 'connect');
  // connect() set the transport's handlers; keep ours beside them.
  const onclose = transport.onclose;
  transport.onclose = () => { closed = true; onclose?.(); };
  return {
    client,
    stderr: () => stderr,
    transportErrors,
    protocolErrors,
    closed: () => closed,
    async close() { await within(client.close(), 8_000, 'client.close').catch(() => {}); },
  };
}

const textOf = (r) => r.content?.map((c) => c.text).join('');

/** 100 calls of the progress tool (5 steps, no delay): how many saw all 5, in order. */
async function progressRound(s, { calls = 100, steps = 5, delayMs = 0 } = {}) {
  let complete = 0;
  const counts = {};
  for (let i = 0; i < calls; i += 1) {
    const seen = [];
    const r = await s.client.callTool({ name: 'progress', arguments: { steps, delayMs } }, undefined, {
      onprogress: (p) => seen.push(p.progress),
      timeout: 15_000,
    });
    assert.equal(textOf(r), `done ${steps} steps`);
    counts[seen.length] = (counts[seen.length] ?? 0) + 1;
    if (seen.length === steps && seen.every((p, j) => p === j + 1)) complete += 1;
  }
  return { complete, counts };
}

for (const mode of ['sse', 'json']) {
  describe(`host behaviours [${mode}]`, () => {
    let backend;
    before(async () => { backend = await startBackend({ mode, auth: { staticToken: TOKEN } }); });
    after(async () => { await backend?.close(); });

    test(`100 calls × 5 progress notifications: every one reaches the SDK client, in order [${mode}]`, T, async () => {
      const s = await session(backend.url);
      try {
        if (mode === 'json') {
          // Progress travels on the GET stream there: wait until it is open.
          const sid = () => backend.log.filter((e) => e.kind === 'http' && e.method === 'GET' && e.status === 200).length;
          for (let i = 0; i < 100 && !sid(); i += 1) await new Promise((r) => setTimeout(r, 50));
        }
        // The tool sleeps `delayMs` after each step (also after the last, before answering).
        const rounds = [];
        for (const delayMs of [0, 10]) {
          const started = Date.now();
          const { complete, counts } = await progressRound(s, { delayMs });
          console.log(`# [${mode}, ${delayMs} ms between steps] ${complete}/100 calls saw 5 of 5 progress notifications (calls by number seen: ${JSON.stringify(counts)}) in ${Date.now() - started} ms`);
          rounds.push({ delayMs, complete, counts });
        }
        if (mode === 'sse') {
          // Over SSE the notifications travel on the call's own stream, before its answer.
          for (const r of rounds) assert.equal(r.complete, 100, JSON.stringify(r));
        }
        if (mode === 'sse') assert.deepEqual(s.protocolErrors.map((e) => e.message), []);
        assert.deepEqual(s.transportErrors.map((e) => e.message), []);
      } finally {
        await s.close();
      }
    });

    test(`an 11 MiB answer is an error for that call; the session goes on [${mode}]`, T, async () => {
      const s = await session(backend.url);
      try {
        await assert.rejects(
          s.client.callTool({ name: 'big', arguments: { bytes: 11 << 20 } }, undefined, { timeout: 60_000 }),
          (err) => {
            assert.equal(err.code, TOO_LARGE, err.message);
            assert.match(err.message, /\d+ bytes/);
            assert.match(err.message, /--max-output-bytes/);
            return true;
          },
        );
        assert.equal(textOf(await s.client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
        // Just under the limit still passes (9 MiB of text, as JSON a little more).
        const r = await s.client.callTool({ name: 'big', arguments: { bytes: 9 << 20 } }, undefined, { timeout: 60_000 });
        assert.equal(textOf(r).length, 9 << 20);
        assert.equal(s.closed(), false);
        assert.deepEqual(s.transportErrors.map((e) => e.message), []);
      } finally {
        await s.close();
      }
    });
  });
}

describe('--max-output-bytes', () => {
  let backend;
  before(async () => { backend = await startBackend({ mode: 'sse', auth: { staticToken: TOKEN } }); });
  after(async () => { await backend?.close(); });

  test('a smaller limit (env) applies to answers; a larger notification is dropped with a warning', T, async () => {
    const s = await session(backend.url, { env: { MCP_PROXY_MAX_OUTPUT_BYTES: '2000' } });
    try {
      await assert.rejects(
        s.client.callTool({ name: 'big', arguments: { bytes: 5000 } }),
        (err) => err.code === TOO_LARGE && /limit of 2000 bytes/.test(err.message),
      );
      assert.equal(textOf(await s.client.callTool({ name: 'big', arguments: { bytes: 100 } })).length, 100);
      const logs = [];
      s.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => { logs.push(n.params.data); });
      assert.equal(textOf(await s.client.callTool({ name: 'burst', arguments: { count: 2 } })), 'sent 2');
      assert.equal(textOf(await s.client.callTool({ name: 'burst', arguments: { count: 1, pad: 3000 } })), 'sent 1');
      assert.equal(textOf(await s.client.callTool({ name: 'burst', arguments: { count: 1 } })), 'sent 1');
      assert.deepEqual(logs, ['burst 1/2', 'burst 2/2', 'burst 1/1'], 'the small ones pass, the large one is dropped');
      const warnings = s.stderr().split('\n').filter((l) => /dropped the MCP server's notification `notifications\/message`/.test(l));
      assert.equal(warnings.length, 1, s.stderr());
      assert.match(warnings[0], /over the limit of 2000 .*--max-output-bytes/);
      assert.equal(s.closed(), false);
    } finally {
      await s.close();
    }
  });

  test('0 means no limit; a value that is not a number is a usage error', T, async () => {
    const p = rawProxy([CLI, '--header', `Authorization: Bearer ${TOKEN}`, '--no-banner', '--max-output-bytes', '0', backend.url], { env: childEnv() });
    try {
      await p.initialize();
      const r = await p.call('big', { bytes: 11 << 20 }, 60_000);
      assert.equal(r.result.content[0].text.length, 11 << 20);
      p.assertClean();
    } finally {
      await p.close();
    }
    const bad = spawnSync(process.execPath, [CLI, '--max-output-bytes', 'lots', backend.url], { env: childEnv(), encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--max-output-bytes: `lots` is not a number of bytes/);
  });
});
