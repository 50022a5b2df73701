//! The vault identity: an age x25519 secret key, kept in a 0600 file or the OS keystore.
//!
//! Resolution order (see [`IdentityStore`]):
//!
//! 1. the identity file `Paths::identity_file()`, when it exists;
//! 2. with [`IdentityStore::OsKeystore`] only: the OS keystore entry (service `outloop`, account
//!    `vault-identity:<canonical data dir>`), asked on a separate thread that is abandoned after
//!    [`KEYSTORE_TIMEOUT`], because a locked Secret Service can block forever;
//! 3. nothing: the caller creates one (in `init`) or reports the vault as unreadable.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use age::secrecy::ExposeSecret;
use outloop_core::{Error, ErrorKind, Result};
use zeroize::{Zeroize, Zeroizing};

use super::store;

/// The OS keystore service name under which the vault identity is kept.
pub const KEYSTORE_SERVICE: &str = "outloop";

/// How long one OS keystore call may take before the vault gives up on the keystore and
/// falls back to the identity file: 3 seconds.
pub const KEYSTORE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the vault identity may live.
///
/// [`IdentityStore::from_env`] picks [`IdentityStore::File`] when `OUTLOOP_HOME` is set (so
/// tests and isolated setups never touch a user's keyring) and [`IdentityStore::OsKeystore`]
/// otherwise.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityStore {
    /// Only the 0600 file `Paths::identity_file()`; the OS keystore is never touched.
    File,
    /// The identity file when it exists; else the OS keystore (macOS Keychain, Linux Secret
    /// Service) with a [`KEYSTORE_TIMEOUT`] per call; else, when the keystore has no entry,
    /// fails or does not answer, the identity file.
    OsKeystore,
}

impl IdentityStore {
    /// [`IdentityStore::File`] when the `OUTLOOP_HOME` environment variable is set and
    /// non-empty, else [`IdentityStore::OsKeystore`].
    pub fn from_env() -> Self {
        match std::env::var_os("OUTLOOP_HOME") {
            Some(h) if !h.is_empty() => IdentityStore::File,
            _ => IdentityStore::OsKeystore,
        }
    }
}

/// A keystore error described without any data it carried (keyring errors can hold raw
/// secret bytes).
pub(super) type KeystoreError = &'static str;

/// The OS keystore operations the vault needs; a trait so tests can use a fake and never
/// touch a real keyring.
pub(super) trait Keystore: Send + Sync + 'static {
    /// The identity text stored for `account`, `None` when there is no entry.
    fn get(&self, account: &str) -> std::result::Result<Option<Zeroizing<String>>, KeystoreError>;
    /// Stores the identity text for `account`.
    fn set(&self, account: &str, secret: &str) -> std::result::Result<(), KeystoreError>;
}

/// The real OS keystore through the `keyring` crate (v4, `v1` API: macOS Keychain, Linux
/// Secret Service over zbus).
pub(super) struct OsKeystore;

fn describe_keyring_error(e: keyring::Error) -> KeystoreError {
    match e {
        keyring::Error::BadEncoding(mut bytes) => {
            bytes.zeroize();
            "the stored entry is not UTF-8"
        }
        keyring::Error::BadDataFormat(mut bytes, _) => {
            bytes.zeroize();
            "the stored entry has an unexpected format"
        }
        keyring::Error::NoStorageAccess(_) => "the keystore refused access (is it locked?)",
        keyring::Error::PlatformFailure(_) => "the keystore failed",
        keyring::Error::NoDefaultStore => "no OS keystore is available",
        keyring::Error::NoEntry => "no entry",
        _ => "unexpected keystore error",
    }
}

