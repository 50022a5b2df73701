//! The detectors of `outloop scan`, as data: one table of token formats ([`RULES`]), one
//! key-name rule, and the false-positive controls both share.
//!
//! Token formats come from the table in the project's backend notes (section 6), which cites
//! gitleaks (`cmd/generate/config/rules/*.go`), trufflehog (`pkg/detectors/…`) and 1Password's
//! detector list (`op-vscode src/secret-detection/patterns.ts`). The table is compiled once
//! into a [`regex::RegexSet`] (which rules can match a line) plus one [`Regex`] per rule
//! (where).

use std::sync::OnceLock;

use regex::{Regex, RegexSet};

/// One token format.
#[derive(Debug)]
pub struct Rule {
    /// The stable kind name printed in findings, e.g. `github-token`.
    pub kind: &'static str,
    /// The service the token belongs to, e.g. `GitHub`.
    pub service: &'static str,
    /// The regular expression (Rust `regex` syntax) matching one token.
    pub pattern: &'static str,
    /// Whether the token starts with a fixed, public prefix (`ghp_`, `sk_live_`); then up to
    /// its first four characters appear in the masked preview.
    pub prefixed: bool,
}

/// The token formats, one row per kind. Keep `kind` names stable: `--json` output and
/// users' allow-lists depend on them.
pub const RULES: &[Rule] = &[
    Rule {
        kind: "hubspot-private-app-token",
        service: "HubSpot",
        pattern: r"\bpat-[a-z]{2}[0-9]-[A-Za-z0-9]{8}(?:-[A-Za-z0-9]{4}){3}-[A-Za-z0-9]{12}\b",
        prefixed: true,
    },
    Rule {
        kind: "stripe-secret-key",
        service: "Stripe",
        pattern: r"\b(?:sk|rk)_(?:test|live|prod)_[A-Za-z0-9]{10,255}\b",
        prefixed: true,
    },
    Rule {
        kind: "stripe-webhook-secret",
        service: "Stripe",
        pattern: r"\bwhsec_[A-Za-z0-9+/=]{24,}",
        prefixed: true,
    },
    Rule {
        kind: "github-token",
        service: "GitHub",
        pattern: r"\bgh[pousr]_[0-9A-Za-z]{36,76}\b",
        prefixed: true,
    },
    Rule {
        kind: "github-fine-grained-pat",
        service: "GitHub",
        pattern: r"\bgithub_pat_[0-9A-Za-z_]{82}\b",
        prefixed: true,
    },
    Rule {
        kind: "gitlab-pat",
        service: "GitLab",
        pattern: r"\bglpat-[0-9A-Za-z_-]{20,}\b",
        prefixed: true,
    },
    Rule {
        kind: "npm-token",
        service: "npm",
        pattern: r"\bnpm_[0-9A-Za-z]{36}\b",
        prefixed: true,
    },
    Rule {
        kind: "slack-bot-token",
        service: "Slack",
        pattern: r"\bxoxb-[0-9]{8,14}-[0-9A-Za-z-]{18,}",
        prefixed: true,
    },
    Rule {
        kind: "slack-user-token",
        service: "Slack",
        pattern: r"\bxox[pe](?:-[0-9]{10,13}){3}-[A-Za-z0-9-]{28,34}\b",
        prefixed: true,
    },
    Rule {
        kind: "slack-app-token",
        service: "Slack",
        pattern: r"(?i)\bxapp-[0-9]-[A-Z0-9]+-[0-9]+-[a-z0-9]+\b",
        prefixed: true,
    },
    Rule {
        kind: "slack-webhook-url",
        service: "Slack",
        pattern: r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{20,}",
        prefixed: true,
    },
    Rule {
        kind: "openai-api-key",
        service: "OpenAI",
        pattern: r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})",
        prefixed: true,
    },
    Rule {
        kind: "anthropic-api-key",
        service: "Anthropic",
        pattern: r"\bsk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{93}AA",
        prefixed: true,
    },
    Rule {
        kind: "anthropic-oauth-token",
        service: "Anthropic",
        pattern: r"\bsk-ant-o[ar]t01-[A-Za-z0-9_-]{40,}",
        prefixed: true,
    },
    Rule {
        kind: "sendgrid-api-key",
        service: "SendGrid",
        pattern: r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b",
        prefixed: true,
    },
    Rule {
        kind: "mailchimp-api-key",
        service: "Mailchimp",
        pattern: r"\b[0-9a-f]{32}-us[0-9]{1,2}\b",
        prefixed: false,
    },
    Rule {
        kind: "google-api-key",
        service: "Google",
        pattern: r"\bAIza[0-9A-Za-z_-]{35}",
        prefixed: true,
    },
    Rule {
        kind: "google-oauth-token",
        service: "Google",
        pattern: r"\bya29\.[0-9A-Za-z_-]{20,}",
        prefixed: true,
    },
    Rule {
        kind: "aws-access-key-id",
        service: "AWS",
        pattern: r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
        prefixed: true,
    },
    Rule {
        kind: "doppler-token",
        service: "Doppler",
        pattern: r"\bdp\.(?:pt|ct|sa|said|scim|audit|st(?:\.[a-z0-9_-]{2,35})?)\.[A-Za-z0-9]{40,44}\b",
        prefixed: true,
    },
    Rule {
        kind: "infisical-service-token",
        service: "Infisical",
        pattern: r"\bst\.[0-9a-f-]{24,36}\.[0-9a-f]{16,}(?:\.[0-9a-f]+)?\b",
        prefixed: true,
    },
    Rule {
        kind: "jwt",
        service: "JWT (Infisical access token, 1Password Connect token, …)",
        pattern: r"\bey[A-Za-z0-9_-]{17,}\.ey[A-Za-z0-9_-]{17,}\.[A-Za-z0-9_-]{10,}",
        prefixed: true,
    },
    Rule {
        kind: "1password-service-account-token",
        service: "1Password",
        pattern: r"\bops_eyJ[A-Za-z0-9+/]{250,}={0,3}",
        prefixed: true,
    },
    Rule {
        kind: "1password-secret-key",
        service: "1Password",
        pattern: r"\bA3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}\b",
        prefixed: true,
    },
    Rule {
        kind: "private-key",
        service: "PEM private key",
        pattern: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",
        prefixed: false,
    },
];

