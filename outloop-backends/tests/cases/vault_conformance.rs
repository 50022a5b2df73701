//! The conformance suite on the vault backend (file identity, temp home).

use std::collections::BTreeMap;

use outloop_backends::vault::{IdentityStore, VaultBackend};
use outloop_core::config::Paths;
use outloop_core::conformance::{self, Fixture};
use outloop_core::{SecretBackend, SecretRef, SecretValue};

#[tokio::test]
async fn the_vault_conforms() {
    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path());
    let vault =
        VaultBackend::open_with("vault", &paths, &BTreeMap::new(), &[], IdentityStore::File)
            .unwrap();
    vault.init().unwrap();
    let mut fixture = Fixture::new(SecretRef::parse("vault://acme/missing").unwrap())
        .scratch(SecretRef::parse("vault://acme/scratch").unwrap());
    for (raw, value) in [
        ("vault://acme/one", "FAKE-vault-conformance-one\n"),
        ("vault://globex/two", "FAKE vault conformance two  "),
    ] {
        let r = SecretRef::parse(raw).unwrap();
        vault
            .set(&r, SecretValue::from_string(value.into()))
            .await
            .unwrap();
        fixture = fixture.existing(r, SecretValue::from_string(value.into()));
    }
    let report = conformance::run(&vault, &fixture).await;
    assert!(report.checks >= 10, "{report:?}");
    conformance::assert_no_value_in_debug(&vault, &fixture);
    // The health probe opens the vault's header without reading a value, and fails
    // clearly once the identity is gone.
    assert!(vault.health().await.is_ok());
    std::fs::remove_file(paths.identity_file()).unwrap();
    let reopened =
        VaultBackend::open_with("vault", &paths, &BTreeMap::new(), &[], IdentityStore::File)
            .unwrap();
    let h = reopened.health().await;
    assert!(!h.is_ok());
    assert_eq!(h.authenticated.word(), "FAILED", "{h:?}");
}
