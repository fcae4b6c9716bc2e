//! On-disk token cache, in the original's folder (`~/.fastmcp/oauth-mcp-client-cache/`). One
//! file per (issuer, client, scopes, resource), named from the issuer as the original did
//! plus a short hash of the rest, so realms, clients and scope sets never share an entry.
//! The folder is 0700 and files 0600, written to a temp file and renamed. Refresh and login
//! are serialised across processes by a lock file next to the entry.

use crate::config::AuthConfig;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FORMAT: &str = "authful-mcp-proxy/1";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a login or refresh produced. Expiry is absolute (seconds since the epoch).
#[derive(Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: Secret<String>,
    #[serde(default = "bearer")]
    pub token_type: String,
    #[serde(default)]
    pub refresh_token: Option<Secret<String>>,
    #[serde(default)]
    pub id_token: Option<Secret<String>>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub obtained_at: u64,
    /// Who logged in (from the verified ID token), for `status`.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

fn bearer() -> String {
    "Bearer".into()
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_at", &self.expires_at)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Refresh this long before expiry: a fifth of the lifetime, at most 60 s, so short
    /// lifetimes don't turn into a refresh on every request.
    pub fn margin(&self) -> u64 {
        match self.expires_at {
            Some(exp) => (exp.saturating_sub(self.obtained_at) / 5).min(60),
            None => 0,
        }
    }

    /// Usable now (with the refresh margin). No expiry known: usable until a 401 says otherwise.
    pub fn is_fresh(&self, now: u64) -> bool {
        match self.expires_at {
            Some(exp) => now + self.margin() < exp,
            None => true,
        }
    }

    /// A fingerprint for comparing tokens without keeping or printing them.
    pub fn fingerprint(token: &Secret<String>) -> [u8; 32] {
        Sha256::digest(token.expose().as_bytes()).into()
    }
}

/// What was learned about where to log in when it was not configured: the authorization
/// server named by the MCP server (RFC 9728) and a dynamically registered client (RFC 7591).
/// Cached so that a warm start needs no network round trip.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Discovered {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub registration: Option<crate::auth::registration::Registration>,
    /// The MCP server named no authorization server (MCP 2025-03-26): `issuer` is its origin,
    /// whose default endpoints are used when it serves no metadata.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    format: String,
    issuer: String,
    client_id: String,
    scopes: String,
    #[serde(default)]
    resource: Option<String>,
    tokens: Tokens,
    #[serde(default)]
    discovered: Discovered,
    updated_at: u64,
}

pub struct TokenCache {
    dir: Option<PathBuf>,
    stem: String,
    issuer: String,
    client_id: String,
    scopes: String,
    resource: Option<String>,
    warned_read: AtomicBool,
    warned_write: AtomicBool,
}

/// The original's file-name rule: scheme and host with `. / : ...` turned into `_`.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if matches!(
            c,
            '.' | '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | '%' | '=' | '&'
        ) {
            '_'
        } else {
            c
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_matches('_').to_string()
}

impl TokenCache {
    pub fn new(cfg: &AuthConfig) -> Self {
        let mut scopes: Vec<&str> = cfg.scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        scopes.dedup();
        let scopes = scopes.join(" ");
        // Without a configured issuer or client, the entry is keyed by the backend it was
        // discovered from and marked as using a registered client.
        let issuer = match (&cfg.issuer, &cfg.backend) {
            (Some(i), _) => i.as_str().trim_end_matches('/').to_string(),
            (None, Some(b)) => format!("discovered-from {}", b.as_str()),
            (None, None) => "unknown".to_string(),
        };
        let mut client_id = cfg
            .client_id
            .clone()
            .or_else(|| cfg.client_auth.metadata_url.clone())
            .unwrap_or_else(|| "(registered)".into());
        // Cross-app access: tokens of the MCP server's authorization server, one entry per
        // MCP server and client there (the identity provider's own login has its own entry).
        if let Some(x) = &cfg.client_auth.cross_app {
            let backend = cfg.backend.as_ref().map(|b| b.as_str()).unwrap_or("");
            client_id = format!("{client_id} cross-app {} {backend}", x.client_id);
        }
        let key = format!(
            "{issuer}\n{client_id}\n{scopes}\n{}",
            cfg.resource.as_deref().unwrap_or("")
        );
        let hash = Sha256::digest(key.as_bytes());
        let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let mut readable = sanitize(
            cfg.issuer
                .as_ref()
                .map(|i| i.as_str())
                .or(cfg.backend.as_ref().map(|b| b.as_str()))
                .unwrap_or("unknown"),
        );
        readable.truncate(80);
        TokenCache {
            dir: cfg.cache_dir.clone(),
            stem: format!("{readable}_{short}"),
            issuer,
            client_id,
            scopes,
            resource: cfg.resource.clone(),
            warned_read: AtomicBool::new(false),
            warned_write: AtomicBool::new(false),
        }
    }

