//! The Node binding: the only file with `#[napi]`. Thin adapters over the core.

use napi_derive::napi;

/// Run the command line `argv` (without `node` and the script); resolves with the exit code.
#[napi]
pub async fn run(argv: Vec<String>) -> i32 {
    crate::app::run(argv).await
}

/// Ask every running proxy in this process to stop cleanly (GET stream closed, session
/// DELETEd, stdout flushed); `run` then resolves.
#[napi]
pub fn shutdown() {
    crate::shutdown::trigger();
}
