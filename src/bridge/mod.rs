//! The bridge: MCP JSON-RPC between local stdio and the remote server, carried raw. Each
//! line is looked at only for `id`, `method` and what the transport rules need; everything
//! else (sampling, elicitation, progress, future methods) passes through unchanged. Every
//! request from stdin gets an answer: on any failure, a JSON-RPC error with the same id.

pub mod legacy;
pub mod sse;
pub mod stdio;
pub mod streamable;

use crate::auth::TokenManager;
use crate::config::{Config, Transport};
use crate::secret::Secret;
use crate::shutdown::Shutdown;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use stdio::{Input, Out};
use tokio::sync::mpsc;
use url::Url;

/// JSON-RPC error codes the proxy itself produces.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    /// The backend could not be reached or answered with an error.
    pub const BACKEND: i64 = -32000;
    /// No valid token could be obtained (login failed, denied or timed out).
    pub const AUTH: i64 = -32001;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
    /// A JSON-RPC batch forwarded as one POST (MCP 2025-03-26 only).
    Batch,
}

/// One client message: its raw bytes (already a single line) and what the bridge needs.
#[derive(Debug, Clone)]
pub struct Msg {
    pub body: Bytes,
    pub id: Option<Value>,
    pub method: Option<String>,
    pub kind: Kind,
    /// For a batch: the ids of its requests.
    pub batch_ids: Vec<Value>,
}

impl Msg {
    /// Whether the client waits for an answer to this message.
    pub fn is_request(&self) -> bool {
        !self.request_ids().is_empty()
    }

    /// The ids the client waits answers for.
    pub fn request_ids(&self) -> Vec<Value> {
        match (self.kind, &self.id) {
            (Kind::Request, Some(id)) => vec![id.clone()],
            (Kind::Batch, _) => self.batch_ids.clone(),
            _ => vec![],
        }
    }
    pub fn label(&self) -> String {
        match (&self.method, &self.id) {
            (Some(m), Some(id)) => format!("{m} (id {id})"),
            (Some(m), None) => m.clone(),
            (None, Some(id)) => format!("response (id {id})"),
            (None, None) if self.kind == Kind::Batch => format!("batch of {} requests", self.batch_ids.len()),
            (None, None) => "message".into(),
        }
    }
}

/// The fields the bridge looks at; serde skips the rest without building it.
#[derive(Deserialize)]
pub(crate) struct Envelope {
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub result: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub error: Option<serde::de::IgnoredAny>,
}

impl Envelope {
    pub fn is_response(&self) -> bool {
        self.method.is_none() && (self.result.is_some() || self.error.is_some())
    }
}

/// Classify one JSON text as a client message. `Err` is a JSON-RPC error to send back.
pub fn classify(body: Bytes) -> Result<Msg, (Option<Value>, i64, String)> {
    let env: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        // Valid JSON of the wrong shape is an invalid request; anything else a parse error.
        Err(e) if e.is_data() && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() => {
            return Err((
                None,
                codes::INVALID_REQUEST,
                "Invalid Request: not a JSON-RPC message object".into(),
            ))
        }
        Err(e) => return Err((None, codes::PARSE_ERROR, format!("Parse error: {e}"))),
    };
    let kind = match (&env.method, &env.id) {
        (Some(_), Some(_)) => Kind::Request,
        (Some(_), None) => Kind::Notification,
        (None, Some(_)) if env.is_response() => Kind::Response,
        _ => {
            return Err((
                env.id,
                codes::INVALID_REQUEST,
                "Invalid Request: neither a request, a notification nor a response".into(),
            ))
        }
    };
    Ok(Msg {
        body,
        id: env.id,
        method: env.method,
        kind,
        batch_ids: vec![],
    })
}

/// The request ids a POST waits answers for, and which have come.
#[derive(Debug, Default)]
pub struct Waiting {
    ids: Vec<Value>,
    got: Vec<bool>,
}

impl Waiting {
    pub fn new(ids: Vec<Value>) -> Self {
        let got = vec![false; ids.len()];
        Waiting { ids, got }
    }

