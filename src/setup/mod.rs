//! `authful-mcp-proxy setup`: walks the chain the proxy depends on, for the configuration given
//! (flags and environment, as the proxy would run), one line per step with a concrete fix where
//! a step fails: backend reachable → its 401 challenge → protected resource metadata →
//! authorization server metadata and issuer → client → redirect URI accepted → callback port →
//! clock → login → MCP `initialize` + `tools/list` through the bridge → the token's audience
//! and scopes. Then the configuration for five MCP hosts. The exit code is the class of the
//! first failing step: 1 network or server, 2 configuration, 3 login.

mod hosts;

use crate::auth::{discovery, TokenManager};
use crate::bridge::{self, stdio, Conn};
use crate::config::{Config, GrantKind};
use crate::error::{Error, ExitCode};
use crate::token_cache::{self, Tokens};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// A clock further off than this breaks ID token and JWT checks at the provider or the server.
const MAX_SKEW: u64 = 60;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Skip,
    Fail,
}

struct Step {
    step: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
    exit: ExitCode,
}

impl Step {
    fn to_json(&self) -> Value {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Skip => "skip",
            Status::Fail => "fail",
        };
        json!({ "step": self.step, "status": status, "detail": self.detail, "fix": self.fix })
    }
}

/// The steps so far; printed as they come in text mode.
struct Walk {
    steps: Vec<Step>,
    json: bool,
}

impl Walk {
    fn push(&mut self, step: &'static str, status: Status, detail: String, fix: Option<String>, exit: ExitCode) {
        if !self.json {
            let mark = match status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Skip => "skip",
                Status::Fail => "FAIL",
            };
            let mut text = format!("{mark}  {step}: {detail}\n");
            if let Some(f) = &fix {
                text.push_str(&format!("      fix: {f}\n"));
            }
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
        self.steps.push(Step {
            step,
            status,
            detail,
            fix,
            exit,
        });
    }

    fn ok(&mut self, step: &'static str, detail: String) {
        self.push(step, Status::Ok, detail, None, ExitCode::Ok);
    }

    fn warn(&mut self, step: &'static str, detail: String, fix: Option<String>) {
        self.push(step, Status::Warn, detail, fix, ExitCode::Ok);
    }

    fn skip(&mut self, step: &'static str, detail: &str) {
        self.push(step, Status::Skip, detail.into(), None, ExitCode::Ok);
    }

    fn fail(&mut self, step: &'static str, detail: String, fix: String, exit: ExitCode) {
        self.push(step, Status::Fail, detail, Some(fix), exit);
    }

    fn exit_code(&self) -> ExitCode {
        self.steps
            .iter()
            .find(|s| s.status == Status::Fail)
            .map(|s| s.exit)
            .unwrap_or(ExitCode::Ok)
    }
}

/// What the walk learned that later steps need.
#[derive(Default)]
struct Learned {
    /// The 401 challenge, where the server's metadata is found.
    challenge: discovery::Challenge,
    /// The `scope` of the 401 challenge: what the server asks for (its metadata's
    /// `scopes_supported` is only what it knows).
    challenge_scopes: Vec<String>,
    resource: Option<String>,
    issuer: Option<String>,
    /// The authorization server's metadata as JSON (the fields the checks read).
    metadata: Option<Value>,
}

/// Run the walk; `argv` is the command line as given (for the host configurations).
pub async fn run(config: Config, json: bool, argv: Vec<String>) -> Result<ExitCode, Error> {
    crate::log::init(config.log);
    let mut walk = Walk {
        steps: Vec::new(),
        json,
    };
    let finished = steps(&config, &mut walk).await;
    let code = walk.exit_code();
    let launch = hosts::Launch::from_argv(&argv, &|name| std::env::var(name).ok());
    let backend = config.backend_url.as_ref().expect("setup needs a backend");
    let configs = hosts::render(&hosts::server_name(backend), &launch);
    let ready = finished && code == ExitCode::Ok;
    let mut out = std::io::stdout();
    if json {
        let report = json!({
            "ok": ready,
            "exitCode": code.code(),
            "steps": walk.steps.iter().map(Step::to_json).collect::<Vec<_>>(),
            "configurations": if ready { configs.iter().map(|c| c.to_json()).collect() } else { vec![] },
        });
        let _ = out.write_all(format!("{report:#}\n").as_bytes());
    } else if ready {
        let mut text =
            String::from("\nEverything works. Configuration for your MCP host (secrets stay in variables):\n");
        for c in &configs {
            text.push_str(&c.to_text());
        }
        let _ = out.write_all(text.as_bytes());
    } else {
        let _ = out.write_all(b"\nFix the first failing step and run `authful-mcp-proxy setup` again.\n");
    }
    Ok(code)
}

