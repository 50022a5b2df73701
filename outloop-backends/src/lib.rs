//! Outloop's secret backends. Each lives in its own module behind its own cargo feature.
//!
//! [`from_config`] opens every `[backends.*]` table of the host config; kinds not built into
//! this version are represented by a backend that answers every call with a clear
//! [`ErrorKind::Unavailable`] error, so a config that names them still loads.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use outloop_core::backend::{Capabilities, SecretBackend};
use outloop_core::config::HostConfig;
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};

pub mod credential;
#[cfg(feature = "doppler")]
pub mod doppler;
#[cfg(feature = "infisical")]
pub mod infisical;
#[cfg(feature = "onepassword")]
pub mod onepassword;
#[cfg(any(feature = "infisical", feature = "doppler"))]
mod rest;
#[cfg(feature = "vault")]
pub mod vault;

/// Opens every backend configured in `config` (a `vault` backend is always configured).
///
/// # Errors
///
/// [`ErrorKind::Config`] when a backend's settings are invalid or its files lie inside a bound
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
}
