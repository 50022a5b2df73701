//! The Doppler backend against `tests/fakes/doppler_fake.py`.

use std::time::Duration;

use outloop_core::backend::SecretBackend;
use outloop_core::{ErrorKind, SecretRef};
use serde_json::json;

use crate::fixtures::*;

fn secrets(f: &Fixture<outloop_backends::doppler::DopplerBackend>) -> Vec<&str> {
    f.secrets.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn a_service_token_reads_every_value_byte_for_byte_without_naming_its_scope() {
    let f = doppler();
    for (r, want) in &f.known {
        let got = f.backend.get(r).await.unwrap();
        assert_eq!(got.expose_secret(), want.as_slice(), "{r}");
    }
    // The service token implies project and config; as Doppler's CLI, none are sent.
    let stats = f.server.as_ref().unwrap().stats().await;
    let q = &stats["last_query"];
    assert!(
        q.get("project").is_none() && q.get("config").is_none(),
        "{stats}"
    );
    assert_eq!(q["name"], "JSON", "{stats}");
    let own: Vec<Vec<u8>> = f
        .backend
        .own_secrets()
        .iter()
        .map(|s| s.expose_secret().to_vec())
        .collect();
    assert_eq!(own, vec![DP_SERVICE.as_bytes().to_vec()]);
    assert_no_leak(&format!("{:?}", f.backend), &secrets(&f));
}

#[tokio::test]
async fn a_personal_token_names_project_and_config_and_picks_raw_or_computed() {
    let f = doppler_with(DP_PERSONAL, json!({}));
    let r = SecretRef::parse("doppler://web/dev/DB_URL").unwrap();
    assert_eq!(
        f.backend.get(&r).await.unwrap().expose_secret(),
        b"postgres://FAKE-user-0006@db"
    );
    let stats = f.server.as_ref().unwrap().stats().await;
    assert_eq!(stats["last_query"]["project"], "web", "{stats}");
    assert_eq!(stats["last_query"]["config"], "dev", "{stats}");
    let prd = SecretRef::parse("doppler://web/prd/PRD_ONLY").unwrap();
    assert_eq!(
        f.backend.get(&prd).await.unwrap().expose_secret(),
        b"FAKE-prd-value-0007"
    );

    let raw = doppler_with(DP_PERSONAL, json!({"value": "raw"}));
    assert_eq!(
        raw.backend.get(&r).await.unwrap().expose_secret(),
        b"postgres://${USER_FAKE}@db"
    );
}

#[tokio::test]
async fn errors_map_to_kinds_without_vendor_text() {
    let f = doppler_with(DP_PERSONAL, json!({}));
    let s = secrets(&f);
    let cases = [
        ("doppler://web/dev/NOPE", ErrorKind::NotFound),
        ("doppler://nope/dev/X", ErrorKind::NotFound),
        (
            "doppler://secret-project/main/X_FAKE",
            ErrorKind::PermissionDenied,
        ),
        ("doppler://web/dev/LOCKED", ErrorKind::PermissionDenied),
        ("doppler://web/dev/lower_case", ErrorKind::InvalidReference),
        ("doppler://web/dev/9LIVES", ErrorKind::InvalidReference),
    ];
    for (raw, kind) in cases {
        let e = f
            .backend
            .get(&SecretRef::parse(raw).unwrap())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{raw}: {e}");
        assert_clean_error(&e, &s);
    }

    f.server
        .as_ref()
        .unwrap()
        .control("/__fake/ratelimit?n=1&after=7")
        .await;
    let (r, want) = &f.known[0];
    let e = f.backend.get(r).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        },
        "{e}"
    );
    assert_clean_error(&e, &s);
    assert_eq!(
        f.backend.get(r).await.unwrap().expose_secret(),
        want.as_slice()
    );

    let bad = "dp.pt.FAKEunknowntoken00000000000000000000000000000009";
    let f = doppler_with(bad, json!({}));
    let e = f.backend.get(r).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert_clean_error(&e, &[bad]);
}

#[tokio::test]
async fn a_service_token_for_another_config_is_refused() {
    // A service token names no scope in its requests, so the backend, configured for the
    // token's project and config, refuses references to any other before sending anything.
    let f = doppler_with(DP_SERVICE, json!({"project": "web", "config": "dev"}));
    let other = SecretRef::parse("doppler://web/prd/PRD_ONLY").unwrap();
    let before = f.server.as_ref().unwrap().stats().await["requests"].clone();
    let e = f.backend.get(&other).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidReference, "{e}");
    // Refused before any request.
    assert_eq!(f.server.as_ref().unwrap().stats().await["requests"], before);
}

#[tokio::test]
async fn lists_names_and_skips_dopplers_own_metadata_keys() {
    let f = doppler_with(DP_PERSONAL, json!({"project": "web", "config": "dev"}));
    assert!(f.backend.capabilities().list);
    let listed: Vec<String> = f
        .backend
        .list()
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut want: Vec<String> = [
        "DB_URL", "JSON", "LOCKED", "NEWLINE", "PEM", "SPACES", "UNICODE",
    ]
    .iter()
    .map(|n| format!("doppler://web/dev/{n}"))
    .collect();
    want.sort();
    assert_eq!(listed, want);
    assert!(!listed.iter().any(|r| r.contains("DOPPLER_")));
    let unscoped = doppler_with(DP_PERSONAL, json!({}));
    assert!(!unscoped.backend.capabilities().list);
    assert_eq!(
        unscoped.backend.list().await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}

#[tokio::test]
async fn a_service_token_without_its_project_and_config_configured_is_refused() {
    // Otherwise `doppler://other/prd/X` would silently read the token's own web/dev.
    let f = doppler_with(DP_SERVICE, json!({}));
    let e = f.backend.get(&f.known[0].0).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("`project` and `config`"), "{e}");
    assert_clean_error(&e, &secrets(&f));
    assert_eq!(f.server.as_ref().unwrap().stats().await["requests"], 0);
}
