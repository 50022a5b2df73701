//! Canaries end to end: a planted fake value of tenant globex, filed under
//! `[tenants.globex] canaries`, comes back in a response to tenant acme (httpbin's
//! `/base64/<value>` decodes its path and returns the bytes, https://httpbin.org/#/Dynamic_data)
//! and is redacted, with the alert in `outloop audit tail --json` and in the text output.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;

use super::actions;
use crate::support::{Env, Recorder, assert_no_variant, httpbin};

/// Synthetic, letters and digits, 24 bytes (base64 without padding).
const GLOBEX_CANARY: &str = "FAKEcanaryGlobexE2E00420";

#[test]
fn canary_in_a_response_is_redacted_and_alerted_in_the_audit() {
    let rec = Recorder::start();
    let extra = format!(
        "{}\n[actions.\"echo.b64\"]\nmethod = \"GET\"\nurl = \"{}/base64/{{v}}\"\nparams.v = {{ type = \"string\" }}\n",
        actions(&rec.url),
        httpbin()
    );
    let env = Env::new(&extra);
    env.set_secret("vault://globex/canary", GLOBEX_CANARY, None);
    let cfg = env.config_path();
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("[tenants.globex]\n"), "{text}");
    let text = text.replacen(
        "[tenants.globex]\n",
        "[tenants.globex]\ncanaries = [\"vault://globex/canary\"]\n",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    // `echo.b64` is allowed for acme by `echo.*`.
    let encoded = URL_SAFE.encode(GLOBEX_CANARY);
    let r = env.run(
        &["call", "echo.b64", "-p", &format!("v={encoded}"), "--json"],
        &env.acme,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["body"], "[REDACTED:secret]");
    assert_eq!(v["redactions"], 1);

    let r = env.run(&["audit", "tail", "-n", "1", "--json"], &env.root);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(rec["action"], "echo.b64");
    assert_eq!(rec["tenant"], "acme");
    assert_eq!(rec["redactions"], 1);
    assert_eq!(rec["canaries"], serde_json::json!(["globex"]));
    assert_eq!(
        rec["alert"],
        "canary of tenant `globex` seen in the response: a planted fake value came back, so something copied it where it does not belong"
    );
    assert!(rec.get("folded").is_none(), "{rec}");

    let r = env.run(&["audit", "tail", "-n", "1"], &env.root);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .trim_end()
            .ends_with("redactions=1  ALERT: canary of tenant `globex` seen in the response: a planted fake value came back, so something copied it where it does not belong"),
        "{}",
        r.stdout
    );
    let r = env.run(&["audit", "verify"], &env.root);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // The canary reached neither the output nor the audit log, in any encoding (the base64
    // form the test itself passed as a parameter is its own argv, not Outloop's output).
    let mut seen = std::fs::read(env.audit_path()).unwrap();
    seen.extend_from_slice(v.to_string().as_bytes());
    assert_no_variant(&seen, GLOBEX_CANARY.as_bytes());
    env.assert_no_leak();
}

/// A canary printed by a command under `outloop exec` is redacted and alerted in the closing
/// audit record, the same with the in-process broker and through the daemon (which hands
/// the canaries to the client's redactor in `exec_started`).
#[test]
fn canary_in_exec_output_is_redacted_and_alerted_with_and_without_the_daemon() {
    use super::daemon::{Daemon, run_env, status};
    let env = Env::new("[policy.tenants.acme]\nallow = [\"exec:echo\"]\n");
    env.set_secret("vault://globex/canary", GLOBEX_CANARY, None);
    let cfg = env.config_path();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replacen(
        "[tenants.globex]\n",
        "[tenants.globex]\ncanaries = [\"vault://globex/canary\"]\n",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    // The command prints the canary in mixed case on stderr and verbatim on stdout.
    let mixed: String = GLOBEX_CANARY
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    let script = format!("echo \"x {GLOBEX_CANARY} y\"; echo \"{mixed}\" >&2; exit 4");
    let args = ["exec", "--credential", "echo", "--", "sh", "-c", &script];

    let check = |r: &crate::support::Run, path: &str| {
        assert_eq!(r.code, 4, "{path}: {}", r.stderr);
        assert_eq!(r.stdout, "x [REDACTED:secret] y\n", "{path}");
        assert!(
            r.stderr.starts_with("[REDACTED:secret]\n"),
            "{path}: {}",
            r.stderr
        );
        let t = env.run(&["audit", "tail", "-n", "1", "--json"], &env.root);
        let rec: serde_json::Value = serde_json::from_str(t.stdout.trim()).unwrap();
        assert_eq!(rec["action"], "exec:echo", "{path}: {rec}");
        assert_eq!(rec["redactions"], 2, "{path}: {rec}");
        assert_eq!(rec["folded"], 1, "{path}: {rec}");
        assert_eq!(
            rec["canaries"],
            serde_json::json!(["globex"]),
            "{path}: {rec}"
        );
        assert!(
            rec["alert"]
                .as_str()
                .is_some_and(|a| a.starts_with("canary of tenant `globex` seen")),
            "{path}: {rec}"
        );
    };
    let local = run_env(&env, &args, &env.acme, &[]);
    check(&local, "in-process");
    let _d = Daemon::start(&env);
    let via = run_env(&env, &args, &env.acme, &[]);
    check(&via, "through the daemon");
    assert_eq!(status(&env)["requests"], 1);
    env.ok(&["audit", "verify"], &env.root);
    assert_no_variant(
        &std::fs::read(env.audit_path()).unwrap(),
        GLOBEX_CANARY.as_bytes(),
    );
    env.assert_no_leak();
}

/// A canary reference that cannot be fetched is reported in the daemon's log (its operator's
/// stderr), naming the tenant and the reference, while the agent-facing CLI stays quiet about
/// it unless `OUTLOOP_LOG` asks; the call itself goes on either way.
#[test]
fn an_unfetchable_canary_is_logged_by_the_daemon_not_shown_to_the_agent() {
    use super::daemon::{Daemon, run_env};
    let env = Env::new("[policy.tenants.acme]\nallow = [\"exec:echo\"]\n");
    let cfg = env.config_path();
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[tenants.globex]\n",
        "[tenants.globex]\ncanaries = [\"vault://globex/missing-canary\"]\n",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let args = ["exec", "--credential", "echo", "--", "true"];
    let quiet = run_env(&env, &args, &env.acme, &[]);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert_eq!(quiet.stderr, "", "the agent's stderr names no canary");
    let asked = run_env(&env, &args, &env.acme, &[("OUTLOOP_LOG", "warn")]);
    assert_eq!(asked.code, 0, "{}", asked.stderr);
    assert!(
        asked.stderr.contains("a canary cannot be resolved")
            && asked.stderr.contains("vault://globex/missing-canary"),
        "{}",
        asked.stderr
    );
    let mut d = Daemon::start(&env);
    let via = run_env(&env, &args, &env.acme, &[]);
    assert_eq!(via.code, 0, "{}", via.stderr);
    assert_eq!(via.stderr, "");
    let line = d.wait_line("a canary cannot be resolved");
    assert!(
        line.contains("tenant=globex") && line.contains("vault://globex/missing-canary"),
        "{line}"
    );
    env.assert_no_leak();
}
