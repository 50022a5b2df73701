//! Rate limits and budgets per tenant and action glob (`20/hour`, `500/day`), persisted in the
//! state dir so they survive a broker restart.
//!
//! Each `(tenant, glob, limit)` keeps the times of the requests it let through within its
//! period (a sliding window). The state file is rewritten atomically under an exclusive lock
//! on a sibling lock file, so concurrent processes share the counts.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::audit::create_private_dir;
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{RateSpec, glob_match};

/// A limit that a request would exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The rule, as a config location: `policy.tenants.acme.rate."sendgrid.*" = "20/hour"`.
    pub rule: String,
    /// Seconds until the oldest counted request leaves the window.
    pub retry_after_secs: u64,
}

/// The persistent rate-limit store.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    path: PathBuf,
}

type State = BTreeMap<String, Vec<i64>>;

fn key(tenant: &str, glob: &str, spec: &str) -> String {
    format!("{tenant}\u{1f}{glob}\u{1f}{spec}")
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("rate-limit state {}: {what}: {e}", path.display()),
    )
}

impl RateLimiter {
    /// A store at `path` (created on first use, mode 0600, with its directory 0700).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn lock(&self) -> Result<File> {
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir).map_err(|e| io_err(dir, "cannot create", e))?;
        }
        let lock_path = self.path.with_extension("lock");
        let mut o = OpenOptions::new();
        o.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let f = o
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, "cannot open", e))?;
        f.lock().map_err(|e| io_err(&lock_path, "cannot lock", e))?;
        Ok(f)
    }

    fn read(&self) -> Result<State> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "rate-limit state {} is damaged ({e}); remove it to reset the counts",
                        self.path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::new()),
            Err(e) => Err(io_err(&self.path, "cannot read", e)),
        }
    }

    fn write(&self, state: &State) -> Result<()> {
        use std::io::Write;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| io_err(dir, "cannot write", e))?;
        let bytes = serde_json::to_vec(state).map_err(|e| Error::internal(e.to_string()))?;
        tmp.write_all(&bytes)
            .and_then(|()| tmp.as_file().sync_data())
            .map_err(|e| io_err(&self.path, "cannot write", e))?;
        tmp.persist(&self.path)
            .map_err(|e| io_err(&self.path, "cannot replace", e.error))?;
        Ok(())
    }

    /// The limits among `rates` (glob → spec text) that apply to `action`, parsed.
    fn applicable<'a>(
        action: &str,
        rates: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = (&'a String, &'a String, RateSpec)> {
        rates
            .iter()
            .filter(move |(g, _)| glob_match(g, action))
            .filter_map(|(g, s)| {
                // Validated when the config loaded.
                RateSpec::parse(s).ok().map(|spec| (g, s, spec))
            })
    }

    /// Counts one request of `tenant` for `action` against every matching limit in `rates`, at
    /// `now` (Unix seconds). Records it only when every limit has room.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the state cannot be read, locked or written (the request is then
    /// refused: a limit that cannot be counted is not skipped).
    pub fn acquire(
        &self,
        tenant: &str,
        action: &str,
        rates: &BTreeMap<String, String>,
        now: i64,
    ) -> Result<Option<Exceeded>> {
        if Self::applicable(action, rates).next().is_none() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        let mut state = self.read()?;
        let mut keys = Vec::new();
        for (glob, text, spec) in Self::applicable(action, rates) {
            let k = key(tenant, glob, text);
            let times = state.entry(k.clone()).or_default();
            let period = i64::try_from(spec.period_secs).unwrap_or(i64::MAX);
            times.retain(|&t| t > now - period);
            if times.len() >= spec.limit as usize {
                let oldest = times.iter().copied().min().unwrap_or(now);
                return Ok(Some(Exceeded {
                    rule: format!("policy.tenants.{tenant}.rate.{glob:?} = {text:?}"),
                    retry_after_secs: u64::try_from(oldest + period - now).unwrap_or(0).max(1),
                }));
            }
            keys.push(k);
        }
        for k in keys {
            state.entry(k).or_default().push(now);
        }
        self.write(&state)?;
        Ok(None)
    }

    /// How many requests each matching limit has counted in its current window, for
    /// `policy explain`: `(rule, used, limit)`. Reads only; records nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the state cannot be read.
    pub fn usage(
        &self,
        tenant: &str,
        action: &str,
        rates: &BTreeMap<String, String>,
        now: i64,
    ) -> Result<Vec<(String, usize, u32)>> {
        let state = self.read()?;
        Ok(Self::applicable(action, rates)
            .map(|(glob, text, spec)| {
                let period = i64::try_from(spec.period_secs).unwrap_or(i64::MAX);
                let used = state
                    .get(&key(tenant, glob, text))
                    .map_or(0, |v| v.iter().filter(|&&t| t > now - period).count());
                (
                    format!("policy.tenants.{tenant}.rate.{glob:?} = {text:?}"),
                    used,
                    spec.limit,
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_tenant_and_survive_a_new_limiter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/ratelimit.json");
        let rates: BTreeMap<String, String> = [
            ("send.*".to_owned(), "2/hour".to_owned()),
            ("*".to_owned(), "100/day".to_owned()),
        ]
        .into();
        let l = RateLimiter::new(&path);
        assert_eq!(l.acquire("acme", "send.mail", &rates, 1000).unwrap(), None);
        assert_eq!(l.acquire("acme", "send.mail", &rates, 1001).unwrap(), None);
        // A new limiter over the same file (a restart) still sees both.
        let l2 = RateLimiter::new(&path);
        let hit = l2
            .acquire("acme", "send.mail", &rates, 1002)
            .unwrap()
            .unwrap();
        assert_eq!(hit.rule, "policy.tenants.acme.rate.\"send.*\" = \"2/hour\"");
        assert_eq!(hit.retry_after_secs, 3598);
        // Another tenant and a non-matching action are not affected.
        assert_eq!(
            l2.acquire("globex", "send.mail", &rates, 1002).unwrap(),
            None
        );
        assert_eq!(l2.acquire("acme", "list", &rates, 1002).unwrap(), None);
        // The window slides.
        assert_eq!(
            l2.acquire("acme", "send.mail", &rates, 1000 + 3600)
                .unwrap(),
            None
        );
        let usage = l2.usage("acme", "send.mail", &rates, 1000 + 3600).unwrap();
        assert_eq!(
            usage[1],
            (
                "policy.tenants.acme.rate.\"send.*\" = \"2/hour\"".to_owned(),
                2,
                2
            )
        );
    }

    #[test]
    fn concurrent_processes_never_overshoot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ratelimit.json");
        let rates: BTreeMap<String, String> = [("a".to_owned(), "50/hour".to_owned())].into();
        let allowed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let l = RateLimiter::new(&path);
                    for _ in 0..20 {
                        if l.acquire("t", "a", &rates, 5).unwrap().is_none() {
                            allowed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.into_inner(), 50);
    }
}
