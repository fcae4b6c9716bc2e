// An MCP server of the 2026-07-28 era for tests, built on the official TypeScript server SDK
// 2.x (`createMcpHandler` + `toNodeHandler`). Binds 127.0.0.1 only; checks a static bearer
// token, or validates JWT access tokens from an issuer (as examples/backend.mjs); logs every
// HTTP request (the MCP headers it carried, its status, whether the client
// closed the response early) and what the tools saw.
//
//   const be = await startModernBackend({ token: 'tok', legacy: 'reject' });  // modern-only
//   const be = await startModernBackend({ token: 'tok' });                    // both eras
//   ... be.url, be.log, be.notify.toolsChanged() ...; await be.close();
//
// Tools: echo, region (argument `region` annotated `x-mcp-header: Region`, renamed by
// setRegionHeader; answers with the Mcp-Param header it got), bad_header (an invalid annotation: clients must not list
// it), progress, slow (cancellable; logs whether it was cancelled), confirm (asks the client
// to confirm: an `input_required` round in 2026-07-28, an elicitation request in the old
// era), change (publishes tools/list_changed to the subscriptions a moment later).

import http from 'node:http';
import {
  McpServer, createMcpHandler, fromJsonSchema, inputRequired, acceptedContent,
} from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const object = (properties, required = []) => fromJsonSchema({ type: 'object', properties, required });

/** The opaque state the confirm tool hands out: odd bytes, so re-serialising would show. */
export const CONFIRM_STATE = 'state:ä\u2028"q"\\/ 😀';

/**
 * @param {object} opts
 * @param {string} [opts.token]                the bearer token requests must carry, or:
 * @param {() => string} [opts.issuer]         validate JWTs from this issuer (read lazily), for
 *                                             this backend's URL as audience
 * @param {'stateless'|'reject'} [opts.legacy]  how the old era is served (SDK default: stateless)
 */