    /// Note an answer; true if it was for one of ours.
    pub fn note(&mut self, id: &Value) -> bool {
        match self.ids.iter().position(|i| i == id) {
            Some(i) => {
                self.got[i] = true;
                true
            }
            None => false,
        }
    }

    pub fn done(&self) -> bool {
        self.got.iter().all(|g| *g)
    }

    pub fn missing(&self) -> Vec<Value> {
        self.ids
            .iter()
            .zip(&self.got)
            .filter(|(_, g)| !**g)
            .map(|(i, _)| i.clone())
            .collect()
    }
}

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

#[derive(Clone)]
enum Backend {
    Streamable(Arc<streamable::Streamable>),
    Legacy(Arc<legacy::Legacy>),
}

impl Backend {
    async fn close(&self) {
        match self {
            Backend::Streamable(s) => s.close().await,
            Backend::Legacy(l) => l.close().await,
        }
    }
}

/// Run the bridge until stdin ends or shutdown is requested. Returns after the session is
/// closed and stdout is flushed.
pub async fn run(config: &Config, conn: Arc<Conn>, mut input: mpsc::Receiver<Input>) {
    let mut shutdown = conn.shutdown.clone();
    let out = conn.out.clone();
    let max = config.max_message_bytes;
    let mut backend = match config.transport {
        Transport::Sse => Backend::Legacy(Arc::new(legacy::Legacy::new(conn.clone()))),
        t => Backend::Streamable(Arc::new(streamable::Streamable::new(
            conn.clone(),
            t == Transport::Auto,
        ))),
    };
    let mut tasks = tokio::task::JoinSet::new();
    // Lines read while an in-line forward was awaited, in order.
    let mut backlog = std::collections::VecDeque::new();
    'read: loop {
        let item = match backlog.pop_front() {
            Some(item) => Some(item),
            None => tokio::select! {
                _ = shutdown.wait() => break,
                item = input.recv() => item,
            },
        };
        let line = match item {
            None | Some(Input::Eof) => {
                tracing::debug!("stdin closed");
                break;
            }
            Some(Input::TooLarge(n)) => {
                out.error(
                    None,
                    codes::INVALID_REQUEST,
                    &format!("message of {n} bytes is larger than the limit of {max} bytes (--max-message-bytes)"),
                );
                continue;
            }
            Some(Input::Line(l)) => Bytes::from(l),
        };
        // MCP 2025-03-26 allows JSON-RPC batches over HTTP: forward them as they came.
        let keep_batches =
            matches!(&backend, Backend::Streamable(s) if s.protocol_version().as_deref() == Some("2025-03-26"));
        for msg in split(line, &out, keep_batches) {
            tracing::debug!("→ {}", msg.label());
            let is_init = msg.method.as_deref() == Some("initialize");
            // Messages handled in line (initialize, which may wait for a login; notifications
            // and responses, which keep their order) give way to a shutdown signal, and to
            // stdin ending (after a grace period), while the lines that arrive are kept.
            let stop = shutdown.clone();
            match &backend {
                Backend::Streamable(s) if is_init => {
                    // Nothing else may go out before the session exists.
                    let Some(outcome) = in_line(s.forward(&msg), stop, &mut input, &mut backlog).await else {
                        break 'read;
                    };
                    if outcome == streamable::Forwarded::Fallback {
                        tracing::info!(
                            "the server does not speak Streamable HTTP; using the HTTP+SSE transport (MCP 2024-11-05)"
                        );
                        let l = Arc::new(legacy::Legacy::new(conn.clone()));
                        backend = Backend::Legacy(l.clone());
                        if in_line(l.forward(&msg), shutdown.clone(), &mut input, &mut backlog)
                            .await
                            .is_none()
                        {
                            break 'read;
                        }
                    }
                }
                Backend::Streamable(s) if msg.is_request() => {
                    let s = s.clone();
                    let (conn, limit) = (conn.clone(), config.request_timeout);
                    tasks.spawn(async move {
                        let answered = within_limit(limit, s.forward(&msg)).await;
                        if !answered {
                            timed_out(&conn, &msg, limit, move |note| {
                                let s = s.clone();
                                async move {
                                    s.forward(&note).await;
                                }
                            })
                            .await;
                        }
                    });
                }
                Backend::Streamable(s) => {
                    if in_line(s.forward(&msg), stop, &mut input, &mut backlog).await.is_none() {
                        break 'read;
                    }
                }
                Backend::Legacy(l) if msg.is_request() && !is_init => {
                    let l = l.clone();
                    let (conn, limit) = (conn.clone(), config.request_timeout);
                    tasks.spawn(async move {
                        let answered = within_limit(limit, l.forward(&msg)).await;
                        if !answered {
                            timed_out(&conn, &msg, limit, move |note| {
                                let l = l.clone();
                                async move { l.forward(&note).await }
                            })
                            .await;
                        }
                    });
                }
                Backend::Legacy(l) => {
                    if in_line(l.forward(&msg), stop, &mut input, &mut backlog).await.is_none() {
                        break 'read;
                    }
                }
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    // Requests still in flight get a moment to be answered (a script piping a few lines and
    // closing stdin wants its answers); a shutdown signal or the grace period ends that.
    if !shutdown.is_triggered() && !tasks.is_empty() {
        let _ = unless_stopped(
            shutdown.clone(),
            tokio::time::timeout(std::time::Duration::from_secs(2), async {
                while tasks.join_next().await.is_some() {}
            }),
        )
        .await;
    }
    tasks.abort_all();
    backend.close().await;
    out.flush().await;
    tracing::debug!("bridge stopped");
}

/// How long a message in flight may still take once stdin has ended.
const EOF_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Await an in-line forward while still reading stdin: lines that arrive meanwhile go to
/// `backlog`; stdin ending gives the forward `EOF_GRACE` more; a shutdown signal ends it at
/// once. `None` when the forward was given up.
async fn in_line<F: std::future::Future>(
    fut: F,
    mut shutdown: Shutdown,
    input: &mut mpsc::Receiver<Input>,
    backlog: &mut std::collections::VecDeque<Input>,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return None,
            r = &mut fut => return Some(r),
            item = input.recv() => match item {
                None | Some(Input::Eof) => {
                    tracing::debug!("stdin closed while a message was in flight; waiting {}s for it", EOF_GRACE.as_secs());
                    backlog.push_back(Input::Eof);
                    return tokio::select! {
                        _ = shutdown.wait() => None,
                        r = tokio::time::timeout(EOF_GRACE, &mut fut) => r.ok(),
                    };
                }
                Some(other) => backlog.push_back(other),
            },
        }
    }
}

