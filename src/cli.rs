//! argv + environment → [`Config`]. Every flag of the Python original keeps its name, its
//! environment variable and its default; flags win over the environment, and an empty
//! variable counts as not set (MCP client configs often hold `"OIDC_SCOPES": ""`).
//!
//! Parsed with `lexopt` and a help text written out below: the whole command line is two
//! dozen options, and a derive-based parser would cost a sixth of the addon's size.

use crate::config::{Config, ConfigError, Protocol, StoreKind, Transport};
use lexopt::prelude::*;
use std::path::PathBuf;

const HELP: &str = "\
Bridge a local stdio MCP client to a remote MCP server protected by OAuth/OIDC token validation.
Logs in once in the browser (authorization code + PKCE), caches and silently refreshes the tokens,
and carries every MCP message unchanged.

Usage: authful-mcp-proxy [OPTIONS] [MCP_BACKEND_URL]
       authful-mcp-proxy <COMMAND> [OPTIONS] [MCP_BACKEND_URL]

Commands:
  login     Log in (or refresh) for this configuration and exit
  logout    Remove this configuration's cached tokens (--all: every cached login)
  status    Show who is logged in for this configuration, never a token value (--json: as JSON)
  token     Print a valid access token to stdout (refreshing or logging in as needed)
  setup     Check every step from the server to a working login, with a fix for each failure,
            and print the configuration for Claude Desktop, Cursor, Windsurf, VS Code and
            Claude Code (--json: as JSON)

Arguments:
  [MCP_BACKEND_URL]  Remote MCP server URL (Streamable HTTP, or legacy HTTP+SSE)
                     [env: MCP_BACKEND_URL]

