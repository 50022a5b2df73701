//! The embedded default backend `vault`: one age-encrypted file of secrets.
//!
//! # Format
//!
//! The vault file (`Paths::vault_file()`, `vault.age` in the data dir, or the `path` setting)
//! is an [age](https://age-encryption.org/v1) file (binary, not armored) encrypted to one
//! x25519 recipient, using the `age` crate 0.11. Its plaintext is a JSON document:
//!
//! ```json
//! {"version":1,"secrets":{"acme/echo-token":"<standard base64 of the value's bytes>"}}
//! ```
//!
//! Keys are the reference's [`SecretRef::vault_path`] (`vault://acme/echo-token` →
//! `acme/echo-token`); values are arbitrary bytes and round-trip exactly. Plaintext buffers
//! are zeroized after use.
//!
//! # Identity
//!
//! The age x25519 identity (secret key) that opens the vault is found, in order:
//!
//! 1. in the identity file `Paths::identity_file()` (`vault-identity.txt` in the config dir,
//!    mode 0600), when it exists;
//! 2. with [`IdentityStore::OsKeystore`] only, in the OS keystore (macOS Keychain, Linux
//!    Secret Service) under service [`KEYSTORE_SERVICE`] and account
//!    `vault-identity:<canonical data dir>`. Each keystore call runs on its own thread and is
//!    abandoned after [`KEYSTORE_TIMEOUT`] (a locked Secret Service can block forever); after
//!    one failure or timeout the instance stops asking the keystore and uses the file.
//!
//! [`VaultBackend::init`] (and the first [`SecretBackend::set`] on a missing vault) creates the
//! identity: in the keystore when allowed and it answers, else in the identity file.
//! [`VaultBackend::open`] uses [`IdentityStore::from_env`]: with `OUTLOOP_HOME` set, only the
//! file is ever used, so tests and isolated setups never touch a user's keyring.
//!
//! # Concurrency and durability
//!
//! Writers (in any thread or process) take an exclusive lock on the sibling file
//! `<vault file>.lock`, read the vault, change it, write a 0600 temp file in the same
//! directory, fsync it, rename it over the vault and fsync the directory. Readers take no
//! lock: they see the old or the new file, never a mix. Created directories get mode 0700.
//!
//! # Placement
//!
//! Neither the vault file nor the identity file may lie inside a bound workspace: an agent
//! working there could read or replace them. [`VaultBackend::open`] refuses such a setup.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use outloop_core::backend::settings::LayerSettings;
use outloop_core::backend::{Capabilities, Health, Probe, SecretBackend, expect_kind};
use outloop_core::config::{Paths, normalize_dir};
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};

mod identity;
mod store;
#[cfg(test)]
mod tests;

pub use identity::{IdentityStore, KEYSTORE_SERVICE, KEYSTORE_TIMEOUT};

use identity::{Keystore, Resolver};
use store::Secrets;

/// The embedded vault backend: an age-encrypted file of `vault://` secrets.
///
/// Cheap to share: it holds paths and, once loaded, the identity (never printed; `Debug`
/// shows the name, the files and the identity store only). It is `Send + Sync`; several
/// instances, threads and processes may use the same file at once.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> outloop_core::Result<()> {
/// use std::collections::BTreeMap;
///
/// use outloop_backends::vault::{IdentityStore, VaultBackend};
/// use outloop_core::config::Paths;
/// use outloop_core::{SecretBackend, SecretRef, SecretValue};
///
/// let home = tempfile::tempdir().expect("temp dir");
/// let paths = Paths::under(home.path());
/// let vault = VaultBackend::open_with("vault", &paths, &BTreeMap::new(), &[], IdentityStore::File)?;
/// vault.init()?;
/// let token = SecretRef::parse("vault://acme/echo-token")?;
/// vault.set(&token, SecretValue::from_string("FAKE-token\n".into())).await?;
/// assert_eq!(vault.get(&token).await?.expose_secret(), b"FAKE-token\n");
/// assert_eq!(vault.list().await?, vec![token]);
/// # Ok(())
/// # }
/// ```
pub struct VaultBackend {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    file: PathBuf,
    resolver: Resolver,
}

impl fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultBackend")
            .field("name", &self.inner.name)
            .field("file", &self.inner.file)
            .field("identity_store", &self.inner.resolver.store())
            .field("identity_file", &self.inner.resolver.file())
            .finish_non_exhaustive()
    }
}

