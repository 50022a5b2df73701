//! Policy: the rules that decide allow, deny or approve for a request.
//!
//! [`Policy`] is a pure, synchronous decision with no I/O. [`RulesPolicy`] is the built-in
//! implementation over `[policy]` in the host config: per-tenant `allow`, `deny` and `approve`
//! glob lists over action names and `alias:<name>`, and a default (deny unless configured).
//! Deny wins over approve, approve over allow; every verdict names the rule that decided.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::action::Params;
use crate::config::{DefaultDecision, PolicyConfig};

/// What a request targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A named action.
    Action(&'a str),
    /// An alias request: the alias name, the HTTP method and the path below the base URL.
    Alias {
        /// The alias name (policy matches it as `alias:<name>`).
        name: &'a str,
        /// The HTTP method, upper-case.
        method: &'a str,
        /// The path below the alias's base URL, starting with `/`.
        path: &'a str,
    },
}

impl Target<'_> {
    /// The name policy rules match against: the action name, or `alias:<name>`.
    pub fn policy_name(&self) -> String {
        match self {
            Target::Action(a) => (*a).to_owned(),
            Target::Alias { name, .. } => format!("alias:{name}"),
        }
    }
}

/// The description of one request that policy decides on.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    /// The canonical workspace root the request came from.
    pub workspace: &'a Path,
    /// The workspace's tenant.
    pub tenant: &'a str,
    /// The action or alias requested.
    pub target: Target<'a>,
    /// The validated parameters.
    pub params: &'a Params,
    /// When the request was made.
    pub time: chrono::DateTime<chrono::Utc>,
}

/// The three outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse; no backend is touched.
    Deny,
    /// Hold for a human's approval of this exact request.
    Approve,
}

impl Decision {
    /// `allow`, `deny` or `approve`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Approve => "approve",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision with the rule that made it and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The decision.
    pub decision: Decision,
    /// The rule, as a config location, e.g. `policy.tenants.acme.deny[0] = "hubspot.*"`,
    /// or `policy.default = "deny"`.
    pub rule: String,
    /// One line for the person reading a denial.
    pub reason: String,
}

/// The rules that decide allow, deny or approve. Pure and synchronous: no I/O.
pub trait Policy: Send + Sync {
    /// Decides on `request`. Deterministic for equal inputs.
    fn decide(&self, request: &PolicyRequest<'_>) -> Verdict;
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    list: &'static str,
    index: usize,
}

#[derive(Debug, Clone, Default)]
struct TenantRules {
    deny: Vec<Rule>,
    approve: Vec<Rule>,
    allow: Vec<Rule>,
}

/// The built-in policy over `[policy]`.
#[derive(Debug, Clone)]
pub struct RulesPolicy {
    default: DefaultDecision,
    tenants: BTreeMap<String, TenantRules>,
}

/// Matches `name` against a glob where `*` matches any run of characters (dots included).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl RulesPolicy {
    /// Compiles `[policy]`.
    pub fn new(config: &PolicyConfig) -> Self {
        let rules = |list: &'static str, globs: &[String]| {
            globs
                .iter()
                .enumerate()
                .map(|(index, g)| Rule {
                    pattern: g.clone(),
                    list,
                    index,
                })
                .collect::<Vec<_>>()
        };
        let tenants = config
            .tenants
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    TenantRules {
                        deny: rules("deny", &t.deny),
                        approve: rules("approve", &t.approve),
                        allow: rules("allow", &t.allow),
                    },
                )
            })
            .collect();
        Self {
            default: config.default,
            tenants,
        }
    }
}

impl Policy for RulesPolicy {
    fn decide(&self, request: &PolicyRequest<'_>) -> Verdict {
        let name = request.target.policy_name();
        let tenant = request.tenant;
        if let Some(rules) = self.tenants.get(tenant) {
            for (decision, list) in [
                (Decision::Deny, &rules.deny),
                (Decision::Approve, &rules.approve),
                (Decision::Allow, &rules.allow),
            ] {
                if let Some(r) = list.iter().find(|r| glob_match(&r.pattern, &name)) {
                    let rule = format!(
                        "policy.tenants.{tenant}.{}[{}] = {:?}",
                        r.list, r.index, r.pattern
                    );
                    let reason = match decision {
                        Decision::Deny => format!("`{name}` is denied for tenant `{tenant}`"),
                        Decision::Approve => {
                            format!("`{name}` needs a human's approval for tenant `{tenant}`")
                        }
                        Decision::Allow => format!("`{name}` is allowed for tenant `{tenant}`"),
                    };
                    return Verdict {
                        decision,
                        rule,
                        reason,
                    };
                }
            }
        }
        match self.default {
            DefaultDecision::Deny => Verdict {
                decision: Decision::Deny,
                rule: "policy.default = \"deny\"".into(),
                reason: format!(
                    "no rule allows `{name}` for tenant `{tenant}` (add it to [policy.tenants.{tenant}] allow)"
                ),
            },
            DefaultDecision::Allow => Verdict {
                decision: Decision::Allow,
                rule: "policy.default = \"allow\"".into(),
                reason: format!("no rule denies `{name}` for tenant `{tenant}`"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantPolicy;

    #[test]
    fn globs() {
        let cases = [
            ("hubspot.*", "hubspot.contacts.list", true),
            ("hubspot.*", "hubspotx", false),
            ("*", "anything", true),
            ("alias:*", "alias:hubspot", true),
            ("alias:*", "hubspot.list", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*.list", "hubspot.contacts.list", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn deny_wins_then_approve_then_allow_then_default() {
        let mut cfg = PolicyConfig::default();
        cfg.tenants.insert(
            "acme".into(),
            TenantPolicy {
                allow: vec!["hubspot.*".into(), "sendgrid.*".into()],
                deny: vec!["hubspot.contacts.delete".into()],
                approve: vec!["sendgrid.send".into()],
                ..Default::default()
            },
        );
        let p = RulesPolicy::new(&cfg);
        let params = Params::default();
        let decide = |tenant: &str, action: &str| {
            p.decide(&PolicyRequest {
                workspace: Path::new("/w"),
                tenant,
                target: Target::Action(action),
                params: &params,
                time: chrono::Utc::now(),
            })
        };
        let v = decide("acme", "hubspot.contacts.delete");
        assert_eq!(v.decision, Decision::Deny);
        assert_eq!(
            v.rule,
            "policy.tenants.acme.deny[0] = \"hubspot.contacts.delete\""
        );
        assert_eq!(decide("acme", "sendgrid.send").decision, Decision::Approve);
        let v = decide("acme", "hubspot.contacts.list");
        assert_eq!(v.decision, Decision::Allow);
        assert_eq!(v.rule, "policy.tenants.acme.allow[0] = \"hubspot.*\"");
        let v = decide("acme", "stripe.charges.list");
        assert_eq!(v.decision, Decision::Deny);
        assert_eq!(v.rule, "policy.default = \"deny\"");
        assert_eq!(
            decide("globex", "hubspot.contacts.list").decision,
            Decision::Deny
        );
    }
}