export async function startModernBackend({ token, issuer, legacy } = {}) {
  const log = [];
  let url;
  let jwks;
  let rejectNext = 0;
  /** Whether the request's bearer token is good (and not refused by the test knob). */
  async function authorized(req) {
    const header = req.headers.authorization ?? '';
    if (!issuer) return header === `Bearer ${token}`;
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) return false;
    try {
      if (!jwks) {
        const meta = await (await fetch(`${issuer()}/.well-known/openid-configuration`)).json();
        jwks = createRemoteJWKSet(new URL(meta.jwks_uri));
      }
      await jwtVerify(m[1], jwks, { issuer: issuer(), audience: url });
    } catch {
      return false;
    }
    if (rejectNext > 0) {
      rejectNext -= 1;
      return false;
    }
    return true;
  }
  let handler;
  let regionHeader = 'Region';
  const factory = () => {
    const server = new McpServer({ name: 'authful-modern-backend', version: '2.0.0' }, { capabilities: { tools: { listChanged: true } } });
    server.registerTool('echo', { description: 'Echo text back', inputSchema: object({ text: { type: 'string' } }, ['text']) },
      async ({ text: t }) => text(t));
    server.registerTool('region', {
      description: 'Answer with the region and the Mcp-Param-Region header seen',
      inputSchema: object({ region: { type: 'string', 'x-mcp-header': regionHeader }, q: { type: 'string' } }, ['region']),
    }, async ({ region }, ctx) => {
      const header = ctx.http?.req?.headers.get(`mcp-param-${regionHeader}`) ?? null;
      log.push({ kind: 'tool', tool: 'region', region, header });
      return text(JSON.stringify({ region, header }));
    });
    server.registerTool('bad_header', {
      description: 'Invalid: x-mcp-header on a number',
      inputSchema: object({ n: { type: 'number', 'x-mcp-header': 'N' } }),
    }, async () => text('should not be listed'));
    server.registerTool('progress', { description: 'Report progress steps', inputSchema: object({ steps: { type: 'integer' } }, ['steps']) },
      async ({ steps }, ctx) => {
        const progressToken = ctx.mcpReq._meta?.progressToken;
        for (let i = 1; i <= steps; i += 1) {
          if (progressToken !== undefined) {
            await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress: i, total: steps } });
          }
          await sleep(20);
        }
        return text(`done ${steps}`);
      });
    server.registerTool('slow', { description: 'Sleep ms (cancellable)', inputSchema: object({ ms: { type: 'integer' } }, ['ms']) },
      async ({ ms }, ctx) => {
        const started = Date.now();
        const signal = ctx.mcpReq.signal;
        const cancelled = await new Promise((resolve) => {
          if (signal.aborted) return resolve(true);
          const t = setTimeout(() => resolve(false), ms);
          signal.addEventListener('abort', () => { clearTimeout(t); resolve(true); }, { once: true });
        });
        log.push({ kind: 'tool', tool: 'slow', cancelled, elapsedMs: Date.now() - started });
        return text(cancelled ? 'cancelled' : `slept ${ms}ms`);
      });
    server.registerTool('confirm', { description: 'Ask the client to confirm', inputSchema: object({ what: { type: 'string' } }, ['what']) },
      async ({ what }, ctx) => {
        const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] };
        if (ctx.mcpReq.envelope) {
          const answer = acceptedContent(ctx.mcpReq.inputResponses, 'confirm');
          if (!answer) {
            log.push({ kind: 'tool', tool: 'confirm', round: 'asked' });
            return inputRequired({
              inputRequests: { confirm: inputRequired.elicit({ message: `Confirm ${what}?`, requestedSchema: schema }) },
              requestState: CONFIRM_STATE,
            });
          }
          const state = ctx.mcpReq.requestState();
          log.push({ kind: 'tool', tool: 'confirm', round: 'answered', state, answer });
          return text(JSON.stringify({ what, ok: answer.ok, stateIntact: state === CONFIRM_STATE }));
        }
        const r = await ctx.mcpReq.elicitInput({ message: `Confirm ${what}?`, requestedSchema: schema });
        log.push({ kind: 'tool', tool: 'confirm', round: 'elicited', answer: r.content });
        return text(JSON.stringify({ what, ok: r.content?.ok, stateIntact: true }));
      });
    server.registerTool('change', { description: 'Publish tools/list_changed a moment later' },
      async () => {
        setTimeout(() => handler.notify.toolsChanged(), 100);
        return text('will change');
      });
    return server;
  };
  handler = createMcpHandler(factory, legacy ? { legacy } : {});
  const serve = toNodeHandler(handler);

  const httpServer = http.createServer((req, res) => {
    const entry = {
      kind: 'http',
      method: req.method,
      mcpMethod: req.headers['mcp-method'],
      mcpName: req.headers['mcp-name'],
      version: req.headers['mcp-protocol-version'],
      session: req.headers['mcp-session-id'],
      params: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('mcp-param-'))),
      status: undefined,
      closedEarly: false,
    };
    log.push(entry);
    res.on('close', () => { entry.status = res.statusCode; entry.closedEarly = !res.writableFinished; });
    authorized(req).then((ok) => {
      if (ok) return serve(req, res);
      res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"', 'content-type': 'text/plain' });
      return res.end('missing or wrong token');
    });
  });
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(0, '127.0.0.1', resolve);
  });
  url = `http://127.0.0.1:${httpServer.address().port}/mcp`;
  return {
    url,
    log,
    notify: handler.notify,
    /** Answer 401 to the next `n` requests whose token is valid (a revoked token, say). */
    rejectValidTokens(n) { rejectNext = n; },
    /** Rename the region tool's header annotation (a schema change clients learn by listing). */
    setRegionHeader(name) { regionHeader = name; },
    tools: (name) => log.filter((e) => e.kind === 'tool' && e.tool === name),
    posts: () => log.filter((e) => e.kind === 'http' && e.method === 'POST'),
    async close() {
      await handler.close().catch(() => {});
      httpServer.closeAllConnections?.();
      await new Promise((r) => httpServer.close(r));
    },
  };
}

/**
 * The same tools on today's SDK 1.x, which speaks only the old era (2025-11-25 and older):
 * sessionful Streamable HTTP with a GET stream. `region` carries no annotation (the old era
 * has no Mcp-Param headers); `confirm` asks with an elicitation request; `change` sends
 * tools/list_changed on the session's GET stream.
 */