impl VaultBackend {
    /// Opens (does not create) the vault described by the `[backends.<name>]` table, choosing
    /// the identity store with [`IdentityStore::from_env`].
    ///
    /// `name` is the config instance name (usually `"vault"`); `settings` are the table's keys
    /// other than `kind`: only `path` (an absolute path to the vault file, overriding
    /// `paths.vault_file()`) is accepted. `bound_workspaces` are the canonical workspace
    /// directories from the host config.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when a setting is unknown (the message names the key), `path` is
    /// not an absolute path string, or the vault file or identity file lies inside one of
    /// `bound_workspaces`.
    pub fn open(
        name: &str,
        paths: &Paths,
        settings: &BTreeMap<String, toml::Value>,
        bound_workspaces: &[PathBuf],
    ) -> Result<Self> {
        Self::open_with(
            name,
            paths,
            settings,
            bound_workspaces,
            IdentityStore::from_env(),
        )
    }

    /// Like [`VaultBackend::open`], with the identity store given explicitly instead of read
    /// from the environment. Tests pass [`IdentityStore::File`].
    ///
    /// # Errors
    ///
    /// As for [`VaultBackend::open`].
    pub fn open_with(
        name: &str,
        paths: &Paths,
        settings: &BTreeMap<String, toml::Value>,
        bound_workspaces: &[PathBuf],
        identity_store: IdentityStore,
    ) -> Result<Self> {
        Self::open_inner(
            name,
            paths,
            settings,
            bound_workspaces,
            identity_store,
            Arc::new(identity::OsKeystore),
            KEYSTORE_TIMEOUT,
        )
    }

    fn open_inner(
        name: &str,
        paths: &Paths,
        settings: &BTreeMap<String, toml::Value>,
        bound_workspaces: &[PathBuf],
        identity_store: IdentityStore,
        keystore: Arc<dyn Keystore>,
        keystore_timeout: Duration,
    ) -> Result<Self> {
        let file = parse_settings(name, settings)?.unwrap_or_else(|| paths.vault_file());
        let identity_file = paths.identity_file();
        refuse_inside_workspace(name, "file", &file, bound_workspaces)?;
        refuse_inside_workspace(name, "identity file", &identity_file, bound_workspaces)?;
        let account = format!(
            "vault-identity:{}",
            canonical_lenient(&paths.data_dir).display()
        );
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                file,
                resolver: Resolver::new(
                    identity_store,
                    identity_file,
                    account,
                    keystore,
                    keystore_timeout,
                ),
            }),
        })
    }

    /// Creates the identity and an empty vault when they are missing; does nothing when both
    /// exist. Returns `true` if it created either.
    ///
    /// Blocking (file I/O, and up to [`KEYSTORE_TIMEOUT`] per keystore call); from async code
    /// call it inside `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unauthenticated`] when the vault file exists but its identity is missing
    /// (a new identity could not open it) or cannot open it; [`ErrorKind::Io`] when a
    /// directory, the identity file or the vault cannot be written, or the vault is damaged.
    pub fn init(&self) -> Result<bool> {
        self.inner.init()
    }

    /// Where the identity lives (or will be created), for `outloop init` to print:
    /// `"file /path/vault-identity.txt"` or
    /// `"OS keystore (service outloop, account vault-identity:/path/data)"`.
    pub fn identity_location(&self) -> String {
        self.inner.resolver.location()
    }

    /// The vault file's path.
    pub fn file(&self) -> &Path {
        &self.inner.file
    }

    /// The identity store this instance uses.
    pub fn identity_store(&self) -> IdentityStore {
        self.inner.resolver.store()
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(r) => r,
            // A panic message is not ours to show: it might quote anything.
            Err(e) if e.is_panic() => Err(Error::internal("a vault task panicked")),
            Err(_) => Err(Error::internal("a vault task was cancelled")),
        }
    }
}

