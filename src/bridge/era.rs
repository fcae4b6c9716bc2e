//! Protocol eras. A session's era is decided once, by the client's first message:
//! `initialize` is the 2024-11-05 … 2025-11-25 era; `server/discover`, or a request whose
//! `_meta` names `io.modelcontextprotocol/protocolVersion`, is the 2026-07-28 era. What a
//! backend speaks is remembered in a small file beside the token cache (with its
//! `server/discover` result while that is fresh), so later probes cost no round trip.

use super::Msg;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Mutex;

/// `server/discover`: the probe of the 2026-07-28 era.
pub const DISCOVER: &str = "server/discover";
/// HeaderMismatch, MissingRequiredClientCapability, UnsupportedProtocolVersion.
pub const MODERN_ERRORS: [i64; 3] = [-32020, -32021, -32022];
pub const HEADER_MISMATCH: i64 = -32020;
/// How long a verdict about a backend is trusted before it is checked again.
const VERDICT_SECS: u64 = 24 * 3600;

/// Whether a client's first message opens a 2026-07-28 session (this parses the message's
/// `params._meta` only; it runs once per session).
pub fn opens_modern(msg: &Msg) -> bool {
    match msg.method.as_deref() {
        Some(DISCOVER) => true,
        Some("initialize") | None => false,
        Some(_) => serde_json::from_slice::<Value>(&msg.body)
            .ok()
            .is_some_and(|v| v.pointer(META_VERSION).is_some_and(Value::is_string)),
    }
}

/// Where a request names its protocol version.
const META_VERSION: &str = "/params/_meta/io.modelcontextprotocol~1protocolVersion";

/// The JSON-RPC error code in a reply body, if it is a JSON-RPC error.
pub fn error_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .pointer("/error/code")?
        .as_i64()
}