/// The steps in order. False if the walk stopped early (a later step cannot run).
async fn steps(config: &Config, walk: &mut Walk) -> bool {
    let backend = config.backend_url.clone().expect("setup needs a backend");
    let backend_http = match crate::http::backend_client(config) {
        Ok(h) => h,
        Err(e) => {
            walk.fail("backend reachable", e.to_string(), hint_of(&e), e.exit_code());
            return false;
        }
    };
    let auth_http = match crate::http::auth_client_factory(config) {
        Ok(make) => make(),
        Err(e) => {
            walk.fail("backend reachable", e.to_string(), hint_of(&e), e.exit_code());
            return false;
        }
    };
    let mut learned = Learned::default();

    // 1. Backend reachable, and 2. its challenge.
    let probe = backend_http
        .post(backend.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":"authful-mcp-proxy-setup","method":"ping"}"#)
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    let probe = match probe {
        Ok(r) => r,
        Err(e) => {
            let (detail, fix) = network_problem(&e, &backend);
            walk.fail("backend reachable", detail, fix, ExitCode::Failure);
            return false;
        }
    };
    walk.ok(
        "backend reachable",
        format!("{backend} answered HTTP {}", probe.status().as_u16()),
    );
    let Some(auth) = config.auth.clone() else {
        walk.skip("login", "no login configured (static headers)");
        let mcp = mcp_exchange(config, Arc::new(crate::token_source::NoToken), &backend_http).await;
        mcp_step(walk, mcp, false);
        return true;
    };
    challenge_step(walk, &probe, &mut learned);

    // 3. Protected resource metadata (RFC 9728).
    match discovery::protected_resource(&auth_http, &backend, &learned.challenge).await {
        Ok(info) => {
            learned.resource = Some(info.resource.clone().unwrap_or_else(|| backend.to_string()));
            let named = info.authorization_servers.join(", ");
            walk.ok(
                "protected resource metadata",
                format!("names the authorization server {named}"),
            );
            match &auth.issuer {
                Some(i) if !info.authorization_servers.iter().any(|a| same_url(a, i.as_str())) => walk.warn(
                    "protected resource metadata",
                    format!(
                        "the configured issuer `{}` is not one the server names",
                        i.as_str().trim_end_matches('/')
                    ),
                    Some(format!(
                        "tokens from another issuer are likely refused: set `OIDC_ISSUER_URL` to `{}`",
                        info.authorization_servers[0]
                    )),
                ),
                Some(_) => {}
                None => learned.issuer = info.authorization_servers.first().cloned(),
            }
        }
        Err(reason) if auth.issuer.is_some() => walk.skip(
            "protected resource metadata",
            &format!("none ({reason}); not needed, the issuer is configured"),
        ),
        Err(reason) => {
            walk.fail(
                "protected resource metadata",
                format!("the server names no authorization server: {reason}"),
                "set `OIDC_ISSUER_URL` (or `--oidc-issuer-url`) and `OIDC_CLIENT_ID` (or `--oidc-client-id`) to your identity provider's values".into(),
                ExitCode::Usage,
            );
            return false;
        }
    }
    if let Some(i) = &auth.issuer {
        learned.issuer = Some(i.as_str().trim_end_matches('/').to_string());
    }
    let issuer = learned.issuer.clone().unwrap_or_default();

    // 4. Authorization server metadata, and the clock against its `Date`.
    let (document, date) = metadata_document(&auth_http, &issuer).await;
    // Strict: the metadata must be there (the proxy itself falls back to default endpoints
    // for servers of the 2025-03-26 revision).
    match discovery::authorization_server(&auth_http, &issuer, false).await {
        Ok(_) => walk.ok("authorization server", format!("`{issuer}` publishes its metadata")),
        Err(e) => {
            let named = document
                .as_ref()
                .and_then(|d| d["issuer"].as_str())
                .filter(|n| !same_url(n, &issuer));
            let fix = match named {
                Some(n) => format!("the provider calls itself `{n}`: set `OIDC_ISSUER_URL` to exactly that"),
                None => format!("check `OIDC_ISSUER_URL`: `{issuer}/.well-known/openid-configuration` (or `oauth-authorization-server`) must answer with the provider's metadata"),
            };
            walk.fail("authorization server", e.to_string(), fix, ExitCode::Usage);
            return false;
        }
    }
    learned.metadata = document;

    // 5. The client.
    let metadata = learned.metadata.clone().unwrap_or_default();
    match (&auth.client_id, metadata["registration_endpoint"].as_str()) {
        (Some(id), _) => walk.ok(
            "client",
            format!(
                "configured `{id}`{}",
                if auth.client_secret.is_some() {
                    " with a secret"
                } else {
                    " (public, PKCE)"
                }
            ),
        ),
        (None, Some(endpoint)) => walk.ok(
            "client",
            format!("none configured; will register at {endpoint} (RFC 7591)"),
        ),
        (None, None) => {
            walk.fail(
                "client",
                "none configured, and the provider offers no dynamic registration".into(),
                "register a client for this proxy at your identity provider and set `OIDC_CLIENT_ID`".into(),
                ExitCode::Usage,
            );
            return false;
        }
    }
    let browser = auth.grant == GrantKind::Auto;
    if browser {
        if let Some(id) = &auth.client_id {
            if !redirect_step(walk, &auth_http, &auth, id, &metadata).await {
                return false;
            }
        }
        // 6. The callback port.
        if !callback_step(walk, &auth.redirect_url) {
            return false;
        }
    } else {
        walk.skip("callback", "this grant needs no browser callback");
    }
    clock_step(walk, date, &issuer);

    // 8. The login, with the store the proxy will use.
    let make_http = match crate::http::auth_client_factory(config) {
        Ok(m) => m,
        Err(e) => {
            walk.fail("login", e.to_string(), hint_of(&e), ExitCode::Usage);
            return false;
        }
    };
    let tm = TokenManager::new(auth.clone(), make_http, true);
    let tokens = match tm.ensure_discoverable().await {
        Err(e) => Err(Error::from(e)),
        Ok(()) => tm.tokens().await.map_err(Error::from),
    };
    let tokens = match tokens {
        Ok(t) => t,
        Err(e) => {
            walk.fail("login", e.to_string(), hint_of(&e), e.exit_code());
            return false;
        }
    };
    walk.ok(
        "login",
        format!(
            "logged in{}; {} (token store: {})",
            tokens
                .username
                .as_deref()
                .or(tokens.subject.as_deref())
                .map(|u| format!(" as `{u}`"))
                .unwrap_or_default(),
            valid_for(&tokens),
            tm.cache().kind().name()
        ),
    );
    let mcp = mcp_exchange(config, tm, &backend_http).await;
    let verdict = token_verdict(&tokens, &learned, &backend);
    mcp_step(walk, mcp, matches!(verdict, Verdict::Fail(..)));
    let step = "token audience and scopes";
    match verdict {
        Verdict::Ok(detail) => walk.ok(step, detail),
        Verdict::Skip(detail) => walk.skip(step, &detail),
        Verdict::Fail(detail, fix) => walk.fail(step, detail, fix, ExitCode::Usage),
    }
    true
}

fn mcp_step(walk: &mut Walk, result: Result<String, String>, token_is_wrong: bool) {
    let step = "MCP initialize + tools/list";
    match result {
        Ok(detail) => walk.ok(step, detail),
        Err(detail) => {
            let fix = if token_is_wrong {
                "the token is not one this server accepts: the token step below says why"
            } else {
                "check that the URL is the server's MCP endpoint and that the server is healthy; run the proxy with `--debug` to see the HTTP exchange"
            };
            walk.fail(step, detail, fix.into(), ExitCode::Failure);
        }
    }
}

fn hint_of(e: &Error) -> String {
    e.hint().unwrap_or_else(|| "run with `--debug` for details".into())
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn valid_for(t: &Tokens) -> String {
    match t.expires_at {
        Some(exp) => {
            let left = exp.saturating_sub(token_cache::now());
            format!("the access token is valid for {}m{}s", left / 60, left % 60)
        }
        None => "the access token has no stated expiry".into(),
    }
}

/// Name a network failure and its fix. reqwest has no error kind for DNS or certificate
/// problems, so the innermost cause's text decides here; it only chooses which advice to give.
fn network_problem(e: &reqwest::Error, url: &url::Url) -> (String, String) {
    let detail = crate::bridge::describe(e);
    let cause = detail.to_ascii_lowercase();
    let host = url.host_str().unwrap_or("");
    let proxy = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
    let fix = if cause.contains("dns") || cause.contains("lookup") || cause.contains("resolve") {
        format!("`{host}` does not resolve: check the URL's host name, or connect the VPN that serves it")
    } else if cause.contains("certificate") || cause.contains("tls") || cause.contains("handshake") {
        "the server's certificate is not trusted here: pass your organisation's CA certificates with `--ca-file` (or `MCP_PROXY_CA_FILE`)".into()
    } else if let Some(p) = proxy {
        format!("the request went through the proxy `{p}` (`HTTPS_PROXY`): check it, or add `{host}` to `NO_PROXY`")
    } else if cause.contains("refused") {
        format!(
            "nothing listens at `{}`: check the URL and port, and that the MCP server is running",
            url.origin().ascii_serialization()
        )
    } else if e.is_timeout() || cause.contains("timed out") {
        "no answer in time: check the network, a VPN, or a corporate proxy (`HTTPS_PROXY`)".into()
    } else {
        "check the URL, the network and the proxy settings (`HTTPS_PROXY`)".into()
    };
    (format!("cannot reach {url}: {detail}"), fix)
}

fn challenge_step(walk: &mut Walk, probe: &reqwest::Response, learned: &mut Learned) {
    let status = probe.status();
    if status != reqwest::StatusCode::UNAUTHORIZED {
        walk.warn(
            "401 challenge",
            format!("the server answered HTTP {} without a token, not 401", status.as_u16()),
            Some("if the server needs no login, drop the OIDC settings; otherwise check that the URL is the MCP endpoint (often ending in `/mcp`)".into()),
        );
        return;
    }
    let headers: Vec<String> = probe
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|h| h.to_str().ok().map(str::to_string))
        .collect();
    learned.challenge = discovery::Challenge::parse(&headers);
    let bearer = headers
        .iter()
        .find(|h| h.trim_start().to_ascii_lowercase().starts_with("bearer"));
    match bearer {
        Some(h) => {
            let params = discovery::challenge_params(h);
            let mut said: Vec<String> = Vec::new();
            for (k, v) in &params {
                match k.as_str() {
                    "scope" => {
                        learned.challenge_scopes = v.split_whitespace().map(str::to_string).collect();
                        said.push(format!("scope `{v}`"));
                    }
                    "resource_metadata" => said.push("resource_metadata".into()),
                    _ => {}
                }
            }
            walk.ok(
                "401 challenge",
                if said.is_empty() {
                    "`Bearer`".into()
                } else {
                    format!("`Bearer` with {}", said.join(", "))
                },
            );
        }
        None => walk.warn(
            "401 challenge",
            "401 without a `WWW-Authenticate: Bearer` challenge".into(),
            Some("the server may want another kind of credential (a static header: `--header`)".into()),
        ),
    }
}

/// The authorization server's metadata document as JSON, and the `Date` it was served with.
async fn metadata_document(http: &reqwest::Client, issuer: &str) -> (Option<Value>, Option<std::time::SystemTime>) {
    let mut date = None;
    for url in discovery::well_known_urls(issuer) {
        let Ok(resp) = http.get(&url).send().await else {
            continue;
        };
        if date.is_none() {
            date = resp
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|d| d.to_str().ok())
                .and_then(|d| httpdate::parse_http_date(d).ok());
        }
        if !resp.status().is_success() {
            continue;
        }
        if let Ok(v) = resp.json::<Value>().await {
            if v["issuer"].is_string() {
                return (Some(v), date);
            }
        }
    }
    (None, date)
}

