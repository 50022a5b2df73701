//! `outloop scan`: a workspace generated at test time with a synthetic token of every format
//! in every file kind, secret-like key names, near-misses that must stay silent, ignored,
//! binary and large files, and values stored in the vault in encoded forms.
//!
//! Tokens are assembled from parts here (prefix + `FAKE` padding), never committed as
//! literals, so secret scanners and push protection do not take the source for a leak. Their
//! shapes follow the formats in the project's backend notes, section 6 (gitleaks and
//! trufflehog rules, 1Password's detector list).

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;

use crate::support::{ACME_ECHO, Env, GLOBEX_ECHO};

/// `n` characters of `FAKE` padding in the alphabet `alphabet` (cycled).
fn pad(alphabet: &str, n: usize) -> String {
    let a: Vec<char> = alphabet.chars().collect();
    (0..n).map(|i| a[i % a.len()]).collect()
}

const ALNUM: &str = "FAKE0123456789abcdefghijklmnopqrstuvwxyzFAKEABCDEFGHIJKLMNOPQRSTUVWXYZ";
const HEX: &str = "0123456789abcdef";

/// `(kind, token)` for every format the scanner knows.
pub fn tokens() -> Vec<(&'static str, String)> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    vec![
        (
            "hubspot-private-app-token",
            format!(
                "pat-na1-FAKE{}-{}-{}-{}-FAKE{}",
                pad(HEX, 4),
                pad(HEX, 4),
                pad(HEX, 4),
                pad(HEX, 4),
                pad(HEX, 8)
            ),
        ),
        (
            "stripe-secret-key",
            format!("sk_{}_{}", "live", pad(ALNUM, 32)),
        ),
        ("stripe-webhook-secret", format!("whsec_{}", pad(ALNUM, 32))),
        ("github-token", format!("ghp_{}", pad(ALNUM, 36))),
        (
            "github-fine-grained-pat",
            format!("github_pat_{}", pad(ALNUM, 82)),
        ),
        ("gitlab-pat", format!("glpat-{}", pad(ALNUM, 20))),
        ("npm-token", format!("npm_{}", pad(ALNUM, 36))),
        (
            "slack-bot-token",
            format!("xoxb-1234567890-1234567890123-{}", pad(ALNUM, 24)),
        ),
        (
            "slack-user-token",
            format!("xoxp-1234567890-1234567890-1234567890-{}", pad(ALNUM, 32)),
        ),
        (
            "slack-app-token",
            format!("xapp-1-A0FAKE12345-1234567890-{}", pad(HEX, 40)),
        ),
        (
            "slack-webhook-url",
            format!(
                "https://hooks.slack.com/services/T0FAKE000/B0FAKE000/{}",
                pad(ALNUM, 24)
            ),
        ),
        ("openai-api-key", format!("sk-proj-{}", pad(ALNUM, 48))),
        (
            "anthropic-api-key",
            format!("sk-ant-api03-{}AA", pad(ALNUM, 93)),
        ),
        (
            "anthropic-oauth-token",
            format!("sk-ant-oat01-{}", pad(ALNUM, 48)),
        ),
        (
            "sendgrid-api-key",
            format!("SG.{}.{}", pad(ALNUM, 22), pad(ALNUM, 43)),
        ),
        ("mailchimp-api-key", format!("{}-us21", pad(HEX, 32))),
        ("google-api-key", format!("AIza{}", pad(ALNUM, 35))),
        ("google-oauth-token", format!("ya29.{}", pad(ALNUM, 40))),
        ("aws-access-key-id", format!("AKIA{}", "FAKEFAKE23456723")),
        ("doppler-token", format!("dp.pt.{}", pad(ALNUM, 43))),
        (
            "infisical-service-token",
            format!(
                "st.{}-0000-4000-8000-{}.{}",
                pad(HEX, 8),
                pad(HEX, 12),
                pad(HEX, 32)
            ),
        ),
        (
            "jwt",
            format!(
                "{}.{}.{}",
                b64.encode(br#"{"alg":"none","typ":"FAKE"}"#),
                b64.encode(br#"{"sub":"FAKE-user-0001"}"#),
                pad(ALNUM, 24)
            ),
        ),
        (
            "1password-service-account-token",
            format!("ops_eyJ{}", pad(ALNUM, 260)),
        ),
        (
            "1password-secret-key",
            "A3-FAKE00-FAKE0000000-FAKE0-FAKE1-FAKE2".to_owned(),
        ),
        (
            "private-key",
            format!("-----BEGIN {} KEY-----", "RSA PRIVATE"),
        ),
    ]
}

/// One file kind: its path, the lines before the first token, how a token line is written,
/// and the closing lines.
struct Kind {
    path: &'static str,
    head: &'static [&'static str],
    line: fn(usize, &str) -> String,
    tail: &'static [&'static str],
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            path: ".env",
            head: &["# app"],
            line: |i, t| format!("ITEM_{i}={t}"),
            tail: &[],
        },
        Kind {
            path: "config/settings.json",
            head: &["{"],
            line: |i, t| format!("  \"item_{i}\": {},", serde_json::Value::String(t.into())),
            tail: &["  \"last\": 0", "}"],
        },
        Kind {
            path: "config/settings.yaml",
            head: &["app:"],
            line: |i, t| format!("  item_{i}: \"{t}\""),
            tail: &[],
        },
        Kind {
            path: "config/settings.toml",
            head: &["[app]"],
            line: |i, t| format!("item_{i} = \"{t}\""),
            tail: &[],
        },
        Kind {
            path: "config/settings.ini",
            head: &["[app]", "; comment"],
            line: |i, t| format!("item_{i} = {t}"),
            tail: &[],
        },
        Kind {
            path: "src/app.py",
            head: &["import os", ""],
            line: |i, t| format!("ITEM_{i} = \"{t}\"  # python"),
            tail: &[],
        },
    ]
}

