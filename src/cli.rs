//! argv + environment → [`Config`]. Every flag of the Python original keeps its name, its
//! environment variable and its default; flags win over the environment.

use crate::config::{Config, ConfigError, Transport};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "authful-mcp-proxy",
    version,
    about = "Bridge a local stdio MCP client to a remote MCP server protected by OAuth/OIDC token validation.",
    long_about = "Bridge a local stdio MCP client to a remote MCP server protected by OAuth/OIDC \
token validation. Logs in once in the browser (authorization code + PKCE), caches and silently \
refreshes the tokens, and carries every MCP message unchanged.\n\n\
Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error, 3 login failed, \
4 not logged in (status).",
    after_help = "Examples:\n  authful-mcp-proxy https://mcp.example.com/mcp\n  authful-mcp-proxy login https://mcp.example.com/mcp\n  authful-mcp-proxy status\n  authful-mcp-proxy token | xargs -I{} curl -H 'Authorization: Bearer {}' ...",
    args_conflicts_with_subcommands = false,
    subcommand_precedence_over_arg = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Remote MCP server URL (Streamable HTTP, or legacy HTTP+SSE).
    #[arg(value_name = "MCP_BACKEND_URL", env = "MCP_BACKEND_URL")]
    pub backend_url: Option<String>,

    #[command(flatten)]
    pub opts: Opts,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in (or refresh) for this configuration and exit.
    Login {
        #[arg(value_name = "MCP_BACKEND_URL")]
        backend_url: Option<String>,
    },
    /// Remove this configuration's cached tokens (`--all`: every cached login).
    Logout {
        /// Remove every cached login in the cache directory.
        #[arg(long)]
        all: bool,
        #[arg(value_name = "MCP_BACKEND_URL")]
        backend_url: Option<String>,
    },
    /// Show who is logged in for this configuration (never a token value).
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
        #[arg(value_name = "MCP_BACKEND_URL")]
        backend_url: Option<String>,
    },
    /// Print a valid access token to stdout (refreshing or logging in as needed).
    Token {
        #[arg(value_name = "MCP_BACKEND_URL")]
        backend_url: Option<String>,
    },
}

#[derive(Debug, Args, Default)]
pub struct Opts {
    /// OIDC issuer URL of your identity provider.
    #[arg(long, env = "OIDC_ISSUER_URL", global = true, value_name = "URL")]
    pub oidc_issuer_url: Option<String>,

    /// OAuth client ID registered with the identity provider.
    #[arg(long, env = "OIDC_CLIENT_ID", global = true, value_name = "ID")]
    pub oidc_client_id: Option<String>,