/// The kind name of a finding made by the key-name rule.
pub const KEY_NAME_KIND: &str = "secret-assignment";

/// Assignments whose key name ends like a secret's: `*_API_KEY`, `*_TOKEN`, `*_SECRET`,
/// `*_PASSWORD`, `*_ACCESS_KEY`, `*_PRIVATE_KEY`, `clientSecret`, `apiKey`, … in `.env`
/// (`export K=v`), shell, YAML (`k: v`), JSON (`"k": "v"`), TOML and INI (`k = v`) syntax.
/// Group `name` is the key, `value` the value with its quotes.
const KEY_NAME_PATTERN: &str = r#"(?i)(?:^|[^A-Za-z0-9_.-])(?P<name>[A-Za-z0-9_.-]*(?:api[_.-]?key|token|secret|secret[_.-]?key|password|passwd|access[_.-]?key|private[_.-]?key|auth[_.-]?key|credentials?))["']?[ \t]*(?::=|=|:)[ \t]*(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s"'`#,;}\]:=(&*][^\s"'`#,;}\]]*)"#;

/// A name alone (for `import`): does it end like a secret's key name?
const SECRET_NAME_PATTERN: &str = r"(?i)(?:api[_.-]?key|token|secret|secret[_.-]?key|password|passwd|access[_.-]?key|private[_.-]?key|auth[_.-]?key|credentials?)$";

/// Values shorter than this many characters are not reported by the key-name rule.
pub const MIN_ASSIGNED_LEN: usize = 8;

/// Shannon entropy, in bits per character, below which an assigned value is taken for a word
/// rather than a key (`postgres` is 2.75; a random 16-character base62 string is about 4).
pub const MIN_ENTROPY_BITS: f64 = 3.0;

/// One match in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The kind: a [`Rule::kind`] or [`KEY_NAME_KIND`].
    pub kind: &'static str,
    /// The [`Rule::service`], `None` for the key-name rule.
    pub service: Option<&'static str>,
    /// Byte offset of the matched value in the line.
    pub start: usize,
    /// Byte offset just past the matched value.
    pub end: usize,
    /// The masked preview (never the value): a public prefix of at most four characters,
    /// `…`, and the length in characters.
    pub preview: String,
    /// The length of the matched value, in characters.
    pub length: usize,
}

/// The compiled detectors. Build once with [`Detector::get`].
pub struct Detector {
    set: RegexSet,
    rules: Vec<Regex>,
    key_name: Regex,
    secret_name: Regex,
}

