//! Finding the authorization server. With an issuer configured, its metadata is fetched from
//! the well-known URLs in the order the MCP specification gives (RFC 8414 first, then OpenID
//! discovery, path-insert before path-append); the issuer in the document must be the one
//! asked for. Without one, the MCP server names it: the `resource_metadata` of its 401
//! challenge, else its well-known protected resource metadata (RFC 9728).

use super::AuthError;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, DeviceAuthorizationUrl, JsonWebKeySet, ProviderMetadata};
use serde::{Deserialize, Serialize};
use url::Url;

/// Metadata fields beyond OpenID discovery that the login uses.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    #[serde(default)]
    pub device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// SEP-991: an HTTPS URL of a client metadata document may serve as the client ID.
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

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

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Option<Vec<u8>>, String> {
    let resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| crate::bridge::describe(&e))?;
    if !resp.status().is_success() {
        return Ok(None);
    }
    resp.bytes()
        .await
        .map(|b| Some(b.to_vec()))
        .map_err(|e| crate::bridge::describe(&e))
}

/// The authorization server's metadata (with its keys), checked to belong to `issuer`.
pub async fn authorization_server(http: &reqwest::Client, issuer: &str) -> Result<Metadata, AuthError> {
    let err = |reason: String| AuthError::Discovery {
        issuer: issuer.to_string(),
        reason,
    };
    let mut last = "no metadata document found".to_string();
    for url in well_known_urls(issuer) {
        let body = match get_json(http, &url).await {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let metadata: Metadata = match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(e) => {
                last = format!("`{url}` is not OpenID provider metadata: {e}");
                continue;
            }
        };
        // OpenID Discovery §4.3 / RFC 8414 §3.3: the document must name the issuer asked for.
        let found = metadata.issuer().as_str();
        if found.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(err(format!("unexpected issuer `{found}` (expected `{issuer}`)")));
        }
        if let Some(methods) = &metadata.additional_metadata().code_challenge_methods_supported {
            if !methods.iter().any(|m| m == "S256") {
                return Err(err("the provider does not support PKCE with S256".into()));
            }
        }
        let jwks_url = metadata.jwks_uri().url().to_string();
        let jwks_body = get_json(http, &jwks_url)
            .await
            .map_err(err)?
            .ok_or_else(|| err(format!("`{jwks_url}` did not answer")))?;
        let jwks: JsonWebKeySet<CoreJsonWebKey> = serde_json::from_slice(&jwks_body)
            .map_err(|e| err(format!("`{jwks_url}` is not a JSON Web Key Set: {e}")))?;
        tracing::debug!("discovered the authorization server {found} ({url})");
        return Ok(metadata.set_jwks(jwks));
    }
    Err(err(last))
}

/// What the MCP server says about how to get tokens for it (RFC 9728).
#[derive(Debug, Clone, Default)]
pub struct ResourceInfo {
    pub resource: Option<String>,
    pub authorization_servers: Vec<String>,
    pub scopes: Vec<String>,
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

/// Ask the MCP server where to log in: an unauthenticated request for its challenge, then
/// the metadata it points to, else the well-known locations.
pub async fn protected_resource(http: &reqwest::Client, backend: &Url) -> Result<ResourceInfo, String> {
    let mut candidates = Vec::new();
    let mut challenge_scope = None;
    let probe = http
        .post(backend.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":"authful-mcp-proxy-probe","method":"ping"}"#)
        .send()
        .await
        .map_err(|e| format!("cannot reach it: {}", crate::bridge::describe(&e)))?;
    if probe.status() == reqwest::StatusCode::UNAUTHORIZED {
        for h in probe.headers().get_all(reqwest::header::WWW_AUTHENTICATE) {
            let params = challenge_params(h.to_str().unwrap_or(""));
            for (k, v) in params {
                match k.as_str() {
                    "resource_metadata" => candidates.push(v),
                    "scope" => challenge_scope = Some(v),
                    _ => {}
                }
            }
        }
    }
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
            let same = Url::parse(r).map(|u| u.origin() == backend.origin()).unwrap_or(false);
            if !same {
                return Err(format!("its metadata describes another resource (`{r}`)"));
            }
        }
        let scopes = match &challenge_scope {
            Some(s) => s.split_whitespace().map(str::to_string).collect(),
            None => prm.scopes_supported,
        };
        return Ok(ResourceInfo {
            resource: prm.resource,
            authorization_servers: prm.authorization_servers,
            scopes,
        });
    }
    Err("it offers no protected resource metadata (RFC 9728)".into())
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
