#!/usr/bin/env node
// The conformance suite's client under test: an official SDK Client that spawns the proxy
// (`node cli.js … <server URL>`) over stdio and does what each scenario expects.
//
// Run by `conformance client --command "exec node <this file>"`: the suite appends the server
// URL and sets MCP_CONFORMANCE_SCENARIO (and MCP_CONFORMANCE_CONTEXT, JSON, for scenarios that
// hand out credentials). The proxy is CONFORMANCE_PROXY_CLI (default: this checkout's cli.js).
// Everything the proxy writes (cache, keys, browser log) lives in a throw-away directory.
// Exit 0 when the scenario's MCP calls succeeded, 1 otherwise.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI = process.env.CONFORMANCE_PROXY_CLI || join(HERE, '..', '..', 'cli.js');
const REQUEST_TIMEOUT_MS = Number(process.env.CONFORMANCE_REQUEST_TIMEOUT_MS || 12_000);
/** Fixed by the suite (basic-cimd): the authorization server accepts it without fetching it. */
const CIMD_URL = 'https://conformance-test.local/client-metadata.json';

const log = (...a) => console.error('[conformance-client]', ...a);

function context() {
  const raw = process.env.MCP_CONFORMANCE_CONTEXT;
  return raw ? JSON.parse(raw) : {};
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Write `text` to a 0600 file in the scratch dir and return its path. */
function secretFile(dir, name, text) {
  const file = join(dir, name);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

// ---- how the proxy is configured per scenario ------------------------------------------------

/** Flags and env for the proxy; `ctx` is MCP_CONFORMANCE_CONTEXT, `dir` the scratch dir. */
const PROXY_CONFIG = {
  // Pre-registered client (no DCR): the client ID and secret, issuer discovered.
  'auth/pre-registration': (ctx) => ({
    env: { OIDC_CLIENT_ID: ctx.client_id, OIDC_CLIENT_SECRET: ctx.client_secret },
  }),
  // SEP-991 client ID metadata document (issue 12 item 7).
  'auth/basic-cimd': () => ({ args: ['--client-metadata-url', CIMD_URL] }),
  // Client credentials grant, client_secret_basic.
  'auth/client-credentials-basic': (ctx) => ({
    args: ['--client-credentials'],
    env: { OIDC_CLIENT_ID: ctx.client_id, OIDC_CLIENT_SECRET: ctx.client_secret },
  }),
  // Client credentials grant, private_key_jwt (issue 12 item 8). The key id is not checked.
  'auth/client-credentials-jwt': (ctx, dir) => ({
    args: [
      '--client-credentials',
      '--client-private-key', secretFile(dir, 'client-key.pem', ctx.private_key_pem),
      '--client-key-id', 'conformance-key',
    ],
    env: { OIDC_CLIENT_ID: ctx.client_id },
  }),
  // Cross-app access (SEP-990): the enterprise IdP is the configured issuer and client; its
  // ID token comes from the context (the scenario's IdP has no login page), is exchanged there
  // for an ID-JAG, and that at the MCP server's authorization server (client_secret_basic).
  'auth/cross-app-access-complete-flow': (ctx, dir) => ({
    args: [
      '--cross-app-access',
      '--id-token-file', secretFile(dir, 'idp-id-token.jwt', ctx.idp_id_token),
      '--mcp-client-id', ctx.client_id,
    ],
    env: {
      OIDC_ISSUER_URL: ctx.idp_issuer,
      OIDC_CLIENT_ID: ctx.idp_client_id,
      MCP_PROXY_MCP_CLIENT_SECRET: ctx.client_secret,
    },
  }),
};

// ---- what the MCP client does per scenario ----------------------------------------------------

const opts = { timeout: REQUEST_TIMEOUT_MS };

async function listAndCall(client, name, args = {}) {
  const { tools } = await client.listTools(undefined, opts);
  log('tools:', tools.map((t) => t.name).join(', '));
  const result = await client.callTool({ name, arguments: args }, undefined, opts);
  log('tool result:', JSON.stringify(result).slice(0, 300));
}

const ACTIONS = {
  initialize: async (client) => {
    await client.listTools(undefined, opts);
  },
  tools_call: (client) => listAndCall(client, 'add_numbers', { a: 2, b: 3 }),
  'elicitation-sep1034-client-defaults': (client) => listAndCall(client, 'test_client_elicitation_defaults'),
  'sse-retry': async (client) => {
    const result = await client.callTool({ name: 'test_reconnection', arguments: {} }, undefined, opts);
    log('tool result:', JSON.stringify(result).slice(0, 300));
  },
  // Every auth scenario: the suite's MCP server offers `test-tool`; list, then call (the
  // call is what triggers step-up in auth/scope-step-up).
  default: (client) => listAndCall(client, 'test-tool'),
};

const CLIENT_CAPABILITIES = {
  // SDK 1.32.2 fills in the schema's defaults for an `accept` with omitted fields.
  'elicitation-sep1034-client-defaults': { elicitation: { form: { applyDefaults: true } } },
};

// ---- main ------------------------------------------------------------------------------------

async function main() {
  const scenario = process.env.MCP_CONFORMANCE_SCENARIO;
  const url = process.argv[2];
  if (!scenario || !url) {
    log('usage: MCP_CONFORMANCE_SCENARIO=<name> client.mjs <server-url>');
    return 2;
  }
  const dir = mkdtempSync(join(tmpdir(), 'authful-conformance-'));
  let transport;
  const cleanup = () => {
    try {
      if (transport?.pid) process.kill(transport.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // The runner kills us (SIGTERM) on its timeout; take the proxy along.
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      cleanup();
      process.exit(1);
    });
  }
  try {
    const port = await freePort();
    const extra = PROXY_CONFIG[scenario]?.(context(), dir) ?? {};
    const args = [
      CLI,
      '--cache-dir', join(dir, 'cache'),
      '--oidc-redirect-url', `http://localhost:${port}/auth/callback`,
      '--auth-timeout', '15',
      ...(process.env.CONFORMANCE_PROXY_DEBUG ? ['--debug'] : []),
      // Experiments only (never set by the test): extra proxy arguments, split on spaces.
      ...(process.env.CONFORMANCE_PROXY_EXTRA_ARGS?.split(' ').filter(Boolean) ?? []),
      ...(extra.args ?? []),
      url,
    ];
    const env = {
      HOME: dir,
      PATH: process.env.PATH,
      BROWSER: `${process.execPath} ${join(HERE, 'browser.mjs')}`,
      BROWSER_LOG: join(dir, 'browser.log'),
      ...(extra.env ?? {}),
    };
    log('proxy:', process.execPath, args.map((a) => (a.startsWith(dir) ? '<scratch>' + a.slice(dir.length) : a)).join(' '));
    transport = new StdioClientTransport({ command: process.execPath, args, env, stderr: 'inherit' });
    const client = new Client(
      { name: 'authful-conformance-client', version: '1.0.0' },
      { capabilities: CLIENT_CAPABILITIES[scenario] ?? {} },
    );
    if (scenario === 'elicitation-sep1034-client-defaults') {
      client.setRequestHandler(ElicitRequestSchema, async (req) => {
        log('elicitation:', req.params.message);
        return { action: 'accept', content: {} };
      });
    }
    await client.connect(transport, opts);
    log('initialized:', JSON.stringify(client.getServerVersion()));
    await (ACTIONS[scenario] ?? ACTIONS.default)(client);
    await client.close();
    return 0;
  } catch (e) {
    log('failed:', e?.message ?? e);
    try {
      await transport?.close();
    } catch {
      // closing after a failure is best effort
    }
    return 1;
  } finally {
    cleanup();
  }
}

process.exit(await main());
