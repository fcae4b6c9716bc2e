#!/usr/bin/env node
// A token-validating MCP server for tests and demos, built on the official TypeScript
// SDK and node:http. Binds 127.0.0.1 only.
//
//   import { startBackend } from './examples/backend.mjs';
//   const be = await startBackend({ issuer: 'http://127.0.0.1:9400', mode: 'sse' });
//   ... be.url, be.log, be.sessions, await be.restart() ...
//   await be.close();
//
// Modes:
//   'sse'    stateful Streamable HTTP, POSTs answered with SSE streams (SDK default)
//   'json'   stateful Streamable HTTP with enableJsonResponse: true
//   'legacy' only the 2024-11-05 HTTP+SSE transport: GET <path> (or /sse) opens the
//            stream and gets an `endpoint` event, messages go to POST /messages?sessionId=.
//            POST <path> answers 405 so a 2025-03-26+ client falls back to the GET.
//
// Run directly: `node examples/backend.mjs` (BACKEND_PORT, OIDC_ISSUER_URL, BACKEND_MODE).

import http from 'node:http';
import https from 'node:https';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { CreateMessageResultSchema, ElicitResultSchema, isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { z } from 'zod';

/**
 * Minimal EventStore for Last-Event-ID resumption. Unlike the SDK example store it keeps
 * insertion order (the example sorts by id, which mixes events created in the same ms)
 * and copes with the standalone stream id `_GET_stream`, which contains underscores.
 */
export class SimpleEventStore {
  #events = []; // { id, streamId, message }
  #seq = 0;

  async storeEvent(streamId, message) {
    this.#seq += 1;
    const id = `${streamId}::${this.#seq}`;
    this.#events.push({ id, streamId, message });
    return id;
  }

  async replayEventsAfter(lastEventId, { send }) {
    const idx = this.#events.findIndex((e) => e.id === lastEventId);
    if (idx < 0) return '';
    const { streamId } = this.#events[idx];
    for (const e of this.#events.slice(idx + 1)) {
      // The priming event has an empty message; nothing to replay for it.
      if (e.streamId === streamId && e.message && Object.keys(e.message).length) await send(e.id, e.message);
    }
    return streamId;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (t) => ({ content: [{ type: 'text', text: t }] });

/**
 * Start the backend.
 * @param {object} [opts]
 * @param {number} [opts.port=0]
 * @param {string} [opts.path='/mcp']
 * @param {string|(() => string)} [opts.issuer]  expected `iss`; JWKS found via its discovery
 *                                              document. A function is read lazily (lets the
 *                                              IdP start after the backend).
 * @param {string} [opts.audience]               expected `aud` (default: own url)
 * @param {'sse'|'json'|'legacy'} [opts.mode='sse']
 * @param {'jwt'|'none'|{staticToken: string}} [opts.auth='jwt']
 * @param {boolean} [opts.eventStore=false]     enable Last-Event-ID resumption (sse mode)
 * @param {number} [opts.retryInterval]         SSE `retry:` ms sent with priming events
 * @param {string[]} [opts.logHeaders=[]]       request headers to copy into each http log
 *                                              entry as `headers: { name: value }` (lower-case
 *                                              names; for tests of custom headers)
 * @param {number} [opts.rejectValidTokens=0]   answer 401 to the next N requests whose JWT
 *                                              is valid (as if the server had revoked it);
 *                                              see also `be.rejectNextValid(n, match)`
 * @param {Record<string,string>} [opts.requireScopes={}]  test knob for step-up: tool name →
 *                                              scope. Each named tool is registered (it answers
 *                                              like whoami), and a tools/call of it whose JWT
 *                                              lacks the scope gets HTTP 403 with
 *                                              `WWW-Authenticate: Bearer error="insufficient_scope",
 *                                              scope="<scope>"` before the MCP transport sees it.
 * @param {{key: string|Buffer, cert: string|Buffer}} [opts.tls]  serve HTTPS with this key and
 *                                              certificate (PEM) instead of plain HTTP; `url`
 *                                              and `origin` then start with `https://`
 * @param {boolean} [opts.protectedResourceMetadata=true]  false: serve no RFC 9728 metadata
 *                                              (404) and name none in the 401 challenge, like a
 *                                              server that names no authorization server
 */
export async function startBackend(opts = {}) {
  const {
    port = 0,
    path = '/mcp',
    issuer = 'http://127.0.0.1:9400',
    mode = 'sse',
    auth = 'jwt',
    eventStore = false,
    retryInterval = eventStore ? 100 : undefined,
    logHeaders = [],
    rejectValidTokens = 0,
    requireScopes = {},
    protectedResourceMetadata = true,
    tls,
  } = opts;
  if (!['sse', 'json', 'legacy'].includes(mode)) throw new Error(`unknown mode ${mode}`);

  const log = [];
  // Test knob: refuse otherwise valid tokens. Each rule { left, match(entry) } consumes one
  // unit per refused request; `match` sees the request's log entry (method, rpcMethod, ...).
  const rejectRules = [];
  if (rejectValidTokens > 0) rejectRules.push({ left: rejectValidTokens, match: () => true });
  const sessions = new Map(); // sessionId -> { transport, server, kind }
  const cutTargets = new Map(); // `${sessionId}|${rpcId}` -> http.ServerResponse (cut_stream)
  const onRequest = (req, res) => {
    handle(req, res).catch((err) => {
      console.error('[backend] handler error', err);
      if (!res.headersSent) sendJson(res, 500, rpcError(-32603, 'Internal error'));
      else res.destroy();
    });
  };
  const httpServer = tls
    ? https.createServer({ key: tls.key, cert: tls.cert }, onRequest)
    : http.createServer(onRequest);
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(port, '127.0.0.1', resolve);
  });
  const actualPort = httpServer.address().port;
  const origin = `${tls ? 'https' : 'http'}://127.0.0.1:${actualPort}`;
  const url = `${origin}${path}`;
  const audience = opts.audience ?? url;
  const resourceMetadataUrl = `${origin}/.well-known/oauth-protected-resource${path}`;
  const issuerOf = () => (typeof issuer === 'function' ? issuer() : issuer);

  // ---- authentication ------------------------------------------------------------------
  let jwks;
  let jwksIssuer;
  async function getJwks() {
    const iss = issuerOf();
    if (!jwks || jwksIssuer !== iss) {
      const res = await fetch(`${iss}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5000) });
      if (!res.ok) throw new Error(`discovery failed: ${res.status}`);
      const meta = await res.json();
      jwks = createRemoteJWKSet(new URL(meta.jwks_uri));
      jwksIssuer = iss;
    }
    return jwks;
  }

  /** @returns {Promise<{ok: true, authInfo?: object} | {ok: false, reason: string}>} */
  async function authenticate(req, entry) {
    if (auth === 'none') return { ok: true };
    const header = req.headers.authorization;
    if (typeof auth === 'object' && auth.staticToken !== undefined) {
      return header === `Bearer ${auth.staticToken}`
        ? { ok: true, authInfo: { token: 'static', clientId: 'static', scopes: [], extra: { claims: { static: true } } } }
        : { ok: false, reason: header ? 'wrong static token' : 'missing bearer token' };
    }
    const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    if (!m) return { ok: false, reason: 'missing bearer token' };
    try {
      const { payload } = await jwtVerify(m[1], await getJwks(), { issuer: issuerOf(), audience });
      const rule = rejectRules.find((r) => r.left > 0 && r.match(entry ?? {}));
      if (rule) {
        rule.left -= 1;
        if (entry) entry.rejectedJti = payload.jti;
        return { ok: false, reason: 'token rejected (test knob)' };
      }
      return {
        ok: true,
        authInfo: {
          token: 'redacted', // the raw token never reaches tool code
          clientId: payload.client_id,
          scopes: typeof payload.scope === 'string' ? payload.scope.split(' ') : [],
          expiresAt: payload.exp,
          extra: { claims: payload },
        },
      };
    } catch (err) {
      return { ok: false, reason: err?.code === 'ERR_JWT_EXPIRED' ? 'token expired' : `invalid token: ${err?.code ?? err?.message}` };
    }
  }

  // ---- the MCP server (one per session) --------------------------------------------------
  function createMcpServer() {
    const server = new McpServer(
      { name: 'authful-test-backend', version: '1.0.0' },
      { capabilities: { logging: {} } },
    );
    // In JSON-response mode a POST's reply is one JSON body: nothing can travel "inside"
    // it, and the SDK silently drops request-related notifications/requests. So there,
    // send them unrelated, i.e. on the standalone GET stream, like a real JSON-mode server
    // must. In SSE modes they go on the request's own stream.
    const notify = (extra, n) => (mode === 'json' ? server.server.notification(n) : extra.sendNotification(n));
    const ask = (extra, r, schema) => (mode === 'json'
      ? server.server.request(r, schema, { timeout: 30_000 })
      : extra.sendRequest(r, schema, { timeout: 30_000 }));

    for (const name of Object.keys(requireScopes)) {
      server.registerTool(name, { description: `Needs scope ${requireScopes[name]}; answers like whoami` },
        async (extra) => {
          const c = extra.authInfo?.extra?.claims;
          return text(JSON.stringify(c ? { sub: c.sub, scope: c.scope, client_id: c.client_id, tool: name } : { anonymous: true, tool: name }));
        });
    }

    server.registerTool('echo', { description: 'Echo text back', inputSchema: { text: z.string() } },
      async ({ text: t }) => text(t));

    server.registerTool('add', { description: 'Add two numbers', inputSchema: { a: z.number(), b: z.number() } },
      async ({ a, b }) => text(String(a + b)));

    server.registerTool('whoami', { description: 'Claims of the bearer token (never the token)' },
      async (extra) => {
        const c = extra.authInfo?.extra?.claims;
        const who = c ? { sub: c.sub, aud: c.aud, scope: c.scope, client_id: c.client_id, iss: c.iss, exp: c.exp, static: c.static } : { anonymous: true };
        return text(JSON.stringify(who));
      });

    server.registerTool('slow', { description: 'Sleep ms (cancellable)', inputSchema: { ms: z.number() } },
      async ({ ms }, extra) => {
        const started = Date.now();
        const cancelled = await new Promise((resolve) => {
          if (extra.signal.aborted) return resolve(true);
          const t = setTimeout(() => resolve(false), ms);
          extra.signal.addEventListener('abort', () => { clearTimeout(t); resolve(true); }, { once: true });
        });
        log.push({ kind: 'tool', tool: 'slow', sessionId: extra.sessionId, requestId: extra.requestId, cancelled, elapsedMs: Date.now() - started });
        if (cancelled) throw new Error('cancelled'); // the SDK drops the reply of a cancelled request
        return text(`slept ${ms}ms`);
      });

    server.registerTool('progress', { description: 'Report progress steps', inputSchema: { steps: z.number(), delayMs: z.number().optional() } },
      async ({ steps, delayMs = 10 }, extra) => {
        const token = extra._meta?.progressToken;
        for (let i = 1; i <= steps; i += 1) {
          if (token !== undefined) {
            await notify(extra, { method: 'notifications/progress', params: { progressToken: token, progress: i, total: steps, message: `step ${i}` } });
          }
          if (delayMs) await sleep(delayMs);
        }
        return text(`done ${steps} steps${token === undefined ? ' (no progressToken)' : ''}`);
      });

    server.registerTool('sample', { description: 'Ask the client to sample an LLM', inputSchema: { prompt: z.string() } },
      async ({ prompt }, extra) => {
        const result = await ask(extra, {
          method: 'sampling/createMessage',
          params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 },
        }, CreateMessageResultSchema);
        return text(result.content?.type === 'text' ? result.content.text : JSON.stringify(result.content));
      });

    server.registerTool('elicit', { description: 'Ask the user for input', inputSchema: { message: z.string() } },
      async ({ message }, extra) => {
        const result = await ask(extra, {
          method: 'elicitation/create',
          params: { message, requestedSchema: { type: 'object', properties: { answer: { type: 'string' } } } },
        }, ElicitResultSchema);
        return text(JSON.stringify({ action: result.action, content: result.content }));
      });

    server.registerTool('big', { description: 'Return a text of that many bytes', inputSchema: { bytes: z.number() } },
      async ({ bytes }) => text('x'.repeat(bytes)));

    server.registerTool('notify', {
      description: 'Later, send count logging messages and tools/list_changed, unrelated to any request (they travel on the standalone GET stream)',
      inputSchema: { count: z.number(), delayMs: z.number().optional() },
    }, async ({ count, delayMs = 100 }, extra) => {
      setTimeout(async () => {
        try {
          for (let i = 1; i <= count; i += 1) {
            // No relatedRequestId => standalone GET stream (or the event store if none is open).
            await server.server.notification({ method: 'notifications/message', params: { level: 'info', logger: 'notify', data: `notify ${i}/${count}` } });
          }
          await server.server.notification({ method: 'notifications/tools/list_changed' });
        } catch (err) {
          log.push({ kind: 'tool', tool: 'notify', sessionId: extra.sessionId, error: err.message });
        }
      }, delayMs);
      return text(`scheduled ${count} notifications`);
    });

    server.registerTool('burst', {
      description: 'Send count logging messages tied to this request (each padded with `pad` bytes), then return',
      inputSchema: { count: z.number(), pad: z.number().optional() },
    }, async ({ count, pad = 0 }, extra) => {
        for (let i = 1; i <= count; i += 1) {
          await notify(extra, { method: 'notifications/message', params: { level: 'info', logger: 'burst', data: `burst ${i}/${count}${'x'.repeat(pad)}` } });
        }
        return text(`sent ${count}`);
      });

    server.registerTool('cut_stream', {
      description: 'Send a notification, then kill this request\'s SSE response (how=destroy: drop the socket; how=close: end the stream cleanly, SEP-1699 polling), answer ~200ms later. Needs eventStore to be recoverable.',
      inputSchema: { how: z.enum(['destroy', 'close']).optional(), delayMs: z.number().optional() },
    }, async ({ how = 'destroy', delayMs = 200 }, extra) => {
      const token = extra._meta?.progressToken;
      await extra.sendNotification(token !== undefined
        ? { method: 'notifications/progress', params: { progressToken: token, progress: 1, total: 2, message: 'before cut' } }
        : { method: 'notifications/message', params: { level: 'info', logger: 'cut_stream', data: 'before cut' } });
      await sleep(50); // let the notification reach the socket
      const key = `${extra.sessionId}|${extra.requestId}`;
      if (how === 'close' && extra.closeSSEStream) extra.closeSSEStream();
      else cutTargets.get(key)?.destroy();
      cutTargets.delete(key);
      log.push({ kind: 'tool', tool: 'cut_stream', sessionId: extra.sessionId, requestId: extra.requestId, how });
      await sleep(delayMs);
      return text('survived the cut');
    });

    server.registerResource('info', 'info://server', { description: 'About this backend', mimeType: 'application/json' },
      async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ name: 'authful-test-backend', mode, url }) }] }));

    server.registerPrompt('greet', { description: 'Greet someone', argsSchema: { name: z.string() } },
      async ({ name }) => ({ messages: [{ role: 'user', content: { type: 'text', text: `Hello, ${name}!` } }] }));

    return server;
  }

  // ---- HTTP handling ---------------------------------------------------------------------
  async function handle(req, res) {
    const reqUrl = new URL(req.url, origin);
    const entry = {
      kind: 'http',
      time: Date.now(),
      method: req.method,
      path: reqUrl.pathname,
      status: undefined,
      sessionId: req.headers['mcp-session-id'] ?? reqUrl.searchParams.get('sessionId') ?? undefined,
      rpcMethod: undefined,
      rpcMethods: [],
      authorization: req.headers.authorization !== undefined,
      protocolVersion: req.headers['mcp-protocol-version'],
      lastEventId: req.headers['last-event-id'],
      accept: req.headers.accept,
    };
    if (logHeaders.length) {
      entry.headers = Object.fromEntries(logHeaders.map((h) => [h.toLowerCase(), req.headers[h.toLowerCase()]]));
    }
    log.push(entry);
    // Record the status as soon as headers go out (SSE responses stay open for long).
    const writeHead = res.writeHead;
    res.writeHead = function patchedWriteHead(status, ...rest) {
      entry.status = status;
      return writeHead.call(this, status, ...rest);
    };
    res.on('finish', () => { entry.status ??= res.statusCode; });

    // RFC 9728 protected resource metadata (both the path-suffixed and the root form).
    if (protectedResourceMetadata && req.method === 'GET' && reqUrl.pathname.startsWith('/.well-known/oauth-protected-resource')) {
      return sendJson(res, 200, { resource: url, authorization_servers: [issuerOf()], bearer_methods_supported: ['header'], scopes_supported: ['openid', 'profile', 'email', 'offline_access', 'mcp:tools'] });
    }

    const isMcpPath = reqUrl.pathname === path;
    const isLegacyPath = mode === 'legacy' && (reqUrl.pathname === '/messages' || reqUrl.pathname === '/sse');
    if (!isMcpPath && !isLegacyPath) return sendJson(res, 404, { error: 'not found' });

    let body;
    let parseError = false;
    if (req.method === 'POST') {
      const raw = await readBody(req);
      try {
        body = JSON.parse(raw);
      } catch {
        parseError = true;
      }
      const msgs = Array.isArray(body) ? body : [body];
      entry.rpcMethods = msgs.map((m) => m?.method ?? (m && typeof m === 'object' && ('result' in m || 'error' in m) ? 'response' : undefined));
      entry.rpcMethod = entry.rpcMethods.join(',');
      const call = msgs.find((m) => m?.method === 'tools/call');
      if (call) entry.tool = call.params?.name;
    }

    const authResult = await authenticate(req, entry);
    if (!authResult.ok) {
      entry.authError = authResult.reason;
      res.setHeader('WWW-Authenticate', protectedResourceMetadata
        ? `Bearer realm="mcp", error="invalid_token", error_description="${authResult.reason}", resource_metadata="${resourceMetadataUrl}"`
        : `Bearer realm="mcp", error="invalid_token", error_description="${authResult.reason}"`);
      return sendJson(res, 401, { error: 'invalid_token', error_description: authResult.reason });
    }
    if (parseError) return sendJson(res, 400, rpcError(-32700, 'Parse error')); // after auth: 401 wins
    req.auth = authResult.authInfo; // the SDK transports pass req.auth on as extra.authInfo

    // Step-up knob: a 403 insufficient_scope at HTTP level, before the MCP transport.
    const needed = entry.tool !== undefined && Object.hasOwn(requireScopes, entry.tool) ? requireScopes[entry.tool] : undefined;
    if (needed && !(req.auth?.scopes ?? []).includes(needed)) {
      entry.insufficientScope = needed;
      res.setHeader('WWW-Authenticate',
        `Bearer realm="mcp", error="insufficient_scope", scope="${needed}", resource_metadata="${resourceMetadataUrl}", error_description="the ${entry.tool} tool needs the ${needed} scope"`);
      return sendJson(res, 403, { error: 'insufficient_scope', scope: needed });
    }

    if (mode === 'legacy') return handleLegacy(req, res, reqUrl, body);
    return handleStreamable(req, res, body, entry);
  }

  async function handleStreamable(req, res, body, entry) {
    const sid = req.headers['mcp-session-id'];
    if (sid) {
      const session = sessions.get(sid);
      if (!session) return sendJson(res, 404, rpcError(-32001, 'Session not found'));
      if (req.method === 'POST') rememberCutTargets(sid, body, res);
      return session.transport.handleRequest(req, res, body);
    }
    if (req.method === 'POST' && (Array.isArray(body) ? body.some(isInitializeRequest) : isInitializeRequest(body))) {
      const server = createMcpServer();
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        enableJsonResponse: mode === 'json',
        eventStore: eventStore ? new SimpleEventStore() : undefined,
        retryInterval,
        onsessioninitialized: (id) => {
          sessions.set(id, { transport, server, kind: 'streamable' });
          entry.sessionId = id;
        },
        onsessionclosed: (id) => { sessions.delete(id); },
      });
      transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
      await server.connect(transport);
      return transport.handleRequest(req, res, body);
    }
    return sendJson(res, 400, rpcError(-32000, 'Bad Request: No valid session ID provided'));
  }

  async function handleLegacy(req, res, reqUrl, body) {
    if (req.method === 'GET' && (reqUrl.pathname === path || reqUrl.pathname === '/sse')) {
      const server = createMcpServer();
      const transport = new SSEServerTransport('/messages', res);
      sessions.set(transport.sessionId, { transport, server, kind: 'legacy' });
      res.on('close', () => {
        sessions.delete(transport.sessionId);
        server.close().catch(() => {});
      });
      await server.connect(transport); // writes the headers and the `endpoint` event
      return undefined;
    }
    if (req.method === 'POST' && reqUrl.pathname === '/messages') {
      const session = sessions.get(reqUrl.searchParams.get('sessionId'));
      if (!session) return sendJson(res, 404, { error: 'unknown sessionId' });
      return session.transport.handlePostMessage(req, res, body);
    }
    // Streamable HTTP POST/DELETE on the endpoint: not supported here. 405 (or 404) is what
    // the 2025-03-26 spec tells clients to treat as "fall back to GET + SSE".
    res.setHeader('Allow', 'GET');
    return sendJson(res, 405, rpcError(-32000, 'Method not allowed: this server only speaks the 2024-11-05 HTTP+SSE transport'));
  }

  // Remember which HTTP response carries a cut_stream call, so the tool can kill it.
  function rememberCutTargets(sid, body, res) {
    for (const m of Array.isArray(body) ? body : [body]) {
      if (m?.method === 'tools/call' && m.params?.name === 'cut_stream' && m.id !== undefined) {
        const key = `${sid}|${m.id}`;
        cutTargets.set(key, res);
        res.on('close', () => { if (cutTargets.get(key) === res) cutTargets.delete(key); });
      }
    }
  }

  async function dropSessions() {
    const all = [...sessions.values()];
    sessions.clear();
    cutTargets.clear();
    await Promise.allSettled(all.map(async ({ transport, server }) => {
      await transport.close();
      await server.close();
    }));
  }

  return {
    url,
    port: actualPort,
    origin,
    mode,
    log,
    sessions,
    server: httpServer,
    /**
     * Answer 401 invalid_token to the next `n` requests that carry a valid JWT and match
     * `match(entry)` (default: any), as a server that revoked the token would.
     */
    rejectNextValid(n = 1, match = () => true) {
      rejectRules.push({ left: n, match });
    },
    /**
     * Forget every session (old ids get 404; open SSE streams end), like a process
     * restart on the same port. Idle keep-alive sockets are kept: closing them races
     * with clients reusing them and only produces flaky "fetch failed" errors.
     */
    async restart() {
      await dropSessions();
      log.push({ kind: 'restart', time: Date.now() });
    },
    async close() {
      await dropSessions();
      await new Promise((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
    },
  };
}

function rpcError(code, message) {
  return { jsonrpc: '2.0', error: { code, message }, id: null };
}

function sendJson(res, status, obj) {
  const data = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const backend = await startBackend({
    port: Number(process.env.BACKEND_PORT ?? 9401),
    issuer: process.env.OIDC_ISSUER_URL ?? 'http://127.0.0.1:9400',
    mode: process.env.BACKEND_MODE ?? 'sse',
    eventStore: process.env.BACKEND_EVENT_STORE === '1',
  });
  console.error(`backend: ${backend.url} (mode ${backend.mode})`);
  const stop = async () => { await backend.close(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
