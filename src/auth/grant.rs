//! The OAuth/OIDC exchanges, with `openidconnect`: authorization code + PKCE (S256) with state
//! and nonce in the browser, the device authorization grant (RFC 8628), client credentials,
//! refresh, and the `resource` parameter (RFC 8707) on every request. Plain OAuth 2.1 servers
//! are first-class: `openid` is asked for only when it is among the scopes, and an ID token
//! is verified (its keys fetched) only then.

use super::discovery::Metadata;
use super::retry::{self, Answer, Recorder, PATIENCE};
use super::{browser, callback, AuthError};
use crate::config::AuthConfig;
use crate::secret::Secret;
use crate::token_cache::{now, Tokens};
use openidconnect::core::{CoreClient, CoreDeviceAuthorizationResponse, CoreJsonWebKey, CoreTokenResponse};
use openidconnect::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl, EndpointNotSet,
    EndpointSet, ErrorResponseType, IssuerUrl, JsonWebKeySet, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardErrorResponse, TokenResponse, TokenUrl,
};
use std::sync::atomic::{AtomicBool, Ordering};

type Client = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet, EndpointNotSet>;

/// A resolved authorization server and the client to use with it.
pub struct Provider {
    pub metadata: Metadata,
    pub client_id: String,
    pub client_secret: Option<Secret<String>>,
    /// RFC 8707 resource to ask tokens for, if any.
    pub resource: Option<String>,
    pub scopes: Vec<String>,
    pub cfg: AuthConfig,
    /// The provider refused HTTP Basic client authentication: use the request body.
    use_post: AtomicBool,
}

/// What a failed token request means: a refusal (`TokenRefused`, with the provider's own
/// error code), a provider having trouble (`Unavailable`: `temporarily_unavailable`,
/// `server_error`, HTTP 429 or 5xx, JSON or not), the network (`Network`), or an answer that
/// is none of these (`Unexpected`). `answer`: the status and `Retry-After` seen, if any.
fn token_error<T: ErrorResponseType + AsRef<str> + std::fmt::Display + 'static>(
    e: RequestTokenError<openidconnect::HttpClientError<reqwest::Error>, StandardErrorResponse<T>>,
    answer: Option<Answer>,
) -> AuthError {
    let retry_after = answer.and_then(|a| a.retry_after);
    let status = answer.map(|a| a.status).unwrap_or_default();
    let transient = answer.is_some_and(|a| a.is_transient());
    match e {
        RequestTokenError::ServerResponse(r) => {
            let error = r.error().as_ref().to_string();
            let description = r.error_description().cloned();
            if matches!(error.as_str(), "temporarily_unavailable" | "server_error") {
                AuthError::Unavailable {
                    detail: format!("`{error}`{}", super::describe_opt(&description)),
                    retry_after,
                    tries: 1,
                }
            } else {
                AuthError::TokenRefused { error, description }
            }
        }
        RequestTokenError::Request(e) => AuthError::Network(match e {
            openidconnect::HttpClientError::Reqwest(r) => crate::http::describe(&r),
            other => other.to_string(),
        }),
        // An error page, an empty body, a proxy's HTML: the status decides.
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) if transient => AuthError::Unavailable {
            detail: format!("HTTP {status}"),
            retry_after,
            tries: 1,
        },
        // The body is not printed: a half-parsed token response may hold a token.
        RequestTokenError::Parse(e, _) if status == 200 => {
            AuthError::Unexpected(format!("HTTP 200 without valid tokens ({})", e.path()))
        }
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) if status != 0 => {
            AuthError::Unexpected(format!("HTTP {status} without an OAuth error"))
        }
        RequestTokenError::Parse(e, _) => AuthError::Unexpected(format!("not OAuth JSON ({})", e.path())),
        RequestTokenError::Other(s) => AuthError::Unexpected(s),
    }
}