    /// The entry's name: the readable issuer plus a hash of the whole key.
    pub fn stem(&self) -> &str {
        &self.stem
    }

    /// The issuer and client the entry is for, as named in it.
    pub fn names(&self) -> (&str, &str) {
        (&self.issuer, &self.client_id)
    }

    pub fn path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{}_tokens.json", self.stem)))
    }

    fn lock_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{}.lock", self.stem)))
    }

    /// Problems reading the cache and problems writing it are told once each: the second
    /// kind is the one that says tokens are kept in memory only.
    fn warn_read_once(&self, text: String) {
        if !self.warned_read.swap(true, Ordering::Relaxed) {
            tracing::warn!("{text}");
        }
    }

    fn warn_write_once(&self, text: String) {
        if !self.warned_write.swap(true, Ordering::Relaxed) {
            tracing::warn!("{text}");
        }
    }

    /// The cached tokens, if any. A corrupt or foreign file counts as empty, with a warning.
    pub fn load(&self) -> Option<Tokens> {
        self.load_entry().map(|(t, _)| t)
    }

    /// The cached tokens and what was discovered with them.
    pub fn load_entry(&self) -> Option<(Tokens, Discovered)> {
        let path = self.path()?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            // No entry yet (or no folder, or a file where the folder should be): nothing cached.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return None
            }
            Err(e) => {
                self.warn_read_once(format!(
                    "cannot read the token cache `{}`: {e}; logging in again",
                    path.display()
                ));
                return None;
            }
        };
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(e)
                if e.format == FORMAT
                    && e.issuer == self.issuer
                    && e.client_id == self.client_id
                    && e.scopes == self.scopes
                    && e.resource == self.resource =>
            {
                Some((e.tokens, e.discovered))
            }
            Ok(_) => {
                self.warn_read_once(format!(
                    "the token cache `{}` belongs to another configuration; ignoring it",
                    path.display()
                ));
                None
            }
            Err(_) => {
                self.warn_read_once(format!(
                    "the token cache `{}` is unreadable (corrupt?); ignoring it and logging in again",
                    path.display()
                ));
                None
            }
        }
    }

    /// Write atomically: temp file (0600) in the same folder, fsync, rename.
    pub fn save(&self, tokens: &Tokens) -> Result<(), String> {
        self.save_entry(tokens, &Discovered::default())
    }

    pub fn save_entry(&self, tokens: &Tokens, discovered: &Discovered) -> Result<(), String> {
        let path = self.path().ok_or("no home directory to keep the token cache in")?;
        let dir = self.dir.as_ref().expect("path implies dir");
        ensure_private_dir(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let entry = Entry {
            format: FORMAT.into(),
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            scopes: self.scopes.clone(),
            resource: self.resource.clone(),
            tokens: tokens.clone(),
            discovered: discovered.clone(),
            updated_at: now(),
        };
        let bytes = serde_json::to_vec_pretty(&entry).map_err(|e| e.to_string())?;
        let tmp = dir.join(format!(
            ".{}.{}.{:x}.tmp",
            self.stem,
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = (|| -> std::io::Result<()> {
            let mut f = private_file(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        self.remove_temp_files(Some(Duration::from_secs(60)));
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(format!("cannot write the token cache `{}`: {e}", path.display()));
        }
        Ok(())
    }

    /// Delete temp files of this entry left by a process killed mid-write (they may hold
    /// tokens); `older_than`: only those at least that old (another process may be writing).
    fn remove_temp_files(&self, older_than: Option<Duration>) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = fs::read_dir(dir) else { return };
        let prefix = format!(".{}.", self.stem);
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with(&prefix) && name.ends_with(".tmp")) {
                continue;
            }
            let old_enough = match older_than {
                None => true,
                Some(age) => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|el| el >= age),
            };
            if old_enough {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Save, or warn once and keep going with the tokens in memory.
    pub fn save_or_warn(&self, tokens: &Tokens, discovered: &Discovered) {
        if let Err(e) = self.save_entry(tokens, discovered) {
            self.warn_write_once(format!("{e}; keeping the tokens in memory only"));
        }
    }

    pub fn remove(&self) -> std::io::Result<bool> {
        let Some(path) = self.path() else { return Ok(false) };
        if let Some(l) = self.lock_path() {
            let _ = fs::remove_file(l);
        }
        self.remove_temp_files(None);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Hold the cross-process lock for this entry (bounded wait, with a message while waiting).
    /// Without a usable cache folder there is nothing to share, so no lock is needed.
    pub async fn lock(&self, wait: Duration) -> Result<Option<File>, String> {
        let Some(path) = self.lock_path() else { return Ok(None) };
        let dir = self.dir.clone().expect("lock path implies dir");
        let file = match ensure_private_dir(&dir).and_then(|_| lock_file(&path)) {
            Ok(f) => f,
            Err(e) => {
                self.warn_write_once(format!(
                    "cannot use the token cache folder `{}`: {e}; keeping the tokens in memory only",
                    dir.display()
                ));
                return Ok(None);
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    self.warn_write_once(format!("cannot lock `{}`: {e}; continuing without it", path.display()));
                    return Ok(None);
                }
            }
            if !told {
                tracing::info!(
                    "another authful-mcp-proxy is logging in or refreshing for this account; waiting for it"
                );
                told = true;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "gave up waiting {}s for another authful-mcp-proxy to finish logging in",
                    wait.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Remove every cached login in `dir`; returns how many entries were removed.
pub fn remove_all(dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("_tokens.json") {
            fs::remove_file(entry.path())?;
            n += 1;
        } else if name.ends_with(".lock") || (name.starts_with('.') && name.ends_with(".tmp")) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(n)
}

/// Write a small file beside the token cache: 0600 in a 0700 directory, through a temp
/// file and a rename, so a process killed mid-write leaves the old file or the new one.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().ok_or("no directory")?;
    ensure_private_dir(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{:x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = private_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(format!("cannot write `{}`: {e}", path.display()));
    }
    Ok(())
}

fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.is_dir() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    fs::create_dir_all(dir)
}

fn private_file(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

fn lock_file(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn cfg(dir: &Path, issuer: &str, client: &str, scopes: &[&str]) -> AuthConfig {
        AuthConfig {
            issuer: Some(Url::parse(issuer).unwrap()),
            client_id: Some(client.into()),
            client_secret: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            scopes_explicit: true,
            redirect_url: Url::parse("http://localhost:8080/auth/callback").unwrap(),
            auth_timeout: Duration::from_secs(5),
            cache_dir: Some(dir.to_path_buf()),
            token_store: crate::config::StoreKind::File,
            resource: None,
            no_resource: false,
            backend: None,
            grant: crate::config::GrantKind::Auto,
            authorize_params: vec![],
            client_auth: Default::default(),
        }
    }

    fn tokens(at: &str) -> Tokens {
        Tokens {
            access_token: Secret::new(at.into()),
            token_type: "Bearer".into(),
            refresh_token: Some(Secret::new("rt-secret-value".into())),
            id_token: None,
            scope: None,
            expires_at: Some(now() + 3600),
            obtained_at: now(),
            subject: Some("alice".into()),
            username: None,
        }
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "amp-cache-test-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        d
    }

    #[test]
    fn file_names_keep_the_originals_shape_and_separate_configurations() {
        let d = tmp();
        let name = |i: &str, c: &str, s: &[&str]| {
            TokenCache::new(&cfg(&d, i, c, s))
                .path()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        let a = name("https://auth.example.com", "c", &["openid"]);
        assert!(
            a.starts_with("https_auth_example_com_") && a.ends_with("_tokens.json"),
            "{a}"
        );
        // Realms on one host, clients, and scope sets each get their own entry.
        let realms = [
            name("https://kc.example.com/realms/a", "c", &["openid"]),
            name("https://kc.example.com/realms/b", "c", &["openid"]),
        ];
        assert_ne!(realms[0], realms[1]);
        assert_ne!(a, name("https://auth.example.com", "other", &["openid"]));
        assert_ne!(a, name("https://auth.example.com", "c", &["openid", "email"]));
        // Scope order and a trailing slash on the issuer do not matter.
        assert_eq!(
            name("https://auth.example.com/", "c", &["email", "openid"]),
            name("https://auth.example.com", "c", &["openid", "email"])
        );
    }

    #[test]
    fn save_load_roundtrip_with_private_modes() {
        let d = tmp().join("nested");
        let c = TokenCache::new(&cfg(&d, "https://idp.example", "c", &["openid"]));
        assert!(c.load().is_none());
        c.save(&tokens("at-1")).unwrap();
        assert_eq!(c.load().unwrap().access_token.expose(), "at-1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
            assert_eq!(
                fs::metadata(c.path().unwrap()).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // No temp files left behind.
        let leftovers: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        assert!(c.remove().unwrap());
        assert!(c.load().is_none());
        let _ = fs::remove_dir_all(d.parent().unwrap());
    }

    #[test]
    fn corrupt_and_foreign_files_count_as_empty() {
        let d = tmp();
        let c = TokenCache::new(&cfg(&d, "https://idp.example", "c", &["openid"]));
        c.save(&tokens("at")).unwrap();
        fs::write(c.path().unwrap(), b"{not json").unwrap();
        assert!(c.load().is_none());
        // The original's format (or any other JSON) is not mistaken for ours.
        fs::write(
            c.path().unwrap(),
            br#"{"data":{"token_payload":{"access_token":"AT"}},"timestamp":1}"#,
        )
        .unwrap();
        assert!(c.load().is_none());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn freshness_uses_a_margin_scaled_to_the_lifetime() {
        let mut t = tokens("at");
        t.obtained_at = 1000;
        t.expires_at = Some(1010); // 10 s lifetime → 2 s margin
        assert!(t.is_fresh(1007));
        assert!(!t.is_fresh(1008));
        t.expires_at = Some(1000 + 3600); // long lifetime → 60 s margin
        assert!(t.is_fresh(1000 + 3539));
        assert!(!t.is_fresh(1000 + 3540));
        t.expires_at = None; // unknown expiry: fresh until a 401
        assert!(t.is_fresh(u64::MAX / 2));
    }

    #[test]
    fn debug_output_never_shows_tokens() {
        let t = tokens("very-secret-access");
        let s = format!("{t:?}");
        assert!(
            !s.contains("very-secret-access") && !s.contains("rt-secret-value"),
            "{s}"
        );
    }

    #[tokio::test]
    async fn lock_is_exclusive_until_dropped() {
        let d = tmp();
        let c = TokenCache::new(&cfg(&d, "https://idp.example", "c", &["openid"]));
        let held = c.lock(Duration::from_secs(1)).await.unwrap();
        assert!(held.is_some());
        let second = c.lock(Duration::from_millis(300)).await;
        assert!(second.is_err(), "a second holder must wait and then give up");
        drop(held);
        assert!(c.lock(Duration::from_secs(1)).await.unwrap().is_some());
        let _ = fs::remove_dir_all(&d);
    }
}