/// Run a request's forward, within `limit` if there is one. False when the limit was hit.
async fn within_limit<F: std::future::Future>(limit: Option<std::time::Duration>, fut: F) -> bool {
    match limit {
        Some(l) => tokio::time::timeout(l, fut).await.is_ok(),
        None => {
            fut.await;
            true
        }
    }
}

/// A request hit `--request-timeout`: answer the client, and tell the server to stop.
async fn timed_out<F, Fut>(conn: &Conn, msg: &Msg, limit: Option<std::time::Duration>, send: F)
where
    F: Fn(Msg) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let secs = limit.map(|l| l.as_secs()).unwrap_or_default();
    conn.fail(
        msg,
        codes::BACKEND,
        &format!("the MCP server did not answer within {secs}s (--request-timeout)"),
    );
    for id in msg.request_ids() {
        let note = serde_json::json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": id, "reason": "timed out in authful-mcp-proxy" },
        });
        let body = Bytes::from(serde_json::to_vec(&note).unwrap_or_default());
        if let Ok(m) = classify(body) {
            send(m).await;
        }
    }
}

/// Run `fut` unless shutdown is requested first (`None` then).
async fn unless_stopped<F: std::future::Future>(mut shutdown: Shutdown, fut: F) -> Option<F::Output> {
    tokio::select! {
        _ = shutdown.wait() => None,
        r = fut => Some(r),
    }
}

