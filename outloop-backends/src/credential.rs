//! Backend credentials held in other backends.
//!
//! Infisical's client secret, Doppler's token and 1Password's service-account token are
//! secrets themselves, so the host config names them by reference (`client_secret =
//! "keychain://outloop/infisical-client-secret"`), never as literals. [`Registry`] lets a
//! backend built by [`crate::from_config`] read such a reference through the other configured
//! backends, the same way the broker would (the first backend of the reference's kind, in
//! `[backends.*]` name order), at its first use. [`check_cycles`] refuses, at load, a config
//! where backends would need each other's credentials to start.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use outloop_core::backend::SecretBackend;
use outloop_core::config::BackendConfig;
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};

/// The backends built from one host config, filled once they are all built. Holds weak
/// references, so backends that hold the registry do not keep each other alive.
#[derive(Clone, Default)]
pub struct Registry(Arc<OnceLock<Vec<Weak<dyn SecretBackend>>>>);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("filled", &self.0.get().is_some())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the built backends, in the order the broker sees them. Later calls are ignored.
    pub fn fill(&self, backends: &[Arc<dyn SecretBackend>]) {
        let _ = self.0.set(backends.iter().map(Arc::downgrade).collect());
    }

    /// A registry already filled with `backends` (for tests and embedders that build backends
    /// by hand). It holds them weakly: keep your own `Arc`s alive for as long as the backends
    /// that read credentials through it are used.
    pub fn with(backends: &[Arc<dyn SecretBackend>]) -> Self {
        let r = Self::new();
        r.fill(backends);
        r
    }

    fn backend_for(&self, kind: BackendKind) -> Option<Arc<dyn SecretBackend>> {
        self.0
            .get()?
            .iter()
            .filter_map(Weak::upgrade)
            .find(|b| b.kind() == kind)
    }
}

/// A credential a backend reads from another backend: which backend needs it, under which
/// config key, and the reference.
#[derive(Clone, Debug)]
pub struct CredentialSource {
    owner: String,
    key: &'static str,
    reference: SecretRef,
    registry: Registry,
}

impl CredentialSource {
    /// Reads `backends.<owner>.<key>` from `settings` as a secret reference.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the key is missing (and `required`), not a string, or not a
    /// secret reference (a literal token is refused: it would sit in the config in clear).
    pub fn from_settings(
        owner: &str,
        key: &'static str,
        settings: &BTreeMap<String, toml::Value>,
        registry: &Registry,
        required: bool,
    ) -> Result<Option<Self>> {
        let Some(v) = settings.get(key) else {
            return if required {
                Err(Error::config(format!(
                    "backends.{owner}.{key}: missing; give a secret reference such as `vault://outloop/{owner}-{key}`"
                )))
            } else {
                Ok(None)
            };
        };
        let raw = v.as_str().ok_or_else(|| {
            Error::config(format!(
                "backends.{owner}.{key}: expected a string holding a secret reference"
            ))
        })?;
        let reference = parse_credential_ref(owner, key, raw)?;
        Ok(Some(Self {
            owner: owner.to_owned(),
            key,
            reference,
            registry: registry.clone(),
        }))
    }

    /// The reference the credential is read from.
    pub fn reference(&self) -> &SecretRef {
        &self.reference
    }

    /// Fetches the credential through the backend serving its reference's kind.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when no configured backend serves that kind; otherwise the
    /// serving backend's error, with its kind kept and the message prefixed by which
    /// credential was being read.
    pub async fn fetch(&self) -> Result<SecretValue> {
        let backend = self.registry.backend_for(self.reference.kind()).ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "backend `{}`: no configured backend serves `{}://` references, so `{}` cannot be read",
                    self.owner,
                    self.reference.kind().scheme(),
                    self.key
                ),
            )
        })?;
        backend.get(&self.reference).await.map_err(|e| {
            e.context(format!(
                "backend `{}`: reading its `{}` from `{}`",
                self.owner, self.key, self.reference
            ))
        })
    }
}

fn parse_credential_ref(owner: &str, key: &str, raw: &str) -> Result<SecretRef> {
    if !raw.contains("://") {
        // Do not echo the value: it may be the very token the user pasted by mistake.
        return Err(Error::config(format!(
            "backends.{owner}.{key}: must be a secret reference (e.g. `vault://outloop/{owner}-{key}`), never a literal token"
        )));
    }
    SecretRef::parse(raw)
        .map_err(|e| Error::config(format!("backends.{owner}.{key}: {}", e.message())))
}

/// The config keys, per backend kind, that hold credential references.
pub(crate) fn credential_keys(kind: BackendKind) -> &'static [&'static str] {
    match kind {
        BackendKind::Infisical => &["client_secret"],
        BackendKind::Doppler => &["token"],
        BackendKind::OnePassword => &["service_account_token"],
        _ => &[],
    }
}

