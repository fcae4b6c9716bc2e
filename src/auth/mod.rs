//! Login and the token lifecycle. The bridge sees [`TokenManager`] only as a
//! [`crate::token_source::TokenSource`] (see `source.rs`): "which token do I send" and "the
//! server refused this one". Behind it: the cache, refresh, and the login (discovery, PKCE,
//! loopback callback, or another grant), one at a time across processes.

pub mod browser;
pub mod callback;
pub mod client_auth;
pub mod cross_app;
pub mod discovery;
pub mod grant;
pub mod registration;
pub mod retry;
mod source;

use crate::config::{AuthConfig, GrantKind};
use crate::secret::Secret;
use crate::token_cache::{now, Discovered, Tokens};
use crate::token_store::TokenStore;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot discover the identity provider at `{issuer}`: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("callback port `{port}` is already in use")]
    PortInUse { port: u16 },
    #[error("cannot listen for the login callback on `{addr}`: {reason}")]
    Listen { addr: String, reason: String },
    #[error("no login within {}s", .0.as_secs())]
    TimedOut(Duration),
    #[error("the identity provider refused the login: `{error}`{}", describe_opt(.description))]
    Denied { error: String, description: Option<String> },
    #[error("the identity provider refused the token request: `{error}`{}", describe_opt(.description))]
    TokenRefused { error: String, description: Option<String> },
    #[error("the identity provider refused a device code: `{error}`{}", describe_opt(.description))]
    DeviceRefused { error: String, description: Option<String> },
    #[error("cannot reach the identity provider: {0}")]
    Network(String),
    /// A transient answer (`temporarily_unavailable`, `server_error`, HTTP 429 or 5xx),
    /// still there after `tries` tries.
    #[error("the identity provider is having trouble: {detail}{}", tries_note(*.tries))]
    Unavailable {
        detail: String,
        retry_after: Option<Duration>,
        tries: u32,
    },
    /// The token endpoint answered something that is neither tokens nor an OAuth error.
    #[error("the identity provider's token endpoint gave an unexpected answer: {0}")]
    Unexpected(String),
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    #[error("not logged in for this configuration")]
    LoginRequired,
    #[error("{0}")]
    Lock(String),
    #[error("cannot sign the client assertion: {0}")]
    ClientAssertion(String),
}

fn tries_note(tries: u32) -> String {
    if tries > 1 {
        format!(" (still, after {tries} tries)")
    } else {
        String::new()
    }
}

