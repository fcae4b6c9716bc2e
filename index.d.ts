/**
 * Options of authful-mcp-proxy: every command-line flag, in camelCase (see
 * `authful-mcp-proxy --help`; the flag's own name in camelCase, such as `oidcIssuerUrl` or
 * `header`, works too). The same parser and validation as the command line apply, and the
 * environment variables fill in what is not given here.
 */
export interface ProxyOptions {
  /** Remote MCP server URL (`MCP_BACKEND_URL`). */
  backendUrl?: string
  /** OIDC issuer URL (`--oidc-issuer-url`, `OIDC_ISSUER_URL`); default: discovered from the MCP server (RFC 9728). */
  issuerUrl?: string
  /** OAuth client ID (`--oidc-client-id`, `OIDC_CLIENT_ID`); default: registered dynamically (RFC 7591). */
  clientId?: string
  /** Client secret, for confidential clients only (`--oidc-client-secret`, `OIDC_CLIENT_SECRET`). */
  clientSecret?: string
  /** Space-separated scopes, or a list (`--oidc-scopes`, `OIDC_SCOPES`; default `openid profile email`). */
  scopes?: string | string[]
  /** Loopback redirect URL (`--oidc-redirect-url`, `OIDC_REDIRECT_URL`; default `http://localhost:8080/auth/callback`). */
  redirectUrl?: string
  /** Seconds to wait for the login (`--auth-timeout`, `MCP_PROXY_AUTH_TIMEOUT`; default 300). */
  authTimeout?: number
  /** Log in with the device authorization grant, RFC 8628: a code to enter on another device (`--device-code`). */
  deviceCode?: boolean
  /** Use the client credentials grant: no user, no browser; needs `clientId` and `clientSecret` (`--client-credentials`). */
  clientCredentials?: boolean
  /** RFC 8707 resource to ask tokens for (`--resource`, `MCP_PROXY_RESOURCE`). */
  resource?: string
  /** Never send the `resource` parameter (`--no-resource`). */
  noResource?: boolean
  /** Extra authorization request parameters (`--authorize-param`): `{ audience: '...' }` or `['prompt=consent']`. */
  authorizeParams?: string[] | Record<string, string>
  /** Token cache folder (`--cache-dir`, `MCP_PROXY_CACHE_DIR`; default `~/.fastmcp/oauth-mcp-client-cache`). */
  cacheDir?: string
  /** Where tokens are kept (`--token-store`, `MCP_PROXY_TOKEN_STORE`): `file` (default), `keychain` (the OS credential store) or `memory`. */
  tokenStore?: 'file' | 'keychain' | 'memory'
  /** Extra headers for every backend request (`--header`): `["Name: value"]` or `{ Name: "value" }`. */
  headers?: string[] | Record<string, string>
  /** Backend transport (`--transport`, `MCP_PROXY_TRANSPORT`; default `auto`). */
  transport?: 'auto' | 'streamable-http' | 'sse'
  /** MCP protocol era towards the server (`--protocol`, `MCP_PROXY_PROTOCOL`; default `auto`: follow
   * the client, and translate for an older client when the server speaks only 2026-07-28). */
  protocol?: 'auto' | 'legacy' | 'modern'
  /** Allow plain-http backends and issuers that are not on loopback (`--allow-http`). */
  allowHttp?: boolean
  /** Extra CA certificates, a PEM file (`--ca-file`, `MCP_PROXY_CA_FILE`). */
  caFile?: string
  /** Longest wait in seconds for the answer to one request, 0 for none (`--request-timeout`; default 0). */
  requestTimeout?: number
  /** Largest message accepted on stdin, in bytes (`--max-message-bytes`; default 64 MiB). */
  maxMessageBytes?: number
  /**
   * Largest message written to the client, in bytes; a larger answer becomes a JSON-RPC error
   * for its request, a larger notification is dropped (`--max-output-bytes`,
   * `MCP_PROXY_MAX_OUTPUT_BYTES`; default 10 MiB less 64 KiB; 0 for no limit).
   */
  maxOutputBytes?: number
  /** No startup banner (`--no-banner`). */
  noBanner?: boolean
  /** Only error messages on stderr (`--silent`). */
  silent?: boolean
  /** Detailed debug logging on stderr, never a secret (`--debug`). */
  debug?: boolean
  /** PEM private key file: `private_key_jwt` client authentication (RFC 7523). */
  clientPrivateKey?: string
  /** Key ID registered for that key (default: its RFC 7638 thumbprint). */
  clientKeyId?: string
  /** HTTPS URL of a client ID metadata document (SEP-991), used as the client ID. */
  clientMetadataUrl?: string
  /** Enterprise-managed authorization (SEP-990): IdP login, ID-JAG, jwt-bearer grant. */
  crossAppAccess?: boolean
  /** (cross-app) Client ID at the MCP server's authorization server. */
  mcpClientId?: string
  /** (cross-app) Client secret there. */
  mcpClientSecret?: string
  /** (cross-app) File holding an ID token to exchange instead of logging in at the IdP. */
  idTokenFile?: string
}

/** Run a command line (without `node` and the script name); resolves with the exit code. */
export declare function run(argv: string[]): Promise<number>
/** Stop every proxy running in this process cleanly. */
export declare function shutdown(): void
/** Run the proxy in this process on its stdin/stdout; resolves with the exit code. */
export declare function runProxy(options: ProxyOptions): Promise<number>
/** The argv the options stand for. */
export declare function toArgv(options: ProxyOptions): string[]

/** What `status()` and `login()` resolve with. Never holds a token. */
export interface LoginStatus {
  loggedIn: boolean
  issuer: string
  clientId: string
  subject: string | null
  username: string | null
  scopes: string
  /** Seconds since the epoch. */
  expiresAt: number | null
  expired: boolean | null
  hasRefreshToken: boolean | null
  cacheFile: string | null
  /** The store in use (`file` when a keychain fell back). */
  tokenStore: 'file' | 'keychain' | 'memory'
}

/**
 * Errors thrown by the API carry a stable `code` (e.g. `ERR_CONFIG`, `ERR_LOGIN_TIMEOUT`,
 * `ERR_TOKEN_REFUSED`, `ERR_PROVIDER_UNAVAILABLE`) and usually a `hint` naming the fix.
 */
export interface AuthfulError extends Error {
  code: string
  hint?: string
}

/** A valid access token: cache → refresh → browser login. */
export declare function getAccessToken(options: ProxyOptions): Promise<string>
/** Log in (or refresh) now. */
export declare function login(options: ProxyOptions): Promise<LoginStatus>
/** Remove the cached login (`{ all: true }`: every cached login). */
export declare function logout(options: ProxyOptions, opts?: { all?: boolean }): Promise<{ removed: number }>
/** Who is logged in; never a token value. */
export declare function status(options: ProxyOptions): Promise<LoginStatus>
/**
 * A fetch that adds the bearer token. On a 401 it refreshes once and retries once; on a 403
 * `insufficient_scope` it logs in again with the scopes the server names (at most twice per
 * process) and retries once.
 */
export declare function createAuthFetch(options: ProxyOptions, baseFetch?: typeof fetch): typeof fetch
