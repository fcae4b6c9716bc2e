//! Finding the authorization server. Its metadata is RFC 8414 (OAuth 2.1): OpenID fields are
//! optional, and the keys are fetched only when an ID token is to be verified. With an issuer
//! configured, the metadata comes from the well-known URLs in the order the MCP specification
//! gives (RFC 8414 first, then OpenID discovery, path-insert before path-append); the issuer
//! in the document must be the one asked for. Without one, the MCP server names it: the
//! `resource_metadata` of its 401 challenge, else its well-known protected resource metadata
//! (RFC 9728), else (a 2025-03-26 server) the metadata on its own origin, else the default
//! endpoints `/authorize`, `/token` and `/register` there.

use super::AuthError;
use serde::{Deserialize, Serialize};
use url::Url;

/// Authorization server metadata (RFC 8414), OpenID Connect fields optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Metadata {
    pub issuer: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub grant_types_supported: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207: the callback must carry `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// SEP-991: an HTTPS URL of a client metadata document may serve as the client ID.
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
}

impl Metadata {
    /// The 2025-03-26 fallback for a server without metadata: the default endpoints on
    /// the authorization server's origin.
    pub fn default_endpoints(origin: &str) -> Metadata {
        let origin = origin.trim_end_matches('/');
        Metadata {
            issuer: origin.to_string(),
            authorization_endpoint: Some(format!("{origin}/authorize")),
            token_endpoint: Some(format!("{origin}/token")),
            registration_endpoint: Some(format!("{origin}/register")),
            ..Metadata::default()
        }
    }

    fn lists(list: &Option<Vec<String>>, item: &str) -> bool {
        list.as_ref().is_some_and(|l| l.iter().any(|s| s == item))
    }

    /// An OpenID provider: it lists the `openid` scope.
    pub fn offers_openid(&self) -> bool {
        Self::lists(&self.scopes_supported, "openid")
    }

    /// It lists `offline_access` (then it is asked for, and refresh tokens expected).
    pub fn offers_offline_access(&self) -> bool {
        Self::lists(&self.scopes_supported, "offline_access")
    }

    /// It accepts this client authentication method at the token endpoint (RFC 8414: when
    /// the list is absent, `client_secret_basic` is the default).
    pub fn accepts_auth_method(&self, method: &str) -> bool {
        match &self.token_endpoint_auth_methods_supported {
            Some(l) => l.iter().any(|m| m == method),
            None => method == "client_secret_basic",
        }
    }
}

/// The metadata URLs for `issuer`, in the MCP specification's order.
pub fn well_known_urls(issuer: &str) -> Vec<String> {
    let issuer = issuer.trim_end_matches('/');
    let Ok(url) = Url::parse(issuer) else { return vec![] };
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{issuer}/.well-known/openid-configuration"),
        ]
    }
}

/// Metadata documents are small and answer at once; a server that streams instead (an MCP
/// endpoint answering every GET with an event stream) must not stall the login.
const METADATA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How a server that names nowhere to log in is described (the start of the reason).
pub const NAMES_NONE: &str = "the MCP server names no authorization server";

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Option<Vec<u8>>, String> {
    let resp = http
        .get(url)
        .timeout(METADATA_TIMEOUT)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| crate::http::describe(&e))?;
    if !resp.status().is_success() {
        return Ok(None);
    }
    resp.bytes()
        .await
        .map(|b| Some(b.to_vec()))
        .map_err(|e| crate::http::describe(&e))
}

/// The authorization server's metadata, checked to belong to `issuer`. `defaults`: when no
/// document answers at all, use the default endpoints on the issuer (the 2025-03-26 fallback).
pub async fn authorization_server(http: &reqwest::Client, issuer: &str, defaults: bool) -> Result<Metadata, AuthError> {
    let err = |reason: String| AuthError::Discovery {
        issuer: issuer.to_string(),
        reason,
    };
    let mut last = None;
    for url in well_known_urls(issuer) {
        let body = match get_json(http, &url).await {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let metadata: Metadata = match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(e) => {
                last = Some(format!("`{url}` is not authorization server metadata: {e}"));
                continue;
            }
        };
        // RFC 8414 §3.3 / OpenID Discovery §4.3: the document must name the issuer asked for.
        let found = metadata.issuer.as_str();
        if found.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(err(format!("unexpected issuer `{found}` (expected `{issuer}`)")));
        }
        if let Some(methods) = &metadata.code_challenge_methods_supported {
            if !methods.iter().any(|m| m == "S256") {
                return Err(err("the provider does not support PKCE with S256".into()));
            }
        }
        for (what, endpoint) in [
            ("authorization_endpoint", &metadata.authorization_endpoint),
            ("token_endpoint", &metadata.token_endpoint),
        ] {
            if let Some(e) = endpoint.as_deref().filter(|e| Url::parse(e).is_err()) {
                return Err(err(format!("its `{what}` `{e}` is not a URL")));
            }
        }
        tracing::debug!("discovered the authorization server {found} ({url})");
        return Ok(metadata);
    }
    match last {
        None if defaults => {
            // Before a browser is sent there, make sure the default endpoint exists: a server
            // that names nowhere to log in is a configuration problem, not a 404 page.
            let m = Metadata::default_endpoints(issuer);
            let authorize = m.authorization_endpoint.clone().unwrap_or_default();
            let resp = http
                .get(&authorize)
                .timeout(METADATA_TIMEOUT)
                .send()
                .await
                .map_err(|e| err(crate::http::describe(&e)))?;
            if matches!(resp.status().as_u16(), 404 | 405 | 410) {
                return Err(err(format!(
                    "{NAMES_NONE}: no protected resource metadata (RFC 9728), no authorization server metadata (RFC 8414) and no `/authorize` endpoint at {issuer}"
                )));
            }
            tracing::debug!(
                "no authorization server metadata at {issuer}; using the default endpoints there (MCP 2025-03-26)"
            );
            Ok(m)
        }
        None => Err(err("no metadata document found".into())),
        Some(reason) => Err(err(reason)),
    }
}

/// The provider's signing keys, to verify an ID token it returned.
pub async fn jwks(http: &reqwest::Client, metadata: &Metadata) -> Result<Vec<u8>, AuthError> {
    let err = |reason: String| AuthError::IdToken(format!("cannot check its signature: {reason}"));
    let url = metadata
        .jwks_uri
        .as_deref()
        .ok_or_else(|| err("the provider names no `jwks_uri`".into()))?;
    get_json(http, url)
        .await
        .map_err(|e| err(format!("`{url}`: {e}")))?
        .ok_or_else(|| err(format!("`{url}` did not answer")))
}

/// What the MCP server says about how to get tokens for it (RFC 9728).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceInfo {
    pub resource: Option<String>,
    pub authorization_servers: Vec<String>,
    /// The scopes to ask for: the challenge's `scope`, else the metadata's
    /// `scopes_supported`; empty: send no `scope` at all.
    pub scopes: Vec<String>,
    /// No protected resource metadata (a 2025-03-26 server): the authorization server is the
    /// MCP server's origin, and without metadata there its default endpoints are used.
    pub fallback: bool,
}

/// What a `WWW-Authenticate: Bearer` challenge says about where and how to log in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Challenge {
    pub error: Option<String>,
    pub scope: Option<String>,
    pub resource_metadata: Option<String>,
}

impl Challenge {
    /// The parameters of all `WWW-Authenticate` values (the first of each kind counts).
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Challenge {
        let mut c = Challenge::default();
        for v in values {
            for (k, v) in challenge_params(v.as_ref()) {
                let slot = match k.as_str() {
                    "error" => &mut c.error,
                    "scope" => &mut c.scope,
                    "resource_metadata" => &mut c.resource_metadata,
                    _ => continue,
                };
                slot.get_or_insert(v);
            }
        }
        c
    }

    pub fn scopes(&self) -> Vec<String> {
        self.scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct ProtectedResourceMetadata {
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

/// `WWW-Authenticate: Bearer error="...", scope="...", resource_metadata="..."` parameters.
pub fn challenge_params(header: &str) -> Vec<(String, String)> {
    let rest = header.trim();
    let rest = rest
        .strip_prefix("Bearer")
        .or_else(|| rest.strip_prefix("bearer"))
        .unwrap_or(rest);
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',' && !c.is_whitespace())).collect();
        if key.is_empty() {
            break;
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        let value = if chars.next_if_eq(&'"').is_some() {
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => v.extend(chars.next()),
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',' && !c.is_whitespace())).collect()
        };
        out.push((key.to_ascii_lowercase(), value));
    }
    out
}

/// Ask the MCP server for its challenge: an unauthenticated request (for `login`, which has
/// no refused request to learn from).
pub async fn challenge(http: &reqwest::Client, backend: &Url) -> Result<Challenge, String> {
    let probe = http
        .post(backend.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":"authful-mcp-proxy-probe","method":"ping"}"#)
        .send()
        .await
        .map_err(|e| format!("cannot reach it: {}", crate::http::describe(&e)))?;
    if probe.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Ok(Challenge::default());
    }
    let values: Vec<String> = probe
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    Ok(Challenge::parse(&values))
}

/// Where to log in for `backend`, from its challenge: the metadata the challenge points to,
/// else the well-known locations (RFC 9728), else the 2025-03-26 fallback to its origin.
pub async fn protected_resource(
    http: &reqwest::Client,
    backend: &Url,
    challenge: &Challenge,
) -> Result<ResourceInfo, String> {
    let mut candidates = Vec::new();
    candidates.extend(challenge.resource_metadata.clone());
    let origin = backend.origin().ascii_serialization();
    let path = backend.path().trim_end_matches('/');
    if !path.is_empty() {
        candidates.push(format!("{origin}/.well-known/oauth-protected-resource{path}"));
    }
    candidates.push(format!("{origin}/.well-known/oauth-protected-resource"));
    for url in candidates {
        let Ok(Some(body)) = get_json(http, &url).await else {
            continue;
        };
        let Ok(prm) = serde_json::from_slice::<ProtectedResourceMetadata>(&body) else {
            continue;
        };
        if prm.authorization_servers.is_empty() {
            continue;
        }
        // RFC 9728 §3.3: the metadata must be about this server.
        if let Some(r) = &prm.resource {
            if !same_resource(r, backend) {
                return Err(format!("its metadata describes another resource (`{r}`)"));
            }
        }
        let scopes = match challenge.scope {
            Some(_) => challenge.scopes(),
            None => prm.scopes_supported,
        };
        return Ok(ResourceInfo {
            resource: prm.resource,
            authorization_servers: prm.authorization_servers,
            scopes,
            fallback: false,
        });
    }
    tracing::debug!(
        "no protected resource metadata at {origin}; trying its origin as the authorization server (MCP 2025-03-26)"
    );
    Ok(ResourceInfo {
        resource: None,
        authorization_servers: vec![origin],
        scopes: challenge.scopes(),
        fallback: true,
    })
}

/// RFC 9728 §3.3 / RFC 8707: the resource the metadata names must be this server, or a
/// prefix of it (same origin, a path that contains this one's).
fn same_resource(resource: &str, backend: &Url) -> bool {
    let Ok(r) = Url::parse(resource) else { return false };
    if r.origin() != backend.origin() {
        return false;
    }
    let rp = r.path().trim_end_matches('/');
    let bp = backend.path().trim_end_matches('/');
    bp == rp || bp.starts_with(&format!("{rp}/")) || rp.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_order_follows_the_mcp_specification() {
        assert_eq!(
            well_known_urls("https://idp.example"),
            vec![
                "https://idp.example/.well-known/oauth-authorization-server",
                "https://idp.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            well_known_urls("https://kc.example/realms/x/"),
            vec![
                "https://kc.example/.well-known/oauth-authorization-server/realms/x",
                "https://kc.example/.well-known/openid-configuration/realms/x",
                "https://kc.example/realms/x/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn challenge_parameters_table() {
        let p = challenge_params(
            r#"Bearer realm="mcp", error="insufficient_scope", scope="a b", resource_metadata="https://s.example/.well-known/oauth-protected-resource""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".into(), "mcp".into()),
                ("error".into(), "insufficient_scope".into()),
                ("scope".into(), "a b".into()),
                (
                    "resource_metadata".into(),
                    "https://s.example/.well-known/oauth-protected-resource".into()
                ),
            ]
        );
        assert_eq!(
            challenge_params(r#"Bearer error=invalid_token,scope="x\"y""#),
            vec![
                ("error".into(), "invalid_token".into()),
                ("scope".into(), "x\"y".into())
            ]
        );
        assert!(challenge_params("Bearer").is_empty());
        assert!(challenge_params("").is_empty());
    }
}
