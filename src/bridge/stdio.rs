//! Local stdio framing. One thread reads stdin (blocking, size-limited lines); one thread
//! owns stdout and is its only writer. Every line written is one compact JSON-RPC message.

use std::io::{BufRead, Write};
use tokio::sync::mpsc;

/// What the reader saw on stdin.
#[derive(Debug)]
pub enum Input {
    /// One non-empty line, without its line ending.
    Line(Vec<u8>),
    /// A line longer than the limit; its bytes were discarded.
    TooLarge(usize),
    /// End of input (or a read error): the client is gone.
    Eof,
}

/// Clear O_NONBLOCK on fds 0 and 1: if anything in the Node process touched them, libuv left
/// them non-blocking and blocking reads/writes would fail with EAGAIN. On Linux, also widen
/// the pipes (when they are pipes) so a large message crosses in few wake-ups.
pub fn make_blocking() {
    #[cfg(target_os = "linux")]
    for fd in [0, 1] {
        // SAFETY: F_SETPIPE_SZ on our own descriptors; fails harmlessly when not a pipe.
        unsafe {
            libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
        }
    }
    #[cfg(unix)]
    for fd in [0, 1] {
        // SAFETY: fcntl on our own standard descriptors with valid commands.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
}

/// Read `reader` line by line on a dedicated thread. Empty lines are skipped, a trailing CR
/// is removed, and a line over `max` bytes is reported as `TooLarge` without being buffered.
pub fn spawn_reader<R: BufRead + Send + 'static>(reader: R, max: usize) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut lines = LineReader::new(reader, max);
            loop {
                let item = lines.next_input();
                let eof = matches!(item, Input::Eof);
                if eof {
                    tracing::debug!("stdin reached its end");
                }
                if tx.blocking_send(item).is_err() || eof {
                    return;
                }
            }
        })
        .expect("spawn stdin thread");
    rx
}

/// Splits a byte stream into size-limited lines (the pure part of the reader, unit-tested).
pub struct LineReader<R> {
    inner: R,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max }
    }

    pub fn next_input(&mut self) -> Input {
        let mut line = Vec::new();
        let mut seen = 0usize;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Input::Eof,
            };
            if buf.is_empty() {
                // EOF: a last line without a newline still counts.
                return match finish(line, seen, self.max) {
                    Some(i) => i,
                    None => Input::Eof,
                };
            }
            let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i)),
                None => (buf, None),
            };
            seen += chunk.len();
            if seen <= self.max {
                line.extend_from_slice(chunk);
            } else if !line.is_empty() {
                line = Vec::new();
            }
            let used = found.map_or(chunk.len(), |i| i + 1);
            self.inner.consume(used);
            if found.is_some() {
                if let Some(i) = finish(std::mem::take(&mut line), seen, self.max) {
                    return i;
                }
                seen = 0;
            }
        }
    }
}

