//! The OAuth/OIDC exchanges, with `openidconnect`: discovery (the issuer it returns must be
//! the configured one), the authorization code + PKCE (S256) login with state and nonce, the
//! code exchange with ID-token verification, and refresh.

use super::{browser, callback, AuthError};
use crate::config::AuthConfig;
use crate::secret::Secret;
use crate::token_cache::{now, Tokens};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse,
};

pub struct Provider {
    metadata: CoreProviderMetadata,
    cfg: AuthConfig,
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

type RequestError = RequestTokenError<
    openidconnect::HttpClientError<reqwest::Error>,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
>;

fn token_error(e: RequestError) -> AuthError {
    match e {
        RequestTokenError::ServerResponse(r) => AuthError::TokenRefused {
            error: r.error().as_ref().to_string(),
            description: r.error_description().cloned(),
        },
        RequestTokenError::Request(e) => AuthError::Network(e.to_string()),
        // The body is not printed: a half-parsed token response may hold a token.
        RequestTokenError::Parse(e, _) => {
            AuthError::Network(format!("unexpected answer from the token endpoint ({})", e.path()))
        }
        RequestTokenError::Other(s) => AuthError::Network(s),
    }
}

impl Provider {
    pub async fn discover(cfg: &AuthConfig, http: &reqwest::Client) -> Result<Provider, AuthError> {
        let issuer_str = cfg.issuer.as_str().to_string();
        let err = |reason: String| AuthError::Discovery {
            issuer: issuer_str.clone(),
            reason,
        };
        // `Url` adds a trailing slash to a bare origin; the issuer string the user gave is
        // what the provider must return, so try it as given and with the slash trimmed.
        let mut candidates = vec![issuer_str.clone()];
        if issuer_str.ends_with('/') {
            candidates.insert(0, issuer_str.trim_end_matches('/').to_string());
        }
        let mut last = String::new();
        for candidate in candidates {
            let issuer = IssuerUrl::new(candidate).map_err(|e| err(e.to_string()))?;
            match CoreProviderMetadata::discover_async(issuer, http).await {
                Ok(metadata) => {
                    tracing::debug!("discovered the identity provider {}", metadata.issuer().as_str());
                    return Ok(Provider {
                        metadata,
                        cfg: cfg.clone(),
                    });
                }
                Err(e) => {
                    use std::error::Error as _;
                    last = e.to_string();
                    let mut src = e.source();
                    while let Some(s) = src {
                        last.push_str(": ");
                        last.push_str(&s.to_string());
                        src = s.source();
                    }
                }
            }
        }
        Err(err(last))
    }

    fn client(&self, redirect: &str) -> Result<Client, AuthError> {
        let cfg = &self.cfg;
        let secret = cfg
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().clone()));
        let mut client =
            CoreClient::from_provider_metadata(self.metadata.clone(), ClientId::new(cfg.client_id.clone()), secret)
                .set_redirect_uri(RedirectUrl::new(redirect.to_string()).map_err(|e| AuthError::Listen {
                    addr: redirect.into(),
                    reason: e.to_string(),
                })?);
        // Basic is the default; use the request body when the provider only takes that.
        if let Some(methods) = self.metadata.token_endpoint_auth_methods_supported() {
            if cfg.client_secret.is_some()
                && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && methods.contains(&CoreClientAuthMethod::ClientSecretPost)
            {
                client = client.set_auth_type(AuthType::RequestBody);
            }
        }
        Ok(client)
    }

    /// The browser login: bind the callback first, then open the browser (and print the URL),
    /// wait for the code, exchange it with the PKCE verifier, verify the ID token.
    pub async fn browser_login(&self, http: &reqwest::Client) -> Result<Tokens, AuthError> {
        let cfg = &self.cfg;
        let listener = callback::Listener::bind(&cfg.redirect_url).await?;
        let redirect = listener.redirect_url().to_string();
        let client = self.client(&redirect)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(
                cfg.scopes
                    .iter()
                    .filter(|s| *s != "openid")
                    .map(|s| Scope::new(s.clone())),
            )
            .set_pkce_challenge(challenge)
            .url();
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
        let code = listener
            .wait(state.secret(), self.metadata.issuer().as_str(), cfg.auth_timeout)
            .await?;
        let response: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.expose().clone()))
            .map_err(|e| AuthError::Network(e.to_string()))?
            .set_pkce_verifier(verifier)
            .request_async(http)
            .await
            .map_err(token_error)?;
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

    pub async fn refresh(&self, http: &reqwest::Client, rt: &Secret<String>) -> Result<Tokens, AuthError> {
        // The refresh grant does not use the redirect URI.
        let client = self.client("http://localhost/")?;
        let response: CoreTokenResponse = client
            .exchange_refresh_token(&RefreshToken::new(rt.expose().clone()))
            .map_err(|e| AuthError::Network(e.to_string()))?
            .request_async(http)
            .await
            .map_err(token_error)?;
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
