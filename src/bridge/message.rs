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
    /// The server's answer is larger than the client can read (`--max-output-bytes`).
    /// Outside JSON-RPC's reserved range (-32768 to -32000): it is the proxy's, not the
    /// server's, and no MCP code means the same.
    pub const TOO_LARGE: i64 = -31000;
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
    /// A request's `params._meta.progressToken`: progress about it may come.
    pub progress_token: Option<Value>,
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
    #[serde(default)]
    pub params: Option<Tokens>,
}

impl Envelope {
    pub fn is_response(&self) -> bool {
        self.method.is_none() && (self.result.is_some() || self.error.is_some())
    }

    /// `params.progressToken`: a message about the request that gave this token.
    pub fn progress_token(&self) -> Option<&Value> {
        self.params.as_ref()?.progress.as_ref()
    }

    /// `params._meta.progressToken`: a request that asks for progress under this token.
    pub fn meta_progress_token(&self) -> Option<&Value> {
        self.params.as_ref()?.meta.as_ref()
    }
}

/// The progress tokens in `params`, if it is an object; anything else (an array, a future
/// shape) is skipped without failing the message.
#[derive(Default)]
pub(crate) struct Tokens {
    progress: Option<Value>,
    meta: Option<Value>,
}

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        /// `_meta`: only its `progressToken`.
        struct Meta(Option<Value>);
        impl<'de> Deserialize<'de> for Meta {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(Fields(true)).map(|t| Meta(t.progress))
            }
        }
        /// A key of interest, told apart without allocating.
        enum Key {
            Progress,
            Meta,
            Other,
        }
        impl<'de> Deserialize<'de> for Key {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = Key;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a key")
                    }
                    fn visit_str<E>(self, k: &str) -> Result<Key, E> {
                        Ok(match k {
                            "progressToken" => Key::Progress,
                            "_meta" => Key::Meta,
                            _ => Key::Other,
                        })
                    }
                }
                d.deserialize_identifier(V)
            }
        }
        /// Visits an object for `progressToken` (and, unless `meta`, `_meta`).
        struct Fields(bool);
        impl<'de> Visitor<'de> for Fields {
            type Value = Tokens;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tokens, A::Error> {
                let mut t = Tokens::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Progress => t.progress = Some(map.next_value()?),
                        Key::Meta if !self.0 => t.meta = map.next_value::<Meta>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(t)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tokens, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Tokens::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Tokens, E> {
                Ok(Tokens::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Tokens, E> {
                Ok(Tokens::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Tokens, E> {
                Ok(Tokens::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Tokens, E> {
                Ok(Tokens::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Tokens, E> {
                Ok(Tokens::default())
            }
            fn visit_unit<E>(self) -> Result<Tokens, E> {
                Ok(Tokens::default())
            }
        }
        d.deserialize_any(Fields(false))
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
    let progress_token = match kind {
        Kind::Request => env.meta_progress_token().cloned(),
        _ => None,
    };
    Ok(Msg {
        body,
        id: env.id,
        method: env.method,
        kind,
        batch_ids: vec![],
        progress_token,
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
    fn progress_tokens_are_found_where_they_belong() {
        let env = |s: &str| serde_json::from_str::<Envelope>(s).unwrap();
        // (message, params.progressToken, params._meta.progressToken) with the reason per row.
        let rows: &[(&str, Option<Value>, Option<Value>)] = &[
            // A request asking for progress.
            (
                r#"{"id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":7}}}"#,
                None,
                Some(7.into()),
            ),
            // The notification about it.
            (
                r#"{"method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#,
                Some("t".into()),
                None,
            ),
            // By-position params and odd shapes are skipped, not refused.
            (r#"{"id":1,"method":"m","params":[1,{"progressToken":2}]}"#, None, None),
            (r#"{"id":1,"method":"m","params":"s"}"#, None, None),
            (r#"{"id":1,"method":"m","params":{"_meta":[1]}}"#, None, None),
            (r#"{"id":1,"result":{"progressToken":3}}"#, None, None), // results are not params
        ];
        for (msg, token, meta) in rows {
            let e = env(msg);
            assert_eq!(
                (e.progress_token(), e.meta_progress_token()),
                (token.as_ref(), meta.as_ref()),
                "{msg}"
            );
        }
        let m = classify(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"_meta":{"progressToken":3}}}"#,
        ))
        .unwrap();
        assert_eq!(m.progress_token, Some(3.into()));
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
