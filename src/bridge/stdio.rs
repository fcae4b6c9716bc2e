//! Local stdio framing. One thread reads stdin (blocking, size-limited lines); one thread
//! owns stdout and is its only writer. Every line written is one compact JSON-RPC message.

use super::{codes, host, Envelope, Msg};
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

/// `AUTHFUL_STDIO_THREADS=1`: read and write stdio on the two threads only, never directly
/// from the runtime (a switch for comparing the two in benchmarks, and a way out should a
/// platform misbehave).
fn threads_only() -> bool {
    std::env::var_os("AUTHFUL_STDIO_THREADS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The file type bits (`S_IFSOCK`, `S_IFIFO`, ...) of a descriptor, if `fstat` works on it.
#[cfg(unix)]
pub(super) fn file_type(fd: i32) -> Option<libc::mode_t> {
    // SAFETY: fstat into a zeroed, owned buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st.st_mode & libc::S_IFMT)
    }
}

/// The client's messages from stdin, size-limited lines (see [`Splitter`]).
///
/// When stdin is a socket (what a Node parent gives its child) the lines are read on the
/// current runtime with `MSG_DONTWAIT`, so a message wakes the bridge directly. Otherwise a
/// dedicated thread does blocking reads: pipes and terminals cannot be read without
/// blocking unless the descriptor is made non-blocking, which would also change it for
/// every other process that shares it. Call from within the bridge's runtime.
pub fn stdin(max: usize) -> mpsc::Receiver<Input> {
    #[cfg(unix)]
    if let Some(rx) = socket::spawn(max) {
        tracing::debug!("stdin: a socket, read on the bridge's runtime");
        return rx;
    }
    tracing::debug!("stdin: read on a thread");
    spawn_reader(std::io::BufReader::with_capacity(1 << 16, std::io::stdin()), max)
}

/// Read `reader` line by line on a dedicated thread (see [`LineReader`]).
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

/// Splits a byte stream into lines: empty lines are skipped, a trailing CR is removed, and a
/// line over `max` bytes is reported as `TooLarge` without being buffered. Fed with whatever
/// chunks the reads return.
pub struct Splitter {
    line: Vec<u8>,
    seen: usize,
    max: usize,
}

impl Splitter {
    pub fn new(max: usize) -> Self {
        Splitter {
            line: Vec::new(),
            seen: 0,
            max,
        }
    }

    /// Take bytes from `buf` up to and including the first newline: how many were used, and
    /// the line that newline ended (if it is not empty).
    pub fn feed(&mut self, buf: &[u8]) -> (usize, Option<Input>) {
        let (chunk, found) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        self.seen += chunk.len();
        if self.seen <= self.max {
            self.line.extend_from_slice(chunk);
        } else if !self.line.is_empty() {
            self.line = Vec::new();
        }
        if !found {
            return (chunk.len(), None);
        }
        (chunk.len() + 1, self.end())
    }

    /// The end of input (or of a line): what is pending, if anything.
    pub fn end(&mut self) -> Option<Input> {
        finish(std::mem::take(&mut self.line), std::mem::take(&mut self.seen), self.max)
    }
}

/// [`Splitter`] over a blocking reader: one [`Input`] per call, `Eof` at the end.
pub struct LineReader<R> {
    inner: R,
    split: Splitter,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            split: Splitter::new(max),
        }
    }

    pub fn next_input(&mut self) -> Input {
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // A read error ends the input; a half-read line is not a message.
                Err(_) => return Input::Eof,
            };
            if buf.is_empty() {
                // EOF: a last line without a newline still counts.
                return self.split.end().unwrap_or(Input::Eof);
            }
            let (used, item) = self.split.feed(buf);
            self.inner.consume(used);
            if let Some(item) = item {
                return item;
            }
        }
    }
}

/// Reading a socket stdin on the runtime (see [`stdin`]).
#[cfg(unix)]
mod socket {
    use super::{Input, Splitter};
    use std::os::fd::{AsRawFd, RawFd};
    use tokio::io::unix::AsyncFd;
    use tokio::sync::mpsc;

    struct Fd(RawFd);

    impl AsRawFd for Fd {
        fn as_raw_fd(&self) -> RawFd {
            self.0
        }
    }

    pub fn spawn(max: usize) -> Option<mpsc::Receiver<Input>> {
        if super::threads_only() {
            return None;
        }
        // SAFETY: fd 0 stays open, and the same description, for the life of the process:
        // nothing in the addon or the launcher closes or replaces it.
        unsafe { spawn_fd(0, max) }
    }