/// Secret-like key names with high-entropy synthetic values: `(path, text, lines)`.
fn named() -> Vec<(&'static str, String, Vec<usize>)> {
    let v = |n: usize| format!("FAKE{}", pad("9x2LqZ7wVb3mK8pR", n));
    vec![
        (
            ".env.local",
            format!(
                "MY_API_KEY={}\nexport SERVICE_TOKEN=\"{}\"\nNODE_ENV=production\nDB_PASSWORD='{}'\n",
                v(16),
                v(20),
                v(12)
            ),
            vec![1, 2, 4],
        ),
        (
            "config/names.yaml",
            format!(
                "auth:\n  clientSecret: {}\n  accessToken: '{}'\nmax_tokens: 4096\n",
                v(20),
                v(24)
            ),
            vec![2, 3],
        ),
        (
            "config/names.json",
            format!("{{\n  \"apiKey\": \"{}\",\n  \"timeout\": 30\n}}\n", v(20)),
            vec![2],
        ),
        (
            "config/aws.ini",
            format!(
                "[default]\naws_secret_access_key = {}\nregion = eu-west-1\n",
                v(36)
            ),
            vec![2],
        ),
    ]
}

/// Files that look a little like secrets but are not.
fn near_misses() -> Vec<(&'static str, String)> {
    vec![
        (
            ".env.example",
            [
                "API_KEY=your-api-key-here",
                "HUBSPOT_TOKEN=<your token>",
                "STRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
                "GITHUB_TOKEN=${GITHUB_TOKEN}",
                "DB_PASSWORD=changeme",
                "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
                "SESSION_SECRET=",
                "TOKEN_URL=https://auth.example.invalid/token",
                "OPENAI_API_KEY=sk-proj-...",
            ]
            .join("\n"),
        ),
        (
            "Cargo.lock",
            format!(
                "[[package]]\nname = \"demo\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n",
                pad(HEX, 64)
            ),
        ),
        (
            "package-lock.json",
            format!(
                "{{\n  \"packages\": {{\n    \"node_modules/demo\": {{\n      \"integrity\": \"sha512-{}==\",\n      \"resolved\": \"https://registry.npmjs.org/demo/-/demo-1.0.0.tgz\"\n    }}\n  }}\n}}\n",
                pad(ALNUM, 86)
            ),
        ),
        (
            "docs/ids.md",
            "request id 123e4567-e89b-12d3-a456-426614174000\ncommit 9f26270d4df5ca0eb20068b9226f758e88974a1b\nuser_id: 123e4567-e89b-12d3-a456-426614174000\nmax_tokens: 1024\npassword_hint = \"first pet\"\napi_key_header = process.env.API_KEY_HEADER\n".to_owned(),
        ),
    ]
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Builds the workspace; returns the expected `(path, line, kind)` findings without backends.
fn workspace(root: &Path) -> BTreeSet<(String, u64, String)> {
    let mut want = BTreeSet::new();
    let toks = tokens();
    for k in kinds() {
        let mut lines: Vec<String> = k.head.iter().map(|s| (*s).to_owned()).collect();
        for (i, (kind, tok)) in toks.iter().enumerate() {
            lines.push((k.line)(i + 1, tok));
            want.insert((k.path.to_owned(), lines.len() as u64, (*kind).to_owned()));
        }
        lines.extend(k.tail.iter().map(|s| (*s).to_owned()));
        write(root, k.path, &(lines.join("\n") + "\n"));
    }
    for (path, text, lines) in named() {
        write(root, path, &text);
        for l in lines {
            want.insert((path.to_owned(), l as u64, "secret-assignment".to_owned()));
        }
    }
    for (path, text) in near_misses() {
        write(root, path, &text);
    }
    let gh = &toks[3].1;
    // Ignored, binary and large files hold a token too; none is read by default.
    write(root, ".gitignore", "ignored/\n*.secret\n");
    write(root, "ignored/old.env", &format!("GH={gh}\n"));
    write(root, "notes.secret", &format!("GH={gh}\n"));
    let mut bin = b"\x7fELF\x00\x01".to_vec();
    bin.extend_from_slice(gh.as_bytes());
    std::fs::write(root.join("tool.bin"), bin).unwrap();
    let mut big = "x = 1\n".repeat((1 << 20) / 6 + 1);
    big.push_str(&format!("GH={gh}\n"));
    write(root, "big.log", &big);
    // A .git directory is never read.
    write(root, ".git/config", &format!("[remote]\n  token = {gh}\n"));
    want
}

fn findings(r: &crate::support::Run) -> BTreeSet<(String, u64, String)> {
    r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn env_with_tokens() -> Env {
    let mut env = Env::new("");
    env.secrets
        .extend(tokens().into_iter().map(|(_, t)| t.into_bytes()));
    env
}

#[test]
fn finds_every_format_in_every_file_kind_and_nothing_else() {
    let env = env_with_tokens();
    let ws = env.acme.join("project");
    let want = workspace(&ws);
    assert_eq!(want.len(), 6 * tokens().len() + 7);
    let r = env.run(
        &["scan", "--json", "--no-backends", ws.to_str().unwrap()],
        &env.root,
    );
    assert_eq!(r.code, 6, "{}", r.stderr);
    let got = findings(&r);
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}"
    );
    let v = r.json();
    let skipped: BTreeSet<(String, String)> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        BTreeSet::from([
            ("big.log".to_owned(), "too-large".to_owned()),
            ("tool.bin".to_owned(), "binary".to_owned())
        ])
    );
    assert_eq!(v["stored_values"], 0);
    // Every preview is masked: at most four characters, then `…` and the length.
    for f in v["findings"].as_array().unwrap() {
        let p = f["preview"].as_str().unwrap();
        let (head, rest) = p.split_once('…').unwrap();
        assert!(
            head.chars().count() <= 4 && rest.ends_with(" chars)"),
            "{p}"
        );
    }
    env.assert_no_leak();
}

