//! Enterprise-managed authorization (SEP-990, "cross-app access"). The user logs in once at
//! the company's identity provider (OIDC: an ID token); for each MCP server the proxy
//! exchanges that ID token at the identity provider for an Identity Assertion JWT
//! Authorization Grant (ID-JAG; RFC 8693 token exchange) and presents the ID-JAG to the MCP
//! server's authorization server with the JWT bearer grant (RFC 7523 §2.1). No login page of
//! the MCP server, no second browser window per server.
//!
//! [`obtain`] is the wire, on plain values; `TokenManager::cross_app_tokens` below wires it
//! to discovery, the identity provider's login (cached on its own) and the token cache.

use super::client_auth::ClientKey;
use super::{discovery, grant, AuthError};
use crate::config::{AuthConfig, ClientAuthOptions, GrantKind};
use crate::secret::Secret;
use crate::token_cache::{now, Discovered, TokenCache, Tokens};
use std::time::Duration;

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// How a client authenticates at a token endpoint.
pub enum ClientAuth<'a> {
    /// A public client: `client_id` in the body.
    Public { client_id: &'a str },
    /// `client_secret_basic` (RFC 6749 §2.3.1: id and secret form-encoded, then Basic).
    Basic {
        client_id: &'a str,
        secret: &'a Secret<String>,
    },
    /// `private_key_jwt` (RFC 7523 §2.2), the assertion's audience the server's issuer.
    PrivateKeyJwt {
        client_id: &'a str,
        key: &'a ClientKey,
        issuer: &'a str,
    },
}

/// The identity provider's side: where to exchange the ID token, and as which client.
pub struct IdentityProvider<'a> {
    pub token_endpoint: &'a str,
    pub client: ClientAuth<'a>,
}

/// The MCP server's authorization server: its issuer (the ID-JAG's audience), its token
/// endpoint, this proxy's client there, the MCP server (the ID-JAG's resource) and scopes.
pub struct McpAuthorizationServer<'a> {
    pub issuer: &'a str,
    pub token_endpoint: &'a str,
    pub client: ClientAuth<'a>,
    pub resource: &'a str,
    pub scopes: &'a [String],
}

/// A token endpoint's answer (RFC 6749 §5.1, RFC 8693 §2.2.1). Read from a JSON value, not
/// a serde derive: the value parser is in the addon already, a derive adds kilobytes.
struct TokenResponse {
    access_token: Secret<String>,
    token_type: Option<String>,
    issued_token_type: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<Secret<String>>,
    scope: Option<String>,
}

