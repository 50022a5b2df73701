//! Policy decision cost over 1,000 rules, against the cheapest possible decision (a tenant
//! with a single `allow = ["*"]` rule) measured in the same run.
//!
//! Run: `cargo bench -p outloop-benches --bench policy`. The target (issue 4) is a median
//! under 2 µs for the 1,000-rule decision; criterion prints both medians.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use outloop_core::action::Params;
use outloop_core::config::{PolicyConfig, TenantPolicy};
use outloop_core::policy::{Policy, PolicyRequest, RulesPolicy, Target};

/// 1,000 rules in the shapes real configs use: 600 exact action names, 300 `service.*`
/// prefixes, 100 general globs; the decided name matches only the last general glob.
fn thousand_rules() -> PolicyConfig {
    let mut allow = Vec::new();
    for i in 0..600 {
        allow.push(format!("svc{i}.objects.list"));
    }
    for i in 0..300 {
        allow.push(format!("pre{i}.*"));
    }
    for i in 0..100 {
        allow.push(format!("*.glob{i}.*x"));
    }
    let mut cfg = PolicyConfig::default();
    cfg.tenants.insert(
        "acme".into(),
        TenantPolicy {
            allow,
            ..TenantPolicy::default()
        },
    );
    cfg
}

fn single_rule() -> PolicyConfig {
    let mut cfg = PolicyConfig::default();
    cfg.tenants.insert(
        "acme".into(),
        TenantPolicy {
            allow: vec!["*".into()],
            ..TenantPolicy::default()
        },
    );
    cfg
}

fn bench(c: &mut Criterion) {
    let params = Params::default();
    let mut group = c.benchmark_group("policy_decision");
    for (label, cfg, name) in [
        ("baseline_single_allow_rule", single_rule(), "crm.glob99.ex"),
        (
            "rules_1000_last_glob_matches",
            thousand_rules(),
            "crm.glob99.ex",
        ),
        (
            "rules_1000_exact_match",
            thousand_rules(),
            "svc599.objects.list",
        ),
        (
            "rules_1000_no_match",
            thousand_rules(),
            "nothing.matches.here",
        ),
    ] {
        let policy = RulesPolicy::new(&cfg);
        group.bench_function(label, |b| {
            b.iter(|| {
                policy
                    .decide(&PolicyRequest {
                        workspace: Path::new("/w"),
                        tenant: "acme",
                        target: Target::Action(name),
                        method: "GET",
                        params: &params,
                        time: chrono::Utc::now(),
                    })
                    .decision
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
