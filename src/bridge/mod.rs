//! The bridge: MCP JSON-RPC between local stdio and the remote server, carried raw. Each
//! line is looked at only for `id`, `method` and what the transport rules need; everything
//! else (sampling, elicitation, progress, future methods) passes through unchanged. Every
//! request from stdin gets an answer: on any failure, a JSON-RPC error with the same id.

mod conn;
pub mod era;
pub mod host;
pub mod legacy;
mod message;
pub mod modern;
pub mod sse;
pub mod stdio;
pub mod streamable;

pub use crate::http::describe;
pub use conn::{http_error_text, Conn};
pub(crate) use message::Envelope;
pub use message::{classify, codes, Kind, Msg, Waiting};

use crate::config::{Config, Protocol, Transport};
use crate::shutdown::Shutdown;
use bytes::Bytes;
use std::sync::Arc;
use stdio::{Input, Out};
use tokio::sync::mpsc;

#[derive(Clone)]
enum Backend {
    Streamable(Arc<streamable::Streamable>),
    Legacy(Arc<legacy::Legacy>),
    /// MCP 2026-07-28: chosen by the client's first message.
    Modern(Arc<modern::Modern>),
    /// An older client in front of a 2026-07-28 server.
    Translate(Arc<modern::translate::Translator>),
}

impl Backend {
    /// The backend for a client of the 2024-11-05 … 2025-11-25 era.
    fn for_initialize(config: &Config, conn: &Arc<Conn>) -> Backend {
        match (config.protocol, config.transport) {
            (Protocol::Modern, _) => Backend::translator(config, conn),
            (_, Transport::Sse) => Backend::Legacy(Arc::new(legacy::Legacy::new(conn.clone()))),
            (p, t) => Backend::Streamable(Arc::new(streamable::Streamable::new(
                conn.clone(),
                t == Transport::Auto,
                p == Protocol::Auto,
            ))),
        }
    }

    fn translator(config: &Config, conn: &Arc<Conn>) -> Backend {
        let m = Arc::new(modern::Modern::new(conn.clone(), config.cache_dir.clone()));
        Backend::Translate(Arc::new(modern::translate::Translator::new(m)))
    }

    /// Forward one client message; only Streamable HTTP can ask for the fallback.
    async fn forward(&self, msg: &Msg) -> streamable::Forwarded {
        match self {
            Backend::Streamable(s) => s.forward(msg).await,
            Backend::Legacy(l) => {
                l.forward(msg).await;
                streamable::Forwarded::Done
            }
            Backend::Modern(m) => {
                m.forward(msg).await;
                streamable::Forwarded::Done
            }
            Backend::Translate(t) => {
                t.forward(msg).await;
                streamable::Forwarded::Done
            }
        }
    }

    async fn close(&self) {
        match self {
            Backend::Streamable(s) => s.close().await,
            Backend::Legacy(l) => l.close().await,
            Backend::Modern(_) => {} // no session to end
            Backend::Translate(t) => t.close(),
        }
    }
}

/// The requests in flight, so that a `notifications/cancelled` can close one's HTTP
/// response stream (aborting its task drops the response).
#[derive(Default)]
struct InFlight(Vec<(serde_json::Value, tokio::task::AbortHandle)>);

impl InFlight {
    fn add(&mut self, id: &serde_json::Value, handle: tokio::task::AbortHandle) {
        self.0.retain(|(_, h)| !h.is_finished());
        self.0.push((id.clone(), handle));
    }

    /// Abort the request a `notifications/cancelled` names.
    fn cancel(&mut self, note: &Msg) {
        let Ok(n) = serde_json::from_slice::<serde_json::Value>(&note.body) else {
            return;
        };
        let Some(request_id) = n.pointer("/params/requestId") else {
            return;
        };
        self.0.retain(|(id, h)| {
            if id == request_id {
                tracing::debug!("cancelled id {id}: closing its response stream");
                h.abort();
                false
            } else {
                !h.is_finished()
            }
        });
    }
}