export async function startOldBackend({ token } = {}) {
  const { McpServer: McpServer1 } = await import('@modelcontextprotocol/sdk/server/mcp.js');
  const { StreamableHTTPServerTransport } = await import('@modelcontextprotocol/sdk/server/streamableHttp.js');
  const { isInitializeRequest } = await import('@modelcontextprotocol/sdk/types.js');
  const { z } = await import('zod');
  const { randomUUID } = await import('node:crypto');
  const log = [];
  const sessions = new Map();
  const factory = () => {
    const server = new McpServer1({ name: 'authful-old-backend', version: '1.0.0' });
    server.registerTool('echo', { inputSchema: { text: z.string() } }, async ({ text: t }) => text(t));
    server.registerTool('region', { inputSchema: { region: z.string(), q: z.string().optional() } }, async ({ region }, extra) => {
      const header = extra.requestInfo?.headers?.['mcp-param-region'] ?? null;
      log.push({ kind: 'tool', tool: 'region', region, header });
      return text(JSON.stringify({ region, header }));
    });
    server.registerTool('progress', { inputSchema: { steps: z.number() } }, async ({ steps }, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= steps; i += 1) {
        if (progressToken !== undefined) {
          await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: i, total: steps } });
        }
        await sleep(20);
      }
      return text(`done ${steps}`);
    });
    server.registerTool('slow', { inputSchema: { ms: z.number() } }, async ({ ms }, extra) => {
      const started = Date.now();
      const cancelled = await new Promise((resolve) => {
        if (extra.signal.aborted) return resolve(true);
        const t = setTimeout(() => resolve(false), ms);
        extra.signal.addEventListener('abort', () => { clearTimeout(t); resolve(true); }, { once: true });
      });
      log.push({ kind: 'tool', tool: 'slow', cancelled, elapsedMs: Date.now() - started });
      return text(cancelled ? 'cancelled' : `slept ${ms}ms`);
    });
    server.registerTool('confirm', { inputSchema: { what: z.string() } }, async ({ what }) => {
      const r = await server.server.elicitInput({
        message: `Confirm ${what}?`,
        requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] },
      });
      log.push({ kind: 'tool', tool: 'confirm', round: 'elicited', answer: r.content });
      return text(JSON.stringify({ what, ok: r.content?.ok, stateIntact: true }));
    });
    server.registerTool('change', {}, async () => {
      setTimeout(() => server.sendToolListChanged(), 100);
      return text('will change');
    });
    return server;
  };
  const readBody = async (req) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
  };
  const httpServer = http.createServer(async (req, res) => {
    const entry = {
      kind: 'http', method: req.method, mcpMethod: req.headers['mcp-method'], session: req.headers['mcp-session-id'], status: undefined, closedEarly: false,
    };
    log.push(entry);
    res.on('close', () => { entry.status = res.statusCode; entry.closedEarly = !res.writableFinished; });
    if (req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"', 'content-type': 'text/plain' });
      return res.end('missing or wrong token');
    }
    let body;
    try {
      body = req.method === 'POST' ? await readBody(req) : undefined;
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }));
    }
    entry.rpcMethod = body?.method;
    const sid = req.headers['mcp-session-id'];
    if (sid && sessions.has(sid)) return sessions.get(sid).handleRequest(req, res, body);
    if (req.method === 'POST' && isInitializeRequest(body)) {
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        onsessioninitialized: (id) => sessions.set(id, transport),
        onsessionclosed: (id) => sessions.delete(id),
      });
      await factory().connect(transport);
      return transport.handleRequest(req, res, body);
    }
    res.writeHead(sid ? 404 : 400, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Bad Request: Server not initialized' } }));
  });
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${httpServer.address().port}/mcp`;
  return {
    url,
    log,
    tools: (name) => log.filter((e) => e.kind === 'tool' && e.tool === name),
    posts: () => log.filter((e) => e.kind === 'http' && e.method === 'POST'),
    async close() {
      for (const t of sessions.values()) await t.close().catch(() => {});
      httpServer.closeAllConnections?.();
      await new Promise((r) => httpServer.close(r));
    },
  };
}
