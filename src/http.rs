//! The HTTP clients: one for the backend (kept-alive connections, no idle timeout so SSE
//! streams live as long as the server wants) and one for the identity provider (no
//! redirects: following them opens an OAuth client to SSRF and token leaks). Both honour
//! HTTPS_PROXY/HTTP_PROXY/NO_PROXY and trust the OS roots plus any extra CA files.

use crate::config::{Config, ConfigError};
use crate::Error;
use std::path::Path;
use std::time::Duration;

pub const USER_AGENT: &str = concat!("authful-mcp-proxy/", env!("CARGO_PKG_VERSION"));

fn read_pem(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("it holds no PEM certificate".into());
    }
    Ok(certs)
}

/// The extra CA certificates: those given explicitly must load; those from the environment
/// are skipped with a warning when they don't.
fn extra_roots(config: &Config) -> Result<Vec<reqwest::Certificate>, Error> {
    let mut roots = Vec::new();
    for path in &config.ca_files {
        let certs = read_pem(path).map_err(|reason| ConfigError::BadCaFile {
            path: path.display().to_string(),
            reason,
        })?;
        roots.extend(certs);
    }
    for path in &config.env_ca_files {
        match read_pem(path) {
            Ok(certs) => roots.extend(certs),
            Err(reason) => tracing::warn!("ignoring extra CA certificates in `{}`: {reason}", path.display()),
        }
    }
    Ok(roots)
}

fn env(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

/// `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (either case) with `NO_PROXY`, where this machine
/// itself (localhost, 127.0.0.1, ::1) is never reached through a proxy.
fn proxies() -> Vec<reqwest::Proxy> {
    let no_proxy = {
        let mut list = env(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
        list.push_str(",localhost,127.0.0.1,::1");
        reqwest::NoProxy::from_string(&list)
    };
    let mut out = Vec::new();
    let all = env(&["ALL_PROXY", "all_proxy"]);
    if let Some(p) = env(&["HTTPS_PROXY", "https_proxy"]).or_else(|| all.clone()) {
        match reqwest::Proxy::https(&p) {
            Ok(proxy) => out.push(proxy.no_proxy(no_proxy.clone())),
            Err(e) => tracing::warn!("ignoring HTTPS_PROXY: {e}"),
        }
    }
    // `HTTP_PROXY` is not read when running as a CGI script (httpoxy), as curl does.
    let http = if std::env::var_os("REQUEST_METHOD").is_some() {
        None
    } else {
        env(&["HTTP_PROXY", "http_proxy"])
    };
    if let Some(p) = http.or(all) {
        match reqwest::Proxy::http(&p) {
            Ok(proxy) => out.push(proxy.no_proxy(no_proxy)),
            Err(e) => tracing::warn!("ignoring HTTP_PROXY: {e}"),
        }
    }
    out
}

fn base(roots: Vec<reqwest::Certificate>) -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .no_proxy();
    for p in proxies() {
        b = b.proxy(p);
    }
    for c in roots {
        b = b.add_root_certificate(c);
    }
    b
}

/// Backend client. Redirects are followed only within the backend's own origin, so neither
/// the bearer token nor a static header is ever sent to another host.
pub fn backend_client(config: &Config) -> Result<reqwest::Client, Error> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().cloned();
        match first {
            Some(first) if attempt.previous().len() < 5 && first.origin() == attempt.url().origin() => attempt.follow(),
            _ => attempt.stop(),
        }
    });
    let mut b = base(extra_roots(config)?).redirect(policy);
    if config.backend_url.as_ref().is_some_and(|u| u.scheme() == "http") {
        // Plain http (loopback): no TLS will ever be used, so skip loading the system roots.
        b = b.tls_built_in_root_certs(false);
    }
    b.build()
        .map_err(|e| Error::Runtime(format!("cannot set up HTTP client: {e}")))
}

/// Identity-provider client: no redirects, bounded time. Returned as a factory so that it
/// is built (and the system roots loaded) only when the identity provider is contacted.
pub fn auth_client_factory(config: &Config) -> Result<crate::auth::HttpFactory, crate::Error> {
    let roots = extra_roots(config)?;
    Ok(Box::new(move || {
        base(roots)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|e| {
                tracing::warn!("cannot set up the HTTP client for the identity provider: {e}");
                reqwest::Client::new()
            })
    }))
}

/// Describe a reqwest error in one line, without its URL (the caller names the server).
pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() || e.is_body() {
        "the reply broke off"
    } else {
        "request failed"
    };
    // The innermost cause is the one that says what happened ("Connection refused").
    let mut cause = None;
    let mut src = e.source();
    while let Some(inner) = src {
        cause = Some(inner.to_string());
        src = inner.source();
    }
    match cause {
        Some(c) => format!("{what} ({c})"),
        None => what.to_string(),
    }
}
