'use strict'
// The public JS API of authful-mcp-proxy, for Node MCP tooling. Options use the CLI's names
// in camelCase and go through the same parser and validation as the command line.

const { platform, arch } = process

function loadBinding() {
  try {
    return require('./binding.js')
  } catch (err) {
    const supported = [
      'linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'linux-arm64-musl',
      'darwin-x64', 'darwin-arm64', 'win32-x64-msvc', 'win32-arm64-msvc',
    ]
    const e = new Error(
      `no native binary of authful-mcp-proxy loads on ${platform}-${arch} ` +
        `(prebuilt for: ${supported.join(', ')}). Reinstall without --no-optional or --omit=optional ` +
        `(npm bug: https://github.com/npm/cli/issues/4828), or, in a clone of the repository, build it with \`npm run build\`. ` +
        `Cause: ${err && err.message ? err.message.split('\n')[0] : err}`,
    )
    e.code = 'ERR_NO_BINARY'
    e.cause = err
    throw e
  }
}

const binding = loadBinding()

// camelCase option → [flag, kind]. One line per command-line flag (a new flag needs one
// here and one documented property in index.d.ts; __test__/api-options.test.mjs checks both
// against `--help`). The flag's own name in camelCase works too (`oidcIssuerUrl`, `header`).
// Kinds: 'value' (a string or number; a list is joined with spaces), 'flag' (true/false),
// 'list' (repeated: an array, or an object of `Name: value` headers), 'pairs' (repeated:
// an array of `key=value`, or an object).
const OPTIONS = {
  issuerUrl: ['--oidc-issuer-url', 'value'],
  clientId: ['--oidc-client-id', 'value'],
  clientSecret: ['--oidc-client-secret', 'value'],
  scopes: ['--oidc-scopes', 'value'],
  redirectUrl: ['--oidc-redirect-url', 'value'],
  authTimeout: ['--auth-timeout', 'value'],
  deviceCode: ['--device-code', 'flag'],
  clientCredentials: ['--client-credentials', 'flag'],
  resource: ['--resource', 'value'],
  noResource: ['--no-resource', 'flag'],
  authorizeParams: ['--authorize-param', 'pairs'],
  cacheDir: ['--cache-dir', 'value'],
  tokenStore: ['--token-store', 'value'],
  headers: ['--header', 'list'],
  transport: ['--transport', 'value'],
  protocol: ['--protocol', 'value'],
  allowHttp: ['--allow-http', 'flag'],
  caFile: ['--ca-file', 'value'],
  requestTimeout: ['--request-timeout', 'value'],
  maxMessageBytes: ['--max-message-bytes', 'value'],
  maxOutputBytes: ['--max-output-bytes', 'value'],
  noBanner: ['--no-banner', 'flag'],
  silent: ['--silent', 'flag'],
  debug: ['--debug', 'flag'],
  clientPrivateKey: ['--client-private-key', 'value'],
  clientKeyId: ['--client-key-id', 'value'],
  clientMetadataUrl: ['--client-metadata-url', 'value'],
  crossAppAccess: ['--cross-app-access', 'flag'],
  mcpClientId: ['--mcp-client-id', 'value'],
  mcpClientSecret: ['--mcp-client-secret', 'value'],
  idTokenFile: ['--id-token-file', 'value'],
}
// Every flag also answers to its own name in camelCase.
for (const [flag, kind] of Object.values(OPTIONS)) {
  const own = flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase())
  if (!(own in OPTIONS)) OPTIONS[own] = [flag, kind]
}

function configError(message) {
  const e = new TypeError(message)
  e.code = 'ERR_CONFIG'
  return e
}

/** Turn an options object into argv for the core (backend URL last). */
function toArgv(options = {}) {
  const argv = []
  for (const [key, value] of Object.entries(options)) {
    if (key === 'backendUrl' || value === undefined || value === null || value === false) continue
    const spec = Object.hasOwn(OPTIONS, key) ? OPTIONS[key] : undefined
    if (!spec) throw configError(`unknown option \`${key}\``)
    const [flag, kind] = spec
    if (kind === 'flag') {
      if (value !== true) throw configError(`option \`${key}\` takes true or false`)
      argv.push(flag)
    } else if (kind === 'list' || kind === 'pairs') {
      const sep = kind === 'list' ? ': ' : '='
      const list = Array.isArray(value) ? value
        : typeof value === 'object' ? Object.entries(value).map(([k, v]) => `${k}${sep}${v}`)
        : [value]
      // Attached (`--flag=value`) so a value starting with `-` is taken as it is.
      for (const v of list) argv.push(`${flag}=${String(v)}`)
    } else argv.push(`${flag}=${Array.isArray(value) ? value.join(' ') : String(value)}`)
  }
  if (options.backendUrl) argv.push(String(options.backendUrl))
  return argv
}

