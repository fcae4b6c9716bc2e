//! The one question the bridge asks about authentication: which bearer token to send, and
//! what to do when the server refuses a request. The bridge hands over the refusal as the
//! server said it (status and `WWW-Authenticate` challenges) and gets back whether to send
//! the request again; how a token is obtained stays behind this interface. Two kinds answer
//! it: [`NoToken`] (static headers, or nothing) and the login ([`crate::auth::TokenManager`]),
//! which also covers a server that asks for a login only with its first 401 and one whose
//! authorization server moves.

use crate::secret::Secret;
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// No token can be had now. The message says why and what to do, in one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Unavailable {
    pub message: String,
    /// Worth trying again later without the user (the network or the provider was down);
    /// otherwise only the user can fix it (and asking again would start another login).
    pub transient: bool,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Unavailable {
    /// The message, hint included (what a JSON-RPC error carries).
    pub fn with_hint(&self) -> String {
        self.message.clone()
    }

    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// A request the server refused, as it answered.
pub struct Refusal<'a> {
    /// The HTTP status: 401 (no or a bad token) or 403 (not enough scope).
    pub status: u16,
    /// The token that was sent with it, if any.
    pub sent: Option<&'a Secret<String>>,
    /// The `WWW-Authenticate` header values.
    pub challenges: Vec<String>,
}

impl<'a> Refusal<'a> {
    pub fn from_response(sent: Option<&'a Secret<String>>, resp: &reqwest::Response) -> Self {
        Refusal {
            status: resp.status().as_u16(),
            sent,
            challenges: resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect(),
        }
    }
}

pub trait TokenSource: Send + Sync {
    /// The token for the next request (`None`: send none). May wait for a login.
    fn token(&self) -> BoxFuture<'_, Result<Option<Secret<String>>, Unavailable>>;
    /// The server refused a request. True: send it again; the next [`token`](Self::token)
    /// answers with what the refusal asked for.
    fn refused<'a>(&'a self, refusal: Refusal<'a>) -> BoxFuture<'a, bool>;
    /// The current token without waiting (may be stale), for a best-effort goodbye.
    fn current(&self) -> Option<Secret<String>>;
}

/// Static headers or a server that needs no login: never a token, never a retry.
pub struct NoToken;

impl TokenSource for NoToken {
    fn token(&self) -> BoxFuture<'_, Result<Option<Secret<String>>, Unavailable>> {
        Box::pin(async { Ok(None) })
    }

    fn refused<'a>(&'a self, _: Refusal<'a>) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    fn current(&self) -> Option<Secret<String>> {
        None
    }
}