fn describe_opt(d: &Option<String>) -> String {
    d.as_deref()
        .filter(|d| !d.is_empty())
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl AuthError {
    pub fn is_config_problem(&self) -> bool {
        false
    }

    /// Refresh failures that only a new login can fix: the refresh token is no longer good.
    pub fn needs_login(&self) -> bool {
        matches!(self, AuthError::TokenRefused { error, .. } if matches!(error.as_str(), "invalid_grant" | "invalid_token"))
    }

    /// The provider does not accept this client (wrong ID or secret, a client it forgot, or
    /// a grant the client may not use).
    pub fn is_client_refused(&self) -> bool {
        matches!(self, AuthError::TokenRefused { error, .. } if matches!(error.as_str(), "invalid_client" | "unauthorized_client"))
    }

    /// Worth trying again later without the user: the network or the provider was down.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AuthError::Network(_) | AuthError::Discovery { .. } | AuthError::Unavailable { .. }
        )
    }

    /// A token request worth repeating at once (after a pause): see [`retry`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, AuthError::Network(_) | AuthError::Unavailable { .. })
    }

    /// How long the provider asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// This error, noting that it stayed after `tries` tries.
    pub fn after_tries(self, tries: u32) -> Self {
        match self {
            AuthError::Unavailable {
                detail, retry_after, ..
            } => AuthError::Unavailable {
                detail,
                retry_after,
                tries,
            },
            other => other,
        }
    }

    /// The message with its hint, for a JSON-RPC error a client shows as one line.
    pub fn with_hint(&self) -> String {
        match self.hint() {
            Some(h) => format!("{self} ({h})"),
            None => self.to_string(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Discovery { .. } => "ERR_DISCOVERY",
            AuthError::PortInUse { .. } => "ERR_PORT_IN_USE",
            AuthError::Listen { .. } => "ERR_LISTEN",
            AuthError::TimedOut(_) => "ERR_LOGIN_TIMEOUT",
            AuthError::Denied { .. } => "ERR_LOGIN_DENIED",
            AuthError::TokenRefused { .. } => "ERR_TOKEN_REFUSED",
            AuthError::DeviceRefused { .. } => "ERR_DEVICE_REFUSED",
            AuthError::Network(_) => "ERR_NETWORK",
            AuthError::Unavailable { .. } => "ERR_PROVIDER_UNAVAILABLE",
            AuthError::Unexpected(_) => "ERR_TOKEN_ENDPOINT",
            AuthError::IdToken(_) => "ERR_ID_TOKEN",
            AuthError::LoginRequired => "ERR_NOT_LOGGED_IN",
            AuthError::Lock(_) => "ERR_LOCK",
            AuthError::ClientAssertion(_) => "ERR_CLIENT_ASSERTION",
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            AuthError::Discovery { reason, .. } if reason.starts_with(discovery::NAMES_NONE) => {
                "set `OIDC_ISSUER_URL` (or `--oidc-issuer-url`) and `OIDC_CLIENT_ID` (or `--oidc-client-id`) to your identity provider's values".into()
            }
            AuthError::Discovery { .. } => "check `OIDC_ISSUER_URL`: it must be the issuer exactly as the provider states it (its `/.well-known/oauth-authorization-server` or `/.well-known/openid-configuration` must answer)".into(),
            AuthError::PortInUse { .. } => "stop what uses that port, or set `OIDC_REDIRECT_URL` to another port registered with your identity provider".into(),
            AuthError::Listen { .. } => "set `OIDC_REDIRECT_URL` to a loopback URL such as `http://localhost:8080/auth/callback`".into(),
            AuthError::TimedOut(_) => "finish the login at the URL printed above (in a browser, or with the code shown); raise `--auth-timeout` if your login takes longer".into(),
            AuthError::Denied { error, .. } | AuthError::TokenRefused { error, .. } | AuthError::DeviceRefused { error, .. }
                if error == "invalid_scope" =>
            {
                "check `OIDC_SCOPES`: the identity provider does not grant one of the requested scopes to this client".into()
            }
            AuthError::Denied { error, .. } | AuthError::TokenRefused { error, .. }
                if error == "invalid_client" || error == "unauthorized_client" =>
            {
                "check `OIDC_CLIENT_ID` and `OIDC_CLIENT_SECRET`: the identity provider does not accept this client, or does not allow it this kind of login".into()
            }
            AuthError::Denied { .. } => "log in again and approve the requested scopes, or ask your administrator for access".into(),
            AuthError::TokenRefused { error, .. } if error == "invalid_grant" || error == "invalid_token" => {
                "the login code or refresh token was not accepted (expired, revoked or already used): log in again with `authful-mcp-proxy login`".into()
            }
            AuthError::TokenRefused { error, .. } if error == "unsupported_grant_type" => {
                "the identity provider does not offer this grant: choose another login (`--device-code`, `--client-credentials`, or the browser)".into()
            }
            AuthError::TokenRefused { .. } => "check `OIDC_CLIENT_ID`, `OIDC_CLIENT_SECRET` and that the redirect URL is registered with your identity provider".into(),
            AuthError::Unavailable { .. } => {
                "the provider answered that it cannot serve the request now; try again in a while, and tell its administrator if it lasts".into()
            }
            AuthError::Unexpected(_) => "check `OIDC_ISSUER_URL`: its token endpoint should answer with OAuth JSON".into(),
            AuthError::DeviceRefused { .. } => {
                "allow the device authorization grant for this client at your identity provider, or log in with the browser (without `--device-code`)".into()
            }
            AuthError::Network(_) => "check your network, proxy (`HTTPS_PROXY`) and CA settings (`--ca-file`)".into(),
            AuthError::IdToken(_) => "check `OIDC_ISSUER_URL` and `OIDC_CLIENT_ID`; the provider's token was not issued for this client".into(),
            AuthError::LoginRequired => "run `authful-mcp-proxy login` with the same configuration".into(),
            AuthError::Lock(_) | AuthError::ClientAssertion(_) => return None,
        })
    }
}

