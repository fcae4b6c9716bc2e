//! MCP 2026-07-28 over Streamable HTTP, for a client that speaks it: one POST per request
//! with the headers derived from its body (`headers`); no session, no GET stream, no
//! DELETE, no resumption. JSON and SSE replies are relayed as they come (a
//! `subscriptions/listen` stream for as long as it lasts); `input_required` results pass
//! byte-exact. The proxy is the HTTP client, so the spec's client duties are done here:
//! `x-mcp-header` arguments are mirrored into `Mcp-Param-*`, tools with invalid annotations
//! are dropped from `tools/list`, and a `HeaderMismatch` gets one re-list and retry. The
//! server's own JSON-RPC errors reach the client for the request's id, unchanged; the
//! proxy's own use codes outside −32768…−32000. The `server/discover` probe is answered
//! fast, from what the backend is known to speak (`era::Memory`), never after a login.
//! Cancelling (closing the POST) is done by the dispatch loop, which aborts the request.

pub mod headers;
pub mod translate;

use super::era::{self, Memory, Speaks};
use super::sse::{self, Cursor};
use super::{codes, describe, Conn, Envelope, Kind, Msg};
use crate::secret::Secret;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// The longest a `server/discover` probe may wait for the server: a dual-era client takes a
/// slow answer as "legacy" anyway, and some run the probe in a copy of us they soon kill.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pages of `tools/list` the proxy reads on its own to learn tool annotations.
const MAX_LIST_PAGES: usize = 50;
const LISTEN: &str = "subscriptions/listen";
const META_VERSION: &str = "/_meta/io.modelcontextprotocol~1protocolVersion";

/// The `x-mcp-header` annotations of the tools seen so far; `None` for an invalid tool.
#[derive(Default)]
struct Tools {
    by_name: HashMap<String, Option<Vec<headers::Decl>>>,
    /// Bumped on every list the proxy makes itself, so concurrent calls list once.
    generation: u64,
}

pub struct Modern {
    conn: Arc<Conn>,
    memory: Memory,
    tools: Mutex<Tools>,
    listing: tokio::sync::Mutex<()>,
    seq: AtomicU64,
    /// The protocol version of the latest request (for notification POSTs).
    version: Mutex<Option<String>>,
}

/// Where the answer to a request goes: to the client as it is, or kept for the caller
/// (the translator rewrites it). Notifications on the way always go to the client.
pub(crate) enum Reply {
    Write,
    Keep(Option<Bytes>),
}

impl Reply {
    /// The server's answer, parsed as `env`: to the client within `--max-output-bytes` and
    /// after the progress about it (see `bridge::host`), or kept.
    fn answer(&mut self, out: &super::stdio::Out, text: Bytes, env: &Envelope) {
        match self {
            Reply::Write => out.server_message(text, env),
            Reply::Keep(slot) => *slot = Some(text),
        }
    }

    fn answer_value(&mut self, out: &super::stdio::Out, v: &Value) {
        match self {
            Reply::Write => out.value(v),
            Reply::Keep(slot) => *slot = serde_json::to_vec(v).ok().map(Bytes::from),
        }
    }
}

/// What a request's body says that the wire rules need.
pub(crate) struct Head<'a> {
    method: &'a str,
    version: Option<&'a str>,
    params: Option<&'a Value>,
}

impl Modern {
    pub fn new(conn: Arc<Conn>, cache_dir: Option<std::path::PathBuf>) -> Self {
        let memory = Memory::new(cache_dir, &conn.url);
        Modern {
            conn,
            memory,
            tools: Mutex::new(Tools::default()),
            listing: tokio::sync::Mutex::new(()),
            seq: AtomicU64::new(0),
            version: Mutex::new(None),
        }
    }

    /// Forward one client message and deliver what comes back.
    pub async fn forward(&self, msg: &Msg) {
        match msg.kind {
            Kind::Request => self.request(msg).await,
            Kind::Notification => self.notify(msg).await,
            Kind::Response | Kind::Batch => tracing::warn!(
                "dropped {}: a 2026-07-28 client sends no responses or batches",
                msg.label()
            ),
        }
    }

