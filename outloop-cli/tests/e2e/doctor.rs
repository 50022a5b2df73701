//! `outloop doctor`, and a Secret Service credential used end to end through the CLI against
//! a real, private GNOME Keyring (tests/support/keyring.rs in outloop-backends).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::actions;
use crate::keyring::PrivateKeyring;
use crate::support::{Env, Recorder, Run};

const KEYRING_BACKEND: &str =
    "\n[backends.keyring]\nkind = \"secret-service\"\ntimeout = \"10s\"\n";

/// Runs `outloop` like `Env::run_with_stdin`, with the session bus either the private
/// keyring's or a socket where nothing listens.
fn run(env: &Env, args: &[&str], cwd: &Path, stdin: &[u8], kr: Option<&PrivateKeyring>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outloop"));
    cmd.args(args)
        .current_dir(cwd)
        .env("OUTLOOP_HOME", &env.home)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match kr {
        Some(k) => k.env(&mut cmd),
        None => {
            cmd.env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}/no-bus-here", env.root.display()),
            );
        }
    }
    let mut child = cmd.spawn().expect("outloop runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    {
        let mut seen = env.seen.lock().unwrap();
        seen.extend_from_slice(&stdout);
        seen.extend_from_slice(&stderr);
    }
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn keyring() -> (tokio::runtime::Runtime, PrivateKeyring) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let k = rt.block_on(PrivateKeyring::start());
    (rt, k)
}

#[test]
fn doctor_exits_4_and_names_the_backend_that_is_not_ok() {
    let env = Env::new(KEYRING_BACKEND);
    let r = run(&env, &["doctor"], &env.root, b"", None);
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("BACKEND") && lines[0].ends_with("AUTHENTICATED"),
        "{}",
        r.stdout
    );
    let keyring = lines.iter().find(|l| l.starts_with("keyring ")).unwrap();
    assert!(keyring.contains("secret-service"), "{keyring}");
    assert!(keyring.contains("FAILED"), "{keyring}");
    let vault = lines.iter().find(|l| l.starts_with("vault ")).unwrap();
    assert!(!vault.contains("FAILED"), "{vault}");
    assert!(
        r.stdout
            .contains("keyring: reachable: backend `keyring`: the session bus or the Secret Service did not answer"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("1 of 2 backend(s) not OK"),
        "{}",
        r.stdout
    );

    let r = run(&env, &["doctor", "--json"], &env.root, b"", None);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["ok"], false);
    let by_name = |n: &str| {
        v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == n)
            .unwrap()
            .clone()
    };
    let kr = by_name("keyring");
    assert_eq!(kr["kind"], "secret-service");
    assert_eq!(kr["ok"], false);
    assert_eq!(kr["installed"]["status"], "ok");
    assert_eq!(kr["reachable"]["status"], "failed");
    assert_eq!(kr["reachable"]["kind"], "unavailable");
    assert_eq!(kr["authenticated"]["status"], "skipped");
    let vault = by_name("vault");
    assert_eq!(vault["ok"], true);
    assert_eq!(vault["authenticated"]["status"], "ok");
    env.assert_no_leak();
}

#[test]
fn doctor_reports_a_vault_whose_identity_is_gone() {
    let env = Env::new("");
    let r = run(&env, &["doctor", "--json"], &env.root, b"", None);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["ok"], true);
    std::fs::remove_file(env.home.join("vault-identity.txt")).unwrap();
    let r = run(&env, &["doctor"], &env.root, b"", None);
    assert_eq!(r.code, 4, "{}", r.stdout);
    assert!(
        r.stdout.contains("vault: authenticated: vault ")
            && r.stdout.contains("identity is missing"),
        "{}",
        r.stdout
    );
    env.assert_no_leak();
}

#[test]
fn bad_layer_settings_are_a_config_error_naming_the_key() {
    let env = Env::new("\n[backends.keyring]\nkind = \"secret-service\"\ncache_ttl = \"soon\"\n");
    let r = run(&env, &["doctor"], &env.root, b"", None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("backends.keyring.cache_ttl: expected a duration"),
        "{}",
        r.stderr
    );
    let env = Env::new("\n[backends.keyring]\nkind = \"secret-service\"\ncollection = \"x\"\n");
    let r = run(&env, &["doctor"], &env.root, b"", None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("backends.keyring: unknown key `collection`"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_secret_service_credential_works_end_to_end() {
    let (_rt, k) = keyring();
    let rec = Recorder::start();
    let mut env = Env::new(&format!("{}{KEYRING_BACKEND}", actions(&rec.url)));
    const VALUE: &str = "FAKE-keyring-echo-token-5e1c0d";
    env.secrets.push(VALUE.into());

    let r = run(&env, &["doctor"], &env.root, b"", Some(&k));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("all 2 backend(s) OK"), "{}", r.stdout);

    // Stored through Outloop (and filed as acme's `echo`), read back by secret-tool.
    let reference = "secret-service://outloop-e2e/acme-echo";
    let r = run(
        &env,
        &[
            "secret",
            "set",
            reference,
            "--tenant",
            "acme",
            "--credential",
            "echo",
            "--replace",
        ],
        &env.root,
        VALUE.as_bytes(),
        Some(&k),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        k.lookup("outloop-e2e", "acme-echo"),
        (0, VALUE.as_bytes().to_vec())
    );

    let r = run(&env, &["secret", "list"], &env.root, b"", Some(&k));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(reference), "{}", r.stdout);

    // The broker fetches it from the keyring; httpbin echoes it; the result is redacted.
    let r = run(
        &env,
        &["call", "echo.bearer", "--json"],
        &env.acme,
        b"",
        Some(&k),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let body: serde_json::Value = serde_json::from_str(r.json()["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["authenticated"], true);
    assert_eq!(body["token"], "[REDACTED:echo]");
    env.assert_no_leak();
}

#[test]
fn doctor_fails_a_onepassword_backend_whose_op_is_missing() {
    let env = Env::new(
        "\n[backends.op]\nkind = \"onepassword\"\nop_path = \"/nonexistent/FAKE/bin/op\"\n",
    );
    let r = run(&env, &["doctor"], &env.root, b"", None);
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    let op = r.stdout.lines().find(|l| l.starts_with("op ")).unwrap();
    assert!(op.contains("onepassword") && op.contains("FAILED"), "{op}");
    assert!(
        r.stdout
            .contains("op: installed: backend `op`: cannot run `/nonexistent/FAKE/bin/op`"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("1 of 2 backend(s) not OK"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("all 2 backend(s) OK"), "{}", r.stdout);

    let r = run(&env, &["doctor", "--json"], &env.root, b"", None);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["ok"], false);
    let op = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "op")
        .unwrap();
    assert_eq!(op["installed"]["status"], "failed");
    assert_eq!(op["installed"]["kind"], "unavailable");
    env.assert_no_leak();
}
