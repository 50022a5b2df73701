//! [`TimeoutBackend`]: a deadline on every call to a backend.
//!
//! A backend that waits on something that may never answer (a locked keyring waiting for a
//! password prompt, a CLI waiting for a biometric unlock, a stalled connection) is cut off
//! after the backend's `timeout` (default [`DEFAULT_TIMEOUT`]) with
//! [`ErrorKind::Timeout`], naming the backend and the operation. The abandoned call is
//! dropped, which cancels it at its next await point.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{Capabilities, Health, Probe, SecretBackend};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::{BackendKind, SecretRef};
use crate::secret::SecretValue;

/// The default per-call deadline: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A layer that gives every call to the wrapped backend a deadline; see the module docs.
pub struct TimeoutBackend {
    inner: Arc<dyn SecretBackend>,
    timeout: Duration,
}

impl std::fmt::Debug for TimeoutBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeoutBackend")
            .field("backend", &self.inner.name())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl TimeoutBackend {
    /// Wraps `inner` with a deadline of `timeout` per call.
    pub fn new(inner: Arc<dyn SecretBackend>, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    fn expired(&self, op: &str) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "backend `{}` did not answer `{op}` within {}; raise `timeout` in [backends.{}] if it is just slow",
                self.inner.name(),
                human(self.timeout),
                self.inner.name()
            ),
        )
    }

    async fn within<T>(
        &self,
        op: &str,
        fut: impl std::future::Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| Err(self.expired(op)))
    }
}

/// `1.5 s`, `30 s`, `250 ms`.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[async_trait]
impl SecretBackend for TimeoutBackend {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, reference: &SecretRef) -> Result<SecretValue> {
        self.within("get", self.inner.get(reference)).await
    }
    async fn set(&self, reference: &SecretRef, value: SecretValue) -> Result<()> {
        self.within("set", self.inner.set(reference, value)).await
    }
    async fn delete(&self, reference: &SecretRef) -> Result<()> {
        self.within("delete", self.inner.delete(reference)).await
    }
    async fn list(&self) -> Result<Vec<SecretRef>> {
        self.within("list", self.inner.list()).await
    }
    fn own_secrets(&self) -> Vec<SecretValue> {
        self.inner.own_secrets()
    }
    async fn health(&self) -> Health {
        match tokio::time::timeout(self.timeout, self.inner.health()).await {
            Ok(h) => h,
            Err(_) => Health::unreachable(Probe::ok("built in"), &self.expired("health")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend whose every call waits forever (a keyring waiting for a prompt).
    struct Stuck;

    #[async_trait]
    impl SecretBackend for Stuck {
        fn kind(&self) -> BackendKind {
            BackendKind::SecretService
        }
        fn name(&self) -> &str {
            "stuck"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        async fn get(&self, _r: &SecretRef) -> Result<SecretValue> {
            std::future::pending().await
        }
        async fn health(&self) -> Health {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_call_times_out_with_a_clear_message() {
        let b = TimeoutBackend::new(Arc::new(Stuck), Duration::from_millis(1500));
        let r = SecretRef::parse("secret-service://svc/acct").unwrap();
        let start = tokio::time::Instant::now();
        let e = b.get(&r).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        assert_eq!(
            e.message(),
            "backend `stuck` did not answer `get` within 1.5 s; raise `timeout` in [backends.stuck] if it is just slow"
        );
        let h = b.health().await;
        assert!(!h.is_ok());
        assert_eq!(h.reachable.word(), "FAILED");
        // Operations the backend does not support still say so, in time.
        assert_eq!(b.list().await.unwrap_err().kind(), ErrorKind::Unavailable);
    }
}
