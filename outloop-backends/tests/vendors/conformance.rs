//! The core conformance suite (`outloop_core::conformance`) on the 1Password, Infisical and
//! Doppler backends, each against its fake (`tests/fakes/`): get of every known value byte for
//! byte, not found, another kind's reference, list where the backend lists, capabilities that
//! match behaviour, health, and no value or token in any error text or `Debug` output.

use outloop_core::SecretValue;
use outloop_core::backend::SecretBackend;
use outloop_core::conformance::{self, Fixture as Suite};

use crate::fixtures::*;

/// Runs the suite on `f`, then checks the backend's own tokens never reached an error or
/// `Debug` either. Returns the number of checks that passed.
async fn conform<B: SecretBackend + std::fmt::Debug + 'static>(f: &Fixture<B>) -> usize {
    let mut suite = Suite::new(f.missing.clone());
    for (r, v) in &f.known {
        suite = suite.existing(r.clone(), SecretValue::new(v.clone()));
    }
    let report = conformance::run(f.backend.as_ref(), &suite).await;
    conformance::assert_no_value_in_debug(f.backend.as_ref(), &suite);
    let debug = format!("{:?}", f.backend);
    let secrets: Vec<&str> = f.secrets.iter().map(String::as_str).collect();
    assert_no_leak(&debug, &secrets);
    let e = f.backend.get(&f.missing).await.unwrap_err();
    assert_clean_error(&e, &secrets);
    report.checks
}

#[tokio::test]
async fn infisical_passes_the_conformance_suite() {
    let f = infisical();
    let checks = conform(&f).await;
    assert!(checks >= f.known.len() + 3, "only {checks} checks ran");
}

#[tokio::test]
async fn doppler_passes_the_conformance_suite() {
    let f = doppler();
    let checks = conform(&f).await;
    assert!(checks >= f.known.len() + 3, "only {checks} checks ran");
}

#[tokio::test]
async fn onepassword_passes_the_conformance_suite() {
    let f = onepassword();
    let checks = conform(&f).await;
    assert!(checks >= f.known.len() + 3, "only {checks} checks ran");
}