#[test]
fn text_output_names_file_line_column_and_kind() {
    let env = env_with_tokens();
    let ws = env.acme.join("one");
    let gh = tokens()[3].1.clone();
    write(&ws, ".env", &format!("# x\n  export GITHUB={gh}\n"));
    let r = env.run(&["scan", "--no-backends"], &ws);
    assert_eq!(r.code, 6);
    assert_eq!(r.stdout, ".env:2:17: github-token  ghp_… (40 chars)\n");
    assert!(r.stderr.contains("1 finding in 1 file"), "{}", r.stderr);
    env.assert_no_leak();
}

#[test]
fn ignored_files_are_read_only_when_asked() {
    let env = env_with_tokens();
    let ws = env.acme.join("project");
    workspace(&ws);
    let r = env.run(
        &["scan", "--json", "--no-backends", "--include-ignored", "."],
        &ws,
    );
    assert_eq!(r.code, 6);
    let got = findings(&r);
    assert!(got.contains(&("ignored/old.env".into(), 1, "github-token".into())));
    assert!(got.contains(&("notes.secret".into(), 1, "github-token".into())));
    assert!(!got.iter().any(|f| f.0.starts_with(".git/")));
    env.assert_no_leak();
}

#[test]
fn a_dotenv_file_is_read_even_when_gitignore_lists_it() {
    let env = env_with_tokens();
    let ws = env.acme.join("ignored-env");
    let token = format!("ghp_{}", pad(ALNUM, 36));
    write(&ws, ".gitignore", ".env\n.env.*\nbuild/\n");
    write(&ws, ".env", &format!("GITHUB_TOKEN={token}\n"));
    write(&ws, "sub/.env.local", &format!("GH={token}\n"));
    // A file in an ignored directory stays unread: the walk does not enter it.
    write(&ws, "build/.env", &format!("GH={token}\n"));
    let r = env.run(&["scan", "--json", "--no-backends", "."], &ws);
    assert_eq!(r.code, 6, "{}", r.stderr);
    let got = findings(&r);
    let paths: Vec<&str> = got.iter().map(|f| f.0.as_str()).collect();
    assert!(paths.contains(&".env"), "{got:?}");
    assert!(paths.contains(&"sub/.env.local"), "{got:?}");
    assert!(!paths.contains(&"build/.env"), "{got:?}");
    assert!(!r.stdout.contains(&token) && !r.stderr.contains(&token));
    env.assert_no_leak();
}

