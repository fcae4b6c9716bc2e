//! Where tokens are kept between runs (`--token-store`): the file store ([`TokenCache`], the
//! default and the original's folder), the OS keychain (the refresh token and a registered
//! client's secret in the credential store, the rest in the cache file), or memory (nothing on
//! disk). [`TokenStore`] gives the login code one set of calls over all three. The
//! cross-process lock stays a file lock for `file` and `keychain`; `memory` has none, since
//! nothing is shared. A keychain that fails or does not answer in time hands its work to the
//! file store for the rest of the process, with one warning that says why.

#[cfg(target_os = "linux")]
mod dbus;
mod keychain;
mod memory;

use crate::config::{AuthConfig, Config, StoreKind};
use crate::secret::Secret;
use crate::token_cache::{self, Discovered, TokenCache, Tokens};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What the keychain item holds: what cannot be got again without a new login.
#[derive(Default, Serialize, Deserialize)]
struct KeptSecrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<Secret<String>>,
    /// The secret of a dynamically registered client (RFC 7591).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret: Option<Secret<String>>,
}

pub struct TokenStore {
    kind: StoreKind,
    /// The file store; for `keychain` it keeps the part that is not secret for long (the
    /// access token, expiry, what was discovered) and the lock.
    file: TokenCache,
    keychain: Option<keychain::Item>,
    memory: memory::MemoryStore,
    /// The keychain failed once: the file store does its work from now on.
    fell_back: AtomicBool,
    warned_write: AtomicBool,
}

impl TokenStore {
    pub fn new(cfg: &AuthConfig) -> Self {
        let file = TokenCache::new(cfg);
        let keychain = (cfg.token_store == StoreKind::Keychain).then(|| {
            let (issuer, client) = file.names();
            keychain::Item::new(file.stem(), issuer, client)
        });
        TokenStore {
            kind: cfg.token_store,
            file,
            keychain,
            memory: memory::MemoryStore::default(),
            fell_back: AtomicBool::new(false),
            warned_write: AtomicBool::new(false),
        }
    }

    /// The store in use: `file` after a keychain fell back.
    pub fn kind(&self) -> StoreKind {
        match self.kind {
            StoreKind::Keychain if self.fell_back.load(Ordering::Relaxed) => StoreKind::File,
            k => k,
        }
    }

    /// The cache file (for `status`); none for `memory`.
    pub fn path(&self) -> Option<PathBuf> {
        match self.kind {
            StoreKind::Memory => None,
            _ => self.file.path(),
        }
    }

    /// Where the refresh token lives, for `status`.
    pub fn describe(&self) -> String {
        let file = || {
            self.file
                .path()
                .map(|p| format!("the file `{}`", p.display()))
                .unwrap_or_else(|| "memory only (no home directory)".into())
        };
        match (self.kind(), &self.keychain) {
            (StoreKind::Memory, _) => "memory only (nothing is written to disk)".into(),
            (StoreKind::Keychain, Some(k)) => format!("the system keychain (`{}`), the rest in {}", k.label(), file()),
            _ => file(),
        }
    }

    fn keychain(&self) -> Option<&keychain::Item> {
        self.keychain
            .as_ref()
            .filter(|_| !self.fell_back.load(Ordering::Relaxed))
    }

    /// The first keychain failure: say why, once, and use the file from now on.
    fn fall_back(&self, why: String) {
        if !self.fell_back.swap(true, Ordering::Relaxed) {
            let to = self
                .file
                .path()
                .map(|p| format!("the token cache file `{}`", p.display()))
                .unwrap_or_else(|| "memory".into());
            tracing::warn!("cannot use the system keychain: {why}; keeping the tokens in {to} instead");
        }
    }

    pub fn load(&self) -> Option<Tokens> {
        self.load_entry().map(|(t, _)| t)
    }