Login:
      --oidc-issuer-url <URL>       OIDC issuer URL of your identity provider [env: OIDC_ISSUER_URL]
                                    [default: discovered from the MCP server (RFC 9728)]
      --oidc-client-id <ID>         OAuth client ID registered with the identity provider
                                    [env: OIDC_CLIENT_ID] [default: registered dynamically (RFC 7591)]
      --oidc-client-secret <SECRET> Client secret, for confidential clients only; prefer the
                                    variable, argv is visible in `ps` [env: OIDC_CLIENT_SECRET]
      --oidc-scopes <SCOPES>        Space-separated OAuth scopes [env: OIDC_SCOPES]
                                    [default: openid profile email; after discovery: what the
                                    server asks for]
      --oidc-redirect-url <URL>     OAuth redirect (callback) URL; a loopback http URL registered
                                    with the provider [env: OIDC_REDIRECT_URL]
                                    [default: http://localhost:8080/auth/callback]
      --auth-timeout <SECONDS>      How long to wait for the browser login
                                    [env: MCP_PROXY_AUTH_TIMEOUT] [default: 300]
      --device-code                 Log in with the device authorization grant (RFC 8628): a code
                                    to enter on another device; chosen by itself when no browser
                                    can be opened [env: MCP_PROXY_DEVICE_CODE]
      --client-credentials          Use the client credentials grant (needs a client secret): no
                                    user, no browser [env: MCP_PROXY_CLIENT_CREDENTIALS]
      --client-private-key <FILE>   Authenticate the client with a signed JWT (RFC 7523
                                    `private_key_jwt`) instead of a secret: its PEM private key
                                    (PKCS#8 RSA, EC P-256/P-384 or Ed25519, or PKCS#1 RSA), for
                                    the code, refresh and client credentials grants
                                    [env: MCP_PROXY_CLIENT_PRIVATE_KEY]
      --client-key-id <KID>         Key ID registered for that key
                                    [env: MCP_PROXY_CLIENT_KEY_ID] [default: its RFC 7638 JWK
                                    thumbprint]
      --client-metadata-url <URL>   HTTPS URL of this proxy's client ID metadata document
                                    (SEP-991), used as the client ID when no client ID is set and
                                    the authorization server supports it; else the proxy
                                    registers itself [env: MCP_PROXY_CLIENT_METADATA_URL]
      --resource <URL>              RFC 8707 resource to ask tokens for [env: MCP_PROXY_RESOURCE]
                                    [default: the backend URL when the authorization server was
                                    discovered from it; none otherwise]
      --no-resource                 Never send the `resource` parameter
      --authorize-param <KEY=VALUE> Extra authorization request parameter (repeatable), e.g.
                                    `audience=...` or `prompt=consent`
      --cross-app-access            Enterprise-managed authorization (SEP-990): log in once at
                                    your identity provider (`--oidc-issuer-url`,
                                    `--oidc-client-id`), exchange its ID token there for an
                                    identity assertion grant (ID-JAG, RFC 8693) and that at the
                                    MCP server's authorization server for an access token
                                    (RFC 7523); no login page of the MCP server
                                    [env: MCP_PROXY_CROSS_APP_ACCESS]
      --mcp-client-id <ID>          (cross-app) This proxy's client ID at the MCP server's
                                    authorization server [env: MCP_PROXY_MCP_CLIENT_ID]
      --mcp-client-secret <SECRET>  (cross-app) Its client secret there, sent with HTTP Basic
                                    [env: MCP_PROXY_MCP_CLIENT_SECRET]
      --id-token-file <FILE>        (cross-app) Exchange the ID token in this file (read again
                                    for every exchange) instead of logging in at the identity
                                    provider [env: MCP_PROXY_ID_TOKEN_FILE]
      --cache-dir <DIR>             Token cache directory [env: MCP_PROXY_CACHE_DIR]
                                    [default: ~/.fastmcp/oauth-mcp-client-cache]
      --token-store <STORE>         file | keychain | memory: where tokens are kept. `keychain`
                                    puts the refresh token in the OS credential store (macOS
                                    Keychain, Windows Credential Manager, Secret Service) and
                                    falls back to the file with a warning; `memory` writes
                                    nothing, each process logs in for itself
                                    [env: MCP_PROXY_TOKEN_STORE] [default: file]

Connection:
  -H, --header <NAME: VALUE>        Extra header for every backend request (repeatable; `${VAR}`
                                    is expanded from the environment)
      --transport <TRANSPORT>       auto | streamable-http | sse; `auto` tries Streamable HTTP,
                                    then legacy HTTP+SSE [env: MCP_PROXY_TRANSPORT] [default: auto]
      --protocol <ERA>              auto | legacy | modern; `auto` follows the client (MCP
                                    2026-07-28 when its first message says so) and translates
                                    for an older client when the server speaks only 2026-07-28;
                                    `legacy` passes every message as the older era; `modern`
                                    translates older clients without asking the server first
                                    [env: MCP_PROXY_PROTOCOL] [default: auto]
      --allow-http                  Allow plain http:// backends and issuers that are not on
                                    loopback [env: MCP_PROXY_ALLOW_HTTP]
      --ca-file <FILE>              Extra CA certificates (PEM) to trust besides the system roots
                                    [env: MCP_PROXY_CA_FILE; also SSL_CERT_FILE, NODE_EXTRA_CA_CERTS]
      --request-timeout <SECONDS>   Longest wait for the answer to one request; then the client
                                    gets an error and the server `notifications/cancelled`
                                    (0: no limit) [env: MCP_PROXY_REQUEST_TIMEOUT] [default: 0]
      --max-message-bytes <BYTES>   Largest JSON-RPC message accepted on stdin
                                    [env: MCP_PROXY_MAX_MESSAGE_BYTES] [default: 67108864]
      --max-output-bytes <BYTES>    Largest message written to the client: a larger answer becomes
                                    an error for its request, a larger notification is dropped
                                    (MCP clients on stdio commonly stop at 10 MiB; 0: no limit)
                                    [env: MCP_PROXY_MAX_OUTPUT_BYTES] [default: 10420224]

Output:
      --no-banner                   Suppress the startup banner
      --silent                      Show only error messages
      --debug                       Detailed debug logging, never a secret
                                    [env: MCP_PROXY_DEBUG=1|true|yes|on]
      --all                         (logout) Remove every cached login in the cache directory
      --json                        (status, setup) Print the result as JSON
  -h, --help                        Print this help
  -V, --version                     Print the version

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error, 3 login failed,
4 not logged in (status). `setup` exits with the code of the first failing step.

Examples:
  authful-mcp-proxy https://mcp.example.com/mcp
  authful-mcp-proxy setup https://mcp.example.com/mcp
  authful-mcp-proxy login https://mcp.example.com/mcp
  authful-mcp-proxy status --json
  authful-mcp-proxy token | xargs -I{} curl -H 'Authorization: Bearer {}' ...
";

/// The options shared by every command, after argv and the environment are merged.
#[derive(Debug)]
pub struct Opts {
    pub oidc_issuer_url: Option<String>,
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret: Option<String>,
    pub oidc_scopes: Option<String>,
    pub oidc_redirect_url: String,
    pub auth_timeout: u64,
    pub device_code: bool,
    pub client_credentials: bool,
    pub resource: Option<String>,
    pub no_resource: bool,
    pub authorize_params: Vec<String>,
    pub client_private_key: Option<PathBuf>,
    pub client_key_id: Option<String>,
    pub client_metadata_url: Option<String>,
    pub cross_app_access: bool,
    pub mcp_client_id: Option<String>,
    pub mcp_client_secret: Option<String>,
    pub id_token_file: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub token_store: StoreKind,
    pub headers: Vec<String>,
    pub transport: Transport,
    pub protocol: Protocol,
    pub allow_http: bool,
    pub ca_file: Option<PathBuf>,
    pub request_timeout: u64,
    pub max_message_bytes: usize,
    pub max_output_bytes: usize,
    pub no_banner: bool,
    pub silent: bool,
    pub debug: bool,
}

impl Default for Opts {
    /// The original's defaults.
    fn default() -> Opts {
        Opts {
            oidc_issuer_url: None,
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_scopes: None,
            oidc_redirect_url: "http://localhost:8080/auth/callback".into(),
            auth_timeout: 300,
            device_code: false,
            client_credentials: false,
            resource: None,
            no_resource: false,
            authorize_params: Vec::new(),
            client_private_key: None,
            client_key_id: None,
            client_metadata_url: None,
            cross_app_access: false,
            mcp_client_id: None,
            mcp_client_secret: None,
            id_token_file: None,
            cache_dir: None,
            token_store: StoreKind::File,
            headers: Vec::new(),
            transport: Transport::Auto,
            protocol: Protocol::Auto,
            allow_http: false,
            ca_file: None,
            request_timeout: 0,
            max_message_bytes: 64 * 1024 * 1024,
            max_output_bytes: crate::bridge::host::DEFAULT_MAX_OUTPUT,
            no_banner: false,
            silent: false,
            debug: false,
        }
    }
}

/// The value of an option that takes one, noted as given on the command line.
/// A value that starts with `-` must be attached (`--x=-v`): given separately it is far more
/// likely a forgotten value followed by the next option (`--oidc-client-id --debug`).
fn take(p: &mut lexopt::Parser, given: &mut Vec<&'static str>, name: &'static str) -> Result<String, ConfigError> {
    given.push(name);
    let v = match p.optional_value() {
        Some(attached) => attached,
        None => {
            let v = p.value().map_err(|e| usage(e.to_string()))?;
            if v.len() > 1 && v.to_string_lossy().starts_with('-') {
                return Err(bad_value(
                    name,
                    format!(
                        "needs a value, not the option `{}` (write `{name}={}` for a value that starts with `-`)",
                        v.to_string_lossy(),
                        v.to_string_lossy()
                    ),
                ));
            }
            v
        }
    };
    utf8(name, v)
}

fn utf8(what: &str, v: std::ffi::OsString) -> Result<String, ConfigError> {
    v.into_string()
        .map_err(|v| bad_value(what, format!("`{}` is not valid UTF-8", v.to_string_lossy())))
}

// For the numeric options an empty value means "not set" (the default), not an error.
fn number_or<T: std::str::FromStr>(source: &str, s: &str, default: T, unit: &str) -> Result<T, ConfigError> {
    match s.trim() {
        "" => Ok(default),
        t => t
            .parse()
            .map_err(|_| bad_value(source, format!("`{s}` is not a number of {unit}"))),
    }
}

fn seconds(source: &str, s: &str, default: u64) -> Result<u64, ConfigError> {
    number_or(source, s, default, "seconds")
}

fn bytes(source: &str, s: &str, default: usize) -> Result<usize, ConfigError> {
    number_or(source, s, default, "bytes")
}

fn transport(source: &str, s: &str) -> Result<Transport, ConfigError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(Transport::Auto),
        "streamable-http" => Ok(Transport::StreamableHttp),
        "sse" => Ok(Transport::Sse),
        _ => Err(bad_value(
            source,
            format!("`{s}` is not one of `auto`, `streamable-http`, `sse`"),
        )),
    }
}

