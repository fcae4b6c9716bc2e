//! What the host's stdio client needs beyond well-formed JSON-RPC lines.
//!
//! **Progress before its response, as the client will see it.** The TypeScript SDK's stdio
//! transport (most hosts) dispatches every message of one read in a loop; a notification
//! handler runs a microtask later, but a response removes its request's progress handler at
//! once. So a last `notifications/progress` that shares a read with the response is dropped
//! ("unknown token"). The proxy remembers which requests asked for progress (their
//! `_meta.progressToken`) and whether a message carrying that token went out; such a
//! request's response is written only once the client has read what precedes it (the
//! kernel says how much of stdout is unread), waiting at most [`HOLD`]. Every other response
//! takes the usual path.
//!
//! **No line larger than the client reads.** The same transport refuses a line over 10 MiB
//! and closes (the host then kills the proxy): `--max-output-bytes` turns a larger answer
//! into an error for its request, and drops a larger notification or server request.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a response waits for the client to read the messages before it. The wait
/// ends as soon as the client has read them (usually within a millisecond or two; on a busy
/// machine, measured here with a load of 5 on 2 cores, up to ~100 ms); while it lasts nothing
/// new reaches the client, which is not reading anyway. A client that stopped reading must
/// not stall the proxy: after [`GIVE_UP_AFTER`] waits in a row that ran out, the bound drops
/// to [`HOLD_SHORT`] until a wait ends early again.
pub const HOLD: Duration = Duration::from_millis(100);
pub const HOLD_SHORT: Duration = Duration::from_millis(5);
const GIVE_UP_AFTER: u32 = 3;

/// Requests with a progress token held in memory at most; beyond that (requests the server
/// never answered) the oldest knowledge is dropped, which only costs the wait.
const MAX_WATCHED: usize = 4096;

/// The SDK's stdio reader refuses a buffer over 10 MiB; it reads 64 KiB at a time, so a line
/// plus what follows it in the same read must stay under that.
pub const DEFAULT_MAX_OUTPUT: usize = 10 * 1024 * 1024 - 64 * 1024;

#[derive(Default)]
pub struct Host {
    max_output: AtomicUsize,
    /// How many requests are watched (the fast path reads only this).
    watched: AtomicUsize,
    state: Mutex<Watch>,
}

#[derive(Default)]
struct Watch {
    /// Request id (as JSON text) → (its progress token, whether a message carrying it went out).
    by_id: HashMap<String, (String, bool)>,
    /// Progress token (as JSON text) → request id.
    by_token: HashMap<String, String>,
}

impl Host {
    pub fn new(max_output: usize) -> Self {
        Host {
            max_output: AtomicUsize::new(max_output),
            ..Host::default()
        }
    }

    /// The largest line the client takes (0: no limit).
    pub fn max_output(&self) -> usize {
        self.max_output.load(Ordering::Relaxed)
    }

    pub fn set_max_output(&self, n: usize) {
        self.max_output.store(n, Ordering::Relaxed);
    }

    /// A client request `id` asks for progress under `token`.
    pub fn expect_progress(&self, id: &Value, token: &Value) {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if w.by_id.len() >= MAX_WATCHED {
            w.by_id.clear();
            w.by_token.clear();
        }
        let (id, token) = (id.to_string(), token.to_string());
        if let Some((old, _)) = w.by_id.insert(id.clone(), (token.clone(), false)) {
            w.by_token.remove(&old);
        }
        w.by_token.insert(token, id);
        self.watched.store(w.by_id.len(), Ordering::Release);
    }

    /// A server message carrying `token` is about to be written.
    pub fn progress_written(&self, token: &Value) {
        if self.watched.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(id) = w.by_token.get(&token.to_string()).cloned() else {
            return;
        };
        if let Some(entry) = w.by_id.get_mut(&id) {
            entry.1 = true;
        }
    }

    /// The answer to `id` is about to be written (the request is done): true when a message
    /// about it went out before, so the answer should wait until the client read that.
    pub fn answering(&self, id: &Value) -> bool {
        if self.watched.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some((token, noted)) = w.by_id.remove(&id.to_string()) else {
            return false;
        };
        w.by_token.remove(&token);
        self.watched.store(w.by_id.len(), Ordering::Release);
        noted
    }
}

/// How a descriptor tells how much of what was written to it is still unread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unread {
    /// A Unix socket: `SIOCOUTQ`, what the peer has not read yet.
    #[cfg(target_os = "linux")]
    Socket(i32),
    /// A pipe: `FIONREAD`, the bytes in it.
    #[cfg(target_os = "linux")]
    Pipe(i32),
    /// No way to ask (a file, a terminal, another platform): a short fixed pause instead.
    Unknown,
}

impl Unread {
    /// How to watch `fd`; `None` when there is nothing to wait for (a writer that is not a
    /// descriptor, a file, a terminal).
    pub fn of(fd: Option<i32>) -> Option<Unread> {
        let fd = fd?;
        #[cfg(target_os = "linux")]
        return match super::stdio::file_type(fd) {
            Some(libc::S_IFSOCK) => Some(Unread::Socket(fd)),
            Some(libc::S_IFIFO) => Some(Unread::Pipe(fd)),
            // A file or a terminal: nobody reads in messages.
            Some(libc::S_IFREG) | Some(libc::S_IFCHR) => None,
            _ => Some(Unread::Unknown),
        };
        #[cfg(not(target_os = "linux"))]
        {
            let _ = fd;
            Some(Unread::Unknown)
        }
    }