    /// Lines from `fd` if it is a socket, read by a task on the current runtime.
    ///
    /// # Safety
    /// `fd` must stay open, and refer to the same socket, until the task has ended.
    pub unsafe fn spawn_fd(fd: RawFd, max: usize) -> Option<mpsc::Receiver<Input>> {
        if super::file_type(fd) != Some(libc::S_IFSOCK) {
            return None;
        }
        // SAFETY: upheld by the caller.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(fd), tokio::io::Interest::READABLE) }.ok()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(read(fd, tx, max));
        Some(rx)
    }

    async fn read(fd: AsyncFd<Fd>, tx: mpsc::Sender<Input>, max: usize) {
        let mut split = Splitter::new(max);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = loop {
                let Ok(mut ready) = fd.readable().await else { break -1 };
                let r = ready.try_io(|_| {
                    // SAFETY: recv into our own buffer, within its length.
                    let n =
                        unsafe { libc::recv(fd.get_ref().0, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
                    if n < 0 {
                        Err(std::io::Error::last_os_error())
                    } else {
                        Ok(n)
                    }
                });
                match r {
                    Ok(Ok(n)) => break n,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Ok(Err(_)) => break -1,
                    Err(_would_block) => continue,
                }
            };
            if n <= 0 {
                tracing::debug!("stdin reached its end");
                if let Some(last) = split.end() {
                    let _ = tx.send(last).await;
                }
                let _ = tx.send(Input::Eof).await;
                return;
            }
            let mut data = &buf[..n as usize];
            while !data.is_empty() {
                let (used, item) = split.feed(data);
                data = &data[used..];
                if let Some(item) = item {
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
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

/// JSON text as one line: JSON strings cannot hold raw newlines, so any CR/LF is whitespace
/// between tokens and is dropped.
fn one_line(text: bytes::Bytes) -> bytes::Bytes {
    if memchr::memchr2(b'\n', b'\r', &text).is_some() {
        text.iter()
            .copied()
            .filter(|&b| b != b'\n' && b != b'\r')
            .collect::<Vec<u8>>()
            .into()
    } else {
        text
    }
}

enum OutMsg {
    /// One message; the writer adds the newline.
    Line(bytes::Bytes),
    /// Bytes written as they are: the rest of a message whose start went out directly.
    Rest(bytes::Bytes),
    /// One message written once the client has read everything before it (see [`host`]).
    Held(bytes::Bytes),
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The only way to stdout. Cheap to clone; lines are written in the order they were sent.
///
/// A line goes out straight from the sending thread when that cannot block: nothing is
/// queued for the writer thread, and stdout is a socket (a Node parent's stdio: written with
/// `MSG_DONTWAIT`) or an empty pipe with room for the whole line. Anything else, and whatever
/// a direct write leaves over, goes to the writer thread. Skipping that hand-off saves a
/// thread wake-up per message (in `npm run bench`, about 0.01-0.04 ms of a 0.3 ms call).
#[derive(Clone)]
pub struct Out {
    tx: std::sync::mpsc::Sender<OutMsg>,
    direct: Option<std::sync::Arc<direct::Direct>>,
    host: std::sync::Arc<host::Host>,
}

impl Out {
    /// Start the writer thread on `w`. `on_broken` runs once if a write fails (client gone).
    pub fn spawn<W: Write + Send + 'static>(w: W, on_broken: impl FnOnce() + Send + 'static) -> Out {
        Self::start(w, on_broken, None, None)
    }

    /// The process's stdout, with direct writes where the platform and the descriptor allow.
    pub fn stdout(on_broken: impl FnOnce() + Send + 'static) -> Out {
        let direct = direct::Direct::probe_stdout();
        match &direct {
            Some(d) => tracing::debug!("stdout: {}, written directly when that cannot block", d.describe()),
            None => tracing::debug!("stdout: written on a thread"),
        }
        Self::start(std::io::stdout(), on_broken, direct, Some(1))
    }

    /// `fd`: the descriptor `w` writes to, asked how much is unread before a held line.
    fn start<W: Write + Send + 'static>(
        w: W,
        on_broken: impl FnOnce() + Send + 'static,
        direct: Option<direct::Direct>,
        fd: Option<i32>,
    ) -> Out {
        let direct = direct.map(std::sync::Arc::new);
        let queued = direct.clone();
        let unread = host::Unread::of(fd);
        let mut patience = host::Patience::default();
        let (tx, rx) = std::sync::mpsc::channel::<OutMsg>();
        std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let mut w = std::io::BufWriter::with_capacity(64 * 1024, w);
                let mut on_broken = Some(on_broken);
                let mut broken = false;
                while let Ok(msg) = rx.recv() {
                    let mut next = Some(msg);
                    let mut written = 0;
                    // Write everything queued, then flush once.
                    while let Some(m) = next.take() {
                        match m {
                            OutMsg::Line(l) if !broken => {
                                written += 1;
                                if w.write_all(&l).and_then(|_| w.write_all(b"\n")).is_err() {
                                    broken = true;
                                }
                            }
                            OutMsg::Rest(r) if !broken => {
                                written += 1;
                                if w.write_all(&r).is_err() {
                                    broken = true;
                                }
                            }
                            OutMsg::Held(l) if !broken => {
                                written += 1;
                                broken = w.flush().is_err();
                                if let Some(u) = unread.filter(|_| !broken) {
                                    patience.wait(u);
                                }
                                if broken || w.write_all(&l).and_then(|_| w.write_all(b"\n")).is_err() {
                                    broken = true;
                                }
                            }
                            OutMsg::Line(_) | OutMsg::Rest(_) | OutMsg::Held(_) => written += 1,
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
                    if let Some(d) = &queued {
                        d.written(written, broken);
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
        Out {
            tx,
            direct,
            host: std::sync::Arc::new(host::Host::new(host::DEFAULT_MAX_OUTPUT)),
        }
    }

    /// The largest line the client takes (`--max-output-bytes`; 0: no limit).
    pub fn set_max_output(&self, n: usize) {
        self.host.set_max_output(n);
    }

    /// A client request that may get progress notifications (see [`host`]).
    pub fn expect_progress(&self, msg: &Msg) {
        if let (Some(id), Some(token)) = (&msg.id, &msg.progress_token) {
            self.host.expect_progress(id, token);
        }
    }

    /// A line written once the client has read everything before it.
    fn send_held(&self, line: bytes::Bytes) {
        if let Some(d) = &self.direct {
            let _order = d.lock.lock().unwrap_or_else(|e| e.into_inner());
            d.queue();
            let _ = self.tx.send(OutMsg::Held(line));
        } else {
            let _ = self.tx.send(OutMsg::Held(line));
        }
    }

    /// Write a message from the server (JSON text known to be valid UTF-8, parsed as `env`),
    /// without a copy: within `--max-output-bytes`, and an answer after the progress about
    /// its request has been read.
    pub(crate) fn server_message(&self, text: bytes::Bytes, env: &Envelope) {
        let line = one_line(text);
        let max = self.host.max_output();
        if max > 0 && line.len() > max {
            return self.too_large(line.len(), max, env);
        }
        if let Some(token) = env.progress_token() {
            self.host.progress_written(token);
        }
        match &env.id {
            Some(id) if env.is_response() && self.host.answering(id) => self.send_held(line),
            _ => self.send(line),
        }
    }

    fn too_large(&self, n: usize, max: usize, env: &Envelope) {
        match (&env.method, &env.id) {
            (None, Some(id)) => {
                tracing::warn!("the MCP server's answer to id {id} is {n} bytes, over the limit of {max} (--max-output-bytes); the client gets an error instead");
                self.error(
                    Some(id),
                    codes::TOO_LARGE,
                    &format!("the MCP server's answer is {n} bytes, more than the limit of {max} bytes for one message to this client (--max-output-bytes; MCP clients on stdio commonly stop at 10 MiB)"),
                );
            }
            (Some(m), Some(id)) => tracing::warn!(
                "dropped the MCP server's request `{m}` (id {id}): {n} bytes, over the limit of {max} (--max-output-bytes)"
            ),
            (Some(m), None) => tracing::warn!(
                "dropped the MCP server's notification `{m}`: {n} bytes, over the limit of {max} (--max-output-bytes)"
            ),
            (None, None) => {
                tracing::warn!("dropped a message from the MCP server: {n} bytes, over the limit of {max} (--max-output-bytes)")
            }
        }
    }

    fn send(&self, line: bytes::Bytes) {
        let Some(d) = &self.direct else {
            let _ = self.tx.send(OutMsg::Line(line));
            return;
        };
        // The lock keeps direct writes and queueing in one order across threads.
        let _order = d.lock.lock().unwrap_or_else(|e| e.into_inner());
        match d.try_write(&line) {
            Some(n) if n > line.len() => {}
            Some(n) => {
                // The socket took part of it (a large message): the writer thread sends the
                // rest, without a copy, and the newline.
                if n < line.len() {
                    d.queue();
                    let _ = self.tx.send(OutMsg::Rest(line.slice(n..)));
                }
                d.queue();
                let _ = self.tx.send(OutMsg::Rest(bytes::Bytes::from_static(b"\n")));
            }
            None => {
                d.queue();
                let _ = self.tx.send(OutMsg::Line(line));
            }
        }
    }

    /// Write one JSON value as a compact line.
    pub fn value(&self, v: &serde_json::Value) {
        if let Ok(s) = serde_json::to_vec(v) {
            self.send(s.into());
        }
    }

    /// Write JSON text that is already known to be valid UTF-8 JSON, without copying it.
    /// JSON strings cannot hold raw newlines, so any CR/LF is whitespace between tokens and
    /// is dropped to keep one message per line.
    pub fn json_text(&self, text: bytes::Bytes) {
        self.send(one_line(text));
    }

    /// A JSON-RPC error response for `id` (null when the request could not be parsed).
    pub fn error(&self, id: Option<&serde_json::Value>, code: i64, message: &str) {
        self.answer(id, serde_json::json!({ "code": code, "message": message }));
    }

    /// A JSON-RPC error response for `id` with this error object (the server's own, say).
    pub fn answer(&self, id: Option<&serde_json::Value>, error: serde_json::Value) {
        let v = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id.cloned().unwrap_or(serde_json::Value::Null),
            "error": error,
        });
        let Ok(s) = serde_json::to_vec(&v) else { return };
        match id {
            Some(id) if self.host.answering(id) => self.send_held(s.into()),
            _ => self.send(s.into()),
        }
    }

    /// Wait (bounded) until everything sent so far has been written and flushed.
    pub async fn flush(&self) {
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(OutMsg::Flush(ack_tx)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || ack_rx.recv_timeout(std::time::Duration::from_secs(2))).await;
        }
    }
}

/// Direct writes to stdout from the sending thread (see [`Out`]).
mod direct {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[derive(Clone, Copy)]
    enum Kind {
        /// A socket: `MSG_DONTWAIT` makes this one write non-blocking, whatever the flags.
        #[cfg(unix)]
        Socket,
        /// A pipe: a write of at most its capacity into it while it is empty never blocks (we
        /// are its only writer). The capacity is asked each time: the reader may change it.
        #[cfg(target_os = "linux")]
        Pipe,
    }

    pub struct Direct {
        #[cfg(unix)]
        fd: i32,
        #[cfg_attr(not(unix), allow(dead_code))]
        kind: Kind,
        /// Messages handed to the writer thread and not yet flushed by it.
        queued: AtomicUsize,
        /// The writer thread could not write (client gone).
        broken: AtomicBool,
        pub lock: Mutex<()>,
    }

    impl Direct {
        pub fn probe_stdout() -> Option<Direct> {
            if super::threads_only() {
                return None;
            }
            #[cfg(unix)]
            return Self::probe(1);
            #[cfg(not(unix))]
            None
        }

        /// Direct writes to `fd`, if it is a socket or (on Linux) a pipe.
        #[cfg(unix)]
        pub fn probe(fd: i32) -> Option<Direct> {
            // SAFETY: setsockopt/fcntl on a descriptor we were given, with owned arguments.
            let kind = unsafe {
                match super::file_type(fd)? {
                    libc::S_IFSOCK => {
                        // Node ignores SIGPIPE; on macOS, where sendmsg has no MSG_NOSIGNAL,
                        // do not depend on the host for that.
                        #[cfg(any(target_os = "macos", target_os = "ios"))]
                        {
                            let on: libc::c_int = 1;
                            libc::setsockopt(
                                fd,
                                libc::SOL_SOCKET,
                                libc::SO_NOSIGPIPE,
                                (&on as *const libc::c_int).cast(),
                                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                            );
                        }
                        Kind::Socket
                    }
                    #[cfg(target_os = "linux")]
                    libc::S_IFIFO if libc::fcntl(fd, libc::F_GETPIPE_SZ) > 0 => Kind::Pipe,
                    _ => return None,
                }
            };
            Some(Direct {
                fd,
                kind,
                queued: AtomicUsize::new(0),
                broken: AtomicBool::new(false),
                lock: Mutex::new(()),
            })
        }

        pub fn describe(&self) -> &'static str {
            match self.kind {
                #[cfg(unix)]
                Kind::Socket => "a socket",
                #[cfg(target_os = "linux")]
                Kind::Pipe => "a pipe",
            }
        }

        pub fn queue(&self) {
            self.queued.fetch_add(1, Ordering::AcqRel);
        }

        /// The writer thread flushed `n` queued messages, or gave up (`broken`): then nothing
        /// more goes out directly either, or later lines could reach the client without the
        /// ones the writer lost.
        pub fn written(&self, n: usize, broken: bool) {
            if broken {
                self.broken.store(true, Ordering::Release);
            }
            self.queued.fetch_sub(n, Ordering::AcqRel);
        }

        /// Write `line` and a newline now if nothing is queued and it cannot block. Returns
        /// the bytes written (`line.len() + 1` is all of it), or `None` when nothing was tried.
        /// Call with `lock` held.
        pub fn try_write(&self, line: &[u8]) -> Option<usize> {
            if self.queued.load(Ordering::Acquire) != 0 || self.broken.load(Ordering::Acquire) {
                return None;
            }
            #[cfg(unix)]
            {
                let iov = [
                    libc::iovec {
                        iov_base: line.as_ptr() as *mut libc::c_void,
                        iov_len: line.len(),
                    },
                    libc::iovec {
                        iov_base: b"\n".as_ptr() as *mut libc::c_void,
                        iov_len: 1,
                    },
                ];
                let n = match self.kind {
                    Kind::Socket => {
                        #[cfg(target_os = "linux")]
                        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
                        #[cfg(not(target_os = "linux"))]
                        let flags = libc::MSG_DONTWAIT;
                        // SAFETY: the iovecs point into `line` and a static, both alive for
                        // the call; msghdr is zeroed apart from them.
                        unsafe {
                            let mut msg: libc::msghdr = std::mem::zeroed();
                            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
                            msg.msg_iovlen = 2;
                            libc::sendmsg(self.fd, &msg, flags)
                        }
                    }
                    #[cfg(target_os = "linux")]
                    Kind::Pipe => {
                        let mut unread: libc::c_int = 0;
                        // SAFETY: fcntl/FIONREAD into an owned int; writev over valid iovecs.
                        unsafe {
                            let capacity = libc::fcntl(self.fd, libc::F_GETPIPE_SZ);
                            if capacity <= 0
                                || line.len() + 1 > capacity as usize
                                || libc::ioctl(self.fd, libc::FIONREAD, &mut unread) != 0
                                || unread != 0
                            {
                                return None;
                            }
                            libc::writev(self.fd, iov.as_ptr(), 2)
                        }
                    }
                };
                // On an error (would block, client gone) the writer thread takes the line
                // and meets the same condition in its own way.
                (n > 0).then_some(n as usize)
            }
            #[cfg(not(unix))]
            {
                let _ = line;
                None
            }
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
        let out = Out {
            tx,
            direct: None,
            host: Default::default(),
        };
        out.json_text(bytes::Bytes::from_static(b"{\n  \"a\": \"x\\ny\"\r\n}"));
        match rx.recv().unwrap() {
            OutMsg::Line(l) => assert_eq!(&l[..], b"{  \"a\": \"x\\ny\"}"),
            _ => panic!("expected a line"),
        }
    }

    #[cfg(unix)]
    fn socketpair() -> (i32, i32) {
        let mut fds = [0; 2];
        // SAFETY: socketpair into an owned array of two.
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) },
            0
        );
        (fds[0], fds[1])
    }

    /// Everything readable from `fd` until the other end is closed, on a thread.
    #[cfg(unix)]
    fn drain(fd: i32) -> std::thread::JoinHandle<Vec<u8>> {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        // SAFETY: the test hands over its own descriptor.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        std::thread::spawn(move || {
            let mut all = Vec::new();
            f.read_to_end(&mut all).unwrap();
            all
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn direct_pipe_writes_only_into_an_empty_pipe() {
        let mut fds = [0; 2];
        // SAFETY: pipe into an owned array of two.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (r, w) = (fds[0], fds[1]);
        let d = direct::Direct::probe(w).expect("a pipe");
        assert_eq!(d.describe(), "a pipe");
        assert_eq!(d.try_write(b"abc"), Some(4));
        assert_eq!(d.try_write(b"de"), None, "not while the reader has bytes to read");
        let mut buf = [0u8; 16];
        // SAFETY: read into an owned buffer.
        let n = unsafe { libc::read(r, buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(&buf[..n as usize], b"abc\n");
        assert_eq!(d.try_write(b"de"), Some(3));
        // SAFETY: as above.
        unsafe { libc::read(r, buf.as_mut_ptr().cast(), buf.len()) };
        d.queue();
        assert_eq!(d.try_write(b"f"), None, "not while the writer thread has lines queued");
        d.written(1, false);
        assert_eq!(d.try_write(&vec![b'x'; 8 << 20]), None, "not more than the pipe holds");
        // The reader may shrink the pipe after the start: the capacity is asked each time.
        // SAFETY: F_SETPIPE_SZ on our own pipe.
        assert!(unsafe { libc::fcntl(w, libc::F_SETPIPE_SZ, 4096) } > 0);
        assert_eq!(d.try_write(&[b'x'; 5000]), None, "a line larger than the shrunk pipe");
        assert_eq!(d.try_write(b"fits"), Some(5));
        // SAFETY: as above.
        unsafe { libc::read(r, buf.as_mut_ptr().cast(), buf.len()) };
        d.written(0, true);
        assert_eq!(
            d.try_write(b"g"),
            None,
            "nothing directly once the writer thread gave up"
        );
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }

    #[cfg(unix)]
    #[test]
    fn direct_socket_writes_keep_the_order_when_the_socket_is_full() {
        use std::os::fd::FromRawFd;
        let (a, b) = socketpair();
        let d = direct::Direct::probe(a).expect("a socket");
        assert_eq!(d.describe(), "a socket");
        // SAFETY: a second descriptor for the writer thread, closed when it ends.
        let file = unsafe { std::fs::File::from_raw_fd(libc::dup(a)) };
        let out = Out::start(file, || {}, Some(d), None);
        // Nobody reads yet: the big line fills the socket and its rest goes to the writer
        // thread. Then the reader starts, so the socket has room again now and then while
        // that rest is still being written: the later lines must wait for it all the same.
        let big = vec![b'y'; 16 << 20];
        out.send(bytes::Bytes::from_static(b"first"));
        out.send(big.clone().into());
        let reader = drain(b);
        for i in 0..100 {
            out.send(format!("after {i}").into_bytes().into());
            if i % 10 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(out.flush());
        drop(out);
        // SAFETY: closing our end; the writer thread closes its dup when it ends.
        unsafe { libc::close(a) };
        let got = reader.join().unwrap();
        let mut want = b"first\n".to_vec();
        want.extend_from_slice(&big);
        want.push(b'\n');
        for i in 0..100 {
            want.extend_from_slice(format!("after {i}\n").as_bytes());
        }
        assert!(
            got == want,
            "{} bytes in, {} out, in order: {}",
            want.len(),
            got.len(),
            got.starts_with(b"first\ny")
        );
    }

    #[cfg(unix)]
    #[test]
    fn socket_stdin_is_split_into_lines_on_the_runtime() {
        let (a, b) = socketpair();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // SAFETY: `a` stays open until the end of this test, after the task is done.
            let mut rx = unsafe { socket::spawn_fd(a, 8) }.expect("a socket");
            let writer = std::thread::spawn(move || {
                for chunk in [&b"{\"a\":"[..], b"1}\r\n\n", b"0123456789\n{}\n{\"b\"", b":2}"] {
                    // SAFETY: write from a static slice to our own end.
                    unsafe { libc::write(b, chunk.as_ptr().cast(), chunk.len()) };
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                // SAFETY: closing our own end: the reader sees EOF.
                unsafe { libc::close(b) };
            });
            let mut got = vec![];
            while let Some(item) = rx.recv().await {
                got.push(match item {
                    Input::Line(l) => String::from_utf8(l).unwrap(),
                    Input::TooLarge(n) => format!("<too large: {n}>"),
                    Input::Eof => "<eof>".into(),
                });
            }
            writer.join().unwrap();
            assert_eq!(got, ["{\"a\":1}", "<too large: 10>", "{}", "{\"b\":2}", "<eof>"]);
        });
        // SAFETY: closing our own end.
        unsafe { libc::close(a) };
    }
}