impl Detector {
    /// The process-wide detector, compiled on first use.
    pub fn get() -> &'static Detector {
        static D: OnceLock<Detector> = OnceLock::new();
        D.get_or_init(|| {
            // The patterns are constants tested below; a failure here is a bug in the table.
            let compile = |p: &str| Regex::new(p).expect("the scan rule table compiles");
            Detector {
                set: RegexSet::new(RULES.iter().map(|r| r.pattern))
                    .expect("the scan rule table compiles"),
                rules: RULES.iter().map(|r| compile(r.pattern)).collect(),
                key_name: compile(KEY_NAME_PATTERN),
                secret_name: compile(SECRET_NAME_PATTERN),
            }
        })
    }

    /// Every finding in one line of text: token formats first, then assignments to
    /// secret-like key names whose value no token format matched. Placeholders and
    /// low-entropy values are left out (see [`is_placeholder`] and [`MIN_ENTROPY_BITS`]).
    pub fn line(&self, line: &str) -> Vec<Hit> {
        let mut hits: Vec<Hit> = Vec::new();
        for i in self.set.matches(line) {
            let rule = &RULES[i];
            for m in self.rules[i].find_iter(line) {
                let token = m.as_str();
                if is_placeholder(token) {
                    continue;
                }
                if hits.iter().any(|h| h.start < m.end() && m.start() < h.end) {
                    continue;
                }
                hits.push(Hit {
                    kind: rule.kind,
                    service: Some(rule.service),
                    start: m.start(),
                    end: m.end(),
                    preview: preview(token, rule.prefixed),
                    length: token.chars().count(),
                });
            }
        }
        for c in self.key_name.captures_iter(line) {
            let Some(v) = c.name("value") else { continue };
            let (start, end, value) = unquote(v.start(), v.as_str());
            if hits.iter().any(|h| h.start < end && start < h.end) || !looks_like_secret(value) {
                continue;
            }
            hits.push(Hit {
                kind: KEY_NAME_KIND,
                service: None,
                start,
                end,
                preview: preview(value, false),
                length: value.chars().count(),
            });
        }
        hits.sort_by_key(|h| h.start);
        hits
    }

    /// How `import` decides whether a `NAME=value` entry is a secret: the value matches a
    /// token format (returns its kind), or the name ends like a secret's key name and the
    /// value looks like one (returns [`KEY_NAME_KIND`]). `None`: not a secret.
    pub fn classify(&self, name: &str, value: &str) -> Option<&'static str> {
        for i in self.set.matches(value) {
            if self.rules[i]
                .find_iter(value)
                .any(|m| !is_placeholder(m.as_str()))
            {
                return Some(RULES[i].kind);
            }
        }
        // Under a secret-like name a multi-line value (a key file, a certificate bundle) is a
        // secret even though it reads like several words.
        let multi_line = value.trim().contains('\n') && !is_placeholder(value);
        (self.secret_name.is_match(name) && (multi_line || looks_like_secret(value)))
            .then_some(KEY_NAME_KIND)
    }
}

/// Strips one pair of matching quotes; returns the inner span and text.
fn unquote(start: usize, raw: &str) -> (usize, usize, &str) {
    let b = raw.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        (start + 1, start + raw.len() - 1, &raw[1..raw.len() - 1])
    } else {
        (start, start + raw.len(), raw)
    }
}

/// The masked preview of a matched value: for prefixed formats the first (at most) four
/// characters, then `…` and the length; otherwise `…` and the length.
pub fn preview(value: &str, prefixed: bool) -> String {
    let n = value.chars().count();
    if prefixed {
        let head: String = value.chars().take(4.min(n / 4)).collect();
        format!("{head}… ({n} chars)")
    } else {
        format!("… ({n} chars)")
    }
}

/// Whether a value is an example or a placeholder rather than a key: `your-api-key-here`,
/// `<token>`, `${VAR}`, `$VAR`, `changeme`, `xxxx…`, `example`, `placeholder`, `redacted`,
/// `dummy`, `***`, `...`, or a run of one repeated character.
pub fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "your-",
        "your_",
        "yourapi",
        "yourtoken",
        "yoursecret",
        "changeme",
        "change-me",
        "change_me",
        "xxxx",
        "example",
        "placeholder",
        "redacted",
        "dummy",
        "***",
        "...",
        "…",
        "${",
        "$(",
        "{{",
        "<",
        ">",
        "%(",
    ];
    if WORDS.iter().any(|w| lower.contains(w)) || lower.starts_with('$') {
        return true;
    }
    let mut chars = value.chars().filter(|c| c.is_ascii_alphanumeric());
    match chars.next() {
        None => true,
        Some(first) => chars.all(|c| c == first),
    }
}

