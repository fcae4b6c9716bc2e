// The "modern" MCP backend for `npm run bench`: the official TypeScript server SDK 2.x
// (`createMcpHandler`, modern-only: legacy 'reject'), speaking MCP 2026-07-28. Tools `echo`
// and `big` (a text of `bytes` bytes). Like the instant backend it only checks that a bearer
// token is present, so what is measured is the client side. Binds 127.0.0.1.
//
//   import { startModernBenchBackend } from './modern-backend.mjs'
//   const be = await startModernBenchBackend(); ... be.url ...; await be.close()

import http from 'node:http';
import { McpServer, createMcpHandler, fromJsonSchema } from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';

export async function startModernBenchBackend() {
  const stats = { requests: 0, unauthorized: 0 };
  const factory = () => {
    const server = new McpServer({ name: 'bench-modern-backend', version: '1.0.0' });
    const schema = (properties) => fromJsonSchema({ type: 'object', properties });
    server.registerTool('echo', { inputSchema: schema({ text: { type: 'string' } }) },
      async ({ text }) => ({ content: [{ type: 'text', text: text ?? '' }] }));
    server.registerTool('big', { inputSchema: schema({ bytes: { type: 'integer' } }) },
      async ({ bytes }) => ({ content: [{ type: 'text', text: 'x'.repeat(bytes ?? 1 << 20) }] }));
    return server;
  };
  const handler = createMcpHandler(factory, { legacy: 'reject', responseMode: 'json' });
  const serve = toNodeHandler(handler);
  const server = http.createServer((req, res) => {
    stats.requests += 1;
    if (!/^Bearer \S+/.test(req.headers.authorization ?? '')) {
      stats.unauthorized += 1;
      res.writeHead(401, { 'www-authenticate': 'Bearer' });
      res.end();
      return;
    }
    serve(req, res);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/mcp`,
    stats,
    async close() {
      await handler.close().catch(() => {});
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
  };
}
