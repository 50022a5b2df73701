//! The Secret Service backend against a real GNOME Keyring on a private bus (see
//! `support/keyring.rs`), cross-checked with `secret-tool` (libsecret-tools).
//!
//! Every test runs under a deadline, so a keyring that waits for a password prompt fails
//! the test instead of hanging it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outloop_backends::secret_service::SecretServiceBackend;
use outloop_core::backend::timeout::TimeoutBackend;
use outloop_core::conformance::{self, Fixture};
use outloop_core::{ErrorKind, SecretBackend, SecretRef, SecretValue};

use crate::keyring::PrivateKeyring;

/// The deadline of one backend call in these tests.
const CALL: Duration = Duration::from_secs(10);

fn backend(k: &PrivateKeyring) -> TimeoutBackend {
    TimeoutBackend::new(
        Arc::new(SecretServiceBackend::with_bus_address(
            "secret-service",
            &k.address,
        )),
        CALL,
    )
}

fn r(service: &str, account: &str) -> SecretRef {
    SecretRef::from_parts(
        outloop_core::BackendKind::SecretService,
        &[service, account],
    )
    .unwrap()
}

/// A 12 kB JSON document (FAKE values).
fn big_json() -> String {
    let mut s = String::from("{\"type\":\"FAKE-service-account\",\"items\":[");
    let mut i = 0;
    while s.len() < 12 * 1024 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"id\":{i},\"note\":\"FAKE entry {i} \\u00e9\"}}"
        ));
        i += 1;
    }
    s.push_str("]}\n");
    s
}

/// The values that must round-trip byte for byte, by name.
fn values() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("trailing-newline", b"FAKE-token-with-newline\n".to_vec()),
        ("trailing-spaces", b"FAKE-token-with-spaces   ".to_vec()),
        (
            "pem-like",
            b"-----BEGIN FAKE TEST KEY-----\nFAKEMIIBVwIBADANBgkqhkiG9w0BAQEFAASC\nFAKEAT8wggE7AgEAAkEAq7BFUpkGp3+Lq\n-----END FAKE TEST KEY-----\n"
                .to_vec(),
        ),
        ("non-ascii", "FAKE-clé-秘密-🔑".as_bytes().to_vec()),
        ("json-12k", big_json().into_bytes()),
    ]
}

