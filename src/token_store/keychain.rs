//! The OS credential store: the Secret Service on Linux (over our own small D-Bus client in
//! [`super::dbus`]: no libdbus or libsecret at run time), the Keychain on
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
        match limited(Box::new(move || os::get(&me).map(Outcome::Secret)))? {
            Outcome::Secret(s) => Ok(s),
            _ => Ok(None),
        }
    }

    pub fn set(&self, secret: &[u8]) -> Result<(), String> {
        let (me, secret) = (self.clone(), secret.to_vec());
        limited(Box::new(move || os::set(&me, &secret).map(|()| Outcome::Count(1)))).map(|_| ())
    }

    /// True if there was an item.
    pub fn delete(&self) -> Result<bool, String> {
        let me = self.clone();
        let found = limited(Box::new(move || {
            os::delete(&me).map(|f| Outcome::Count(usize::from(f)))
        }))?;
        Ok(matches!(found, Outcome::Count(n) if n > 0))
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
    match limited(Box::new(move || os::delete_all(keys).map(Outcome::Count)))? {
        Outcome::Count(n) => Ok(n),
        _ => Ok(0),
    }
}

/// What a keychain call gives back (one type, so that the thread and channel code below exist
/// once in the addon rather than once per call).
enum Outcome {
    Secret(Option<Vec<u8>>),
    Count(usize),
}

type Call = Box<dyn FnOnce() -> Result<Outcome, String> + Send>;