/** Run a command line (without `node` and the script name); resolves with the exit code. */
function run(argv) {
  return binding.run(argv)
}

/** Stop every proxy running in this process cleanly (session DELETEd, stdout flushed). */
function shutdown() {
  binding.shutdown()
}

/**
 * Run the proxy in this process on its stdin/stdout; resolves with the exit code when stdin
 * ends or `shutdown()` is called.
 */
async function runProxy(options = {}) {
  return binding.run(toArgv(options))
}

/** Turn the core's `{ value } | { error }` envelope into a value or an Error with `code`. */
async function unwrap(promise) {
  const reply = JSON.parse(await promise)
  if (reply.error) {
    const e = new Error(reply.error.message)
    e.code = reply.error.code
    if (reply.error.hint) e.hint = reply.error.hint
    throw e
  }
  return reply.value
}

/** A valid access token for these options: cache → refresh → browser login. */
async function getAccessToken(options = {}) {
  return unwrap(binding.apiAccessToken(toArgv(options)))
}

/** Log in (or refresh) now; resolves with the status (never a token). */
async function login(options = {}) {
  return unwrap(binding.apiLogin(toArgv(options)))
}

/** Remove the cached login for these options (`{ all: true }`: every cached login). */
async function logout(options = {}, { all = false } = {}) {
  return unwrap(binding.apiLogout(toArgv(options), all))
}

/** Who is logged in for these options, scopes, expiry, cache file; never a token. */
async function status(options = {}) {
  return unwrap(binding.apiStatus(toArgv(options)))
}

/** The parameters of each `Bearer` challenge in WWW-Authenticate headers. */
function bearerChallenges(header) {
  const out = []
  if (!header) return out
  // Challenges and their parameters, e.g. `Bearer error="insufficient_scope", scope="a b"`.
  const re = /([A-Za-z][\w.-]*)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))?/g
  let current = null
  let m
  while ((m = re.exec(header))) {
    const [, name, quoted, bare] = m
    if (quoted === undefined && bare === undefined) {
      current = name.toLowerCase() === 'bearer' ? {} : null
      if (current) out.push(current)
    } else if (current) {
      current[name.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : bare
    }
  }
  return out
}

/**
 * A `fetch` that sends the bearer token. On a 401 it refreshes once and retries once; on a
 * 403 `insufficient_scope` it logs in again with the scopes the server names (at most twice
 * per process, as the proxy does) and retries once.
 * `new StreamableHTTPClientTransport(url, { fetch: createAuthFetch(options) })` just works.
 */
function createAuthFetch(options = {}, baseFetch = globalThis.fetch) {
  const argv = toArgv(options)
  return async function authFetch(input, init = {}) {
    const send = (token) => {
      const headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined))
      headers.set('authorization', `Bearer ${token}`)
      return baseFetch(input, { ...init, headers })
    }
    const token = await unwrap(binding.apiAccessToken(argv))
    const res = await send(token)
    if (res.status === 401) {
      await unwrap(binding.apiRejectToken(argv, token))
    } else if (res.status === 403) {
      const challenge = bearerChallenges(res.headers.get('www-authenticate'))
        .find((c) => c.error === 'insufficient_scope')
      if (!challenge) return res
      const scopes = (challenge.scope || '').split(/\s+/).filter(Boolean)
      if (!(await unwrap(binding.apiStepUp(argv, token, scopes)))) return res
    } else {
      return res
    }
    const fresh = await unwrap(binding.apiAccessToken(argv))
    if (fresh === token) return res
    return send(fresh)
  }
}

module.exports = { run, shutdown, runProxy, getAccessToken, login, logout, status, createAuthFetch, toArgv }
