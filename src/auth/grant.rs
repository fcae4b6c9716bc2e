//! The OAuth/OIDC exchanges, with `openidconnect`: authorization code + PKCE (S256) with state
//! and nonce in the browser, the device authorization grant (RFC 8628), client credentials,
//! refresh, ID-token verification, and the `resource` parameter (RFC 8707) on every request.

use super::discovery::Metadata;
use super::retry::{self, Answer, Recorder, PATIENCE};
use super::{browser, callback, AuthError};
use crate::config::AuthConfig;
use crate::secret::Secret;
use crate::token_cache::{now, Tokens};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreDeviceAuthorizationResponse, CoreTokenResponse,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    ErrorResponseType, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, RefreshToken, RequestTokenError,
    Scope, StandardErrorResponse, TokenResponse,
};
use std::sync::atomic::{AtomicBool, Ordering};

type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

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
            openidconnect::HttpClientError::Reqwest(r) => crate::bridge::describe(&r),
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
        let post_only = metadata.token_endpoint_auth_methods_supported().is_some_and(|m| {
            !m.contains(&CoreClientAuthMethod::ClientSecretBasic) && m.contains(&CoreClientAuthMethod::ClientSecretPost)
        });
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

    pub fn issuer(&self) -> &str {
        self.metadata.issuer().as_str()
    }

    fn client(&self, redirect: &str) -> Result<Client, AuthError> {
        self.client_with(redirect, self.use_post.load(Ordering::Relaxed))
    }

    /// A client for `redirect`; `post`: the client secret goes in the request body.
    fn client_with(&self, redirect: &str, post: bool) -> Result<Client, AuthError> {
        let secret = self
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().clone()));
        let mut client =
            CoreClient::from_provider_metadata(self.metadata.clone(), ClientId::new(self.client_id.clone()), secret)
                .set_redirect_uri(RedirectUrl::new(redirect.to_string()).map_err(|e| AuthError::Listen {
                    addr: redirect.into(),
                    reason: e.to_string(),
                })?);
        if post {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Ok(client)
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

    /// The browser login: bind the callback first, then open the browser (and print the URL),
    /// wait for the code, exchange it with the PKCE verifier, verify the ID token.
    pub async fn browser_login(&self, http: &reqwest::Client, scopes: &[String]) -> Result<Tokens, AuthError> {
        let cfg = &self.cfg;
        let listener = callback::Listener::bind(&cfg.redirect_url).await?;
        let redirect = listener.redirect_url().to_string();
        let client = self.client(&redirect)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone())))
            .set_pkce_challenge(challenge);
        if let Some(r) = self.resource() {
            req = req.add_extra_param("resource", r.to_string());
        }
        for (k, v) in &cfg.authorize_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        let (url, state, nonce) = req.url();
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
        let code = listener.wait(state.secret(), self.issuer(), cfg.auth_timeout).await?;
        let verifier = Secret::new(verifier.secret().clone());
        let (code, verifier, redirect_ref) = (&code, &verifier, &redirect);
        let response = retry::with_retry("exchanging the login code", PATIENCE, move || {
            self.with_auth_fallback(redirect_ref, move |client| {
                let code = code.expose().clone();
                let verifier = verifier.expose().clone();
                async move {
                    let mut req = client
                        .exchange_code(AuthorizationCode::new(code))
                        .map_err(|e| AuthError::Network(e.to_string()))?
                        .set_pkce_verifier(openidconnect::PkceCodeVerifier::new(verifier));
                    if let Some(r) = self.resource() {
                        req = req.add_extra_param("resource", r.to_string());
                    }
                    let rec = Recorder::new(http);
                    req.request_async(&rec).await.map_err(|e| token_error(e, rec.last()))
                }
            })
        })
        .await?;
        let mut tokens = to_tokens(&response);
        if let Some(id_token) = response.id_token() {
            let claims = id_token
                .claims(&client.id_token_verifier(), &nonce)
                .map_err(|e| AuthError::IdToken(e.to_string()))?;
            tokens.subject = Some(claims.subject().as_str().to_string());
            tokens.username = claims
                .preferred_username()
                .map(|u| u.as_str().to_string())
                .or_else(|| claims.email().map(|e| e.as_str().to_string()));
        }
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
        self.metadata
            .additional_metadata()
            .device_authorization_endpoint
            .is_some()
    }

    /// The device authorization grant: show a code to enter elsewhere, poll until done.
    pub async fn device_login(&self, http: &reqwest::Client, scopes: &[String]) -> Result<Tokens, AuthError> {
        let endpoint = self
            .metadata
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
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
                    .add_scopes(scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone())));
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
                let mut poll = client
                    .exchange_device_access_token(details)
                    .map_err(|e| AuthError::Network(e.to_string()))?;
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
        if let Some(id_token) = response.id_token() {
            // The device flow has no nonce.
            let claims = id_token
                .claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
                .map_err(|e| AuthError::IdToken(e.to_string()))?;
            tokens.subject = Some(claims.subject().as_str().to_string());
            tokens.username = claims.preferred_username().map(|u| u.as_str().to_string());
        }
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
                    .map_err(|e| AuthError::Network(e.to_string()))?
                    .add_scopes(scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone())));
                if let Some(r) = self.resource() {
                    req = req.add_extra_param("resource", r.to_string());
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
                    let mut req = client
                        .exchange_refresh_token(&rt)
                        .map_err(|e| AuthError::Network(e.to_string()))?;
                    if let Some(r) = self.resource() {
                        req = req.add_extra_param("resource", r.to_string());
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
