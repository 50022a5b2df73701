//! Policy: the rules that decide allow, deny or approve for a request.
//!
//! [`Policy`] is a pure, synchronous decision with no I/O. [`RulesPolicy`] is the built-in
//! implementation over `[policy]` in the host config: per-tenant `allow`, `deny` and `approve`
//! glob lists over action names and `alias:<name>`, and a default (deny unless configured).
//! Deny wins over approve, approve over allow; every verdict names the rule that decided.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use crate::action::{ParamValue, Params};
use crate::config::{DefaultDecision, HostConfig, PolicyConfig};

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
    /// The HTTP method the request will use (the action's, or the alias request's); `*` when
    /// unknown (as in `policy explain alias:NAME` without a method).
    pub method: &'a str,
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

/// A compiled glob list: finds the first rule (in list order) matching a name in roughly
/// constant time for exact names and `prefix*` globs, linear only for other globs.
#[derive(Debug, Clone, Default)]
struct RuleSet {
    patterns: Vec<String>,
    exact: HashMap<String, usize>,
    prefixes: HashMap<String, usize>,
    /// The distinct lengths of the `prefix*` globs, so a lookup is made only where one could
    /// match.
    prefix_lens: Vec<usize>,
    /// Other globs, in list order.
    others: Vec<usize>,
    /// An automaton over the longest literal piece of each other glob: only globs whose piece
    /// occurs in the name are tried. Pattern `k` of the automaton is `others[k]`.
    pieces: Option<aho_corasick::AhoCorasick>,
    /// Other globs with no literal piece (`**`), always tried.
    always: Vec<usize>,
}

impl RuleSet {
    fn new(globs: &[String]) -> Self {
        let mut set = RuleSet {
            patterns: globs.to_vec(),
            ..RuleSet::default()
        };
        let mut pieces = Vec::new();
        for (i, g) in globs.iter().enumerate() {
            match g.find('*') {
                None => {
                    set.exact.entry(g.clone()).or_insert(i);
                }
                Some(pos) if pos == g.len() - 1 => {
                    set.prefixes.entry(g[..pos].to_owned()).or_insert(i);
                    set.prefix_lens.push(pos);
                }
                Some(_) => {
                    let piece = g.split('*').max_by_key(|p| p.len()).unwrap_or("");
                    if piece.is_empty() {
                        set.always.push(i);
                    } else {
                        set.others.push(i);
                        pieces.push(piece.to_owned());
                    }
                }
            }
        }
        set.prefix_lens.sort_unstable();
        set.prefix_lens.dedup();
        // Building over plain literals cannot fail; without it every other glob is tried.
        set.pieces = aho_corasick::AhoCorasick::new(&pieces).ok();
        if set.pieces.is_none() {
            set.always.append(&mut set.others);
            set.always.sort_unstable();
        }
        set
    }

    fn first_match(&self, name: &str) -> Option<usize> {
        let min = |best: Option<usize>, i: usize| Some(best.map_or(i, |b: usize| b.min(i)));
        let mut best = self.exact.get(name).copied();
        for &len in &self.prefix_lens {
            if len <= name.len()
                && name.is_char_boundary(len)
                && let Some(&i) = self.prefixes.get(&name[..len])
            {
                best = min(best, i);
            }
        }
        let try_glob = |best: Option<usize>, i: usize| {
            if best.is_some_and(|b| b < i) || !glob_match(&self.patterns[i], name) {
                best
            } else {
                min(best, i)
            }
        };
        if let Some(ac) = &self.pieces {
            for m in ac.find_overlapping_iter(name) {
                best = try_glob(best, self.others[m.pattern().as_usize()]);
            }
        }
        for &i in &self.always {
            best = try_glob(best, i);
        }
        best
    }
}

/// A rate limit or budget: at most `limit` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Requests allowed per period.
    pub limit: u32,
    /// The period, in seconds.
    pub period_secs: u64,
}

