//! `Config`: one validated configuration shared by the CLI and the JS API, with the
//! original's defaults. Validation happens here, before any network I/O.

use crate::auth::client_auth::ClientKey;
use crate::cli::Opts;
use crate::secret::Secret;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Streamable HTTP, falling back to HTTP+SSE when the first initialize gets 400/404/405.
    #[default]
    Auto,
    /// Streamable HTTP only (MCP 2025-03-26 and later).
    StreamableHttp,
    /// The deprecated HTTP+SSE transport (MCP 2024-11-05).
    Sse,
}

/// Which MCP protocol era the proxy speaks to the client (`--protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Follow the client: 2026-07-28 when its first message is `server/discover` or carries
    /// the version in `_meta`, else the `initialize` era.
    #[default]
    Auto,
    /// Always the `initialize` era (2024-11-05 … 2025-11-25): every message as it is.
    Legacy,
    /// Speak 2026-07-28 to the server whatever the client speaks: an older client is
    /// translated from its first `initialize` on, without asking the server first.
    Modern,
}

/// Where tokens are kept between runs (`--token-store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// The original's cache folder, one 0600 file per login.
    #[default]
    File,
    /// The refresh token in the OS credential store, the rest in the cache file.
    Keychain,
    /// Nothing on disk: each process logs in for itself.
    Memory,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::File => "file",
            StoreKind::Keychain => "keychain",
            StoreKind::Memory => "memory",
        }
    }
}

/// How tokens are obtained when neither the cache nor a refresh can give one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// Browser login; the device flow when no browser can be opened.
    Auto,
    Device,
    ClientCredentials,
}

/// Parameters the login flow sets itself; `--authorize-param` may not override them.
const OWNED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "resource",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Silent,
    Normal,
    Debug,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The issuer exactly as configured; discovery must return the same value. `None`: find
    /// it through the backend's protected resource metadata (RFC 9728).
    pub issuer: Option<Url>,
    /// `None`: register a client dynamically (RFC 7591).
    pub client_id: Option<String>,
    pub client_secret: Option<Secret<String>>,
    pub scopes: Vec<String>,
    /// Whether the user chose the scopes (else the server's may be used).
    pub scopes_explicit: bool,
    pub redirect_url: Url,
    pub auth_timeout: Duration,
    /// Where tokens are cached; `None` when no home directory is known (tokens stay in memory).
    pub cache_dir: Option<PathBuf>,
    pub token_store: StoreKind,
    /// RFC 8707 resource the tokens are for (set with `--resource`); part of the cache key.
    pub resource: Option<String>,
    /// `--no-resource`: never send `resource`.
    pub no_resource: bool,
    /// The backend, where discovery starts when no issuer is configured.
    pub backend: Option<Url>,
    pub grant: GrantKind,
    pub authorize_params: Vec<(String, String)>,
    /// How the client authenticates and where its ID comes from, beyond a secret.
    pub client_auth: ClientAuthOptions,
}

/// `private_key_jwt`, client ID metadata documents and cross-app access (issue 12).
#[derive(Debug, Clone, Default)]
pub struct ClientAuthOptions {
    /// `--client-private-key`: the configured client authenticates with a signed JWT
    /// (RFC 7523) instead of a secret.
    pub private_key: Option<Arc<ClientKey>>,
    /// `--client-metadata-url`: an HTTPS client ID metadata document (SEP-991), used as the
    /// client ID when no client ID is configured and the authorization server supports it.
    pub metadata_url: Option<String>,
    /// `--cross-app-access`: the configured issuer and client are the company's identity
    /// provider; the MCP server's own authorization server is reached with an ID-JAG.
    pub cross_app: Option<CrossAppConfig>,
}

