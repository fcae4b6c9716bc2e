//! The loopback callback server (RFC 8252): bound before the browser opens, on loopback
//! only (for `localhost`, both 127.0.0.1 and ::1). Only the configured path counts; a wrong
//! `state` or `iss` gets an error page and the login keeps waiting; `error=` ends it with the
//! provider's description; success shows a page that says the tab can be closed.

use super::AuthError;
use crate::secret::Secret;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use url::Url;

pub struct Listener {
    listeners: Vec<TcpListener>,
    redirect: Url,
}

/// What one callback request meant.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Not the callback path (a favicon, a probe): 404, keep waiting.
    NotFound,
    /// A callback that does not belong to this login (wrong state or issuer): keep waiting.
    Foreign(&'static str),
    Denied {
        error: String,
        description: Option<String>,
    },
    Code(String),
    /// The right path and state, but no code.
    Malformed,
}

/// RFC 9207: the issuer a callback's `iss` must name, and whether it must be there (the
/// metadata said `authorization_response_iss_parameter_supported`).
#[derive(Clone, Copy, Debug)]
pub struct IssCheck<'a> {
    pub issuer: &'a str,
    pub required: bool,
}

/// Decide what a callback request means (pure, unit-tested).
pub fn judge(path: &str, query: Option<&str>, want_path: &str, state: &str, iss: IssCheck<'_>) -> Outcome {
    if path != want_path {
        return Outcome::NotFound;
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("state").as_deref() != Some(state) {
        return Outcome::Foreign("this sign-in response does not belong to the login in progress (state mismatch)");
    }
    // RFC 9207: when the provider names itself, it must be exactly the issuer of its
    // metadata (compared as strings, nothing normalised); when it said it always names
    // itself, a response without `iss` is not its own.
    match get("iss") {
        Some(found) if found != iss.issuer => {
            return Outcome::Foreign("this sign-in response comes from another identity provider (issuer mismatch)")
        }
        None if iss.required => {
            return Outcome::Foreign("this sign-in response does not name its identity provider (no `iss`)")
        }
        _ => {}
    }
    if let Some(error) = get("error") {
        return Outcome::Denied {
            error,
            description: get("error_description"),
        };
    }
    match get("code") {
        Some(c) if !c.is_empty() => Outcome::Code(c),
        _ => Outcome::Malformed,
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}h1{{font-size:1.4rem}}</style>\
</head><body><h1>{t}</h1><p>{b}</p><p><small>authful-mcp-proxy</small></p></body></html>",
        t = escape(title),
        b = escape(body)
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer")
        .header("connection", "close")
        .body(Full::new(Bytes::from(html)))
        .expect("static response")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

impl Listener {
    /// Bind the redirect URL's port on loopback. Port 0 picks a free port.
    pub async fn bind(redirect: &Url) -> Result<Listener, AuthError> {
        let port = redirect.port_or_known_default().unwrap_or(80);
        let ips: Vec<IpAddr> = match redirect.host() {
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            _ => vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)],
        };
        let mut listeners = Vec::new();
        let mut chosen = port;
        for ip in ips {
            let addr = SocketAddr::new(ip, chosen);
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    if chosen == 0 {
                        chosen = l.local_addr().map(|a| a.port()).unwrap_or(0);
                    }
                    listeners.push(l);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(AuthError::PortInUse { port: chosen })
                }
                // ::1 may be unavailable (IPv6 off); one loopback address is enough.
                Err(e) if !listeners.is_empty() => tracing::debug!("not listening on {addr}: {e}"),
                Err(e) => {
                    return Err(AuthError::Listen {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        let mut redirect = redirect.clone();
        if port == 0 {
            let _ = redirect.set_port(Some(chosen));
        }
        Ok(Listener { listeners, redirect })
    }

    pub fn redirect_url(&self) -> &Url {
        &self.redirect
    }

    /// Serve until the login ends (code, denial or timeout).
    pub async fn wait(self, state: &str, iss: IssCheck<'_>, timeout: Duration) -> Result<Secret<String>, AuthError> {
        let (tx, mut rx) = mpsc::channel::<Result<Secret<String>, AuthError>>(4);
        let shared = Arc::new((
            self.redirect.path().to_string(),
            state.to_string(),
            iss.issuer.to_string(),
            iss.required,
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let tx = tx.clone();
            let shared = shared.clone();
            tasks.spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let tx = tx.clone();
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            let shared = shared.clone();
                            async move { Ok::<_, std::convert::Infallible>(respond(&req, &shared, &tx).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        }
        drop(tx);
        let result = tokio::time::timeout(timeout, rx.recv()).await;
        // Give the browser a moment to receive the final page before the listener goes away.
        tokio::time::sleep(Duration::from_millis(50)).await;
        tasks.abort_all();
        match result {
            Ok(Some(r)) => r,
            Ok(None) => Err(AuthError::Listen {
                addr: self.redirect.to_string(),
                reason: "the listener stopped".into(),
            }),
            Err(_) => Err(AuthError::TimedOut(timeout)),
        }
    }
}

async fn respond(
    req: &Request<hyper::body::Incoming>,
    shared: &(String, String, String, bool),
    tx: &mpsc::Sender<Result<Secret<String>, AuthError>>,
) -> Response<Full<Bytes>> {
    let (want_path, state, issuer, required) = shared;
    let iss = IssCheck {
        issuer,
        required: *required,
    };
    match judge(req.uri().path(), req.uri().query(), want_path, state, iss) {
        Outcome::NotFound => page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This is the login callback of authful-mcp-proxy.",
        ),
        Outcome::Foreign(why) => {
            tracing::warn!("ignored a login callback: {why}");
            page(
                StatusCode::BAD_REQUEST,
                "Login link out of date",
                &format!("{why}. Close this tab and use the newest login link."),
            )
        }
        Outcome::Malformed => page(
            StatusCode::BAD_REQUEST,
            "Login failed",
            "The identity provider sent no authorization code.",
        ),
        Outcome::Denied { error, description } => {
            let text = match &description {
                Some(d) if !d.is_empty() => format!("{error}: {d}"),
                _ => error.clone(),
            };
            let _ = tx.send(Err(AuthError::Denied { error, description })).await;
            page(
                StatusCode::FORBIDDEN,
                "Login failed",
                &format!("The identity provider said: {text}. You can close this tab."),
            )
        }
        Outcome::Code(code) => {
            let _ = tx.send(Ok(Secret::new(code))).await;
            page(
                StatusCode::OK,
                "Logged in",
                "You are logged in. You can close this tab and return to your MCP client.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_table() {
        let iss = IssCheck {
            issuer: "https://idp.example",
            required: false,
        };
        let j = |path: &str, q: &str| judge(path, Some(q), "/auth/callback", "S1", iss);
        assert_eq!(j("/favicon.ico", "code=c&state=S1"), Outcome::NotFound); // other paths never count
        assert_eq!(j("/auth/callback", "code=c&state=S1"), Outcome::Code("c".into()));
        assert_eq!(j("/auth/callback", "code=c%2Fx&state=S1"), Outcome::Code("c/x".into())); // query is decoded
        assert!(matches!(j("/auth/callback", "code=c&state=WRONG"), Outcome::Foreign(_))); // CSRF: keep waiting
        assert!(matches!(j("/auth/callback", "code=c"), Outcome::Foreign(_))); // missing state
        assert!(matches!(
            j("/auth/callback", "code=c&state=S1&iss=https%3A%2F%2Fevil.example"),
            Outcome::Foreign(_)
        )); // RFC 9207 mix-up
        assert!(matches!(
            j("/auth/callback", "code=c&state=S1&iss=https%3A%2F%2Fidp.example%2F"),
            Outcome::Foreign(_)
        )); // RFC 9207 §2.4: exact string comparison, no trailing-slash normalisation
        assert_eq!(
            j("/auth/callback", "code=c&state=S1&iss=https%3A%2F%2Fidp.example"),
            Outcome::Code("c".into())
        );
        assert_eq!(j("/auth/callback", "code=c&state=S1"), Outcome::Code("c".into())); // iss optional here
        assert_eq!(
            j(
                "/auth/callback",
                "error=access_denied&error_description=User+said+no&state=S1"
            ),
            Outcome::Denied {
                error: "access_denied".into(),
                description: Some("User said no".into())
            }
        );
        assert_eq!(j("/auth/callback", "state=S1"), Outcome::Malformed);
    }

    #[test]
    fn a_required_iss_must_be_present() {
        let iss = IssCheck {
            issuer: "https://idp.example",
            required: true,
        };
        let j = |q: &str| judge("/cb", Some(q), "/cb", "S1", iss);
        assert!(matches!(j("code=c&state=S1"), Outcome::Foreign(_))); // missing: keep waiting
        assert_eq!(
            j("code=c&state=S1&iss=https%3A%2F%2Fidp.example"),
            Outcome::Code("c".into())
        );
    }

    #[test]
    fn pages_escape_provider_text() {
        assert_eq!(escape("<script>\"x\"&'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;");
    }

    #[tokio::test]
    async fn port_in_use_is_reported_with_the_port() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/cb")).unwrap();
        match Listener::bind(&url).await {
            Err(AuthError::PortInUse { port: p }) => assert_eq!(p, port),
            other => panic!("expected PortInUse, got {:?}", other.map(|_| ())),
        }
    }
}
