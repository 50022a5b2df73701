//! The 1Password backend: `op://<vault>/<item>[/<section>]/<field>[?attribute=…]` read with
//! the 1Password CLI v2 (`op`, ≥ 2.18 for service accounts).
//!
//! Commands (developer.1password.com/docs/cli/reference/commands/read,
//! developer.1password.com/docs/cli/secret-reference-syntax,
//! developer.1password.com/docs/cli/reference/management-commands/item):
//!
//! - `op read --no-newline <op://…>`: the value on stdout, byte for byte (never trimmed);
//! - names 1Password's reference syntax cannot carry (anything but `A-Z a-z 0-9 - _ .` and
//!   space, e.g. `/`, `&` or non-ASCII) are first resolved to IDs with
//!   `op item get --vault=<vault> --format=json -- <item>`, then read as
//!   `op read --no-newline op://<vault-id>/<item-id>/[<section-id>/]<field-id>`.
//!
//! `op` runs without a shell (argv only), with stdin closed (`op item get` would read item
//! specifiers from it), stdout and stderr drained concurrently, a timeout (the child is killed
//! when it expires), and a cleared environment that keeps only `PATH`, `HOME`, `USER`,
//! `LOGNAME`, `TMPDIR`, `XDG_*` and `OP_*`. Auth is the desktop-app integration, or a
//! service-account token read from another backend (`service_account_token = "vault://…"`)
//! and handed to `op` as `OP_SERVICE_ACCOUNT_TOKEN` in its environment, never in argv.
//! `--account` is passed when `account` is configured.
//!
//! `op` exits 1 on every error and writes `[ERROR] <date> <time> <message>` to stderr; the
//! message is classified by the substrings 1Password's CLI uses (not found, not signed in,
//! 401/403, 429 throttling, …) and never shown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use outloop_core::backend::{Capabilities, Health, Probe, SecretBackend, expect_kind};
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

use crate::credential::{CredentialSource, Registry};

const KEYS: &[&str] = &[
    "op_path",
    "account",
    "service_account_token",
    "timeout_secs",
];

/// Largest value read from `op`'s stdout (16 MiB, room for file attachments).
const MAX_STDOUT: u64 = 16 << 20;
/// Stderr kept for classification (64 KiB); the rest is drained and dropped.
const MAX_STDERR: u64 = 64 << 10;

/// A 1Password backend instance (`[backends.<name>] kind = "onepassword"`).
///
/// Settings: `op_path` (default `op`, looked up on `PATH`), `account` (passed as
/// `--account`), `service_account_token` (optional secret reference) and `timeout_secs`
/// (default 60: the desktop app's unlock prompt waits for a human).
pub struct OnePasswordBackend {
    name: String,
    op: PathBuf,
    account: Option<String>,
    token_source: Option<CredentialSource>,
    token: tokio::sync::Mutex<Option<SecretValue>>,
    own: Mutex<Vec<SecretValue>>,
    timeout: Duration,
}