    async fn request(&self, msg: &Msg) {
        let v: Value = match serde_json::from_slice(&msg.body) {
            Ok(v) => v,
            Err(e) => return self.fail(msg, codes::PARSE_ERROR, &format!("Parse error: {e}"), None),
        };
        let params = v.get("params");
        let head = Head {
            method: msg.method.as_deref().unwrap_or(""),
            version: params.and_then(|p| p.pointer(META_VERSION)).and_then(Value::as_str),
            params,
        };
        if let Some(ver) = head.version {
            let mut last = self.version.lock().unwrap();
            if last.as_deref() != Some(ver) {
                *last = Some(ver.to_string());
            }
        }
        if head.method == era::DISCOVER {
            return self.discover(msg, &head).await;
        }
        self.exchange(msg, &head, &mut Reply::Write).await
    }

    /// The headers of one attempt: the standard ones, and for `tools/call` the mirrored
    /// arguments of the named tool.
    fn headers(&self, head: &Head) -> HeaderMap {
        let mut h = headers::standard(head.version, head.method, head.params);
        if head.method == "tools/call" {
            let name = head.params.and_then(|p| p.get("name")).and_then(Value::as_str);
            let tools = self.tools.lock().unwrap();
            if let Some(Some(decls)) = name.and_then(|n| tools.by_name.get(n)) {
                let args = head.params.and_then(|p| p.get("arguments"));
                for (n, v) in headers::params(decls, args) {
                    h.insert(n, v);
                }
            }
        }
        h
    }