/// The checks an assigned value must pass to be reported by the key-name rule: at least
/// [`MIN_ASSIGNED_LEN`] characters, not a placeholder, not a literal (`true`, numbers), not a
/// secret reference (`vault://…`, `op://…`) or a code expression (`process.env.X`, `os.environ`),
/// not a plain URL or path, and at least [`MIN_ENTROPY_BITS`] of entropy per character.
pub fn looks_like_secret(value: &str) -> bool {
    let v = value.trim().trim_matches('`');
    if v.chars().count() < MIN_ASSIGNED_LEN || is_placeholder(v) {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    const REFERENCES: &[&str] = &[
        "vault://",
        "op://",
        "keychain://",
        "secret-service://",
        "infisical://",
        "doppler://",
        "http://",
        "https://",
        "file://",
        "env:",
        "process.env",
        "os.environ",
        "os.getenv",
        "secrets.",
    ];
    if REFERENCES.iter().any(|r| lower.starts_with(r)) {
        return false;
    }
    // Code (`config.token.clone()`, `&Credentials`, `crate::secret::X`) and templates
    // (`{TOKEN}`, `[secret]`) are not keys.
    if v.contains(['(', ')']) || v.contains("::") || v.starts_with(['{', '[', '&', '*']) {
        return false;
    }
    // A one-case identifier (`github_token`, `API-KEY-NAME`) names something; it is not a key.
    if v.chars()
        .all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-')
        && (v == v.to_ascii_lowercase() || v == v.to_ascii_uppercase())
    {
        return false;
    }
    // Prose (three or more words, such as the note `import` leaves) is not a key.
    if v.split_whitespace().count() >= 3 {
        return false;
    }
    if v.chars()
        .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    {
        return false;
    }
    // A dotted or slashed identifier path (`config.api.token`, `/etc/app/key.pem`) is a name,
    // not a value.
    if v.split(['.', '/'])
        .filter(|p| !p.is_empty())
        .all(|p| p.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
        && (v.contains('.') || v.contains('/'))
    {
        return false;
    }
    entropy(v) >= MIN_ENTROPY_BITS
}

/// Shannon entropy of the characters of `s`, in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::<char, usize>::new();
    let mut n = 0usize;
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    counts
        .values()
        .map(|&c| {
            #[allow(clippy::cast_precision_loss)]
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_compiles_and_kinds_are_unique() {
        let d = Detector::get();
        assert_eq!(d.rules.len(), RULES.len());
        let mut kinds: Vec<_> = RULES.iter().map(|r| r.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), RULES.len());
        assert!(!kinds.contains(&KEY_NAME_KIND));
    }

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "your-api-key-here",
            "<token>",
            "${HUBSPOT_TOKEN}",
            "$HUBSPOT_TOKEN",
            "changeme",
            "sk_live_xxxxxxxxxxxxxxxx",
            "AKIAIOSFODNN7EXAMPLE",
            "0000000000000000",
            "********",
        ] {
            assert!(is_placeholder(p), "{p}");
        }
        for v in ["FAKE9x2LqZ7w", "ghp_FAKE0123456789abcdefghijklmnopqrstuv"] {
            assert!(!is_placeholder(v), "{v}");
        }
    }

    #[test]
    fn assigned_values_need_length_entropy_and_no_reference() {
        for (v, want) in [
            ("FAKE9x2LqZ7wVb3", true),
            ("postgres", false),
            ("short1", false),
            ("vault://acme/hubspot", false),
            ("process.env.OPENAI_API_KEY", false),
            ("https://example.invalid/token", false),
            ("12345678901234", false),
            ("/etc/app/secret", false),
            ("true", false),
            ("moved to outloop: credential x (vault://acme/x)", false),
            ("config.credential.clone()", false),
            ("format!(\"FAKE{tail}\")", false),
            ("{ACME_SECRET}", false),
            ("&Credentials", false),
            ("github_token", false),
            ("`vault://acme/x`", false),
        ] {
            assert_eq!(looks_like_secret(v), want, "{v}");
        }
    }

    #[test]
    fn key_name_rule_reads_every_assignment_syntax() {
        let d = Detector::get();
        let v = "FAKE9x2LqZ7wVb3m";
        for line in [
            format!("MY_API_KEY={v}"),
            format!("export SERVICE_TOKEN=\"{v}\""),
            format!("  clientSecret: '{v}'"),
            format!("  \"apiKey\": \"{v}\","),
            format!("db_password = \"{v}\""),
            format!("aws_secret_access_key={v}"),
        ] {
            let hits = d.line(&line);
            assert_eq!(hits.len(), 1, "{line}: {hits:?}");
            assert_eq!(hits[0].kind, KEY_NAME_KIND);
            assert_eq!(&line[hits[0].start..hits[0].end], v, "{line}");
            assert!(!hits[0].preview.contains("FAKE"));
        }
        for line in [
            format!("TOKEN_URL={v}"),
            format!("max_tokens: {v}"),
            "API_KEY=your-api-key-here".to_owned(),
            "API_TOKEN=${API_TOKEN}".to_owned(),
            "request_id = \"123e4567-e89b-12d3-a456-426614174000\"".to_owned(),
            "use crate::secret::SecretValue;".to_owned(),
            "if token == other_token_value {".to_owned(),
        ] {
            assert!(d.line(&line).is_empty(), "{line}");
        }
    }

    #[test]
    fn preview_never_shows_more_than_a_prefix() {
        assert_eq!(preview("ghp_FAKEFAKEFAKEFAKE", true), "ghp_… (20 chars)");
        assert_eq!(preview("short", true), "s… (5 chars)");
        assert_eq!(preview("FAKE-secret", false), "… (11 chars)");
    }
}
