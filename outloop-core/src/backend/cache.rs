//! [`CredentialCache`]: secrets fetched for a tenant, kept for a TTL, one fetch per reference
//! at a time.
//!
//! Entries are keyed by (tenant, backend instance name, reference), as DESIGN.md's request
//! flow says, so one tenant's fetch never serves another tenant. A value lives for the TTL of
//! its backend (`cache_ttl` in `[backends.<name>]`, see
//! [`LayerSettings`](super::settings::LayerSettings)); an expired or evicted value is dropped,
//! and [`SecretValue`] zeroizes its bytes on drop. Failures are never cached: the next request
//! asks the backend again, so a fixed login or an unlocked keyring takes effect at once.
//!
//! Concurrent requests for one uncached reference share one backend call: the first starts
//! it, the others wait for its outcome (value or error). 1,000 concurrent requests for a cold
//! reference make exactly one call (see the tests and `benches/benches/cache.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use crate::backend::SecretBackend;
use crate::error::{Error, Result};
use crate::reference::SecretRef;
use crate::secret::SecretValue;

/// The default time a fetched secret stays cached: 300 seconds.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// An error shared by every caller that waited on one fetch.
struct SharedError(Error);

impl Clone for SharedError {
    fn clone(&self) -> Self {
        SharedError(self.0.clone_shallow())
    }
}

type Fetch = Shared<BoxFuture<'static, std::result::Result<SecretValue, SharedError>>>;

type Key = (String, String, SecretRef);

enum Slot {
    Ready {
        value: SecretValue,
        expires: Instant,
    },
    Fetching {
        fetch: Fetch,
        id: u64,
    },
}

/// A cache of secrets keyed by (tenant, backend instance, reference), with a TTL per call,
/// zeroize on eviction, no cached failures, and one backend call per reference at a time.
///
/// `Send + Sync`; share it by reference or `Arc`. `Debug` shows the entry count only.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> outloop_core::Result<()> {
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use outloop_core::backend::cache::CredentialCache;
/// use outloop_core::{BackendKind, MemoryBackend, SecretBackend, SecretRef, SecretValue};
///
/// let memory = Arc::new(MemoryBackend::new("vault", BackendKind::Vault));
/// let r = SecretRef::parse("vault://acme/token")?;
/// memory.insert(&r, SecretValue::from_string("FAKE-cached-token".into()))?;
/// let backend: Arc<dyn SecretBackend> = memory.clone();
/// let cache = CredentialCache::new();
/// for _ in 0..3 {
///     let v = cache.get("acme", &backend, &r, Duration::from_secs(60)).await?;
///     assert_eq!(v.expose_secret(), b"FAKE-cached-token");
/// }
/// assert_eq!(memory.reads(), 1);
/// # Ok(())
/// # }
/// ```
pub struct CredentialCache {
    slots: Mutex<HashMap<Key, Slot>>,
    next_id: AtomicU64,
}