#[async_trait]
impl SecretBackend for VaultBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Vault
    }

    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read: true,
            write: true,
            delete: true,
            list: true,
        }
    }

    async fn get(&self, reference: &SecretRef) -> Result<SecretValue> {
        let key = self.inner.key(reference)?;
        let reference = reference.clone();
        self.run(move |inner| {
            let mut secrets = inner.read_all()?;
            secrets
                .remove(&key)
                .ok_or_else(|| inner.no_secret(&reference))
        })
        .await
    }

    async fn set(&self, reference: &SecretRef, value: SecretValue) -> Result<()> {
        let key = self.inner.key(reference)?;
        self.run(move |inner| {
            inner.modify(true, |secrets| {
                secrets.insert(key, value);
                Ok(())
            })
        })
        .await
    }

    async fn delete(&self, reference: &SecretRef) -> Result<()> {
        let key = self.inner.key(reference)?;
        let reference = reference.clone();
        self.run(move |inner| {
            inner.modify(false, |secrets| {
                secrets
                    .remove(&key)
                    .map(drop)
                    .ok_or_else(|| inner.no_secret(&reference))
            })
        })
        .await
    }

    async fn list(&self) -> Result<Vec<SecretRef>> {
        self.run(|inner| {
            let secrets = inner.read_all()?;
            let mut refs = secrets
                .keys()
                .map(|k| {
                    let segments: Vec<&str> = k.split('/').collect();
                    SecretRef::from_parts(BackendKind::Vault, &segments).map_err(|_| {
                        Error::new(
                            ErrorKind::Io,
                            format!(
                                "vault {} is damaged: it holds an entry whose name is not a valid `vault://` path",
                                inner.file.display()
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            refs.sort();
            Ok(refs)
        })
        .await
    }

    /// Installed: always (built in). Reachable: the vault file exists and reads. Authenticated:
    /// the identity is found and unwraps the vault's file key; the payload (the secrets) is not
    /// decrypted.
    async fn health(&self) -> Health {
        let installed = Probe::ok("built in");
        let checked = self
            .run(|inner| {
                let Some(ct) = store::read_ciphertext(&inner.file)? else {
                    return Ok(Err(inner.no_vault()));
                };
                let loaded = match inner.resolver.load()? {
                    Some(l) => l,
                    None => return Ok(Ok(Err(inner.missing_identity()))),
                };
                let location = inner.resolver.describe(&loaded.source);
                Ok(Ok(store::unlocks(
                    &inner.file,
                    &ct,
                    &loaded.identity,
                    &location,
                )
                .map(|()| location)))
            })
            .await;
        match checked {
            Err(e) | Ok(Err(e)) => Health::unreachable(installed, &e),
            Ok(Ok(auth)) => Health {
                installed,
                reachable: Probe::ok(format!("vault file {}", self.inner.file.display())),
                authenticated: match auth {
                    Ok(location) => Probe::ok(format!("identity at {location} opens it")),
                    Err(e) => Probe::failed(&e),
                },
            },
        }
    }
}

impl Inner {
    /// The document key for `reference`: its vault path.
    fn key(&self, reference: &SecretRef) -> Result<String> {
        expect_kind(&self.name, BackendKind::Vault, reference)?;
        if reference.segments().iter().any(|s| s.contains('/')) {
            return Err(Error::new(
                ErrorKind::InvalidReference,
                format!(
                    "`{reference}`: a segment holds an encoded `/` (%2F), which the vault cannot tell apart from a path separator"
                ),
            ));
        }
        reference
            .vault_path()
            .ok_or_else(|| Error::internal("a vault reference has no vault path"))
    }

    fn no_secret(&self, reference: &SecretRef) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no secret at `{reference}` in backend `{}` ({}); store one with `outloop secret set {reference}`",
                self.name,
                self.file.display()
            ),
        )
    }

    fn no_vault(&self) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "vault {} does not exist yet; create it with `outloop init` or store a secret with `outloop secret set vault://…`",
                self.file.display()
            ),
        )
    }

    fn missing_identity(&self) -> Error {
        Error::new(
            ErrorKind::Unauthenticated,
            format!(
                "vault {} exists but its identity is missing: found neither {}; restore the identity, or move the vault aside and run `outloop init`",
                self.file.display(),
                self.resolver.searched()
            ),
        )
    }

    fn parent(&self) -> Result<&Path> {
        self.file.parent().ok_or_else(|| {
            Error::internal(format!("vault path {} has no parent", self.file.display()))
        })
    }

    fn decrypt(&self, ciphertext: &[u8], loaded: &identity::Loaded) -> Result<Secrets> {
        store::decrypt(
            &self.file,
            ciphertext,
            &loaded.identity,
            &self.resolver.describe(&loaded.source),
        )
    }

    /// Reads and decrypts the whole vault, without a lock.
    fn read_all(&self) -> Result<Secrets> {
        let ciphertext = store::read_ciphertext(&self.file)?.ok_or_else(|| self.no_vault())?;
        let loaded = self
            .resolver
            .load()?
            .ok_or_else(|| self.missing_identity())?;
        self.decrypt(&ciphertext, &loaded)
    }

    /// Under the writer lock: reads the vault, applies `change`, writes it back atomically.
    /// With `create`, a missing vault (and identity) is created first; without it a missing
    /// vault is [`ErrorKind::NotFound`].
    fn modify(&self, create: bool, change: impl FnOnce(&mut Secrets) -> Result<()>) -> Result<()> {
        if create {
            store::ensure_dir(self.parent()?)?;
        } else if !self.file.exists() {
            return Err(self.no_vault());
        }
        let _lock = store::lock(&self.file)?;
        let ciphertext = store::read_ciphertext(&self.file)?;
        let (loaded, mut secrets) = match ciphertext {
            Some(ct) => {
                let loaded = self
                    .resolver
                    .load()?
                    .ok_or_else(|| self.missing_identity())?;
                let secrets = self.decrypt(&ct, &loaded)?;
                (loaded, secrets)
            }
            None if create => {
                let loaded = match self.resolver.load()? {
                    Some(l) => l,
                    None => self.resolver.create()?,
                };
                (loaded, Secrets::new())
            }
            None => return Err(self.no_vault()),
        };
        change(&mut secrets)?;
        let bytes = store::encrypt(&secrets, &loaded.identity.to_public())?;
        store::write_atomic(&self.file, &bytes)
    }

    fn init(&self) -> Result<bool> {
        store::ensure_dir(self.parent()?)?;
        let _lock = store::lock(&self.file)?;
        let ciphertext = store::read_ciphertext(&self.file)?;
        match (ciphertext, self.resolver.load()?) {
            // Both exist: check that they belong together, change nothing.
            (Some(ct), Some(loaded)) => {
                self.decrypt(&ct, &loaded)?;
                Ok(false)
            }
            (Some(_), None) => Err(self.missing_identity()),
            (None, loaded) => {
                let loaded = match loaded {
                    Some(l) => l,
                    None => self.resolver.create()?,
                };
                let bytes = store::encrypt(&Secrets::new(), &loaded.identity.to_public())?;
                store::write_atomic(&self.file, &bytes)?;
                Ok(true)
            }
        }
    }
}

