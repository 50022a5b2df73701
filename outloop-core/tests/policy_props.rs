//! Property tests of the rules policy: for random configs and requests, deny wins, decisions
//! are deterministic, and the rule named is one that matches.

use std::path::Path;

use outloop_core::action::Params;
use outloop_core::config::{PolicyConfig, TenantPolicy};
use outloop_core::policy::{Decision, Policy, PolicyRequest, RulesPolicy, Target, glob_match};
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "hubspot.contacts.list",
    "hubspot.contacts.delete",
    "hubspot.companies.get",
    "sendgrid.send",
    "stripe.charges.list",
    "alias:hubspot",
];

fn glob() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(NAMES).prop_map(str::to_owned),
        prop::sample::select(&["hubspot.*", "*.list", "*", "h*t.*.get", "send*", "alias:*"][..])
            .prop_map(str::to_owned),
    ]
}

fn tenant_policy() -> impl Strategy<Value = TenantPolicy> {
    (
        prop::collection::vec(glob(), 0..6),
        prop::collection::vec(glob(), 0..4),
        prop::collection::vec(glob(), 0..3),
    )
        .prop_map(|(allow, deny, approve)| TenantPolicy {
            allow,
            deny,
            approve,
            ..TenantPolicy::default()
        })
}

proptest! {
    #[test]
    fn deny_wins_and_decisions_are_deterministic(
        acme in tenant_policy(),
        globex in tenant_policy(),
        name in prop::sample::select(NAMES),
        tenant in prop::sample::select(&["acme", "globex", "initech"][..]),
    ) {
        let mut cfg = PolicyConfig::default();
        cfg.tenants.insert("acme".into(), acme.clone());
        cfg.tenants.insert("globex".into(), globex.clone());
        let policy = RulesPolicy::new(&cfg);
        let params = Params::default();
        let target = match name.strip_prefix("alias:") {
            Some(a) => Target::Alias { name: a, method: "*", path: "/" },
            None => Target::Action(name),
        };
        let request = PolicyRequest {
            workspace: Path::new("/w"),
            tenant,
            target,
            method: "GET",
            params: &params,
            time: chrono::Utc::now(),
        };
        let v = policy.decide(&request);
        prop_assert_eq!(&v, &policy.decide(&request), "deterministic");
        let rules = match tenant { "acme" => Some(&acme), "globex" => Some(&globex), _ => None };
        let matches = |list: &[String]| list.iter().any(|g| glob_match(g, name));
        match rules {
            Some(r) if matches(&r.deny) => prop_assert_eq!(v.decision, Decision::Deny, "deny wins: {:?}", v),
            Some(r) if matches(&r.approve) => prop_assert_eq!(v.decision, Decision::Approve),
            Some(r) if matches(&r.allow) => prop_assert_eq!(v.decision, Decision::Allow),
            _ => {
                prop_assert_eq!(v.decision, Decision::Deny);
                prop_assert_eq!(v.rule.as_str(), "policy.default = \"deny\"");
            }
        }
        // The rule named is a rule of this tenant that matches the name.
        if let Some(r) = rules {
            for (list, globs) in [("deny", &r.deny), ("approve", &r.approve), ("allow", &r.allow)] {
                let prefix = format!("policy.tenants.{tenant}.{list}[");
                if let Some(rest) = v.rule.strip_prefix(&prefix) {
                    let idx: usize = rest.split(']').next().unwrap().parse().unwrap();
                    prop_assert!(glob_match(&globs[idx], name));
                    // And it is the first matching rule of its list.
                    prop_assert!(!globs[..idx].iter().any(|g| glob_match(g, name)));
                }
            }
        }
    }
}
