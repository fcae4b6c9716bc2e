//! What both transports share: the HTTP client, the backend URL, static headers, and the
//! token source; plus how a failure is answered to the client.

use super::message::Msg;
use super::stdio::Out;
use crate::auth::TokenManager;
use crate::config::Config;
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::sync::Arc;
use url::Url;

/// What both transports share: the HTTP client, where to go, and how to authenticate.
pub struct Conn {
    pub http: reqwest::Client,
    pub url: Url,
    pub headers: HeaderMap,
    pub auth: Option<Arc<TokenManager>>,
    pub out: Out,
    pub shutdown: Shutdown,
}

impl Conn {
    pub fn new(config: &Config, http: reqwest::Client, url: Url, auth: Option<Arc<TokenManager>>, out: Out) -> Self {
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

    /// The current bearer token, if this proxy logs in (waits for a login in progress).
    pub async fn bearer(&self) -> Result<Option<Secret<String>>, crate::auth::AuthError> {
        match &self.auth {
            Some(a) => a.access_token().await.map(Some),
            None => Ok(None),
        }
    }

    /// A token usable at once, without a login or any wait: `Some(None)` when this proxy
    /// does not log in, `None` when only a login or a refresh could give one (for answers
    /// that must never wait, such as the `server/discover` probe).
    pub fn bearer_now(&self) -> Option<Option<Secret<String>>> {
        match &self.auth {
            Some(a) => a.token_without_waiting().map(Some),
            None => Some(None),
        }
    }

    /// Tell the token source that the server refused this token (HTTP 401).
    pub async fn rejected(&self, token: &Option<Secret<String>>) -> bool {
        match (&self.auth, token) {
            (Some(a), Some(t)) => {
                a.rejected(t).await;
                true
            }
            _ => false,
        }
    }

    /// A 403 `insufficient_scope` challenge: ask the token source for a login with the
    /// scopes the server names. True if the request should be retried.
    pub async fn step_up(&self, token: &Option<Secret<String>>, resp: &reqwest::Response) -> bool {
        let (Some(auth), Some(token)) = (&self.auth, token) else {
            return false;
        };
        for h in resp.headers().get_all(reqwest::header::WWW_AUTHENTICATE) {
            let params = crate::auth::discovery::challenge_params(h.to_str().unwrap_or(""));
            let error = params.iter().find(|(k, _)| k == "error").map(|(_, v)| v.as_str());
            if error == Some("insufficient_scope") {
                let scopes: Vec<String> = params
                    .iter()
                    .find(|(k, _)| k == "scope")
                    .map(|(_, v)| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default();
                return auth.step_up(token, &scopes).await;
            }
        }
        false
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

/// Describe a reqwest error in one line, without its URL (the caller names the server).
pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() || e.is_body() {
        "the reply broke off"
    } else {
        "request failed"
    };
    // The innermost cause is the one that says what happened ("Connection refused").
    let mut cause = None;
    let mut src = e.source();
    while let Some(inner) = src {
        cause = Some(inner.to_string());
        src = inner.source();
    }
    match cause {
        Some(c) => format!("{what} ({c})"),
        None => what.to_string(),
    }
}
