//! The backend conformance suite: one set of checks every [`SecretBackend`] must pass.
//!
//! Enabled by the `conformance` cargo feature; use it from another crate's tests by adding
//! to that crate's `Cargo.toml`
//!
//! ```toml
//! [dev-dependencies]
//! outloop-core = { workspace = true, features = ["conformance"] }
//! ```
//!
//! then, in a test, put known secrets into the backend (or point at ones a fake serves),
//! describe them in a [`Fixture`] and call [`run`]:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use outloop_core::conformance::{self, Fixture};
//! use outloop_core::{BackendKind, MemoryBackend, SecretRef, SecretValue};
//!
//! let backend = MemoryBackend::new("vault", BackendKind::Vault);
//! let token = SecretRef::parse("vault://acme/token").unwrap();
//! backend
//!     .insert(&token, SecretValue::from_string("FAKE-conformance-1\n".into()))
//!     .unwrap();
//! let fixture = Fixture::new(SecretRef::parse("vault://acme/missing").unwrap())
//!     .existing(token, SecretValue::from_string("FAKE-conformance-1\n".into()))
//!     .scratch(SecretRef::parse("vault://acme/scratch").unwrap());
//! let report = conformance::run(&backend, &fixture).await;
//! assert!(report.checks > 5);
//! # }
//! ```
//!
//! [`run`] panics (with the check's name and what differed) at the first failed check, as a
//! test assertion does. What it checks:
//!
//! 1. **get**: every existing reference reads back its value byte for byte;
//! 2. **not found**: the missing reference is [`ErrorKind::NotFound`];
//! 3. **invalid reference**: a reference of another kind is [`ErrorKind::InvalidReference`];
//! 4. **capabilities match behaviour**: `list` lists every existing reference (and not the
//!    missing one) when [`Capabilities::list`] is set, and is [`ErrorKind::Unavailable`]
//!    when not; with a scratch reference, `set` then `get` round-trips, `delete` removes and
//!    a second `delete` is [`ErrorKind::NotFound`] when [`Capabilities::write`] and
//!    [`Capabilities::delete`] are set, and each is [`ErrorKind::Unavailable`] when not;
//! 5. **health**: [`SecretBackend::health`] reports no failed probe on a working backend;
//! 6. **no value in text**: no fixture value appears in the backend's `Debug`, in any error's
//!    `Display` or `Debug`, or in the health report.

use std::fmt::Debug;

use crate::backend::{Capabilities, SecretBackend};
use crate::error::{ErrorKind, Result};
use crate::reference::{BackendKind, SecretRef};
use crate::secret::SecretValue;

/// What a backend under test holds: references known to exist with their values, one known
/// to be missing, and optionally a scratch reference the suite may write and delete.
#[derive(Debug)]
pub struct Fixture {
    /// References that exist, with their exact values.
    pub existing: Vec<(SecretRef, SecretValue)>,
    /// A reference of the backend's kind that holds nothing.
    pub missing: SecretRef,
    /// A reference of the backend's kind that the suite may create, overwrite and delete
    /// (write and delete checks are skipped without one). It must not exist beforehand.
    pub scratch: Option<SecretRef>,
}

impl Fixture {
    /// A fixture with no existing secrets and `missing` as the absent reference.
    pub fn new(missing: SecretRef) -> Self {
        Self {
            existing: Vec::new(),
            missing,
            scratch: None,
        }
    }

    /// Adds a reference known to hold `value`.
    pub fn existing(mut self, reference: SecretRef, value: SecretValue) -> Self {
        self.existing.push((reference, value));
        self
    }

    /// Sets the scratch reference used for the write and delete checks.
    pub fn scratch(mut self, reference: SecretRef) -> Self {
        self.scratch = Some(reference);
        self
    }
}

/// What [`run`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// How many checks passed.
    pub checks: usize,
    /// The checks skipped, with why (e.g. `"write: no scratch reference"`).
    pub skipped: Vec<String>,
}

struct Suite<'a> {
    backend: &'a dyn SecretBackend,
    values: Vec<Vec<u8>>,
    report: Report,
}