/// Whether an HTTP answer is evidence of a 2026-07-28 server: one of its own errors, or a
/// 404 whose body is JSON-RPC `-32601` (a legacy server's 404 has no such body).
pub fn is_modern_error(status: u16, body: &[u8]) -> bool {
    match error_code(body) {
        Some(c) if MODERN_ERRORS.contains(&c) => true,
        Some(-32601) => status == 404,
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// MCP 2026-07-28 (possibly also older versions).
    Modern,
    /// Only the `initialize` era.
    Legacy,
}

#[derive(Clone)]
struct Record {
    url: String,
    speaks: Speaks,
    checked_at: u64,
    /// The last `server/discover` result and until when (ms since the epoch) it is fresh.
    discover: Option<Value>,
    discover_until_ms: Option<u64>,
}

impl Record {
    fn to_json(&self) -> Value {
        let speaks = match self.speaks {
            Speaks::Modern => "modern",
            Speaks::Legacy => "legacy",
        };
        json!({
            "url": self.url,
            "speaks": speaks,
            "checked_at": self.checked_at,
            "discover": self.discover,
            "discover_until_ms": self.discover_until_ms,
        })
    }

    fn from_json(v: &Value) -> Option<Record> {
        Some(Record {
            url: v.get("url")?.as_str()?.to_string(),
            speaks: match v.get("speaks")?.as_str()? {
                "modern" => Speaks::Modern,
                "legacy" => Speaks::Legacy,
                _ => return None,
            },
            checked_at: v.get("checked_at")?.as_u64()?,
            discover: v.get("discover").filter(|d| !d.is_null()).cloned(),
            discover_until_ms: v.get("discover_until_ms").and_then(Value::as_u64),
        })
    }
}

/// What one backend speaks, kept in memory and in `<cache dir>/<host>_<hash>_era.json`.
pub struct Memory {
    url: String,
    path: Option<PathBuf>,
    record: Mutex<Option<Option<Record>>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Memory {
    pub fn new(cache_dir: Option<PathBuf>, url: &url::Url) -> Self {
        let hash = Sha256::digest(url.as_str().as_bytes());
        let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let host: String = url
            .host_str()
            .unwrap_or("backend")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .take(60)
            .collect();
        Memory {
            url: url.to_string(),
            path: cache_dir.map(|d| d.join(format!("{host}_{short}_era.json"))),
            record: Mutex::new(None),
        }
    }

    /// The remembered record, read from disk on first use; a foreign or stale one is ignored.
    fn record(&self) -> Option<Record> {
        let mut slot = self.record.lock().unwrap();
        if slot.is_none() {
            let rec = self
                .path
                .as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| Record::from_json(&v))
                .filter(|r| r.url == self.url);
            *slot = Some(rec);
        }
        slot.clone()
            .flatten()
            .filter(|r| now_ms() / 1000 < r.checked_at.saturating_add(VERDICT_SECS))
    }

    /// What the backend speaks, if known.
    pub fn speaks(&self) -> Option<Speaks> {
        self.record().map(|r| r.speaks)
    }

    /// The backend's `server/discover` result while it is fresh (its `ttlMs`).
    pub fn discover_result(&self) -> Option<Value> {
        let r = self.record()?;
        (now_ms() < r.discover_until_ms?).then_some(r.discover?)
    }

    /// Remember a verdict (and a discover result with its `ttlMs`), in memory and on disk.
    pub fn remember(&self, speaks: Speaks, discover: Option<Value>) {
        let until = discover
            .as_ref()
            .and_then(|d| d.get("ttlMs"))
            .and_then(Value::as_u64)
            .map(|ttl| now_ms().saturating_add(ttl));
        let rec = Record {
            url: self.url.clone(),
            speaks,
            checked_at: now_ms() / 1000,
            discover: until.and(discover),
            discover_until_ms: until,
        };
        if let Some(path) = &self.path {
            let written = serde_json::to_vec_pretty(&rec.to_json())
                .map_err(|e| e.to_string())
                .and_then(|bytes| crate::token_cache::write_private(path, &bytes));
            if let Err(e) = written {
                tracing::debug!("could not remember what the MCP server speaks: {e}");
            }
        }
        *self.record.lock().unwrap() = Some(Some(rec));
    }

    /// Forget the verdict (it proved wrong).
    pub fn forget(&self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
        *self.record.lock().unwrap() = Some(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(s: &str) -> Msg {
        super::super::classify(Bytes::from(s.to_string())).unwrap()
    }

    #[test]
    fn first_message_decides_the_era() {
        let rows = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#,
                false,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#,
                true,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
                true,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{}}}"#,
                false,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, false),
            (r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, false),
        ];
        for (line, want) in rows {
            assert_eq!(opens_modern(&msg(line)), want, "{line}");
        }
    }

    #[test]
    fn modern_errors_are_told_apart_from_legacy_answers() {
        let rows: [(u16, &str, bool); 6] = [
            (
                400,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"m","data":{"supported":["2026-07-28"]}}}"#,
                true,
            ),
            (
                400,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"m"}}"#,
                true,
            ),
            (
                404,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"m"}}"#,
                true,
            ),
            (
                200,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"m"}}"#,
                false,
            ), // in-band: a legacy answer
            (
                400,
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: Server not initialized"}}"#,
                false,
            ),
            (404, "Not Found", false),
        ];
        for (status, body, want) in rows {
            assert_eq!(is_modern_error(status, body.as_bytes()), want, "{status} {body}");
        }
    }

    #[test]
    fn verdicts_are_remembered_on_disk() {
        let dir = std::env::temp_dir().join(format!("authful-era-{}", rand::random::<u32>()));
        let url = url::Url::parse("http://127.0.0.1:9/mcp").unwrap();
        let m = Memory::new(Some(dir.clone()), &url);
        assert_eq!(m.speaks(), None);
        m.remember(
            Speaks::Modern,
            Some(serde_json::json!({"supportedVersions": ["2026-07-28"], "ttlMs": 60000})),
        );
        let again = Memory::new(Some(dir.clone()), &url);
        assert_eq!(again.speaks(), Some(Speaks::Modern));
        assert!(again.discover_result().is_some());
        // No ttlMs: the verdict is kept, the result is not.
        again.remember(Speaks::Legacy, Some(serde_json::json!({})));
        assert_eq!(Memory::new(Some(dir.clone()), &url).discover_result(), None);
        assert_eq!(Memory::new(Some(dir.clone()), &url).speaks(), Some(Speaks::Legacy));
        // Another backend's file is not ours.
        let other = Memory::new(Some(dir.clone()), &url::Url::parse("http://127.0.0.1:9/other").unwrap());
        assert_eq!(other.speaks(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
