//! An old client (2024-11-05 … 2025-11-25: `initialize`, server requests) in front of a
//! server that speaks MCP 2026-07-28. `initialize` is answered from `server/discover`;
//! every request gets the `_meta` the new era wants (version, the client's capabilities and
//! info, its log level) and goes out through the modern wire rules (`Modern::exchange`);
//! the change notifications come from a `subscriptions/listen` the proxy keeps open on the
//! client's behalf; an `input_required` result becomes the elicitation, sampling and roots
//! requests the old client knows, and their answers go back as `inputResponses` (bounded
//! rounds). `ping`, `logging/setLevel` and resource (un)subscription are answered here.
//! Cancelling aborts the request's task (the dispatch loop), which closes its stream.

use super::{Head, Modern, Reply, LISTEN};
use crate::bridge::{Kind, Msg};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The protocol version the translator speaks to the server.
const VERSION: &str = "2026-07-28";
/// Rounds of `input_required` before the call is given up.
const MAX_ROUNDS: usize = 10;
/// Questions in one round.
const MAX_QUESTIONS: usize = 8;
/// How long the old client may take to answer one question (a person may be asked).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
const INPUT_METHODS: [&str; 3] = ["elicitation/create", "sampling/createMessage", "roots/list"];
/// The translator's own errors (outside the JSON-RPC and MCP ranges).
const TRANSLATE_FAILED: i64 = -31002;

#[derive(Default)]
struct State {
    /// The `_meta` every request carries (from the client's initialize).
    meta: Map<String, Value>,
    /// The server's capabilities (from `server/discover`).
    capabilities: Value,
    resource_subscriptions: Vec<String>,
    listen: Option<tokio::task::AbortHandle>,
}

pub struct Translator {
    modern: Arc<Modern>,
    state: Mutex<State>,
    /// Questions put to the client, by the id the proxy gave them.
    pending: Mutex<HashMap<String, tokio::sync::oneshot::Sender<Value>>>,
    seq: AtomicU64,
}

impl Translator {
    pub fn new(modern: Arc<Modern>) -> Self {
        Translator {
            modern,
            state: Mutex::new(State::default()),
            pending: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        }
    }

