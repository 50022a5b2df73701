//! Bad input: each a clear one-line error with the right exit code, and nothing sent.

use super::actions;
use crate::support::{Env, Recorder};

fn one_line(s: &str) {
    assert_eq!(
        s.trim_end().lines().count(),
        1,
        "expected one line of error, got:\n{s}"
    );
    assert!(
        !s.contains("panicked") && !s.contains("RUST_BACKTRACE"),
        "{s}"
    );
}

#[test]
fn malformed_config_names_file_line_and_key() {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));
    let cfg = env.config_path();
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\n[tenants.acme.oops]\n")).unwrap();
    let r = env.run(&["call", "rec.get", "-p", "id=1"], &env.acme);
    assert_eq!(r.code, 2);
    one_line(&r.stderr);
    let line = good.lines().count() + 2;
    assert!(
        r.stderr.contains(&format!(
            "config.toml:{line}: tenants.acme.oops: unknown field `oops`"
        )),
        "{}",
        r.stderr
    );
    std::fs::write(
        &cfg,
        good.replace(
            "allow_private = [\"127.0.0.0/8\"]",
            "allow_private = [\"127.0.0.0/33\"]",
        ),
    )
    .unwrap();
    let r = env.run(&["actions"], &env.acme);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("egress.allow_private[0]: invalid IP address syntax"),
        "{}",
        r.stderr
    );
    assert!(rec.requests().is_empty());
}

#[test]
fn malformed_reference_and_short_secret_are_refused() {
    let env = Env::new("");
    let r = env.run_with_stdin(
        &["secret", "set", "vault:/acme"],
        &env.root,
        b"FAKE-long-enough-value",
    );
    assert_eq!(r.code, 2);
    one_line(&r.stderr);
    assert!(
        r.stderr
            .contains("invalid secret reference `vault:/acme`: expected `<scheme>://"),
        "{}",
        r.stderr
    );
    let r = env.run_with_stdin(
        &["secret", "set", "keychain://only-service"],
        &env.root,
        b"FAKE-long-enough-value",
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("expected `keychain://<service>/<account>`"),
        "{}",
        r.stderr
    );
    let r = env.run_with_stdin(&["secret", "set", "vault://acme/short"], &env.root, b"FAKE");
    assert_eq!(r.code, 4);
    assert!(
        r.stderr
            .contains("shorter than the redaction floor of 8 bytes"),
        "{}",
        r.stderr
    );
    let r = env.run_with_stdin(&["secret", "set", "vault://acme/empty"], &env.root, b"\n");
    assert_eq!(r.code, 4);
    assert!(r.stderr.contains("empty"), "{}", r.stderr);
    // Values the redactor could never search for are refused when stored, not at every call.
    for (name, value) in [("punct", &b"!!!!!!!!!!!!"[..]), ("spaces", b"        ")] {
        let r = env.run_with_stdin(
            &["secret", "set", &format!("vault://acme/{name}")],
            &env.root,
            value,
        );
        assert_eq!(r.code, 4, "{name}: {}", r.stderr);
        one_line(&r.stderr);
        assert!(
            r.stderr
                .contains("made only of punctuation, whitespace or control characters"),
            "{name}: {}",
            r.stderr
        );
    }
    let list = env.run(&["secret", "list"], &env.root).stdout;
    assert!(
        !list.contains("short")
            && !list.contains("empty")
            && !list.contains("punct")
            && !list.contains("spaces"),
        "{list}"
    );
    // A secret value is never taken from argv.
    let r = env.run(
        &["secret", "set", "vault://acme/x", "FAKE-value-in-argv"],
        &env.root,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn unknown_action_and_bad_parameters_are_usage_errors() {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));
    let cases: &[(&[&str], &str)] = &[
        (&["call", "nope.list"], "no action `nope.list`"),
        (&["call", "rec.get"], "`id`"),
        (
            &["call", "rec.get", "-p", "id=1", "-p", "extra=2"],
            "unknown parameter `extra`",
        ),
        (&["call", "rec.get", "-p", "id"], "-p expects `key=value`"),
        (
            &["call", "rec.get", "-p", "id=1", "-p", "id=2"],
            "given twice",
        ),
        (&["call", "echo.range", "-p", "n=0"], "`n`"),
        (&["call", "echo.range", "-p", "n=102401"], "`n`"),
        (&["call", "echo.range", "-p", "n=abc"], "`n`"),
        (&["call", "rec.create", "-p", "name=gamma"], "`name`"),
        (
            &["call", "rec.get", "-p", "id=a\r\nHost: evil.example"],
            "`id`",
        ),
        (
            &["call", "rec.get", "-p", &format!("id={}", "x".repeat(65))],
            "`id`",
        ),
    ];
    for (args, needle) in cases {
        let r = env.run(args, &env.acme);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        one_line(&r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
    assert!(
        rec.requests().is_empty(),
        "a malformed request reached the upstream"
    );
    env.assert_no_leak();
}

#[test]
fn parameters_cannot_change_host_or_path() {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));
    let hostile = [
        "../admin",
        "..",
        ".",
        "//other.example",
        "%2F..%2Fadmin",
        "@other.example",
        "a/b",
        "a?x=1#f",
        "a\\b",
    ];
    for id in hostile {
        let r = env.run(&["call", "rec.get", "-p", &format!("id={id}")], &env.acme);
        let reqs = rec.requests();
        match r.code {
            2 => {
                one_line(&r.stderr);
                assert!(reqs.is_empty(), "{id}: refused but sent");
            }
            0 => {
                assert_eq!(reqs.len(), 1, "{id}");
                let request_line = reqs[0].lines().next().unwrap();
                let path = request_line.split(' ').nth(1).unwrap();
                let rest = path
                    .strip_prefix("/v1/items/")
                    .unwrap_or_else(|| panic!("{id}: path escaped: {path}"));
                assert!(
                    !rest.contains('/') && !rest.contains('?') && !rest.contains('#'),
                    "{id}: {path}"
                );
                let host = reqs[0]
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("host: ")
                            .or_else(|| l.strip_prefix("Host: "))
                    })
                    .unwrap();
                assert_eq!(format!("http://{host}"), rec.url, "{id}: host changed");
            }
            other => panic!("{id}: exit {other}: {}", r.stderr),
        }
    }
    env.assert_no_leak();
}

#[test]
fn metadata_and_loopback_without_allow_private_are_refused_before_sending() {
    let rec = Recorder::start();
    let env = Env::with_egress(&actions(&rec.url), "[]");
    let r = env.run(&["call", "metadata"], &env.acme);
    assert_eq!(r.code, 5, "{}", r.stderr);
    one_line(&r.stderr);
    assert!(r.stderr.contains("allow_private"), "{}", r.stderr);
    let r = env.run(&["call", "rec.get", "-p", "id=1"], &env.acme);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("allow_private"), "{}", r.stderr);
    assert!(
        rec.requests().is_empty(),
        "loopback upstream reached without allow_private"
    );
    // With loopback allowed, the metadata address is still refused.
    let env = Env::new(&actions(&rec.url));
    let r = env.run(&["call", "metadata"], &env.acme);
    assert_eq!(r.code, 5, "{}", r.stderr);
    env.assert_no_leak();
}