fn text(v: &serde_json::Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str()).map(str::to_string)
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One token request, tried again through a provider's hiccup as every token request is
/// (see `retry`): a form POST with the client's authentication; no redirects (the client is
/// built without them).
async fn token_request(
    http: &reqwest::Client,
    endpoint: &str,
    client: &ClientAuth<'_>,
    form: Vec<(&'static str, String)>,
) -> Result<TokenResponse, AuthError> {
    super::retry::with_retry(
        &format!("the token request to `{endpoint}`"),
        super::retry::PATIENCE,
        || token_request_once(http, endpoint, client, form.clone()),
    )
    .await
}

async fn token_request_once(
    http: &reqwest::Client,
    endpoint: &str,
    client: &ClientAuth<'_>,
    mut form: Vec<(&'static str, String)>,
) -> Result<TokenResponse, AuthError> {
    let mut req = http.post(endpoint).header(reqwest::header::ACCEPT, "application/json");
    match client {
        ClientAuth::Public { client_id } => form.push(("client_id", client_id.to_string())),
        ClientAuth::Basic { client_id, secret } => {
            req = req.basic_auth(form_encode(client_id), Some(form_encode(secret.expose())));
        }
        ClientAuth::PrivateKeyJwt { client_id, key, issuer } => {
            form.push(("client_id", client_id.to_string()));
            for (k, v) in key
                .token_params(client_id, issuer)
                .map_err(AuthError::ClientAssertion)?
            {
                form.push((k, v.expose().clone()));
            }
        }
    }
    // Encoded with `url`'s serializer (as oauth2 does), not reqwest's `form()`, which would
    // link serde_urlencoded into the addon for this one body.
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let resp = req
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| AuthError::Network(format!("`{endpoint}`: {}", crate::bridge::describe(&e))))?;
    let status = resp.status();
    let answer = super::retry::Answer {
        status: status.as_u16(),
        retry_after: resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::retry::parse_retry_after(v, std::time::SystemTime::now())),
    };
    let body = resp
        .bytes()
        .await
        .map_err(|e| AuthError::Network(crate::bridge::describe(&e)))?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !status.is_success() {
        return Err(match text(&v, "error") {
            Some(error) if matches!(error.as_str(), "temporarily_unavailable" | "server_error") => {
                AuthError::Unavailable {
                    detail: format!("`{error}`{}", super::describe_opt(&text(&v, "error_description"))),
                    retry_after: answer.retry_after,
                    tries: 1,
                }
            }
            Some(error) => AuthError::TokenRefused {
                error,
                description: text(&v, "error_description"),
            },
            None if answer.is_transient() => AuthError::Unavailable {
                detail: format!("HTTP {}", status.as_u16()),
                retry_after: answer.retry_after,
                tries: 1,
            },
            None => AuthError::Unexpected(format!("`{endpoint}` answered HTTP {}", status.as_u16())),
        });
    }
    // The body is never printed: it holds a token.
    let access_token = text(&v, "access_token")
        .ok_or_else(|| AuthError::Network(format!("`{endpoint}` answered without an `access_token`")))?;
    Ok(TokenResponse {
        access_token: Secret::new(access_token),
        token_type: text(&v, "token_type"),
        issued_token_type: text(&v, "issued_token_type"),
        expires_in: v.get("expires_in").and_then(|x| x.as_u64()),
        refresh_token: text(&v, "refresh_token").map(Secret::new),
        scope: text(&v, "scope"),
    })
}

fn scope_param(scopes: &[String]) -> Option<(&'static str, String)> {
    (!scopes.is_empty()).then(|| ("scope", scopes.join(" ")))
}

/// Step 1 (RFC 8693 token exchange at the identity provider): the ID token for an ID-JAG
/// whose audience is the MCP server's authorization server and whose resource is the MCP
/// server.
pub async fn request_id_jag(
    http: &reqwest::Client,
    idp: &IdentityProvider<'_>,
    id_token: &Secret<String>,
    mcp: &McpAuthorizationServer<'_>,
) -> Result<Secret<String>, AuthError> {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE.to_string()),
        ("requested_token_type", ID_JAG.to_string()),
        ("audience", mcp.issuer.to_string()),
        ("resource", mcp.resource.to_string()),
        ("subject_token", id_token.expose().clone()),
        ("subject_token_type", ID_TOKEN.to_string()),
    ];
    form.extend(scope_param(mcp.scopes));
    let r = token_request(http, idp.token_endpoint, &idp.client, form).await?;
    match r.issued_token_type.as_deref() {
        None | Some(ID_JAG) => Ok(r.access_token),
        Some(other) => Err(AuthError::TokenRefused {
            error: "unexpected_token_type".into(),
            description: Some(format!(
                "the identity provider issued `{other}`, not an identity assertion grant (`{ID_JAG}`)"
            )),
        }),
    }
}

/// Step 2 (RFC 7523 §2.1 JWT bearer grant at the MCP server's authorization server): the
/// ID-JAG for an access token.
pub async fn redeem_id_jag(
    http: &reqwest::Client,
    mcp: &McpAuthorizationServer<'_>,
    id_jag: &Secret<String>,
) -> Result<Tokens, AuthError> {
    let mut form = vec![
        ("grant_type", JWT_BEARER.to_string()),
        ("assertion", id_jag.expose().clone()),
    ];
    form.extend(scope_param(mcp.scopes));
    let r = token_request(http, mcp.token_endpoint, &mcp.client, form).await?;
    let obtained_at = now();
    Ok(Tokens {
        access_token: r.access_token,
        token_type: r.token_type.unwrap_or_else(|| "Bearer".into()),
        refresh_token: r.refresh_token,
        id_token: None,
        scope: r.scope,
        expires_at: r.expires_in.map(|s| obtained_at + s),
        obtained_at,
        subject: None,
        username: None,
    })
}

