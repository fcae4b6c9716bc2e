//! Process-wide shutdown signal: stdin EOF, a closed stdout, or SIGINT/SIGTERM relayed from
//! the JS launcher all end the proxy through the same path (GET stream closed, session
//! DELETEd, stdout flushed).

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

static GENERATION: AtomicU64 = AtomicU64::new(0);

fn channel() -> &'static watch::Sender<u64> {
    static TX: std::sync::OnceLock<watch::Sender<u64>> = std::sync::OnceLock::new();
    TX.get_or_init(|| watch::channel(0).0)
}

/// A handle that resolves once `trigger()` is called after it was created.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<u64>,
    armed_at: u64,
}

impl Shutdown {
    /// Subscribe: triggers that happened before this call do not count.
    pub fn subscribe() -> Self {
        let rx = channel().subscribe();
        Shutdown {
            rx,
            armed_at: GENERATION.load(Ordering::SeqCst),
        }
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow() > self.armed_at
    }

    pub async fn wait(&mut self) {
        let armed = self.armed_at;
        let _ = self.rx.wait_for(|g| *g > armed).await;
    }
}

/// Ask every running proxy in this process to shut down cleanly.
pub fn trigger() {
    let g = GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
    channel().send_replace(g);
}