    /// Client secret, for confidential clients only (prefer the environment variable: argv is visible in `ps`).
    #[arg(
        long,
        env = "OIDC_CLIENT_SECRET",
        hide_env_values = true,
        global = true,
        value_name = "SECRET"
    )]
    pub oidc_client_secret: Option<String>,

    /// Space-separated OAuth scopes [default: openid profile email; after discovery: what the server asks for]
    #[arg(long, env = "OIDC_SCOPES", global = true, value_name = "SCOPES")]
    pub oidc_scopes: Option<String>,

    /// OAuth redirect (callback) URL; must be a loopback http URL registered with the provider.
    #[arg(
        long,
        env = "OIDC_REDIRECT_URL",
        global = true,
        value_name = "URL",
        default_value = "http://localhost:8080/auth/callback"
    )]
    pub oidc_redirect_url: String,

    /// How long to wait for the browser login, in seconds.
    #[arg(
        long,
        env = "MCP_PROXY_AUTH_TIMEOUT",
        global = true,
        value_name = "SECONDS",
        default_value_t = 300,
        value_parser = seconds
    )]
    pub auth_timeout: u64,

    /// Log in with the device authorization grant (RFC 8628): a code to enter on another device.
    /// Chosen automatically when no browser can be opened.
    #[arg(
        long,
        env = "MCP_PROXY_DEVICE_CODE",
        global = true,
        conflicts_with = "client_credentials"
    )]
    pub device_code: bool,

    /// Use the client credentials grant (needs a client secret): no user, no browser.
    #[arg(long, env = "MCP_PROXY_CLIENT_CREDENTIALS", global = true)]
    pub client_credentials: bool,

    /// RFC 8707 resource to ask tokens for [default: the backend URL when the authorization server
    /// was discovered from it; none otherwise].
    #[arg(
        long,
        env = "MCP_PROXY_RESOURCE",
        global = true,
        value_name = "URL",
        conflicts_with = "no_resource"
    )]
    pub resource: Option<String>,

    /// Never send the `resource` parameter (for providers that reject it).
    #[arg(long, global = true)]
    pub no_resource: bool,

    /// Extra authorization request parameter, `key=value` (repeatable), e.g. `audience=...` or `prompt=consent`.
    #[arg(long = "authorize-param", global = true, value_name = "KEY=VALUE")]
    pub authorize_params: Vec<String>,

    /// Token cache directory [default: ~/.fastmcp/oauth-mcp-client-cache]
    #[arg(long, env = "MCP_PROXY_CACHE_DIR", global = true, value_name = "DIR", value_parser = path)]
    pub cache_dir: Option<PathBuf>,

    /// Extra header for every backend request, `Name: value` (repeatable; `${VAR}` is expanded).
    #[arg(long = "header", short = 'H', global = true, value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Backend transport: `auto` tries Streamable HTTP, then falls back to legacy HTTP+SSE.
    #[arg(long, env = "MCP_PROXY_TRANSPORT", global = true, default_value = "auto", value_parser = transport)]
    pub transport: Transport,

    /// Allow plain `http://` backends and issuers that are not on loopback.
    #[arg(long, env = "MCP_PROXY_ALLOW_HTTP", global = true)]
    pub allow_http: bool,

    /// Extra CA certificates (PEM) to trust, added to the system roots (also: SSL_CERT_FILE, NODE_EXTRA_CA_CERTS).
    #[arg(long, env = "MCP_PROXY_CA_FILE", global = true, value_name = "FILE", value_parser = path)]
    pub ca_file: Option<PathBuf>,

    /// Longest wait for the answer to one request, in seconds; then the client gets an error and
    /// the server a `notifications/cancelled` (0: no limit; progress does not extend it).
    #[arg(long, env = "MCP_PROXY_REQUEST_TIMEOUT", global = true, value_name = "SECONDS", default_value = "0", value_parser = optional_seconds)]
    pub request_timeout: u64,

    /// Largest JSON-RPC message accepted on stdin, in bytes.
    #[arg(long, env = "MCP_PROXY_MAX_MESSAGE_BYTES", global = true, value_name = "BYTES", default_value = "67108864", value_parser = bytes)]
    pub max_message_bytes: usize,

    /// Suppress the startup banner.
    #[arg(long, global = true)]
    pub no_banner: bool,

    /// Show only error messages.
    #[arg(long, global = true, conflicts_with = "debug")]
    pub silent: bool,

    /// Enable detailed debug logging (also: MCP_PROXY_DEBUG=1|true|yes|on).
    #[arg(long, global = true)]
    pub debug: bool,
}

// MCP client configs often hold empty values (`"MCP_PROXY_CACHE_DIR": ""`): for these
// options an empty value means "not set", not an error.
fn number_or<T: std::str::FromStr>(s: &str, default: T, unit: &str) -> Result<T, String> {
    match s.trim() {
        "" => Ok(default),
        t => t.parse().map_err(|_| format!("`{s}` is not a number of {unit}")),
    }
}

fn seconds(s: &str) -> Result<u64, String> {
    number_or(s, 300, "seconds")
}

fn optional_seconds(s: &str) -> Result<u64, String> {
    number_or(s, 0, "seconds")
}

fn bytes(s: &str) -> Result<usize, String> {
    number_or(s, 64 * 1024 * 1024, "bytes")
}

fn path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s.trim()))
}

fn transport(s: &str) -> Result<Transport, String> {
    use clap::ValueEnum;
    if s.trim().is_empty() {
        return Ok(Transport::Auto);
    }
    Transport::from_str(s.trim(), true).map_err(|_| format!("`{s}` is not one of `auto`, `streamable-http`, `sse`"))
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
    /// `--help` / `--version`: text for stderr (or stdout when not proxying), exit 0.
    Info(String),
}

/// Parse argv (without the program name) and the process environment.
pub fn parse(argv: &[String]) -> Result<Invocation, ConfigError> {
    let args = std::iter::once("authful-mcp-proxy".to_string()).chain(argv.iter().cloned());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Ok(Invocation::Info(e.render().to_string())),
                _ => Err(ConfigError::Usage(e.render().to_string().trim_end().to_string())),
            };
        }
    };
    let debug_env = std::env::var("MCP_PROXY_DEBUG")
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false);
    let sub_url = match &cli.command {
        Some(Command::Login { backend_url })
        | Some(Command::Logout { backend_url, .. })
        | Some(Command::Status { backend_url, .. })
        | Some(Command::Token { backend_url }) => backend_url.clone(),
        None => None,
    };
    let proxying = cli.command.is_none();
    let config = Config::from_parts(sub_url.or(cli.backend_url), cli.opts, debug_env, proxying)?;
    Ok(match cli.command {
        None => Invocation::Proxy(config),
        Some(Command::Login { .. }) => Invocation::Login(config),
        Some(Command::Logout { all, .. }) => Invocation::Logout { config, all },
        Some(Command::Status { json, .. }) => Invocation::Status { config, json },
        Some(Command::Token { .. }) => Invocation::Token(config),
    })
}