/// Ask the authorization endpoint for a login with this client and redirect URI, without
/// following it: a provider that does not know either refuses here, before any browser opens.
async fn redirect_step(
    walk: &mut Walk,
    http: &reqwest::Client,
    auth: &crate::config::AuthConfig,
    client_id: &str,
    metadata: &Value,
) -> bool {
    let step = "redirect URI accepted";
    let Some(endpoint) = metadata["authorization_endpoint"]
        .as_str()
        .and_then(|e| url::Url::parse(e).ok())
    else {
        walk.skip(step, "the metadata names no authorization endpoint");
        return true;
    };
    let redirect = auth.redirect_url.as_str();
    let mut url = endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair("scope", &auth.scopes.join(" "))
            .append_pair("state", "authful-mcp-proxy-setup")
            .append_pair("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
            .append_pair("code_challenge_method", "S256");
        for (k, v) in &auth.authorize_params {
            q.append_pair(k, v);
        }
    }
    let resp = match http.get(url).send().await {
        Ok(r) => r,
        Err(e) => {
            let (detail, fix) = network_problem(&e, &endpoint);
            walk.fail(step, detail, fix, ExitCode::Failure);
            return false;
        }
    };
    let status = resp.status();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| endpoint.join(l).ok());
    // Sent back to our redirect URI (or to the provider's own error page) with an error.
    if let Some(loc) = &location {
        let get = |k: &str| loc.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
        if let Some(error) = get("error") {
            let description = get("error_description").unwrap_or_default();
            walk.fail(
                step,
                format!("the provider refused the login request: `{error}` {description}"),
                format!("allow client `{client_id}` the authorization code grant and the scopes `{}` at your identity provider, or change `OIDC_SCOPES`", auth.scopes.join(" ")),
                ExitCode::Usage,
            );
            return false;
        }
    }
    if status.is_redirection() {
        walk.ok(step, format!("client `{client_id}` may log in with {redirect}"));
        return true;
    }
    let body = resp.text().await.unwrap_or_default().to_ascii_lowercase();
    // Some providers show their refusal on a page served with 200 (Entra ID's AADSTS50011).
    let refused_page = body.contains("redirect_uri_mismatch")
        || body.contains("aadsts50011")
        || (body.contains("redirect") && body.contains("does not match"));
    if status.is_success() && !refused_page {
        walk.ok(step, format!("client `{client_id}` may log in with {redirect}"));
        return true;
    }
    let (detail, fix) = if body.contains("redirect") {
        (
            format!("the provider does not accept the redirect URI {redirect} for client `{client_id}` (HTTP {})", status.as_u16()),
            format!("register `{redirect}` as a redirect URI of client `{client_id}` at your identity provider, or set `OIDC_REDIRECT_URL` to one that is registered"),
        )
    } else if body.contains("client") {
        (
            format!(
                "the provider does not know client `{client_id}` (HTTP {})",
                status.as_u16()
            ),
            "check `OIDC_CLIENT_ID`: it must be a client registered with this identity provider".into(),
        )
    } else {
        (
            format!("the provider refused the login request (HTTP {})", status.as_u16()),
            format!("check `OIDC_CLIENT_ID` and that `{redirect}` is registered for it"),
        )
    };
    walk.fail(step, detail, fix, ExitCode::Usage);
    false
}