    async fn post(&self, body: Bytes, h: HeaderMap, token: &Option<Secret<String>>) -> reqwest::Result<Response> {
        self.conn
            .request(reqwest::Method::POST, self.conn.url.clone(), token)
            .headers(h)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, ACCEPT_BOTH)
            .body(body)
            .send()
            .await
    }

    /// One request: POST (with the auth retries), relay the answer.
    pub(crate) async fn exchange(&self, msg: &Msg, head: &Head<'_>, reply: &mut Reply) {
        let is_call = head.method == "tools/call";
        if is_call {
            self.learn_tool(msg, head).await;
        }
        let mut auth_retry = true;
        let mut step_up_retry = true;
        let mut mismatch_retry = is_call;
        loop {
            let token = match self.conn.bearer().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!("{}", e.with_hint());
                    return self.fail_to(reply, msg, codes::MODERN_AUTH, &e.with_hint(), None);
                }
            };
            let resp = match self.post(msg.body.clone(), self.headers(head), &token).await {
                Ok(r) => r,
                Err(e) => {
                    let text = format!("cannot reach the MCP server at {}: {}", self.conn.url, describe(&e));
                    tracing::warn!("{text}");
                    return self.fail_to(reply, msg, codes::MODERN_BACKEND, &text, None);
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
            if !status.is_success() {
                let ctype = sse::content_type(&resp);
                let body = resp.bytes().await.unwrap_or_default();
                if mismatch_retry && era::error_code(&body) == Some(era::HEADER_MISMATCH) {
                    mismatch_retry = false;
                    tracing::info!(
                        "the MCP server refused the headers of {} (HeaderMismatch); listing the tools again and retrying once",
                        msg.label()
                    );
                    let seen = self.tools.lock().unwrap().generation;
                    self.list_tools(msg, head, seen).await;
                    continue;
                }
                return self.http_error(reply, msg, status, &ctype, body);
            }
            return self.relay(resp, msg, head.method, reply).await;
        }
    }

    /// Relay a 2xx reply (JSON or SSE) to the client, as it comes.
    async fn relay(&self, resp: Response, msg: &Msg, method: &str, reply: &mut Reply) {
        let status = resp.status();
        let filter = method == "tools/list";
        if sse::is_event_stream(&resp) {
            let mut events = sse::events(resp);
            let mut cursor = Cursor::default();
            let mut shutdown = self.conn.shutdown.clone();
            let mut answered = false;
            while !answered {
                let next = tokio::select! {
                    _ = shutdown.wait() => return,
                    n = events.next() => n,
                };
                match next {
                    Some(Ok(ev)) => {
                        if let Some(data) = cursor.take(ev) {
                            answered = self.deliver(Bytes::from(data), msg, filter, reply);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!("event stream broke: {e}");
                        break;
                    }
                    None => break,
                }
            }
            if !answered {
                self.lost(msg, method, reply);
            }
            return;
        }
        let ctype = sse::content_type(&resp);
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let text = format!("reading the MCP server's reply failed: {}", describe(&e));
                return self.fail_to(reply, msg, codes::MODERN_BACKEND, &text, None);
            }
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            let text = format!("the MCP server sent no answer (HTTP {})", status.as_u16());
            return self.fail_to(reply, msg, codes::MODERN_BACKEND, &text, Some(status));
        }
        if !ctype.starts_with("application/json") || std::str::from_utf8(&body).is_err() {
            let text = format!(
                "the MCP server answered with `{}` instead of JSON-RPC",
                if ctype.is_empty() { "no content type" } else { &ctype }
            );
            return self.fail_to(reply, msg, codes::MODERN_BACKEND, &text, Some(status));
        }
        if !self.deliver(body, msg, filter, reply) {
            let text = "the MCP server's reply is not a JSON-RPC answer to this request";
            self.fail_to(reply, msg, codes::MODERN_BACKEND, text, Some(status));
        }
    }

    /// A response stream ended before its answer. A 2026-07-28 stream cannot be resumed;
    /// a listen stream's end is told the way a stdio server tells it (a cancellation).
    fn lost(&self, msg: &Msg, method: &str, reply: &mut Reply) {
        if self.conn.shutdown.is_triggered() {
            return;
        }
        if method == LISTEN && matches!(reply, Reply::Write) {
            tracing::debug!("the subscription stream {} ended", msg.label());
            self.conn.out.value(&json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": msg.id, "reason": "the MCP server closed the subscription stream"},
            }));
        } else {
            self.fail_to(
                reply,
                msg,
                codes::MODERN_BACKEND,
                "the MCP server closed the response stream before answering (send the request again)",
                None,
            );
        }
    }

    /// Write one server message to the client; true if it answers `msg`. `tools/list`
    /// answers lose the tools whose `x-mcp-header` annotations are invalid.
    fn deliver(&self, text: Bytes, msg: &Msg, filter: bool, reply: &mut Reply) -> bool {
        let env: Envelope = match serde_json::from_slice(&text) {
            Ok(e) => e,
            Err(_) => {
                tracing::warn!("dropped a message from the MCP server that is not valid JSON-RPC");
                return false;
            }
        };
        let ours = env.is_response() && env.id.is_some() && env.id == msg.id;
        if ours {
            let filtered = if filter { self.learn_list(&text) } else { None };
            reply.answer(&self.conn.out, filtered.unwrap_or(text), &env);
            return true;
        }
        if matches!(reply, Reply::Keep(_)) && env.method.as_deref() == Some("notifications/subscriptions/acknowledged")
        {
            return false; // the translator's own subscription: nothing an old client knows
        }
        self.conn.out.server_message(text, &env);
        false
    }

    /// Note the annotations of every tool in a `tools/list` answer; if some are invalid,
    /// the answer without them.
    fn learn_list(&self, text: &[u8]) -> Option<Bytes> {
        let mut v: Value = serde_json::from_slice(text).ok()?;
        let tools = v.pointer_mut("/result/tools")?.as_array_mut()?;
        let mut dropped = false;
        {
            let mut known = self.tools.lock().unwrap();
            tools.retain(|t| {
                let name = t.get("name").and_then(Value::as_str).unwrap_or("");
                let scanned = t.get("inputSchema").map(headers::scan).unwrap_or(Ok(vec![]));
                match scanned {
                    Ok(decls) => {
                        known.by_name.insert(name.to_string(), Some(decls));
                        true
                    }
                    Err(reason) => {
                        tracing::warn!("left out tool `{name}` from tools/list: invalid x-mcp-header ({reason})");
                        known.by_name.insert(name.to_string(), None);
                        dropped = true;
                        false
                    }
                }
            });
        }
        if !dropped {
            return None;
        }
        serde_json::to_vec(&v).ok().map(Bytes::from)
    }

    /// Before a `tools/call` of a tool not seen yet: list the tools (the proxy's own
    /// request, never shown to the client) to learn its annotations.
    async fn learn_tool(&self, msg: &Msg, head: &Head<'_>) {
        let Some(name) = head.params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            return;
        };
        let seen = {
            let tools = self.tools.lock().unwrap();
            if tools.by_name.contains_key(name) {
                return;
            }
            tools.generation
        };
        self.list_tools(msg, head, seen).await;
    }

    /// List all tools on the proxy's own ids, with the client's `_meta`, and learn their
    /// annotations. Skipped if another task listed since `seen`.
    async fn list_tools(&self, msg: &Msg, head: &Head<'_>, seen: u64) {
        let _one = self.listing.lock().await;
        if self.tools.lock().unwrap().generation != seen {
            return;
        }
        let meta = head.params.and_then(|p| p.get("_meta")).cloned().unwrap_or(json!({}));
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_LIST_PAGES {
            let id = format!("authful-mcp-proxy-{}", self.seq.fetch_add(1, Ordering::Relaxed));
            let mut params = json!({ "_meta": meta });
            if let Some(c) = cursor.take() {
                params["cursor"] = c;
            }
            let req = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
            let body = Bytes::from(serde_json::to_vec(&req).unwrap_or_default());
            let h = headers::standard(head.version, "tools/list", None);
            let reply = match self.ask(body, h, &Value::String(id)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("could not list the tools for {}: {e}", msg.label());
                    break;
                }
            };
            let _ = self.learn_list(&reply);
            cursor = serde_json::from_slice::<Value>(&reply)
                .ok()
                .and_then(|v| v.pointer("/result/nextCursor").cloned())
                .filter(|c| !c.is_null());
            if cursor.is_none() {
                break;
            }
        }
        self.tools.lock().unwrap().generation += 1;
    }

    /// The proxy's own request: POST (one 401 retry), the raw answer for `id`.
    async fn ask(&self, body: Bytes, h: HeaderMap, id: &Value) -> Result<Bytes, String> {
        let mut auth_retry = true;
        loop {
            let token = self.conn.bearer().await.map_err(|e| e.with_hint())?;
            let resp = self
                .post(body.clone(), h.clone(), &token)
                .await
                .map_err(|e| describe(&e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && auth_retry && self.conn.refused(&token, &resp).await {
                auth_retry = false;
                continue;
            }
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status().as_u16()));
            }
            return answer_for(resp, id).await;
        }
    }

    /// A 4xx/5xx: the server's own JSON-RPC error, unchanged for this id; else one of ours.
    fn http_error(&self, reply: &mut Reply, msg: &Msg, status: StatusCode, ctype: &str, body: Bytes) {
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            if let Some(err) = v
                .get("error")
                .filter(|e| e.get("code").is_some() && e.get("message").is_some())
            {
                if v.get("id") == msg.id.as_ref() && std::str::from_utf8(&body).is_ok() {
                    if let Ok(env) = serde_json::from_slice::<Envelope>(&body) {
                        return reply.answer(&self.conn.out, body, &env);
                    }
                }
                let answer = json!({"jsonrpc": "2.0", "id": msg.id, "error": err});
                return reply.answer_value(&self.conn.out, &answer);
            }
        }
        let text = crate::bridge::http_error_text(status.as_u16(), ctype, &body);
        self.fail_to(reply, msg, codes::MODERN_BACKEND, &text, Some(status));
    }

    /// Answer a request with one of the proxy's own errors (with the HTTP status, if any).
    fn fail(&self, msg: &Msg, code: i64, text: &str, status: Option<StatusCode>) {
        self.fail_to(&mut Reply::Write, msg, code, text, status)
    }

    fn fail_to(&self, reply: &mut Reply, msg: &Msg, code: i64, text: &str, status: Option<StatusCode>) {
        let Some(id) = msg.id.as_ref().filter(|_| msg.kind == Kind::Request) else {
            return tracing::warn!("could not deliver {}: {text}", msg.label());
        };
        tracing::debug!("answering id {id} with error {code}: {text}");
        let mut err = json!({"code": code, "message": text});
        if let Some(s) = status {
            err["data"] = json!({"httpStatus": s.as_u16()});
        }
        reply.answer_value(&self.conn.out, &json!({"jsonrpc": "2.0", "id": id, "error": err}));
    }

    /// A client notification. `notifications/cancelled` is not sent: in this era closing
    /// the request's stream is the cancellation (the dispatch loop aborts the request).
    async fn notify(&self, msg: &Msg) {
        let method = msg.method.as_deref().unwrap_or("");
        if method == "notifications/cancelled" {
            return;
        }
        let version = self.version.lock().unwrap().clone();
        let h = headers::standard(version.as_deref(), method, None);
        let Ok(token) = self.conn.bearer().await else { return };
        match self.post(msg.body.clone(), h, &token).await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::debug!("{} answered HTTP {}", msg.label(), r.status().as_u16()),
            Err(e) => tracing::debug!("{} failed: {}", msg.label(), describe(&e)),
        }
    }

    /// The `server/discover` probe: from memory when the backend is known, else asked of
    /// the server if that needs no login, within `PROBE_TIMEOUT`. A server that speaks only
    /// the old protocol (or no answer in time) gets the client a non-modern error, so that
    /// a dual-era client falls back to `initialize` at once.
    async fn discover(&self, msg: &Msg, head: &Head<'_>) {
        match self.memory.speaks() {
            Some(Speaks::Legacy) => return self.not_modern(msg, "it speaks only MCP 2025-11-25 or older"),
            Some(Speaks::Modern) => {
                if let Some(result) = self.memory.discover_result() {
                    tracing::debug!("answered server/discover from the remembered result");
                    return self
                        .conn
                        .out
                        .value(&json!({"jsonrpc": "2.0", "id": msg.id, "result": result}));
                }
            }
            None => {}
        }
        let Some(token) = self.conn.bearer_now() else {
            return self.not_modern(msg, "not logged in yet; the login starts with the next request");
        };
        let h = headers::standard(head.version, era::DISCOVER, None);
        let id = msg.id.clone().unwrap_or(Value::Null);
        let probe = async {
            let resp = self.post(msg.body.clone(), h, &token).await.map_err(|e| describe(&e))?;
            let status = resp.status();
            let body = if status.is_success() {
                answer_for(resp, &id).await?
            } else {
                resp.bytes().await.map_err(|e| describe(&e))?
            };
            Ok::<_, String>((status, body))
        };
        let (status, body) = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.not_modern(msg, &format!("the probe failed: {e}")),
            Err(_) => return self.not_modern(msg, "it did not answer within 3s"),
        };
        let code = status.as_u16();
        if status.is_success() {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Some(result) = v
                .get("result")
                .filter(|r| r.get("supportedVersions").is_some_and(Value::is_array))
            {
                self.memory.remember(Speaks::Modern, Some(result.clone()));
                return self.conn.out.json_text(body);
            }
        }
        if era::is_modern_error(code, &body) {
            self.memory.remember(Speaks::Modern, None);
            return self.http_error(&mut Reply::Write, msg, status, "application/json", body);
        }
        if code == 401 || code == 403 || code >= 500 {
            // Not evidence of an era: remember nothing.
            return self.not_modern(msg, &format!("it answered HTTP {code}"));
        }
        self.memory.remember(Speaks::Legacy, None);
        self.not_modern(msg, "it speaks only MCP 2025-11-25 or older")
    }

    /// The answer that makes a dual-era client fall back to `initialize`: "method not
    /// found", as an old server would say.
    fn not_modern(&self, msg: &Msg, why: &str) {
        tracing::debug!("server/discover answered -32601: {why}");
        let text = format!("Method not found: server/discover (through authful-mcp-proxy: {why}; use initialize)");
        self.conn.out.value(&json!({
            "jsonrpc": "2.0",
            "id": msg.id,
            "error": {"code": -32601, "message": text},
        }));
    }
}

/// The raw answer to `id` from a 2xx JSON or SSE reply.
async fn answer_for(resp: Response, id: &Value) -> Result<Bytes, String> {
    let is_answer = |text: &[u8]| {
        serde_json::from_slice::<Envelope>(text)
            .map(|e| e.is_response() && e.id.as_ref() == Some(id))
            .unwrap_or(false)
    };
    if sse::is_event_stream(&resp) {
        let mut events = sse::events(resp);
        let mut cursor = Cursor::default();
        while let Some(Ok(ev)) = events.next().await {
            if let Some(data) = cursor.take(ev) {
                if is_answer(data.as_bytes()) {
                    return Ok(Bytes::from(data));
                }
            }
        }
        Err("the stream ended before the answer".into())
    } else {
        let body = resp.bytes().await.map_err(|e| describe(&e))?;
        if is_answer(&body) && std::str::from_utf8(&body).is_ok() {
            Ok(body)
        } else {
            Err("the reply did not answer the request".into())
        }
    }
}