/// Enterprise-managed authorization (SEP-990): the MCP server's authorization server and
/// the proxy's client there.
#[derive(Debug, Clone)]
pub struct CrossAppConfig {
    /// `--mcp-client-id`: this proxy's client ID at the MCP server's authorization server.
    pub client_id: String,
    /// `--mcp-client-secret`: its secret there (HTTP Basic), if it has one.
    pub client_secret: Option<Secret<String>>,
    /// `--id-token-file`: an ID token of the identity provider to exchange (read on every
    /// exchange) instead of logging in there.
    pub id_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub backend_url: Option<Url>,
    pub auth: Option<AuthConfig>,
    /// Static headers sent on every backend request. Values may be credentials: never logged.
    pub headers: Vec<(String, Secret<String>)>,
    pub transport: Transport,
    pub protocol: Protocol,
    pub allow_http: bool,
    /// `--ca-file` / `MCP_PROXY_CA_FILE`: must be readable PEM.
    pub ca_files: Vec<PathBuf>,
    /// `SSL_CERT_FILE` / `NODE_EXTRA_CA_CERTS`, often set machine-wide: used when readable,
    /// skipped with a warning otherwise (as Node does).
    pub env_ca_files: Vec<PathBuf>,
    pub max_message_bytes: usize,
    /// Largest line written to the client (`--max-output-bytes`; 0: no limit).
    pub max_output_bytes: usize,
    /// Longest wait for the answer to one request (`None`: no limit).
    pub request_timeout: Option<Duration>,
    pub log: LogLevel,
    pub banner: bool,
    pub cache_dir: Option<PathBuf>,
    pub token_store: StoreKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Usage(String),
    #[error("no backend URL given")]
    MissingBackend,
    #[error("no OIDC issuer URL given")]
    MissingIssuer,
    #[error("`{value}` is not a valid {what} URL: {reason}")]
    BadUrl {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("refusing plain-http {what} `{url}` that is not on this machine")]
    InsecureHttp { what: &'static str, url: String },
    #[error("the redirect URL `{0}` must be an http URL on localhost, 127.0.0.1 or [::1]")]
    RedirectNotLoopback(String),
    #[error("header `{0}` is not of the form `Name: value`")]
    BadHeader(String),
    #[error("header `{name}` uses `${{{var}}}`, but `{var}` is not set")]
    HeaderVarUnset { name: String, var: String },
    #[error("`--authorize-param {0}` is not of the form `key=value`, or sets a parameter the login owns")]
    BadAuthorizeParam(String),
    #[error("`--client-credentials` needs a client ID and a client secret or private key")]
    ClientCredentialsNeedSecret,
    #[error("client private key `{path}`: {reason}")]
    BadClientKey { path: String, reason: String },
    #[error("`--cross-app-access` needs {0}")]
    CrossAppIncomplete(&'static str),
    #[error("CA file `{path}`: {reason}")]
    BadCaFile { path: String, reason: String },
    #[error("the MCP server at `{backend}` names no authorization server: {reason}")]
    NoAuthorizationServer { backend: String, reason: String },
}

impl AuthConfig {
    /// The issuer for messages: configured, or where it will be discovered from.
    pub fn issuer_label(&self) -> String {
        match (&self.issuer, &self.backend) {
            (Some(i), _) => i.as_str().trim_end_matches('/').to_string(),
            (None, Some(b)) => format!("the authorization server of {b}"),
            (None, None) => "(unknown)".into(),
        }
    }

    pub fn client_label(&self) -> String {
        self.client_id
            .clone()
            .or_else(|| self.client_auth.metadata_url.clone())
            .unwrap_or_else(|| "(registered dynamically)".into())
    }
}

impl ConfigError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ConfigError::Usage(_) => "run `authful-mcp-proxy --help` to see the commands and options".into(),
            ConfigError::MissingBackend => {
                "pass the remote MCP server URL as the first argument, or set `MCP_BACKEND_URL`".into()
            }
            ConfigError::MissingIssuer => "set `OIDC_ISSUER_URL` in the environment (the `env` block of your MCP client config) or pass `--oidc-issuer-url`; for a server that takes a fixed credential, pass `--header \"Authorization: Bearer ...\"` instead".into(),
            ConfigError::BadUrl { .. } => "use a full URL such as `https://mcp.example.com/mcp`".into(),
            ConfigError::InsecureHttp { .. } => "use `https://`, or pass `--allow-http` if you really mean it".into(),
            ConfigError::RedirectNotLoopback(_) => "set `OIDC_REDIRECT_URL` to e.g. `http://localhost:8080/auth/callback` and register it with your identity provider".into(),
            ConfigError::BadHeader(_) => "write headers as `--header \"Name: value\"` (or `Name:value`)".into(),
            ConfigError::HeaderVarUnset { .. } => "set the variable in the `env` block of your MCP client config".into(),
            ConfigError::BadAuthorizeParam(_) => "write `--authorize-param audience=https://api.example.com`; `scope`, `state`, `redirect_uri` and the like are set by the login itself".into(),
            ConfigError::ClientCredentialsNeedSecret => "set `OIDC_CLIENT_ID` and `OIDC_CLIENT_SECRET` (or `MCP_PROXY_CLIENT_PRIVATE_KEY`)".into(),
            ConfigError::BadClientKey { .. } => "point `--client-private-key` (or `MCP_PROXY_CLIENT_PRIVATE_KEY`) at the unencrypted PEM private key whose public key is registered for your client".into(),
            ConfigError::CrossAppIncomplete(_) => "cross-app access needs your identity provider (`OIDC_ISSUER_URL`, `OIDC_CLIENT_ID`), the MCP server URL and this proxy's client ID at the MCP server's authorization server (`MCP_PROXY_MCP_CLIENT_ID`)".into(),
            ConfigError::BadCaFile { .. } => {
                "point `--ca-file` (or `MCP_PROXY_CA_FILE`) at a PEM file with your organisation's CA certificates".into()
            }
            ConfigError::NoAuthorizationServer { .. } => "set `OIDC_ISSUER_URL` (or `--oidc-issuer-url`) and `OIDC_CLIENT_ID` (or `--oidc-client-id`) to your identity provider's values".into(),
        })
    }
}