impl Provider {
    pub fn new(
        metadata: Metadata,
        client_id: String,
        client_secret: Option<Secret<String>>,
        resource: Option<String>,
        scopes: Vec<String>,
        cfg: AuthConfig,
    ) -> Self {
        // Basic is the default; use the request body when the provider only takes that.
        let post_only =
            !metadata.accepts_auth_method("client_secret_basic") && metadata.accepts_auth_method("client_secret_post");
        Provider {
            metadata,
            client_id,
            client_secret,
            resource,
            scopes,
            cfg,
            use_post: AtomicBool::new(post_only),
        }
    }

    /// Authenticate as the registration said (`client_secret_post` in the body, else Basic).
    pub fn use_auth_method(&self, method: &str) {
        self.use_post.store(method == "client_secret_post", Ordering::Relaxed);
    }

    pub fn issuer(&self) -> &str {
        &self.metadata.issuer
    }

    fn client(&self, redirect: &str) -> Result<Client, AuthError> {
        self.client_with(redirect, self.use_post.load(Ordering::Relaxed))
    }

    /// A client for `redirect`; `post`: the client secret goes in the request body.
    fn client_with(&self, redirect: &str, post: bool) -> Result<Client, AuthError> {
        self.client_with_keys(redirect, post, JsonWebKeySet::default())
    }

