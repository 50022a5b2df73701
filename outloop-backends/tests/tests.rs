//! Integration tests of the backends: the conformance suite on each backend that can run
//! here, and the Secret Service against a real, private GNOME Keyring.

#[cfg(feature = "secret-service")]
#[path = "support/keyring.rs"]
mod keyring;
#[cfg(feature = "secret-service")]
mod secret_service;
#[cfg(feature = "vault")]
mod vault_conformance;