/// Refuses configs whose backends need each other's credentials to start, and credentials
/// whose kind no configured backend serves.
///
/// Backend `a` depends on backend `b` when one of `a`'s credential references has `b`'s kind
/// and `b` is the first backend (by name) of that kind, the one that will serve it.
///
/// # Errors
///
/// [`ErrorKind::Config`] naming the key and, for a cycle, the chain of backends.
pub fn check_cycles(backends: &BTreeMap<String, BackendConfig>) -> Result<()> {
    let mut first_of_kind: BTreeMap<BackendKind, &str> = BTreeMap::new();
    for (name, b) in backends {
        if let Some(k) = BackendKind::from_config_name(&b.kind) {
            first_of_kind.entry(k).or_insert(name);
        }
    }
    let mut edges: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (name, b) in backends {
        let Some(kind) = BackendKind::from_config_name(&b.kind) else {
            continue;
        };
        for key in credential_keys(kind) {
            let Some(raw) = b.settings.get(*key).and_then(|v| v.as_str()) else {
                continue;
            };
            let Ok(r) = parse_credential_ref(name, key, raw) else {
                continue; // the backend's own constructor reports the bad value
            };
            let Some(target) = first_of_kind.get(&r.kind()) else {
                return Err(Error::config(format!(
                    "backends.{name}.{key}: reference `{r}` needs a `[backends.*]` table with kind = \"{}\"",
                    r.kind().config_name()
                )));
            };
            edges.entry(name).or_default().push((key, target));
        }
    }
    // Depth-first search from every backend; a back edge is a cycle.
    for start in edges.keys() {
        let mut path: Vec<(&str, &str)> = Vec::new();
        if let Some(chain) = find_cycle(start, start, &edges, &mut path) {
            return Err(Error::config(format!(
                "backends.{start}.{}: credential references form a cycle ({chain}); store one of these credentials in a backend that needs none, such as the vault",
                path.first().map(|p| p.1).unwrap_or("?")
            )));
        }
    }
    Ok(())
}

fn find_cycle<'a>(
    start: &'a str,
    at: &'a str,
    edges: &BTreeMap<&'a str, Vec<(&'a str, &'a str)>>,
    path: &mut Vec<(&'a str, &'a str)>,
) -> Option<String> {
    for (key, next) in edges.get(at).map(Vec::as_slice).unwrap_or_default() {
        if path.iter().any(|(n, _)| n == next) && *next != start {
            continue; // a cycle not through `start`; found when starting there
        }
        path.push((next, key));
        if *next == start {
            let mut chain = vec![start.to_owned()];
            chain.extend(path.iter().map(|(n, _)| (*n).to_owned()));
            return Some(chain.join(" -> "));
        }
        if let Some(c) = find_cycle(start, next, edges, path) {
            return Some(c);
        }
        path.pop();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    type Entry<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn cfg(entries: &[Entry<'_>]) -> BTreeMap<String, BackendConfig> {
        entries
            .iter()
            .map(|(name, kind, kv)| {
                (
                    (*name).to_owned(),
                    BackendConfig {
                        kind: (*kind).to_owned(),
                        settings: kv
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), toml::Value::String((*v).to_owned())))
                            .collect(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn cycles_and_missing_kinds_are_refused_with_the_chain() {
        let ok = cfg(&[
            ("vault", "vault", &[]),
            ("inf", "infisical", &[("client_secret", "vault://o/inf")]),
            ("dop", "doppler", &[("token", "infisical://p/dev/TOKEN")]),
        ]);
        check_cycles(&ok).unwrap();

        let cycle = cfg(&[
            ("vault", "vault", &[]),
            (
                "inf",
                "infisical",
                &[("client_secret", "doppler://p/c/SECRET")],
            ),
            ("dop", "doppler", &[("token", "infisical://p/dev/TOKEN")]),
        ]);
        let e = check_cycles(&cycle).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("dop -> inf -> dop"), "{e}");
        assert!(e.message().contains("backends.dop.token"), "{e}");

        let own = cfg(&[(
            "inf",
            "infisical",
            &[("client_secret", "infisical://p/dev/S")],
        )]);
        let e = check_cycles(&own).unwrap_err();
        assert!(e.message().contains("inf -> inf"), "{e}");

        let missing = cfg(&[("dop", "doppler", &[("token", "keychain://outloop/doppler")])]);
        let e = check_cycles(&missing).unwrap_err();
        assert!(
            e.message().contains("backends.dop.token")
                && e.message().contains("kind = \"keychain\""),
            "{e}"
        );
    }

    #[test]
    fn literal_tokens_are_refused_without_echo() {
        let settings: BTreeMap<String, toml::Value> = [(
            "token".to_owned(),
            toml::Value::String("dp.st.FAKEliteraltoken0000000000000000000000".into()),
        )]
        .into();
        let e = CredentialSource::from_settings("dop", "token", &settings, &Registry::new(), true)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("backends.dop.token"), "{e}");
        assert!(!e.message().contains("FAKE") && !format!("{e:?}").contains("FAKE"));
    }
}