impl Suite<'_> {
    fn pass(&mut self) {
        self.report.checks += 1;
    }

    /// Panics if any fixture value appears in `text`.
    fn clean(&mut self, what: &str, text: &str) {
        for v in &self.values {
            let v = String::from_utf8_lossy(v);
            let needle = v.trim();
            assert!(
                needle.len() < 4 || !text.contains(needle),
                "conformance[{}]: {what} shows a secret value",
                self.backend.name()
            );
        }
        self.pass();
    }

    fn expect_err<T: Debug>(&mut self, check: &str, r: Result<T>, want: ErrorKind) {
        match r {
            Ok(v) => panic!(
                "conformance[{}]: {check}: expected a `{want}` error, got Ok({v:?})",
                self.backend.name()
            ),
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    want,
                    "conformance[{}]: {check}: wrong error kind (message: {})",
                    self.backend.name(),
                    e.message()
                );
                assert!(
                    !e.message().is_empty() && !e.message().contains('\n'),
                    "conformance[{}]: {check}: the message must be one non-empty line",
                    self.backend.name()
                );
                self.clean(&format!("{check}: the error"), &format!("{e} {e:?}"));
            }
        }
    }

    fn unsupported<T: Debug>(&mut self, op: &str, r: Result<T>) {
        self.expect_err(
            &format!("{op} without the capability"),
            r,
            ErrorKind::Unavailable,
        );
    }
}

/// A reference of a kind other than `kind`.
fn foreign(kind: BackendKind) -> SecretRef {
    let raw = if kind == BackendKind::Doppler {
        "vault://conformance/foreign"
    } else {
        "doppler://conformance/prd/FOREIGN"
    };
    SecretRef::parse(raw).expect("a fixed, valid reference")
}

/// Runs the suite against `backend` with `fixture`; see the module docs for the checks.
///
/// # Panics
///
/// At the first failed check, naming the backend, the check and what differed (never a
/// secret value).
pub async fn run(backend: &dyn SecretBackend, fixture: &Fixture) -> Report {
    let mut values: Vec<Vec<u8>> = fixture
        .existing
        .iter()
        .map(|(_, v)| v.expose_secret().to_vec())
        .collect();
    values.push(b"FAKE-conformance-scratch-value-\xc3\xa9\n".to_vec());
    let mut s = Suite {
        backend,
        values,
        report: Report::default(),
    };
    let name = backend.name().to_owned();
    let caps: Capabilities = backend.capabilities();

    // 1. get
    if caps.read {
        for (r, want) in &fixture.existing {
            let got = backend.get(r).await.unwrap_or_else(|e| {
                panic!("conformance[{name}]: get `{r}` failed: {e}");
            });
            assert!(
                got == *want,
                "conformance[{name}]: get `{r}` returned different bytes ({} bytes, expected {})",
                got.len(),
                want.len()
            );
            s.clean(&format!("Debug of the value of `{r}`"), &format!("{got:?}"));
        }
        // 2. not found
        let r = backend.get(&fixture.missing).await;
        s.expect_err("get of the missing reference", r, ErrorKind::NotFound);
    } else {
        let r = backend.get(&fixture.missing).await;
        s.unsupported("get", r);
    }

    // 3. invalid reference
    let r = backend.get(&foreign(backend.kind())).await;
    s.expect_err(
        "get of another kind's reference",
        r,
        ErrorKind::InvalidReference,
    );

    // 4. list
    let listed = backend.list().await;
    if caps.list {
        let listed = listed.unwrap_or_else(|e| panic!("conformance[{name}]: list failed: {e}"));
        for (r, _) in &fixture.existing {
            assert!(
                listed.contains(r),
                "conformance[{name}]: list does not include `{r}`"
            );
        }
        assert!(
            !listed.contains(&fixture.missing),
            "conformance[{name}]: list includes the missing `{}`",
            fixture.missing
        );
        s.clean("list output", &format!("{listed:?}"));
    } else {
        s.unsupported("list", listed);
    }

    // 4. set and delete
    match &fixture.scratch {
        Some(scratch) => {
            let value = SecretValue::new(s.values.last().cloned().unwrap_or_default());
            let set = backend.set(scratch, value.clone()).await;
            if caps.write {
                set.unwrap_or_else(|e| panic!("conformance[{name}]: set `{scratch}` failed: {e}"));
                let back = backend
                    .get(scratch)
                    .await
                    .unwrap_or_else(|e| panic!("conformance[{name}]: get after set failed: {e}"));
                assert!(
                    back == value,
                    "conformance[{name}]: `{scratch}` did not read back what was set"
                );
                s.pass();
            } else {
                s.unsupported("set", set);
            }
            let del = backend.delete(scratch).await;
            if caps.delete && caps.write {
                del.unwrap_or_else(|e| panic!("conformance[{name}]: delete failed: {e}"));
                let r = backend.get(scratch).await;
                s.expect_err("get after delete", r, ErrorKind::NotFound);
                let r = backend.delete(scratch).await;
                s.expect_err("delete of a missing secret", r, ErrorKind::NotFound);
            } else if !caps.delete {
                s.unsupported("delete", del);
            }
        }
        None => s
            .report
            .skipped
            .push("set/delete: no scratch reference in the fixture".into()),
    }

    // 5. health
    let health = backend.health().await;
    assert!(
        health.is_ok(),
        "conformance[{name}]: health reports a failure on a working backend: {health:?}"
    );
    let json = serde_json::to_string(&health).unwrap_or_default();
    s.clean("the health report", &format!("{health:?} {json}"));

    // 6. Debug of the backend
    let backend_text = format!("{:?}", BackendDebug(backend));
    s.clean("the backend's Debug", &backend_text);
    s.report
}

