//! Dynamic client registration (RFC 7591) for authorization servers that offer it when no
//! client ID is configured: a public native client with our loopback redirect URI. The result
//! is cached with the tokens and redone when the redirect URI changes or the server forgot us.

use super::discovery::Metadata;
use super::AuthError;
use crate::secret::Secret;
use openidconnect::core::{CoreApplicationType, CoreClientAuthMethod, CoreClientRegistrationRequest, CoreGrantType};
use openidconnect::registration::EmptyAdditionalClientMetadata;
use openidconnect::{ClientName, RedirectUrl};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Registration {
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret<String>>,
    pub redirect_uri: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

pub async fn register(
    http: &reqwest::Client,
    metadata: &Metadata,
    redirect: &str,
    device: bool,
) -> Result<Registration, AuthError> {
    let endpoint = metadata
        .registration_endpoint()
        .ok_or_else(|| AuthError::TokenRefused {
            error: "no_client_id".into(),
            description: Some(
                "no client ID is configured and the authorization server offers no dynamic client registration".into(),
            ),
        })?;
    let redirect_url = RedirectUrl::new(redirect.to_string()).map_err(|e| AuthError::Listen {
        addr: redirect.into(),
        reason: e.to_string(),
    })?;
    let mut grants = vec![CoreGrantType::AuthorizationCode, CoreGrantType::RefreshToken];
    if device {
        grants.push(CoreGrantType::DeviceCode);
    }
    let request = CoreClientRegistrationRequest::new(vec![redirect_url], EmptyAdditionalClientMetadata::default())
        .set_application_type(Some(CoreApplicationType::Native))
        .set_client_name(Some(ClientName::new("authful-mcp-proxy".into()).into()))
        .set_grant_types(Some(grants))
        .set_token_endpoint_auth_method(Some(CoreClientAuthMethod::None));
    let response = request.register_async(endpoint, http).await.map_err(|e| match e {
        openidconnect::registration::ClientRegistrationError::ServerResponse(r) => AuthError::TokenRefused {
            error: r.error().as_ref().to_string(),
            description: r.error_description().cloned(),
        },
        other => AuthError::Network(format!("client registration failed: {other}")),
    })?;
    tracing::info!(
        "registered this proxy with the authorization server as client `{}`",
        response.client_id().as_str()
    );
    Ok(Registration {
        client_id: response.client_id().as_str().to_string(),
        client_secret: response.client_secret().map(|s| Secret::new(s.secret().clone())),
        redirect_uri: redirect.to_string(),
    })
}
