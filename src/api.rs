//! The library API behind the JS functions (`getAccessToken`, `login`, `logout`, `status`,
//! `createAuthFetch`). Options arrive as argv so they get the CLI's parser and validation.
//! Token managers are kept per configuration, so a 401 reported by `createAuthFetch` is
//! seen by the next `getAccessToken`, and a step-up (403 `insufficient_scope`) too.

use crate::auth::TokenManager;
use crate::cli::{self, Invocation};
use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::secret::Secret;
use crate::token_cache::{self, Tokens};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

fn config(argv: &[String]) -> Result<Config, Error> {
    let mut full = vec!["status".to_string()];
    full.extend(argv.iter().cloned());
    match cli::parse(&full)? {
        Invocation::Status { config, .. } => Ok(config),
        _ => Err(ConfigError::Usage("unexpected arguments".into()).into()),
    }
}

fn manager(argv: &[String]) -> Result<Arc<TokenManager>, Error> {
    static MANAGERS: Mutex<Vec<(Vec<String>, Arc<TokenManager>)>> = Mutex::new(Vec::new());
    let mut all = MANAGERS.lock().unwrap();
    if let Some((_, m)) = all.iter().find(|(a, _)| a == argv) {
        return Ok(m.clone());
    }
    let config = config(argv)?;
    crate::log::init(config.log);
    let auth = config.auth.clone().ok_or(ConfigError::MissingIssuer)?;
    let m = TokenManager::new(auth, crate::http::auth_client_factory(&config)?, true);
    all.push((argv.to_vec(), m.clone()));
    Ok(m)
}

/// A valid access token: cache → refresh → browser login.
pub async fn access_token(argv: Vec<String>) -> Result<String, Error> {
    let m = manager(&argv)?;
    Ok(m.access_token().await?.expose().clone())
}

/// The server refused `token` (HTTP 401): the next `access_token` refreshes.
pub async fn reject_token(argv: Vec<String>, token: String) -> Result<(), Error> {
    manager(&argv)?.rejected(&Secret::new(token)).await;
    Ok(())
}

/// The server answered 403 `insufficient_scope` naming `scopes` to `token`: true when a new
/// login with more scopes is due (the next `access_token` does it), as in the proxy.
pub async fn step_up(argv: Vec<String>, token: String, scopes: Vec<String>) -> Result<bool, Error> {
    Ok(manager(&argv)?.step_up(&Secret::new(token), &scopes).await)
}

/// Log in (or refresh) and return the status.
pub async fn login(argv: Vec<String>) -> Result<Value, Error> {
    let m = manager(&argv)?;
    let t = m.tokens().await?;
    Ok(status_report(&m, Some(&t)).await)
}

/// Who is logged in for this configuration; never a token value. No network access.
pub async fn status(argv: Vec<String>) -> Result<Value, Error> {
    let m = manager(&argv)?;
    let t = m.peek().await;
    Ok(status_report(&m, t.as_ref()).await)
}

/// Remove this configuration's cached tokens (`all`: every cached login in the folder).
pub async fn logout(argv: Vec<String>, all: bool) -> Result<Value, Error> {
    let config = config(&argv)?;
    if all {
        let (_, n) = remove_all_logins(&config)?;
        return Ok(json!({ "removed": n }));
    }
    let removed = remove_login(&manager(&argv)?).await?;
    Ok(json!({ "removed": usize::from(removed) }))
}

/// Remove every cached login of the configured store: (where, how many).
pub fn remove_all_logins(config: &Config) -> Result<(String, usize), Error> {
    crate::token_store::remove_all(config).map_err(Error::Runtime)
}

/// Remove one configuration's cached login, on disk and in memory. True if there was one.
pub async fn remove_login(m: &std::sync::Arc<TokenManager>) -> Result<bool, Error> {
    let removed = m
        .cache()
        .remove()
        .map_err(|e| Error::Runtime(format!("cannot remove the cached login: {e}")))?;
    m.forget().await;
    Ok(removed)
}

/// The status object shared by `status --json` and the JS API.
pub async fn status_report(m: &TokenManager, tokens: Option<&Tokens>) -> Value {
    let auth = m.config();
    let now = token_cache::now();
    let (issuer, client) = m.labels().await;
    json!({
        "loggedIn": tokens.is_some(),
        "issuer": issuer,
        "clientId": client,
        "subject": tokens.and_then(|t| t.subject.clone()),
        "username": tokens.and_then(|t| t.username.clone()),
        "scopes": tokens.and_then(|t| t.scope.clone()).unwrap_or_else(|| auth.scopes.join(" ")),
        "expiresAt": tokens.and_then(|t| t.expires_at),
        "expired": tokens.map(|t| t.expires_at.is_some_and(|e| e <= now)),
        "hasRefreshToken": tokens.map(|t| t.refresh_token.is_some()),
        "cacheFile": m.cache().path().map(|p| p.display().to_string()),
        "tokenStore": m.cache().kind().name(),
    })
}

/// `{ "value": ... }` or `{ "error": { code, message, hint } }`, for the JS side.
pub fn envelope(result: Result<Value, Error>) -> String {
    match result {
        Ok(v) => json!({ "value": v }).to_string(),
        Err(e) => json!({ "error": { "code": e.code(), "message": e.to_string(), "hint": e.hint() } }).to_string(),
    }
}
