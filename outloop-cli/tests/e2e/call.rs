//! Actions against the real httpbin: every way a credential comes back is redacted.

use super::actions;
use crate::support::{ACME_ECHO, Env, Recorder};

fn env() -> (Env, Recorder) {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));
    (env, rec)
}

#[test]
fn bearer_token_echoed_by_httpbin_is_redacted() {
    let (env, _rec) = env();
    let r = env.run(&["call", "echo.bearer", "--json"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["action"], "echo.bearer");
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["status"], 200);
    let body: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["authenticated"], true, "httpbin got the real token");
    assert_eq!(body["token"], "[REDACTED:echo]");
    assert_eq!(v["redactions"], 1);
    assert!(
        v["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("application/json")
    );
    env.assert_no_leak();
}

#[test]
fn human_output_shows_status_and_redacted_body() {
    let (env, _rec) = env();
    let r = env.run(&["call", "echo.bearer"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("200 OK · tenant acme · 1 redaction"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("\"token\": \"[REDACTED:echo]\""),
        "{}",
        r.stdout
    );
    env.assert_no_leak();
}

#[test]
fn named_header_and_basic_auth_echoes_are_redacted() {
    let (env, _rec) = env();
    let r = env.run(&["call", "echo.headers", "--json"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let body: serde_json::Value = serde_json::from_str(r.json()["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["headers"]["X-Api-Key"], "Key [REDACTED:key]");

    let r = env.run(&["call", "echo.basic", "--json"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    let body: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    let auth = body["headers"]["Authorization"].as_str().unwrap();
    assert!(auth.starts_with("Basic "), "{auth}");
    // The base64 form is masked in the base64 alphabet, so the header stays decodable.
    assert!(
        auth.contains("REDACTED") && !auth.contains('['),
        "base64 of user:secret masked: {auth}"
    );
    assert!(v["redactions"].as_u64().unwrap() >= 1);
    env.assert_no_leak();
}

#[test]
fn basic_auth_is_accepted_by_httpbin() {
    // httpbin's /basic-auth/<user>/<password> answers 200 only when basic auth carries exactly
    // that user and password; the expected password lives only in the host config.
    const PASSWORD: &str = "FAKE-basic-password-91x";
    let rec = Recorder::start();
    let action = format!(
        r#"
[actions."echo.basic-auth"]
credential = "basic"
method = "GET"
url = "{}/basic-auth/outloop/{PASSWORD}"
auth = {{ type = "basic", username = "outloop" }}
"#,
        crate::support::httpbin()
    );
    let mut env = Env::new(&format!("{}{action}", actions(&rec.url)));
    env.secrets.push(PASSWORD.into());
    env.set_secret("vault://acme/basic", PASSWORD, Some(("acme", "basic")));
    let r = env.run(&["call", "echo.basic-auth", "--json"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(
        v["body"],
        "{\n  \"authenticated\": true,\n  \"user\": \"outloop\"\n}\n"
    );
    // The wrong tenant's workspace has no such credential.
    let r = env.run(&["call", "echo.basic-auth"], &env.globex);
    assert_eq!(r.code, 3, "{}", r.stderr);
    env.assert_no_leak();
}

#[test]
fn query_credential_is_redacted_in_args_and_url() {
    let (env, _rec) = env();
    let r = env.run(
        &["call", "echo.query", "-p", "q=hello", "--json"],
        &env.acme,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let body: serde_json::Value = serde_json::from_str(r.json()["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["args"]["api_key"], "[REDACTED:key]");
    assert_eq!(body["args"]["q"], "hello");
    let url = body["url"].as_str().unwrap();
    assert!(url.contains("api_key=[REDACTED:key]"), "{url}");
    env.assert_no_leak();
}

#[test]
fn redirect_to_another_origin_is_not_followed_with_the_credential() {
    let (env, rec) = env();
    let target = format!("{}/landing", rec.url);
    let r = env.run(
        &[
            "call",
            "echo.redirect",
            "-p",
            &format!("to={target}"),
            "--json",
        ],
        &env.acme,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["status"], 302);
    assert_eq!(v["headers"]["location"], target.as_str());
    assert!(
        rec.requests().is_empty(),
        "the other origin received a request"
    );

    // A same-origin redirect is followed, with the credential.
    let r = env.run(
        &["call", "echo.redirect", "-p", "to=/bearer", "--json"],
        &env.acme,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["status"], 200);
    let body: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["authenticated"], true);
    assert_eq!(body["token"], "[REDACTED:echo]");
    env.assert_no_leak();
}

#[test]
fn compressed_bodies_are_decoded_then_redacted() {
    let (env, _rec) = env();
    for (action, flag) in [
        ("echo.gzip", "gzipped"),
        ("echo.deflate", "deflated"),
        ("echo.brotli", "brotli"),
    ] {
        let r = env.run(&["call", action, "--json"], &env.acme);
        assert_eq!(r.code, 0, "{action}: {}", r.stderr);
        let v = r.json();
        assert!(
            v["headers"].get("content-encoding").is_none(),
            "{action}: {v}"
        );
        let body: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{action}: body not decoded JSON ({e})"));
        assert_eq!(body[flag], true, "{action}");
        assert_eq!(
            body["headers"]["Authorization"], "Bearer [REDACTED:echo]",
            "{action}"
        );
    }
    env.assert_no_leak();
}

#[test]
fn chunked_stream_redacts_every_line() {
    let (env, _rec) = env();
    let r = env.run(&["call", "echo.stream", "-p", "n=40", "--json"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    let body = v["body"].as_str().unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 40);
    for line in lines {
        let l: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(l["headers"]["Authorization"], "Bearer [REDACTED:echo]");
    }
    assert_eq!(v["redactions"], 40);
    env.assert_no_leak();
}

#[test]
fn large_and_chunked_bodies_arrive_whole() {
    let (env, _rec) = env();
    let r = env.run(
        &["call", "echo.range", "-p", "n=102400", "--json"],
        &env.acme,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let body = r.json()["body"].as_str().unwrap().to_owned();
    assert_eq!(body.len(), 102400);
    let expected: String = (0..102400)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    assert_eq!(body, expected);

    let r = env.run(
        &[
            "call",
            "echo.stream-bytes",
            "-p",
            "n=102400",
            "-p",
            "chunk=1000",
        ],
        &env.acme,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.starts_with("200 OK"), "{}", r.stderr);
    env.assert_no_leak();
}

#[test]
fn oversized_response_fails_closed() {
    let (env, _rec) = env();
    let r = env.run(&["call", "echo.big", "-p", "n=5000", "--json"], &env.acme);
    assert_eq!(r.code, 5, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1000-byte cap"), "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["error"]["kind"], "safety_refused");
    assert!(v.get("body").is_none());
    // Under the cap it works.
    let r = env.run(&["call", "echo.big", "-p", "n=999"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    env.assert_no_leak();
}

#[test]
fn json_body_fields_are_filled_from_typed_parameters() {
    let (env, rec) = env();
    let r = env.run(
        &["call", "rec.create", "-p", "name=beta", "-p", "count=3"],
        &env.acme,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let reqs = rec.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert!(req.starts_with("POST /v1/items HTTP/1.1\r\n"), "{req}");
    let body = req.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({ "name": "beta", "count": 3 }),
        "absent optional omitted, integer typed"
    );
    assert!(req.to_ascii_lowercase().contains(&format!(
        "authorization: bearer {}",
        ACME_ECHO.to_ascii_lowercase()
    )));
    env.assert_no_leak();
}

#[test]
fn actions_lists_what_the_workspace_may_use() {
    let (env, _rec) = env();
    let r = env.run(&["actions", "--json"], &env.globex);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["tenant"], "globex");
    let names: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo.bearer", "rec.create", "rec.get"]);
    let rec_get = &v["actions"][2];
    assert_eq!(rec_get["params"]["required"], serde_json::json!(["id"]));
    let r = env.run(&["actions"], &env.acme);
    assert!(r.stdout.contains("echo.bearer"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("echo.status"),
        "denied actions are not listed: {}",
        r.stdout
    );
    let r = env.run(&["secret", "list"], &env.root);
    assert_eq!(
        r.stdout,
        "vault://acme/echo\nvault://acme/key\nvault://globex/echo\n"
    );
    env.assert_no_leak();
}
