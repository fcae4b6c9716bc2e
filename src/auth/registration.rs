//! Dynamic client registration (RFC 7591) for authorization servers that offer it when no
//! client ID is configured: a public native client with our loopback redirect URI. The result
//! is cached with the tokens and redone when the redirect URI changes or the server forgot us.

use super::discovery::Metadata;
use super::AuthError;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Registration {
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret<String>>,
    pub redirect_uri: String,
    /// Registered with the device authorization grant.
    #[serde(default)]
    pub device: bool,
    /// How the server says this client authenticates at its token endpoint (RFC 7591
    /// `token_endpoint_auth_method`), when it said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

#[derive(Serialize)]
struct Request<'a> {
    client_name: &'a str,
    application_type: &'a str,
    redirect_uris: [&'a str; 1],
    grant_types: Vec<&'a str>,
    response_types: [&'a str; 1],
    token_endpoint_auth_method: &'a str,
}

#[derive(Deserialize)]
struct Response {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Register a public native client (a small JSON POST; no redirects followed).
pub async fn register(
    http: &reqwest::Client,
    metadata: &Metadata,
    redirect: &str,
    device: bool,
) -> Result<Registration, AuthError> {
    let endpoint = metadata
        .registration_endpoint
        .clone()
        .ok_or_else(|| AuthError::TokenRefused {
            error: "no_client_id".into(),
            description: Some(
                "no client ID is configured and the authorization server offers no dynamic client registration".into(),
            ),
        })?;
    let mut grant_types = vec!["authorization_code", "refresh_token"];
    if device {
        grant_types.push("urn:ietf:params:oauth:grant-type:device_code");
    }
    let request = Request {
        client_name: "authful-mcp-proxy",
        application_type: "native",
        redirect_uris: [redirect],
        grant_types,
        response_types: ["code"],
        token_endpoint_auth_method: "none",
    };
    let resp = http
        .post(endpoint)
        .header(reqwest::header::ACCEPT, "application/json")
        .json(&request)
        .send()
        .await
        .map_err(|e| AuthError::Network(format!("client registration failed: {}", crate::http::describe(&e))))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| AuthError::Network(crate::http::describe(&e)))?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => AuthError::TokenRefused {
                error: e.error,
                description: e.error_description,
            },
            Err(_) => AuthError::Network(format!("client registration answered HTTP {}", status.as_u16())),
        });
    }
    let r: Response = serde_json::from_slice(&body)
        .map_err(|e| AuthError::Network(format!("unexpected client registration answer: {e}")))?;
    tracing::info!(
        "registered this proxy with the authorization server as client `{}`",
        r.client_id
    );
    Ok(Registration {
        client_id: r.client_id,
        client_secret: r.client_secret.map(Secret::new),
        redirect_uri: redirect.to_string(),
        device,
        auth_method: r.token_endpoint_auth_method,
    })
}
