//! Logging: everything goes to stderr (stdout belongs to JSON-RPC). `--silent` shows errors
//! only, `--debug` traces each message by method and id (never bodies or headers).

use crate::config::LogLevel;
use tracing::level_filters::LevelFilter;

pub fn init(level: LogLevel) {
    let filter = match level {
        LogLevel::Silent => LevelFilter::ERROR,
        LogLevel::Normal => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    };
    // try_init: the JS API may run several proxies in one process; the first sets the level.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(filter)
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .try_init();
}