/// True for `localhost`, `*.localhost`, 127.0.0.0/8 and ::1.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn parse_url(what: &'static str, value: &str, allow_http: bool) -> Result<Url, ConfigError> {
    let url = Url::parse(value.trim()).map_err(|e| ConfigError::BadUrl {
        what,
        value: value.into(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http || is_loopback(&url) => Ok(url),
        "http" => Err(ConfigError::InsecureHttp {
            what,
            url: value.into(),
        }),
        other => Err(ConfigError::BadUrl {
            what,
            value: value.into(),
            reason: format!("scheme `{other}` is not http or https"),
        }),
    }
}

/// `Name: value` or `Name:value`, with `${VAR}` expanded from the environment.
pub fn parse_header(raw: &str) -> Result<(String, Secret<String>), ConfigError> {
    let (name, value) = raw.split_once(':').ok_or_else(|| ConfigError::BadHeader(raw.into()))?;
    let name = name.trim();
    if name.is_empty() || reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(ConfigError::BadHeader(name.into()));
    }
    let value = expand_env(name, value.trim())?;
    if reqwest::header::HeaderValue::from_str(&value).is_err() {
        return Err(ConfigError::BadHeader(name.into()));
    }
    Ok((name.to_string(), Secret::new(value)))
}

fn expand_env(name: &str, value: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        match std::env::var(var) {
            Ok(v) => out.push_str(&v),
            Err(_) => {
                return Err(ConfigError::HeaderVarUnset {
                    name: name.into(),
                    var: var.into(),
                })
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The client-authentication flags, taken out of [`Opts`].
struct ClientFlags {
    private_key: Option<PathBuf>,
    key_id: Option<String>,
    metadata_url: Option<String>,
    cross_app: bool,
    mcp_client_id: Option<String>,
    mcp_client_secret: Option<String>,
    id_token_file: Option<PathBuf>,
}

impl ClientFlags {
    fn take(o: &mut Opts) -> ClientFlags {
        ClientFlags {
            private_key: o.client_private_key.take().filter(|p| !p.as_os_str().is_empty()),
            key_id: non_empty(o.client_key_id.take()),
            metadata_url: non_empty(o.client_metadata_url.take()),
            cross_app: o.cross_app_access,
            mcp_client_id: non_empty(o.mcp_client_id.take()),
            mcp_client_secret: non_empty(o.mcp_client_secret.take()),
            id_token_file: o.id_token_file.take().filter(|p| !p.as_os_str().is_empty()),
        }
    }
}

fn client_auth_options(
    f: &ClientFlags,
    client_id: &Option<String>,
    client_secret: &Option<Secret<String>>,
    issuer: &Option<Url>,
    backend: &Option<Url>,
    allow_http: bool,
) -> Result<ClientAuthOptions, ConfigError> {
    let private_key = match &f.private_key {
        None => None,
        Some(path) => {
            if client_id.is_none() {
                return Err(ConfigError::Usage(
                    "`--client-private-key` needs the client ID it belongs to (`--oidc-client-id`)".into(),
                ));
            }
            if client_secret.is_some() {
                return Err(ConfigError::Usage(
                    "`--client-private-key` and `--oidc-client-secret` cannot be used together".into(),
                ));
            }
            let key = ClientKey::load(path, f.key_id.clone()).map_err(|reason| ConfigError::BadClientKey {
                path: path.display().to_string(),
                reason,
            })?;
            tracing::debug!(
                "client authentication: private_key_jwt ({}, kid `{}`)",
                key.alg(),
                key.kid()
            );
            Some(Arc::new(key))
        }
    };
    if f.key_id.is_some() && private_key.is_none() {
        return Err(ConfigError::Usage(
            "`--client-key-id` belongs to `--client-private-key`".into(),
        ));
    }
    let metadata_url = match &f.metadata_url {
        None => None,
        Some(u) => {
            // SEP-991: an https URL with a path (the document's own address).
            let url = parse_url("client metadata", u, allow_http)?;
            if url.scheme() != "https" || url.path() == "/" {
                return Err(ConfigError::BadUrl {
                    what: "client metadata",
                    value: u.clone(),
                    reason: "a client ID metadata document URL is an https URL with a path".into(),
                });
            }
            Some(url.to_string())
        }
    };
    let cross_app = if f.cross_app {
        if issuer.is_none() || client_id.is_none() {
            return Err(ConfigError::CrossAppIncomplete(
                "your identity provider's issuer and client ID (`OIDC_ISSUER_URL`, `OIDC_CLIENT_ID`)",
            ));
        }
        if backend.is_none() {
            return Err(ConfigError::CrossAppIncomplete("the MCP server URL"));
        }
        let Some(mcp_client_id) = f.mcp_client_id.clone() else {
            return Err(ConfigError::CrossAppIncomplete(
                "the proxy's client ID at the MCP server's authorization server (`--mcp-client-id`)",
            ));
        };
        Some(CrossAppConfig {
            client_id: mcp_client_id,
            client_secret: f.mcp_client_secret.clone().map(Secret::new),
            id_token_file: f.id_token_file.clone(),
        })
    } else {
        for (given, flag) in [
            (f.mcp_client_id.is_some(), "--mcp-client-id"),
            (f.mcp_client_secret.is_some(), "--mcp-client-secret"),
            (f.id_token_file.is_some(), "--id-token-file"),
        ] {
            if given {
                return Err(ConfigError::Usage(format!("`{flag}` belongs to `--cross-app-access`")));
            }
        }
        None
    };
    Ok(ClientAuthOptions {
        private_key,
        metadata_url,
        cross_app,
    })
}

/// The original's cache folder: `~/.fastmcp/oauth-mcp-client-cache`.
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::home_dir().map(|h| h.join(".fastmcp").join("oauth-mcp-client-cache"))
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl Config {
    /// Build and validate. `proxying` is true for the default command, which needs a backend.
    pub fn from_parts(
        backend: Option<String>,
        mut o: Opts,
        debug_env: bool,
        proxying: bool,
    ) -> Result<Config, ConfigError> {
        let allow_http = o.allow_http;
        let backend_url = match non_empty(backend) {
            Some(b) => Some(parse_url("backend", &b, allow_http)?),
            None if proxying => return Err(ConfigError::MissingBackend),
            None => None,
        };
        let headers = o
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        let has_static_auth = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        let cache_dir = o
            .cache_dir
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(default_cache_dir);

        let issuer = non_empty(o.oidc_issuer_url.clone());
        let client_id = non_empty(o.oidc_client_id.clone());
        let o_client = ClientFlags::take(&mut o);
        let auth = if issuer.is_none() && client_id.is_none() && has_static_auth {
            None
        } else if issuer.is_none() && backend_url.is_none() {
            // Nothing to discover the authorization server from.
            return Err(ConfigError::MissingIssuer);
        } else {
            let issuer = issuer.map(|i| parse_url("issuer", &i, allow_http)).transpose()?;
            let redirect_url = Url::parse(o.oidc_redirect_url.trim()).map_err(|e| ConfigError::BadUrl {
                what: "redirect",
                value: o.oidc_redirect_url.clone(),
                reason: e.to_string(),
            })?;
            if redirect_url.scheme() != "http" || !is_loopback(&redirect_url) {
                return Err(ConfigError::RedirectNotLoopback(o.oidc_redirect_url.clone()));
            }
            let scopes_explicit = non_empty(o.oidc_scopes.clone()).is_some();
            let scopes_text = non_empty(o.oidc_scopes).unwrap_or_else(|| "openid profile email".into());
            let mut scopes: Vec<String> = scopes_text.split_whitespace().map(str::to_string).collect();
            // With an issuer (the original tool's way) the login is OpenID Connect; without
            // one, the scopes are exactly what the user or the server names.
            if issuer.is_some() && !o.client_credentials && !scopes.iter().any(|s| s == "openid") {
                scopes.insert(0, "openid".into());
            }
            let client_secret = non_empty(o.oidc_client_secret).map(Secret::new);
            let client_auth =
                client_auth_options(&o_client, &client_id, &client_secret, &issuer, &backend_url, allow_http)?;
            let grant = if o.client_credentials {
                if client_id.is_none() || (client_secret.is_none() && client_auth.private_key.is_none()) {
                    return Err(ConfigError::ClientCredentialsNeedSecret);
                }
                if client_auth.cross_app.is_some() {
                    return Err(ConfigError::Usage(
                        "`--cross-app-access` and `--client-credentials` cannot be used together".into(),
                    ));
                }
                GrantKind::ClientCredentials
            } else if o.device_code {
                if client_auth.private_key.is_some() {
                    // Its polling repeats one request; a client assertion is good once only.
                    return Err(ConfigError::Usage(
                        "`--device-code` and `--client-private-key` cannot be used together".into(),
                    ));
                }
                GrantKind::Device
            } else {
                GrantKind::Auto
            };
            let mut authorize_params = Vec::new();
            for p in &o.authorize_params {
                match p.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() && !OWNED_PARAMS.contains(&k.trim()) => {
                        authorize_params.push((k.trim().to_string(), v.to_string()))
                    }
                    _ => return Err(ConfigError::BadAuthorizeParam(p.clone())),
                }
            }
            let resource = non_empty(o.resource)
                .map(|r| parse_url("resource", &r, true).map(|u| u.to_string()))
                .transpose()?;
            Some(AuthConfig {
                issuer,
                client_id,
                client_secret,
                scopes,
                scopes_explicit,
                redirect_url,
                auth_timeout: Duration::from_secs(o.auth_timeout.max(1)),
                cache_dir: cache_dir.clone(),
                token_store: o.token_store,
                resource,
                no_resource: o.no_resource,
                backend: backend_url.clone(),
                grant,
                authorize_params,
                client_auth,
            })
        };

        let ca_files: Vec<PathBuf> = o.ca_file.into_iter().filter(|p| !p.as_os_str().is_empty()).collect();
        let mut env_ca_files = Vec::new();
        for var in ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"] {
            if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                env_ca_files.push(PathBuf::from(p));
            }
        }
        let log = if o.silent {
            LogLevel::Silent
        } else if o.debug || debug_env {
            LogLevel::Debug
        } else {
            LogLevel::Normal
        };
        Ok(Config {
            backend_url,
            auth,
            headers,
            transport: o.transport,
            protocol: o.protocol,
            allow_http,
            ca_files,
            env_ca_files,
            max_message_bytes: o.max_message_bytes.max(1024),
            max_output_bytes: o.max_output_bytes,
            request_timeout: (o.request_timeout > 0).then(|| Duration::from_secs(o.request_timeout)),
            log,
            banner: !o.no_banner && !o.silent,
            cache_dir,
            token_store: o.token_store,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_with_and_without_space() {
        // Some MCP hosts split arguments on spaces, so `Name:value` must work too.
        let (n, v) = parse_header("Authorization: Bearer abc").unwrap();
        assert_eq!((n.as_str(), v.expose().as_str()), ("Authorization", "Bearer abc"));
        let (n, v) = parse_header("X-Api-Key:k1").unwrap();
        assert_eq!((n.as_str(), v.expose().as_str()), ("X-Api-Key", "k1"));
        assert!(parse_header("no colon here").is_err());
        assert!(parse_header(": empty name").is_err());
        assert!(parse_header("Bad Name: v").is_err());
    }

    #[test]
    fn headers_expand_environment_variables() {
        std::env::set_var("AUTHFUL_TEST_TOKEN", "t0k");
        let (_, v) = parse_header("Authorization: Bearer ${AUTHFUL_TEST_TOKEN}").unwrap();
        assert_eq!(v.expose(), "Bearer t0k");
        let err = parse_header("X: ${AUTHFUL_TEST_UNSET_VAR}").unwrap_err();
        assert!(matches!(err, ConfigError::HeaderVarUnset { .. }));
    }

    #[test]
    fn loopback_detection() {
        for (u, want) in [
            ("http://localhost:8080/x", true),
            ("http://127.0.0.1/", true),
            ("http://127.9.9.9/", true),
            ("http://[::1]:3000/", true),
            ("http://app.localhost/", true),
            ("http://example.com/", false),
            ("http://10.0.0.1/", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(u).unwrap()), want, "{u}");
        }
    }

    fn opts() -> Opts {
        Opts {
            oidc_redirect_url: "http://localhost:8080/auth/callback".into(),
            auth_timeout: 300,
            max_message_bytes: 1 << 20,
            max_output_bytes: 0,
            ..Default::default()
        }
    }

    #[test]
    fn login_config_rules() {
        // No issuer and no backend to discover it from.
        let e = Config::from_parts(None, opts(), false, false).unwrap_err();
        assert!(matches!(e, ConfigError::MissingIssuer));
        // No issuer but a backend: discovery (RFC 9728); no client id: registration (RFC 7591).
        let c = Config::from_parts(Some("https://b.example/mcp".into()), opts(), false, true).unwrap();
        let a = c.auth.unwrap();
        assert!(a.issuer.is_none() && a.client_id.is_none() && !a.scopes_explicit);
        // Client credentials need a secret; authorize params may not override the flow's own.
        let mut o = opts();
        o.client_credentials = true;
        o.oidc_client_id = Some("svc".into());
        let e = Config::from_parts(Some("https://b.example/mcp".into()), o, false, true).unwrap_err();
        assert!(matches!(e, ConfigError::ClientCredentialsNeedSecret));
        for bad in ["state=x", "redirect_uri=http://evil", "novalue", "=x"] {
            let mut o = opts();
            o.authorize_params = vec![bad.into()];
            let e = Config::from_parts(Some("https://b.example/mcp".into()), o, false, true).unwrap_err();
            assert!(matches!(e, ConfigError::BadAuthorizeParam(_)), "{bad}");
        }
        let mut o = opts();
        o.authorize_params = vec!["audience=https://api.example.com".into(), "prompt=consent".into()];
        let c = Config::from_parts(Some("https://b.example/mcp".into()), o, false, true).unwrap();
        assert_eq!(c.auth.unwrap().authorize_params.len(), 2);
        let mut o = opts();
        o.headers = vec!["Authorization: Bearer x".into()];
        let c = Config::from_parts(Some("https://b.example/mcp".into()), o, false, true).unwrap();
        assert!(c.auth.is_none());
    }

    #[test]
    fn config_refuses_remote_plain_http_and_non_loopback_redirects() {
        let mut o = opts();
        o.headers = vec!["Authorization: Bearer x".into()];
        assert!(matches!(
            Config::from_parts(Some("http://b.example/mcp".into()), o, false, true),
            Err(ConfigError::InsecureHttp { .. })
        ));
        let mut o = opts();
        o.oidc_issuer_url = Some("https://idp.example".into());
        o.oidc_client_id = Some("c".into());
        o.oidc_redirect_url = "http://evil.example/cb".into();
        assert!(matches!(
            Config::from_parts(Some("https://b.example/mcp".into()), o, false, true),
            Err(ConfigError::RedirectNotLoopback(_))
        ));
        assert!(matches!(
            Config::from_parts(None, opts(), false, true),
            Err(ConfigError::MissingBackend)
        ));
    }

    #[test]
    fn scopes_default_and_openid_is_always_requested() {
        let mut o = opts();
        o.oidc_issuer_url = Some("https://idp.example".into());
        o.oidc_client_id = Some("c".into());
        o.oidc_scopes = Some("mcp:read".into());
        let c = Config::from_parts(Some("https://b.example/mcp".into()), o, false, true).unwrap();
        assert_eq!(c.auth.unwrap().scopes, vec!["openid", "mcp:read"]);
    }
}