    /// A client with the provider's keys (only to verify an ID token).
    fn client_with_keys(
        &self,
        redirect: &str,
        post: bool,
        keys: JsonWebKeySet<CoreJsonWebKey>,
    ) -> Result<Client, AuthError> {
        let m = &self.metadata;
        let bad = |what: &str, e: &dyn std::fmt::Display| AuthError::Discovery {
            issuer: m.issuer.clone(),
            reason: format!("its {what} is not a URL: {e}"),
        };
        let issuer = IssuerUrl::new(m.issuer.clone()).map_err(|e| bad("issuer", &e))?;
        // A server for client credentials only may name no authorization endpoint; the
        // browser login checks for one before it builds a URL.
        let auth = m
            .authorization_endpoint
            .clone()
            .unwrap_or_else(|| format!("{}/authorize", m.issuer.trim_end_matches('/')));
        let auth = AuthUrl::new(auth).map_err(|e| bad("authorization endpoint", &e))?;
        // RFC 8414 requires a token endpoint; the 2025-03-26 default path is the best guess.
        let token = m
            .token_endpoint
            .clone()
            .unwrap_or_else(|| format!("{}/token", m.issuer.trim_end_matches('/')));
        let token = TokenUrl::new(token).map_err(|e| bad("token endpoint", &e))?;
        let mut client = CoreClient::new(ClientId::new(self.client_id.clone()), issuer, keys)
            .set_auth_uri(auth)
            .set_token_uri(token)
            // `openid` is asked for when it is among the scopes, not always.
            .disable_openid_scope()
            .set_redirect_uri(RedirectUrl::new(redirect.to_string()).map_err(|e| AuthError::Listen {
                addr: redirect.into(),
                reason: e.to_string(),
            })?);
        if let Some(s) = &self.client_secret {
            client = client.set_client_secret(ClientSecret::new(s.expose().clone()));
        }
        if post {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Ok(client)
    }

    /// Whether an ID token is expected and verified: `openid` was asked for.
    fn openid(scopes: &[String]) -> bool {
        scopes.iter().any(|s| s == "openid")
    }

    /// Verify the ID token of a login that asked for `openid` (fetching the keys now), and
    /// take the user's name from it. Without `openid`, an ID token is not looked at.
    async fn verify_id_token(
        &self,
        http: &reqwest::Client,
        response: &CoreTokenResponse,
        scopes: &[String],
        nonce: Option<&Nonce>,
        tokens: &mut Tokens,
    ) -> Result<(), AuthError> {
        let Some(id_token) = response.id_token().filter(|_| Self::openid(scopes)) else {
            return Ok(());
        };
        let body = super::discovery::jwks(http, &self.metadata).await?;
        let keys: JsonWebKeySet<CoreJsonWebKey> = serde_json::from_slice(&body).map_err(|e| {
            AuthError::IdToken(format!(
                "cannot check its signature: the provider's keys are not a JSON Web Key Set ({e})"
            ))
        })?;
        let client = self.client_with_keys("http://localhost/", false, keys)?;
        let verifier = client.id_token_verifier();
        let claims = match nonce {
            Some(n) => id_token.claims(&verifier, n),
            // The device flow has no nonce.
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(|e| AuthError::IdToken(e.to_string()))?;
        tokens.subject = Some(claims.subject().as_str().to_string());
        tokens.username = claims
            .preferred_username()
            .map(|u| u.as_str().to_string())
            .or_else(|| claims.email().map(|e| e.as_str().to_string()));
        Ok(())
    }

    /// Run a token request; a confidential client refused with `invalid_client` under HTTP
    /// Basic is retried once with the secret in the body (some providers take only that).
    async fn with_auth_fallback<F, Fut>(&self, redirect: &str, f: F) -> Result<CoreTokenResponse, AuthError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<CoreTokenResponse, AuthError>>,
    {
        let first_post = self.use_post.load(Ordering::Relaxed);
        match f(self.client_with(redirect, first_post)?).await {
            Err(AuthError::TokenRefused { error, .. })
                if error == "invalid_client" && !first_post && self.client_secret.is_some() =>
            {
                tracing::debug!("HTTP Basic client authentication refused; sending the secret in the body");
                self.use_post.store(true, Ordering::Relaxed);
                f(self.client_with(redirect, true)?).await
            }
            other => other,
        }
    }

    fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The authorization request (RFC 6749 §4.1.1 with PKCE, RFC 8707 `resource`, and the
    /// OpenID `nonce` only when `openid` is asked for). Built here rather than by
    /// `openidconnect`, which always adds a `nonce`: OAuth-only servers may refuse one without
    /// `openid` (oidc-provider does), and a `scope` left out must stay out.
    fn authorize_url(
        &self,
        redirect: &str,
        challenge: &PkceCodeChallenge,
        state: &CsrfToken,
        nonce: Option<&Nonce>,
        scopes: &[String],
    ) -> Result<url::Url, AuthError> {
        let endpoint = self
            .metadata
            .authorization_endpoint
            .as_deref()
            .ok_or_else(|| AuthError::Discovery {
                issuer: self.metadata.issuer.clone(),
                reason: "its metadata names no `authorization_endpoint`".into(),
            })?;
        let mut url = url::Url::parse(endpoint).map_err(|e| AuthError::Discovery {
            issuer: self.metadata.issuer.clone(),
            reason: format!("its `authorization_endpoint` is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("state", state.secret())
                .append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", challenge.method().as_str())
                .append_pair("redirect_uri", redirect);
            if !scopes.is_empty() {
                q.append_pair("scope", &scopes.join(" "));
            }
            if let Some(r) = self.resource() {
                q.append_pair("resource", r);
            }
            for (k, v) in &self.cfg.authorize_params {
                q.append_pair(k, v);
            }
            if let Some(n) = nonce {
                q.append_pair("nonce", n.secret());
            }
        }
        Ok(url)
    }

    /// `private_key_jwt` (RFC 7523 §2.2): `client_assertion_type` and a fresh
    /// `client_assertion` for one token request, when the configured client has a key.
    fn assertion_params(&self) -> Result<Vec<(&'static str, String)>, AuthError> {
        let Some(key) = self
            .cfg
            .client_auth
            .private_key
            .as_ref()
            .filter(|_| self.cfg.client_id.as_deref() == Some(self.client_id.as_str()))
        else {
            return Ok(Vec::new());
        };
        let params = key
            .token_params(&self.client_id, self.issuer())
            .map_err(AuthError::ClientAssertion)?;
        Ok(params.into_iter().map(|(k, v)| (k, v.expose().clone())).collect())
    }

    /// The browser login: bind the callback first, then open the browser (and print the URL),
    /// wait for the code, exchange it with the PKCE verifier, verify the ID token.
    pub async fn browser_login(&self, http: &reqwest::Client, scopes: &[String]) -> Result<Tokens, AuthError> {
        let cfg = &self.cfg;
        let listener = callback::Listener::bind(&cfg.redirect_url).await?;
        let redirect = listener.redirect_url().to_string();
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random();
        let nonce = Self::openid(scopes).then(Nonce::new_random);
        let url = self.authorize_url(&redirect, &challenge, &state, nonce.as_ref(), scopes)?;
        let opened = browser::open(url.as_str());
        eprintln!(
            "authful-mcp-proxy: {} log in at:\n\n    {}\n",
            if opened {
                "a browser window was opened; if it did not appear,"
            } else {
                "no browser could be opened;"
            },
            url
        );
        let iss = callback::IssCheck {
            issuer: self.issuer(),
            required: self.metadata.authorization_response_iss_parameter_supported,
        };
        let code = listener.wait(state.secret(), iss, cfg.auth_timeout).await?;
        let verifier = Secret::new(verifier.secret().clone());
        let (code, verifier, redirect_ref) = (&code, &verifier, &redirect);
        let response = retry::with_retry("exchanging the login code", PATIENCE, move || {
            self.with_auth_fallback(redirect_ref, move |client| {
                let code = code.expose().clone();
                let verifier = verifier.expose().clone();
                async move {
                    let mut req = client
                        .exchange_code(AuthorizationCode::new(code))
                        .set_pkce_verifier(openidconnect::PkceCodeVerifier::new(verifier));
                    if let Some(r) = self.resource() {
                        req = req.add_extra_param("resource", r.to_string());
                    }
                    for (k, v) in self.assertion_params()? {
                        req = req.add_extra_param(k, v);
                    }
                    let rec = Recorder::new(http);
                    req.request_async(&rec).await.map_err(|e| token_error(e, rec.last()))
                }
            })
        })
        .await?;
        let mut tokens = to_tokens(&response);
        self.verify_id_token(http, &response, scopes, nonce.as_ref(), &mut tokens)
            .await?;
        tracing::info!(
            "logged in{}",
            tokens
                .username
                .as_deref()
                .or(tokens.subject.as_deref())
                .map(|u| format!(" as {u}"))
                .unwrap_or_default()
        );
        Ok(tokens)
    }

    pub fn supports_device_flow(&self) -> bool {
        self.metadata.device_authorization_endpoint.is_some()
    }

    /// The device authorization grant: show a code to enter elsewhere, poll until done.
    pub async fn device_login(&self, http: &reqwest::Client, scopes: &[String]) -> Result<Tokens, AuthError> {
        let endpoint = self
            .metadata
            .device_authorization_endpoint
            .clone()
            .and_then(|u| DeviceAuthorizationUrl::new(u).ok())
            .ok_or_else(|| AuthError::TokenRefused {
                error: "unsupported_grant_type".into(),
                description: Some("the provider offers no device authorization endpoint".into()),
            })?;
        let client = self.client("http://localhost/")?.set_device_authorization_url(endpoint);
        let client_ref = &client;
        let details: CoreDeviceAuthorizationResponse =
            retry::with_retry("asking for a device code", PATIENCE, move || async move {
                let mut req = client_ref
                    .exchange_device_code()
                    .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())));
                if let Some(r) = self.resource() {
                    req = req.add_extra_param("resource", r.to_string());
                }
                let rec = Recorder::new(http);
                req.request_async(&rec)
                    .await
                    .map_err(|e| match token_error(e, rec.last()) {
                        AuthError::TokenRefused { error, description } => {
                            AuthError::DeviceRefused { error, description }
                        }
                        other => other,
                    })
            })
            .await?;
        let complete = details.verification_uri_complete().map(|u| u.secret().to_string());
        eprintln!(
            "authful-mcp-proxy: to log in, open {} and enter the code {}{}\n",
            details.verification_uri().as_str(),
            details.user_code().secret(),
            complete.map(|c| format!("\n  (or open {c})")).unwrap_or_default()
        );
        let timeout = self.cfg.auth_timeout.min(details.expires_in());
        let deadline = std::time::Instant::now() + timeout;
        let (client, details) = (&client, &details);
        // The poll loop (pending, slow_down) is openidconnect's; a transient failure ends it,
        // and it starts again, after a pause, with the time that is left.
        let response: CoreTokenResponse =
            retry::with_retry("waiting for the device login", timeout, move || async move {
                let mut poll = client.exchange_device_access_token(details);
                if let Some(r) = self.resource() {
                    poll = poll.add_extra_param("resource", r.to_string());
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let rec = Recorder::new(http);
                poll.request_async(&rec, tokio::time::sleep, Some(left))
                    .await
                    .map_err(|e| match token_error(e, rec.last()) {
                        AuthError::TokenRefused { error, .. } if error == "expired_token" => {
                            AuthError::TimedOut(timeout)
                        }
                        AuthError::TokenRefused { error, description } if error == "access_denied" => {
                            AuthError::Denied { error, description }
                        }
                        AuthError::Network(s) if s.contains("timeout") || s.contains("Timeout") => {
                            AuthError::TimedOut(timeout)
                        }
                        other => other,
                    })
            })
            .await?;
        let mut tokens = to_tokens(&response);
        self.verify_id_token(http, &response, scopes, None, &mut tokens).await?;
        tracing::info!("logged in with the device code");
        Ok(tokens)
    }

    /// Client credentials: tokens for the client itself; "refresh" is asking again.
    pub async fn client_credentials(&self, http: &reqwest::Client, scopes: &[String]) -> Result<Tokens, AuthError> {
        let response = retry::with_retry("asking for a client credentials token", PATIENCE, || {
            // The client credentials grant does not use the redirect URI.
            self.with_auth_fallback("http://localhost/", |client| async move {
                let mut req = client
                    .exchange_client_credentials()
                    .add_scopes(scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone())));
                if let Some(r) = self.resource() {
                    req = req.add_extra_param("resource", r.to_string());
                }
                for (k, v) in self.assertion_params()? {
                    req = req.add_extra_param(k, v);
                }
                let rec = Recorder::new(http);
                req.request_async(&rec).await.map_err(|e| token_error(e, rec.last()))
            })
        })
        .await?;
        let mut t = to_tokens(&response);
        t.subject = Some(self.client_id.clone());
        Ok(t)
    }

    pub async fn refresh(&self, http: &reqwest::Client, rt: &Secret<String>) -> Result<Tokens, AuthError> {
        let response = retry::with_retry("refreshing the access token", PATIENCE, || {
            // The refresh grant does not use the redirect URI.
            self.with_auth_fallback("http://localhost/", |client| {
                let rt = rt.expose().clone();
                async move {
                    let rt = RefreshToken::new(rt);
                    let mut req = client.exchange_refresh_token(&rt);
                    if let Some(r) = self.resource() {
                        req = req.add_extra_param("resource", r.to_string());
                    }
                    for (k, v) in self.assertion_params()? {
                        req = req.add_extra_param(k, v);
                    }
                    let rec = Recorder::new(http);
                    req.request_async(&rec).await.map_err(|e| token_error(e, rec.last()))
                }
            })
        })
        .await?;
        Ok(to_tokens(&response))
    }
}

fn to_tokens(r: &CoreTokenResponse) -> Tokens {
    let obtained_at = now();
    Tokens {
        access_token: Secret::new(r.access_token().secret().clone()),
        token_type: "Bearer".into(),
        refresh_token: r.refresh_token().map(|t| Secret::new(t.secret().clone())),
        id_token: r.id_token().map(|t| Secret::new(t.to_string())),
        scope: r
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
        expires_at: r.expires_in().map(|d| obtained_at + d.as_secs()),
        obtained_at,
        subject: None,
        username: None,
    }
}
