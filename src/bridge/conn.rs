//! What both transports share: the HTTP client, the backend URL, static headers, and the
//! token source (asked through [`TokenSource`] only); plus how a failure is answered to the
//! client.

use super::message::Msg;
use super::stdio::Out;
use crate::config::Config;
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use crate::token_source::{Refusal, TokenSource, Unavailable};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::sync::Arc;
use url::Url;

/// What both transports share: the HTTP client, where to go, and how to authenticate.
pub struct Conn {
    pub http: reqwest::Client,
    pub url: Url,
    pub headers: HeaderMap,
    pub auth: Arc<dyn TokenSource>,
    pub out: Out,
    pub shutdown: Shutdown,
}

impl Conn {
    pub fn new(config: &Config, http: reqwest::Client, url: Url, auth: Arc<dyn TokenSource>, out: Out) -> Self {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            if let (Ok(n), Ok(mut v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.expose()),
            ) {
                v.set_sensitive(true);
                headers.append(n, v);
            }
        }
        Conn {
            http,
            url,
            headers,
            auth,
            out,
            shutdown: Shutdown::subscribe(),
        }
    }

    /// The bearer token to send, if any (waits for a login in progress).
    pub async fn bearer(&self) -> Result<Option<Secret<String>>, Unavailable> {
        self.auth.token().await
    }

    /// A token usable at once, without a login or any wait: `Some(None)` when no token is
    /// needed (yet), `None` when only a login or a refresh could give one (for answers that
    /// must never wait, such as the `server/discover` probe).
    pub fn bearer_now(&self) -> Option<Option<Secret<String>>> {
        self.auth.token_now()
    }

    /// The server refused a request sent with `token` (401: no or a bad token; 403: maybe
    /// not enough scope): true if it should be sent again, the token source now having a new
    /// token, more scopes, or where to log in.
    pub async fn refused(&self, token: &Option<Secret<String>>, resp: &reqwest::Response) -> bool {
        self.auth.refused(Refusal::from_response(token.as_ref(), resp)).await
    }

    /// A request to `url` (which must be the backend's origin) with static headers and token.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: Url,
        token: &Option<Secret<String>>,
    ) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, url).headers(self.headers.clone());
        if let Some(t) = token {
            let mut v =
                HeaderValue::from_str(&format!("Bearer {}", t.expose())).unwrap_or(HeaderValue::from_static(""));
            v.set_sensitive(true);
            rb = rb.header(reqwest::header::AUTHORIZATION, v);
        }
        rb
    }

    /// Answer a request with an error (notifications and responses get a log line instead).
    pub fn fail(&self, msg: &Msg, code: i64, text: &str) {
        self.fail_ids(msg, &msg.request_ids(), code, text);
    }

    /// Answer these ids of `msg` with an error.
    pub fn fail_ids(&self, msg: &Msg, ids: &[Value], code: i64, text: &str) {
        if ids.is_empty() {
            tracing::warn!("could not deliver {}: {text}", msg.label());
        }
        for id in ids {
            tracing::debug!("answering id {id} with error {code}: {text}");
            self.out.error(Some(id), code, text);
        }
    }
}

/// What an HTTP error from the MCP server says, in one line: the status, with a hint for 401
/// and 403, or the start of a short text or JSON body.
pub fn http_error_text(status: u16, ctype: &str, body: &[u8]) -> String {
    let detail = match status {
        401 => " (the access token was refused; check the issuer, client ID and scopes, or run `authful-mcp-proxy logout` and log in again)".to_string(),
        403 => " (access denied: the token lacks a scope or permission this server needs)".to_string(),
        _ if ctype.starts_with("text/plain") || ctype.starts_with("application/json") => {
            let t: String = String::from_utf8_lossy(body).chars().filter(|c| !c.is_control()).take(200).collect();
            if t.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", t.trim())
            }
        }
        _ => String::new(),
    };
    format!("the MCP server answered HTTP {status}{detail}")
}
