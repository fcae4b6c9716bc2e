//! Streamable HTTP, MCP 2025-03-26 / 2025-06-18 / 2025-11-25: one POST per client message;
//! JSON, SSE and 202 replies; `Mcp-Session-Id` and `MCP-Protocol-Version` on every request
//! after initialize; the GET stream for server-initiated messages; resumption with
//! `Last-Event-ID`; a transparent new session when the server forgets ours (404); DELETE on
//! shutdown.

use super::sse::{self, Cursor};
use super::{codes, describe, Conn, Envelope, Msg, Waiting};
use crate::secret::Secret;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ACCEPT_BOTH: &str = "application/json, text/event-stream";
const SESSION: &str = "mcp-session-id";
const VERSION: &str = "mcp-protocol-version";
const LAST_EVENT_ID: &str = "last-event-id";
/// Attempts to resume one dropped response stream before giving up on that request.
const RESUME_ATTEMPTS: usize = 5;

#[derive(Debug, PartialEq, Eq)]
pub enum Forwarded {
    Done,
    /// The first initialize got 400/404/405: the caller should try HTTP+SSE.
    Fallback,
    /// The first initialize got a 2026-07-28 error: the caller should translate.
    Modern,
}

#[derive(Default)]
struct State {
    session: Option<String>,
    version: Option<String>,
    /// Bumped whenever a new session starts; GET loops and re-initializations key on it.
    generation: u64,
    /// The client's initialize request, replayed when the server forgets the session.
    init: Option<Value>,
    initialized_once: bool,
    get_for: Option<u64>,
    get_task: Option<tokio::task::AbortHandle>,
}

#[derive(Clone)]
struct Snapshot {
    generation: u64,
    session: Option<String>,
    version: Option<String>,
}

pub struct Streamable {
    conn: Arc<Conn>,
    fallback: bool,
    /// Whether a 2026-07-28 answer to the first initialize asks for the translator.
    translate: bool,
    state: Mutex<State>,
    reinit: tokio::sync::Mutex<()>,
}

impl Streamable {
    pub fn new(conn: Arc<Conn>, fallback: bool, translate: bool) -> Self {
        Streamable {
            conn,
            fallback,
            translate,
            state: Mutex::new(State::default()),
            reinit: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let st = self.state.lock().unwrap();
        Snapshot {
            generation: st.generation,
            session: st.session.clone(),
            version: st.version.clone(),
        }
    }

    fn build(
        &self,
        method: Method,
        snap: Option<&Snapshot>,
        token: &Option<Secret<String>>,
    ) -> reqwest::RequestBuilder {
        let mut rb = self.conn.request(method, self.conn.url.clone(), token);
        if let Some(s) = snap {
            if let Some(id) = s.session.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                let mut id = id;
                id.set_sensitive(true);
                rb = rb.header(SESSION, id);
            }
            if let Some(v) = &s.version {
                rb = rb.header(VERSION, v.as_str());
            }
        }
        rb
    }

