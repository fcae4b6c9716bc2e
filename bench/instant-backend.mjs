// The "instant" MCP backend for `npm run bench`: plain node:http, fixed pre-serialized
// answers, no MCP SDK. It only checks that a bearer token is present (any value), so what
// is measured is the client side (SDK client, proxy), not the server. Binds 127.0.0.1.
//
//   POST initialize            → JSON result + Mcp-Session-Id
//   POST notification/response → 202, empty body
//   POST tools/list            → one tool list
//   POST tools/call            → name "big": a text of `arguments.bytes` bytes (default 1 MiB);
//                                anything else: a small text
//   POST ping                  → {}
//   GET                        → 405 (no standalone stream)
//   DELETE                     → 200, session forgotten
//
//   import { startInstantBackend } from './instant-backend.mjs'
//   const be = await startInstantBackend(); ... be.url, be.stats ...; await be.close()

import http from 'node:http';
import { randomUUID } from 'node:crypto';

import fixed from './answers.cjs';

/** One answer (serialized), or undefined for notifications/responses. */
const answer = (msg) => fixed.answer(msg, 'bench-instant-backend');

function send(res, status, body, headers = {}) {
  if (body === undefined) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/**
 * @param {object} [opts]
 * @param {number} [opts.port=0]
 * @param {string} [opts.path='/mcp']
 */
export async function startInstantBackend(opts = {}) {
  const { port = 0, path = '/mcp' } = opts;
  const sessions = new Set();
  const stats = { posts: 0, gets: 0, deletes: 0, unauthorized: 0, sessions: 0 };

  const server = http.createServer((req, res) => {
    const q = req.url.indexOf('?');
    if ((q < 0 ? req.url : req.url.slice(0, q)) !== path) return send(res, 404, '{"error":"not found"}');
    if (!/^Bearer\s+\S+/i.test(req.headers.authorization ?? '')) {
      stats.unauthorized += 1;
      // Drain the body so the connection stays usable.
      req.resume();
      return send(res, 401, '{"error":"invalid_token"}', { 'www-authenticate': 'Bearer error="invalid_token"' });
    }
    const sid = req.headers['mcp-session-id'];
    if (req.method === 'GET') {
      stats.gets += 1;
      req.resume();
      return send(res, 405, '{"error":"no standalone stream"}', { allow: 'POST, DELETE' });
    }
    if (req.method === 'DELETE') {
      stats.deletes += 1;
      req.resume();
      sessions.delete(sid);
      return send(res, 200, undefined);
    }
    if (req.method !== 'POST') {
      req.resume();
      return send(res, 405, '{"error":"method not allowed"}');
    }
    stats.posts += 1;
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body;
      try {
        body = JSON.parse(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
      } catch {
        return send(res, 400, '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}');
      }
      const msgs = Array.isArray(body) ? body : [body];
      const init = msgs.some((m) => m?.method === 'initialize');
      const headers = {};
      if (init) {
        const id = randomUUID();
        sessions.add(id);
        stats.sessions += 1;
        headers['mcp-session-id'] = id;
      } else if (!sid || !sessions.has(sid)) {
        return send(res, sid ? 404 : 400, '{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}');
      }
      const answers = msgs.map(answer).filter((a) => a !== undefined);
      if (answers.length === 0) return send(res, 202, undefined, headers);
      return send(res, 200, Array.isArray(body) ? `[${answers.join(',')}]` : answers[0], headers);
    });
    return undefined;
  });
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const actualPort = server.address().port;
  return {
    url: `http://127.0.0.1:${actualPort}${path}`,
    port: actualPort,
    stats,
    sessions,
    async close() {
      await new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