    /// Bytes written and not yet read, if the kernel says.
    fn bytes(self) -> Option<usize> {
        #[cfg(target_os = "linux")]
        {
            let mut n: libc::c_int = 0;
            // SAFETY: ioctl on a descriptor we write to, into an owned int.
            let r = match self {
                Unread::Socket(fd) => unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) },
                Unread::Pipe(fd) => unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) },
                Unread::Unknown => return None,
            };
            (r == 0 && n >= 0).then_some(n as usize)
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// Wait until everything written so far has been read, at most `bound`. How long it took.
    pub fn wait_read(self, bound: Duration) -> Duration {
        let start = Instant::now();
        let mut spins = 0u32;
        let mut nap = Duration::from_micros(50);
        loop {
            match self.bytes() {
                Some(0) => break,
                Some(_) => {}
                // No way to know: give the reader a moment (it usually needs less than this).
                None => {
                    std::thread::sleep(bound.min(Duration::from_millis(1)));
                    break;
                }
            }
            if start.elapsed() >= bound {
                break;
            }
            // The reader is usually awake within microseconds: yield first, then nap a little
            // longer each time (a fifth of a millisecond at most: the answer should follow
            // the client's read closely).
            spins += 1;
            if spins < 50 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_micros(200));
            }
        }
        start.elapsed()
    }
}

/// The bound of each wait: [`HOLD`], or [`HOLD_SHORT`] while the client seems to have
/// stopped reading. Lives on the writer thread.
#[derive(Default)]
pub struct Patience {
    ran_out: u32,
}

impl Patience {
    /// Wait (see [`Unread::wait_read`]) with the current bound; true if the client read all.
    pub fn wait(&mut self, u: Unread) -> bool {
        let bound = if self.ran_out >= GIVE_UP_AFTER {
            HOLD_SHORT
        } else {
            HOLD
        };
        let waited = u.wait_read(bound);
        if waited >= bound {
            self.ran_out = self.ran_out.saturating_add(1);
            tracing::debug!(
                "the client did not read within {}ms; answering anyway",
                bound.as_millis()
            );
            false
        } else {
            self.ran_out = 0;
            tracing::trace!(
                "held an answer {}µs until the client had read what precedes it",
                waited.as_micros()
            );
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_answers_after_progress_wait() {
        let h = Host::new(0);
        // (what happens, whether the answer to id 1 then waits) with the reason per row.
        assert!(!h.answering(&json!(1)), "nothing watched: the fast path");
        h.expect_progress(&json!(1), &json!("t1"));
        h.expect_progress(&json!(2), &json!(2));
        h.progress_written(&json!("t2")); // someone else's token
        h.progress_written(&json!("2")); // a string is not the number 2
        assert!(!h.answering(&json!(1)), "asked for progress, none came");
        assert!(!h.answering(&json!(1)), "forgotten once answered");
        h.expect_progress(&json!(1), &json!("t1"));
        h.progress_written(&json!("t1"));
        assert!(h.answering(&json!(1)), "progress went out before the answer");
        h.progress_written(&json!(2));
        assert!(h.answering(&json!(2)));
        assert_eq!(h.watched.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn watching_is_bounded() {
        let h = Host::new(0);
        for i in 0..(MAX_WATCHED + 10) {
            h.expect_progress(&json!(i), &json!(i));
        }
        assert!(h.watched.load(Ordering::Relaxed) <= MAX_WATCHED);
        h.progress_written(&json!(MAX_WATCHED + 5));
        assert!(h.answering(&json!(MAX_WATCHED + 5)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn waits_until_the_reader_has_read() {
        for socket in [true, false] {
            let mut fds = [0; 2];
            // SAFETY: socketpair/pipe into an owned array of two.
            let ok = unsafe {
                if socket {
                    libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr())
                } else {
                    libc::pipe(fds.as_mut_ptr())
                }
            };
            assert_eq!(ok, 0);
            let (r, w) = if socket { (fds[1], fds[0]) } else { (fds[0], fds[1]) };
            let u = Unread::of(Some(w)).unwrap();
            assert_ne!(u, Unread::Unknown);
            assert!(u.wait_read(HOLD) < HOLD, "nothing written: no wait");
            // SAFETY: write a static slice to our own descriptor.
            unsafe { libc::write(w, b"abc\n".as_ptr().cast(), 4) };
            assert!(u.bytes().unwrap() > 0);
            assert!(
                u.wait_read(Duration::from_millis(20)) >= Duration::from_millis(20),
                "nobody reads: bounded"
            );
            let reader = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(3));
                let mut buf = [0u8; 8];
                // SAFETY: read into an owned buffer.
                unsafe { libc::read(r, buf.as_mut_ptr().cast(), buf.len()) };
            });
            let took = u.wait_read(Duration::from_secs(2));
            reader.join().unwrap();
            assert!(
                took >= Duration::from_millis(2) && took < Duration::from_secs(1),
                "{took:?}"
            );
            assert_eq!(u.bytes(), Some(0));
            if socket {
                // A client that stopped reading: after a few waits that ran out, short ones.
                // SAFETY: as above.
                unsafe { libc::write(w, b"abc\n".as_ptr().cast(), 4) };
                let mut p = Patience::default();
                for _ in 0..GIVE_UP_AFTER {
                    assert!(!p.wait(u));
                }
                let t = Instant::now();
                assert!(!p.wait(u));
                assert!(t.elapsed() < HOLD / 2, "{:?}", t.elapsed());
            }
            // SAFETY: closing our own descriptors.
            unsafe {
                libc::close(r);
                libc::close(w);
            }
        }
    }
}