fn callback_step(walk: &mut Walk, redirect: &url::Url) -> bool {
    let port = redirect.port_or_known_default().unwrap_or(80);
    let host = redirect.host_str().unwrap_or("localhost");
    let addrs: Vec<std::net::SocketAddr> = match host {
        "localhost" => vec![([127, 0, 0, 1], port).into()],
        h => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .map(|ip| vec![(ip, port).into()])
            .unwrap_or_default(),
    };
    for addr in addrs {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            let fix = if e.kind() == std::io::ErrorKind::AddrInUse {
                format!("stop what uses port `{port}` (another proxy waiting for a login?), or set `OIDC_REDIRECT_URL` to another port registered with your identity provider")
            } else {
                "set `OIDC_REDIRECT_URL` to a loopback URL such as `http://localhost:8080/auth/callback`".into()
            };
            walk.fail(
                "callback",
                format!("cannot listen on {addr} for {redirect}: {e}"),
                fix,
                ExitCode::Usage,
            );
            return false;
        }
    }
    walk.ok("callback", format!("{redirect} is on loopback and port {port} is free"));
    true
}

fn clock_step(walk: &mut Walk, date: Option<std::time::SystemTime>, issuer: &str) {
    let Some(date) = date else {
        walk.skip("clock", "the provider sent no `Date` header");
        return;
    };
    let now = std::time::SystemTime::now();
    let (skew, ahead) = match now.duration_since(date) {
        Ok(d) => (d.as_secs(), true),
        Err(e) => (e.duration().as_secs(), false),
    };
    if skew > MAX_SKEW {
        walk.fail(
            "clock",
            format!(
                "this machine's clock is {skew}s {} the identity provider's ({issuer})",
                if ahead { "ahead of" } else { "behind" }
            ),
            "set the clock right: enable time sync (`timedatectl set-ntp true`, macOS: Date & Time > Set automatically, Windows: `w32tm /resync`)".into(),
            ExitCode::Failure,
        );
    } else {
        walk.ok("clock", format!("within {skew}s of the identity provider's"));
    }
}

