//! Sequences: argv → config → token source → bridge → exit code. The one place where the
//! login and the bridge are wired together.

use crate::auth::TokenManager;
use crate::bridge::{self, stdio, Conn};
use crate::cli::{self, Invocation};
use crate::config::Config;
use crate::error::{Error, ExitCode};
use crate::token_cache;
use crate::token_source::{NoToken, TokenSource};
use std::io::Write;
use std::sync::Arc;

/// Run the command line `argv` (without the program name); returns the exit code.
pub async fn run(argv: Vec<String>) -> i32 {
    match dispatch(argv).await {
        Ok(code) => code.code(),
        Err(e) => {
            eprintln!("{}", e.report());
            e.exit_code().code()
        }
    }
}

async fn dispatch(argv: Vec<String>) -> Result<ExitCode, Error> {
    let invocation = cli::parse(&argv)?;
    match invocation {
        Invocation::Info(text) => {
            // --help/--version are asked for by a person, never by an MCP client.
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(ExitCode::Ok)
        }
        Invocation::Proxy(config) => proxy(config).await,
        Invocation::Login(config) => {
            crate::log::init(config.log);
            let tm = token_manager(&config, true)?;
            tm.ensure_discoverable().await?;
            let t = tm.tokens().await?;
            eprintln!("authful-mcp-proxy: logged in{}; {}", who(&t), expiry(&t));
            Ok(ExitCode::Ok)
        }
        Invocation::Token(config) => {
            crate::log::init(config.log);
            let tm = token_manager(&config, true)?;
            tm.ensure_discoverable().await?;
            let t = tm.access_token().await?;
            let mut out = std::io::stdout();
            let _ = out.write_all(t.expose().as_bytes()).and_then(|_| out.write_all(b"\n"));
            Ok(ExitCode::Ok)
        }
        Invocation::Status { config, json } => status(config, json).await,
        Invocation::Logout { config, all } => logout(config, all).await,
        Invocation::Setup { config, json, argv } => crate::setup::run(config, json, argv).await,
    }
}

fn token_manager(config: &Config, interactive: bool) -> Result<Arc<TokenManager>, Error> {
    let auth = config.auth.clone().ok_or(crate::config::ConfigError::MissingIssuer)?;
    Ok(TokenManager::new(
        auth,
        crate::http::auth_client_factory(config)?,
        interactive,
    ))
}

fn who(t: &token_cache::Tokens) -> String {
    t.username
        .as_deref()
        .or(t.subject.as_deref())
        .map(|u| format!(" as `{u}`"))
        .unwrap_or_default()
}

fn expiry(t: &token_cache::Tokens) -> String {
    match t.expires_at {
        Some(exp) => {
            let left = exp.saturating_sub(token_cache::now());
            format!("the access token is valid for {}m{}s", left / 60, left % 60)
        }
        None => "the access token has no stated expiry".into(),
    }
}

async fn proxy(config: Config) -> Result<ExitCode, Error> {
    crate::log::init(config.log);
    let url = config.backend_url.clone().expect("validated: proxy needs a backend");
    let http = crate::http::backend_client(&config)?;
    // Without an issuer the login starts when the server first says 401 (and names where).
    let auth: Arc<dyn TokenSource> = match &config.auth {
        Some(_) => token_manager(&config, true)?,
        None => Arc::new(NoToken),
    };
    if config.banner {
        let login = match &config.auth {
            Some(a) if a.issuer.is_some() => format!("OIDC login with `{}` at {}", a.client_label(), a.issuer_label()),
            Some(_) => "a login where the server asks for one".into(),
            None => "static headers, no login".into(),
        };
        tracing::info!("authful-mcp-proxy {} → {} ({login})", env!("CARGO_PKG_VERSION"), url);
    }
    stdio::make_blocking();
    let out = stdio::Out::stdout(crate::shutdown::trigger);
    out.set_max_output(config.max_output_bytes);
    let conn = Arc::new(Conn::new(&config, http, url, auth, out));
    // The bridge runs on a runtime of its own with one thread: its tasks hand messages to
    // each other all the time, and on one thread that costs no cross-thread wake-ups.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bridge".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match rt {
                Ok(rt) => rt.block_on(async {
                    let input = stdio::stdin(config.max_message_bytes);
                    bridge::run(&config, conn, input).await
                }),
                Err(e) => tracing::error!("cannot start the bridge: {e}"),
            }
            let _ = done_tx.send(());
        })
        .map_err(|e| Error::Runtime(format!("cannot start the bridge: {e}")))?;
    let _ = done_rx.await;
    Ok(ExitCode::Ok)
}

async fn status(config: Config, json: bool) -> Result<ExitCode, Error> {
    // Warnings (a keychain that fell back, a corrupt cache file) go to stderr.
    crate::log::init(config.log);
    let tm = token_manager(&config, false)?;
    let tokens = tm.peek().await;
    let stored = tm.cache().describe();
    let now = token_cache::now();
    let report = crate::api::status_report(&tm, tokens.as_ref()).await;
    let (issuer, client) = (
        report["issuer"].as_str().unwrap_or(""),
        report["clientId"].as_str().unwrap_or(""),
    );
    let mut out = std::io::stdout();
    let text = if json {
        format!("{report}\n")
    } else {
        match &tokens {
            None => format!(
                "Not logged in to {} as client `{}`.\nTokens kept in: {}\nRun `authful-mcp-proxy login` to log in.\n",
                issuer, client, stored
            ),
            Some(t) => format!(
                "Logged in to {} as client `{}`{}.\nScopes: {}\nAccess token: {}\nRefresh token: {}\nTokens kept in: {}\n",
                issuer,
                client,
                who(t),
                report["scopes"].as_str().unwrap_or(""),
                match t.expires_at {
                    Some(e) if e <= now => "expired (will be refreshed on next use)".to_string(),
                    _ => expiry(t).trim_start_matches("the access token is ").to_string(),
                },
                if t.refresh_token.is_some() {
                    "present"
                } else {
                    "none (a browser login is needed when the access token expires)"
                },
                stored
            ),
        }
    };
    let _ = out.write_all(text.as_bytes());
    Ok(if tokens.is_some() {
        ExitCode::Ok
    } else {
        ExitCode::NotLoggedIn
    })
}

async fn logout(config: Config, all: bool) -> Result<ExitCode, Error> {
    crate::log::init(config.log);
    if all {
        let (place, n) = crate::api::remove_all_logins(&config)?;
        eprintln!("authful-mcp-proxy: removed {n} cached login(s) from {place}");
        return Ok(ExitCode::Ok);
    }
    let removed = crate::api::remove_login(&token_manager(&config, false)?).await?;
    eprintln!(
        "authful-mcp-proxy: {}",
        if removed {
            "logged out (cached tokens removed)"
        } else {
            "no cached login for this configuration"
        }
    );
    Ok(ExitCode::Ok)
}
