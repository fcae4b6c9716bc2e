#!/usr/bin/env node
'use strict'
// The "floor" of `npm run bench`: an instant stdio MCP server in Node (CommonJS, like cli.js,
// so both pay the same module-loader start-up), i.e. the least any
// stdio proxy written for Node can cost (process start, pipe hops, one event loop). Raw
// newline-delimited JSON-RPC, no SDK; answers initialize, tools/list, tools/call (name
// "big": a text of `arguments.bytes` bytes, else a small text) and ping at once;
// notifications are ignored. Exits as soon as stdin ends.

const TOOLS = JSON.stringify({
  tools: [
    { name: 'echo', description: 'Answers "ok" at once', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
    { name: 'big', description: 'A text of `bytes` bytes', inputSchema: { type: 'object', properties: { bytes: { type: 'number' } } } },
  ],
});
const SMALL = JSON.stringify({ content: [{ type: 'text', text: 'ok' }] });
const bigCache = new Map();

function bigResult(bytes) {
  let r = bigCache.get(bytes);
  if (!r) {
    r = JSON.stringify({ content: [{ type: 'text', text: 'x'.repeat(bytes) }] });
    bigCache.set(bytes, r);
  }
  return r;
}

function answer(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}';
  }
  if (!msg || typeof msg.method !== 'string' || msg.id === undefined) return undefined;
  const id = JSON.stringify(msg.id);
  let result;
  switch (msg.method) {
    case 'initialize':
      result = JSON.stringify({
        protocolVersion: msg.params?.protocolVersion ?? '2025-06-18',
        capabilities: { tools: {} },
        serverInfo: { name: 'bench-floor', version: '1.0.0' },
      });
      break;
    case 'tools/list': result = TOOLS; break;
    case 'tools/call':
      result = msg.params?.name === 'big' ? bigResult(Number(msg.params?.arguments?.bytes ?? 1 << 20)) : SMALL;
      break;
    case 'ping': result = '{}'; break;
    default:
      return `{"jsonrpc":"2.0","id":${id},"error":{"code":-32601,"message":"Method not found"}}`;
  }
  return `{"jsonrpc":"2.0","id":${id},"result":${result}}`;
}

let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buf += chunk;
  let out = '';
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    if (line.trim() === '') continue;
    const a = answer(line);
    if (a !== undefined) out += `${a}\n`;
  }
  if (out) process.stdout.write(out);
});
// Pipes are synchronous on POSIX in Node, so nothing written is lost by exiting at once.
process.stdin.on('end', () => process.exit(0));
