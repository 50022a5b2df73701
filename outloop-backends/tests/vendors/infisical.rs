//! The Infisical backend against `tests/fakes/infisical_fake.py`.

use std::time::Duration;

use outloop_core::backend::SecretBackend;
use outloop_core::{ErrorKind, SecretRef};
use serde_json::json;

use crate::fixtures::*;

fn secrets(f: &Fixture<outloop_backends::infisical::InfisicalBackend>) -> Vec<&str> {
    f.secrets.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn reads_every_value_byte_for_byte_with_one_login_and_reports_its_tokens() {
    let f = infisical();
    for (r, want) in &f.known {
        let got = f.backend.get(r).await.unwrap();
        assert_eq!(got.expose_secret(), want.as_slice(), "{r}");
    }
    let root = SecretRef::parse(&format!("infisical://{INF_PROJECT}/prod/ROOT_TOKEN")).unwrap();
    assert_eq!(
        f.backend.get(&root).await.unwrap().expose_secret(),
        b"FAKE-root-path-value-0005"
    );
    let stats = f.server.as_ref().unwrap().stats().await;
    assert_eq!(stats["logins"], 1, "{stats}");
    assert_eq!(stats["v3"], 0, "{stats}");
    assert_eq!(stats["v4"], f.known.len() + 1, "{stats}");
    // The client secret and the access token are registered for redaction.
    let own: Vec<Vec<u8>> = f
        .backend
        .own_secrets()
        .iter()
        .map(|s| s.expose_secret().to_vec())
        .collect();
    assert!(own.iter().any(|s| s == INF_CLIENT_SECRET.as_bytes()));
    assert!(
        own.iter()
            .any(|s| s.starts_with(b"ey") && s.windows(7).any(|w| w == b"FAKEsig"))
    );
    let dbg = format!("{:?}", f.backend);
    assert_no_leak(&dbg, &secrets(&f));
    for s in &own {
        assert!(!dbg.contains(&*String::from_utf8_lossy(s)));
    }
}

#[tokio::test]
async fn an_old_server_without_v4_is_read_through_v3_and_remembered() {
    let f = infisical_with(&["--no-v4"], INF_CLIENT_SECRET, json!({}));
    let (r, want) = &f.known[0];
    assert_eq!(
        f.backend.get(r).await.unwrap().expose_secret(),
        want.as_slice()
    );
    let (r2, want2) = &f.known[1];
    assert_eq!(
        f.backend.get(r2).await.unwrap().expose_secret(),
        want2.as_slice()
    );
    let e = f.backend.get(&f.missing).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let stats = f.server.as_ref().unwrap().stats().await;
    assert_eq!(stats["v3"], 3, "{stats}");
}

#[tokio::test]
async fn an_expired_token_403_tokenerror_logs_in_again_and_retries_once() {
    let f = infisical();
    let server = f.server.as_ref().unwrap();
    let (r, want) = &f.known[0];
    f.backend.get(r).await.unwrap();
    server.control("/__fake/expire").await;
    assert_eq!(
        f.backend.get(r).await.unwrap().expose_secret(),
        want.as_slice()
    );
    let stats = server.stats().await;
    assert_eq!(stats["token_errors"], 1, "{stats}");
    assert_eq!(stats["logins"], 2, "{stats}");
}

#[tokio::test]
async fn a_token_near_its_expiry_is_replaced_by_a_login_before_use() {
    // expiresIn 30 s is inside the 60 s margin, so every read logs in first and the server
    // never sees a stale token.
    let f = infisical_with(&["--token-ttl", "30"], INF_CLIENT_SECRET, json!({}));
    let (r, _) = &f.known[0];
    f.backend.get(r).await.unwrap();
    f.backend.get(r).await.unwrap();
    let stats = f.server.as_ref().unwrap().stats().await;
    assert_eq!(stats["logins"], 2, "{stats}");
    assert_eq!(stats["token_errors"], 0, "{stats}");
}

#[tokio::test]
async fn a_hidden_value_is_permission_denied_never_the_placeholder() {
    let f = infisical();
    let r = SecretRef::parse(&format!("infisical://{INF_PROJECT}/dev/app/db/HIDDEN")).unwrap();
    let e = f.backend.get(&r).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.message().contains("hides"), "{e}");
    assert_clean_error(&e, &secrets(&f));
    assert!(!e.to_string().contains("hidden-by-infisical"));
}