/// Validates the `[backends.<name>]` settings; returns the `path` override.
fn parse_settings(name: &str, settings: &BTreeMap<String, toml::Value>) -> Result<Option<PathBuf>> {
    let mut path = None;
    for (key, value) in settings {
        match key.as_str() {
            "path" => {
                let p = value.as_str().map(PathBuf::from).ok_or_else(|| {
                    Error::config(format!(
                        "backends.{name}.path: expected a string (an absolute path to the vault file)"
                    ))
                })?;
                if !p.is_absolute() || p.file_name().is_none() {
                    return Err(Error::config(format!(
                        "backends.{name}.path: `{}` is not an absolute path to a file",
                        p.display()
                    )));
                }
                path = Some(p);
            }
            // The keys every backend accepts (cache_ttl, timeout, ...) are the layers' to check.
            k if LayerSettings::is_layer_key(k) => {}
            other => {
                return Err(Error::config(format!(
                    "backends.{name}: unknown key `{other}`; a `vault` backend accepts only `path`"
                )));
            }
        }
    }
    Ok(path)
}

/// `path` made absolute, lexically normal, with symlinks resolved in its longest existing
/// prefix (the rest does not exist yet, so cannot be a symlink).
fn canonical_lenient(path: &Path) -> PathBuf {
    let normal = normalize_dir(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(c, |acc, part| acc.join(part));
        }
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n.to_owned());
                existing = parent;
            }
            _ => return normal,
        }
    }
}

fn refuse_inside_workspace(name: &str, what: &str, path: &Path, bound: &[PathBuf]) -> Result<()> {
    let canon = canonical_lenient(path);
    for ws in bound {
        if canon.starts_with(ws) || canon.starts_with(canonical_lenient(ws)) {
            return Err(Error::config(format!(
                "backends.{name}: the vault {what} {} is inside bound workspace {}, where an agent could read or replace it; move it outside every workspace",
                canon.display(),
                ws.display()
            )));
        }
    }
    Ok(())
}
