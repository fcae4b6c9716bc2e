// The Node API's surface against the command line and real parts:
//  - every flag `node cli.js --help` lists has a camelCase option, documented in index.d.ts,
//    that index.js turns back into that flag (so the two cannot drift apart);
//  - createAuthFetch steps up on a 403 `insufficient_scope` like the proxy (one more login
//    with the scopes the server names, one retry), against oidc-provider and the SDK backend.
//   node --test --test-concurrency=1 __test__/api-surface.test.mjs
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { startRig, freePort, browserEnv, readBrowserLog, killStrayBrowsers } from './helpers/rig.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)
const api = require('../index.js')
const scratch = mkdtempSync(join(tmpdir(), 'authful-api-surface-'))
const pidFile = join(scratch, 'browsers.pids')
after(async () => {
  await killStrayBrowsers(pidFile)
  rmSync(scratch, { recursive: true, force: true })
})

// Flags that are not options of a configuration, with the reason.
const NOT_OPTIONS = {
  '--help': 'prints the help',
  '--version': 'prints the version',
  '--all': 'logout(options, { all: true })',
  '--json': 'status() resolves with the object',
}

/** The long flags `--help` lists. */
function helpFlags() {
  const r = spawnSync(process.execPath, [join(root, 'cli.js'), '--help'], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  const flags = [...`${r.stdout}${r.stderr}`.matchAll(/^\s+(?:-[A-Za-z], )?(--[a-z][a-z-]*)/gm)].map((m) => m[1])
  assert.ok(flags.length > 15, `flags found in --help: ${flags}`)
  return [...new Set(flags)]
}

/** ProxyOptions in index.d.ts: name → { type, doc }. */
function declaredOptions() {
  const dts = readFileSync(join(root, 'index.d.ts'), 'utf8')
  const body = /export interface ProxyOptions \{([\s\S]*?)\n\}/.exec(dts)?.[1]
  assert.ok(body, 'index.d.ts declares ProxyOptions')
  const out = {}
  for (const m of body.matchAll(/(\/\*\*[\s\S]*?\*\/)?\s*(\w+)\?: ([^\n]+)/g)) {
    out[m[2]] = { doc: m[1], type: m[3] }
  }
  return out
}

/** A value of the declared type, for toArgv. */
function sample(type) {
  if (type.startsWith('boolean')) return true
  if (type.startsWith('number')) return 7
  if (type.includes('[]') && type.includes('Record')) return ['k=v']
  if (type.startsWith("'")) return /'([^']+)'/.exec(type)[1]
  return 'x'
}

test('every --help flag has a documented camelCase API option that maps back to it', () => {
  const declared = declaredOptions()
  const byFlag = {}
  for (const [name, { type, doc }] of Object.entries(declared)) {
    assert.ok(doc && doc.length > 10, `index.d.ts documents \`${name}\``)
    if (name === 'backendUrl') continue
    const argv = api.toArgv({ [name]: sample(type) })
    assert.equal(argv.length, 1, `${name} → ${argv}`)
    const flag = argv[0].split('=')[0]
    byFlag[flag] = [...(byFlag[flag] ?? []), name]
  }
  const missing = helpFlags().filter((f) => !(f in NOT_OPTIONS) && !byFlag[f])
  assert.deepEqual(missing, [], 'flags in --help without an API option (add one line to OPTIONS in index.js and a documented property in index.d.ts)')
  const stale = Object.keys(byFlag).filter((f) => !helpFlags().includes(f))
  assert.deepEqual(stale, [], 'API options for flags --help does not list')
  // The flag's own name in camelCase works too.
  assert.deepEqual(api.toArgv({ oidcIssuerUrl: 'https://i', header: ['A: b'], authorizeParam: 'prompt=consent' }),
    ['--oidc-issuer-url=https://i', '--header=A: b', '--authorize-param=prompt=consent'])
})

test('toArgv: lists, objects and values starting with `-` keep their meaning; unknown options are refused', () => {
  assert.deepEqual(api.toArgv({ backendUrl: 'https://b/mcp', authorizeParams: { audience: 'a', prompt: 'consent' }, headers: { 'X-A': '1' }, scopes: ['s1', 's2'] }),
    ['--authorize-param=audience=a', '--authorize-param=prompt=consent', '--header=X-A: 1', '--oidc-scopes=s1 s2', 'https://b/mcp'])
  assert.deepEqual(api.toArgv({ clientSecret: '-starts-with-dash', deviceCode: false, resource: undefined }), ['--oidc-client-secret=-starts-with-dash'])
  assert.throws(() => api.toArgv({ bogus: 1 }), (e) => e.code === 'ERR_CONFIG' && /bogus/.test(e.message))
  assert.throws(() => api.toArgv({ deviceCode: 'yes' }), (e) => e.code === 'ERR_CONFIG')
  assert.throws(() => api.toArgv({ toString: 'x' }), (e) => e.code === 'ERR_CONFIG', 'no prototype keys')
})

test('the options reach the core: a bad value gets the command line\'s usage error', async () => {
  await assert.rejects(api.status({ issuerUrl: 'https://i.example', clientId: 'c', maxOutputBytes: 'lots' }),
    (e) => e.code === 'ERR_CONFIG' && /--max-output-bytes/.test(e.message))
  await assert.rejects(api.status({ issuerUrl: 'https://i.example', clientId: 'c', deviceCode: true, clientCredentials: true }),
    (e) => e.code === 'ERR_CONFIG' && /cannot be used together/.test(e.message))
})

test('createAuthFetch: a 403 insufficient_scope logs in once more with the named scope and retries once', { timeout: 60_000 }, async (t) => {
  const rig = await startRig({ idp: { extraResourceScopes: ['mcp:admin'] }, backend: { requireScopes: { admin: 'mcp:admin' } } })
  t.after(() => rig.close())
  const log = join(scratch, 'browser.log')
  const env = browserEnv({ log, pidFile })
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
  Object.assign(process.env, env) // the core reads $BROWSER from this process's environment
  t.after(() => { for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v })
  const options = {
    issuerUrl: rig.issuer, clientId: 'demo-client', silent: true, authTimeout: 20,
    redirectUrl: `http://127.0.0.1:${await freePort()}/auth/callback`, cacheDir: join(scratch, 'stepup'),
  }
  const client = new Client({ name: 'api-surface', version: '1.0.0' })
  await client.connect(new StreamableHTTPClientTransport(new URL(rig.backendUrl), { fetch: api.createAuthFetch(options) }))
  try {
    const who = JSON.parse((await client.callTool({ name: 'whoami', arguments: {} })).content[0].text)
    assert.ok(!String(who.scope).split(' ').includes('mcp:admin'))
    const admin = JSON.parse((await client.callTool({ name: 'admin', arguments: {} })).content[0].text)
    assert.ok(String(admin.scope).split(' ').includes('mcp:admin'), JSON.stringify(admin))
    const opened = (await readBrowserLog(log)).filter((e) => e.event === 'opened')
    assert.equal(opened.length, 2, 'one more login')
    assert.ok(new URL(opened[1].url).searchParams.get('scope').split(' ').includes('mcp:admin'))
    const refused = rig.backend.log.filter((e) => e.kind === 'http' && e.status === 403)
    assert.equal(refused.length, 1, 'one 403, then the retry succeeded')
  } finally {
    await client.close()
  }
})
