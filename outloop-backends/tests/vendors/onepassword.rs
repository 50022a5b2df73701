//! The 1Password backend against the fake `op` (`tests/fakes/op_fake.py`).

use std::time::Instant;

use outloop_core::backend::SecretBackend;
use outloop_core::{BackendKind, ErrorKind, SecretRef};
use serde_json::json;

use crate::fixtures::*;

#[tokio::test]
async fn reads_every_value_byte_for_byte_with_op_read_no_newline_argv_only_and_stdin_closed() {
    let f = onepassword();
    for (r, want) in &f.known {
        let got = f.backend.get(r).await.unwrap();
        assert_eq!(got.expose_secret(), want.as_slice(), "{r}");
    }
    let recs = op_records(&f);
    assert_eq!(recs.len(), f.known.len());
    assert_eq!(
        recs[0]["argv"],
        json!(["read", "--no-newline", "op://Private/Service/newline"])
    );
    for rec in &recs {
        assert_eq!(rec["stdin"], "/dev/null", "{rec}");
        // `op` is the test binary's own child: no shell in between.
        let parent = rec["parent"].as_str().unwrap();
        assert!(!["sh", "bash", "dash", "zsh"].contains(&parent), "{rec}");
        assert!(
            rec["op_env"].get("OP_SERVICE_ACCOUNT_TOKEN").is_none(),
            "{rec}"
        );
    }
    // A sectioned field and a query attribute pass through as written.
    let r = SecretRef::parse("op://Private/Service/API%20Keys/credential").unwrap();
    assert_eq!(
        f.backend.get(&r).await.unwrap().expose_secret(),
        b"FAKE-sectioned-value-0009"
    );
    assert_eq!(
        op_records(&f).last().unwrap()["argv"],
        json!([
            "read",
            "--no-newline",
            "op://Private/Service/API Keys/credential"
        ])
    );
}

#[tokio::test]
async fn a_service_account_token_goes_by_environment_never_argv_and_account_is_passed() {
    let f = onepassword_with(
        op_db(None, false),
        json!({"service_account_token": "vault://outloop/op", "account": "example.1password.com"}),
    );
    let (r, want) = &f.known[1];
    assert_eq!(
        f.backend.get(r).await.unwrap().expose_secret(),
        want.as_slice()
    );
    let rec = &op_records(&f)[0];
    assert_eq!(rec["op_env"]["OP_SERVICE_ACCOUNT_TOKEN"], OP_SA_TOKEN);
    let argv = rec["argv"].to_string();
    assert!(!argv.contains(OP_SA_TOKEN), "token in argv");
    assert_eq!(
        rec["argv"],
        json!([
            "--account",
            "example.1password.com",
            "read",
            "--no-newline",
            "op://Private/Service/spaces"
        ])
    );
    // The child's environment is an allow-list, not the test's whole environment.
    for name in rec["env_names"].as_array().unwrap() {
        let n = name.as_str().unwrap();
        assert!(
            ["PATH", "HOME", "USER", "LOGNAME", "TMPDIR"].contains(&n)
                || n.starts_with("XDG_")
                || n.starts_with("OP_")
                || n == "LC_CTYPE", // set by some Python builds at start-up
            "unexpected variable {n} in op's environment"
        );
    }
    assert_eq!(
        f.backend.own_secrets()[0].expose_secret(),
        OP_SA_TOKEN.as_bytes()
    );
    assert_no_leak(&format!("{:?}", f.backend), &[OP_SA_TOKEN]);
}

#[tokio::test]
async fn names_with_spaces_dots_slashes_and_ampersands_are_read_by_id() {
    let f = onepassword();
    let r = SecretRef::from_parts(
        BackendKind::OnePassword,
        &["R&D / Ops", "db.prod & cache/primary", "pass word/& co."],
    )
    .unwrap();
    // The trailing space is part of the value.
    assert_eq!(
        f.backend.get(&r).await.unwrap().expose_secret(),
        b"FAKE-odd-names-value-0010 "
    );
    let recs = op_records(&f);
    assert_eq!(
        recs[0]["argv"],
        json!([
            "item",
            "get",
            "--vault=R&D / Ops",
            "--format=json",
            "--",
            "db.prod & cache/primary"
        ])
    );
    assert_eq!(
        recs[1]["argv"],
        json!([
            "read",
            "--no-newline",
            "op://vlt0000000000000000000000b/itm0000000000000000000000b/fld0000000000000000000000b"
        ])
    );
    assert_eq!(recs[0]["stdin"], "/dev/null");

    let otp = SecretRef::parse(
        "op://R%26D%20%2F%20Ops/db.prod%20%26%20cache%2Fprimary/one-time%20password?attribute=otp",
    )
    .unwrap();
    assert_eq!(
        f.backend.get(&otp).await.unwrap().expose_secret(),
        b"123456"
    );
    assert_eq!(
        op_records(&f).last().unwrap()["argv"][2],
        "op://vlt0000000000000000000000b/itm0000000000000000000000b/fld0000000000000000000000c?attribute=otp"
    );
}

#[tokio::test]
async fn ops_errors_map_to_kinds_without_its_stderr() {
    let f = onepassword();
    let s: Vec<&str> = f.secrets.iter().map(String::as_str).collect();
    let cases = [
        ("op://Private/Nope/credential", ErrorKind::NotFound),
        ("op://Private/Service/nope", ErrorKind::NotFound),
        ("op://Nope/Service/nope", ErrorKind::NotFound),
        ("op://R%26D/x/y", ErrorKind::NotFound),
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
    let e = f
        .backend
        .get(&SecretRef::parse("op://Private/Service/newline?attribute=x%20y").unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidReference, "{e}");

    let (r, _) = &f.known[0];
    let not_signed_in = onepassword_with(op_db(None, false), json!({}));
    let e = not_signed_in.backend.get(r).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(e.message().contains("not signed in"), "{e}");
    assert_clean_error(&e, &s);

    let throttled = onepassword_with(op_db(Some("throttle"), true), json!({}));
    let e = throttled.backend.get(r).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::RateLimited { retry_after: None },
        "{e}"
    );
    assert_clean_error(&e, &s);

    for (token, what) in [
        (
            "ops_eyJFAKEwrongserviceaccounttoken00000000000000000000000000000011",
            "401",
        ),
        ("FAKE-not-an-ops-token-000000000012", "malformed"),
    ] {
        let bad = onepassword_with(
            op_db(None, false),
            json!({"service_account_token": "vault://outloop/op"}),
        );
        bad.creds
            .insert(
                &SecretRef::parse("vault://outloop/op").unwrap(),
                outloop_core::SecretValue::from_string(token.to_owned()),
            )
            .unwrap();
        let e = bad.backend.get(r).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{what}: {e}");
        assert_clean_error(&e, &[token]);
    }
}

#[tokio::test]
async fn a_hung_op_times_out_and_is_killed() {
    let f = onepassword_with(op_db(Some("hang"), true), json!({"timeout_secs": 1}));
    let started = Instant::now();
    let e = f.backend.get(&f.known[0].0).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        started.elapsed().as_secs() < 15,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_missing_op_binary_is_unavailable() {
    let f = onepassword_with(
        op_db(None, true),
        json!({"op_path": "/nonexistent/FAKE/op"}),
    );
    let e = f.backend.get(&f.known[0].0).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("op_path"), "{e}");
}
