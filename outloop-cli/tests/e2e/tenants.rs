//! Two tenants, one credential name: each workspace gets only its own secret, and a request
//! for the wrong tenant or from an unbound directory is denied before any backend is touched.

use super::actions;
use crate::support::{ACME_ECHO, Env, GLOBEX_ECHO, Recorder};

fn bearer_of(req: &str) -> String {
    req.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_owned())
        })
        .expect("request carried an Authorization header")
}

#[test]
fn each_workspace_gets_only_its_own_tenants_secret() {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));
    let r = env.run(&["call", "rec.get", "-p", "id=1"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = env.run(&["call", "rec.get", "-p", "id=2"], &env.globex.join("."));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A subdirectory of a workspace belongs to it.
    let sub = env.globex.join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let r = env.run(
        &["call", "rec.get", "-p", "id=3", "--tenant", "globex"],
        &sub,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    let reqs = rec.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(bearer_of(&reqs[0]), format!("Bearer {ACME_ECHO}"));
    assert_eq!(bearer_of(&reqs[1]), format!("Bearer {GLOBEX_ECHO}"));
    assert_eq!(bearer_of(&reqs[2]), format!("Bearer {GLOBEX_ECHO}"));
    env.assert_no_leak();
}

#[test]
fn wrong_tenant_and_unbound_requests_are_denied_and_send_nothing() {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));

    let r = env.run(
        &[
            "call", "rec.get", "-p", "id=1", "--tenant", "globex", "--json",
        ],
        &env.acme,
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("request names tenant `globex`, but workspace")
            && r.stderr.contains("is bound to tenant `acme`"),
        "{}",
        r.stderr
    );
    assert_eq!(r.json()["error"]["kind"], "policy_denied");

    let r = env.run(&["call", "rec.get", "-p", "id=1"], &env.unbound);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not in any bound workspace"),
        "{}",
        r.stderr
    );

    // A sibling whose name starts with a bound one is not that workspace.
    let sibling = env.root.join("clients/acme-old");
    std::fs::create_dir_all(&sibling).unwrap();
    let r = env.run(&["call", "rec.get", "-p", "id=1"], &sibling);
    assert_eq!(r.code, 3, "{}", r.stderr);

    // Policy: globex may not use echo.headers; acme may not use echo.status (deny wins).
    let r = env.run(&["call", "echo.headers"], &env.globex);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("policy.default = \"deny\""),
        "{}",
        r.stderr
    );
    let r = env.run(&["call", "echo.status", "-p", "code=200"], &env.acme);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("policy.tenants.acme.deny[0] = \"echo.status\""),
        "{}",
        r.stderr
    );

    assert!(
        rec.requests().is_empty(),
        "a denied request reached the upstream"
    );

    // Every denial is audited as a deny.
    let tail = env.run(&["audit", "tail", "--json", "-n", "5"], &env.root);
    let decisions: Vec<String> = tail
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["decision"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(decisions, ["deny"; 5]);
    env.assert_no_leak();
}

#[test]
fn policy_explain_names_the_rule_without_touching_a_backend() {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));
    let r = env.run(
        &["policy", "explain", "echo.status", "-p", "code=200"],
        &env.acme,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("decision: deny"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("rule:     policy.tenants.acme.deny[0] = \"echo.status\""),
        "{}",
        r.stdout
    );
    let r = env.run(
        &[
            "policy",
            "explain",
            "rec.get",
            "-p",
            "id=1",
            "--json",
            "--workspace",
            env.globex.to_str().unwrap(),
        ],
        &env.unbound,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["tenant"], "globex");
    assert_eq!(v["rule"], "policy.tenants.globex.allow[0] = \"rec.*\"");
    assert!(rec.requests().is_empty());
    // explain writes no audit record
    let audit = std::fs::read_to_string(env.audit_path()).unwrap_or_default();
    assert!(audit.is_empty(), "{audit}");
    env.assert_no_leak();
}