struct Inner {
    tokens: Option<Tokens>,
    discovered: Discovered,
    loaded: bool,
    /// Fingerprint of the last token the backend refused; never reused from the cache.
    refused: Option<[u8; 32]>,
    /// Scopes added by step-up (403 `insufficient_scope`), and how often that happened.
    extra_scopes: Vec<String>,
    step_ups: u32,
    /// A refresh cannot widen the scopes: the next token needs a new login.
    force_login: bool,
}

/// Builds the identity provider's HTTP client.
pub type HttpFactory = Box<dyn FnOnce() -> reqwest::Client + Send>;

/// Gives valid access tokens: cache → refresh → login (browser, device code or client
/// credentials), one process at a time.
pub struct TokenManager {
    cfg: AuthConfig,
    /// The identity provider's HTTP client, built on first use: a warm start with a valid
    /// cached token never needs it (nor the system certificate store it loads).
    http: std::sync::OnceLock<reqwest::Client>,
    make_http: std::sync::Mutex<Option<HttpFactory>>,
    cache: TokenStore,
    inner: tokio::sync::Mutex<Inner>,
    /// A copy of the current access token for callers that must not wait (shutdown).
    current: std::sync::Mutex<Option<Secret<String>>>,
    provider: std::sync::Mutex<Option<Arc<grant::Provider>>>,
    interactive: bool,
    /// The "no login configured yet" notice was given.
    told_no_login: std::sync::atomic::AtomicBool,
}