    fn next_id(&self, what: &str) -> String {
        format!("authful-mcp-proxy-{what}-{}", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    fn out(&self) -> &crate::bridge::stdio::Out {
        &self.modern.conn.out
    }

    fn answer(&self, id: &Option<Value>, result: Value) {
        self.out().value(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }

    fn fail(&self, id: &Option<Value>, text: &str) {
        tracing::warn!("{text}");
        self.out()
            .value(&json!({"jsonrpc": "2.0", "id": id, "error": {"code": TRANSLATE_FAILED, "message": text}}));
    }

    /// Forward one message of the old client.
    pub async fn forward(self: &Arc<Self>, msg: &Msg) {
        let method = msg.method.as_deref().unwrap_or("");
        match msg.kind {
            Kind::Request => match method {
                "initialize" => self.initialize(msg).await,
                "ping" => self.answer(&msg.id, json!({})),
                "logging/setLevel" => {
                    if let Some(level) = params_of(msg).get("level").cloned() {
                        self.state.lock().unwrap().meta.insert(META_LOG_LEVEL.into(), level);
                    }
                    self.answer(&msg.id, json!({}));
                }
                "resources/subscribe" | "resources/unsubscribe" => {
                    let uri = params_of(msg).get("uri").and_then(Value::as_str).map(str::to_string);
                    if let Some(uri) = uri {
                        let mut st = self.state.lock().unwrap();
                        st.resource_subscriptions.retain(|u| *u != uri);
                        if method == "resources/subscribe" {
                            st.resource_subscriptions.push(uri);
                        }
                    }
                    self.answer(&msg.id, json!({}));
                    self.listen();
                }
                _ => self.call(msg).await,
            },
            Kind::Notification => match method {
                "notifications/initialized" => self.listen(),
                // Cancelling closes the request's stream (the dispatch loop aborts its task).
                _ => tracing::debug!("{} is not sent to a 2026-07-28 server", msg.label()),
            },
            Kind::Response => {
                let key = msg.id.as_ref().map(id_key).unwrap_or_default();
                match self.pending.lock().unwrap().remove(&key) {
                    Some(tx) => {
                        let _ = tx.send(serde_json::from_slice(&msg.body).unwrap_or(Value::Null));
                    }
                    None => tracing::debug!("dropped {}: no question of that id is open", msg.label()),
                }
            }
            Kind::Batch => tracing::warn!("dropped {}: batches are not translated", msg.label()),
        }
    }

    /// `initialize`: ask the server's `server/discover`, answer as an old server would.
    async fn initialize(&self, msg: &Msg) {
        let params = params_of(msg);
        let mut meta = Map::new();
        meta.insert(META_VERSION.into(), json!(VERSION));
        meta.insert(
            META_CAPABILITIES.into(),
            params.get("capabilities").cloned().unwrap_or(json!({})),
        );
        if let Some(info) = params.get("clientInfo") {
            meta.insert(META_CLIENT_INFO.into(), info.clone());
        }
        self.state.lock().unwrap().meta = meta.clone();
        let id = self.next_id("discover");
        let req = json!({"jsonrpc": "2.0", "id": id, "method": super::era::DISCOVER, "params": {"_meta": meta}});
        let Some(reply) = self.leg(&req).await else { return };
        let mut v: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
        let Some(result) = v.get_mut("result").filter(|r| r.get("supportedVersions").is_some()) else {
            // The server's own error, for the client's id.
            v["id"] = msg.id.clone().unwrap_or(Value::Null);
            return self.out().value(&v);
        };
        let capabilities = result.get("capabilities").cloned().unwrap_or(json!({}));
        let server_info = result
            .pointer("/_meta/io.modelcontextprotocol~1serverInfo")
            .or_else(|| result.get("serverInfo"))
            .cloned()
            .unwrap_or(json!({"name": "unknown", "version": "0"}));
        let mut answer = json!({
            "protocolVersion": params.get("protocolVersion").cloned().unwrap_or(json!("2025-11-25")),
            "capabilities": capabilities,
            "serverInfo": server_info,
        });
        if let Some(i) = result.get("instructions") {
            answer["instructions"] = i.clone();
        }
        self.state.lock().unwrap().capabilities = capabilities;
        tracing::info!("the MCP server speaks 2026-07-28; translating for a client of an older version");
        self.answer(&msg.id, answer);
    }

    /// One request leg through the modern wire rules; the raw answer.
    async fn leg(&self, req: &Value) -> Option<Bytes> {
        let body = Bytes::from(serde_json::to_vec(req).ok()?);
        let leg = Msg {
            body,
            id: req.get("id").cloned(),
            method: req.get("method").and_then(Value::as_str).map(str::to_string),
            kind: Kind::Request,
            batch_ids: vec![],
            progress_token: req.pointer("/params/_meta/progressToken").cloned(),
        };
        let params = req.get("params");
        let head = Head {
            method: leg.method.as_deref().unwrap_or(""),
            version: Some(VERSION),
            params,
        };
        let mut reply = Reply::Keep(None);
        self.modern.exchange(&leg, &head, &mut reply).await;
        match reply {
            Reply::Keep(r) => r,
            Reply::Write => None,
        }
    }

    /// A request of the old client: stamped with `_meta`, sent, `input_required` unrolled.
    async fn call(&self, msg: &Msg) {
        let mut req: Value = match serde_json::from_slice(&msg.body) {
            Ok(v) => v,
            Err(e) => return self.fail(&msg.id, &format!("Parse error: {e}")),
        };
        {
            let st = self.state.lock().unwrap();
            let params = req
                .as_object_mut()
                .map(|o| o.entry("params").or_insert_with(|| json!({})));
            if let Some(Value::Object(p)) = params {
                let meta = p.entry("_meta").or_insert_with(|| json!({}));
                if let Value::Object(m) = meta {
                    for (k, v) in &st.meta {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        for round in 0..=MAX_ROUNDS {
            let Some(reply) = self.leg(&req).await else { return };
            let mut answer: Value = match serde_json::from_slice(&reply) {
                Ok(v) => v,
                Err(e) => return self.fail(&msg.id, &format!("the MCP server's answer is not JSON: {e}")),
            };
            answer["id"] = msg.id.clone().unwrap_or(Value::Null);
            let input_required = answer.pointer("/result/resultType").and_then(Value::as_str) == Some("input_required");
            if !input_required {
                if let Some(Value::Object(r)) = answer.get_mut("result") {
                    r.remove("resultType");
                }
                return self.out().value(&answer);
            }
            if round == MAX_ROUNDS {
                break;
            }
            let result = answer.get("result").cloned().unwrap_or(Value::Null);
            let responses = match self.ask_client(&result).await {
                Ok(r) => r,
                Err(e) => {
                    return self.fail(
                        &msg.id,
                        &format!("the MCP server's question could not be answered: {e}"),
                    )
                }
            };
            let Some(Value::Object(p)) = req.get_mut("params") else {
                return;
            };
            p.insert("inputResponses".into(), Value::Object(responses));
            match result.get("requestState") {
                Some(s) => p.insert("requestState".into(), s.clone()),
                None => p.remove("requestState"),
            };
            req["id"] = json!(self.next_id("retry"));
        }
        self.fail(
            &msg.id,
            &format!("the MCP server still wanted input after {MAX_ROUNDS} rounds; gave up"),
        );
    }

    /// Put one round's questions to the old client as server requests, all at once; their
    /// results keyed as the server asked.
    async fn ask_client(&self, result: &Value) -> Result<Map<String, Value>, String> {
        let empty = Map::new();
        let questions = result.get("inputRequests").and_then(Value::as_object).unwrap_or(&empty);
        if questions.len() > MAX_QUESTIONS {
            return Err(format!(
                "{} questions in one round (at most {MAX_QUESTIONS})",
                questions.len()
            ));
        }
        let mut waits = Vec::new();
        for (key, q) in questions {
            let method = q.get("method").and_then(Value::as_str).unwrap_or("");
            if !INPUT_METHODS.contains(&method) {
                return Err(format!("`{method}` is not a question an older client can be asked"));
            }
            let id = self.next_id("input");
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.pending.lock().unwrap().insert(id_key(&json!(id)), tx);
            let mut ask = json!({"jsonrpc": "2.0", "id": id, "method": method});
            if let Some(p) = q.get("params") {
                ask["params"] = p.clone();
            }
            self.out().value(&ask);
            waits.push((key.clone(), id, rx));
        }
        let mut answers = Map::new();
        for (key, id, rx) in waits {
            let got = tokio::time::timeout(ANSWER_TIMEOUT, rx).await;
            self.pending.lock().unwrap().remove(&id_key(&json!(id)));
            let reply = match got {
                Ok(Ok(v)) => v,
                _ => return Err(format!("no answer to `{key}`")),
            };
            match reply.get("result") {
                Some(r) => answers.insert(key, r.clone()),
                None => {
                    return Err(format!(
                        "the client refused `{key}`: {}",
                        reply.get("error").unwrap_or(&Value::Null)
                    ))
                }
            };
        }
        Ok(answers)
    }

    /// (Re)open the change subscription on the client's behalf, with what the server offers.
    fn listen(self: &Arc<Self>) {
        let (filter, meta) = {
            let mut st = self.state.lock().unwrap();
            if let Some(old) = st.listen.take() {
                old.abort(); // closes the old stream
            }
            let caps = &st.capabilities;
            let flag = |p: &str| caps.pointer(p).and_then(Value::as_bool).unwrap_or(false);
            let mut filter = Map::new();
            for (key, ptr) in [
                ("toolsListChanged", "/tools/listChanged"),
                ("promptsListChanged", "/prompts/listChanged"),
                ("resourcesListChanged", "/resources/listChanged"),
            ] {
                if flag(ptr) {
                    filter.insert(key.into(), json!(true));
                }
            }
            if !st.resource_subscriptions.is_empty() {
                filter.insert("resourceSubscriptions".into(), json!(st.resource_subscriptions));
            }
            (filter, st.meta.clone())
        };
        if filter.is_empty() {
            return;
        }
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut quick_drops = 0;
            loop {
                let started = std::time::Instant::now();
                let req = json!({
                    "jsonrpc": "2.0",
                    "id": me.next_id("listen"),
                    "method": LISTEN,
                    "params": {"_meta": meta, "notifications": filter},
                });
                let _ = me.leg(&req).await;
                if me.modern.conn.shutdown.is_triggered() {
                    return;
                }
                quick_drops = if started.elapsed() < Duration::from_secs(30) {
                    quick_drops + 1
                } else {
                    0
                };
                if quick_drops >= 5 {
                    tracing::warn!("the MCP server keeps closing the change subscription; change notifications stop");
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        self.state.lock().unwrap().listen = Some(task.abort_handle());
    }

    /// Stop the subscription.
    pub fn close(&self) {
        if let Some(t) = self.state.lock().unwrap().listen.take() {
            t.abort();
        }
    }
}

const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

fn params_of(msg: &Msg) -> Value {
    serde_json::from_slice::<Value>(&msg.body)
        .ok()
        .and_then(|mut v| v.get_mut("params").map(Value::take))
        .unwrap_or(json!({}))
}

/// A map key for a JSON-RPC id (numbers and strings stay apart).
fn id_key(id: &Value) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_both_kinds_are_distinct_keys() {
        assert_ne!(id_key(&json!(1)), id_key(&json!("1")));
        assert_eq!(
            id_key(&json!("authful-mcp-proxy-input-0")),
            "\"authful-mcp-proxy-input-0\""
        );
    }

    #[test]
    fn unused_codes_are_outside_the_reserved_ranges() {
        assert!(!(-32768..=-32000).contains(&TRANSLATE_FAILED));
        assert!(!(-32768..=-32000).contains(&crate::bridge::codes::MODERN_BACKEND));
    }
}