impl Default for CredentialCache {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("entries", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl CredentialCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        // Poisoning only means a panic elsewhere while holding the lock; the map is whole.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The secret at `reference` for `tenant`, from the cache while it is fresh, else from
    /// `backend` (one call shared by every concurrent caller), then kept for `ttl`.
    ///
    /// A `ttl` of zero caches nothing (concurrent callers still share one call).
    ///
    /// # Errors
    ///
    /// Whatever `backend.get` returned ([`crate::ErrorKind::NotFound`],
    /// [`crate::ErrorKind::Unauthenticated`], …); callers that waited on the same call get
    /// the same kind and message. Errors are not cached.
    pub async fn get(
        &self,
        tenant: &str,
        backend: &Arc<dyn SecretBackend>,
        reference: &SecretRef,
        ttl: Duration,
    ) -> Result<SecretValue> {
        let key: Key = (
            tenant.to_owned(),
            backend.name().to_owned(),
            reference.clone(),
        );
        let (fetch, id) = {
            let mut slots = self.lock();
            let now = Instant::now();
            match slots.get(&key) {
                Some(Slot::Ready { value, expires }) if now < *expires => {
                    return Ok(value.clone());
                }
                Some(Slot::Fetching { fetch, id }) => (fetch.clone(), *id),
                _ => {
                    // A miss: drop expired entries (zeroizing them), then start the one fetch.
                    slots.retain(
                        |_, s| !matches!(s, Slot::Ready { expires, .. } if *expires <= now),
                    );
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let b = Arc::clone(backend);
                    let r = reference.clone();
                    let fetch = async move { b.get(&r).await.map_err(SharedError) }
                        .boxed()
                        .shared();
                    slots.insert(
                        key.clone(),
                        Slot::Fetching {
                            fetch: fetch.clone(),
                            id,
                        },
                    );
                    (fetch, id)
                }
            }
        };
        let outcome = fetch.await;
        {
            let mut slots = self.lock();
            // The first waiter to finish settles the slot, if it still holds this fetch.
            if matches!(slots.get(&key), Some(Slot::Fetching { id: cur, .. }) if *cur == id) {
                match &outcome {
                    Ok(v) if !ttl.is_zero() => {
                        slots.insert(
                            key,
                            Slot::Ready {
                                value: v.clone(),
                                expires: Instant::now() + ttl,
                            },
                        );
                    }
                    _ => {
                        slots.remove(&key);
                    }
                }
            }
        }
        outcome.map_err(|e| e.0)
    }

    /// Drops the entry for (`tenant`, `backend`, `reference`), zeroizing its value; the next
    /// request fetches again.
    pub fn invalidate(&self, tenant: &str, backend: &str, reference: &SecretRef) {
        self.lock()
            .remove(&(tenant.to_owned(), backend.to_owned(), reference.clone()));
    }

    /// Drops every entry, zeroizing the values.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many entries (fresh, expired or being fetched) the cache holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;

    use super::*;
    use crate::backend::{Capabilities, MemoryBackend};
    use crate::error::ErrorKind;
    use crate::reference::BackendKind;

    fn memory(value: &str) -> (Arc<MemoryBackend>, Arc<dyn SecretBackend>, SecretRef) {
        let m = Arc::new(MemoryBackend::new("vault", BackendKind::Vault));
        let r = SecretRef::parse("vault://acme/token").unwrap();
        m.insert(&r, SecretValue::from_string(value.into()))
            .unwrap();
        let b: Arc<dyn SecretBackend> = m.clone();
        (m, b, r)
    }

    /// A backend whose `get` waits until released, counts calls and fails as told.
    struct Gated {
        calls: AtomicUsize,
        gate: tokio::sync::Semaphore,
        fail: Option<ErrorKind>,
    }

    #[async_trait]
    impl SecretBackend for Gated {
        fn kind(&self) -> BackendKind {
            BackendKind::Vault
        }
        fn name(&self) -> &str {
            "gated"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                read: true,
                ..Capabilities::default()
            }
        }
        async fn get(&self, _r: &SecretRef) -> Result<SecretValue> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _permit = self.gate.acquire().await.expect("gate open");
            match self.fail {
                Some(k) => Err(Error::new(k, "backend `gated` refused the login")),
                None => Ok(SecretValue::from_string("FAKE-gated-value".into())),
            }
        }
    }

    #[tokio::test]
    async fn a_warm_hit_does_not_call_the_backend_and_tenants_are_separate() {
        let (m, b, r) = memory("FAKE-cache-value-1");
        let c = CredentialCache::new();
        let ttl = Duration::from_secs(60);
        for _ in 0..5 {
            let v = c.get("acme", &b, &r, ttl).await.unwrap();
            assert_eq!(v.expose_secret(), b"FAKE-cache-value-1");
        }
        assert_eq!(m.reads(), 1);
        // Another tenant asking for the same reference is a separate entry.
        c.get("globex", &b, &r, ttl).await.unwrap();
        assert_eq!(m.reads(), 2);
        assert_eq!(c.len(), 2);
        c.invalidate("acme", "vault", &r);
        c.get("acme", &b, &r, ttl).await.unwrap();
        assert_eq!(m.reads(), 3);
        assert!(!format!("{c:?}").contains("FAKE"));
    }

    #[tokio::test]
    async fn a_zero_ttl_caches_nothing() {
        let (m, b, r) = memory("FAKE-cache-value-2");
        let c = CredentialCache::new();
        c.get("acme", &b, &r, Duration::ZERO).await.unwrap();
        c.get("acme", &b, &r, Duration::ZERO).await.unwrap();
        assert_eq!(m.reads(), 2);
        assert!(c.is_empty());
    }

    #[tokio::test]
    async fn expired_entries_are_fetched_again_and_evicted() {
        let (m, b, r) = memory("FAKE-cache-value-3");
        let c = CredentialCache::new();
        let short = Duration::from_millis(1);
        c.get("acme", &b, &r, short).await.unwrap();
        // Wait on the condition (the entry's deadline has passed), not a fixed sleep.
        let deadline = Instant::now() + short;
        while Instant::now() <= deadline {
            std::hint::spin_loop();
        }
        c.get("acme", &b, &r, short).await.unwrap();
        assert_eq!(m.reads(), 2);
        let other = SecretRef::parse("vault://acme/other").unwrap();
        m.insert(&other, SecretValue::from_string("FAKE-other-1".into()))
            .unwrap();
        let deadline = Instant::now() + short;
        while Instant::now() <= deadline {
            std::hint::spin_loop();
        }
        // The miss on `other` sweeps the expired `token` entry out.
        c.get("acme", &b, &other, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(c.len(), 1);
    }

    #[tokio::test]
    async fn a_thousand_concurrent_cold_requests_make_one_backend_call() {
        let gated = Arc::new(Gated {
            calls: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            fail: None,
        });
        let b: Arc<dyn SecretBackend> = gated.clone();
        let c = Arc::new(CredentialCache::new());
        let r = SecretRef::parse("vault://acme/token").unwrap();
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (c, b, r) = (Arc::clone(&c), Arc::clone(&b), r.clone());
            tasks.push(tokio::spawn(async move {
                c.get("acme", &b, &r, Duration::from_secs(60)).await
            }));
        }
        // Wait until the one fetch has started, then release it.
        while gated.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gated.gate.add_permits(1);
        for t in tasks {
            let v = t.await.unwrap().unwrap();
            assert_eq!(v.expose_secret(), b"FAKE-gated-value");
        }
        assert_eq!(gated.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failures_are_shared_by_waiters_but_never_cached() {
        let gated = Arc::new(Gated {
            calls: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            fail: Some(ErrorKind::Unauthenticated),
        });
        let b: Arc<dyn SecretBackend> = gated.clone();
        let c = Arc::new(CredentialCache::new());
        let r = SecretRef::parse("vault://acme/token").unwrap();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (c, b, r) = (Arc::clone(&c), Arc::clone(&b), r.clone());
            tasks.push(tokio::spawn(async move {
                c.get("acme", &b, &r, Duration::from_secs(60)).await
            }));
        }
        while gated.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gated.gate.add_permits(100);
        for t in tasks {
            let e = t.await.unwrap().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        }
        assert_eq!(gated.calls.load(Ordering::SeqCst), 1);
        assert!(c.is_empty(), "an authentication failure is not cached");
        c.get("acme", &b, &r, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(gated.calls.load(Ordering::SeqCst), 2, "asked again");
    }
}
