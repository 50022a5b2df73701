//! Outloop's secret backends. Each lives in its own module behind its own cargo feature.
//!
//! [`from_config`] opens every `[backends.*]` table of the host config; kinds not built into
//! this version are represented by a backend that answers every call with a clear
//! [`ErrorKind::Unavailable`] error, so a config that names them still loads.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use outloop_core::backend::settings::LayerSettings;
use outloop_core::backend::{Capabilities, SecretBackend};
use outloop_core::backend::{Health, Probe};
use outloop_core::config::{BackendConfig, HostConfig};
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};

pub mod credential;
#[cfg(feature = "doppler")]
pub mod doppler;
#[cfg(feature = "infisical")]
pub mod infisical;
#[cfg(feature = "keychain")]
pub mod keychain;
#[cfg(feature = "onepassword")]
pub mod onepassword;
#[cfg(any(feature = "infisical", feature = "doppler"))]
mod rest;
#[cfg(feature = "secret-service")]
pub mod secret_service;
#[cfg(feature = "vault")]
pub mod vault;

/// Opens every backend configured in `config` (a `vault` backend is always configured), each
/// wrapped in the timeout and retry layers its table's `timeout`, `retries` and
/// `retry_max_wait` keys configure (see [`LayerSettings`]). Each backend sees its table
/// without those keys.
///
/// # Errors
///
/// [`ErrorKind::Config`] when a backend's settings (or layer keys) are invalid or its files lie inside a bound
/// workspace, or when backends' credential references (Infisical's `client_secret`, Doppler's
/// `token`, 1Password's `service_account_token`) name a kind no backend serves or form a
/// cycle; the backend's own errors when it cannot be opened. Credentials held in other
/// backends are read at first use, through the backends returned here.
pub fn from_config(config: &HostConfig) -> Result<Vec<Arc<dyn SecretBackend>>> {
    credential::check_cycles(&config.backends)?;
    let registry = credential::Registry::new();
    let bound: Vec<PathBuf> = config
        .tenants
        .values()
        .flat_map(|t| t.workspaces.iter().cloned())
        .collect();
    let mut out: Vec<Arc<dyn SecretBackend>> = Vec::new();
    for (name, b) in &config.backends {
        let layers = LayerSettings::parse(name, &b.settings)?;
        let start = out.len();
        // Every arm below sees the table without the layer keys.
        let b = &BackendConfig {
            kind: b.kind.clone(),
            settings: LayerSettings::strip(&b.settings),
        };
        let kind = BackendKind::from_config_name(&b.kind).ok_or_else(|| {
            Error::config(format!(
                "backends.{name}.kind: unknown backend kind `{}`",
                b.kind
            ))
        })?;
        match kind {
            #[cfg(feature = "vault")]
            BackendKind::Vault => {
                let v = vault::VaultBackend::open(name, &config.paths, &b.settings, &bound)?;
                out.push(Arc::new(v));
            }
            #[cfg(feature = "secret-service")]
            BackendKind::SecretService => {
                let s = secret_service::SecretServiceBackend::open(name, &b.settings)?;
                out.push(Arc::new(s));
            }
            #[cfg(feature = "keychain")]
            BackendKind::Keychain => {
                let k = keychain::KeychainBackend::open(name, &b.settings)?;
                out.push(Arc::new(k));
            }
            #[cfg(feature = "onepassword")]
            BackendKind::OnePassword => out.push(Arc::new(
                onepassword::OnePasswordBackend::from_settings(name, &b.settings, &registry)?,
            )),
            #[cfg(feature = "infisical")]
            BackendKind::Infisical => out.push(Arc::new(
                infisical::InfisicalBackend::from_settings(name, &b.settings, &registry)?,
            )),
            #[cfg(feature = "doppler")]
            BackendKind::Doppler => out.push(Arc::new(doppler::DopplerBackend::from_settings(
                name,
                &b.settings,
                &registry,
            )?)),
            other => out.push(Arc::new(NotBuilt {
                name: name.clone(),
                kind: other,
            })),
        }
        for backend in &mut out[start..] {
            *backend = layers.wrap(Arc::clone(backend));
        }
    }
    registry.fill(&out);
    Ok(out)
}

/// A configured backend whose kind is not built into this version of Outloop.
#[derive(Debug)]
struct NotBuilt {
    name: String,
    kind: BackendKind,
}

impl NotBuilt {
    fn err(&self) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "backend `{}` (kind `{}`) is not available in this version of outloop",
                self.name, self.kind
            ),
        )
    }
}

#[async_trait]
impl SecretBackend for NotBuilt {
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn get(&self, _reference: &SecretRef) -> Result<SecretValue> {
        Err(self.err())
    }
    async fn set(&self, _reference: &SecretRef, _value: SecretValue) -> Result<()> {
        Err(self.err())
    }
    async fn delete(&self, _reference: &SecretRef) -> Result<()> {
        Err(self.err())
    }
    async fn list(&self) -> Result<Vec<SecretRef>> {
        Err(self.err())
    }
    async fn health(&self) -> Health {
        Health {
            installed: Probe::failed(&self.err()),
            reachable: Probe::skipped("not installed"),
            authenticated: Probe::skipped("not installed"),
        }
    }
}