impl std::fmt::Debug for OnePasswordBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnePasswordBackend")
            .field("name", &self.name)
            .field("op", &self.op)
            .field("account", &self.account)
            .field(
                "service_account_token",
                &self.token_source.as_ref().map(|s| s.reference()),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The parts of `op item get --format json` used to find IDs (values are never parsed).
#[derive(Deserialize)]
struct Item {
    id: String,
    vault: IdOnly,
    #[serde(default)]
    fields: Vec<Field>,
    #[serde(default)]
    files: Vec<File>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct Section {
    id: String,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Deserialize)]
struct Field {
    id: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    section: Option<Section>,
}

#[derive(Deserialize)]
struct File {
    id: String,
    name: String,
    #[serde(default)]
    section: Option<Section>,
}

/// What one `op` run produced.
struct Run {
    ok: bool,
    stdout: Zeroizing<Vec<u8>>,
    stderr: String,
}

/// Whether 1Password's reference syntax can carry `s` as a segment: `A-Z a-z 0-9 - _ .`
/// and inner spaces (developer.1password.com/docs/cli/secret-reference-syntax).
fn plain_segment(s: &str) -> bool {
    !s.starts_with([' ', '-'])
        && !s.ends_with(' ')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
}

fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

impl OnePasswordBackend {
    /// Builds the backend from its `[backends.<name>]` settings. Nothing runs until the first
    /// read.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the key when a setting is unknown or malformed, or when
    /// `service_account_token` is not a secret reference.
    pub fn from_settings(
        name: &str,
        settings: &BTreeMap<String, toml::Value>,
        registry: &Registry,
    ) -> Result<Self> {
        if let Some(k) = settings.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::config(format!(
                "backends.{name}.{k}: unknown key (expected one of {})",
                KEYS.join(", ")
            )));
        }
        let string = |key: &str| -> Result<Option<String>> {
            match settings.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(Error::config(format!(
                    "backends.{name}.{key}: expected a non-empty string"
                ))),
            }
        };
        let account = string("account")?;
        if account.as_deref().is_some_and(|a| a.starts_with('-')) {
            return Err(Error::config(format!(
                "backends.{name}.account: must not start with `-`"
            )));
        }
        let timeout = match settings.get("timeout_secs") {
            None => Duration::from_secs(60),
            Some(toml::Value::Integer(n)) if (1..=600).contains(n) => {
                Duration::from_secs(*n as u64)
            }
            Some(_) => {
                return Err(Error::config(format!(
                    "backends.{name}.timeout_secs: expected an integer from 1 to 600 (seconds)"
                )));
            }
        };
        Ok(Self {
            name: name.to_owned(),
            op: string("op_path")?.unwrap_or_else(|| "op".into()).into(),
            account,
            token_source: CredentialSource::from_settings(
                name,
                "service_account_token",
                settings,
                registry,
                false,
            )?,
            token: tokio::sync::Mutex::new(None),
            own: Mutex::new(Vec::new()),
            timeout,
        })
    }

    async fn service_token(&self) -> Result<Option<SecretValue>> {
        let Some(src) = &self.token_source else {
            return Ok(None);
        };
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            return Ok(Some(t.clone()));
        }
        let t = src.fetch().await?;
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t.clone());
        *slot = Some(t.clone());
        Ok(Some(t))
    }

    /// Runs `op <args…>` as described in the module docs.
    async fn run(&self, args: &[&str], what: &str) -> Result<Run> {
        self.run_as(args, what, true).await
    }

    /// Runs `op <args…>`; with `auth` false no service-account token is read or passed and no
    /// `--account` is added (for `op --version`).
    async fn run_as(&self, args: &[&str], what: &str, auth: bool) -> Result<Run> {
        let mut cmd = tokio::process::Command::new(&self.op);
        cmd.env_clear();
        for (k, v) in std::env::vars_os() {
            let Some(k) = k.to_str() else { continue };
            if matches!(k, "PATH" | "HOME" | "USER" | "LOGNAME" | "TMPDIR")
                || k.starts_with("XDG_")
                || k.starts_with("OP_")
            {
                cmd.env(k, v);
            }
        }
        let token = if auth {
            self.service_token().await?
        } else {
            None
        };
        if let Some(token) = token {
            let token = std::str::from_utf8(token.expose_secret())
                .ok()
                .filter(|t| !t.is_empty() && !t.contains('\0'))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Unauthenticated,
                        format!(
                            "backend `{}`: the service-account token is empty or not text",
                            self.name
                        ),
                    )
                })?;
            // A Connect server would take precedence over the service account.
            cmd.env_remove("OP_CONNECT_HOST")
                .env_remove("OP_CONNECT_TOKEN");
            cmd.env("OP_SERVICE_ACCOUNT_TOKEN", token);
        }
        if let Some(a) = self.account.as_ref().filter(|_| auth) {
            cmd.arg("--account").arg(a);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "backend `{}`: cannot run `{}` ({}); install the 1Password CLI v2 or set op_path",
                    self.name,
                    self.op.display(),
                    e.kind()
                ),
            )
        })?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::internal("stdout piped"))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| Error::internal("stderr piped"))?;
        let read_out = async {
            let mut buf = Zeroizing::new(Vec::with_capacity(4096));
            let mut chunk = Zeroizing::new([0u8; 8192]);
            loop {
                let n = stdout.read(&mut chunk[..]).await?;
                if n == 0 {
                    break;
                }
                if buf.len() as u64 + n as u64 > MAX_STDOUT {
                    return Err(std::io::Error::other("too large"));
                }
                if buf.capacity() < buf.len() + n {
                    let mut bigger = Zeroizing::new(Vec::with_capacity((buf.len() + n) * 2));
                    bigger.extend_from_slice(&buf);
                    buf = bigger;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Ok::<_, std::io::Error>(buf)
        };
        let read_err = async {
            let mut kept = Vec::new();
            (&mut stderr)
                .take(MAX_STDERR)
                .read_to_end(&mut kept)
                .await?;
            tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await?;
            Ok::<_, std::io::Error>(kept)
        };
        let all = async { tokio::join!(read_out, read_err, child.wait()) };
        let (out, err, status) = match tokio::time::timeout(self.timeout, all).await {
            Ok(r) => r,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "backend `{}`: {what}: `op` did not finish within {} s (an unlock prompt may be waiting)",
                        self.name,
                        self.timeout.as_secs()
                    ),
                ));
            }
        };
        let io = |e: std::io::Error| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "backend `{}`: {what}: reading `op`'s output: {}",
                    self.name,
                    e.kind()
                ),
            )
        };
        let status = status.map_err(io)?;
        let stdout = out.map_err(io)?;
        let stderr = String::from_utf8_lossy(&err.map_err(io)?).into_owned();
        Ok(Run {
            ok: status.success(),
            stdout,
            stderr,
        })
    }

    /// The error for a failed `op` run, classified from stderr; the text itself is not shown.
    fn classify(&self, what: &str, stderr: &str) -> Error {
        let has = |needles: &[&str]| needles.iter().any(|n| stderr.contains(n));
        let (kind, why) = if has(&[
            "isn't an item",
            "isn't a vault",
            "does not have a field",
            "isn't a field",
            "isn't a section",
            "no item found",
        ]) {
            (
                ErrorKind::NotFound,
                "1Password has no such vault, item, section or field",
            )
        } else if has(&["invalid secret reference", "too many '/'"]) {
            (
                ErrorKind::InvalidReference,
                "`op` refused the reference's syntax",
            )
        } else if has(&["(429)", "Too Many Requests", "rate limit"]) {
            (
                ErrorKind::RateLimited { retry_after: None },
                "1Password is throttling this account or service account (429)",
            )
        } else if has(&["(401)", "DecodeSACredentials", "invalid bearer token"]) {
            (
                ErrorKind::Unauthenticated,
                "1Password refused the service-account token",
            )
        } else if has(&[
            "not currently signed in",
            "No accounts configured",
            "no accounts configured",
            "could not find session token",
            "account is not signed in",
        ]) {
            (
                ErrorKind::Unauthenticated,
                "`op` is not signed in (turn on the desktop-app integration or configure service_account_token)",
            )
        } else if has(&[
            "authorization prompt dismissed",
            "authorization timeout",
            "authorization timed out",
        ]) {
            (
                ErrorKind::PermissionDenied,
                "the 1Password unlock prompt was dismissed or timed out",
            )
        } else if has(&["(403)", "Forbidden"]) {
            (
                ErrorKind::PermissionDenied,
                "1Password refused access to that vault (403)",
            )
        } else if has(&["context deadline exceeded", "timed out"]) {
            (ErrorKind::Timeout, "`op` timed out reaching 1Password")
        } else if has(&[
            "could not connect to 1Password desktop app",
            "connecting to desktop app",
            "RequestDelegatedSession",
        ]) {
            (
                ErrorKind::Unavailable,
                "`op` cannot reach the 1Password desktop app",
            )
        } else {
            (
                ErrorKind::Unavailable,
                "`op` failed with an error outloop does not recognise",
            )
        };
        Error::new(kind, format!("backend `{}`: {what}: {why}", self.name))
    }

    /// Rewrites a reference whose names 1Password's syntax cannot carry into ID form.
    async fn id_reference(&self, reference: &SecretRef, what: &str) -> Result<String> {
        let s = reference.segments();
        let (vault, item) = (&s[0], &s[1]);
        let (section, field) = if s.len() == 4 {
            (Some(s[2].as_str()), s[3].as_str())
        } else {
            (None, s[2].as_str())
        };
        let vault_arg = format!("--vault={vault}");
        let run = self
            .run(
                &["item", "get", &vault_arg, "--format=json", "--", item],
                what,
            )
            .await?;
        if !run.ok {
            return Err(self.classify(what, &run.stderr));
        }
        let parsed: Item = serde_json::from_slice(&run.stdout).map_err(|_| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "backend `{}`: {what}: `op item get` did not print the documented JSON",
                    self.name
                ),
            )
        })?;
        let in_section = |sec: &Option<Section>| match (section, sec) {
            (None, _) => true,
            (Some(want), Some(sec)) => {
                same_name(&sec.id, want) || sec.label.as_deref().is_some_and(|l| same_name(l, want))
            }
            (Some(_), None) => false,
        };
        let found = parsed
            .fields
            .iter()
            .find(|f| {
                in_section(&f.section)
                    && (same_name(&f.id, field)
                        || f.label.as_deref().is_some_and(|l| same_name(l, field)))
            })
            .map(|f| (f.id.as_str(), f.section.as_ref()))
            .or_else(|| {
                parsed
                    .files
                    .iter()
                    .find(|f| {
                        in_section(&f.section)
                            && (same_name(&f.name, field) || same_name(&f.id, field))
                    })
                    .map(|f| (f.id.as_str(), f.section.as_ref()))
            });
        let Some((field_id, sec)) = found else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "backend `{}`: {what}: the item has no such field",
                    self.name
                ),
            ));
        };
        let mut parts = vec![parsed.vault.id.as_str(), parsed.id.as_str()];
        if section.is_some()
            && let Some(sec) = sec
        {
            parts.push(sec.id.as_str());
        }
        parts.push(field_id);
        if !parts.iter().all(|p| plain_segment(p)) {
            return Err(Error::new(
                ErrorKind::InvalidReference,
                format!(
                    "backend `{}`: {what}: 1Password gave an ID its reference syntax cannot carry",
                    self.name
                ),
            ));
        }
        Ok(format!(
            "op://{}{}",
            parts.join("/"),
            query_string(reference)
        ))
    }
}

