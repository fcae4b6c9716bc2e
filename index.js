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

// camelCase option → [flag, kind]; kind 'value' | 'flag' | 'list'.
const OPTIONS = {
  issuerUrl: ['--oidc-issuer-url', 'value'],
  oidcIssuerUrl: ['--oidc-issuer-url', 'value'],
  clientId: ['--oidc-client-id', 'value'],
  oidcClientId: ['--oidc-client-id', 'value'],
  clientSecret: ['--oidc-client-secret', 'value'],
  oidcClientSecret: ['--oidc-client-secret', 'value'],
  scopes: ['--oidc-scopes', 'value'],
  oidcScopes: ['--oidc-scopes', 'value'],
  redirectUrl: ['--oidc-redirect-url', 'value'],
  oidcRedirectUrl: ['--oidc-redirect-url', 'value'],
  authTimeout: ['--auth-timeout', 'value'],
  cacheDir: ['--cache-dir', 'value'],
  tokenStore: ['--token-store', 'value'],
  headers: ['--header', 'list'],
  transport: ['--transport', 'value'],
  allowHttp: ['--allow-http', 'flag'],
  caFile: ['--ca-file', 'value'],
  maxMessageBytes: ['--max-message-bytes', 'value'],
  noBanner: ['--no-banner', 'flag'],
  silent: ['--silent', 'flag'],
  debug: ['--debug', 'flag'],
}

/** Turn an options object into argv for the core (backend URL last). */
function toArgv(options = {}) {
  const argv = []
  for (const [key, value] of Object.entries(options)) {
    if (key === 'backendUrl' || value === undefined || value === null || value === false) continue
    const spec = OPTIONS[key]
    if (!spec) {
      const e = new TypeError(`unknown option \`${key}\``)
      e.code = 'ERR_CONFIG'
      throw e
    }
    const [flag, kind] = spec
    if (kind === 'flag') argv.push(flag)
    else if (kind === 'list') {
      const list = Array.isArray(value) ? value : Object.entries(value).map(([k, v]) => `${k}: ${v}`)
      for (const v of list) argv.push(flag, String(v))
    } else argv.push(flag, Array.isArray(value) ? value.join(' ') : String(value))
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

/**
 * A `fetch` that sends the bearer token and, on a 401, refreshes once and retries once.
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
    if (res.status !== 401) return res
    await unwrap(binding.apiRejectToken(argv, token))
    const fresh = await unwrap(binding.apiAccessToken(argv))
    if (fresh === token) return res
    return send(fresh)
  }
}

module.exports = { run, shutdown, runProxy, getAccessToken, login, logout, status, createAuthFetch, toArgv }
