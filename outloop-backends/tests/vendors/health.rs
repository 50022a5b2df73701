//! `health()` of the 1Password, Infisical and Doppler backends against their fakes: what
//! `outloop doctor` shows. No probe may read a value or show a token.

use outloop_core::backend::{Health, Probe, SecretBackend};
use serde_json::json;

use crate::fixtures::*;

/// Asserts that none of `secrets` (and no known value) appears in any probe's text or in
/// the JSON doctor prints.
fn assert_clean(h: &Health, secrets: &[String]) {
    let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let json = serde_json::to_string(h).expect("health JSON");
    assert_no_leak(&json, &s);
    assert_no_leak(&format!("{h:?}"), &s);
    for p in [&h.installed, &h.reachable, &h.authenticated] {
        assert!(!p.text().contains('\n'), "multi-line probe: {p:?}");
    }
}

fn all_ok(h: &Health) -> bool {
    [&h.installed, &h.reachable, &h.authenticated]
        .iter()
        .all(|p| matches!(p, Probe::Ok { .. }))
}

fn failed_kind(p: &Probe) -> &str {
    match p {
        Probe::Failed { kind, .. } => kind,
        other => panic!("expected a failed probe, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------- 1Password

#[tokio::test]
async fn onepassword_signed_in_desktop_and_service_account_are_healthy_without_a_read() {
    let f = onepassword();
    let h = f.backend.health().await;
    assert!(all_ok(&h), "{h:?}");
    assert!(h.installed.text().contains("2.30.0"), "{h:?}");
    assert_clean(&h, &f.secrets);
    let argvs: Vec<serde_json::Value> = op_records(&f).iter().map(|r| r["argv"].clone()).collect();
    assert_eq!(
        argvs,
        vec![json!(["--version"]), json!(["whoami", "--format=json"])]
    );

    let f = onepassword_with(
        op_db(None, false),
        json!({"service_account_token": "vault://outloop/op", "account": "FAKE-acct"}),
    );
    let h = f.backend.health().await;
    assert!(all_ok(&h), "{h:?}");
    assert_clean(&h, &f.secrets);
    let recs = op_records(&f);
    assert_eq!(recs.len(), 2, "{recs:?}");
    // `--version` gets neither the token nor `--account`; `whoami` gets the token by
    // environment only.
    assert_eq!(recs[0]["argv"], json!(["--version"]));
    assert!(recs[0]["op_env"].get("OP_SERVICE_ACCOUNT_TOKEN").is_none());
    assert_eq!(
        recs[1]["argv"],
        json!(["--account", "FAKE-acct", "whoami", "--format=json"])
    );
    assert_eq!(recs[1]["op_env"]["OP_SERVICE_ACCOUNT_TOKEN"], OP_SA_TOKEN);
    assert_eq!(recs[1]["stdin"], "/dev/null");
    for r in &recs {
        assert!(!r["argv"].to_string().contains(OP_SA_TOKEN));
    }
}

#[tokio::test]
async fn onepassword_missing_op_binary_fails_installed() {
    let f = onepassword_with(
        op_db(None, true),
        json!({"op_path": "/nonexistent/FAKE/bin/op"}),
    );
    let h = f.backend.health().await;
    assert_eq!(failed_kind(&h.installed), "unavailable", "{h:?}");
    assert!(
        h.installed.text().contains("/nonexistent/FAKE/bin/op"),
        "{h:?}"
    );
    assert!(!h.is_ok());
    assert_eq!(h.reachable.word(), "skipped");
    assert_eq!(h.authenticated.word(), "skipped");
    assert_clean(&h, &f.secrets);

    // A file that exists but is not executable fails the same way.
    let dir = f.dir.as_ref().unwrap().path();
    let plain = dir.join("not-executable-op");
    std::fs::write(&plain, "#!/bin/sh\necho 2.30.0\n").unwrap();
    let f2 = onepassword_with(
        op_db(None, true),
        json!({"op_path": plain.display().to_string()}),
    );
    let h = f2.backend.health().await;
    assert_eq!(failed_kind(&h.installed), "unavailable", "{h:?}");
}

#[tokio::test]
async fn onepassword_not_signed_in_fails_authenticated() {
    let f = onepassword_with(op_db(None, false), json!({}));
    let h = f.backend.health().await;
    assert_eq!(h.installed.word(), "ok", "{h:?}");
    assert_eq!(failed_kind(&h.authenticated), "unauthenticated", "{h:?}");
    assert!(h.authenticated.text().contains("not signed in"), "{h:?}");
    assert!(!h.authenticated.text().contains("[ERROR]"), "{h:?}");
    assert!(!h.is_ok());
    assert_clean(&h, &f.secrets);

    // A service-account token 1Password refuses fails authenticated too.
    let f = onepassword_with(
        op_db(None, false),
        json!({"service_account_token": "vault://outloop/op"}),
    );
    f.creds
        .insert(
            &outloop_core::SecretRef::parse("vault://outloop/op").unwrap(),
            outloop_core::SecretValue::from_string(
                "ops_FAKEwrongtoken00000000000000000000000".into(),
            ),
        )
        .unwrap();
    let h = f.backend.health().await;
    assert_eq!(failed_kind(&h.authenticated), "unauthenticated", "{h:?}");
    let mut s = f.secrets.clone();
    s.push("ops_FAKEwrongtoken00000000000000000000000".into());
    assert_clean(&h, &s);
}

// ---------------------------------------------------------------------------------- Infisical

#[tokio::test]
async fn infisical_healthy_logs_in_once_and_reuses_the_token() {
    let f = infisical();
    let h = f.backend.health().await;
    assert!(all_ok(&h), "{h:?}");
    assert_clean(&h, &f.secrets);
    let h2 = f.backend.health().await;
    assert!(all_ok(&h2), "{h2:?}");
    let stats = f.server.as_ref().unwrap().stats().await;
    assert_eq!(stats["logins"], 1, "{stats}");
    assert_eq!(stats["v4"], 0, "no secret was read: {stats}");
    assert_eq!(stats["v3"], 0, "no secret was read: {stats}");
}

#[tokio::test]
async fn infisical_bad_client_secret_fails_authenticated_and_is_not_retried() {
    let wrong = "FAKE1111wrong1client1secret111111111111111111111111111111111111";
    let f = infisical_with(&[], wrong, json!({}));
    let mut s = f.secrets.clone();
    s.push(wrong.into());
    let h = f.backend.health().await;
    assert_eq!(h.reachable.word(), "ok", "{h:?}");
    assert_eq!(failed_kind(&h.authenticated), "unauthenticated", "{h:?}");
    assert_clean(&h, &s);
    let again = f.backend.health().await;
    assert_eq!(
        failed_kind(&again.authenticated),
        "unauthenticated",
        "{again:?}"
    );
    assert!(
        again.authenticated.text().contains("not logging in again"),
        "{again:?}"
    );
    assert_clean(&again, &s);
    let stats = f.server.as_ref().unwrap().stats().await;
    assert_eq!(stats["logins"], 1, "the lockout guard held: {stats}");
    assert_eq!(stats["failed_logins"], 1, "{stats}");
}

#[tokio::test]
async fn infisical_unreachable_server_fails_reachable() {
    let f = infisical_with(
        &[],
        INF_CLIENT_SECRET,
        json!({"url": "http://127.0.0.1:9/api"}),
    );
    let h = f.backend.health().await;
    assert_eq!(h.installed.word(), "ok");
    assert!(h.reachable.is_failed(), "{h:?}");
    assert_eq!(h.authenticated.word(), "skipped", "{h:?}");
}

// ------------------------------------------------------------------------------------ Doppler

#[tokio::test]
async fn doppler_service_and_personal_tokens_are_healthy() {
    for f in [doppler(), doppler_with(DP_PERSONAL, json!({}))] {
        let h = f.backend.health().await;
        assert!(all_ok(&h), "{h:?}");
        assert_clean(&h, &f.secrets);
        let stats = f.server.as_ref().unwrap().stats().await;
        assert_eq!(stats["requests"], 1, "one GET /v3/me: {stats}");
    }
}

#[tokio::test]
async fn doppler_bad_token_fails_authenticated() {
    let bad = "dp.st.dev.FAKEbad00000000000000000000000000000000000009";
    let f = doppler_with(bad, json!({"project": "web", "config": "dev"}));
    let h = f.backend.health().await;
    assert_eq!(h.reachable.word(), "ok", "{h:?}");
    assert_eq!(failed_kind(&h.authenticated), "unauthenticated", "{h:?}");
    assert!(h.authenticated.text().contains("401"), "{h:?}");
    let mut s = f.secrets.clone();
    s.push(bad.into());
    assert_clean(&h, &s);
}

#[tokio::test]
async fn doppler_token_reference_to_nothing_fails_authenticated() {
    let f = doppler();
    f.creds
        .delete(&outloop_core::SecretRef::parse("vault://outloop/doppler").unwrap())
        .await
        .unwrap();
    let h = f.backend.health().await;
    assert!(h.authenticated.is_failed(), "{h:?}");
    assert_eq!(h.reachable.word(), "skipped", "{h:?}");
    assert_clean(&h, &f.secrets);
    let stats = f.server.as_ref().unwrap().stats().await;
    assert_eq!(stats["requests"], 0, "{stats}");
}