#[test]
fn values_stored_in_the_vault_are_found_in_any_encoding() {
    let env = Env::new("");
    let ws = env.acme.join("stored");
    let b64 = base64::engine::general_purpose::STANDARD.encode(ACME_ECHO);
    let hex: String = GLOBEX_ECHO.bytes().map(|b| format!("{b:02X}")).collect();
    write(
        &ws,
        "notes.md",
        &format!(
            "# notes\nthe header was Authorization: Basic {b64}\nplain text\nurl ?t={hex}&x=1\n"
        ),
    );
    write(&ws, "clean.md", "nothing here\n");
    let r = env.run(&["scan", "--json"], &ws);
    assert_eq!(r.code, 6, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["stored_values"], 3);
    let got: Vec<(String, u64, String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["kind"].as_str().unwrap().to_owned(),
                f["reference"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "notes.md".into(),
                2,
                "stored-secret".into(),
                "vault://acme/echo".into()
            ),
            (
                "notes.md".into(),
                4,
                "stored-secret".into(),
                "vault://globex/echo".into()
            ),
        ]
    );
    // Without the backends the same files are clean.
    let r = env.run(&["scan", "--no-backends"], &ws);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    env.assert_no_leak();
}

#[test]
fn a_clean_tree_exits_zero_and_bad_input_is_a_usage_error() {
    let env = Env::new("");
    let ws = env.acme.join("clean");
    for (path, text) in near_misses() {
        write(&ws, path, &text);
    }
    let r = env.run(&["scan", "."], &ws);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("0 findings in 4 files (3 stored values searched"),
        "{}",
        r.stderr
    );
    let r = env.run(&["scan", "does-not-exist"], &ws);
    assert_eq!(r.code, 2);
    assert_eq!(r.stderr, "outloop: scan: `does-not-exist` does not exist\n");
    env.assert_no_leak();
}