#[tokio::test]
async fn errors_map_to_kinds_without_vendor_text() {
    let f = infisical();
    let s = secrets(&f);
    let e = f.backend.get(&f.missing).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_clean_error(&e, &s);

    let denied = SecretRef::parse("infisical://p-FAKE-denied/dev/X").unwrap();
    let e = f.backend.get(&denied).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert_clean_error(&e, &s);

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
    // The limit has passed: the next read works, with no second login.
    assert_eq!(
        f.backend.get(r).await.unwrap().expose_secret(),
        want.as_slice()
    );

    let other = SecretRef::parse("doppler://web/dev/X").unwrap();
    assert_eq!(
        f.backend.get(&other).await.unwrap_err().kind(),
        ErrorKind::InvalidReference
    );
}

#[tokio::test]
async fn a_refused_login_is_not_retried_so_the_identity_is_not_locked() {
    let wrong = "FAKE0000wrong0client0secret000000000000000000000000000000000000";
    let f = infisical_with(&[], wrong, json!({}));
    let mut s = secrets(&f);
    s.push(wrong);
    for (r, _) in f.known.iter().take(3) {
        let e = f.backend.get(r).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
        assert_clean_error(&e, &s);
    }
    let stats = f.server.as_ref().unwrap().stats().await;
    assert_eq!(stats["logins"], 1, "{stats}");
    assert_eq!(stats["failed_logins"], 1, "{stats}");
}

#[tokio::test]
async fn lists_names_at_the_configured_scope() {
    let f = infisical_with(
        &[],
        INF_CLIENT_SECRET,
        json!({"project_id": INF_PROJECT, "environment": "dev", "secret_path": "/app/db"}),
    );
    assert!(f.backend.capabilities().list);
    let listed = f.backend.list().await.unwrap();
    let mut want: Vec<SecretRef> = f.known.iter().map(|(r, _)| r.clone()).collect();
    want.push(SecretRef::parse(&format!("infisical://{INF_PROJECT}/dev/app/db/HIDDEN")).unwrap());
    want.sort();
    assert_eq!(listed, want);
    assert!(!infisical().backend.capabilities().list);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let f = infisical();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let creds = f.creds.clone();
    let registry = outloop_backends::credential::Registry::with(&[
        creds.clone() as std::sync::Arc<dyn SecretBackend>
    ]);
    let settings: std::collections::BTreeMap<String, toml::Value> = [
        (
            "url".to_owned(),
            toml::Value::String(format!("http://127.0.0.1:{port}")),
        ),
        (
            "client_id".to_owned(),
            toml::Value::String(INF_CLIENT_ID.into()),
        ),
        (
            "client_secret".to_owned(),
            toml::Value::String("vault://outloop/infisical".into()),
        ),
    ]
    .into();
    let b = outloop_backends::infisical::InfisicalBackend::from_settings(
        "infisical",
        &settings,
        &registry,
    )
    .unwrap();
    let e = b.get(&f.known[0].0).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_clean_error(&e, &secrets(&f));
}

#[tokio::test]
async fn a_server_that_accepts_but_never_answers_times_out() {
    // A listener that accepts connections and holds them open without a byte of answer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let creds = cred_store("vault://outloop/infisical", INF_CLIENT_SECRET);
    let registry = outloop_backends::credential::Registry::with(&[
        creds.clone() as std::sync::Arc<dyn SecretBackend>
    ]);
    let settings: std::collections::BTreeMap<String, toml::Value> = [
        (
            "url".to_owned(),
            toml::Value::String(format!("http://127.0.0.1:{port}")),
        ),
        (
            "client_id".to_owned(),
            toml::Value::String(INF_CLIENT_ID.into()),
        ),
        (
            "client_secret".to_owned(),
            toml::Value::String("vault://outloop/infisical".into()),
        ),
        ("timeout_secs".to_owned(), toml::Value::Integer(1)),
    ]
    .into();
    let b = outloop_backends::infisical::InfisicalBackend::from_settings(
        "infisical",
        &settings,
        &registry,
    )
    .unwrap();
    let r = SecretRef::parse(&format!("infisical://{INF_PROJECT}/dev/X")).unwrap();
    let e = b.get(&r).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_clean_error(&e, &[INF_CLIENT_SECRET]);
}
