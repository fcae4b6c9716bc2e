// The Node API (index.js) against real parts: oidc-provider, the JWT-validating SDK backend,
// the headless browser, and the official SDK client. Plus `npm run demo` as a user runs it.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { startRig, tmpHome, freePort, browserEnv, readBrowserLog, killStrayBrowsers } from './helpers/rig.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)
const api = require('../index.js')
const pidFile = join(tmpdir(), `authful-api-test-${process.pid}.pids`)

let rig
let home
let browserLog
let base // options shared by the tests (each test adds its own cacheDir)

before(async () => {
  rig = await startRig({ accessTokenTtl: 300 })
  home = await tmpHome()
  browserLog = join(home.dir, 'browser.log')
  // The core reads $BROWSER from this process's environment.
  Object.assign(process.env, browserEnv({ log: browserLog, pidFile }))
  base = {
    issuerUrl: rig.issuer,
    clientId: 'demo-client',
    redirectUrl: `http://127.0.0.1:${await freePort()}/auth/callback`,
    authTimeout: 20,
    silent: true,
  }
})

after(async () => {
  await killStrayBrowsers(pidFile)
  await rig?.close()
  await home?.cleanup()
})

const opts = (name, extra = {}) => ({ ...base, cacheDir: join(home.dir, name), ...extra })

test('getAccessToken logs in once, then answers from the cache', async () => {
  const o = opts('gat')
  const before = rig.idp.stats.codeExchanges
  const t1 = await api.getAccessToken(o)
  assert.match(t1, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT access token')
  assert.equal(rig.idp.stats.codeExchanges, before + 1)
  const t2 = await api.getAccessToken(o)
  assert.equal(t2, t1)
  assert.equal(rig.idp.stats.codeExchanges, before + 1, 'no second login')
  const opened = (await readBrowserLog(browserLog)).filter((e) => e.event === 'opened')
  assert.ok(opened.length >= 1)
})

test('login and status report the login without any token', async () => {
  const o = opts('status')
  const s0 = await api.status(o)
  assert.equal(s0.loggedIn, false)
  const s1 = await api.login(o)
  assert.equal(s1.loggedIn, true)
  assert.equal(s1.hasRefreshToken, true)
  assert.equal(s1.username ?? s1.subject, 'alice')
  assert.ok(s1.expiresAt > Date.now() / 1000)
  assert.ok(existsSync(s1.cacheFile))
  const s2 = await api.status(o)
  assert.equal(s2.loggedIn, true)
  for (const s of [s1, s2]) assert.doesNotMatch(JSON.stringify(s), /eyJ/, 'no token in the status')
})

test('logout removes the cached login', async () => {
  const o = opts('logout')
  const s = await api.login(o)
  assert.deepEqual(await api.logout(o), { removed: 1 })
  assert.equal(existsSync(s.cacheFile), false)
  assert.equal((await api.status(o)).loggedIn, false)
  assert.deepEqual(await api.logout(o), { removed: 0 })
  await api.login(opts('logout-all-1'))
  assert.deepEqual(await api.logout(opts('logout-all-1'), { all: true }), { removed: 1 })
})

test('createAuthFetch drives the SDK transport; a 401 refreshes once and retries once', async () => {
  const o = opts('fetch')
  const client = new Client({ name: 'api-test', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(rig.backendUrl), { fetch: api.createAuthFetch(o) })
  try {
    await client.connect(transport)
    const who = await client.callTool({ name: 'whoami', arguments: {} })
    assert.equal(JSON.parse(who.content[0].text).sub, 'alice')
    const refreshes = rig.idp.stats.refreshes
    rig.backend.rejectNextValid(1, (e) => e.rpcMethod === 'tools/call')
    const again = await client.callTool({ name: 'echo', arguments: { text: 'after 401' } })
    assert.equal(again.content[0].text, 'after 401')
    assert.equal(rig.idp.stats.refreshes, refreshes + 1, 'exactly one refresh')
    const refused = rig.backend.log.filter((e) => e.kind === 'http' && e.status === 401 && e.rpcMethod === 'tools/call')
    assert.equal(refused.length, 1, 'one 401, then the retry succeeded')
  } finally {
    await client.close()
  }
})

test('runProxy serves an MCP client over the process stdio', async () => {
  const o = opts('runproxy', { backendUrl: rig.backendUrl, noBanner: true })
  await api.login(o) // so the child needs no browser
  const script = `require(${JSON.stringify(join(root, 'index.js'))}).runProxy(${JSON.stringify(o)}).then((c) => { process.exitCode = c })`
  const transport = new StdioClientTransport({ command: process.execPath, args: ['-e', script], stderr: 'pipe' })
  const client = new Client({ name: 'api-test', version: '1.0.0' })
  const errors = []
  try {
    await client.connect(transport)
    transport.onerror = (e) => errors.push(e)
    const r = await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } })
    assert.equal(r.content[0].text, '42')
    assert.deepEqual(errors, [])
  } finally {
    await client.close()
  }
})

test('errors carry a stable code and a hint', async () => {
  await assert.rejects(api.getAccessToken({ cacheDir: join(home.dir, 'x') }), (e) => e.code === 'ERR_CONFIG' && /issuer/.test(e.message) && /OIDC_ISSUER_URL/.test(e.hint))
  await assert.rejects(api.status({ ...base, bogus: 1 }), (e) => e.code === 'ERR_CONFIG' && /bogus/.test(e.message))
  const closed = await freePort()
  await assert.rejects(
    api.getAccessToken(opts('unreachable', { issuerUrl: `http://127.0.0.1:${closed}` })),
    (e) => e.code === 'ERR_DISCOVERY' && e.message.includes(`127.0.0.1:${closed}`),
  )
})

test('npm run demo shows the tools and a tool result, exits 0 and leaves nothing running', async () => {
  const child = spawn(process.execPath, [join(root, 'examples', 'demo.mjs')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (out += d))
  const code = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`demo timed out:\n${out}`)), 60_000)
    child.on('exit', (c) => (clearTimeout(t), resolve(c)))
  })
  assert.equal(code, 0, out)
  assert.match(out, /tools\s+echo, add, whoami/)
  assert.match(out, /echo\s+hello through the proxy/)
  assert.match(out, /whoami\s+\{"sub":"alice"/)
})