impl RateSpec {
    /// Parses `"20/hour"`, `"5/minute"`, `"500/day"` or `"10/second"`.
    ///
    /// # Errors
    ///
    /// A one-line reason when the text is not `<count>/<unit>` with a positive count.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad =
            || format!("`{text}` is not `<count>/<second|minute|hour|day>`, e.g. \"20/hour\"");
        let (n, unit) = text.split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        if limit == 0 {
            return Err(format!(
                "`{text}`: the count must be at least 1 (use `deny` to forbid)"
            ));
        }
        let period_secs = match unit.trim() {
            "second" | "sec" | "s" => 1,
            "minute" | "min" | "m" => 60,
            "hour" | "h" => 3600,
            "day" | "d" => 86_400,
            _ => return Err(bad()),
        };
        Ok(Self { limit, period_secs })
    }
}

/// An allowed time window in UTC: a set of weekdays and a start and end minute of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    days: [bool; 7],
    start_min: u32,
    end_min: u32,
}

impl Window {
    /// Parses `"mon-fri 08:00-18:00"`, `"sat,sun 10:00-12:00"` or `"* 00:00-24:00"` (UTC).
    ///
    /// # Errors
    ///
    /// A one-line reason when the text does not have that shape.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let bad =
            |why: &str| format!("`{text}`: {why}; expected e.g. \"mon-fri 08:00-18:00\" (UTC)");
        let (days_s, hours_s) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("missing the hours"))?;
        let day = |d: &str| {
            DAYS.iter()
                .position(|x| *x == d.trim())
                .ok_or_else(|| bad("unknown day"))
        };
        let mut days = [false; 7];
        if days_s == "*" {
            days = [true; 7];
        } else {
            for part in days_s.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (day(a)?, day(b)?);
                        let mut i = a;
                        loop {
                            days[i] = true;
                            if i == b {
                                break;
                            }
                            i = (i + 1) % 7;
                        }
                    }
                    None => days[day(part)?] = true,
                }
            }
        }
        let minute = |hm: &str| -> std::result::Result<u32, String> {
            let (h, m) = hm
                .trim()
                .split_once(':')
                .ok_or_else(|| bad("hours are HH:MM"))?;
            let (h, m): (u32, u32) = (
                h.parse().map_err(|_| bad("bad hour"))?,
                m.parse().map_err(|_| bad("bad minute"))?,
            );
            if m >= 60 || h > 24 || (h == 24 && m != 0) {
                return Err(bad("no such time"));
            }
            Ok(h * 60 + m)
        };
        let (a, b) = hours_s
            .split_once('-')
            .ok_or_else(|| bad("hours are HH:MM-HH:MM"))?;
        let (start_min, end_min) = (minute(a)?, minute(b)?);
        if start_min >= end_min {
            return Err(bad("the window ends before it starts"));
        }
        Ok(Self {
            days,
            start_min,
            end_min,
        })
    }

    /// Whether `time` falls inside the window.
    pub fn contains(&self, time: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::{Datelike, Timelike};
        let day = time.weekday().num_days_from_monday() as usize;
        let minute = time.hour() * 60 + time.minute();
        self.days[day] && minute >= self.start_min && minute < self.end_min
    }
}

#[derive(Debug, Clone)]
struct Constraint {
    param: String,
    values: Option<Vec<String>>,
    pattern: Option<(String, regex::Regex)>,
    min: Option<i64>,
    max: Option<i64>,
    max_length: Option<usize>,
}

impl Constraint {
    /// The first part of the constraint that `value` breaks, as `(field, config text)`.
    fn violation(&self, value: &ParamValue) -> Option<(&'static str, String)> {
        let text = value.to_string();
        if let Some(v) = self.values.as_ref().filter(|v| !v.contains(&text)) {
            return Some(("enum", format!("{v:?}")));
        }
        if let Some((src, _)) = self.pattern.as_ref().filter(|(_, re)| !re.is_match(&text)) {
            return Some(("pattern", format!("{src:?}")));
        }
        if let ParamValue::Integer(i) = value {
            if let Some(min) = self.min.filter(|m| i < m) {
                return Some(("min", min.to_string()));
            }
            if let Some(max) = self.max.filter(|m| i > m) {
                return Some(("max", max.to_string()));
            }
        }
        if let Some(n) = self.max_length.filter(|n| text.chars().count() > *n) {
            return Some(("max_length", n.to_string()));
        }
        None
    }
}

