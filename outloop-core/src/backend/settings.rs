//! [`LayerSettings`]: the keys every `[backends.<name>]` table accepts, whatever its kind.
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `cache_ttl` | duration | `"5m"` | how long a fetched secret stays cached (per tenant); `0` disables the cache |
//! | `timeout` | duration | `"30s"` | the deadline of one backend call |
//! | `retries` | integer | `2` | retries of a read after a rate limit or a temporary failure; `0` disables them |
//! | `retry_max_wait` | duration | `"30s"` | the longest `Retry-After` (or backoff) honoured before a retry |
//!
//! A duration is a whole number of seconds (`300`) or a string with one unit: `"500ms"`,
//! `"30s"`, `"5m"`, `"1h"`.
//!
//! [`LayerSettings::strip`] removes these keys so each backend validates only its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::SecretBackend;
use crate::backend::cache::DEFAULT_CACHE_TTL;
use crate::backend::retry::{RetryBackend, RetryPolicy};
use crate::backend::timeout::{DEFAULT_TIMEOUT, TimeoutBackend};
use crate::error::{Error, Result};

/// The layer keys, in the order documented above.
pub const LAYER_KEYS: [&str; 4] = ["cache_ttl", "timeout", "retries", "retry_max_wait"];

/// The parsed layer keys of one `[backends.<name>]` table; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSettings {
    /// How long a fetched secret stays cached; zero disables caching.
    pub cache_ttl: Duration,
    /// The deadline of one call.
    pub timeout: Duration,
    /// How reads are retried.
    pub retry: RetryPolicy,
}

impl Default for LayerSettings {
    fn default() -> Self {
        Self {
            cache_ttl: DEFAULT_CACHE_TTL,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }
}

impl LayerSettings {
    /// Whether `key` is one of [`LAYER_KEYS`].
    pub fn is_layer_key(key: &str) -> bool {
        LAYER_KEYS.contains(&key)
    }

    /// Reads the layer keys of backend `name`'s `settings` (the table without `kind`);
    /// other keys are ignored.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Config`] naming `backends.<name>.<key>` when a value has the
    /// wrong type, a duration cannot be read, `timeout` is zero, or `retries` is over 10.
    pub fn parse(name: &str, settings: &BTreeMap<String, toml::Value>) -> Result<Self> {
        let mut out = Self::default();
        if let Some(v) = settings.get("cache_ttl") {
            out.cache_ttl = duration(name, "cache_ttl", v)?;
        }
        if let Some(v) = settings.get("timeout") {
            out.timeout = duration(name, "timeout", v)?;
            if out.timeout.is_zero() {
                return Err(Error::config(format!(
                    "backends.{name}.timeout: must be more than zero"
                )));
            }
        }
        if let Some(v) = settings.get("retries") {
            out.retry.max_retries = v
                .as_integer()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= 10)
                .ok_or_else(|| {
                    Error::config(format!(
                        "backends.{name}.retries: expected a whole number from 0 to 10"
                    ))
                })?;
        }
        if let Some(v) = settings.get("retry_max_wait") {
            out.retry.max_wait = duration(name, "retry_max_wait", v)?;
        }
        Ok(out)
    }

    /// `settings` without the layer keys: what the backend itself validates.
    pub fn strip(settings: &BTreeMap<String, toml::Value>) -> BTreeMap<String, toml::Value> {
        settings
            .iter()
            .filter(|(k, _)| !Self::is_layer_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Wraps `backend` in the retry and timeout layers: each attempt has the deadline, and
    /// reads are retried by the policy. (The cache is the broker's, keyed by tenant.)
    pub fn wrap(&self, backend: Arc<dyn SecretBackend>) -> Arc<dyn SecretBackend> {
        let timed: Arc<dyn SecretBackend> = Arc::new(TimeoutBackend::new(backend, self.timeout));
        if self.retry.max_retries == 0 {
            timed
        } else {
            Arc::new(RetryBackend::new(timed, self.retry))
        }
    }
}

/// Parses a duration setting: whole seconds, or a string with one unit (`ms`, `s`, `m`, `h`).
fn duration(name: &str, key: &str, v: &toml::Value) -> Result<Duration> {
    let bad = || {
        Error::config(format!(
            "backends.{name}.{key}: expected a duration: whole seconds (300) or a string such as \"500ms\", \"30s\", \"5m\" or \"1h\""
        ))
    };
    match v {
        toml::Value::Integer(n) => u64::try_from(*n)
            .map(Duration::from_secs)
            .map_err(|_| bad()),
        toml::Value::String(s) => parse_duration(s).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"1h"` or `"0"`; `None` when it is none of these.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "" if n == 0 => Some(Duration::ZERO),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> BTreeMap<String, toml::Value> {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn parses_durations_and_defaults() {
        let d = LayerSettings::parse("vault", &BTreeMap::new()).unwrap();
        assert_eq!(d, LayerSettings::default());
        assert_eq!(d.cache_ttl, Duration::from_secs(300));
        let s = LayerSettings::parse(
            "ss",
            &table("cache_ttl = \"90s\"\ntimeout = \"500ms\"\nretries = 0\nretry_max_wait = 5\npath = \"/x\""),
        )
        .unwrap();
        assert_eq!(s.cache_ttl, Duration::from_secs(90));
        assert_eq!(s.timeout, Duration::from_millis(500));
        assert_eq!(s.retry.max_retries, 0);
        assert_eq!(s.retry.max_wait, Duration::from_secs(5));
        for (text, secs) in [("0", 0), ("5m", 300), ("1h", 3600), ("45s", 45)] {
            assert_eq!(
                parse_duration(text),
                Some(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for text in ["", "5", "m", "1.5s", "-1s", "5 m", "5d"] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                "cache_ttl = \"soon\"",
                "backends.op.cache_ttl: expected a duration",
            ),
            (
                "cache_ttl = -1",
                "backends.op.cache_ttl: expected a duration",
            ),
            ("timeout = 0", "backends.op.timeout: must be more than zero"),
            ("timeout = true", "backends.op.timeout: expected a duration"),
            (
                "retries = 99",
                "backends.op.retries: expected a whole number from 0 to 10",
            ),
            ("retries = \"2\"", "backends.op.retries"),
        ];
        for (text, needle) in cases {
            let e = LayerSettings::parse("op", &table(text)).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{text}");
            assert!(e.message().starts_with(needle), "{text}: {e}");
        }
    }

    #[test]
    fn strip_keeps_only_backend_keys() {
        let t = table("cache_ttl = 1\ntimeout = 2\nretries = 1\nretry_max_wait = 3\npath = \"/v\"");
        let kept: Vec<_> = LayerSettings::strip(&t).into_keys().collect();
        assert_eq!(kept, vec!["path".to_owned()]);
    }
}