/// `initialize` and `tools/list` through the bridge, in this process, with the token just
/// obtained: what the server said, or what went wrong.
async fn mcp_exchange(
    config: &Config,
    tm: Arc<dyn crate::token_source::TokenSource>,
    http: &reqwest::Client,
) -> Result<String, String> {
    let url = config.backend_url.clone().expect("setup needs a backend");
    // The bridge's output comes back on a channel of the type its input uses.
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<stdio::Input>(64);
    let out = stdio::Out::spawn(
        Lines {
            buf: Vec::new(),
            tx: line_tx,
        },
        || {},
    );
    let conn = Arc::new(Conn::new(config, http.clone(), url, tm, out));
    let (input_tx, input_rx) = tokio::sync::mpsc::channel(8);
    let driver = async move {
        request(
            &input_tx,
            "initialize",
            1,
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": { "name": "authful-mcp-proxy-setup", "version": env!("CARGO_PKG_VERSION") }
            }),
        )
        .await;
        let result = match answer(&mut line_rx, 1).await {
            Some(v) if v.get("result").is_some() => {
                let _ = input_tx
                    .send(stdio::Input::Line(
                        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec(),
                    ))
                    .await;
                request(&input_tx, "tools/list", 2, json!({})).await;
                match answer(&mut line_rx, 2).await {
                    Some(t) if t.get("result").is_some() => {
                        let tools = t["result"]["tools"].as_array().map(|a| a.len()).unwrap_or(0);
                        let server = &v["result"]["serverInfo"];
                        Ok(format!(
                            "server `{}` {}, protocol {}; {tools} tool(s)",
                            server["name"].as_str().unwrap_or("?"),
                            server["version"].as_str().unwrap_or(""),
                            v["result"]["protocolVersion"].as_str().unwrap_or("?")
                        ))
                    }
                    Some(t) => Err(format!(
                        "tools/list failed: {}",
                        t["error"]["message"].as_str().unwrap_or("?")
                    )),
                    None => Err("no answer to tools/list within 60s".into()),
                }
            }
            Some(v) => Err(format!(
                "initialize failed: {}",
                v["error"]["message"].as_str().unwrap_or("?")
            )),
            None => Err("no answer to initialize within 60s".into()),
        };
        let _ = input_tx.send(stdio::Input::Eof).await;
        result
    };
    // Both in this task: the bridge ends at the `Eof` the driver sends last.
    let both = async { tokio::join!(bridge::run(config, conn, input_rx), driver).1 };
    tokio::time::timeout(Duration::from_secs(150), both)
        .await
        .unwrap_or_else(|_| Err("the MCP exchange did not finish within 150s".into()))
}

