//! Integration tests of the backends: the conformance suite on each backend that can run
//! here, and the Secret Service against a real, private GNOME Keyring. One test binary; the
//! cases live in `cases/` so cargo does not build each as a binary of its own.

#[cfg(feature = "secret-service")]
#[path = "support/keyring.rs"]
mod keyring;
#[cfg(feature = "secret-service")]
#[path = "cases/secret_service.rs"]
mod secret_service;
#[cfg(feature = "vault")]
#[path = "cases/vault_conformance.rs"]
mod vault_conformance;