fn finish(mut line: Vec<u8>, seen: usize, max: usize) -> Option<Input> {
    if seen > max {
        return Some(Input::TooLarge(seen));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    Some(Input::Line(line))
}

enum OutMsg {
    Line(bytes::Bytes),
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The only way to stdout. Cheap to clone; lines are written in the order they were sent.
#[derive(Clone)]
pub struct Out {
    tx: std::sync::mpsc::Sender<OutMsg>,
}

impl Out {
    /// Start the writer thread on `w`. `on_broken` runs once if a write fails (client gone).
    pub fn spawn<W: Write + Send + 'static>(w: W, on_broken: impl FnOnce() + Send + 'static) -> Out {
        let (tx, rx) = std::sync::mpsc::channel::<OutMsg>();
        std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let mut w = std::io::BufWriter::with_capacity(64 * 1024, w);
                let mut on_broken = Some(on_broken);
                let mut broken = false;
                while let Ok(msg) = rx.recv() {
                    let mut next = Some(msg);
                    // Write everything queued, then flush once.
                    while let Some(m) = next.take() {
                        match m {
                            OutMsg::Line(l) if !broken => {
                                if w.write_all(&l).and_then(|_| w.write_all(b"\n")).is_err() {
                                    broken = true;
                                }
                            }
                            OutMsg::Line(_) => {}
                            OutMsg::Flush(ack) => {
                                if !broken && w.flush().is_err() {
                                    broken = true;
                                }
                                let _ = ack.send(());
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                    if !broken && w.flush().is_err() {
                        broken = true;
                    }
                    if broken {
                        if let Some(f) = on_broken.take() {
                            f();
                        }
                    }
                }
                let _ = w.flush();
            })
            .expect("spawn stdout thread");
        Out { tx }
    }

    /// Write one JSON value as a compact line.
    pub fn value(&self, v: &serde_json::Value) {
        if let Ok(s) = serde_json::to_vec(v) {
            let _ = self.tx.send(OutMsg::Line(s.into()));
        }
    }

    /// Write JSON text that is already known to be valid UTF-8 JSON, without copying it.
    /// JSON strings cannot hold raw newlines, so any CR/LF is whitespace between tokens and
    /// is dropped to keep one message per line.
    pub fn json_text(&self, text: bytes::Bytes) {
        let line = if memchr::memchr2(b'\n', b'\r', &text).is_some() {
            text.iter()
                .copied()
                .filter(|&b| b != b'\n' && b != b'\r')
                .collect::<Vec<u8>>()
                .into()
        } else {
            text
        };
        let _ = self.tx.send(OutMsg::Line(line));
    }

    /// A JSON-RPC error response for `id` (null when the request could not be parsed).
    pub fn error(&self, id: Option<&serde_json::Value>, code: i64, message: &str) {
        self.value(&serde_json::json!({
            "jsonrpc": "2.0",
            "id": id.cloned().unwrap_or(serde_json::Value::Null),
            "error": { "code": code, "message": message },
        }));
    }

    /// Wait (bounded) until everything sent so far has been written and flushed.
    pub async fn flush(&self) {
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(OutMsg::Flush(ack_tx)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || ack_rx.recv_timeout(std::time::Duration::from_secs(2))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(std::io::BufReader::with_capacity(7, input), max);
        let mut out = vec![];
        loop {
            match r.next_input() {
                Input::Line(l) => out.push(String::from_utf8_lossy(&l).into_owned()),
                Input::TooLarge(n) => out.push(format!("<too large: {n}>")),
                Input::Eof => return out,
            }
        }
    }

    #[test]
    fn framing_table() {
        // (input, max, expected lines) with the reason for each row.
        let rows: &[(&[u8], usize, &[&str])] = &[
            (b"{\"a\":1}\n{\"b\":2}\n", 100, &["{\"a\":1}", "{\"b\":2}"]), // plain LF framing
            (b"{\"a\":1}\r\n", 100, &["{\"a\":1}"]),                       // CRLF from Windows hosts
            (b"\n\n  \n{\"a\":1}\n", 100, &["{\"a\":1}"]),                 // empty lines are skipped
            (b"{\"a\":1}", 100, &["{\"a\":1}"]),                           // last line without newline
            (b"0123456789abcdef\n{}\n", 8, &["<too large: 16>", "{}"]),    // oversize line dropped, next kept
            (b"0123456789abcdef", 8, &["<too large: 16>"]),                // oversize at EOF
        ];
        for (input, max, want) in rows {
            assert_eq!(lines(input, *max), *want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn json_text_drops_line_breaks_between_tokens() {
        let (tx, rx) = std::sync::mpsc::channel();
        let out = Out { tx };
        out.json_text(bytes::Bytes::from_static(b"{\n  \"a\": \"x\\ny\"\r\n}"));
        match rx.recv().unwrap() {
            OutMsg::Line(l) => assert_eq!(&l[..], b"{  \"a\": \"x\\ny\"}"),
            _ => panic!("expected a line"),
        }
    }
}