/// Stores an item the way libsecret clients do (generic schema, `text/plain`), straight over
/// D-Bus.
async fn store_over_dbus(k: &PrivateKeyring, service: &str, account: &str, value: &[u8]) {
    let conn = zbus::connection::Builder::address(k.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let ss = secret_service::SecretService::connect_with_existing(
        secret_service::EncryptionType::Dh,
        conn,
    )
    .await
    .unwrap();
    let collection = ss.get_default_collection().await.unwrap();
    let attrs = std::collections::HashMap::from([
        ("service", service),
        ("account", account),
        ("xdg:schema", "org.freedesktop.Secret.Generic"),
    ]);
    collection
        .create_item("outloop test", attrs, value, true, "text/plain")
        .await
        .unwrap();
}

#[tokio::test]
async fn the_secret_service_conforms() {
    let k = PrivateKeyring::start().await;
    let b = backend(&k);
    // One secret stored by secret-tool, one by Outloop.
    k.store("outloop-test", "by-secret-tool", b"FAKE-ss-conformance-1\n");
    let ours = r("outloop-test", "by-outloop");
    b.set(&ours, SecretValue::new(b"FAKE-ss-conformance-2  ".to_vec()))
        .await
        .unwrap();
    let fixture = Fixture::new(r("outloop-test", "missing"))
        .existing(
            r("outloop-test", "by-secret-tool"),
            SecretValue::new(b"FAKE-ss-conformance-1\n".to_vec()),
        )
        .existing(ours, SecretValue::new(b"FAKE-ss-conformance-2  ".to_vec()))
        .scratch(r("outloop-test", "scratch"));
    let report = conformance::run(&b, &fixture).await;
    assert!(report.checks >= 10, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    conformance::assert_no_value_in_debug(&b, &fixture);
}

#[tokio::test]
async fn values_round_trip_byte_for_byte_with_secret_tool_both_ways() {
    let k = PrivateKeyring::start().await;
    let b = backend(&k);
    for (name, value) in values() {
        // Outloop stores, secret-tool reads.
        let account = format!("out-{name}");
        b.set(&r("outloop-rt", &account), SecretValue::new(value.clone()))
            .await
            .unwrap();
        let (code, read) = k.lookup("outloop-rt", &account);
        assert_eq!(code, 0, "{name}: secret-tool lookup failed");
        assert!(
            read == value,
            "{name}: secret-tool read different bytes ({} vs {})",
            read.len(),
            value.len()
        );
        // Another client stores, Outloop reads. `secret-tool store` reads at most 8 KiB from
        // stdin (libsecret-tools 0.20.5 on Debian 12 cuts the 12 kB value at 8,192 bytes), so
        // larger values go in through the D-Bus API, as libsecret's own clients do.
        let account = format!("in-{name}");
        if value.len() < 8192 {
            k.store("outloop-rt", &account, &value);
        } else {
            store_over_dbus(&k, "outloop-rt", &account, &value).await;
        }
        let got = b.get(&r("outloop-rt", &account)).await.unwrap();
        assert!(
            got.expose_secret() == value.as_slice(),
            "{name}: Outloop read different bytes ({} vs {})",
            got.len(),
            value.len()
        );
        // Replacing a secret-tool item updates it in place: still one item, new value.
        b.set(
            &r("outloop-rt", &account),
            SecretValue::new(b"FAKE-replaced-value".to_vec()),
        )
        .await
        .unwrap();
        assert_eq!(k.lookup("outloop-rt", &account).1, b"FAKE-replaced-value");
    }
    let listed = b.list().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .filter(|r| r.segments()[0] == "outloop-rt")
            .count(),
        2 * values().len(),
        "one item per account, no duplicates: {listed:?}"
    );
    // Deleted by Outloop, gone for secret-tool (which exits 1 for a missing item).
    b.delete(&r("outloop-rt", "out-non-ascii")).await.unwrap();
    assert_eq!(k.lookup("outloop-rt", "out-non-ascii").0, 1);
}

#[tokio::test]
async fn a_locked_collection_is_a_quick_unlock_error_never_a_hang() {
    let k = PrivateKeyring::start().await;
    let b = backend(&k);
    let stored = r("outloop-lock", "token");
    b.set(&stored, SecretValue::new(b"FAKE-locked-away-1".to_vec()))
        .await
        .unwrap();
    // Lock the default collection over D-Bus, as a screen lock would.
    let conn = zbus::connection::Builder::address(k.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let ss = secret_service::SecretService::connect_with_existing(
        secret_service::EncryptionType::Dh,
        conn,
    )
    .await
    .unwrap();
    let collection = ss.get_default_collection().await.unwrap();
    collection.lock().await.unwrap();
    assert!(collection.is_locked().await.unwrap());

    let started = Instant::now();
    let e = b.get(&stored).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(e.message().contains("unlock your keyring"), "{e}");
    let e = b
        .set(&stored, SecretValue::new(b"FAKE-locked-away-2".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(e.message().contains("unlock your keyring"), "{e}");
    let e = b.delete(&stored).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    let h = b.health().await;
    assert!(!h.is_ok());
    assert_eq!(h.reachable.word(), "ok", "{h:?}");
    assert_eq!(h.authenticated.word(), "FAILED", "{h:?}");
    assert!(
        h.authenticated.text().contains("unlock your keyring"),
        "{h:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the unlock errors took {:?}",
        started.elapsed()
    );
    assert!(!format!("{e:?} {h:?}").contains("FAKE-locked"));
}

#[tokio::test]
async fn no_secret_service_is_a_clear_unavailable_error() {
    let bus = PrivateKeyring::bus_only().await;
    let b = backend(&bus);
    let started = Instant::now();
    let e = b.get(&r("outloop-none", "token")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("keyring daemon"), "{e}");
    let h = b.health().await;
    assert_eq!(h.reachable.word(), "FAILED", "{h:?}");
    // No bus at all.
    let gone = SecretServiceBackend::with_bus_address(
        "secret-service",
        &format!("unix:path={}/no-such-bus", bus.dir().display()),
    );
    let e = gone.get(&r("outloop-none", "token")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