/// The whole exchange: ID token → ID-JAG (identity provider) → access token (MCP server's
/// authorization server).
pub async fn obtain(
    http: &reqwest::Client,
    idp: &IdentityProvider<'_>,
    mcp: &McpAuthorizationServer<'_>,
    id_token: &Secret<String>,
) -> Result<Tokens, AuthError> {
    let id_jag = request_id_jag(http, idp, id_token, mcp).await?;
    tracing::debug!(
        "the identity provider issued an identity assertion grant for {}",
        mcp.issuer
    );
    redeem_id_jag(http, mcp, &id_jag).await
}

/// The unverified claims of a JWT (only to read back `exp`/`sub` of an ID token that was
/// verified when it was received, or that the user handed us for the identity provider to
/// verify).
fn claims(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Still usable for an exchange: expiring more than a minute from now.
fn id_token_fresh(jwt: &str) -> bool {
    claims(jwt)
        .and_then(|c| c["exp"].as_u64())
        .is_some_and(|exp| exp > now() + 60)
}

/// Where the ID token to exchange came from.
enum IdTokenSource {
    File,
    Cache,
    Login,
}

impl super::TokenManager {
    /// Tokens for the MCP server by cross-app access (called by `tokens()` under the cache
    /// lock): discover the MCP server's authorization server (RFC 9728), get an ID token of
    /// the identity provider, exchange. A refused cached ID token gets one new login.
    pub(super) async fn cross_app_tokens(&self, inner: &mut super::Inner) -> Result<Tokens, AuthError> {
        let cfg = &self.cfg;
        let x = cfg
            .client_auth
            .cross_app
            .as_ref()
            .expect("cross_app_tokens without --cross-app-access");
        let http = self.http();
        let backend = cfg.backend.clone().expect("config: cross-app access needs a backend");
        if inner.discovered.issuer.is_none() {
            let err = |reason| AuthError::Discovery {
                issuer: backend.to_string(),
                reason,
            };
            let challenge = discovery::challenge(http, &backend).await.map_err(err)?;
            let info = discovery::protected_resource(http, &backend, &challenge)
                .await
                .map_err(err)?;
            Self::adopt(&mut inner.discovered, info, &backend);
        }
        let d = &inner.discovered;
        let as_issuer = d.issuer.clone().unwrap_or_default();
        let resource = cfg
            .resource
            .clone()
            .or(d.resource.clone())
            .unwrap_or_else(|| backend.to_string());
        let mut scopes = d.scopes.clone().unwrap_or_default();
        for s in &inner.extra_scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let as_meta = discovery::authorization_server(http, &as_issuer, inner.discovered.fallback).await?;
        let as_token_endpoint = token_endpoint(&as_meta, &as_issuer)?;
        let mcp_client = match &x.client_secret {
            Some(secret) => ClientAuth::Basic {
                client_id: &x.client_id,
                secret,
            },
            None => ClientAuth::Public {
                client_id: &x.client_id,
            },
        };
        let mcp = McpAuthorizationServer {
            issuer: as_meta.issuer.as_str(),
            token_endpoint: &as_token_endpoint,
            client: mcp_client,
            resource: &resource,
            scopes: &scopes,
        };

        let idp_issuer = cfg
            .issuer
            .as_ref()
            .expect("config: cross-app access needs an issuer")
            .as_str()
            .trim_end_matches('/')
            .to_string();
        let idp_meta = discovery::authorization_server(http, &idp_issuer, false).await?;
        let idp_client_id = cfg
            .client_id
            .clone()
            .expect("config: cross-app access needs a client ID");
        let idp_issuer = idp_meta.issuer.clone();
        let idp_token_endpoint = token_endpoint(&idp_meta, &idp_issuer)?;
        // The identity provider's own login, cached under its own key (issuer, client,
        // scopes, no resource): one login serves every MCP server reached this way.
        let idp_cfg = AuthConfig {
            resource: None,
            client_auth: ClientAuthOptions {
                private_key: cfg.client_auth.private_key.clone(),
                metadata_url: None,
                cross_app: None,
            },
            ..cfg.clone()
        };
        let idp_provider = grant::Provider::new(
            idp_meta,
            idp_client_id.clone(),
            cfg.client_secret.clone(),
            None,
            idp_cfg.scopes.clone(),
            idp_cfg,
        );
        let idp_client = match (&cfg.client_auth.private_key, &cfg.client_secret) {
            (Some(key), _) => ClientAuth::PrivateKeyJwt {
                client_id: &idp_client_id,
                key,
                issuer: &idp_issuer,
            },
            (None, Some(secret)) => ClientAuth::Basic {
                client_id: &idp_client_id,
                secret,
            },
            (None, None) => ClientAuth::Public {
                client_id: &idp_client_id,
            },
        };
        let idp = IdentityProvider {
            token_endpoint: &idp_token_endpoint,
            client: idp_client,
        };

        let mut renew = false;
        loop {
            let (id_token, source) = self.idp_id_token(&idp_provider, renew).await?;
            match obtain(http, &idp, &mcp, &id_token).await {
                Err(AuthError::TokenRefused { error, .. })
                    if error == "invalid_grant" && matches!(source, IdTokenSource::Cache) && !renew =>
                {
                    tracing::info!(
                        "the identity provider no longer accepts the cached ID token; logging in there again"
                    );
                    renew = true;
                }
                Err(AuthError::TokenRefused { error, description }) if matches!(source, IdTokenSource::File) => {
                    return Err(AuthError::TokenRefused {
                        error,
                        description: Some(format!(
                            "{}(the ID token came from `--id-token-file`)",
                            description.map(|d| format!("{d} ")).unwrap_or_default()
                        )),
                    })
                }
                Err(e) => return Err(e),
                Ok(mut t) => {
                    let c = claims(id_token.expose());
                    t.subject = c.as_ref().and_then(|c| c["sub"].as_str()).map(str::to_string);
                    t.username = c
                        .as_ref()
                        .and_then(|c| c["preferred_username"].as_str().or(c["email"].as_str()))
                        .map(str::to_string);
                    inner.force_login = false;
                    tracing::info!(
                        "obtained an access token for {} by cross-app access{}",
                        mcp.resource,
                        t.username
                            .as_deref()
                            .or(t.subject.as_deref())
                            .map(|u| format!(" as {u}"))
                            .unwrap_or_default()
                    );
                    return Ok(t);
                }
            }
        }
    }

    /// The identity provider's ID token: from `--id-token-file`, else its cached login (ID
    /// token still fresh, or refreshed), else a new login there. `renew`: skip the cache.
    async fn idp_id_token(
        &self,
        provider: &grant::Provider,
        renew: bool,
    ) -> Result<(Secret<String>, IdTokenSource), AuthError> {
        let cfg = &self.cfg;
        if let Some(path) = &cfg.client_auth.cross_app.as_ref().and_then(|x| x.id_token_file.clone()) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| AuthError::IdToken(format!("cannot read `{}`: {e}", path.display())))?;
            let token = text.trim().to_string();
            if token.split('.').count() != 3 {
                return Err(AuthError::IdToken(format!("`{}` holds no JWT", path.display())));
            }
            return Ok((Secret::new(token), IdTokenSource::File));
        }
        let idp_cfg = &provider.cfg;
        let cache = TokenCache::new(idp_cfg);
        let _lock = cache
            .lock(cfg.auth_timeout + Duration::from_secs(30))
            .await
            .map_err(AuthError::Lock)?;
        let cached = cache.load_entry().map(|(t, _)| t).filter(|_| !renew);
        if let Some(id) = cached
            .as_ref()
            .and_then(|t| t.id_token.clone())
            .filter(|id| id_token_fresh(id.expose()))
        {
            return Ok((id, IdTokenSource::Cache));
        }
        let http = self.http();
        if let Some(rt) = cached.as_ref().and_then(|t| t.refresh_token.clone()) {
            match provider.refresh(http, &rt).await {
                Ok(mut t) => {
                    if let Some(id) = t.id_token.clone() {
                        if t.refresh_token.is_none() {
                            t.refresh_token = Some(rt);
                        }
                        cache.save_or_warn(&t, &Discovered::default());
                        return Ok((id, IdTokenSource::Cache));
                    }
                    tracing::debug!("the identity provider's refresh gave no ID token; logging in there");
                }
                Err(e) if e.needs_login() => {
                    tracing::info!(
                        "the identity provider no longer accepts the refresh token ({e}); logging in there again"
                    )
                }
                Err(e) => return Err(e),
            }
        }
        if !self.interactive {
            return Err(AuthError::LoginRequired);
        }
        tracing::info!(
            "cross-app access: logging in at the identity provider {}",
            provider.issuer()
        );
        let t = match cfg.grant {
            GrantKind::Device => provider.device_login(http, &idp_cfg.scopes).await?,
            _ => provider.browser_login(http, &idp_cfg.scopes).await?,
        };
        let id = t.id_token.clone().ok_or_else(|| {
            AuthError::IdToken("the identity provider returned no ID token (is `openid` among the scopes?)".into())
        })?;
        cache.save_or_warn(&t, &Discovered::default());
        Ok((id, IdTokenSource::Login))
    }
}