fn protocol(source: &str, s: &str) -> Result<Protocol, ConfigError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(Protocol::Auto),
        "legacy" => Ok(Protocol::Legacy),
        "modern" => Ok(Protocol::Modern),
        _ => Err(bad_value(
            source,
            format!("`{s}` is not one of `auto`, `legacy`, `modern`"),
        )),
    }
}

fn token_store(source: &str, s: &str) -> Result<StoreKind, ConfigError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "file" => Ok(StoreKind::File),
        "keychain" => Ok(StoreKind::Keychain),
        "memory" => Ok(StoreKind::Memory),
        _ => Err(bad_value(
            source,
            format!("`{s}` is not one of `file`, `keychain`, `memory`"),
        )),
    }
}

/// The environment, as a lookup (tests pass their own).
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// A variable's value; empty or unset is `None`.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// A boolean variable: unset, empty, `0`, `false`, `no`, `off`, `n`, `f` (any case) are
    /// false; anything else is true.
    fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| {
            !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off" | "n" | "f"
            )
        })
    }
}

fn usage(message: impl Into<String>) -> ConfigError {
    ConfigError::Usage(message.into())
}

fn bad_value(option: &str, problem: String) -> ConfigError {
    usage(format!("{option}: {problem}"))
}

/// Where a flag's value came from, for the options that exclude each other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Unset,
    Env,
    Argv,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Command {
    Proxy,
    Login,
    Logout,
    Status,
    Token,
    Setup,
}

impl Command {
    fn named(name: &str) -> Option<Command> {
        Some(match name {
            "login" => Command::Login,
            "logout" => Command::Logout,
            "status" => Command::Status,
            "token" => Command::Token,
            "setup" => Command::Setup,
            _ => return None,
        })
    }
}

/// Two options that exclude each other: one given on the command line beats one from the
/// environment; both from the same place is a usage error.
fn exclusive(a: (&str, Source), b: (&str, Source)) -> Result<(bool, bool), ConfigError> {
    match (a.1, b.1) {
        (Source::Argv, Source::Argv) | (Source::Env, Source::Env) => {
            Err(usage(format!("`{}` and `{}` cannot be used together", a.0, b.0)))
        }
        (Source::Argv, Source::Env) => Ok((true, false)),
        (Source::Env, Source::Argv) => Ok((false, true)),
        (x, y) => Ok((x != Source::Unset, y != Source::Unset)),
    }
}

/// What the user asked for.
#[derive(Debug)]
pub enum Invocation {
    Proxy(Config),
    Login(Config),
    Logout {
        config: Config,
        all: bool,
    },
    Status {
        config: Config,
        json: bool,
    },
    Token(Config),
    /// `setup`: `argv` is the command line as given, for the host configurations it prints.
    Setup {
        config: Config,
        json: bool,
        argv: Vec<String>,
    },
    /// `--help` / `--version`: text for stderr (or stdout when not proxying), exit 0.
    Info(String),
}

