#!/usr/bin/env node
'use strict'
// The npx launcher: argv in, exit code out. It never touches Node's stdin or stdout streams
// (not even .isTTY): Rust owns fd 0/1, and Node would make them non-blocking (EAGAIN in Rust).
let api
try {
  api = require('./index.js')
} catch (err) {
  process.stderr.write(`authful-mcp-proxy: ${err.message}\n`)
  process.exitCode = 1
  return
}

let signals = 0
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    // First signal: close the session cleanly. A second one: stop now.
    if (signals++) process.exit(130)
    api.shutdown()
  })
}

// exitCode, not process.exit(): exit() can drop unflushed JSON-RPC replies on stdout.
api.run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
    // Nothing keeps Node alive after this but the signal handlers.
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.removeAllListeners(sig)
  },
  (err) => {
    process.stderr.write(`authful-mcp-proxy: ${err && err.message}\n`)
    process.exitCode = 1
  },
)
