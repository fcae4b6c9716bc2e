//! The OS credential store: the Secret Service on Linux (D-Bus, pure Rust), the Keychain on
//! macOS, the Credential Manager on Windows. One small item per cache entry, found by the
//! entry's name and labelled so a person recognises it. Every call runs on a thread of its
//! own and is given [`LIMIT`]: a locked keyring that waits for a prompt nobody sees, or a bus
//! that never answers, turns into an error instead of a hang.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// How long one keychain call may take.
pub const LIMIT: Duration = Duration::from_secs(3);

/// The service (macOS, Windows) and the `application` attribute (Secret Service) of our items.
const SERVICE: &str = "authful-mcp-proxy";

#[derive(Clone)]
pub struct Item {
    /// The cache entry's name; the account (macOS, Windows) or the `key` attribute.
    key: String,
    label: String,
    issuer: String,
    client: String,
}

impl Item {
    pub fn new(key: &str, issuer: &str, client: &str) -> Item {
        Item {
            key: key.to_string(),
            label: format!("{SERVICE}: {issuer} ({client})"),
            issuer: issuer.to_string(),
            client: client.to_string(),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn get(&self) -> Result<Option<Vec<u8>>, String> {
        let me = self.clone();
        limited(move || os::get(&me))
    }

    pub fn set(&self, secret: &[u8]) -> Result<(), String> {
        let (me, secret) = (self.clone(), secret.to_vec());
        limited(move || os::set(&me, &secret))
    }

    /// True if there was an item.
    pub fn delete(&self) -> Result<bool, String> {
        let me = self.clone();
        limited(move || os::delete(&me))
    }
}

/// Delete the items of every cache entry in `dir` (and on Linux every item of ours).
pub fn delete_all(dir: &Path) -> Result<usize, String> {
    let keys: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix("_tokens.json").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    limited(move || os::delete_all(keys))
}

/// Run `f` on a thread of its own; give up after [`LIMIT`] (the thread is left to finish or
/// to end with the process).
fn limited<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("keychain".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| format!("cannot start a thread for it: {e}"))?;
    match rx.recv_timeout(LIMIT) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("it did not answer within {}s", LIMIT.as_secs())),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("it failed without saying why".into()),
    }
}

#[cfg(target_os = "linux")]
mod os {
    use super::{Item, SERVICE};
    use secret_service::{EncryptionType, Error, SecretService};
    use std::collections::HashMap;

    /// One short-lived runtime per call: zbus runs its connection's tasks on it.
    fn run<T>(f: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(f).map_err(describe)
    }

    fn describe(e: Error) -> String {
        match e {
            Error::Locked => "the keyring is locked".into(),
            Error::Prompt => "the keyring asked for a prompt that was dismissed".into(),
            Error::Unavailable => "no Secret Service is running on the session D-Bus".into(),
            e => format!("the Secret Service: {e}"),
        }
    }

    fn lookup(item: &Item) -> HashMap<&str, &str> {
        HashMap::from([("application", SERVICE), ("key", item.key.as_str())])
    }

    async fn connect<'a>() -> Result<SecretService<'a>, Error> {
        SecretService::connect(EncryptionType::Dh).await
    }

    pub fn get(item: &Item) -> Result<Option<Vec<u8>>, String> {
        run(async {
            let ss = connect().await?;
            let found = ss.search_items(lookup(item)).await?;
            let Some(i) = found.unlocked.first().or(found.locked.first()) else {
                return Ok(None);
            };
            i.ensure_unlocked().await?;
            Ok(Some(i.get_secret().await?))
        })
    }

    pub fn set(item: &Item, secret: &[u8]) -> Result<(), String> {
        run(async {
            let ss = connect().await?;
            let collection = ss.get_default_collection().await?;
            collection.ensure_unlocked().await?;
            let mut attributes = lookup(item);
            attributes.insert("issuer", &item.issuer);
            attributes.insert("client", &item.client);
            collection
                .create_item(&item.label, attributes, secret, true, "application/json")
                .await?;
            Ok(())
        })
    }

    pub fn delete(item: &Item) -> Result<bool, String> {
        run(async {
            let ss = connect().await?;
            let found = ss.search_items(lookup(item)).await?;
            let mut any = false;
            for i in found.unlocked.iter().chain(&found.locked) {
                i.delete().await?;
                any = true;
            }
            Ok(any)
        })
    }

    /// Every item of ours, whatever entry it belonged to.
    pub fn delete_all(_keys: Vec<String>) -> Result<usize, String> {
        run(async {
            let ss = connect().await?;
            let found = ss.search_items(HashMap::from([("application", SERVICE)])).await?;
            let mut n = 0;
            for i in found.unlocked.iter().chain(&found.locked) {
                i.delete().await?;
                n += 1;
            }
            Ok(n)
        })
    }
}

#[cfg(any(target_os = "macos", windows))]
mod os {
    use super::{Item, SERVICE};

    fn entry(key: &str) -> Result<keyring::Entry, String> {
        keyring::Entry::new(SERVICE, key).map_err(|e| e.to_string())
    }

    pub fn get(item: &Item) -> Result<Option<Vec<u8>>, String> {
        match entry(&item.key)?.get_secret() {
            Ok(bytes) => Ok(Some(bytes)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn set(item: &Item, secret: &[u8]) -> Result<(), String> {
        entry(&item.key)?.set_secret(secret).map_err(|e| e.to_string())
    }

    pub fn delete(item: &Item) -> Result<bool, String> {
        match entry(&item.key)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn delete_all(keys: Vec<String>) -> Result<usize, String> {
        let mut n = 0;
        for key in keys {
            if delete(&Item::new(&key, "", ""))? {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod os {
    use super::Item;

    const NONE: &str = "this platform has no supported keychain";

    pub fn get(_: &Item) -> Result<Option<Vec<u8>>, String> {
        Err(NONE.into())
    }

    pub fn set(_: &Item, _: &[u8]) -> Result<(), String> {
        Err(NONE.into())
    }

    pub fn delete(_: &Item) -> Result<bool, String> {
        Err(NONE.into())
    }

    pub fn delete_all(_: Vec<String>) -> Result<usize, String> {
        Err(NONE.into())
    }
}
