//! Policy from the command line: approvals decided by a human outside the workspace, rate
//! limits that survive a restart (every CLI run is a new broker), `policy test` tables.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::actions;
use crate::support::{Env, Recorder};

const HELD: &str = r#"
[actions."rec.send"]
description = "a write that needs a human"
credential = "echo"
method = "POST"
url = "REC/v1/send"
body = { to = "{to}" }
auth = { type = "bearer" }
params.to = { type = "string", pattern = "^[a-z]+@example\\.com$" }
"#;

fn env_with(policy_extra: &str) -> (Env, Recorder) {
    let rec = Recorder::start();
    let config = format!("{}{}", actions(&rec.url), HELD.replace("REC", &rec.url)).replace(
        "deny = [\"echo.status\"]",
        &format!("deny = [\"echo.status\"]\n{policy_extra}"),
    );
    (Env::new(&config), rec)
}

/// Starts `outloop <args>` in the acme workspace and returns it once it says it is held,
/// with the approval id it printed (reading its stderr line, not sleeping).
fn call_until_held(env: &Env, args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outloop"))
        .args(args)
        .current_dir(&env.acme)
        .env("OUTLOOP_HOME", &env.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let id = line
        .split("held for a human's approval as ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no hold line: {line}"))
        .to_owned();
    (child, id)
}

#[test]
fn a_held_request_runs_once_a_human_approves_it_from_outside_the_workspace() {
    let (env, rec) = env_with("approve = [\"rec.send\"]");
    let (child, id) = call_until_held(
        &env,
        &["call", "rec.send", "-p", "to=ada@example.com", "--json"],
    );
    assert!(rec.requests().is_empty(), "sent before approval");

    let list = env.run(&["approvals", "--json"], &env.root);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let v = list.json();
    assert_eq!(v["approvals"][0]["id"], id.as_str());
    assert_eq!(
        v["approvals"][0]["params"],
        serde_json::json!({ "to": "ada@example.com" })
    );
    assert_eq!(v["approvals"][0]["tenant"], "acme");

    // The agent's own workspace cannot approve.
    let r = env.run(&["approve", &id], &env.acme);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("refused inside a bound workspace"),
        "{}",
        r.stderr
    );
    let r = env.run(&["approvals"], &env.acme.join("."));
    assert_eq!(r.code, 3);

    let r = env.run(&["approve", &id], &env.root);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], 200);
    let reqs = rec.requests();
    assert_eq!(reqs.len(), 1);
    assert!(
        reqs[0].ends_with("{\"to\":\"ada@example.com\"}"),
        "{}",
        reqs[0]
    );
    // Single use: deciding again is refused.
    let r = env.run(&["approve", &id], &env.root);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("already consumed"), "{}", r.stderr);
    env.assert_no_leak();
}

/// SIGINT (or SIGTERM) to `outloop call` while its request waits for approval stops it with
/// 128 + the signal number, the attempt is in the audit log as `cancelled`, and its approval
/// is withdrawn: no longer listed, and `outloop approve` refuses it.
#[test]
fn a_call_stopped_by_a_signal_while_held_is_audited_as_cancelled() {
    crate::support::sigint_reaches_children();
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let (env, rec) = env_with("approve = [\"rec.send\"]");
        let (child, id) = call_until_held(&env, &["call", "rec.send", "-p", "to=ada@example.com"]);
        crate::support::send_signal(child.id(), signal);
        // (call_until_held has read and closed stderr.)
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{signal}");
        assert!(rec.requests().is_empty(), "{signal}: sent unapproved");
        env.assert_one_cancelled_record("rec.send", "approve", signal);
        let r = env.run(&["approvals"], &env.root);
        assert_eq!(r.code, 0, "{signal}: {}", r.stderr);
        assert!(
            r.stdout.contains("no requests are waiting for approval"),
            "{signal}: still listed: {}",
            r.stdout
        );
        let r = env.run(&["approve", &id], &env.root);
        assert_eq!(r.code, 2, "{signal}: {}", r.stderr);
        assert!(
            r.stderr.contains("already withdrawn"),
            "{signal}: {}",
            r.stderr
        );
        assert!(rec.requests().is_empty(), "{signal}: sent after approve");
        env.assert_no_leak();
    }
}

