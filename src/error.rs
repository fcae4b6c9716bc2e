//! The top-level error: what went wrong, a hint that names the fix, and the exit code.
//! Module errors (`AuthError`, `ConfigError`, ...) are wrapped here; nothing decides on an
//! error by matching its text.

use crate::auth::AuthError;
use crate::config::ConfigError;

/// Documented exit codes (README "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    /// A runtime failure: backend or identity provider unreachable, and so on.
    Failure = 1,
    /// Wrong usage or configuration.
    Usage = 2,
    /// Login needed but it failed: denied, timed out, or the provider refused.
    Auth = 3,
    /// `status`: no cached login for this configuration.
    NotLoggedIn = 4,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::Usage,
            Error::Auth(e) if e.is_config_problem() => ExitCode::Usage,
            Error::Auth(_) => ExitCode::Auth,
            Error::Runtime(_) => ExitCode::Failure,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(e) => e.hint(),
            Error::Auth(e) => e.hint(),
            Error::Runtime(_) => None,
        }
    }

    /// A stable machine-readable code for the JS API (`err.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "ERR_CONFIG",
            Error::Auth(e) => e.code(),
            Error::Runtime(_) => "ERR_RUNTIME",
        }
    }

    /// The message users see: one line, then an optional hint.
    pub fn report(&self) -> String {
        match self.hint() {
            Some(h) => format!("authful-mcp-proxy: {self}\n\nhint: {h}"),
            None => format!("authful-mcp-proxy: {self}"),
        }
    }
}
