//! How the login answers the bridge ([`TokenSource`]). Without a configured issuer nothing
//! happens until the MCP server says 401: a server that needs no login is simply bridged, and
//! one that does names its authorization server in that refusal. A later 401 that names
//! another authorization server moves the login there (never a refresh token to the old one);
//! a 403 `insufficient_scope` asks for a login with more scopes.

use super::discovery::{self, Challenge};
use super::TokenManager;
use crate::secret::Secret;
use crate::token_cache::Discovered;
use crate::token_source::{BoxFuture, Refusal, TokenSource, Unavailable};
use std::sync::atomic::Ordering;

impl TokenSource for TokenManager {
    fn token(&self) -> BoxFuture<'_, Result<Option<Secret<String>>, Unavailable>> {
        Box::pin(async move {
            if self.waits_for_challenge().await {
                return Ok(None);
            }
            self.access_token().await.map(Some).map_err(|e| Unavailable {
                message: e.with_hint(),
                transient: e.is_transient(),
            })
        })
    }

    fn refused<'a>(&'a self, refusal: Refusal<'a>) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let challenge = Challenge::parse(&refusal.challenges);
            match (refusal.status, refusal.sent) {
                (401, sent) => self.unauthorized(sent, &challenge).await,
                (403, Some(sent)) if challenge.error.as_deref() == Some("insufficient_scope") => {
                    self.step_up(sent, &challenge.scopes()).await
                }
                _ => false,
            }
        })
    }

    fn current(&self) -> Option<Secret<String>> {
        self.cached_token()
    }
}

impl TokenManager {
    /// No issuer configured, nothing discovered or cached: send requests without a token
    /// until the server asks for a login.
    async fn waits_for_challenge(&self) -> bool {
        if self.cfg.issuer.is_some() {
            return false;
        }
        let mut inner = self.inner.lock().await;
        self.load(&mut inner);
        let waiting = inner.tokens.is_none() && inner.discovered.issuer.is_none();
        if waiting && !self.told_no_login.swap(true, Ordering::Relaxed) {
            tracing::info!("no login configured: requests go without a token until the MCP server asks for a login");
        }
        waiting
    }

    /// A 401. Without a configured issuer it says where to log in: the first one starts the
    /// login, and one that names another authorization server moves it there. Otherwise the
    /// token was refused: the next one is refreshed, or asked for with the scopes it names.
    async fn unauthorized(&self, sent: Option<&Secret<String>>, challenge: &Challenge) -> bool {
        if self.cfg.issuer.is_none() {
            let backend = self.cfg.backend.clone().expect("config: no issuer implies a backend");
            let mut inner = self.inner.lock().await;
            self.load(&mut inner);
            let known = inner.discovered.issuer.clone();
            if known.is_none() || challenge.resource_metadata.is_some() {
                let info = match discovery::protected_resource(self.http(), &backend, challenge).await {
                    Ok(info) => info,
                    Err(reason) => {
                        tracing::warn!("the MCP server at {backend} asks for a login, but {reason}");
                        return false;
                    }
                };
                let named = info.authorization_servers.first().cloned();
                if known.is_none() {
                    tracing::info!(
                        "the MCP server asks for a login at {}",
                        named.as_deref().unwrap_or("its own origin")
                    );
                    Self::adopt(&mut inner.discovered, info, &backend);
                    return true;
                }
                if named != known {
                    tracing::info!(
                        "the MCP server's authorization server moved from {} to {}; logging in there",
                        known.as_deref().unwrap_or("?"),
                        named.as_deref().unwrap_or("?")
                    );
                    // Credentials belong to one authorization server: register and log in
                    // anew, and never send the old refresh token to the new one.
                    inner.discovered = Discovered::default();
                    Self::adopt(&mut inner.discovered, info, &backend);
                    inner.tokens = None;
                    inner.extra_scopes.clear();
                    inner.step_ups = 0;
                    *self.provider.lock().unwrap() = None;
                    *self.current.lock().unwrap() = None;
                    return true;
                }
            }
        }
        let Some(sent) = sent else { return false };
        // A 401 that names scopes this token lacks asks for them (MCP: the challenge's `scope`).
        let scopes = challenge.scopes();
        if !scopes.is_empty() && self.step_up(sent, &scopes).await {
            return true;
        }
        self.rejected(sent).await;
        true
    }
}
