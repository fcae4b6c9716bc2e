//! Property tests of the parts that read untrusted bytes: stdin framing, SSE streams, JSON-RPC
//! classification and the login callback's query. Nothing may panic, and chunking must not
//! change what is read.

use authful_mcp_proxy::auth::callback::{judge, IssCheck, Outcome};
use authful_mcp_proxy::bridge::stdio::{Input, LineReader};
use authful_mcp_proxy::bridge::{classify, sse::Cursor};
use bytes::Bytes;
use futures_util::StreamExt;
use proptest::prelude::*;
use std::io::BufReader;

fn read_all(input: &[u8], cap: usize, max: usize) -> Vec<Result<Vec<u8>, usize>> {
    let mut r = LineReader::new(BufReader::with_capacity(cap.max(1), input), max);
    let mut out = vec![];
    loop {
        match r.next_input() {
            Input::Line(l) => out.push(Ok(l)),
            Input::TooLarge(n) => out.push(Err(n)),
            Input::Eof => return out,
        }
    }
}

fn sse_data(chunks: Vec<Vec<u8>>) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async move {
        let stream = futures_util::stream::iter(chunks.into_iter().map(|c| Ok::<_, std::io::Error>(Bytes::from(c))));
        let mut s = sse_stream::SseStream::from_bytes_stream(stream);
        let mut cursor = Cursor::default();
        let mut data = vec![];
        while let Some(item) = s.next().await {
            match item {
                Ok(ev) => data.extend(cursor.take(ev)),
                Err(_) => break,
            }
        }
        data
    })
}

fn split_at_points(bytes: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = vec![];
    let mut last = 0;
    for c in cuts {
        chunks.push(bytes[last..c].to_vec());
        last = c;
    }
    chunks.push(bytes[last..].to_vec());
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes (invalid UTF-8, NULs, CRs) never panic, and the buffer size of the
    /// reader never changes the lines it yields.
    #[test]
    fn framing_is_independent_of_buffering(input in proptest::collection::vec(any::<u8>(), 0..2048), cap in 1usize..64, max in 1usize..512) {
        let reference = read_all(&input, 8192, max);
        prop_assert_eq!(read_all(&input, cap, max), reference.clone());
        for item in reference {
            match item {
                Ok(line) => {
                    prop_assert!(line.len() <= max);
                    prop_assert!(!line.contains(&b'\n'));
                }
                Err(n) => prop_assert!(n > max),
            }
        }
    }

    /// Any bytes as a JSON-RPC message: classified or refused, never a panic.
    #[test]
    fn classify_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = classify(Bytes::from(input));
    }

    /// Deeply nested JSON is refused or accepted without overflowing the stack.
    #[test]
    fn deep_nesting_is_handled(depth in 1usize..5000) {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let _ = classify(Bytes::from(format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{text}}}")));
    }

    /// Any chunking of a valid SSE stream yields the same events.
    #[test]
    fn sse_chunking_invariance(msgs in proptest::collection::vec("[a-z0-9 ]{0,40}", 1..8), points in proptest::collection::vec(any::<usize>(), 0..12), crlf in any::<bool>()) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut body = String::new();
        for (i, m) in msgs.iter().enumerate() {
            body.push_str(&format!("id: {i}{nl}data: {{\"m\":\"{m}\"}}{nl}{nl}"));
        }
        let whole = sse_data(vec![body.clone().into_bytes()]);
        prop_assert_eq!(whole.len(), msgs.len());
        prop_assert_eq!(sse_data(split_at_points(body.as_bytes(), &points)), whole);
    }

    /// Arbitrary bytes on an event stream never panic.
    #[test]
    fn sse_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..2048), points in proptest::collection::vec(any::<usize>(), 0..8)) {
        let _ = sse_data(split_at_points(&input, &points));
    }

    /// Any callback query: judged without panicking, and a code is only accepted with the
    /// exact state.
    #[test]
    fn callback_queries(query in ".{0,200}", state in "[A-Za-z0-9_-]{1,20}") {
        let iss = IssCheck { issuer: "https://idp.example", required: false };
        match judge("/cb", Some(&query), "/cb", &state, iss) {
            Outcome::Code(_) | Outcome::Denied { .. } | Outcome::Malformed => {
                let has_state = url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "state" && v == state.as_str());
                prop_assert!(has_state);
            }
            Outcome::Foreign(_) | Outcome::NotFound => {}
        }
    }
}

#[test]
fn a_100_mb_line_is_refused_without_buffering_it() {
    // A reader that yields 100 MB of 'x' then a newline and a valid message, in 64 KiB pieces.
    struct Big {
        left: usize,
        tail: &'static [u8],
    }
    impl std::io::Read for Big {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left > 0 {
                let n = buf.len().min(self.left);
                buf[..n].fill(b'x');
                self.left -= n;
                return Ok(n);
            }
            let n = buf.len().min(self.tail.len());
            buf[..n].copy_from_slice(&self.tail[..n]);
            self.tail = &self.tail[n..];
            Ok(n)
        }
    }
    let src = Big {
        left: 100 * 1024 * 1024,
        tail: b"\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n",
    };
    let mut r = LineReader::new(BufReader::with_capacity(65536, src), 1024 * 1024);
    assert!(matches!(r.next_input(), Input::TooLarge(n) if n == 100 * 1024 * 1024));
    assert!(matches!(r.next_input(), Input::Line(l) if l.starts_with(b"{\"jsonrpc\"")));
    assert!(matches!(r.next_input(), Input::Eof));
}