/// Parse argv (without the program name) and the process environment.
pub fn parse(argv: &[String]) -> Result<Invocation, ConfigError> {
    parse_with(argv, &|name| std::env::var(name).ok())
}

fn parse_with(argv: &[String], lookup: &dyn Fn(&str) -> Option<String>) -> Result<Invocation, ConfigError> {
    let env = Env(lookup);
    let mut o = Opts::default();
    let mut command = Command::Proxy;
    let mut url: Option<String> = None;
    let (mut all, mut json) = (false, false);
    // Values given on the command line; the environment fills in the rest below.
    let mut given: Vec<&'static str> = Vec::new();
    let (mut device, mut creds, mut no_resource) = (Source::Unset, Source::Unset, Source::Unset);
    let (mut silent, mut debug) = (false, false);

    let mut p = lexopt::Parser::from_args(argv.iter());
    while let Some(arg) = p.next().map_err(|e| usage(e.to_string()))? {
        macro_rules! value {
            ($name:literal) => {
                take(&mut p, &mut given, $name)?
            };
        }
        match arg {
            Long("oidc-issuer-url") => o.oidc_issuer_url = Some(value!("--oidc-issuer-url")),
            Long("oidc-client-id") => o.oidc_client_id = Some(value!("--oidc-client-id")),
            Long("oidc-client-secret") => o.oidc_client_secret = Some(value!("--oidc-client-secret")),
            Long("oidc-scopes") => o.oidc_scopes = Some(value!("--oidc-scopes")),
            Long("oidc-redirect-url") => o.oidc_redirect_url = value!("--oidc-redirect-url"),
            Long("auth-timeout") => o.auth_timeout = seconds("--auth-timeout", &value!("--auth-timeout"), 300)?,
            Long("device-code") => device = Source::Argv,
            Long("client-credentials") => creds = Source::Argv,
            Long("resource") => o.resource = Some(value!("--resource")),
            Long("no-resource") => no_resource = Source::Argv,
            Long("authorize-param") => o.authorize_params.push(value!("--authorize-param")),
            Long("cache-dir") => o.cache_dir = Some(PathBuf::from(value!("--cache-dir").trim())),
            Long("token-store") => o.token_store = token_store("--token-store", &value!("--token-store"))?,
            Long("client-private-key") => {
                o.client_private_key = Some(PathBuf::from(value!("--client-private-key").trim()))
            }
            Long("client-key-id") => o.client_key_id = Some(value!("--client-key-id")),
            Long("client-metadata-url") => o.client_metadata_url = Some(value!("--client-metadata-url")),
            Long("cross-app-access") => o.cross_app_access = true,
            Long("mcp-client-id") => o.mcp_client_id = Some(value!("--mcp-client-id")),
            Long("mcp-client-secret") => o.mcp_client_secret = Some(value!("--mcp-client-secret")),
            Long("id-token-file") => o.id_token_file = Some(PathBuf::from(value!("--id-token-file").trim())),
            Short('H') | Long("header") => o.headers.push(value!("--header")),
            Long("transport") => o.transport = transport("--transport", &value!("--transport"))?,
            Long("protocol") => o.protocol = protocol("--protocol", &value!("--protocol"))?,
            Long("allow-http") => o.allow_http = true,
            Long("ca-file") => o.ca_file = Some(PathBuf::from(value!("--ca-file").trim())),
            Long("request-timeout") => {
                o.request_timeout = seconds("--request-timeout", &value!("--request-timeout"), 0)?
            }
            Long("max-message-bytes") => {
                o.max_message_bytes = bytes("--max-message-bytes", &value!("--max-message-bytes"), 64 << 20)?
            }
            Long("max-output-bytes") => {
                o.max_output_bytes = bytes(
                    "--max-output-bytes",
                    &value!("--max-output-bytes"),
                    crate::bridge::host::DEFAULT_MAX_OUTPUT,
                )?
            }
            Long("no-banner") => o.no_banner = true,
            Long("silent") => silent = true,
            Long("debug") => debug = true,
            Long("all") => all = true,
            Long("json") => json = true,
            Short('h') | Long("help") => return Ok(Invocation::Info(HELP.to_string())),
            Short('V') | Long("version") => {
                return Ok(Invocation::Info(format!(
                    "authful-mcp-proxy {}\n",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            Value(v) => {
                let v = utf8("the MCP server URL", v)?;
                let first = command == Command::Proxy && url.is_none();
                match Command::named(&v) {
                    Some(c) if first => command = c,
                    None if first && v == "help" => return Ok(Invocation::Info(HELP.to_string())),
                    _ if url.is_none() => url = Some(v),
                    _ => {
                        return Err(usage(format!(
                            "unexpected argument `{v}`: only one MCP server URL is taken"
                        )))
                    }
                }
            }
            other => return Err(usage(other.unexpected().to_string())),
        }
    }

    // The environment, for what the command line left unset.
    let unset = |flag: &str| !given.contains(&flag);
    let var = |name: &str, flag: &str| env.get(name).filter(|_| unset(flag));
    for (slot, name, flag) in [
        (&mut o.oidc_issuer_url, "OIDC_ISSUER_URL", "--oidc-issuer-url"),
        (&mut o.oidc_client_id, "OIDC_CLIENT_ID", "--oidc-client-id"),
        (&mut o.oidc_client_secret, "OIDC_CLIENT_SECRET", "--oidc-client-secret"),
        (&mut o.oidc_scopes, "OIDC_SCOPES", "--oidc-scopes"),
        (&mut o.resource, "MCP_PROXY_RESOURCE", "--resource"),
        (&mut o.client_key_id, "MCP_PROXY_CLIENT_KEY_ID", "--client-key-id"),
        (
            &mut o.client_metadata_url,
            "MCP_PROXY_CLIENT_METADATA_URL",
            "--client-metadata-url",
        ),
        (&mut o.mcp_client_id, "MCP_PROXY_MCP_CLIENT_ID", "--mcp-client-id"),
        (
            &mut o.mcp_client_secret,
            "MCP_PROXY_MCP_CLIENT_SECRET",
            "--mcp-client-secret",
        ),
    ] {
        if unset(flag) {
            *slot = env.get(name);
        }
    }
    if let Some(v) = var("OIDC_REDIRECT_URL", "--oidc-redirect-url") {
        o.oidc_redirect_url = v;
    }
    if let Some(v) = var("MCP_PROXY_AUTH_TIMEOUT", "--auth-timeout") {
        o.auth_timeout = seconds("MCP_PROXY_AUTH_TIMEOUT", &v, 300)?;
    }
    if let Some(v) = var("MCP_PROXY_REQUEST_TIMEOUT", "--request-timeout") {
        o.request_timeout = seconds("MCP_PROXY_REQUEST_TIMEOUT", &v, 0)?;
    }
    if let Some(v) = var("MCP_PROXY_MAX_MESSAGE_BYTES", "--max-message-bytes") {
        o.max_message_bytes = bytes("MCP_PROXY_MAX_MESSAGE_BYTES", &v, 64 << 20)?;
    }
    if let Some(v) = var("MCP_PROXY_MAX_OUTPUT_BYTES", "--max-output-bytes") {
        o.max_output_bytes = bytes(
            "MCP_PROXY_MAX_OUTPUT_BYTES",
            &v,
            crate::bridge::host::DEFAULT_MAX_OUTPUT,
        )?;
    }
    if let Some(v) = var("MCP_PROXY_TRANSPORT", "--transport") {
        o.transport = transport("MCP_PROXY_TRANSPORT", &v)?;
    }
    if let Some(v) = var("MCP_PROXY_PROTOCOL", "--protocol") {
        o.protocol = protocol("MCP_PROXY_PROTOCOL", &v)?;
    }
    if let Some(v) = var("MCP_PROXY_CACHE_DIR", "--cache-dir") {
        o.cache_dir = Some(PathBuf::from(v.trim()));
    }
    if let Some(v) = var("MCP_PROXY_TOKEN_STORE", "--token-store") {
        o.token_store = token_store("MCP_PROXY_TOKEN_STORE", &v)?;
    }
    if let Some(v) = var("MCP_PROXY_CA_FILE", "--ca-file") {
        o.ca_file = Some(PathBuf::from(v.trim()));
    }
    if let Some(v) = var("MCP_PROXY_CLIENT_PRIVATE_KEY", "--client-private-key") {
        o.client_private_key = Some(PathBuf::from(v.trim()));
    }
    if let Some(v) = var("MCP_PROXY_ID_TOKEN_FILE", "--id-token-file") {
        o.id_token_file = Some(PathBuf::from(v.trim()));
    }
    o.cross_app_access |= env.flag("MCP_PROXY_CROSS_APP_ACCESS");
    o.allow_http |= env.flag("MCP_PROXY_ALLOW_HTTP");
    if device == Source::Unset && env.flag("MCP_PROXY_DEVICE_CODE") {
        device = Source::Env;
    }
    if creds == Source::Unset && env.flag("MCP_PROXY_CLIENT_CREDENTIALS") {
        creds = Source::Env;
    }
    (o.device_code, o.client_credentials) = exclusive(("--device-code", device), ("--client-credentials", creds))?;
    let resource = match (&o.resource, !unset("--resource")) {
        (Some(_), true) => Source::Argv,
        (Some(_), false) => Source::Env,
        (None, _) => Source::Unset,
    };
    let (keep_resource, no) = exclusive(("--resource", resource), ("--no-resource", no_resource))?;
    if !keep_resource {
        o.resource = None;
    }
    o.no_resource = no;
    if silent && debug {
        return Err(usage("`--silent` and `--debug` cannot be used together"));
    }
    (o.silent, o.debug) = (silent, debug);
    if all && command != Command::Logout {
        return Err(usage("`--all` belongs to `logout`"));
    }
    if json && !matches!(command, Command::Status | Command::Setup) {
        return Err(usage("`--json` belongs to `status` and `setup`"));
    }

    let debug_env = env
        .get("MCP_PROXY_DEBUG")
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
    // `setup` checks what the proxy would do, so it needs a backend too.
    let proxying = matches!(command, Command::Proxy | Command::Setup);
    let config = Config::from_parts(url.or_else(|| env.get("MCP_BACKEND_URL")), o, debug_env, proxying)?;
    Ok(match command {
        Command::Proxy => Invocation::Proxy(config),
        Command::Login => Invocation::Login(config),
        Command::Logout => Invocation::Logout { config, all },
        Command::Status => Invocation::Status { config, json },
        Command::Token => Invocation::Token(config),
        Command::Setup => Invocation::Setup {
            config,
            json,
            argv: argv.to_vec(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GrantKind, LogLevel};

    const URL: &str = "https://mcp.example/mcp";

    fn run(argv: &[&str], vars: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse_with(&argv, &move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn proxy(argv: &[&str], vars: &[(&str, &str)]) -> Config {
        match run(argv, vars) {
            Ok(Invocation::Proxy(c)) => c,
            other => panic!("expected a proxy config, got {other:?}"),
        }
    }

    fn usage_error(argv: &[&str], vars: &[(&str, &str)]) -> String {
        match run(argv, vars) {
            Err(ConfigError::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn the_original_defaults() {
        let c = proxy(&[URL], &[("OIDC_ISSUER_URL", "https://idp.example")]);
        let a = c.auth.unwrap();
        assert_eq!(a.redirect_url.as_str(), "http://localhost:8080/auth/callback");
        assert_eq!(a.scopes, ["openid", "profile", "email"]);
        assert_eq!(a.auth_timeout.as_secs(), 300);
        assert_eq!(a.grant, GrantKind::Auto);
        assert_eq!(c.max_message_bytes, 64 << 20);
        assert_eq!(c.max_output_bytes, 10 * 1024 * 1024 - 64 * 1024);
        assert_eq!(c.request_timeout, None);
        assert_eq!(c.transport, Transport::Auto);
        assert!(c.banner);
    }

    #[test]
    fn max_output_bytes_from_flag_or_environment() {
        type Row<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], usize);
        let env = [("MCP_PROXY_MAX_OUTPUT_BYTES", "5000")];
        // (argv, environment, limit) with the reason per row.
        let rows: &[Row] = &[
            (&[URL], &env, 5000),                             // the variable
            (&["--max-output-bytes", "0", URL], &env, 0),     // the flag wins; 0 = no limit
            (&["--max-output-bytes=", URL], &[], 10_420_224), // empty: the default
            (&[URL], &[("MCP_PROXY_MAX_OUTPUT_BYTES", " ")], 10_420_224),
        ];
        for (argv, vars, want) in rows {
            assert_eq!(proxy(argv, vars).max_output_bytes, *want, "{argv:?} {vars:?}");
        }
        assert!(usage_error(&["--max-output-bytes", "lots", URL], &[]).contains("--max-output-bytes"));
    }

    #[test]
    fn protocol_era_from_flag_or_environment() {
        let auth = ("OIDC_ISSUER_URL", "https://idp.example");
        assert_eq!(proxy(&[URL], &[auth]).protocol, Protocol::Auto);
        assert_eq!(
            proxy(&[URL], &[auth, ("MCP_PROXY_PROTOCOL", "legacy")]).protocol,
            Protocol::Legacy
        );
        // The flag wins over the variable; case does not matter.
        let c = proxy(
            &["--protocol", "Modern", URL],
            &[auth, ("MCP_PROXY_PROTOCOL", "legacy")],
        );
        assert_eq!(c.protocol, Protocol::Modern);
        let m = usage_error(&["--protocol", "2026-07-28", URL], &[auth]);
        assert!(
            m.contains("--protocol") && m.contains("`auto`, `legacy`, `modern`"),
            "{m}"
        );
    }

    #[test]
    fn flags_win_over_the_environment_and_empty_variables_are_unset() {
        let vars = [
            ("OIDC_ISSUER_URL", "https://env-idp.example"),
            ("OIDC_CLIENT_ID", "env-client"),
            ("OIDC_SCOPES", ""),
            ("MCP_PROXY_AUTH_TIMEOUT", "not a number"),
            ("MCP_PROXY_TRANSPORT", "sse"),
            ("MCP_BACKEND_URL", "https://env-backend.example/mcp"),
        ];
        let c = proxy(
            &[
                "--oidc-issuer-url=https://flag-idp.example",
                "--auth-timeout",
                "7",
                "--transport",
                "STREAMABLE-HTTP",
                URL,
            ],
            &vars,
        );
        let a = c.auth.unwrap();
        assert_eq!(a.issuer.unwrap().as_str(), "https://flag-idp.example/");
        assert_eq!(a.client_id.as_deref(), Some("env-client"));
        assert_eq!(
            a.scopes,
            ["openid", "profile", "email"],
            "an empty OIDC_SCOPES is unset"
        );
        assert_eq!(
            a.auth_timeout.as_secs(),
            7,
            "the flag wins; the bad variable is not read"
        );
        assert_eq!(c.transport, Transport::StreamableHttp);
        assert_eq!(c.backend_url.unwrap().as_str(), URL);
        // Without flags the environment counts, and a bad value there is named.
        let m = usage_error(&[], &vars);
        assert!(
            m.contains("MCP_PROXY_AUTH_TIMEOUT") && m.contains("not a number"),
            "{m}"
        );
        let c = proxy(
            &[],
            &[("MCP_BACKEND_URL", URL), ("OIDC_ISSUER_URL", "https://i.example")],
        );
        assert_eq!(c.backend_url.unwrap().as_str(), URL);
    }

    #[test]
    fn client_authentication_flags_and_their_variables() {
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth/testdata/rsa2048.pem");
        let base = [("OIDC_CLIENT_ID", "svc")];
        // private_key_jwt from the variable, for client credentials (no secret needed).
        let mut vars = base.to_vec();
        vars.push(("MCP_PROXY_CLIENT_PRIVATE_KEY", key));
        vars.push(("MCP_PROXY_CLIENT_KEY_ID", "k-env"));
        let a = proxy(&["--client-credentials", URL], &vars).auth.unwrap();
        assert_eq!(a.grant, GrantKind::ClientCredentials);
        let k = a.client_auth.private_key.expect("the key is loaded at start");
        assert_eq!((k.alg(), k.kid()), ("RS256", "k-env"));
        // The flag wins over the variable; without a key ID the thumbprint is used.
        let a = proxy(&["--client-private-key", key, URL], &base).auth.unwrap();
        assert_ne!(a.client_auth.private_key.unwrap().kid(), "k-env");
        // Mistakes are usage errors that name the flag.
        assert!(usage_error(&["--client-private-key", key, URL], &[]).contains("--oidc-client-id"));
        let mut with_secret = base.to_vec();
        with_secret.push(("OIDC_CLIENT_SECRET", "s"));
        assert!(usage_error(&["--client-private-key", key, URL], &with_secret).contains("--oidc-client-secret"));
        assert!(usage_error(&["--client-key-id", "k", URL], &base).contains("--client-private-key"));
        assert!(usage_error(&["--device-code", "--client-private-key", key, URL], &base).contains("--device-code"));
        match run(&["--client-private-key", "/nonexistent.pem", URL], &base) {
            Err(ConfigError::BadClientKey { reason, .. }) => assert!(reason.contains("cannot read"), "{reason}"),
            other => panic!("expected BadClientKey, got {other:?}"),
        }
        // A client ID metadata document URL must be https with a path.
        let a = proxy(
            &[URL],
            &[("MCP_PROXY_CLIENT_METADATA_URL", "https://app.example/client.json")],
        )
        .auth
        .unwrap();
        assert_eq!(
            a.client_auth.metadata_url.as_deref(),
            Some("https://app.example/client.json")
        );
        assert_eq!(a.client_label(), "https://app.example/client.json");
        for bad in ["http://localhost/client.json", "https://app.example/"] {
            assert!(
                matches!(
                    run(&["--client-metadata-url", bad, URL], &[]),
                    Err(ConfigError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn cross_app_access_needs_the_identity_provider_and_the_mcp_client() {
        let idp = [
            ("OIDC_ISSUER_URL", "https://idp.example"),
            ("OIDC_CLIENT_ID", "idp-client"),
        ];
        let mut vars = idp.to_vec();
        vars.extend([
            ("MCP_PROXY_CROSS_APP_ACCESS", "1"),
            ("MCP_PROXY_MCP_CLIENT_ID", "mcp-client"),
            ("MCP_PROXY_MCP_CLIENT_SECRET", "mcp-secret"),
            ("MCP_PROXY_ID_TOKEN_FILE", "/run/sso/id_token"),
        ]);
        let a = proxy(&[URL], &vars).auth.unwrap();
        let x = a.client_auth.cross_app.expect("cross-app access");
        assert_eq!(x.client_id, "mcp-client");
        assert_eq!(x.client_secret.unwrap().expose(), "mcp-secret");
        assert_eq!(x.id_token_file.unwrap().to_str(), Some("/run/sso/id_token"));
        let a = proxy(&["--cross-app-access", "--mcp-client-id", "m", URL], &idp)
            .auth
            .unwrap();
        assert!(a
            .client_auth
            .cross_app
            .is_some_and(|x| x.client_secret.is_none() && x.id_token_file.is_none()));
        // Incomplete: no MCP client, no identity provider.
        assert!(matches!(
            run(&["--cross-app-access", URL], &idp),
            Err(ConfigError::CrossAppIncomplete(_))
        ));
        assert!(matches!(
            run(&["--cross-app-access", "--mcp-client-id", "m", URL], &[]),
            Err(ConfigError::CrossAppIncomplete(_))
        ));
        // Its flags without it are a mistake.
        assert!(usage_error(&["--mcp-client-id", "m", URL], &idp).contains("--cross-app-access"));
    }

    #[test]
    fn boolean_variables_take_the_usual_spellings() {
        let base = [("OIDC_ISSUER_URL", "https://i.example"), ("OIDC_CLIENT_ID", "c")];
        for (value, want) in [
            ("1", true),
            ("true", true),
            ("YES", true),
            ("0", false),
            ("off", false),
            ("", false),
        ] {
            let mut vars = base.to_vec();
            vars.push(("MCP_PROXY_DEVICE_CODE", value));
            let grant = proxy(&[URL], &vars).auth.unwrap().grant;
            assert_eq!(grant == GrantKind::Device, want, "MCP_PROXY_DEVICE_CODE={value}");
        }
    }

    #[test]
    fn options_that_exclude_each_other() {
        let vars = [
            ("OIDC_ISSUER_URL", "https://i.example"),
            ("OIDC_CLIENT_ID", "c"),
            ("OIDC_CLIENT_SECRET", "s"),
        ];
        let m = usage_error(&["--device-code", "--client-credentials", URL], &vars);
        assert!(m.contains("--device-code") && m.contains("--client-credentials"), "{m}");
        assert!(usage_error(&["--silent", "--debug", URL], &vars).contains("--silent"));
        assert!(usage_error(&["--resource", URL, "--no-resource", URL], &vars).contains("--no-resource"));
        // A flag beats the variable of the other option.
        let mut with_env = vars.to_vec();
        with_env.push(("MCP_PROXY_DEVICE_CODE", "1"));
        let a = proxy(&["--client-credentials", URL], &with_env).auth.unwrap();
        assert_eq!(a.grant, GrantKind::ClientCredentials);
        with_env.push(("MCP_PROXY_RESOURCE", "https://r.example"));
        let a = proxy(&["--no-resource", URL], &with_env).auth.unwrap();
        assert!(a.no_resource && a.resource.is_none());
        // Both from the environment: an error.
        with_env.push(("MCP_PROXY_CLIENT_CREDENTIALS", "true"));
        assert!(usage_error(&[URL], &with_env).contains("cannot be used together"));
    }

    #[test]
    fn commands_urls_and_repeated_options() {
        let vars = [("OIDC_ISSUER_URL", "https://i.example")];
        assert!(matches!(
            run(&["status", "--json", URL], &vars),
            Ok(Invocation::Status { json: true, .. })
        ));
        assert!(matches!(
            run(&["--debug", "logout", "--all"], &vars),
            Ok(Invocation::Logout { all: true, .. })
        ));
        assert!(matches!(run(&["login", URL], &vars), Ok(Invocation::Login(_))));
        assert!(matches!(run(&["token"], &vars), Ok(Invocation::Token(_))));
        // A URL first: a later `login` is a second URL, not a command.
        assert!(usage_error(&[URL, "login"], &vars).contains("`login`"));
        assert!(usage_error(&["--json", URL], &vars).contains("status"));
        assert!(usage_error(&["login", "--all"], &vars).contains("logout"));
        let c = proxy(
            &[
                "-H",
                "X-A: 1",
                "--header=X-B: 2",
                "-HX-C:3",
                "--authorize-param",
                "audience=api",
                URL,
            ],
            &vars,
        );
        let names: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["X-A", "X-B", "X-C"]);
        assert_eq!(
            c.auth.unwrap().authorize_params,
            [("audience".to_string(), "api".to_string())]
        );
        let c = proxy(&["--silent", URL], &vars);
        assert_eq!(c.log, LogLevel::Silent);
    }

    #[test]
    fn token_store_from_flag_or_environment() {
        let vars = [("OIDC_ISSUER_URL", "https://i.example")];
        assert_eq!(proxy(&[URL], &vars).token_store, StoreKind::File, "the default");
        let mut env = vars.to_vec();
        env.push(("MCP_PROXY_TOKEN_STORE", "Keychain"));
        let c = proxy(&[URL], &env);
        assert_eq!(
            (c.token_store, c.auth.unwrap().token_store),
            (StoreKind::Keychain, StoreKind::Keychain)
        );
        assert_eq!(
            proxy(&["--token-store=memory", URL], &env).token_store,
            StoreKind::Memory,
            "the flag wins"
        );
        assert!(usage_error(&["--token-store", "vault", URL], &vars).contains("`file`, `keychain`, `memory`"));
    }

    #[test]
    fn help_version_and_unknown_options() {
        for argv in [&["--help"][..], &["-h"], &["help"], &["status", "--help"]] {
            match run(argv, &[]) {
                Ok(Invocation::Info(text)) => {
                    assert!(text.contains("Usage: authful-mcp-proxy") && text.contains("OIDC_ISSUER_URL"))
                }
                other => panic!("{argv:?}: {other:?}"),
            }
        }
        match run(&["-V"], &[]) {
            Ok(Invocation::Info(text)) => {
                assert_eq!(text, format!("authful-mcp-proxy {}\n", env!("CARGO_PKG_VERSION")))
            }
            other => panic!("{other:?}"),
        }
        assert!(usage_error(&["--frobnicate", URL], &[]).contains("--frobnicate"));
        assert!(usage_error(&["--no-banner=yes", URL], &[]).contains("--no-banner"));
        assert!(usage_error(&[URL, "--oidc-client-id"], &[]).contains("--oidc-client-id"));
        assert!(usage_error(&["--max-message-bytes", "lots", URL], &[]).contains("--max-message-bytes"));
        // A forgotten value: the next option is not taken as one; attached, a dash is fine.
        let m = usage_error(&["--oidc-client-id", "--debug", URL], &[]);
        assert!(m.contains("--oidc-client-id") && m.contains("--debug"), "{m}");
        let vars = [("OIDC_ISSUER_URL", "https://i.example")];
        let c = proxy(&["--oidc-client-id=-dash-id", URL], &vars);
        assert_eq!(c.auth.unwrap().client_id.as_deref(), Some("-dash-id"));
    }
}
