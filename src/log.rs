//! Logging: everything goes to stderr (stdout belongs to JSON-RPC). `--silent` shows errors
//! only, `--debug` traces each message by method and id (never bodies or headers). Other
//! crates (HTTP internals) speak only when something is wrong.
//!
//! The subscriber is the few lines below rather than `tracing-subscriber`: the proxy has no
//! spans, one output and one filter rule, and the general-purpose formatter cost about 90 KB
//! of the addon's 5 MB budget.

use crate::config::LogLevel;
use std::fmt::Write as _;
use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{span, Event, Metadata, Subscriber};

pub fn init(level: LogLevel) {
    let (ours, others) = match level {
        LogLevel::Silent => (LevelFilter::ERROR, LevelFilter::ERROR),
        LogLevel::Normal => (LevelFilter::INFO, LevelFilter::WARN),
        LogLevel::Debug => (LevelFilter::DEBUG, LevelFilter::WARN),
    };
    // The JS API may run several proxies in one process; the first one sets the level.
    let _ = tracing::subscriber::set_global_default(Stderr {
        ours,
        others,
        write: |line| {
            // One write per line, so lines from several threads do not interleave.
            let _ = std::io::stderr().write_all(line.as_bytes());
        },
    });
}

/// Writes each enabled event to stderr as one line: the level, then the message and fields.
struct Stderr {
    /// For this crate's events.
    ours: LevelFilter,
    /// For everyone else's.
    others: LevelFilter,
    /// Where a finished line (newline included) goes.
    write: fn(&str),
}

impl Stderr {
    fn limit(&self, m: &Metadata<'_>) -> LevelFilter {
        const CRATE: &str = env!("CARGO_CRATE_NAME");
        let target = m.target();
        if target == CRATE || target.strip_prefix(CRATE).is_some_and(|rest| rest.starts_with("::")) {
            self.ours
        } else {
            self.others
        }
    }
}

impl Subscriber for Stderr {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.limit(m) >= *m.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.ours.max(self.others))
    }

    fn event(&self, event: &Event<'_>) {
        let mut line = Line(format!("{:>5} ", event.metadata().level()));
        event.record(&mut line);
        line.0.push('\n');
        (self.write)(&line.0);
    }

    // No spans are used; these keep the trait satisfied.
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

/// The message first, then any other fields as ` name=value`.
struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.0.push_str(value),
            name => {
                let _ = write!(self.0, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = match field.name() {
            "message" => write!(self.0, "{value:?}"),
            name => write!(self.0, " {name}={value:?}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    #[test]
    fn one_line_per_event_with_a_limit_for_us_and_one_for_everyone_else() {
        let s = Stderr {
            ours: LevelFilter::DEBUG,
            others: LevelFilter::WARN,
            write: |line| LINES.lock().unwrap().push(line.to_string()),
        };
        assert_eq!(s.max_level_hint(), Some(LevelFilter::DEBUG));
        tracing::subscriber::with_default(s, || {
            tracing::debug!("negotiated protocol version {}", "2025-06-18");
            tracing::trace!("not shown");
            tracing::warn!(status = 502, name = "x", "the MCP server answered badly");
            // Another crate (or a name that merely starts like ours): warnings and errors only.
            tracing::info!(target: "hyper::proto", "not shown");
            tracing::info!(target: "authful_mcp_proxy_other", "not shown");
            tracing::error!(target: "hyper::proto", "connection reset");
        });
        assert_eq!(
            *LINES.lock().unwrap(),
            [
                "DEBUG negotiated protocol version 2025-06-18\n",
                " WARN the MCP server answered badly status=502 name=x\n",
                "ERROR connection reset\n",
            ]
        );
    }
}