/// One stdin line → the messages to forward. Batches are split (JSON-RPC batching was
/// removed from MCP in 2025-06-18, and split messages are valid for every version) unless
/// `keep_batches`, when a batch goes out as one message.
fn split(line: Bytes, out: &Out, keep_batches: bool) -> Vec<Msg> {
    let first = line.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let parts: Vec<Bytes> = if first == Some(b'[') {
        match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&line) {
            Ok(items) if items.is_empty() => {
                out.error(None, codes::INVALID_REQUEST, "Invalid Request: empty batch");
                return vec![];
            }
            Ok(items) if keep_batches => {
                let batch_ids = items
                    .iter()
                    .filter_map(|r| serde_json::from_str::<Envelope>(r.get()).ok())
                    .filter(|e| e.method.is_some())
                    .filter_map(|e| e.id)
                    .collect();
                return vec![Msg {
                    body: line.clone(),
                    id: None,
                    method: None,
                    kind: Kind::Batch,
                    batch_ids,
                }];
            }
            Ok(items) => items
                .iter()
                .map(|r| Bytes::copy_from_slice(r.get().as_bytes()))
                .collect(),
            Err(e) => {
                out.error(None, codes::PARSE_ERROR, &format!("Parse error: {e}"));
                return vec![];
            }
        }
    } else {
        vec![line]
    };
    let mut msgs = Vec::with_capacity(parts.len());
    for p in parts {
        match classify(p) {
            Ok(m) => msgs.push(m),
            Err((id, code, text)) => out.error(id.as_ref(), code, &text),
        }
    }
    msgs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Result<Kind, i64> {
        classify(Bytes::from(s.to_string())).map(|m| m.kind).map_err(|e| e.1)
    }

    #[test]
    fn classification_table() {
        let rows: &[(&str, Result<Kind, i64>)] = &[
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, Ok(Kind::Request)),
            (
                r#"{"jsonrpc":"2.0","id":"a","method":"x","params":{"deep":[1,2,{"z":null}]}}"#,
                Ok(Kind::Request),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                Ok(Kind::Notification),
            ),
            (r#"{"jsonrpc":"2.0","id":7,"result":{}}"#, Ok(Kind::Response)),
            (
                r#"{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"m"}}"#,
                Ok(Kind::Response),
            ),
            (r#"{"jsonrpc":"2.0","id":7}"#, Err(codes::INVALID_REQUEST)), // neither result nor method
            (r#"[1,2"#, Err(codes::PARSE_ERROR)),                         // truncated JSON
            (r#"not json"#, Err(codes::PARSE_ERROR)),
            (r#""a string""#, Err(codes::INVALID_REQUEST)), // valid JSON, wrong shape
            (r#"{"method":5,"id":1}"#, Err(codes::INVALID_REQUEST)), // method must be a string
        ];
        for (input, want) in rows {
            assert_eq!(&kind(input), want, "{input}");
        }
    }

    #[test]
    fn waiting_tracks_every_id() {
        let mut w = Waiting::new(vec![serde_json::json!(1), serde_json::json!("a")]);
        assert!(!w.note(&serde_json::json!(2)));
        assert!(w.note(&serde_json::json!("a")));
        assert!(!w.done());
        assert_eq!(w.missing(), vec![serde_json::json!(1)]);
        assert!(w.note(&serde_json::json!(1)));
        assert!(w.done());
    }

    #[test]
    fn batches_are_split_and_bad_members_answered() {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let out = Out::spawn(ChanWriter(tx), || {});
        let batch =
            Bytes::from_static(br#"[{"jsonrpc":"2.0","id":1,"method":"a"}, 5, {"jsonrpc":"2.0","method":"n"}]"#);
        // 2025-03-26: one message, waiting for the one request in it.
        let kept = split(batch.clone(), &out, true);
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].kind, kept[0].request_ids()),
            (Kind::Batch, vec![serde_json::json!(1)])
        );
        // Later versions: split, and the bad member answered.
        let msgs = split(batch, &out, false);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].body.as_ref(), br#"{"jsonrpc":"2.0","id":1,"method":"a"}"#);
        assert_eq!(msgs[1].kind, Kind::Notification);
        let line = rx.recv_timeout(std::time::Duration::from_secs(2)).unwrap();
        assert!(line.contains("-32600"), "{line}");
    }

    struct ChanWriter(std::sync::mpsc::Sender<String>);
    impl std::io::Write for ChanWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let s = String::from_utf8_lossy(b).trim().to_string();
            if !s.is_empty() {
                let _ = self.0.send(s);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