impl Keystore for OsKeystore {
    fn get(&self, account: &str) -> std::result::Result<Option<Zeroizing<String>>, KeystoreError> {
        let entry =
            keyring::Entry::new(KEYSTORE_SERVICE, account).map_err(describe_keyring_error)?;
        match entry.get_password() {
            Ok(s) => Ok(Some(Zeroizing::new(s))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(describe_keyring_error(e)),
        }
    }

    fn set(&self, account: &str, secret: &str) -> std::result::Result<(), KeystoreError> {
        let entry =
            keyring::Entry::new(KEYSTORE_SERVICE, account).map_err(describe_keyring_error)?;
        entry.set_password(secret).map_err(describe_keyring_error)
    }
}

/// Runs `f` on its own thread and waits at most `timeout` for it; `None` on timeout or if the
/// thread could not start or panicked. A thread that does not finish is left behind.
fn with_timeout<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("outloop-keystore".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    rx.recv_timeout(timeout).ok()
}

/// Where a loaded identity came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    File(PathBuf),
    Keystore,
}

/// An identity ready to use, and where it came from.
pub(super) struct Loaded {
    pub identity: age::x25519::Identity,
    pub source: Source,
}

/// Finds, caches and creates the vault identity.
pub(super) struct Resolver {
    store: IdentityStore,
    file: PathBuf,
    account: String,
    keystore: Arc<dyn Keystore>,
    timeout: Duration,
    cached: Mutex<Option<Arc<Loaded>>>,
    /// Set once the keystore failed or timed out; it is not asked again by this instance,
    /// so one hung keystore costs one timeout, not one per call.
    keystore_failed: AtomicBool,
}

impl Resolver {
    pub fn new(
        store: IdentityStore,
        file: PathBuf,
        account: String,
        keystore: Arc<dyn Keystore>,
        timeout: Duration,
    ) -> Self {
        Self {
            store,
            file,
            account,
            keystore,
            timeout,
            cached: Mutex::new(None),
            keystore_failed: AtomicBool::new(false),
        }
    }

    pub fn store(&self) -> IdentityStore {
        self.store
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    fn keystore_label(&self) -> String {
        format!(
            "OS keystore (service {KEYSTORE_SERVICE}, account {})",
            self.account
        )
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<Arc<Loaded>>> {
        // A poisoned lock only means another thread panicked; the cached value is still whole.
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the identity lives (or will live once created), for people.
    pub fn location(&self) -> String {
        if let Some(l) = self.cache().as_ref() {
            return self.describe(&l.source);
        }
        if self.store == IdentityStore::File || self.file.exists() {
            format!("file {}", self.file.display())
        } else {
            self.keystore_label()
        }
    }

    pub fn describe(&self, source: &Source) -> String {
        match source {
            Source::File(p) => format!("file {}", p.display()),
            Source::Keystore => self.keystore_label(),
        }
    }

    /// Where we looked, for the "identity missing" message.
    pub fn searched(&self) -> String {
        match self.store {
            IdentityStore::File => format!("file {}", self.file.display()),
            IdentityStore::OsKeystore => {
                let ks = if self.keystore_failed.load(Ordering::SeqCst) {
                    " (the OS keystore did not answer)"
                } else {
                    ""
                };
                format!(
                    "file {} nor {}{ks}",
                    self.file.display(),
                    self.keystore_label()
                )
            }
        }
    }

    fn keystore_call<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&dyn Keystore, &str) -> std::result::Result<T, KeystoreError> + Send + 'static,
    ) -> Option<T> {
        if self.keystore_failed.load(Ordering::SeqCst) {
            return None;
        }
        let ks = Arc::clone(&self.keystore);
        let account = self.account.clone();
        match with_timeout(self.timeout, move || f(&*ks, &account)) {
            Some(Ok(v)) => Some(v),
            Some(Err(why)) => {
                tracing::warn!(account = %self.account, "OS keystore {what} failed: {why}; using the identity file");
                self.keystore_failed.store(true, Ordering::SeqCst);
                None
            }
            None => {
                tracing::warn!(
                    account = %self.account,
                    "OS keystore {what} did not answer within {:?}; using the identity file",
                    self.timeout
                );
                self.keystore_failed.store(true, Ordering::SeqCst);
                None
            }
        }
    }

    /// The identity, when one exists.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unauthenticated`] when the identity file or keystore entry holds no
    /// valid age identity; [`ErrorKind::Io`] when the file cannot be read.
    pub fn load(&self) -> Result<Option<Arc<Loaded>>> {
        if let Some(l) = self.cache().as_ref() {
            return Ok(Some(Arc::clone(l)));
        }
        let loaded = if let Some(text) = read_identity_file(&self.file)? {
            Some(Loaded {
                identity: parse_identity(&text).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Unauthenticated,
                        format!(
                            "identity file {} holds no valid age identity (`AGE-SECRET-KEY-1…` line)",
                            self.file.display()
                        ),
                    )
                })?,
                source: Source::File(self.file.clone()),
            })
        } else if self.store == IdentityStore::OsKeystore {
            match self
                .keystore_call("read", |ks, account| ks.get(account))
                .flatten()
            {
                Some(text) => Some(Loaded {
                    identity: parse_identity(&text).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Unauthenticated,
                            format!("the {} holds no valid age identity", self.keystore_label()),
                        )
                    })?,
                    source: Source::Keystore,
                }),
                None => None,
            }
        } else {
            None
        };
        Ok(loaded.map(|l| {
            let l = Arc::new(l);
            *self.cache() = Some(Arc::clone(&l));
            l
        }))
    }

    /// Generates a new identity and stores it: in the OS keystore when allowed and it
    /// answers, else in the 0600 identity file. The caller holds the vault lock and has
    /// checked that [`Resolver::load`] found nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the identity file cannot be written.
    pub fn create(&self) -> Result<Arc<Loaded>> {
        let identity = age::x25519::Identity::generate();
        let secret = Zeroizing::new(identity.to_string().expose_secret().to_owned());
        let mut source = None;
        if self.store == IdentityStore::OsKeystore {
            let text = secret.clone();
            if self
                .keystore_call("write", move |ks, account| ks.set(account, &text))
                .is_some()
            {
                source = Some(Source::Keystore);
            }
        }
        let source = match source {
            Some(s) => s,
            None => {
                write_identity_file(&self.file, &identity, &secret)?;
                Source::File(self.file.clone())
            }
        };
        let l = Arc::new(Loaded { identity, source });
        *self.cache() = Some(Arc::clone(&l));
        Ok(l)
    }
}

