//! The HTTP clients: one for the backend (kept-alive connections, no idle timeout so SSE
//! streams live as long as the server wants) and one for the identity provider (no
//! redirects: following them opens an OAuth client to SSRF and token leaks). Both honour
//! HTTPS_PROXY/HTTP_PROXY/NO_PROXY and trust the OS roots plus any extra CA files.

use crate::config::Config;
use std::time::Duration;

pub const USER_AGENT: &str = concat!("authful-mcp-proxy/", env!("CARGO_PKG_VERSION"));

fn base(config: &Config) -> Result<reqwest::ClientBuilder, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90));
    for path in &config.ca_files {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file `{}`: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("CA file `{}` is not PEM: {e}", path.display()))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b)
}

/// Backend client. Redirects are followed only within the backend's own origin, so neither
/// the bearer token nor a static header is ever sent to another host.
pub fn backend_client(config: &Config) -> Result<reqwest::Client, String> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().cloned();
        match first {
            Some(first) if attempt.previous().len() < 5 && first.origin() == attempt.url().origin() => attempt.follow(),
            _ => attempt.stop(),
        }
    });
    base(config)?
        .redirect(policy)
        .build()
        .map_err(|e| format!("cannot set up HTTP client: {e}"))
}

/// Identity-provider client: no redirects, bounded time.
pub fn auth_client(config: &Config) -> Result<reqwest::Client, String> {
    base(config)?
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot set up HTTP client: {e}"))
}
