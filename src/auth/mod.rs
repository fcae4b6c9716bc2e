//! Login and the token lifecycle. The bridge sees only [`TokenManager`]: "give me a valid
//! access token" and "the server refused this one". Behind it: the cache, refresh, and the
//! browser login (discovery, PKCE, loopback callback), one at a time across processes.

pub mod browser;
pub mod callback;
pub mod grant;

use crate::config::AuthConfig;
use crate::secret::Secret;
use crate::token_cache::{now, TokenCache, Tokens};
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
    #[error("no browser login within {}s", .0.as_secs())]
    TimedOut(Duration),
    #[error("the identity provider refused the login: `{error}`{}", describe_opt(.description))]
    Denied { error: String, description: Option<String> },
    #[error("the identity provider refused the token request: `{error}`{}", describe_opt(.description))]
    TokenRefused { error: String, description: Option<String> },
    #[error("cannot reach the identity provider: {0}")]
    Network(String),
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    #[error("not logged in for this configuration")]
    LoginRequired,
    #[error("{0}")]
    Lock(String),
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

    /// Refresh failures that only a new login can fix.
    pub fn needs_login(&self) -> bool {
        matches!(self, AuthError::TokenRefused { error, .. } if matches!(error.as_str(), "invalid_grant" | "invalid_token" | "unauthorized_client" | "invalid_scope"))
    }

    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Discovery { .. } => "ERR_DISCOVERY",
            AuthError::PortInUse { .. } => "ERR_PORT_IN_USE",
            AuthError::Listen { .. } => "ERR_LISTEN",
            AuthError::TimedOut(_) => "ERR_LOGIN_TIMEOUT",
            AuthError::Denied { .. } => "ERR_LOGIN_DENIED",
            AuthError::TokenRefused { .. } => "ERR_TOKEN_REFUSED",
            AuthError::Network(_) => "ERR_NETWORK",
            AuthError::IdToken(_) => "ERR_ID_TOKEN",
            AuthError::LoginRequired => "ERR_NOT_LOGGED_IN",
            AuthError::Lock(_) => "ERR_LOCK",
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            AuthError::Discovery { .. } => "check `OIDC_ISSUER_URL`: it must be the issuer exactly as the provider states it (its `/.well-known/openid-configuration` must answer)".into(),
            AuthError::PortInUse { .. } => "stop what uses that port, or set `OIDC_REDIRECT_URL` to another port registered with your identity provider".into(),
            AuthError::Listen { .. } => "set `OIDC_REDIRECT_URL` to a loopback URL such as `http://localhost:8080/auth/callback`".into(),
            AuthError::TimedOut(_) => "open the URL printed above in a browser and finish the login; raise `--auth-timeout` if your login takes longer".into(),
            AuthError::Denied { .. } => "log in again and approve the requested scopes, or ask your administrator for access".into(),
            AuthError::TokenRefused { .. } => "check `OIDC_CLIENT_ID`, `OIDC_CLIENT_SECRET` and that the redirect URL is registered with your identity provider".into(),
            AuthError::Network(_) => "check your network, proxy (`HTTPS_PROXY`) and CA settings (`--ca-file`)".into(),
            AuthError::IdToken(_) => "check `OIDC_ISSUER_URL` and `OIDC_CLIENT_ID`; the provider's token was not issued for this client".into(),
            AuthError::LoginRequired => "run `authful-mcp-proxy login` with the same configuration".into(),
            AuthError::Lock(_) => return None,
        })
    }
}

struct Inner {
    tokens: Option<Tokens>,
    loaded: bool,
    /// Fingerprint of the last token the backend refused; never reused from the cache.
    refused: Option<[u8; 32]>,
}

/// Gives valid access tokens: cache → refresh → browser login.
pub struct TokenManager {
    cfg: AuthConfig,
    http: reqwest::Client,
    cache: TokenCache,
    inner: tokio::sync::Mutex<Inner>,
    /// A copy of the current access token for callers that must not wait (shutdown).
    current: std::sync::Mutex<Option<Secret<String>>>,
    provider: tokio::sync::OnceCell<grant::Provider>,
    interactive: bool,
}

