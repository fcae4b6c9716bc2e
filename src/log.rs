//! Logging: everything goes to stderr (stdout belongs to JSON-RPC). `--silent` shows errors
//! only, `--debug` traces each message by method and id (never bodies or headers). Other
//! crates (HTTP internals) speak only when something is wrong.

use crate::config::LogLevel;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub fn init(level: LogLevel) {
    let (ours, others) = match level {
        LogLevel::Silent => (LevelFilter::ERROR, LevelFilter::ERROR),
        LogLevel::Normal => (LevelFilter::INFO, LevelFilter::WARN),
        LogLevel::Debug => (LevelFilter::DEBUG, LevelFilter::WARN),
    };
    let filter = Targets::new()
        .with_target(env!("CARGO_CRATE_NAME"), ours)
        .with_default(others);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .with_filter(filter);
    // try_init: the JS API may run several proxies in one process; the first sets the level.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}
