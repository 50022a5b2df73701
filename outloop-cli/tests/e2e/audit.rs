//! The audit chain: one record per attempt, verifiable, and broken by a one-byte change.

use super::actions;
use crate::support::{Env, Recorder};

#[test]
fn every_attempt_is_audited_and_the_chain_verifies() {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));
    assert_eq!(env.run(&["call", "echo.bearer"], &env.acme).code, 0);
    assert_eq!(
        env.run(
            &["call", "rec.get", "-p", "id=1", "--tenant", "globex"],
            &env.acme
        )
        .code,
        3
    );
    assert_eq!(env.run(&["call", "nope"], &env.acme).code, 2);
    assert_eq!(env.run(&["call", "echo.bearer"], &env.unbound).code, 3);

    let r = env.run(&["audit", "tail", "--json"], &env.root);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let recs: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 4);
    let first = &recs[0];
    assert_eq!(first["action"], "echo.bearer");
    assert_eq!(first["tenant"], "acme");
    assert_eq!(first["decision"], "allow");
    assert_eq!(first["outcome"], "ok");
    assert_eq!(first["status"], 200);
    assert_eq!(first["redactions"], 1);
    assert_eq!(first["rule"], "policy.tenants.acme.allow[0] = \"echo.*\"");
    for key in ["time", "request_id", "workspace", "duration_ms", "prev"] {
        assert!(first.get(key).is_some(), "missing {key}");
    }
    assert_eq!(recs[1]["decision"], "deny");
    assert_eq!(recs[1]["outcome"], "policy_denied");
    assert_eq!(recs[1]["params"], serde_json::json!(["id"]));
    assert_eq!(recs[2]["outcome"], "unknown_action");
    assert_eq!(recs[3]["decision"], "deny");
    assert_eq!(recs[3]["outcome"], "unbound_workspace");
    assert_eq!(recs[3]["tenant"], serde_json::Value::Null);

    let r = env.run(&["audit", "verify"], &env.root);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(": 4 records, chain intact"),
        "{}",
        r.stdout
    );

    // One changed byte breaks the chain.
    let path = env.audit_path();
    let mut bytes = std::fs::read(&path).unwrap();
    let pos = bytes.windows(7).position(|w| w == b"\"deny\",").unwrap();
    bytes[pos + 1] = b'D';
    std::fs::write(&path, &bytes).unwrap();
    let r = env.run(&["audit", "verify"], &env.root);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("audit.jsonl:3: chain broken"),
        "{}",
        r.stderr
    );
    env.assert_no_leak();
}