/// Parses the first `AGE-SECRET-KEY-1…` line of an identity file, skipping comments.
pub(super) fn parse_identity(text: &str) -> Option<age::x25519::Identity> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .and_then(|l| age::x25519::Identity::from_str(l).ok())
}

fn read_identity_file(path: &Path) -> Result<Option<Zeroizing<String>>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot open vault identity", path, e)),
    };
    warn_if_loose(&f, path);
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > 64 * 1024 {
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            format!(
                "identity file {} is too large to be an age identity",
                path.display()
            ),
        ));
    }
    // Sized up front so the buffer never reallocates and leaves an unzeroized copy behind.
    let mut text = Zeroizing::new(String::with_capacity(len as usize + 1));
    f.read_to_string(&mut text)
        .map_err(|e| Error::io("cannot read vault identity", path, e))?;
    Ok(Some(text))
}

#[cfg(unix)]
fn warn_if_loose(f: &File, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = f.metadata()
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "vault identity {} is readable by other users (mode {:o}); run `chmod 600` on it",
            path.display(),
            m.permissions().mode() & 0o777
        );
    }
}

#[cfg(not(unix))]
fn warn_if_loose(_f: &File, _path: &Path) {}

fn write_identity_file(path: &Path, identity: &age::x25519::Identity, secret: &str) -> Result<()> {
    let dir = path.parent().ok_or_else(|| {
        Error::internal(format!("identity path {} has no parent", path.display()))
    })?;
    store::ensure_dir(dir)?;
    let mut text = Zeroizing::new(String::with_capacity(secret.len() + 200));
    text.push_str("# Outloop vault identity (age x25519). Keep this file private (mode 0600).\n");
    text.push_str("# public key: ");
    text.push_str(&identity.to_public().to_string());
    text.push('\n');
    text.push_str(secret);
    text.push('\n');
    let mut f = store::create_new_private(path)
        .map_err(|e| Error::io("cannot create vault identity", path, e))?;
    if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(Error::io("cannot write vault identity", path, e));
    }
    store::sync_dir(dir);
    Ok(())
}
