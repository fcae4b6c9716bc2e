//! Which client the proxy is, and dynamic client registration (RFC 7591). The order: a
//! configured client ID; else a client ID metadata document URL (SEP-991) when the
//! authorization server supports them; else registration as a public native client with our
//! loopback redirect URI, cached with the tokens and redone when the redirect URI changes or
//! the server forgot us.

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

/// Where the client ID comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientChoice {
    /// `--oidc-client-id` (an `https://` one may itself be a metadata document URL).
    Configured(String),
    /// `--client-metadata-url`, and the server says it takes such URLs as client IDs.
    MetadataDocument(String),
    /// Neither: register (RFC 7591).
    Register,
}

/// The client to use: configured → metadata document (when `cimd_supported`, the server's
/// `client_id_metadata_document_supported`) → dynamic registration.
pub fn choose_client(configured: Option<&str>, metadata_url: Option<&str>, cimd_supported: bool) -> ClientChoice {
    match (configured, metadata_url) {
        (Some(id), _) => ClientChoice::Configured(id.to_string()),
        (None, Some(url)) if cimd_supported => ClientChoice::MetadataDocument(url.to_string()),
        (None, Some(url)) => {
            tracing::info!(
                "the authorization server does not support client ID metadata documents; not using `{url}`, registering instead"
            );
            ClientChoice::Register
        }
        (None, None) => ClientChoice::Register,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_selection_order() {
        const DOC: &str = "https://app.example/client.json";
        use ClientChoice::*;
        for (configured, doc, supported, want) in [
            // A configured client ID always wins, metadata document or not.
            (
                Some("pre-registered"),
                Some(DOC),
                true,
                Configured("pre-registered".into()),
            ),
            (Some("pre-registered"), None, false, Configured("pre-registered".into())),
            // An https client ID is used as it is (it is a metadata document URL already).
            (Some(DOC), None, true, Configured(DOC.into())),
            // Else the metadata document, when the server takes such client IDs ...
            (None, Some(DOC), true, MetadataDocument(DOC.into())),
            // ... and registration when it does not, or when there is none.
            (None, Some(DOC), false, Register),
            (None, None, true, Register),
            (None, None, false, Register),
        ] {
            assert_eq!(
                choose_client(configured, doc, supported),
                want,
                "{configured:?} {doc:?} {supported}"
            );
        }
    }
}