    /// The cached tokens and what was discovered with them.
    pub fn load_entry(&self) -> Option<(Tokens, Discovered)> {
        if self.kind == StoreKind::Memory {
            return self.memory.load();
        }
        let from_file = self.file.load_entry();
        let Some(k) = self.keychain() else { return from_file };
        let kept = match k.get() {
            Ok(Some(bytes)) => serde_json::from_slice::<KeptSecrets>(&bytes).ok(),
            Ok(None) => None,
            Err(why) => {
                self.fall_back(why);
                return from_file;
            }
        };
        let Some(kept) = kept else { return from_file };
        let (mut tokens, mut discovered) = from_file.unwrap_or_else(|| {
            // The file is gone but the refresh token is not: an expired entry that refreshes.
            let t = Tokens {
                access_token: Secret::new(String::new()),
                token_type: "Bearer".into(),
                refresh_token: None,
                id_token: None,
                scope: None,
                expires_at: Some(0),
                obtained_at: 0,
                subject: None,
                username: None,
            };
            (t, Discovered::default())
        });
        // A refresh token in the file was written there when the keychain failed, after any
        // that the keychain holds (a keychain save strips the file): the file's is newer.
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = kept.refresh_token;
        }
        if let (Some(reg), Some(secret)) = (discovered.registration.as_mut(), kept.client_secret) {
            reg.client_secret.get_or_insert(secret);
        }
        Some((tokens, discovered))
    }

    pub fn save(&self, tokens: &Tokens) -> Result<(), String> {
        self.save_entry(tokens, &Discovered::default())
    }

    pub fn save_entry(&self, tokens: &Tokens, discovered: &Discovered) -> Result<(), String> {
        if self.kind == StoreKind::Memory {
            self.memory.save(tokens, discovered);
            return Ok(());
        }
        let Some(k) = self.keychain() else {
            return self.file.save_entry(tokens, discovered);
        };
        let kept = KeptSecrets {
            refresh_token: tokens.refresh_token.clone(),
            client_secret: discovered.registration.as_ref().and_then(|r| r.client_secret.clone()),
        };
        let result = if kept.refresh_token.is_none() && kept.client_secret.is_none() {
            k.delete().map(|_| ())
        } else {
            let bytes = serde_json::to_vec(&kept).map_err(|e| e.to_string())?;
            k.set(&bytes)
        };
        if let Err(why) = result {
            self.fall_back(why);
            return self.file.save_entry(tokens, discovered);
        }
        // The file gets what is left: no refresh token, no client secret.
        let mut tokens = tokens.clone();
        tokens.refresh_token = None;
        let mut discovered = discovered.clone();
        if let Some(r) = discovered.registration.as_mut() {
            r.client_secret = None;
        }
        self.file.save_entry(&tokens, &discovered)
    }

    /// Save, or warn once and keep going with the tokens in memory.
    pub fn save_or_warn(&self, tokens: &Tokens, discovered: &Discovered) {
        match self.kind {
            StoreKind::Memory => self.memory.save(tokens, discovered),
            StoreKind::File => self.file.save_or_warn(tokens, discovered),
            StoreKind::Keychain => {
                if let Err(e) = self.save_entry(tokens, discovered) {
                    if !self.warned_write.swap(true, Ordering::Relaxed) {
                        tracing::warn!("{e}; keeping the tokens in memory only");
                    }
                }
            }
        }
    }

    /// Remove this configuration's login from the store (and from the file and keychain both
    /// for `keychain`). True if there was one.
    pub fn remove(&self) -> std::io::Result<bool> {
        if self.kind == StoreKind::Memory {
            return Ok(self.memory.remove());
        }
        let mut removed = false;
        if let Some(k) = self.keychain() {
            match k.delete() {
                Ok(found) => removed |= found,
                Err(why) => self.fall_back(why),
            }
        }
        Ok(self.file.remove()? || removed)
    }

    /// Hold the cross-process lock for this entry; `memory` needs none.
    pub async fn lock(&self, wait: Duration) -> Result<Option<File>, String> {
        match self.kind {
            StoreKind::Memory => Ok(None),
            _ => self.file.lock(wait).await,
        }
    }
}

/// Remove every cached login of the configured store: (where, how many).
pub fn remove_all(config: &Config) -> Result<(String, usize), String> {
    if config.token_store == StoreKind::Memory {
        return Ok(("memory (nothing is kept between runs)".into(), 0));
    }
    let dir = config.cache_dir.clone().ok_or("no cache folder (no home directory)")?;
    let mut items = 0;
    let mut place = dir.display().to_string();
    if config.token_store == StoreKind::Keychain {
        match keychain::delete_all(&dir) {
            Ok(n) => {
                items = n;
                place.push_str(" and the system keychain");
            }
            Err(why) => tracing::warn!("cannot clear the system keychain: {why}"),
        }
    }
    let files = token_cache::remove_all(&dir).map_err(|e| format!("cannot clear `{}`: {e}", dir.display()))?;
    Ok((place, files.max(items)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GrantKind;
    use url::Url;

    fn cfg(store: StoreKind, dir: &std::path::Path) -> AuthConfig {
        AuthConfig {
            issuer: Some(Url::parse("https://idp.example").unwrap()),
            client_id: Some("c".into()),
            client_secret: None,
            scopes: vec!["openid".into()],
            scopes_explicit: true,
            redirect_url: Url::parse("http://localhost:8080/auth/callback").unwrap(),
            auth_timeout: Duration::from_secs(5),
            cache_dir: Some(dir.to_path_buf()),
            token_store: store,
            resource: None,
            no_resource: false,
            backend: None,
            grant: GrantKind::Auto,
            authorize_params: vec![],
            client_auth: Default::default(),
        }
    }

    fn tokens() -> Tokens {
        Tokens {
            access_token: Secret::new("at".into()),
            token_type: "Bearer".into(),
            refresh_token: Some(Secret::new("rt".into())),
            id_token: None,
            scope: None,
            expires_at: Some(token_cache::now() + 600),
            obtained_at: token_cache::now(),
            subject: None,
            username: None,
        }
    }

    #[tokio::test]
    async fn memory_keeps_tokens_for_this_process_and_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("amp-store-test-{:x}", rand::random::<u64>()));
        let s = TokenStore::new(&cfg(StoreKind::Memory, &dir));
        assert!(s.load_entry().is_none());
        s.save_or_warn(&tokens(), &Discovered::default());
        assert_eq!(s.load().unwrap().refresh_token.unwrap().expose(), "rt");
        assert!(s.lock(Duration::from_secs(1)).await.unwrap().is_none(), "no lock file");
        assert!(s.path().is_none());
        assert!(s.remove().unwrap());
        assert!(s.load().is_none());
        assert!(!dir.exists(), "nothing on disk");
    }

    #[test]
    fn the_file_store_is_the_default_and_unchanged() {
        let dir = std::env::temp_dir().join(format!("amp-store-test-{:x}", rand::random::<u64>()));
        let c = cfg(StoreKind::File, &dir);
        let s = TokenStore::new(&c);
        assert_eq!(s.path(), TokenCache::new(&c).path(), "same file as the plain cache");
        s.save(&tokens()).unwrap();
        let on_disk = TokenCache::new(&c).load().unwrap();
        assert_eq!(
            on_disk.refresh_token.unwrap().expose(),
            "rt",
            "the file keeps the refresh token"
        );
        assert!(s.remove().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