/// `Debug` for a `dyn SecretBackend`: its kind, name and capabilities (the trait has no
/// `Debug` bound; concrete types check their own `Debug` with [`assert_no_value_in_debug`]).
struct BackendDebug<'a>(&'a dyn SecretBackend);

impl Debug for BackendDebug<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("kind", &self.0.kind())
            .field("name", &self.0.name())
            .field("capabilities", &self.0.capabilities())
            .finish()
    }
}

/// Panics if `value`'s `Debug` (plain and `{:#?}`) shows any of the fixture's values; for
/// concrete backend types, whose `Debug` [`run`] cannot see through `dyn SecretBackend`.
///
/// # Panics
///
/// When a value appears.
pub fn assert_no_value_in_debug(value: &impl Debug, fixture: &Fixture) {
    let text = format!("{value:?} {value:#?}");
    for (r, v) in &fixture.existing {
        let v = String::from_utf8_lossy(v.expose_secret());
        let needle = v.trim();
        assert!(
            needle.len() < 4 || !text.contains(needle),
            "Debug shows the value of `{r}`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    fn fixture(b: &MemoryBackend) -> Fixture {
        let mut f = Fixture::new(SecretRef::parse("vault://acme/missing").unwrap())
            .scratch(SecretRef::parse("vault://acme/scratch").unwrap());
        for (raw, v) in [
            ("vault://acme/one", "FAKE-conf-one\n"),
            ("vault://acme/two", "FAKE conf two  "),
        ] {
            let r = SecretRef::parse(raw).unwrap();
            b.insert(&r, SecretValue::from_string(v.into())).unwrap();
            f = f.existing(r, SecretValue::from_string(v.into()));
        }
        f
    }

    #[tokio::test]
    async fn the_memory_backend_conforms() {
        let b = MemoryBackend::new("vault", BackendKind::Vault);
        let f = fixture(&b);
        let report = run(&b, &f).await;
        assert!(report.checks >= 10, "{report:?}");
        assert!(report.skipped.is_empty());
        assert_no_value_in_debug(&b, &f);
    }

    #[tokio::test]
    #[should_panic(expected = "returned different bytes")]
    async fn the_suite_fails_a_backend_that_changes_values() {
        let b = MemoryBackend::new("vault", BackendKind::Vault);
        let mut f = fixture(&b);
        f.existing[0].1 = SecretValue::from_string("FAKE-conf-one".into());
        run(&b, &f).await;
    }

    #[tokio::test]
    #[should_panic(expected = "list does not include")]
    async fn the_suite_fails_a_backend_whose_list_misses_a_secret() {
        let b = MemoryBackend::new("vault", BackendKind::Vault);
        let f = fixture(&b).existing(
            SecretRef::parse("vault://acme/absent").unwrap(),
            SecretValue::from_string("FAKE-absent-1".into()),
        );
        // Reading the absent reference fails first unless it is listed only; insert it into
        // a second backend to make get succeed but list miss it.
        let r = SecretRef::parse("vault://acme/absent").unwrap();
        b.insert(&r, SecretValue::from_string("FAKE-absent-1".into()))
            .unwrap();
        struct Hiding<'a>(&'a MemoryBackend);
        #[async_trait::async_trait]
        impl SecretBackend for Hiding<'_> {
            fn kind(&self) -> BackendKind {
                self.0.kind()
            }
            fn name(&self) -> &str {
                "hiding"
            }
            fn capabilities(&self) -> Capabilities {
                self.0.capabilities()
            }
            async fn get(&self, r: &SecretRef) -> Result<SecretValue> {
                self.0.get(r).await
            }
            async fn list(&self) -> Result<Vec<SecretRef>> {
                let mut l = self.0.list().await?;
                l.retain(|r| !r.to_string().ends_with("absent"));
                Ok(l)
            }
        }
        run(&Hiding(&b), &f).await;
    }
}