fn query_string(reference: &SecretRef) -> String {
    let mut out = String::new();
    for (i, (k, v)) in reference.query().iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

#[async_trait]
impl SecretBackend for OnePasswordBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::OnePassword
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read: true,
            ..Capabilities::default()
        }
    }

    /// Reads the reference with `op read --no-newline`, resolving names the reference syntax
    /// cannot carry to IDs first. The value is stdout byte for byte, only on exit status 0.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidReference`] for another kind or a query attribute that is not
    /// `[A-Za-z0-9_-]`; [`ErrorKind::NotFound`] (no such vault, item, section or field);
    /// [`ErrorKind::Unauthenticated`] (not signed in, bad service-account token);
    /// [`ErrorKind::PermissionDenied`] (403, prompt dismissed); [`ErrorKind::RateLimited`]
    /// (429); [`ErrorKind::Timeout`] (`timeout_secs` passed; the child is killed);
    /// [`ErrorKind::Unavailable`] (`op` missing, desktop app unreachable, unrecognised error).
    async fn get(&self, reference: &SecretRef) -> Result<SecretValue> {
        expect_kind(&self.name, BackendKind::OnePassword, reference)?;
        let what = format!("reading `{reference}`");
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        };
        if !reference
            .query()
            .iter()
            .all(|(k, v)| token_ok(k) && token_ok(v))
        {
            return Err(Error::new(
                ErrorKind::InvalidReference,
                format!(
                    "invalid secret reference `{reference}`: query attributes use A-Z, a-z, 0-9, `-` and `_`"
                ),
            ));
        }
        let op_ref = if reference.segments().iter().all(|s| plain_segment(s)) {
            format!(
                "op://{}{}",
                reference.segments().join("/"),
                query_string(reference)
            )
        } else {
            self.id_reference(reference, &what).await?
        };
        let run = self.run(&["read", "--no-newline", &op_ref], &what).await?;
        if !run.ok {
            return Err(self.classify(&what, &run.stderr));
        }
        Ok(SecretValue::new(run.stdout.to_vec()))
    }

    fn own_secrets(&self) -> Vec<SecretValue> {
        self.own.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks the CLI without reading any secret value:
    ///
    /// - installed: `op --version` (no token, no `--account`) runs within `timeout_secs`,
    ///   exits 0 and prints a version (`2.30.0`); a missing or non-executable `op_path`
    ///   fails here;
    /// - authenticated: `op whoami` ("Returns the currently active account or service
    ///   account. The command returns an error if no accounts are currently authenticated.",
    ///   developer.1password.com/docs/cli/reference/commands/whoami) with the same
    ///   environment as reads (the service-account token in `OP_SERVICE_ACCOUNT_TOKEN`,
    ///   never argv), its error classified as reads are; its output is not kept;
    /// - reachable: ok when `op whoami` answered (it talks to 1Password or the desktop app);
    ///   failed when `op` could not reach them or timed out; skipped when `op` refused
    ///   before contacting anything (not signed in).
    ///
    /// Caveat: third-party reports say that with the desktop-app integration (op 2.39)
    /// `op whoami` can fail with `account is not signed in` even though reads work; doctor
    /// then reports `authenticated FAILED` for a backend that may still read.
    async fn health(&self) -> Health {
        let installed = match self
            .run_as(&["--version"], "checking `op --version`", false)
            .await
        {
            Ok(run) => {
                let out = String::from_utf8_lossy(&run.stdout);
                let version = out.trim();
                if run.ok
                    && version.starts_with(|c: char| c.is_ascii_digit())
                    && version.len() <= 40
                    && version
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
                {
                    Probe::ok(format!("`{}` is op {version}", self.op.display()))
                } else {
                    return Health::not_installed(&Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "backend `{}`: `{} --version` did not print a 1Password CLI version",
                            self.name,
                            self.op.display()
                        ),
                    ));
                }
            }
            Err(e) => return Health::not_installed(&e),
        };
        let what = "checking sign-in with `op whoami`";
        let result = match self.run(&["whoami", "--format=json"], what).await {
            Ok(run) if run.ok => Ok(()),
            Ok(run) => Err(self.classify(what, &run.stderr)),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Health {
                installed,
                reachable: Probe::ok("`op whoami` answered"),
                authenticated: Probe::ok("signed in (`op whoami` exited 0)"),
            },
            Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout) => {
                Health::unreachable(installed, &e)
            }
            Err(e) if matches!(e.kind(), ErrorKind::RateLimited { .. }) => Health {
                installed,
                reachable: Probe::ok("1Password answered (throttling)"),
                authenticated: Probe::failed(&e),
            },
            Err(e) => Health {
                installed,
                reachable: Probe::skipped("`op` refused before contacting 1Password"),
                authenticated: Probe::failed(&e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_segments_follow_1passwords_syntax() {
        for ok in ["Private", "API Keys", "db.prod", "a-b_c", "x"] {
            assert!(plain_segment(ok), "{ok}");
        }
        for bad in ["a/b", "R&D", "-rf", " lead", "trail ", "Café", "it's"] {
            assert!(!plain_segment(bad), "{bad}");
        }
    }
}