#[derive(Debug, Clone, Default)]
struct TenantRules {
    deny: RuleSet,
    approve: RuleSet,
    allow: RuleSet,
    read_only: bool,
    windows: Vec<(String, Window)>,
    constraints: HashMap<String, Vec<Constraint>>,
}

/// The built-in policy over `[policy]` (and the `allow` rules of each alias).
///
/// For a request it checks, in order: the tenant's `deny` list; the read-only switch; the
/// time windows; the tenant's parameter constraints; the alias's method and path rules; the
/// `approve` list; the `allow` list; the default. The first that decides wins, so deny wins.
#[derive(Debug, Clone)]
pub struct RulesPolicy {
    default: DefaultDecision,
    tenants: BTreeMap<String, TenantRules>,
    aliases: BTreeMap<String, Vec<String>>,
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

/// Matches a URL path against an alias path glob: `**` matches anything (slashes included),
/// `*` matches within one segment.
pub fn path_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        if p.is_empty() {
            return s.is_empty();
        }
        if p.starts_with(b"**") {
            let rest = &p[2..];
            return (0..=s.len()).any(|i| go(rest, &s[i..]));
        }
        if p[0] == b'*' {
            let rest = &p[1..];
            let seg = s.iter().position(|&c| c == b'/').unwrap_or(s.len());
            return (0..=seg).any(|i| go(rest, &s[i..]));
        }
        !s.is_empty() && p[0] == s[0] && go(&p[1..], &s[1..])
    }
    go(pattern.as_bytes(), path.as_bytes())
}

impl RulesPolicy {
    /// Compiles `[policy]` without alias rules or parameter constraints' actions.
    pub fn new(config: &PolicyConfig) -> Self {
        let tenants = config
            .tenants
            .iter()
            .map(|(name, t)| {
                let mut constraints: HashMap<String, Vec<Constraint>> = HashMap::new();
                for (action, params) in &t.params {
                    for (param, c) in params {
                        constraints
                            .entry(action.clone())
                            .or_default()
                            .push(Constraint {
                                param: param.clone(),
                                values: c.values.clone(),
                                // Validated when the config loaded; an invalid one never matches.
                                // Validated when the config loaded; a pattern that does not compile is
                                // dropped by `filter_map` and the constraint falls back to its other parts.
                                pattern: c.pattern.as_ref().and_then(|p| {
                                    regex::Regex::new(&format!("^(?:{p})$"))
                                        .ok()
                                        .map(|re| (p.clone(), re))
                                }),
                                min: c.min,
                                max: c.max,
                                max_length: c.max_length,
                            });
                    }
                }
                (
                    name.clone(),
                    TenantRules {
                        deny: RuleSet::new(&t.deny),
                        approve: RuleSet::new(&t.approve),
                        allow: RuleSet::new(&t.allow),
                        read_only: t.read_only,
                        windows: t
                            .windows
                            .iter()
                            .filter_map(|w| Window::parse(w).ok().map(|p| (w.clone(), p)))
                            .collect(),
                        constraints,
                    },
                )
            })
            .collect();
        Self {
            default: config.default,
            tenants,
            aliases: BTreeMap::new(),
        }
    }

    /// Compiles the policy of a whole host config, alias method and path rules included.
    pub fn from_config(config: &HostConfig) -> Self {
        let mut p = Self::new(&config.policy);
        p.aliases = config
            .aliases
            .iter()
            .map(|(n, a)| (n.clone(), a.allow.clone()))
            .collect();
        p
    }
}