#[test]
fn a_rejected_request_is_denied_and_sends_nothing() {
    let (env, rec) = env_with("approve = [\"rec.send\"]");
    let (mut child, id) = call_until_held(&env, &["call", "rec.send", "-p", "to=bob@example.com"]);
    assert_eq!(env.run(&["reject", &id], &env.root).code, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(rec.requests().is_empty());
}

#[test]
fn rate_limits_survive_a_restart() {
    let (env, rec) = env_with("rate = { \"rec.*\" = \"2/hour\" }");
    for id in ["1", "2"] {
        let r = env.run(&["call", "rec.get", "-p", &format!("id={id}")], &env.acme);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = env.run(&["call", "rec.get", "-p", "id=3"], &env.acme);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("rate limit"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("policy.tenants.acme.rate.\"rec.*\" = \"2/hour\""),
        "{}",
        r.stderr
    );
    assert_eq!(rec.requests().len(), 2);
    let r = env.run(&["policy", "explain", "rec.get", "-p", "id=4"], &env.acme);
    assert!(r.stdout.contains("decision: deny"), "{}", r.stdout);
    assert!(r.stdout.contains("2 of 2 used"), "{}", r.stdout);
    // Another tenant has its own count.
    let r = env.run(&["call", "rec.get", "-p", "id=5"], &env.globex);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn read_only_constraints_and_policy_test_tables() {
    let (env, _rec) = env_with("params = { \"echo.range\" = { n = { max = 10 } } }");
    let r = env.run(&["call", "echo.range", "-p", "n=11"], &env.acme);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("policy.tenants.acme.params.\"echo.range\".n.max = 10"),
        "{}",
        r.stderr
    );

    let table = env.root.join("policy-cases.toml");
    let cases = format!(
        r#"
[[case]]
name = "acme may read"
workspace = "{acme}"
action = "rec.get"
params = {{ id = "1" }}
expect = "allow"

[[case]]
name = "acme may not hit the status endpoint"
workspace = "{acme}"
action = "echo.status"
params = {{ code = 200 }}
expect = "deny"

[[case]]
name = "globex cannot see echoed headers"
workspace = "{globex}"
action = "echo.headers"
expect = "deny"

[[case]]
name = "unbound directories get nothing"
workspace = "{unbound}"
action = "rec.get"
params = {{ id = "1" }}
expect = "deny"
"#,
        acme = env.acme.display(),
        globex = env.globex.display(),
        unbound = env.unbound.display()
    );
    std::fs::write(&table, &cases).unwrap();
    let r = env.run(&["policy", "test", table.to_str().unwrap()], &env.root);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.ends_with("4 passed, 0 failed\n"), "{}", r.stdout);

    std::fs::write(
        &table,
        cases.replacen("expect = \"allow\"", "expect = \"deny\"", 1),
    )
    .unwrap();
    let r = env.run(&["policy", "test", table.to_str().unwrap()], &env.root);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.starts_with("FAIL  deny    allow   acme may read"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.ends_with("3 passed, 1 failed\n"), "{}", r.stdout);
    env.assert_no_leak();
}

#[test]
fn packs_inside_a_workspace_and_overwrites_are_refused() {
    let (env, _rec) = env_with("");
    // An agent writes an action pack into its workspace and the human's config includes it.
    std::fs::write(
        env.acme.join("evil.toml"),
        "[actions.evil]\nmethod = \"GET\"\nurl = \"http://127.0.0.1:9/\"\n",
    )
    .unwrap();
    let cfg = env.config_path();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let pattern = format!("{}/*.toml", env.acme.display());
    std::fs::write(
        &cfg,
        text.replace(
            "include = [\"actions/*.toml\"]",
            &format!("include = [\"actions/*.toml\", {pattern:?}]"),
        ),
    )
    .unwrap();
    let r = env.run(&["actions"], &env.acme);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("action packs must live outside every workspace"),
        "{}",
        r.stderr
    );
    std::fs::write(&cfg, text).unwrap();

    let r = env.run_with_stdin(
        &["secret", "set", "vault://acme/echo"],
        &env.root,
        b"FAKE-overwrite-attempt",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("pass --replace"), "{}", r.stderr);
    let r = env.run_with_stdin(
        &[
            "secret",
            "set",
            "vault://globex/echo",
            "--tenant",
            "acme",
            "--credential",
            "other",
        ],
        &env.root,
        b"FAKE-cross-tenant-value",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is credential `echo` of tenant `globex`"),
        "{}",
        r.stderr
    );
}
