/** Options of authful-mcp-proxy: the CLI flags in camelCase (see `authful-mcp-proxy --help`). */
export interface ProxyOptions {
  /** Remote MCP server URL. */
  backendUrl?: string
  /** OIDC issuer URL (`OIDC_ISSUER_URL`). */
  issuerUrl?: string
  /** OAuth client ID (`OIDC_CLIENT_ID`). */
  clientId?: string
  /** Client secret for confidential clients (`OIDC_CLIENT_SECRET`). */
  clientSecret?: string
  /** Space-separated scopes, or a list (default `openid profile email`). */
  scopes?: string | string[]
  /** Loopback redirect URL (default `http://localhost:8080/auth/callback`). */
  redirectUrl?: string
  /** Seconds to wait for the browser login (default 300). */
  authTimeout?: number
  /** Token cache folder (default `~/.fastmcp/oauth-mcp-client-cache`). */
  cacheDir?: string
  /** Where tokens are kept: `file` (default), `keychain` (the OS credential store) or `memory`. */
  tokenStore?: 'file' | 'keychain' | 'memory'
  /** Extra headers for every backend request: `["Name: value"]` or `{ Name: "value" }`. */
  headers?: string[] | Record<string, string>
  /** Backend transport (default `auto`). */
  transport?: 'auto' | 'streamable-http' | 'sse'
  /** Allow plain-http backends and issuers that are not on loopback. */
  allowHttp?: boolean
  /** Extra CA certificates (PEM file). */
  caFile?: string
  /** Largest message accepted on stdin, in bytes. */
  maxMessageBytes?: number
  noBanner?: boolean
  silent?: boolean
  debug?: boolean
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

/** Errors thrown by the API carry a stable `code` (e.g. `ERR_CONFIG`, `ERR_LOGIN_TIMEOUT`). */
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
/** A fetch that adds the bearer token and, on 401, refreshes once and retries once. */
export declare function createAuthFetch(options: ProxyOptions, baseFetch?: typeof fetch): typeof fetch