impl TokenManager {
    /// `interactive`: whether a user login may be started when nothing else works.
    pub fn new(cfg: AuthConfig, make_http: HttpFactory, interactive: bool) -> Arc<Self> {
        let cache = TokenStore::new(&cfg);
        Arc::new(TokenManager {
            cfg,
            http: std::sync::OnceLock::new(),
            make_http: std::sync::Mutex::new(Some(make_http)),
            cache,
            inner: tokio::sync::Mutex::new(Inner {
                tokens: None,
                discovered: Discovered::default(),
                loaded: false,
                refused: None,
                extra_scopes: Vec::new(),
                step_ups: 0,
                force_login: false,
            }),
            current: std::sync::Mutex::new(None),
            provider: std::sync::Mutex::new(None),
            interactive,
            told_no_login: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| match self.make_http.lock().unwrap().take() {
            Some(make) => make(),
            None => reqwest::Client::new(),
        })
    }

    pub fn cache(&self) -> &TokenStore {
        &self.cache
    }

    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    fn usable(inner: &Inner, t: &Tokens) -> bool {
        t.is_fresh(now())
            && !inner.force_login
            && inner.refused.is_none_or(|r| r != Tokens::fingerprint(&t.access_token))
    }

    fn set(&self, inner: &mut Inner, t: Tokens) {
        *self.current.lock().unwrap() = Some(t.access_token.clone());
        inner.tokens = Some(t);
    }

    fn load(&self, inner: &mut Inner) {
        if !inner.loaded {
            if let Some((t, d)) = self.cache.load_entry() {
                *self.current.lock().unwrap() = Some(t.access_token.clone());
                inner.tokens = Some(t);
                inner.discovered = d;
            }
            inner.loaded = true;
        }
    }

    /// The cached tokens (for `status`), without any network access.
    pub async fn peek(&self) -> Option<Tokens> {
        let mut inner = self.inner.lock().await;
        self.load(&mut inner);
        inner.tokens.clone()
    }

    /// The issuer and client ID for messages: configured, or as discovered and registered
    /// (from the cache), or a description of where they will come from.
    pub async fn labels(&self) -> (String, String) {
        let mut inner = self.inner.lock().await;
        self.load(&mut inner);
        let issuer = match (&self.cfg.issuer, &inner.discovered.issuer) {
            (None, Some(found)) => found.clone(),
            _ => self.cfg.issuer_label(),
        };
        let client = match (&self.cfg.client_id, &inner.discovered.registration) {
            (None, Some(reg)) => reg.client_id.clone(),
            _ => self.cfg.client_label(),
        };
        (issuer, client)
    }

    /// Drop what is held in memory (after `logout`).
    pub async fn forget(&self) {
        let mut inner = self.inner.lock().await;
        inner.tokens = None;
        inner.loaded = true;
        *self.current.lock().unwrap() = None;
    }

    /// The current token without waiting or refreshing (may be stale).
    pub fn cached_token(&self) -> Option<Secret<String>> {
        self.current.lock().unwrap().clone()
    }

    /// A valid token from memory or the cache, without waiting for a login, a refresh or
    /// another task holding the tokens; `None` when only one of those could give one.
    pub fn token_without_waiting(&self) -> Option<Secret<String>> {
        let mut inner = self.inner.try_lock().ok()?;
        self.load(&mut inner);
        let t = inner.tokens.as_ref().filter(|t| Self::usable(&inner, t))?;
        Some(t.access_token.clone())
    }

    /// Without a configured issuer: find out where to log in before any request is refused
    /// (for `login` and `token`; the proxy waits for the server's first 401 instead).
    pub async fn ensure_discoverable(&self) -> Result<(), crate::config::ConfigError> {
        if self.cfg.issuer.is_some() {
            return Ok(());
        }
        let mut inner = self.inner.lock().await;
        self.load(&mut inner);
        if inner.discovered.issuer.is_some() {
            return Ok(());
        }
        let backend = self.cfg.backend.clone().expect("config: no issuer implies a backend");
        let no_server = |reason| crate::config::ConfigError::NoAuthorizationServer {
            backend: backend.to_string(),
            reason,
        };
        let challenge = discovery::challenge(self.http(), &backend).await.map_err(no_server)?;
        let info = discovery::protected_resource(self.http(), &backend, &challenge)
            .await
            .map_err(no_server)?;
        if info.fallback {
            // Only the origin's default endpoints are left: make sure they are there.
            let origin = info.authorization_servers.first().cloned().unwrap_or_default();
            discovery::authorization_server(self.http(), &origin, true)
                .await
                .map_err(|e| match e {
                    AuthError::Discovery { reason, .. } => no_server(reason),
                    other => no_server(other.to_string()),
                })?;
        }
        Self::adopt(&mut inner.discovered, info, &backend);
        Ok(())
    }

    fn adopt(d: &mut Discovered, info: discovery::ResourceInfo, backend: &url::Url) {
        d.issuer = info.authorization_servers.first().cloned();
        d.resource = Some(info.resource.unwrap_or_else(|| backend.to_string()));
        d.scopes = Some(info.scopes);
        d.fallback = info.fallback;
    }

    /// A valid access token. Requests that arrive during a login wait for it.
    pub async fn access_token(&self) -> Result<Secret<String>, AuthError> {
        {
            // The hot path (every request): a fresh token in memory, nothing copied but it.
            let mut inner = self.inner.lock().await;
            self.load(&mut inner);
            if let Some(t) = inner.tokens.as_ref().filter(|t| Self::usable(&inner, t)) {
                return Ok(t.access_token.clone());
            }
        }
        self.tokens().await.map(|t| t.access_token)
    }

    /// Valid tokens: from memory or the cache if fresh, else refreshed, else a new login.
    pub async fn tokens(&self) -> Result<Tokens, AuthError> {
        let mut inner = self.inner.lock().await;
        self.load(&mut inner);
        if let Some(t) = inner.tokens.clone().filter(|t| Self::usable(&inner, t)) {
            self.set(&mut inner, t.clone());
            return Ok(t);
        }
        // Slow path, one process at a time: refresh tokens may rotate, and only one login
        // should happen however many proxies start together.
        let wait = self.cfg.auth_timeout + Duration::from_secs(30);
        let _lock = self.cache.lock(wait).await.map_err(AuthError::Lock)?;
        // Another process may have refreshed or logged in meanwhile; a cached login with an
        // authorization server the MCP server no longer names is not used.
        let known = inner.discovered.issuer.clone();
        if let Some((t, d)) = self
            .cache
            .load_entry()
            .filter(|(_, d)| known.is_none() || d.issuer == known)
        {
            inner.discovered = d;
            if Self::usable(&inner, &t) {
                tracing::debug!("using tokens another instance just obtained");
                self.set(&mut inner, t.clone());
                return Ok(t);
            }
            if !inner.force_login {
                inner.tokens = Some(t); // its refresh token is the newest
            }
        }
        if self.cfg.client_auth.cross_app.is_some() {
            // Cross-app access (SEP-990): a new exchange instead of a refresh or a login at
            // the MCP server's authorization server; see cross_app.rs.
            let t = self.cross_app_tokens(&mut inner).await?;
            self.cache.save_or_warn(&t, &inner.discovered);
            self.set(&mut inner, t.clone());
            return Ok(t);
        }
        let previous = inner.tokens.clone();
        let provider = self.provider(&mut inner).await?;
        let refresh_token = previous
            .as_ref()
            .and_then(|t| t.refresh_token.clone())
            .filter(|_| !inner.force_login);
        if let Some(rt) = refresh_token {
            match self.refresh(&provider, &rt).await {
                Ok(mut t) => {
                    if t.refresh_token.is_none() {
                        t.refresh_token = Some(rt); // no rotation: keep the one we have
                    }
                    if t.subject.is_none() {
                        t.subject = previous.as_ref().and_then(|p| p.subject.clone());
                        t.username = previous.as_ref().and_then(|p| p.username.clone());
                    }
                    self.cache.save_or_warn(&t, &inner.discovered);
                    self.set(&mut inner, t.clone());
                    tracing::debug!("access token refreshed");
                    return Ok(t);
                }
                // A registered client the server forgot: the login below registers again.
                Err(e) if e.needs_login() || (e.is_client_refused() && self.cfg.client_id.is_none()) => {
                    tracing::info!("the refresh token is no longer accepted ({e}); a new login is needed");
                }
                Err(e) => return Err(e),
            }
        }
        let provider = if self.fresh_registration_needed(&inner, &provider) {
            tracing::info!("the redirect URL or the grant changed since this proxy registered; registering again");
            inner.discovered.registration = None;
            *self.provider.lock().unwrap() = None;
            self.provider(&mut inner).await?
        } else {
            provider
        };
        let t = match self.obtain(&provider, &inner).await {
            // A registered client the server forgot: register again, once.
            Err(AuthError::TokenRefused { error, .. }) if error == "invalid_client" && self.cfg.client_id.is_none() => {
                tracing::info!("the authorization server no longer knows this proxy's registration; registering again");
                inner.discovered.registration = None;
                *self.provider.lock().unwrap() = None;
                let provider = self.provider(&mut inner).await?;
                self.obtain(&provider, &inner).await?
            }
            other => other?,
        };
        inner.force_login = false;
        self.cache.save_or_warn(&t, &inner.discovered);
        self.set(&mut inner, t.clone());
        Ok(t)
    }

    /// Before a login with a registered client: does the registration still fit (same
    /// redirect URL, and the device grant when the device flow will be used)?
    fn fresh_registration_needed(&self, inner: &Inner, p: &grant::Provider) -> bool {
        let Some(reg) = inner
            .discovered
            .registration
            .as_ref()
            .filter(|_| self.cfg.client_id.is_none())
        else {
            return false;
        };
        let device_needed = match self.cfg.grant {
            GrantKind::Device => true,
            GrantKind::Auto => !browser::can_open() && p.supports_device_flow(),
            GrantKind::ClientCredentials => false,
        };
        reg.redirect_uri != self.cfg.redirect_url.as_str() || (device_needed && !reg.device)
    }

    /// A new token from the authorization server, by the configured grant.
    async fn obtain(&self, p: &grant::Provider, inner: &Inner) -> Result<Tokens, AuthError> {
        let mut scopes = p.scopes.clone();
        for s in &inner.extra_scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        match self.cfg.grant {
            GrantKind::ClientCredentials => p.client_credentials(self.http(), &scopes).await,
            _ if !self.interactive => Err(AuthError::LoginRequired),
            GrantKind::Device => p.device_login(self.http(), &scopes).await,
            // Not with a private key: the device grant polls with the same parameters, and a
            // client assertion may be used once only.
            GrantKind::Auto
                if !browser::can_open() && p.supports_device_flow() && self.cfg.client_auth.private_key.is_none() =>
            {
                tracing::info!("no browser can be opened here; logging in with a device code instead");
                match p.device_login(self.http(), &scopes).await {
                    // This client may not use the device grant: the browser login still
                    // works by opening the printed URL by hand.
                    Err(AuthError::DeviceRefused { error, .. }) => {
                        tracing::info!(
                            "this client may not use a device code ({error}); open the login URL below by hand"
                        );
                        p.browser_login(self.http(), &scopes).await
                    }
                    other => other,
                }
            }
            GrantKind::Auto => p.browser_login(self.http(), &scopes).await,
        }
    }

    /// The backend answered 401 to `token`: the next `access_token()` refreshes.
    pub async fn rejected(&self, token: &Secret<String>) {
        let mut inner = self.inner.lock().await;
        inner.refused = Some(Tokens::fingerprint(token));
        tracing::debug!("the MCP server refused the access token; refreshing");
    }

    /// The backend answered 403 `insufficient_scope` naming `scopes`: log in again with the
    /// union of scopes, at most twice per process. False when there is nothing to add.
    pub async fn step_up(&self, token: &Secret<String>, scopes: &[String]) -> bool {
        let mut inner = self.inner.lock().await;
        let current: Vec<String> = self
            .provider
            .lock()
            .unwrap()
            .as_ref()
            .map(|p| p.scopes.clone())
            .unwrap_or_else(|| self.cfg.scopes.clone());
        let new: Vec<String> = scopes
            .iter()
            .filter(|s| !current.contains(s) && !inner.extra_scopes.contains(s))
            .cloned()
            .collect();
        if new.is_empty() || inner.step_ups >= 2 {
            return false;
        }
        tracing::info!("the MCP server needs more scopes ({}); logging in again", new.join(" "));
        inner.extra_scopes.extend(new);
        inner.step_ups += 1;
        inner.refused = Some(Tokens::fingerprint(token));
        inner.force_login = true;
        true
    }

    /// The authorization server and client, resolved once: configured, cached from an
    /// earlier discovery, or discovered (RFC 9728) and registered (RFC 7591) now.
    async fn provider(&self, inner: &mut Inner) -> Result<Arc<grant::Provider>, AuthError> {
        if let Some(p) = self.provider.lock().unwrap().clone() {
            return Ok(p);
        }
        let cfg = &self.cfg;
        let (issuer, mut resource, mut scopes, fallback) = match &cfg.issuer {
            // The original tool's way: an OpenID provider and its scopes (by default
            // `openid profile email`).
            Some(i) => (
                i.as_str().trim_end_matches('/').to_string(),
                cfg.resource.clone(),
                cfg.scopes.clone(),
                false,
            ),
            None => {
                if inner.discovered.issuer.is_none() {
                    let backend = cfg.backend.clone().expect("config: no issuer implies a backend");
                    let err = |reason| AuthError::Discovery {
                        issuer: backend.to_string(),
                        reason,
                    };
                    let challenge = discovery::challenge(self.http(), &backend).await.map_err(err)?;
                    let info = discovery::protected_resource(self.http(), &backend, &challenge)
                        .await
                        .map_err(err)?;
                    Self::adopt(&mut inner.discovered, info, &backend);
                }
                let d = &inner.discovered;
                // The MCP specification's order: the challenge's `scope`, else the protected
                // resource's `scopes_supported`, else no `scope` at all; the user's own
                // scopes win over both.
                let scopes = match (&d.scopes, cfg.scopes_explicit) {
                    (Some(s), false) => s.clone(),
                    (None, false) => Vec::new(),
                    (_, true) => cfg.scopes.clone(),
                };
                (
                    d.issuer.clone().unwrap_or_default(),
                    cfg.resource.clone().or(d.resource.clone()),
                    scopes,
                    d.fallback,
                )
            }
        };
        if cfg.no_resource {
            resource = None;
        }
        let metadata = discovery::authorization_server(self.http(), &issuer, fallback).await?;
        // A server's scopes may name `openid`; without the provider's keys its ID token could
        // not be verified, so a plain OAuth server is not asked for one.
        if cfg.issuer.is_none() && !cfg.scopes_explicit && metadata.jwks_uri.is_none() {
            scopes.retain(|s| s != "openid");
        }
        // Refresh tokens are asked for where the server lists `offline_access` (MCP
        // authorization, "scope selection"); with a configured issuer the scopes are the
        // user's, as in the original tool.
        let offline =
            cfg.issuer.is_none() && cfg.grant != GrantKind::ClientCredentials && metadata.offers_offline_access();
        if offline && !scopes.iter().any(|s| s == "offline_access") {
            scopes.push("offline_access".into());
        }
        let choice = registration::choose_client(
            cfg.client_id.as_deref(),
            cfg.client_auth.metadata_url.as_deref(),
            metadata.client_id_metadata_document_supported,
        );
        let (client_id, client_secret, auth_method) = match choice {
            registration::ClientChoice::Configured(id) => (id, cfg.client_secret.clone(), None),
            registration::ClientChoice::MetadataDocument(url) => {
                tracing::debug!("using the client ID metadata document `{url}` as the client ID");
                (url, None, None)
            }
            registration::ClientChoice::Register => {
                let redirect = cfg.redirect_url.as_str().to_string();
                // A cached registration is used as it is (its refresh token belongs to it);
                // `fresh_registration_needed` decides before a login whether to register anew.
                let reg = match inner.discovered.registration.clone() {
                    Some(r) => r,
                    None => {
                        // Ask for the device grant too when the server has one: the proxy may
                        // need it later (an SSH session, no display).
                        let device = cfg.grant != GrantKind::ClientCredentials
                            && metadata.device_authorization_endpoint.is_some();
                        let r = registration::register(self.http(), &metadata, &redirect, device).await?;
                        inner.discovered.registration = Some(r.clone());
                        r
                    }
                };
                (reg.client_id, reg.client_secret, reg.auth_method)
            }
        };
        let p = Arc::new(grant::Provider::new(
            metadata,
            client_id,
            client_secret,
            resource,
            scopes,
            cfg.clone(),
        ));
        if let Some(m) = auth_method.as_deref() {
            p.use_auth_method(m);
        }
        *self.provider.lock().unwrap() = Some(p.clone());
        Ok(p)
    }

    /// Refresh; transient failures are tried again inside (never a login for a blip).
    async fn refresh(&self, provider: &grant::Provider, rt: &Secret<String>) -> Result<Tokens, AuthError> {
        provider.refresh(self.http(), rt).await
    }
}
