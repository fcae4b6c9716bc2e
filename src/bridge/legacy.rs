//! The deprecated HTTP+SSE transport (MCP 2024-11-05), used as a fallback: GET the URL for
//! an event stream whose first `endpoint` event names where to POST; replies arrive as
//! `message` events. The endpoint must be on the server's own origin, so the token is never
//! sent elsewhere. When the stream ends, every request still waiting gets an error, and the
//! next message opens a new stream (replaying initialize).

use super::sse::{self, Cursor};
use super::{codes, describe, Conn, Envelope, Msg};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

#[derive(Default)]
struct State {
    endpoint: Option<Url>,
    /// Ids (as JSON text) of client requests still waiting for an answer.
    pending: HashSet<String>,
    /// Ids of the proxy's own requests, whose answers are not for the client.
    private: HashSet<String>,
    init: Option<Value>,
    reader: Option<tokio::task::AbortHandle>,
    epoch: u64,
}

pub struct Legacy {
    conn: Arc<Conn>,
    state: Arc<Mutex<State>>,
    connect: tokio::sync::Mutex<()>,
}

impl Legacy {
    pub fn new(conn: Arc<Conn>) -> Self {
        Legacy {
            conn,
            state: Arc::new(Mutex::new(State::default())),
            connect: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn forward(&self, msg: &Msg) {
        let is_init = msg.method.as_deref() == Some("initialize");
        if is_init {
            self.state.lock().unwrap().init = serde_json::from_slice(&msg.body).ok();
        }
        let endpoint = match self.ensure_connected(!is_init).await {
            Ok(e) => e,
            Err((code, text)) => return self.conn.fail(msg, code, &text),
        };
        let key = msg.id.as_ref().map(|id| id.to_string());
        if msg.is_request() {
            self.state
                .lock()
                .unwrap()
                .pending
                .insert(key.clone().unwrap_or_default());
        }
        if let Err(text) = self.post(&endpoint, msg.body.clone()).await {
            if let Some(k) = &key {
                self.state.lock().unwrap().pending.remove(k);
            }
            self.conn.fail(msg, codes::BACKEND, &text);
        }
    }

    async fn post(&self, endpoint: &Url, body: Bytes) -> Result<(), String> {
        let mut auth_retry = true;
        loop {
            let token = self.conn.bearer().await.map_err(|e| e.with_hint())?;
            let r = self
                .conn
                .request(Method::POST, endpoint.clone(), &token)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| format!("cannot reach the MCP server at {}: {}", self.conn.url, describe(&e)))?;
            if r.status() == StatusCode::UNAUTHORIZED && auth_retry && self.conn.refused(&token, &r).await {
                auth_retry = false;
                continue;
            }
            if !r.status().is_success() {
                return Err(format!("the MCP server answered HTTP {}", r.status().as_u16()));
            }
            return Ok(());
        }
    }

    /// The POST endpoint, opening the event stream first if needed. `replay`: a reconnect
    /// replays the recorded initialize so the server knows this client again.
    async fn ensure_connected(&self, replay: bool) -> Result<Url, (i64, String)> {
        let _one = self.connect.lock().await;
        if let Some(e) = self.state.lock().unwrap().endpoint.clone() {
            return Ok(e);
        }
        let mut auth_retry = true;
        let resp = loop {
            let token = self.conn.bearer().await.map_err(|e| (codes::AUTH, e.with_hint()))?;
            let r = self
                .conn
                .request(Method::GET, self.conn.url.clone(), &token)
                .header(ACCEPT, "text/event-stream")
                .send()
                .await
                .map_err(|e| {
                    (
                        codes::BACKEND,
                        format!("cannot reach the MCP server at {}: {}", self.conn.url, describe(&e)),
                    )
                })?;
            if r.status() == StatusCode::UNAUTHORIZED && auth_retry && self.conn.refused(&token, &r).await {
                auth_retry = false;
                continue;
            }
            break r;
        };
        if !resp.status().is_success() || !sse::is_event_stream(&resp) {
            return Err((
                codes::BACKEND,
                format!(
                    "the MCP server at {} speaks neither Streamable HTTP nor HTTP+SSE (GET answered HTTP {})",
                    self.conn.url,
                    resp.status().as_u16()
                ),
            ));
        }
        let mut events = sse::events(resp);
        let mut cursor = Cursor::default();
        let endpoint = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(Ok(ev)) = events.next().await {
                if ev.event.as_deref() == Some("endpoint") {
                    return ev.data;
                }
                let _ = cursor.take(ev);
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or((
            codes::BACKEND,
            "the MCP server's event stream sent no `endpoint` event".to_string(),
        ))?;
        let endpoint = self
            .conn
            .url
            .join(endpoint.trim())
            .map_err(|e| (codes::BACKEND, format!("the MCP server sent a bad endpoint: {e}")))?;
        if endpoint.origin() != self.conn.url.origin() {
            return Err((
                codes::BACKEND,
                format!(
                    "refusing the MCP server's endpoint on another origin ({}): the access token is only sent to {}",
                    endpoint.origin().ascii_serialization(),
                    self.conn.url.origin().ascii_serialization()
                ),
            ));
        }
        let epoch = {
            let mut st = self.state.lock().unwrap();
            st.endpoint = Some(endpoint.clone());
            st.epoch += 1;
            st.epoch
        };
        let reader = tokio::spawn(read_loop(self.conn.clone(), self.state.clone(), events, epoch));
        self.state.lock().unwrap().reader = Some(reader.abort_handle());
        tracing::debug!("HTTP+SSE stream open");

        let init = self.state.lock().unwrap().init.clone();
        if let (true, Some(mut init)) = (replay, init) {
            let rid = format!("authful-mcp-proxy-reinit-{epoch}");
            init["id"] = Value::String(rid.clone());
            self.state
                .lock()
                .unwrap()
                .private
                .insert(Value::String(rid).to_string());
            let body = Bytes::from(serde_json::to_vec(&init).unwrap_or_default());
            self.post(&endpoint, body).await.map_err(|e| (codes::BACKEND, e))?;
            let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
            self.post(&endpoint, note).await.map_err(|e| (codes::BACKEND, e))?;
            tracing::info!("reconnected to the MCP server (HTTP+SSE) and started a new session");
        }
        Ok(endpoint)
    }

    pub async fn close(&self) {
        let mut st = self.state.lock().unwrap();
        if let Some(r) = st.reader.take() {
            r.abort();
        }
        st.endpoint = None;
    }
}

async fn read_loop(
    conn: Arc<Conn>,
    state: Arc<Mutex<State>>,
    mut events: impl futures_util::Stream<Item = Result<sse_stream::Sse, String>> + Unpin,
    epoch: u64,
) {
    let mut cursor = Cursor::default();
    let mut shutdown = conn.shutdown.clone();
    loop {
        let next = tokio::select! {
            _ = shutdown.wait() => return,
            n = events.next() => n,
        };
        let Some(Ok(ev)) = next else { break };
        let Some(data) = cursor.take(ev) else { continue };
        let Ok(env) = serde_json::from_str::<Envelope>(&data) else {
            tracing::warn!("dropped a message from the MCP server that is not valid JSON-RPC");
            continue;
        };
        if env.is_response() {
            let key = env.id.as_ref().map(|i| i.to_string()).unwrap_or_default();
            let mut st = state.lock().unwrap();
            if st.private.remove(&key) {
                continue;
            }
            st.pending.remove(&key);
        }
        conn.out.server_message(bytes::Bytes::from(data), &env);
    }
    // The stream ended: everyone still waiting gets an answer, and the next message reconnects.
    let pending: Vec<String> = {
        let mut st = state.lock().unwrap();
        if st.epoch != epoch {
            return;
        }
        st.endpoint = None;
        st.pending.drain().collect()
    };
    tracing::warn!("the MCP server's event stream ended");
    for key in pending {
        let id: Value = serde_json::from_str(&key).unwrap_or(Value::Null);
        conn.out.error(
            Some(&id),
            codes::BACKEND,
            "the MCP server's event stream ended before it answered",
        );
    }
}
