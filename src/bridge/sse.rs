//! Server-sent events from a reqwest response, parsed by `sse-stream` (which keeps id-only
//! and retry-only events: MCP 2025-11-25 priming and polling depend on them).

use futures_util::{Stream, StreamExt};
use sse_stream::{Sse, SseStream};

pub fn is_event_stream(resp: &reqwest::Response) -> bool {
    content_type(resp).starts_with("text/event-stream")
}

pub fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub fn events(resp: reqwest::Response) -> impl Stream<Item = Result<Sse, String>> + Send + Unpin {
    SseStream::from_bytes_stream(resp.bytes_stream()).map(|r| r.map_err(|e| e.to_string()))
}

/// Where a dropped stream can be resumed from, and how soon (`retry:`).
#[derive(Debug, Default, Clone)]
pub struct Cursor {
    pub last_event_id: Option<String>,
    pub retry_ms: Option<u64>,
}

impl Cursor {
    /// Note an event's id and retry; returns its JSON-RPC payload, if it carries one.
    pub fn take(&mut self, ev: Sse) -> Option<String> {
        if let Some(id) = ev.id {
            self.last_event_id = Some(id);
        }
        if let Some(r) = ev.retry {
            self.retry_ms = Some(r);
        }
        match ev.event.as_deref() {
            None | Some("message") => ev.data.filter(|d| !d.trim().is_empty()),
            _ => None,
        }
    }

    /// How long to wait before reconnecting: the server's `retry:`, bounded.
    pub fn delay(&self, default_ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(self.retry_ms.unwrap_or(default_ms).clamp(50, 30_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    async fn parse_chunks(chunks: Vec<&'static [u8]>) -> (Vec<String>, Cursor) {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        let mut s = SseStream::from_bytes_stream(stream);
        let mut cursor = Cursor::default();
        let mut data = vec![];
        while let Some(Ok(ev)) = s.next().await {
            if let Some(d) = cursor.take(ev) {
                data.push(d);
            }
        }
        (data, cursor)
    }

    #[tokio::test]
    async fn priming_event_comments_crlf_and_split_chunks() {
        let (data, cursor) = parse_chunks(vec![
            b"id: prime-1\ndata:\n\n",                  // 2025-11-25 priming event: id, empty data
            b": keep-alive comment\n\n",                // comments are ignored
            b"id: 2\r\nevent: message\r\ndata: {\"a\"", // CRLF and an event split across chunks
            b":1}\r\n\r\n",
            b"id: 3\nretry: 2500\n\n", // retry-only block still moves the cursor
            b"event: endpoint\ndata: /messages?s=1\n\n", // other event types are not JSON-RPC
        ])
        .await;
        assert_eq!(data, vec!["{\"a\":1}".to_string()]);
        assert_eq!(cursor.last_event_id.as_deref(), Some("3"));
        assert_eq!(cursor.retry_ms, Some(2500));
        assert_eq!(cursor.delay(1000), std::time::Duration::from_millis(2500));
    }

    #[tokio::test]
    async fn any_chunking_yields_the_same_events() {
        let full: &'static [u8] = b"id: 1\ndata: {\"x\":1}\n\nid: 2\ndata: {\"y\":\ndata: 2}\n\n";
        let (want, _) = parse_chunks(vec![full]).await;
        for size in 1..full.len() {
            let chunks: Vec<&'static [u8]> = full.chunks(size).collect();
            let (got, cur) = parse_chunks(chunks).await;
            assert_eq!(got, want, "chunk size {size}");
            assert_eq!(cur.last_event_id.as_deref(), Some("2"));
        }
    }
}
