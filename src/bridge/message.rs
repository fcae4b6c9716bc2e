//! What a client message is, as far as the bridge cares: its raw bytes plus `id`, `method`
//! and kind. serde skips everything else without building it, so unknown and future MCP
//! methods pass through untouched.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

/// JSON-RPC error codes the proxy itself produces.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    /// The backend could not be reached or answered with an error.
    pub const BACKEND: i64 = -32000;
    /// No valid token could be obtained (login failed, denied or timed out).
    pub const AUTH: i64 = -32001;
    /// In the 2026-07-28 era, where −32768…−32000 belongs to JSON-RPC and the spec: the
    /// backend could not be reached, or failed without a JSON-RPC error of its own.
    pub const MODERN_BACKEND: i64 = -31000;
    /// In the 2026-07-28 era: no valid token could be obtained.
    pub const MODERN_AUTH: i64 = -31001;
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
}