impl TokenManager {
    /// `interactive`: whether a browser login may be started when nothing else works.
    pub fn new(cfg: AuthConfig, http: reqwest::Client, interactive: bool) -> Arc<Self> {
        let cache = TokenCache::new(&cfg);
        Arc::new(TokenManager {
            cfg,
            http,
            cache,
            inner: tokio::sync::Mutex::new(Inner {
                tokens: None,
                loaded: false,
                refused: None,
            }),
            current: std::sync::Mutex::new(None),
            provider: tokio::sync::OnceCell::new(),
            interactive,
        })
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    fn usable(inner: &Inner, t: &Tokens) -> bool {
        t.is_fresh(now()) && inner.refused != Some(Tokens::fingerprint(&t.access_token))
    }

    fn set(&self, inner: &mut Inner, t: Tokens) -> Secret<String> {
        let at = t.access_token.clone();
        *self.current.lock().unwrap() = Some(at.clone());
        inner.tokens = Some(t);
        at
    }

    /// The cached tokens (for `status`), without any network access.
    pub async fn peek(&self) -> Option<Tokens> {
        let mut inner = self.inner.lock().await;
        if !inner.loaded {
            inner.tokens = self.cache.load();
            inner.loaded = true;
        }
        inner.tokens.clone()
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

    /// A valid access token. Requests that arrive during a login wait for it.
    pub async fn access_token(&self) -> Result<Secret<String>, AuthError> {
        self.tokens().await.map(|t| t.access_token)
    }

    /// Valid tokens: from memory or the cache if fresh, else refreshed, else a new login.
    pub async fn tokens(&self) -> Result<Tokens, AuthError> {
        let mut inner = self.inner.lock().await;
        if !inner.loaded {
            inner.tokens = self.cache.load();
            inner.loaded = true;
        }
        if let Some(t) = inner.tokens.clone().filter(|t| Self::usable(&inner, t)) {
            self.set(&mut inner, t.clone());
            return Ok(t);
        }
        // Slow path, one process at a time: refresh tokens may rotate, and only one browser
        // login should happen however many proxies start together.
        let wait = self.cfg.auth_timeout + Duration::from_secs(30);
        let _lock = self.cache.lock(wait).await.map_err(AuthError::Lock)?;
        if let Some(t) = self.cache.load() {
            // Another process may have refreshed or logged in meanwhile.
            if Self::usable(&inner, &t) {
                tracing::debug!("using tokens another instance just obtained");
                self.set(&mut inner, t.clone());
                return Ok(t);
            }
            inner.tokens = Some(t); // its refresh token is the newest
        }
        let previous = inner.tokens.clone();
        if let Some(rt) = previous.as_ref().and_then(|t| t.refresh_token.clone()) {
            match self.refresh(&rt).await {
                Ok(mut t) => {
                    if t.refresh_token.is_none() {
                        t.refresh_token = Some(rt); // no rotation: keep the one we have
                    }
                    if t.subject.is_none() {
                        t.subject = previous.as_ref().and_then(|p| p.subject.clone());
                        t.username = previous.as_ref().and_then(|p| p.username.clone());
                    }
                    self.cache.save_or_warn(&t);
                    self.set(&mut inner, t.clone());
                    tracing::debug!("access token refreshed");
                    return Ok(t);
                }
                Err(e) if e.needs_login() => {
                    tracing::info!("the refresh token is no longer accepted ({e}); a new login is needed");
                }
                Err(e) => return Err(e),
            }
        }
        if !self.interactive {
            return Err(AuthError::LoginRequired);
        }
        let t = self.login().await?;
        self.cache.save_or_warn(&t);
        self.set(&mut inner, t.clone());
        Ok(t)
    }

    /// The backend answered 401 to `token`: the next `access_token()` refreshes.
    pub async fn rejected(&self, token: &Secret<String>) {
        let mut inner = self.inner.lock().await;
        let fp = Tokens::fingerprint(token);
        inner.refused = Some(fp);
        tracing::debug!("the MCP server refused the access token; refreshing");
    }

    async fn provider(&self) -> Result<&grant::Provider, AuthError> {
        self.provider
            .get_or_try_init(|| grant::Provider::discover(&self.cfg, &self.http))
            .await
    }

    /// Refresh with retries on network errors (never a browser for a blip).
    async fn refresh(&self, rt: &Secret<String>) -> Result<Tokens, AuthError> {
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.provider().await {
                Ok(p) => p.refresh(&self.http, rt).await,
                Err(e) => Err(e),
            };
            match result {
                Err(AuthError::Network(e)) if attempt < 4 => {
                    tracing::warn!(
                        "refreshing the access token failed ({e}); retrying in {}s",
                        delay.as_secs_f32()
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(AuthError::Discovery { reason, .. }) if attempt < 4 => {
                    tracing::warn!(
                        "the identity provider is not answering ({reason}); retrying in {}s",
                        delay.as_secs_f32()
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    async fn login(&self) -> Result<Tokens, AuthError> {
        let provider = self.provider().await?;
        provider.browser_login(&self.http).await
    }
}