    async fn post(
        &self,
        body: Bytes,
        snap: Option<&Snapshot>,
        token: &Option<Secret<String>>,
    ) -> reqwest::Result<Response> {
        self.build(Method::POST, snap, token)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, ACCEPT_BOTH)
            .body(body)
            .send()
            .await
    }

    async fn get(
        &self,
        snap: &Snapshot,
        token: &Option<Secret<String>>,
        last_event_id: Option<&str>,
    ) -> reqwest::Result<Response> {
        let mut rb = self
            .build(Method::GET, Some(snap), token)
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            rb = rb.header(LAST_EVENT_ID, id);
        }
        rb.send().await
    }

    /// Forward one client message and deliver what comes back.
    pub async fn forward(self: &Arc<Self>, msg: &Msg) -> Forwarded {
        let is_init = msg.method.as_deref() == Some("initialize");
        if is_init {
            let mut st = self.state.lock().unwrap();
            st.session = None;
            st.version = None;
            st.generation += 1;
            st.init = serde_json::from_slice(&msg.body).ok();
        }
        let mut auth_retry = true;
        let mut reinit_retry = true;
        let mut step_up_retry = true;
        loop {
            let snap = self.snapshot();
            let token = match self.conn.bearer().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!("{}", e.with_hint());
                    self.conn.fail(msg, codes::AUTH, &e.with_hint());
                    return Forwarded::Done;
                }
            };
            let resp = match self.post(msg.body.clone(), (!is_init).then_some(&snap), &token).await {
                Ok(r) => r,
                Err(e) => {
                    let text = format!("cannot reach the MCP server at {}: {}", self.conn.url, describe(&e));
                    tracing::warn!("{text}");
                    self.conn.fail(msg, codes::BACKEND, &text);
                    return Forwarded::Done;
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && auth_retry && self.conn.refused(&token, &resp).await {
                auth_retry = false;
                continue;
            }
            if status == StatusCode::FORBIDDEN && step_up_retry && self.conn.refused(&token, &resp).await {
                step_up_retry = false;
                continue;
            }
            if is_init
                && (self.fallback || self.translate)
                && !self.state.lock().unwrap().initialized_once
                && matches!(status.as_u16(), 400 | 404 | 405)
            {
                // A 2026-07-28 server's own error (say -32022 with the versions it speaks)
                // is no reason to try HTTP+SSE: translate, or give the client that error.
                let ctype = sse::content_type(&resp);
                let body = resp.bytes().await.unwrap_or_default();
                let modern = super::era::is_modern_error(status.as_u16(), &body);
                if modern && self.translate {
                    return Forwarded::Modern;
                }
                if !modern && self.fallback {
                    return Forwarded::Fallback;
                }
                if modern {
                    tracing::warn!(
                        "the MCP server speaks only MCP 2026-07-28 and refused `initialize` (with --protocol legacy, nothing is translated)"
                    );
                }
                self.http_error_body(status, &ctype, body, msg);
                return Forwarded::Done;
            }
            if status == StatusCode::NOT_FOUND && !is_init && snap.session.is_some() && reinit_retry {
                reinit_retry = false;
                match self.reinitialize(snap.generation).await {
                    Ok(()) => continue,
                    Err(e) => {
                        self.conn.fail(
                            msg,
                            codes::BACKEND,
                            &format!("the MCP server ended the session and a new one could not be started: {e}"),
                        );
                        return Forwarded::Done;
                    }
                }
            }
            let ok = status.is_success();
            self.handle(resp, msg, is_init).await;
            if ok && is_init {
                self.state.lock().unwrap().initialized_once = true;
            }
            if ok && msg.method.as_deref() == Some("notifications/initialized") {
                // Wait (briefly) until the GET stream is open, so that server messages sent
                // on it for the client's first requests are not lost.
                if let Some(opened) = self.start_get_stream() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), opened).await;
                }
            }
            return Forwarded::Done;
        }
    }

    async fn handle(&self, resp: Response, msg: &Msg, is_init: bool) {
        let status = resp.status();
        if is_init {
            let sid = session_header(&resp);
            self.state.lock().unwrap().session = sid;
        }
        if !status.is_success() {
            return self.http_error(resp, msg).await;
        }
        let mut waiting = Waiting::new(msg.request_ids());
        if sse::is_event_stream(&resp) {
            let mut cursor = Cursor::default();
            self.pump(resp, &mut waiting, is_init, &mut cursor).await;
            if !waiting.done() && cursor.last_event_id.is_some() {
                self.resume(msg, &mut waiting, is_init, cursor).await;
            }
            if !waiting.done() {
                self.conn.fail_ids(
                    msg,
                    &waiting.missing(),
                    codes::BACKEND,
                    "the MCP server closed the response stream before answering",
                );
            }
            return;
        }
        let ctype = sse::content_type(&resp);
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return self.conn.fail(
                    msg,
                    codes::BACKEND,
                    &format!("reading the MCP server's reply failed: {}", describe(&e)),
                )
            }
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            if msg.is_request() {
                self.conn.fail(
                    msg,
                    codes::BACKEND,
                    &format!("the MCP server sent no answer (HTTP {})", status.as_u16()),
                );
            }
            return;
        }
        if !ctype.starts_with("application/json") {
            let text = format!(
                "the MCP server answered with `{}` instead of JSON-RPC",
                if ctype.is_empty() { "no content type" } else { &ctype }
            );
            return self.conn.fail(msg, codes::BACKEND, &text);
        }
        if std::str::from_utf8(&body).is_ok() {
            self.deliver(body, &mut waiting, is_init);
        }
        if !waiting.done() {
            self.conn.fail_ids(
                msg,
                &waiting.missing(),
                codes::BACKEND,
                "the MCP server's reply is not a JSON-RPC answer to this request",
            );
        }
    }

    async fn http_error(&self, resp: Response, msg: &Msg) {
        let status = resp.status();
        let ctype = sse::content_type(&resp);
        let body = resp.bytes().await.unwrap_or_default();
        self.http_error_body(status, &ctype, body, msg)
    }

    fn http_error_body(&self, status: StatusCode, ctype: &str, body: Bytes, msg: &Msg) {
        if msg.kind == super::Kind::Request {
            // A JSON-RPC error from the server is passed on under the request's id.
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                if let Some(err) = v.get("error").filter(|e| e.get("message").is_some()) {
                    return self.conn.out.answer(msg.id.as_ref(), err.clone());
                }
            }
        }
        let text = super::conn::http_error_text(status.as_u16(), ctype, &body);
        self.conn.fail(msg, codes::BACKEND, &text);
    }

    /// Write a server message (or batch) to the client, noting answers in `waiting`.
    /// `text` must be valid UTF-8; it is written without a copy.
    fn deliver(&self, text: Bytes, waiting: &mut Waiting, is_init: bool) {
        if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&text) {
                Ok(items) => {
                    for m in items {
                        self.deliver(text.slice_ref(m.get().as_bytes()), waiting, is_init);
                    }
                }
                Err(_) => tracing::warn!("dropped a message from the MCP server that is not valid JSON"),
            };
        }
        let env: Envelope = match serde_json::from_slice(&text) {
            Ok(e) => e,
            Err(_) => {
                tracing::warn!("dropped a message from the MCP server that is not valid JSON-RPC");
                return;
            }
        };
        let ours = env.is_response() && env.id.as_ref().is_some_and(|id| waiting.note(id));
        if ours && is_init {
            if let Ok(v) = serde_json::from_slice::<Value>(&text) {
                if let Some(ver) = v.pointer("/result/protocolVersion").and_then(Value::as_str) {
                    tracing::debug!("negotiated protocol version {ver}");
                    self.state.lock().unwrap().version = Some(ver.to_string());
                }
            }
        }
        tracing::debug!(
            "← {}",
            match (&env.method, &env.id) {
                (Some(m), Some(id)) => format!("{m} (id {id})"),
                (Some(m), None) => m.clone(),
                (None, Some(id)) => format!("response (id {id})"),
                _ => "message".into(),
            }
        );
        self.conn.out.server_message(text, &env);
    }

    /// Read an SSE response to its end, delivering every message and noting answers.
    async fn pump(&self, resp: Response, waiting: &mut Waiting, is_init: bool, cursor: &mut Cursor) {
        let mut events = sse::events(resp);
        let mut shutdown = self.conn.shutdown.clone();
        loop {
            let next = tokio::select! {
                _ = shutdown.wait() => break,
                n = events.next() => n,
            };
            match next {
                Some(Ok(ev)) => {
                    if let Some(data) = cursor.take(ev) {
                        self.deliver(Bytes::from(data), waiting, is_init);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!("event stream broke: {e}");
                    break;
                }
                None => break,
            }
        }
    }

    /// Resume a response stream that ended before its answer: GET with `Last-Event-ID`.
    async fn resume(&self, msg: &Msg, waiting: &mut Waiting, is_init: bool, mut cursor: Cursor) {
        let mut shutdown = self.conn.shutdown.clone();
        for attempt in 1..=RESUME_ATTEMPTS {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(cursor.delay(250 * attempt as u64)) => {}
            }
            let snap = self.snapshot();
            let token = match self.conn.bearer().await {
                Ok(t) => t,
                Err(_) => return,
            };
            tracing::debug!(
                "resuming the stream for {:?} after event {:?}",
                msg.id,
                cursor.last_event_id
            );
            match self.get(&snap, &token, cursor.last_event_id.as_deref()).await {
                Ok(r) if r.status().is_success() && sse::is_event_stream(&r) => {
                    self.pump(r, waiting, is_init, &mut cursor).await;
                    if waiting.done() {
                        return;
                    }
                }
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    self.conn.refused(&token, &r).await;
                }
                Ok(r) => {
                    tracing::debug!("resuming got HTTP {}", r.status().as_u16());
                    if matches!(r.status().as_u16(), 404 | 405) {
                        return;
                    }
                }
                Err(e) => tracing::debug!("resuming failed: {}", describe(&e)),
            }
        }
    }

    /// Start the GET stream for the current session; the receiver fires once the server
    /// answered the first GET (stream open, 405, or an error).
    fn start_get_stream(self: &Arc<Self>) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let mut st = self.state.lock().unwrap();
        if st.get_for == Some(st.generation) {
            return None;
        }
        if let Some(old) = st.get_task.take() {
            old.abort();
        }
        st.get_for = Some(st.generation);
        let me = self.clone();
        let generation = st.generation;
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
        st.get_task = Some(tokio::spawn(async move { me.get_loop(generation, opened_tx).await }).abort_handle());
        Some(opened_rx)
    }

    /// The standalone GET stream: server requests and notifications outside any request.
    async fn get_loop(self: Arc<Self>, generation: u64, opened: tokio::sync::oneshot::Sender<()>) {
        let mut opened = Some(opened);
        let mut cursor = Cursor::default();
        let mut failures: u32 = 0;
        let mut shutdown = self.conn.shutdown.clone();
        loop {
            let snap = self.snapshot();
            if snap.generation != generation || shutdown.is_triggered() {
                return;
            }
            let token = match self.conn.bearer().await {
                Ok(t) => t,
                // A login that failed is not retried from here (that would reopen the browser).
                Err(e) if !e.is_transient() => return,
                Err(e) => {
                    // No token right now (identity provider down?): try again later rather
                    // than losing server notifications for the rest of the session.
                    tracing::debug!("GET stream: no token ({e}); retrying");
                    if let Some(tx) = opened.take() {
                        let _ = tx.send(());
                    }
                    failures += 1;
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(Duration::from_millis((500u64 << failures.min(6)).min(30_000))) => {}
                    }
                    continue;
                }
            };
            let resp = self.get(&snap, &token, cursor.last_event_id.as_deref()).await;
            if let Some(tx) = opened.take() {
                let _ = tx.send(());
            }
            let backoff = Duration::from_millis((500u64 << failures.min(6)).min(30_000));
            match resp {
                Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => {
                    tracing::debug!("the MCP server offers no GET stream (405)");
                    return;
                }
                Ok(r) if r.status() == StatusCode::NOT_FOUND && snap.session.is_some() => {
                    // Session gone (server restarted): start a new one now, so server
                    // notifications keep flowing; the new session gets its own GET loop.
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.reinitialize(generation).await {
                            tracing::warn!("the MCP server ended the session; a new one could not be started yet: {e}");
                        }
                    });
                    return;
                }
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    self.conn.refused(&token, &r).await;
                    failures += 1;
                }
                Ok(r) if r.status().is_success() && sse::is_event_stream(&r) => {
                    failures = 0;
                    self.pump(r, &mut Waiting::default(), false, &mut cursor).await;
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(cursor.delay(1000)) => {}
                    }
                    continue;
                }
                Ok(r) => {
                    tracing::debug!("GET stream: HTTP {}", r.status().as_u16());
                    failures += 1;
                    if failures > 10 {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!("GET stream: {}", describe(&e));
                    failures += 1;
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// The server forgot our session (404): replay the client's initialize under a private
    /// id, then `notifications/initialized`, so the client never notices.
    async fn reinitialize(self: &Arc<Self>, seen_generation: u64) -> Result<(), String> {
        let _one_at_a_time = self.reinit.lock().await;
        let init = {
            let st = self.state.lock().unwrap();
            if st.generation != seen_generation {
                return Ok(()); // someone else already started a new session
            }
            st.init.clone().ok_or("no initialize request to replay")?
        };
        let rid = Value::String(format!("authful-mcp-proxy-reinit-{}", seen_generation + 1));
        let mut req = init;
        req["id"] = rid.clone();
        let body = Bytes::from(serde_json::to_vec(&req).map_err(|e| e.to_string())?);
        let mut auth_retry = true;
        let resp = loop {
            let token = self.conn.bearer().await.map_err(|e| e.to_string())?;
            let r = self.post(body.clone(), None, &token).await.map_err(|e| describe(&e))?;
            if r.status() == StatusCode::UNAUTHORIZED && auth_retry && self.conn.refused(&token, &r).await {
                auth_retry = false;
                continue;
            }
            break r;
        };
        if !resp.status().is_success() {
            return Err(format!("initialize answered HTTP {}", resp.status().as_u16()));
        }
        let session = session_header(&resp);
        let reply = collect_reply(resp, &rid).await?;
        if let Some(err) = reply.get("error") {
            return Err(format!("initialize failed: {err}"));
        }
        let version = reply
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        let snap = {
            let mut st = self.state.lock().unwrap();
            st.session = session;
            st.version = version;
            st.generation += 1;
            Snapshot {
                generation: st.generation,
                session: st.session.clone(),
                version: st.version.clone(),
            }
        };
        let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let token = self.conn.bearer().await.map_err(|e| e.to_string())?;
        match self.post(note, Some(&snap), &token).await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::debug!("notifications/initialized answered HTTP {}", r.status().as_u16()),
            Err(e) => tracing::debug!("notifications/initialized failed: {}", describe(&e)),
        }
        tracing::info!("the MCP server ended our session; started a new one transparently");
        if let Some(opened) = self.start_get_stream() {
            let _ = tokio::time::timeout(Duration::from_secs(2), opened).await;
        }
        Ok(())
    }

    /// Stop the GET stream and DELETE the session (short timeout; 404/405 are fine).
    /// The protocol version the server chose in its InitializeResult.
    pub fn protocol_version(&self) -> Option<String> {
        self.state.lock().unwrap().version.clone()
    }

    pub async fn close(&self) {
        let snap = {
            let mut st = self.state.lock().unwrap();
            if let Some(t) = st.get_task.take() {
                t.abort();
            }
            st.generation += 1;
            Snapshot {
                generation: st.generation,
                session: st.session.take(),
                version: st.version.clone(),
            }
        };
        if snap.session.is_none() {
            return;
        }
        let token = self.conn.auth.current();
        let req = self
            .build(Method::DELETE, Some(&snap), &token)
            .timeout(Duration::from_secs(2));
        match req.send().await {
            Ok(r) => tracing::debug!("session closed (HTTP {})", r.status().as_u16()),
            Err(e) => tracing::debug!("could not close the session: {}", describe(&e)),
        }
    }
}

fn session_header(resp: &Response) -> Option<String> {
    resp.headers()
        .get(SESSION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .map(str::to_string)
}

/// The response to `id` from a JSON or SSE reply (used for the proxy's own requests).
async fn collect_reply(resp: Response, id: &Value) -> Result<Value, String> {
    let find = |v: Value| -> Option<Value> {
        match v {
            Value::Array(items) => items.into_iter().find(|m| m.get("id") == Some(id)),
            m if m.get("id") == Some(id) => Some(m),
            _ => None,
        }
    };
    if sse::is_event_stream(&resp) {
        let mut events = sse::events(resp);
        let mut cursor = Cursor::default();
        while let Some(Ok(ev)) = events.next().await {
            if let Some(data) = cursor.take(ev) {
                if let Some(m) = serde_json::from_str(&data).ok().and_then(find) {
                    return Ok(m);
                }
            }
        }
        Err("the stream ended before the answer".into())
    } else {
        let body = resp.bytes().await.map_err(|e| describe(&e))?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        find(v).ok_or_else(|| "the reply did not answer the request".into())
    }
}
