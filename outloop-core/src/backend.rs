//! The [`SecretBackend`] trait, the in-process [`MemoryBackend`], and the layers that wrap
//! any backend: [`cache`] (per tenant, with a TTL and one fetch per reference at a time),
//! [`retry`] (rate limits and temporary failures, honouring `Retry-After`), [`timeout`]
//! (per call), configured per backend by [`settings`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use crate::error::{Error, ErrorKind, Result};
use crate::reference::{BackendKind, SecretRef};
use crate::secret::SecretValue;

pub mod cache;
mod health;
pub mod retry;
pub mod settings;
pub mod timeout;

pub use health::{Health, Probe};

/// What a backend can do, as data. A call to an operation whose flag is `false` returns
/// [`ErrorKind::Unavailable`] with a message naming the backend and the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// [`SecretBackend::get`] works.
    pub read: bool,
    /// [`SecretBackend::set`] works.
    pub write: bool,
    /// [`SecretBackend::delete`] works.
    pub delete: bool,
    /// [`SecretBackend::list`] works.
    pub list: bool,
}

/// A secret store: fetches one secret by reference, and optionally stores, deletes and lists.
///
/// Implementations map every failure to an [`ErrorKind`]: [`ErrorKind::NotFound`],
/// [`ErrorKind::Unauthenticated`], [`ErrorKind::PermissionDenied`],
/// [`ErrorKind::RateLimited`], [`ErrorKind::Unavailable`], [`ErrorKind::Timeout`] or
/// [`ErrorKind::InvalidReference`]. Messages never contain a value, a vendor response body,
/// a child's output or a token.
#[async_trait]
pub trait SecretBackend: Send + Sync {
    /// The kind of references this backend serves.
    fn kind(&self) -> BackendKind;

    /// The instance name (the `[backends.<name>]` table, or the kind's name for defaults).
    fn name(&self) -> &str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Fetches the secret at `reference`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when nothing is stored there; [`ErrorKind::InvalidReference`]
    /// when the reference is of another kind; the other backend kinds as documented on the
    /// trait.
    async fn get(&self, reference: &SecretRef) -> Result<SecretValue>;

    /// Stores `value` at `reference`, replacing any earlier value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when the backend is read-only; otherwise as for `get`.
    async fn set(&self, reference: &SecretRef, value: SecretValue) -> Result<()> {
        let _ = (reference, value);
        Err(unsupported(self.name(), "set"))
    }

    /// Deletes the secret at `reference`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when nothing is stored there; [`ErrorKind::Unavailable`] when
    /// the backend cannot delete.
    async fn delete(&self, reference: &SecretRef) -> Result<()> {
        let _ = reference;
        Err(unsupported(self.name(), "delete"))
    }

    /// Lists the references this backend holds (never values), sorted.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when the backend cannot list.
    async fn list(&self) -> Result<Vec<SecretRef>> {
        Err(unsupported(self.name(), "list"))
    }

    /// Tokens the backend itself uses to reach its store (service tokens, access tokens).
    /// The broker registers them with the redactor so they can never leave in a response.
    fn own_secrets(&self) -> Vec<SecretValue> {
        Vec::new()
    }

    /// Whether the backend is installed, reachable and authenticated, checked without
    /// reading any secret value (`outloop doctor` shows it).
    ///
    /// The default reports the backend as built in and its reachability and login as
    /// skipped; backends override it with real, value-free probes (a version call, a
    /// whoami, a lock-state query). Never fails: problems are reported in the [`Health`].
    async fn health(&self) -> Health {
        Health {
            installed: Probe::ok("built in"),
            reachable: Probe::skipped("this backend has no health check"),
            authenticated: Probe::skipped("this backend has no health check"),
        }
    }
}

/// The error a backend returns for an operation it does not support.
pub fn unsupported(backend: &str, op: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("backend `{backend}` does not support `{op}`"),
    )
}

