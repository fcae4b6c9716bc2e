'use strict'
// The fixed, pre-serialized MCP answers of the benchmark's instant servers (the stdio floor
// and the node:http backend), so both answer exactly alike. CommonJS so the floor loads it
// with the same module loader as cli.js.

const TOOLS = JSON.stringify({
  tools: [
    { name: 'echo', description: 'Answers "ok" at once', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
    { name: 'big', description: 'A text of `bytes` bytes', inputSchema: { type: 'object', properties: { bytes: { type: 'number' } } } },
  ],
})
const SMALL = JSON.stringify({ content: [{ type: 'text', text: 'ok' }] })
const bigCache = new Map() // bytes -> serialized result

function bigResult(bytes) {
  let r = bigCache.get(bytes)
  if (!r) {
    r = JSON.stringify({ content: [{ type: 'text', text: 'x'.repeat(bytes) }] })
    if (bigCache.size > 4) bigCache.clear()
    bigCache.set(bytes, r)
  }
  return r
}

/**
 * The serialized answer to a parsed message, or undefined for notifications and responses:
 * initialize, tools/list, tools/call (name "big": a text of `arguments.bytes` bytes, default
 * 1 MiB; else a small text), ping; anything else is -32601.
 */
function answer(msg, serverName) {
  if (!msg || typeof msg !== 'object' || typeof msg.method !== 'string' || msg.id === undefined) return undefined
  const id = JSON.stringify(msg.id)
  let result
  switch (msg.method) {
    case 'initialize':
      result = JSON.stringify({
        protocolVersion: typeof msg.params?.protocolVersion === 'string' ? msg.params.protocolVersion : '2025-06-18',
        capabilities: { tools: {} },
        serverInfo: { name: serverName, version: '1.0.0' },
      })
      break
    case 'tools/list':
      result = TOOLS
      break
    case 'tools/call':
      result = msg.params?.name === 'big' ? bigResult(Number(msg.params?.arguments?.bytes ?? 1 << 20)) : SMALL
      break
    case 'ping':
      result = '{}'
      break
    default:
      return `{"jsonrpc":"2.0","id":${id},"error":{"code":-32601,"message":"Method not found"}}`
  }
  return `{"jsonrpc":"2.0","id":${id},"result":${result}}`
}

module.exports = { answer }