fn token_endpoint(m: &discovery::Metadata, issuer: &str) -> Result<String, AuthError> {
    m.token_endpoint.clone().ok_or_else(|| AuthError::Discovery {
        issuer: issuer.to_string(),
        reason: "its metadata names no `token_endpoint`".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_token_freshness_reads_exp_without_trusting_anything_else() {
        use base64::Engine;
        let jwt = |claims: serde_json::Value| {
            let b = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!("{}.{}.sig", b(&serde_json::json!({"alg": "none"})), b(&claims))
        };
        assert!(id_token_fresh(&jwt(serde_json::json!({ "exp": now() + 3600 }))));
        assert!(
            !id_token_fresh(&jwt(serde_json::json!({ "exp": now() + 30 }))),
            "expiring within a minute"
        );
        assert!(!id_token_fresh(&jwt(serde_json::json!({ "sub": "x" }))), "no exp");
        assert!(!id_token_fresh("not-a-jwt"));
        assert_eq!(
            claims(&jwt(serde_json::json!({ "sub": "alice" }))).unwrap()["sub"],
            "alice"
        );
    }

    /// A one-module fake: answers each POST by path with a canned JSON body and records
    /// (path, Authorization header, form).
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>, Vec<(String, String)>)>>>;

    async fn fake_server(mut routes: Vec<(&'static str, u16, serde_json::Value)>) -> (String, Seen) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Default::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let (head, body) = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        while buf.len() < i + 4 + len {
                            let n = sock.read(&mut chunk).await.unwrap();
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        break (head, buf[i + 4..i + 4 + len].to_vec());
                    }
                };
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let auth = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: ").or(l.strip_prefix("Authorization: ")))
                    .map(str::to_string);
                let form = url::form_urlencoded::parse(&body).into_owned().collect();
                log.lock().unwrap().push((path.clone(), auth, form));
                // A 5xx route answers once (a hiccup); the next route for the path then.
                let (status, json) = match routes.iter().position(|(p, ..)| *p == path) {
                    Some(i) if routes[i].1 >= 500 => {
                        let (_, s, j) = routes.remove(i);
                        (s, j.to_string())
                    }
                    Some(i) => (routes[i].1, routes[i].2.to_string()),
                    None => (404, "{}".into()),
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            }
        });
        (base, seen)
    }

    fn param<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
        form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn the_wire_id_token_to_id_jag_to_access_token() {
        let (base, seen) = fake_server(vec![
            (
                "/idp/token",
                200,
                serde_json::json!({"access_token": "the-id-jag", "issued_token_type": ID_JAG, "token_type": "N_A"}),
            ),
            (
                "/as/token",
                200,
                serde_json::json!({"access_token": "mcp-at", "token_type": "Bearer", "expires_in": 600, "scope": "mcp"}),
            ),
        ])
        .await;
        let (idp_te, as_te) = (format!("{base}/idp/token"), format!("{base}/as/token"));
        let secret = Secret::new("s3cret:+".to_string());
        let idp = IdentityProvider {
            token_endpoint: &idp_te,
            client: ClientAuth::Public {
                client_id: "idp-client",
            },
        };
        let scopes = vec!["mcp".to_string()];
        let mcp = McpAuthorizationServer {
            issuer: "https://as.example",
            token_endpoint: &as_te,
            client: ClientAuth::Basic {
                client_id: "mcp-client",
                secret: &secret,
            },
            resource: "https://mcp.example/mcp",
            scopes: &scopes,
        };
        let http = reqwest::Client::new();
        let t = obtain(&http, &idp, &mcp, &Secret::new("the-id-token".into()))
            .await
            .unwrap();
        assert_eq!(t.access_token.expose(), "mcp-at");
        assert_eq!(t.scope.as_deref(), Some("mcp"));
        assert!(t.expires_at.is_some_and(|e| e >= now() + 590));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        // RFC 8693 at the identity provider, as a public client.
        let (path, auth, form) = &seen[0];
        assert_eq!((path.as_str(), auth), ("/idp/token", &None));
        for (k, v) in [
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("subject_token", "the-id-token"),
            ("subject_token_type", ID_TOKEN),
            ("audience", "https://as.example"),
            ("resource", "https://mcp.example/mcp"),
            ("client_id", "idp-client"),
            ("scope", "mcp"),
        ] {
            assert_eq!(param(form, k), Some(v), "{k}");
        }
        // RFC 7523 at the MCP server's authorization server, client_secret_basic with the
        // id and secret form-encoded first.
        let (path, auth, form) = &seen[1];
        assert_eq!(path, "/as/token");
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("mcp-client:s3cret%3A%2B");
        assert_eq!(auth.as_deref(), Some(format!("Basic {basic}").as_str()));
        assert_eq!(param(form, "grant_type"), Some(JWT_BEARER));
        assert_eq!(param(form, "assertion"), Some("the-id-jag"));
        assert_eq!(param(form, "client_id"), None, "the client is in the Basic header");
    }

    #[tokio::test]
    async fn refusals_and_wrong_token_types_are_reported_as_such() {
        let (base, _) = fake_server(vec![
            (
                "/refuse",
                400,
                serde_json::json!({"error": "invalid_grant", "error_description": "policy says no"}),
            ),
            ("/wrong", 200, serde_json::json!({"access_token": "x", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})),
        ])
        .await;
        let http = reqwest::Client::new();
        let mcp = unused_mcp_server();
        for (path, want) in [("/refuse", "invalid_grant"), ("/wrong", "unexpected_token_type")] {
            let te = format!("{base}{path}");
            let idp = IdentityProvider {
                token_endpoint: &te,
                client: ClientAuth::Public { client_id: "i" },
            };
            match request_id_jag(&http, &idp, &Secret::new("t".into()), &mcp).await {
                Err(AuthError::TokenRefused { error, .. }) => assert_eq!(error, want),
                other => panic!("{path}: expected a refusal, got {other:?}"),
            }
        }
    }

    /// An MCP authorization server the identity provider step never reaches.
    fn unused_mcp_server() -> McpAuthorizationServer<'static> {
        McpAuthorizationServer {
            issuer: "https://as.example",
            token_endpoint: "http://127.0.0.1:1/unused",
            client: ClientAuth::Public { client_id: "m" },
            resource: "https://mcp.example/mcp",
            scopes: &[],
        }
    }

    #[tokio::test]
    async fn a_provider_hiccup_is_tried_again() {
        // One 503 and one `temporarily_unavailable`, then the ID-JAG: no error.
        let (base, seen) = fake_server(vec![
            ("/t", 503, serde_json::json!({})),
            ("/t", 500, serde_json::json!({"error": "temporarily_unavailable"})),
            (
                "/t",
                200,
                serde_json::json!({"access_token": "jag", "issued_token_type": ID_JAG}),
            ),
        ])
        .await;
        let te = format!("{base}/t");
        let idp = IdentityProvider {
            token_endpoint: &te,
            client: ClientAuth::Public { client_id: "i" },
        };
        let mcp = unused_mcp_server();
        let jag = request_id_jag(&reqwest::Client::new(), &idp, &Secret::new("t".into()), &mcp)
            .await
            .expect("the third try succeeds");
        assert_eq!(jag.expose(), "jag");
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        // RFC 6749 §2.3.1: `application/x-www-form-urlencoded` before Base64.
        assert_eq!(form_encode("a:b c/é"), "a%3Ab+c%2F%C3%A9");
        assert_eq!(form_encode("plain-id_1.x"), "plain-id_1.x");
    }
}