/// Checks that `reference` is of `kind`, for use at the top of a backend's methods.
///
/// # Errors
///
/// [`ErrorKind::InvalidReference`] naming both kinds when they differ.
pub fn expect_kind(backend: &str, kind: BackendKind, reference: &SecretRef) -> Result<()> {
    if reference.kind() == kind {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidReference,
            format!(
                "backend `{backend}` serves `{}://` references, not `{reference}`",
                kind.scheme()
            ),
        ))
    }
}

/// An in-process backend holding secrets in memory, for tests and embedding.
///
/// It serves references of the kind it was created for (so it can stand in for the vault),
/// counts every [`SecretBackend::get`] call (see [`MemoryBackend::reads`]) so tests can prove
/// that a denied request read no secret, and zeroizes values when dropped.
pub struct MemoryBackend {
    name: String,
    kind: BackendKind,
    values: Mutex<BTreeMap<SecretRef, SecretValue>>,
    reads: AtomicUsize,
}

impl MemoryBackend {
    /// An empty memory backend named `name` serving `kind` references.
    pub fn new(name: impl Into<String>, kind: BackendKind) -> Self {
        Self {
            name: name.into(),
            kind,
            values: Mutex::new(BTreeMap::new()),
            reads: AtomicUsize::new(0),
        }
    }

    /// Stores a value synchronously (test setup).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidReference`] when `reference` is of another kind.
    pub fn insert(&self, reference: &SecretRef, value: SecretValue) -> Result<()> {
        expect_kind(&self.name, self.kind, reference)?;
        self.lock().insert(reference.clone(), value);
        Ok(())
    }

    /// How many times [`SecretBackend::get`] has been called, successful or not.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SecretRef, SecretValue>> {
        // A poisoned lock only means another test thread panicked; the map is still whole.
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("entries", &self.lock().len())
            .finish()
    }
}

#[async_trait]
impl SecretBackend for MemoryBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn name(&self) -> &str {
        &self.name
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
        self.reads.fetch_add(1, Ordering::SeqCst);
        expect_kind(&self.name, self.kind, reference)?;
        self.lock().get(reference).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no secret at `{reference}` in backend `{}`", self.name),
            )
        })
    }
    async fn set(&self, reference: &SecretRef, value: SecretValue) -> Result<()> {
        self.insert(reference, value)
    }
    async fn delete(&self, reference: &SecretRef) -> Result<()> {
        expect_kind(&self.name, self.kind, reference)?;
        self.lock().remove(reference).map(drop).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no secret at `{reference}` in backend `{}`", self.name),
            )
        })
    }
    async fn list(&self) -> Result<Vec<SecretRef>> {
        Ok(self.lock().keys().cloned().collect())
    }
    async fn health(&self) -> Health {
        Health {
            installed: Probe::ok("in process"),
            reachable: Probe::ok("in process"),
            authenticated: Probe::ok("needs no login"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_backend_round_trip_and_counts_reads() {
        let b = MemoryBackend::new("vault", BackendKind::Vault);
        let r = SecretRef::parse("vault://acme/token").unwrap();
        assert_eq!(b.get(&r).await.unwrap_err().kind(), ErrorKind::NotFound);
        b.set(&r, SecretValue::from_string("FAKE-memory-secret".into()))
            .await
            .unwrap();
        assert_eq!(
            b.get(&r).await.unwrap().expose_secret(),
            b"FAKE-memory-secret"
        );
        assert_eq!(b.reads(), 2);
        assert_eq!(b.list().await.unwrap(), vec![r.clone()]);
        let other = SecretRef::parse("doppler://a/b/C").unwrap();
        assert_eq!(
            b.get(&other).await.unwrap_err().kind(),
            ErrorKind::InvalidReference
        );
        b.delete(&r).await.unwrap();
        assert!(b.list().await.unwrap().is_empty());
        assert!(!format!("{b:?}").contains("FAKE"));
    }
}
