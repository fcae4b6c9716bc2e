#!/usr/bin/env node
'use strict'
// The "floor" of `npm run bench`: an instant stdio MCP server in Node (CommonJS, like cli.js,
// so both pay the same module-loader start-up), i.e. the least any
// stdio proxy written for Node can cost (process start, pipe hops, one event loop). Raw
// newline-delimited JSON-RPC, no SDK; answers initialize, tools/list, tools/call (name
// "big": a text of `arguments.bytes` bytes, else a small text) and ping at once;
// notifications are ignored. Exits as soon as stdin ends.

const { answer: fixedAnswer } = require('./answers.cjs')

function answer(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}';
  }
  return fixedAnswer(msg, 'bench-floor')
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