/// Run the bridge until stdin ends or shutdown is requested. Returns after the session is
/// closed and stdout is flushed.
pub async fn run(config: &Config, conn: Arc<Conn>, mut input: mpsc::Receiver<Input>) {
    let mut shutdown = conn.shutdown.clone();
    let out = conn.out.clone();
    let max = config.max_message_bytes;
    let mut backend = Backend::for_initialize(config, &conn);
    // The era is decided by the first message (and a modern client's fall-back to
    // initialize); after that nothing on the path of a message looks at it.
    let mut decided = config.protocol == Protocol::Legacy;
    let mut modern: Option<Arc<modern::Modern>> = None;
    let mut inflight = InFlight::default();
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
            if !decided {
                decided = true;
                if era::opens_modern(&msg) {
                    tracing::debug!("the client speaks MCP 2026-07-28");
                    let m = Arc::new(modern::Modern::new(conn.clone(), config.cache_dir.clone()));
                    backend = Backend::Modern(m.clone());
                    modern = Some(m);
                }
            }
            let is_init = msg.method.as_deref() == Some("initialize");
            if let Some(m) = &modern {
                // A dual-era client falls back to initialize after its probe, and probes
                // again if the server then names 2026-07-28 versions.
                if is_init && matches!(backend, Backend::Modern(_)) {
                    tracing::debug!("the client fell back to initialize");
                    backend = Backend::for_initialize(config, &conn);
                } else if msg.method.as_deref() == Some(era::DISCOVER) && !matches!(backend, Backend::Modern(_)) {
                    backend = Backend::Modern(m.clone());
                }
            }
            if msg.is_request() && !is_init {
                out.expect_progress(&msg);
                // Requests run side by side, each within `--request-timeout` if set (a
                // subscription stream is meant to stay open).
                let b = backend.clone();
                let limit = config
                    .request_timeout
                    .filter(|_| msg.method.as_deref() != Some("subscriptions/listen"));
                let conn = conn.clone();
                let id = msg.id.clone();
                let handle = tasks.spawn(async move {
                    if !within_limit(limit, b.forward(&msg)).await {
                        timed_out(&conn, &msg, limit, move |note| {
                            let b = b.clone();
                            async move {
                                b.forward(&note).await;
                            }
                        })
                        .await;
                    }
                });
                if let Some(id) = &id {
                    inflight.add(id, handle);
                }
                continue;
            }
            // In line: initialize (nothing else may go out before the session exists, and it
            // may wait for a login), and notifications and responses (they keep their order).
            // These give way to a shutdown signal, and to stdin ending (after a grace period),
            // while the lines that arrive meanwhile are kept.
            let Some(outcome) = in_line(backend.forward(&msg), shutdown.clone(), &mut input, &mut backlog).await else {
                break 'read;
            };
            if msg.kind == Kind::Notification && msg.method.as_deref() == Some("notifications/cancelled") {
                // After forwarding it (the old era's way), close the request's stream: a
                // server without a session notices only that; in 2026-07-28 that is the
                // cancellation itself.
                inflight.cancel(&msg);
            }
            if outcome == streamable::Forwarded::Fallback {
                tracing::info!(
                    "the server does not speak Streamable HTTP; using the HTTP+SSE transport (MCP 2024-11-05)"
                );
                backend = Backend::Legacy(Arc::new(legacy::Legacy::new(conn.clone())));
                if in_line(backend.forward(&msg), shutdown.clone(), &mut input, &mut backlog)
                    .await
                    .is_none()
                {
                    break 'read;
                }
            } else if outcome == streamable::Forwarded::Modern {
                tracing::info!("the server speaks only MCP 2026-07-28: translating");
                backend = Backend::translator(config, &conn);
                if in_line(backend.forward(&msg), shutdown.clone(), &mut input, &mut backlog)
                    .await
                    .is_none()
                {
                    break 'read;
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
                    progress_token: None,
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

    #[tokio::test]
    async fn a_cancel_aborts_the_named_request_only() {
        let mut set = tokio::task::JoinSet::new();
        let mut inflight = InFlight::default();
        inflight.add(&serde_json::json!(1), set.spawn(std::future::pending::<()>()));
        inflight.add(&serde_json::json!("1"), set.spawn(std::future::pending::<()>()));
        let note = classify(Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
        ))
        .unwrap();
        inflight.cancel(&note);
        let ended = set.join_next().await.unwrap();
        assert!(ended.unwrap_err().is_cancelled());
        assert_eq!(inflight.0.len(), 1, "the string id \"1\" is another request");
        assert_eq!(inflight.0[0].0, serde_json::json!("1"));
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
