#!/usr/bin/env node
// `npm run demo`: the proxy end to end on this machine. Starts the example identity provider
// (oidc-provider) and the token-validating MCP backend on loopback, runs `authful-mcp-proxy`
// under the official MCP SDK client as an MCP host would, logs in (headless by default;
// `npm run demo -- --interactive` opens your real browser), lists the backend's tools, calls
// two of them, and stops everything it started.
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import net from 'node:net'
import { startIdp } from './idp.mjs'
import { startBackend } from './backend.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const interactive = process.argv.includes('--interactive')
const say = (m) => process.stdout.write(`${m}\n`)

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
    s.on('error', reject)
  })

let issuer
const backend = await startBackend({ issuer: () => issuer })
const idp = await startIdp({ resource: backend.url })
issuer = idp.issuer
const cacheDir = mkdtempSync(join(tmpdir(), 'authful-demo-'))
const callbackPort = await freePort()
let client
let code = 0
try {
  say(`identity provider  ${idp.issuer}  (oidc-provider, any username logs in)`)
  say(`MCP backend        ${backend.url}  (validates JWT access tokens from that issuer)`)
  say(`proxy              node cli.js ${backend.url}  (${interactive ? 'your browser' : 'headless browser'} for the login)`)

  const env = {
    ...process.env,
    OIDC_ISSUER_URL: idp.issuer,
    OIDC_CLIENT_ID: 'demo-client',
    OIDC_REDIRECT_URL: `http://127.0.0.1:${callbackPort}/auth/callback`,
    MCP_PROXY_CACHE_DIR: cacheDir,
  }
  if (!interactive) env.BROWSER = `${process.execPath} ${join(root, '__test__', 'helpers', 'browser.mjs')}`
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [join(root, 'cli.js'), '--no-banner', backend.url],
    env,
    stderr: interactive ? 'inherit' : 'pipe',
  })
  let stderr = ''
  transport.stderr?.on('data', (d) => (stderr += d))
  client = new Client({ name: 'authful-demo', version: '1.0.0' })

  const t0 = Date.now()
  await client.connect(transport)
  say(`\nlogged in and connected in ${Date.now() - t0} ms (one code exchange: ${idp.stats.codeExchanges})`)
  const { tools } = await client.listTools()
  say(`tools              ${tools.map((t) => t.name).join(', ')}`)
  const echo = await client.callTool({ name: 'echo', arguments: { text: 'hello through the proxy' } })
  say(`echo               ${echo.content[0].text}`)
  const who = await client.callTool({ name: 'whoami', arguments: {} })
  say(`whoami             ${who.content[0].text}`)
  if (stderr.includes('eyJ')) throw new Error('a token appeared on the proxy stderr')
  say('\ndone: the backend saw a valid bearer token on every request; stdout carried only JSON-RPC.')
} catch (err) {
  code = 1
  process.stderr.write(`demo failed: ${err && err.stack ? err.stack : err}\n`)
} finally {
  await client?.close().catch(() => {})
  await backend.close()
  await idp.close()
  rmSync(cacheDir, { recursive: true, force: true })
  process.exitCode = code
}
