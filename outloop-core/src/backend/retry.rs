//! [`RetryBackend`]: retries reads that failed with a rate limit or a temporary error.
//!
//! Only [`SecretBackend::get`] and [`SecretBackend::list`] are retried (they change nothing);
//! `set`, `delete` and `health` run once. An error is retried when
//! [`Error::is_retryable`] says so: every [`ErrorKind::RateLimited`], and errors a backend
//! marked with [`Error::temporary`] (an HTTP 5xx, a dropped connection). Authentication and
//! permission failures are never retried, so a failed login (which can lock an identity,
//! e.g. Infisical locks a universal-auth identity after 3 failed logins) is tried once.
//!
//! The wait before a retry is the backend's `Retry-After` when it gave one, else an
//! exponential backoff from [`RetryPolicy::base_delay`]. A `Retry-After` longer than
//! [`RetryPolicy::max_wait`] is not waited for: the error is returned at once, so a call
//! never stalls for minutes.
//!
//! [`ErrorKind::RateLimited`]: crate::ErrorKind::RateLimited

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{Capabilities, Health, SecretBackend};
use crate::error::{Error, Result};
use crate::reference::{BackendKind, SecretRef};
use crate::secret::SecretValue;

/// How [`RetryBackend`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying). Default 2.
    pub max_retries: u32,
    /// The longest wait honoured before one retry, whether from `Retry-After` or the
    /// backoff. Default 30 seconds.
    pub max_wait: Duration,
    /// The first backoff when the backend gave no `Retry-After`; doubled on each retry.
    /// Default 200 milliseconds.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            max_wait: Duration::from_secs(30),
            base_delay: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based) after `error`, or `None` when the
    /// error must not be retried or the backend asked for more than [`Self::max_wait`].
    pub fn wait_for(&self, error: &Error, retry: u32) -> Option<Duration> {
        if !error.is_retryable() || retry >= self.max_retries {
            return None;
        }
        let wait = match error.retry_after() {
            Some(asked) => asked,
            None => self
                .base_delay
                .saturating_mul(2u32.saturating_pow(retry))
                .min(self.max_wait),
        };
        (wait <= self.max_wait).then_some(wait)
    }
}

/// A layer that retries a backend's reads by a [`RetryPolicy`]; see the module docs.
pub struct RetryBackend {
    inner: Arc<dyn SecretBackend>,
    policy: RetryPolicy,
}

impl std::fmt::Debug for RetryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBackend")
            .field("backend", &self.inner.name())
            .field("policy", &self.policy)
            .finish()
    }
}

impl RetryBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SecretBackend>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T>> + Send,
    {
        let mut retry = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => match self.policy.wait_for(&e, retry) {
                    Some(wait) => {
                        tracing::debug!(
                            backend = self.inner.name(),
                            kind = e.kind().as_str(),
                            wait_ms = wait.as_millis() as u64,
                            "retrying a backend read"
                        );
                        tokio::time::sleep(wait).await;
                        retry += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }
}

#[async_trait]
impl SecretBackend for RetryBackend {
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
        self.retrying(|| self.inner.get(reference)).await
    }
    async fn set(&self, reference: &SecretRef, value: SecretValue) -> Result<()> {
        self.inner.set(reference, value).await
    }
    async fn delete(&self, reference: &SecretRef) -> Result<()> {
        self.inner.delete(reference).await
    }
    async fn list(&self) -> Result<Vec<SecretRef>> {
        self.retrying(|| self.inner.list()).await
    }
    fn own_secrets(&self) -> Vec<SecretValue> {
        self.inner.own_secrets()
    }
    async fn health(&self) -> Health {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::error::ErrorKind;

    /// A backend that answers `get` from a script of outcomes, then succeeds.
    struct Scripted {
        script: Mutex<VecDeque<Error>>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(errors: Vec<Error>) -> Arc<Self> {
            Arc::new(Self {
                script: Mutex::new(errors.into()),
                calls: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait]
    impl SecretBackend for Scripted {
        fn kind(&self) -> BackendKind {
            BackendKind::Vault
        }
        fn name(&self) -> &str {
            "scripted"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        async fn get(&self, _r: &SecretRef) -> Result<SecretValue> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.script.lock().unwrap().pop_front() {
                Some(e) => Err(e),
                None => Ok(SecretValue::from_string("FAKE-retried-value".into())),
            }
        }
    }

    fn r() -> SecretRef {
        SecretRef::parse("vault://acme/token").unwrap()
    }

    fn limited(secs: Option<u64>) -> Error {
        Error::rate_limited(
            "backend `scripted` is rate limited (HTTP 429)",
            secs.map(Duration::from_secs),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_then_succeeds() {
        let s = Scripted::new(vec![limited(Some(7))]);
        let b = RetryBackend::new(s.clone(), RetryPolicy::default());
        let start = tokio::time::Instant::now();
        let v = b.get(&r()).await.unwrap();
        assert_eq!(v.expose_secret(), b"FAKE-retried-value");
        assert_eq!(s.calls.load(Ordering::SeqCst), 2);
        // The paused clock advanced by exactly the Retry-After.
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_over_the_cap_is_not_waited_for() {
        let s = Scripted::new(vec![limited(Some(3600))]);
        let b = RetryBackend::new(s.clone(), RetryPolicy::default());
        let start = tokio::time::Instant::now();
        let e = b.get(&r()).await.unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)));
        assert_eq!(s.calls.load(Ordering::SeqCst), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn temporary_errors_back_off_and_give_up_after_max_retries() {
        let five_xx = || {
            Error::new(
                ErrorKind::Unavailable,
                "backend `scripted` answered HTTP 503",
            )
            .temporary()
        };
        let s = Scripted::new(vec![five_xx(), five_xx(), five_xx(), five_xx()]);
        let b = RetryBackend::new(s.clone(), RetryPolicy::default());
        let start = tokio::time::Instant::now();
        let e = b.get(&r()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(s.calls.load(Ordering::SeqCst), 3, "1 try + 2 retries");
        assert_eq!(start.elapsed(), Duration::from_millis(200 + 400));
    }

    #[tokio::test(start_paused = true)]
    async fn logins_and_permanent_errors_are_tried_once() {
        let cases = vec![
            // Even marked temporary by mistake, a failed login is never retried.
            Error::new(ErrorKind::Unauthenticated, "login failed").temporary(),
            Error::new(ErrorKind::PermissionDenied, "denied").temporary(),
            Error::new(ErrorKind::NotFound, "missing"),
            Error::new(ErrorKind::Unavailable, "not configured"),
            Error::new(ErrorKind::Timeout, "slow"),
        ];
        for e in cases {
            let kind = e.kind();
            let s = Scripted::new(vec![e]);
            let b = RetryBackend::new(s.clone(), RetryPolicy::default());
            assert_eq!(b.get(&r()).await.unwrap_err().kind(), kind);
            assert_eq!(s.calls.load(Ordering::SeqCst), 1, "{kind}");
        }
    }

    #[test]
    fn zero_retries_disables_retrying() {
        let p = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.wait_for(&limited(Some(1)), 0), None);
        assert_eq!(
            RetryPolicy::default().wait_for(&limited(None), 1),
            Some(Duration::from_millis(400))
        );
    }
}