async fn request(tx: &tokio::sync::mpsc::Sender<stdio::Input>, method: &str, id: i64, params: Value) {
    let line = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string();
    let _ = tx.send(stdio::Input::Line(line.into_bytes())).await;
}

/// The bridge's answer to request `id` (other lines are skipped), within a minute.
async fn answer(rx: &mut tokio::sync::mpsc::Receiver<stdio::Input>, id: i64) -> Option<Value> {
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(input) = rx.recv().await {
            let stdio::Input::Line(line) = input else { continue };
            match serde_json::from_slice::<Value>(&line) {
                Ok(v) if v["id"] == id => return Some(v),
                _ => continue,
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// The writer behind the in-process bridge: complete lines, to a channel.
struct Lines {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<stdio::Input>,
}

impl Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        while let Some(nl) = self.buf.iter().position(|c| *c == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            // The writer thread is not a runtime thread: blocking here is allowed.
            let _ = self.tx.blocking_send(stdio::Input::Line(line));
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Verdict {
    Ok(String),
    Skip(String),
    /// What is wrong, and the fix.
    Fail(String, String),
}

/// The access token's audience and scopes against what the server asked for. A JWT is read,
/// not verified (the server verifies it); an opaque token cannot be checked.
fn token_verdict(tokens: &Tokens, learned: &Learned, backend: &url::Url) -> Verdict {
    let Some(claims) = jwt_claims(tokens.access_token.expose()) else {
        return Verdict::Skip("the access token is opaque; only the server can read it".into());
    };
    let audiences: Vec<String> = match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => vec![],
    };
    let expected = learned.resource.clone().unwrap_or_else(|| backend.to_string());
    let granted: Vec<String> = match (&claims["scope"], &claims["scp"]) {
        (Value::String(s), _) => s.split_whitespace().map(str::to_string).collect(),
        (_, Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        (_, Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => tokens
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    };
    let for_us = |a: &String| same_url(a, &expected) || same_url(a, backend.as_str());
    if !audiences.is_empty() && !audiences.iter().any(for_us) {
        return Verdict::Fail(
            format!("the token is for `{}`, not for this server (`{expected}`)", audiences.join("`, `")),
            format!("ask for a token for this server: `--resource {expected}` (RFC 8707), or `--authorize-param audience={expected}` for providers that take an audience; or give the client access to this API at your identity provider"),
        );
    }
    let missing: Vec<&String> = learned
        .challenge_scopes
        .iter()
        .filter(|s| !granted.contains(s))
        .collect();
    if !missing.is_empty() && !granted.is_empty() {
        let all: Vec<String> = granted.iter().chain(missing.iter().copied()).cloned().collect();
        return Verdict::Fail(
            format!(
                "the server asks for `{}` but the token has only `{}`",
                learned.challenge_scopes.join(" "),
                granted.join(" ")
            ),
            format!(
                "ask for them: `--oidc-scopes \"{}\"`, and allow them for the client at your identity provider",
                all.join(" ")
            ),
        );
    }
    let aud = if audiences.is_empty() {
        "no audience claim".to_string()
    } else {
        format!("audience `{}`", audiences.join("`, `"))
    };
    Verdict::Ok(format!("{aud}; scopes `{}`", granted.join(" ")))
}

fn jwt_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64url(payload)?;
    serde_json::from_slice(&bytes).ok()
}

fn base64url(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_payloads_are_read_and_opaque_tokens_are_not() {
        // {"aud":"https://mcp.example/mcp","scope":"a b"}
        let t = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJodHRwczovL21jcC5leGFtcGxlL21jcCIsInNjb3BlIjoiYSBiIn0.sig";
        let c = jwt_claims(t).unwrap();
        assert_eq!(c["aud"], "https://mcp.example/mcp");
        assert_eq!(c["scope"], "a b");
        assert!(jwt_claims("opaque-token-value").is_none());
        assert!(jwt_claims("a.!!!.c").is_none());
    }
}