fn verdict(decision: Decision, rule: String, reason: String) -> Verdict {
    Verdict {
        decision,
        rule,
        reason,
    }
}

impl Policy for RulesPolicy {
    fn decide(&self, request: &PolicyRequest<'_>) -> Verdict {
        let name = request.target.policy_name();
        let tenant = request.tenant;
        let at = || format!("policy.tenants.{tenant}");
        if let Some(rules) = self.tenants.get(tenant) {
            if let Some(i) = rules.deny.first_match(&name) {
                return verdict(
                    Decision::Deny,
                    format!("{}.deny[{i}] = {:?}", at(), rules.deny.patterns[i]),
                    format!("`{name}` is denied for tenant `{tenant}`"),
                );
            }
            if rules.read_only && !matches!(request.method, "GET" | "HEAD" | "*") {
                return verdict(
                    Decision::Deny,
                    format!("{}.read_only = true", at()),
                    format!(
                        "tenant `{tenant}` is read-only; `{name}` uses {}",
                        request.method
                    ),
                );
            }
            if !rules.windows.is_empty()
                && !rules.windows.iter().any(|(_, w)| w.contains(request.time))
            {
                let list: Vec<&str> = rules.windows.iter().map(|(s, _)| s.as_str()).collect();
                return verdict(
                    Decision::Deny,
                    format!("{}.windows = {list:?}", at()),
                    format!(
                        "`{name}` is outside the allowed time windows of tenant `{tenant}` (now {} UTC)",
                        request.time.format("%a %H:%M")
                    ),
                );
            }
            if let Target::Action(action) = request.target {
                for c in rules.constraints.get(action).into_iter().flatten() {
                    if let Some((field, limit)) =
                        request.params.get(&c.param).and_then(|v| c.violation(v))
                    {
                        return verdict(
                            Decision::Deny,
                            format!("{}.params.{action:?}.{}.{field} = {limit}", at(), c.param),
                            format!(
                                "parameter `{}` of `{action}` breaks tenant `{tenant}`'s `{field}` constraint",
                                c.param
                            ),
                        );
                    }
                }
            }
        }
        if let Target::Alias {
            name: alias,
            method,
            path,
        } = request.target
            && method != "*"
        {
            {
                let rules = self
                    .aliases
                    .get(alias)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let ok = rules.iter().any(|r| {
                    r.split_once(' ')
                        .is_some_and(|(m, p)| (m == "*" || m == method) && path_match(p, path))
                });
                if !ok {
                    return verdict(
                        Decision::Deny,
                        format!("aliases.{alias}.allow = {rules:?}"),
                        format!("`{method} {path}` is not allowed through alias `{alias}`"),
                    );
                }
            }
        }
        if let Some(rules) = self.tenants.get(tenant) {
            for (decision, list, set) in [
                (Decision::Approve, "approve", &rules.approve),
                (Decision::Allow, "allow", &rules.allow),
            ] {
                if let Some(i) = set.first_match(&name) {
                    let reason = match decision {
                        Decision::Approve => {
                            format!("`{name}` needs a human's approval for tenant `{tenant}`")
                        }
                        _ => format!("`{name}` is allowed for tenant `{tenant}`"),
                    };
                    return verdict(
                        decision,
                        format!("{}.{list}[{i}] = {:?}", at(), set.patterns[i]),
                        reason,
                    );
                }
            }
        }
        match self.default {
            DefaultDecision::Deny => verdict(
                Decision::Deny,
                "policy.default = \"deny\"".into(),
                format!(
                    "no rule allows `{name}` for tenant `{tenant}` (add it to [policy.tenants.{tenant}] allow)"
                ),
            ),
            DefaultDecision::Allow => verdict(
                Decision::Allow,
                "policy.default = \"allow\"".into(),
                format!("no rule denies `{name}` for tenant `{tenant}`"),
            ),
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
                method: "GET",
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
