//! authful-mcp-proxy: an OIDC login plus a stdio ⇄ Streamable HTTP bridge for MCP.
//!
//! Data flows stdin → [`bridge`] → backend and back; the bridge asks a
//! [`token_source::TokenSource`] for a bearer token and never learns how it was obtained. [`app`] wires the two together.

pub mod api;
pub mod app;
pub mod auth;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod log;
pub mod secret;
pub mod setup;
pub mod shutdown;
pub mod token_cache;
pub mod token_source;
pub mod token_store;

#[cfg(feature = "napi")]
mod napi;

pub use app::run;
pub use config::Config;
pub use error::{Error, ExitCode};