/// Run `f` on a thread of its own; give up after [`LIMIT`] (the thread is left to finish or
/// to end with the process).
fn limited(f: Call) -> Result<Outcome, String> {
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
    //! The Secret Service API (freedesktop.org) over our own small D-Bus client, with the
    //! `plain` session: the secret crosses the user's own session bus, as with `secret-tool`
    //! run by hand, and no cryptography has to be carried for it.

    use super::super::dbus::{Arg, Bus, Value};
    use super::{Item, LIMIT, SERVICE};

    const DEST: &str = "org.freedesktop.secrets";
    const ROOT: &str = "/org/freedesktop/secrets";
    const SERVICE_IFACE: &str = "org.freedesktop.Secret.Service";

    struct SecretService {
        bus: Bus,
        session: String,
    }

    impl SecretService {
        fn connect() -> Result<SecretService, String> {
            let mut bus = Bus::session(LIMIT)?;
            let opened = bus
                .call(
                    DEST,
                    ROOT,
                    SERVICE_IFACE,
                    "OpenSession",
                    &[
                        Arg::Str("plain".into()),
                        Arg::Variant(Box::new(Arg::Str(String::new()))),
                    ],
                )
                .map_err(|e| {
                    if e.starts_with("org.freedesktop.DBus.Error.ServiceUnknown") {
                        format!("no Secret Service runs on the session D-Bus ({e})")
                    } else {
                        format!("the Secret Service: {e}")
                    }
                })?;
            let session = opened
                .get(1)
                .and_then(Value::as_str)
                .ok_or("the Secret Service opened no session")?;
            Ok(SecretService {
                session: session.to_string(),
                bus,
            })
        }

        fn call(&mut self, path: &str, iface: &str, member: &str, args: &[Arg]) -> Result<Vec<Value>, String> {
            self.bus
                .call(DEST, path, iface, member, args)
                .map_err(|e| format!("the Secret Service: {e}"))
        }

        /// Unlock `paths`; a keyring that wants a password prompt counts as an error (nobody
        /// would see the prompt of a proxy started by an MCP client).
        fn unlock(&mut self, paths: Vec<String>) -> Result<(), String> {
            let objects = Arg::Array("o", paths.into_iter().map(Arg::Path).collect());
            let r = self.call(ROOT, SERVICE_IFACE, "Unlock", &[objects])?;
            match r.get(1).and_then(Value::as_str) {
                Some("/") | None => Ok(()),
                Some(_) => Err("the keyring is locked (unlocking it needs a password prompt)".into()),
            }
        }

        /// The items with these attributes, unlocked.
        fn search(&mut self, attributes: &[(&str, &str)]) -> Result<Vec<String>, String> {
            let r = self.call(ROOT, SERVICE_IFACE, "SearchItems", &[Arg::string_dict(attributes)])?;
            let mut items = r.first().map(Value::strings).unwrap_or_default();
            let locked = r.get(1).map(Value::strings).unwrap_or_default();
            if !locked.is_empty() {
                self.unlock(locked.clone())?;
                items.extend(locked);
            }
            Ok(items)
        }

        fn secret(&mut self, item: &str) -> Result<Vec<u8>, String> {
            let session = Arg::Path(self.session.clone());
            let r = self.call(item, "org.freedesktop.Secret.Item", "GetSecret", &[session])?;
            match r.first() {
                Some(Value::Struct(parts)) => match parts.get(2) {
                    Some(Value::Bytes(b)) => Ok(b.clone()),
                    _ => Err("the Secret Service sent a secret without a value".into()),
                },
                _ => Err("the Secret Service sent no secret".into()),
            }
        }

        fn delete(&mut self, item: &str) -> Result<(), String> {
            let r = self.call(item, "org.freedesktop.Secret.Item", "Delete", &[])?;
            match r.first().and_then(Value::as_str) {
                Some("/") | None => Ok(()),
                Some(_) => Err("deleting the item needs a password prompt".into()),
            }
        }

        fn create(&mut self, item: &Item, secret: &[u8]) -> Result<(), String> {
            let r = self.call(ROOT, SERVICE_IFACE, "ReadAlias", &[Arg::Str("default".into())])?;
            let collection = match r.first().and_then(Value::as_str) {
                Some("/") | None => return Err("the Secret Service has no default keyring".into()),
                Some(c) => c.to_string(),
            };
            let entry = |k: &str, v: Arg| Arg::Entry(Box::new(Arg::Str(k.into())), Box::new(Arg::Variant(Box::new(v))));
            let attributes = [
                ("application", SERVICE),
                ("key", item.key.as_str()),
                ("issuer", item.issuer.as_str()),
                ("client", item.client.as_str()),
            ];
            let args = [
                Arg::Array(
                    "{sv}",
                    vec![
                        entry("org.freedesktop.Secret.Item.Label", Arg::Str(item.label.clone())),
                        entry("org.freedesktop.Secret.Item.Attributes", Arg::string_dict(&attributes)),
                    ],
                ),
                Arg::Struct(vec![
                    Arg::Path(self.session.clone()),
                    Arg::Bytes(Vec::new()),
                    Arg::Bytes(secret.to_vec()),
                    Arg::Str("application/json".into()),
                ]),
                Arg::Bool(true),
            ];
            const COLLECTION: &str = "org.freedesktop.Secret.Collection";
            let r = match self.call(&collection, COLLECTION, "CreateItem", &args) {
                Err(e) if e.contains("org.freedesktop.Secret.Error.IsLocked") => {
                    self.unlock(vec![collection.clone()])?;
                    self.call(&collection, COLLECTION, "CreateItem", &args)?
                }
                other => other?,
            };
            match r.get(1).and_then(Value::as_str) {
                Some("/") | None => Ok(()),
                Some(_) => Err("storing the item needs a password prompt".into()),
            }
        }
    }

    fn ours(item: &Item) -> [(&str, &str); 2] {
        [("application", SERVICE), ("key", item.key.as_str())]
    }

    pub fn get(item: &Item) -> Result<Option<Vec<u8>>, String> {
        let mut ss = SecretService::connect()?;
        match ss.search(&ours(item))?.first() {
            Some(path) => ss.secret(path).map(Some),
            None => Ok(None),
        }
    }

    pub fn set(item: &Item, secret: &[u8]) -> Result<(), String> {
        SecretService::connect()?.create(item, secret)
    }

    pub fn delete(item: &Item) -> Result<bool, String> {
        let mut ss = SecretService::connect()?;
        let found = ss.search(&ours(item))?;
        for path in &found {
            ss.delete(path)?;
        }
        Ok(!found.is_empty())
    }

    /// Every item of ours, whatever entry it belonged to.
    pub fn delete_all(_keys: Vec<String>) -> Result<usize, String> {
        let mut ss = SecretService::connect()?;
        let found = ss.search(&[("application", SERVICE)])?;
        for path in &found {
            ss.delete(path)?;
        }
        Ok(found.len())
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
