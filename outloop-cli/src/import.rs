//! `outloop import <file> --tenant T`: moves the secrets of a `.env` (or JSON, YAML) file into
//! a writable backend, files them as the tenant's credentials, and rewrites the file so each
//! moved value is replaced by a note naming the credential.
//!
//! All or nothing:
//!
//! 1. **Plan and refuse up front**: parse the file; pick the entries that look like secrets
//!    (the `scan` detectors; `--all` takes every non-empty one at least as long as the
//!    redaction floor); refuse when a credential name
//!    is already the tenant's, a target reference already holds a value or is filed under a
//!    tenant, a key is given twice, or a value is shorter than the redaction floor.
//! 2. **Write** every value to the backend; **read every one back** and compare.
//! 3. **Rewrite** the text in memory and parse it again: every kept entry must be unchanged
//!    and no moved key may remain.
//! 4. Keep the original as a hard link (`.<name>.outloop-backup-<random>`, a new name, so no
//!    second copy of the plaintext is written and no user file is replaced), replace the file atomically (temp file, fsync, rename, same
//!    permissions), read it back.
//! 5. **File the credentials** in the host config (toml_edit, under the config lock).
//! 6. Remove the backup.
//!
//! A failure in 2–5 deletes every value written, puts the original file back and leaves the
//! config as it was. Values are never printed: the plan shows keys, lines, credential names
//! and references.

pub mod dotenv;
pub mod structured;

use std::path::Path;
use std::sync::Arc;

use outloop_core::backend::SecretBackend;
use outloop_core::config::{HostConfig, Paths};
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};

use crate::cli::{ImportArgs, ImportFormat};
use crate::scan::rules::Detector;
use dotenv::Entry;

/// The largest value `import` moves, in bytes (as `secret set`).
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// One entry that will be moved.
#[derive(Debug)]
pub struct Move {
    /// The key in the file.
    pub key: String,
    /// 1-based line of the key.
    pub line: usize,
    /// The credential name it is filed under.
    pub credential: String,
    /// Where the value is stored.
    pub reference: SecretRef,
    /// The bytes of the file replaced by the note.
    pub span: std::ops::Range<usize>,
    /// The value.
    pub value: SecretValue,
}

/// What `import` will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// The entries moved, in file order.
    pub moves: Vec<Move>,
    /// Entries kept in the file, with why: `(key, line, reason)`.
    pub kept: Vec<(String, usize, &'static str)>,
}

fn format_of(file: &Path, given: Option<ImportFormat>) -> ImportFormat {
    given.unwrap_or_else(|| {
        match file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
        {
            Some(e) if e == "json" => ImportFormat::Json,
            Some(e) if e == "yaml" || e == "yml" => ImportFormat::Yaml,
            _ => ImportFormat::Env,
        }
    })
}

/// Parses `text` in `format`; errors read `file:line: problem`.
fn parse(file: &Path, text: &str, format: ImportFormat) -> Result<Vec<Entry>> {
    let parsed = match format {
        ImportFormat::Env => dotenv::parse(text),
        ImportFormat::Json => structured::parse_json(text),
        ImportFormat::Yaml => structured::parse_yaml(text),
    };
    parsed.map_err(|e| {
        Error::new(
            ErrorKind::Usage,
            format!("{}:{}: {}", file.display(), e.line, e.message),
        )
    })
}

/// A key as printed: itself, or the scan's masked preview when the key text matches a token
/// format (a token pasted as a key must not be echoed).
pub fn shown_key(key: &str) -> String {
    match Detector::get().line(key).first() {
        Some(hit) => format!("<key {}>", hit.preview),
        None => key.to_owned(),
    }
}

/// The credential name for a key: `prefix` + the key lower-cased, characters other than
/// letters, digits, `-` and `_` as `_`.
pub fn credential_name(prefix: &str, key: &str) -> String {
    let mut s = String::from(prefix);
    s.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
    s
}

/// The reference a credential is stored under in a backend of `kind`: `vault://<tenant>/<name>`,
/// `keychain://outloop-<tenant>/<name>` or `secret-service://outloop-<tenant>/<name>`.
///
/// # Errors
///
/// [`ErrorKind::Usage`] for backend kinds `import` cannot name a reference in (1Password,
/// Infisical, Doppler: their paths are the user's to choose).
pub fn reference_for(kind: BackendKind, tenant: &str, name: &str) -> Result<SecretRef> {
    match kind {
        BackendKind::Vault | BackendKind::Memory => SecretRef::from_parts(kind, &[tenant, name]),
        BackendKind::Keychain | BackendKind::SecretService => {
            SecretRef::from_parts(kind, &[&format!("outloop-{tenant}"), name])
        }
        other => Err(Error::new(
            ErrorKind::Usage,
            format!(
                "import cannot choose references in a `{other}` backend; store values there with `outloop secret set` instead"
            ),
        )),
    }
}

/// Builds the plan and runs every up-front check.
///
/// # Errors
///
/// [`ErrorKind::Usage`] or [`ErrorKind::Config`] naming the key, credential or reference
/// that is refused; the backend's errors when it cannot be listed.
pub async fn plan(
    cfg: &HostConfig,
    backend: &dyn SecretBackend,
    entries: Vec<Entry>,
    tenant: &str,
    prefix: &str,
    all: bool,
    file: &Path,
) -> Result<Plan> {
    let tc = cfg.tenants.get(tenant).ok_or_else(|| {
        Error::config(format!(
            "no tenant `{tenant}` in the config; add it with `outloop tenant add {tenant}`"
        ))
    })?;
    let detector = Detector::get();
    let existing: Option<Vec<SecretRef>> = if backend.capabilities().list {
        Some(backend.list().await?)
    } else {
        None
    };
    let mut out = Plan::default();
    let at = |line: usize| format!("{}:{line}", file.display());
    for e in entries {
        if shown_key(&e.key) != e.key {
            out.kept.push((
                e.key,
                e.line,
                "the key itself looks like a secret; rename it",
            ));
            continue;
        }
        if e.value.is_empty() {
            out.kept.push((e.key, e.line, "empty"));
            continue;
        }
        if e.interpolated {
            out.kept.push((e.key, e.line, "refers to another variable"));
            continue;
        }
        let text = std::str::from_utf8(e.value.expose_secret()).unwrap_or("");
        let secret = detector.classify(&e.key, text).is_some();
        if all && !secret && e.value.len() < cfg.redaction.floor {
            out.kept.push((
                e.key,
                e.line,
                "shorter than the redaction floor, so not a secret outloop can redact",
            ));
            continue;
        }
        if !all && !secret {
            let why = if e.value.len() < cfg.redaction.floor {
                "does not look like a secret"
            } else {
                "does not look like a secret (--all moves it)"
            };
            out.kept.push((e.key, e.line, why));
            continue;
        }
        if let Some(first) = out.moves.iter().find(|m| m.key == e.key) {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "{}: {}: the key is also set on line {}; keep one",
                    at(e.line),
                    shown_key(&e.key),
                    first.line
                ),
            ));
        }
        let floor = cfg.redaction.floor;
        if e.value.len() < floor || e.value.len() > MAX_VALUE_BYTES {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "{}: {}: the value is {} bytes; values from {floor} to {MAX_VALUE_BYTES} bytes can be moved (a shorter one would blank out ordinary text when redacted)",
                    at(e.line),
                    e.key,
                    e.value.len()
                ),
            ));
        }
        let credential = credential_name(prefix, &e.key);
        let reference = reference_for(backend.kind(), tenant, &credential)?;
        if let Some(c) = tc.credentials.get(&credential) {
            return Err(Error::config(format!(
                "{}: {}: tenant `{tenant}` already has credential `{credential}` (= {}); pick another name with --prefix",
                at(e.line),
                e.key,
                c.reference
            )));
        }
        if out.moves.iter().any(|m| m.credential == credential) {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "{}: {}: another key also becomes credential `{credential}`",
                    at(e.line),
                    e.key
                ),
            ));
        }
        for (other, t) in &cfg.tenants {
            if let Some((c, _)) = t.credentials.iter().find(|(_, x)| x.reference == reference) {
                return Err(Error::config(format!(
                    "{}: {}: `{reference}` is already credential `{c}` of tenant `{other}`",
                    at(e.line),
                    e.key
                )));
            }
        }
        let taken = match &existing {
            Some(list) => list.contains(&reference),
            None => match backend.get(&reference).await {
                Ok(_) => true,
                Err(err) if err.kind() == ErrorKind::NotFound => false,
                Err(err) => return Err(err),
            },
        };
        if taken {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "{}: {}: `{reference}` already holds a secret; nothing was changed (delete it with `outloop secret delete {reference}` or pick another name with --prefix)",
                    at(e.line),
                    e.key
                ),
            ));
        }
        out.moves.push(Move {
            key: e.key,
            line: e.line,
            credential,
            reference,
            span: e.span,
            value: e.value,
        });
    }
    Ok(out)
}

/// The note that replaces a moved value.
fn note(format: ImportFormat, m: &Move) -> String {
    let text = format!(
        "moved to outloop: credential {} ({})",
        m.credential, m.reference
    );
    match format {
        ImportFormat::Json => serde_json::Value::String(text).to_string(),
        ImportFormat::Env | ImportFormat::Yaml => format!("# {} {text}", m.key),
    }
}

/// The file's text with every moved span replaced by its note.
fn rewrite(text: &str, format: ImportFormat, plan: &Plan) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for m in &plan.moves {
        out.push_str(&text[pos..m.span.start]);
        out.push_str(&note(format, m));
        pos = m.span.end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Parses the rewritten text and checks that kept entries are unchanged and moved keys gone
/// (JSON keeps the key, with the note as its value).
fn check_rewrite(
    file: &Path,
    before: &[Entry],
    after_text: &str,
    format: ImportFormat,
    plan: &Plan,
) -> Result<()> {
    let after = parse(file, after_text, format).map_err(|e| {
        Error::internal(format!(
            "the rewritten file would not parse ({}); nothing was changed",
            e.message()
        ))
    })?;
    let moved = |k: &str| plan.moves.iter().any(|m| m.key == k);
    let kept_before: Vec<_> = before.iter().filter(|e| !moved(&e.key)).collect();
    let kept_after: Vec<_> = after.iter().filter(|e| !moved(&e.key)).collect();
    let same = kept_before.len() == kept_after.len()
        && kept_before
            .iter()
            .zip(&kept_after)
            .all(|(a, b)| a.key == b.key && a.value == b.value);
    let leftover = after.iter().any(|e| {
        plan.moves
            .iter()
            .any(|m| m.key == e.key && e.value == m.value)
    });
    if !same || leftover {
        return Err(Error::internal(
            "the rewritten file would not keep the other entries exactly; nothing was changed",
        ));
    }
    Ok(())
}

/// Deletes what was written; returns a note for the error message when a delete failed.
async fn roll_back(backend: &dyn SecretBackend, written: &[SecretRef]) -> String {
    let mut failed = Vec::new();
    for r in written {
        if backend.delete(r).await.is_err() {
            failed.push(r.to_string());
        }
    }
    if failed.is_empty() {
        format!(
            "; the {} value(s) written were deleted and the file is unchanged",
            written.len()
        )
    } else {
        format!(
            "; could not delete {} (remove by hand with `outloop secret delete`)",
            failed.join(", ")
        )
    }
}

fn with_note(e: Error, note: &str) -> Error {
    Error::new(e.kind(), format!("{}{note}", e.message()))
}

/// Keeps the original of `file` as a hard link beside it, under a new name
/// `.<name>.outloop-backup-<random>` that no existing file has (the link is created with
/// `link(2)`, which fails rather than replace an existing name; `tempfile` retries with
/// another name). The returned path removes the backup when dropped; `keep` it to leave it.
fn make_backup(file: &Path) -> std::io::Result<tempfile::TempPath> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}.outloop-backup-"))
        .make_in(dir, |path| std::fs::hard_link(file, path))
        .map(tempfile::NamedTempFile::into_temp_path)
}

/// Replaces `file` with `bytes` atomically (temp file in the same directory, fsync, rename),
/// keeping its permissions.
fn replace_file(file: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = file.parent().unwrap_or(Path::new("."));
    let perms = std::fs::metadata(file)
        .map_err(|e| Error::io("cannot read", file, e))?
        .permissions();
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("cannot write in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io("cannot write", tmp.path(), e))?;
    std::fs::set_permissions(tmp.path(), perms)
        .map_err(|e| Error::io("cannot set permissions on", tmp.path(), e))?;
    tmp.persist(file)
        .map_err(|e| Error::io("cannot replace", file, e.error))?;
    Ok(())
}

/// Steps 2–6: writes, verifies, rewrites the file and calls `file_credentials` (the config
/// edit); on any failure undoes what was done.
///
/// # Errors
///
/// The first failure, with a note saying what was undone.
pub async fn apply(
    backend: &dyn SecretBackend,
    plan: &Plan,
    file: &Path,
    new_text: &str,
    file_credentials: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let mut written = Vec::new();
    for m in &plan.moves {
        if let Err(e) = backend.set(&m.reference, m.value.clone()).await {
            let note = roll_back(backend, &written).await;
            return Err(with_note(e, &note));
        }
        written.push(m.reference.clone());
    }
    for m in &plan.moves {
        let check = match backend.get(&m.reference).await {
            Ok(v) if v == m.value => Ok(()),
            Ok(_) => Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "{}: the value read back from `{}` differs from the one written",
                    m.key, m.reference
                ),
            )),
            Err(e) => Err(e),
        };
        if let Err(e) = check {
            let note = roll_back(backend, &written).await;
            return Err(with_note(e, &note));
        }
    }
    let backup = match make_backup(file) {
        Ok(b) => b,
        Err(e) => {
            let note = roll_back(backend, &written).await;
            return Err(with_note(
                Error::io("cannot keep a backup of", file, e),
                &note,
            ));
        }
    };
    let done = replace_file(file, new_text.as_bytes()).and_then(|()| {
        let back = std::fs::read(file).map_err(|e| Error::io("cannot read", file, e))?;
        if back == new_text.as_bytes() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{}: the rewritten file reads back differently",
                    file.display()
                ),
            ))
        }
    });
    let done = done.and_then(|()| file_credentials());
    match done {
        Ok(()) => {
            // Removes the link import made (and only that one).
            drop(backup.close());
            Ok(())
        }
        Err(e) => {
            let restored = std::fs::rename(&backup, file).is_ok();
            let mut note = roll_back(backend, &written).await;
            if restored {
                // The name is gone (renamed over the file): nothing to remove.
                drop(backup.keep());
            } else {
                let kept = backup.to_path_buf();
                drop(backup.keep());
                note.push_str(&format!(
                    "; the original file is kept as {}",
                    kept.display()
                ));
            }
            Err(with_note(e, &note))
        }
    }
}

/// Runs `outloop import`.
///
/// # Errors
///
/// As [`plan`] and [`apply`]; [`ErrorKind::Usage`] when the file cannot be read or parsed,
/// and [`ErrorKind::Config`] when the backend is unknown or not writable.
pub async fn run(paths: &Paths, args: &ImportArgs) -> Result<u8> {
    // Take the config lock before anything is checked or written and hold it through the
    // config edit: the tenant and its credentials are checked against the config as it will
    // be edited, and waiting for the lock (where Ctrl-C ends the process) comes before any
    // change.
    // The rule credential names follow in the config (`outloop_core::config`, `valid_name`):
    // letters, digits, `-`, `_` and `.`.
    if !args
        .prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || args.prefix.len() > 64
    {
        return Err(Error::new(
            ErrorKind::Usage,
            "import: --prefix: credential names use letters, digits, `-`, `_` and `.` (at most 64 characters here)",
        ));
    }
    let _lock = if args.dry_run {
        None
    } else {
        Some(crate::edit::lock_config(paths)?)
    };
    let cfg = HostConfig::load(paths)?;
    let file = &args.file;
    // The rewrite replaces the file by rename: through a symlink it would replace the link.
    if std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "import: `{}` is a symbolic link; import the file it points to",
                file.display()
            ),
        ));
    }
    // Only a regular file with one name: reading a FIFO or device would hang or never end, and
    // a rename replaces only this name, so another hard link would keep the values.
    if let Ok(m) = std::fs::symlink_metadata(file) {
        use std::os::unix::fs::MetadataExt;
        if !m.file_type().is_file() {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("import: `{}` is not a regular file", file.display()),
            ));
        }
        if m.nlink() > 1 {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "import: `{}` has {} hard links; the others would keep the values (import one with a single name)",
                    file.display(),
                    m.nlink()
                ),
            ));
        }
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        Error::new(
            ErrorKind::Usage,
            format!("import: cannot read `{}`: {e}", file.display()),
        )
    })?;
    let format = format_of(file, args.format);
    // A UTF-8 byte order mark is not part of the first key: parse without it, write it back.
    let (bom, text) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest.to_owned()),
        None => ("", text),
    };
    // Classic Mac line endings (CR only) would read as one long line.
    if format == ImportFormat::Env && text.contains('\r') && !text.contains('\n') {
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "import: `{}` ends its lines with CR only; convert it to LF (or CRLF) line endings first",
                file.display()
            ),
        ));
    }
    let entries = parse(file, &text, format)?;
    let backends = outloop_backends::from_config(&cfg)?;
    let backend = pick_backend(&backends, args.backend.as_deref())?;
    let before = parse(file, &text, format)?;
    let plan = plan(
        &cfg,
        backend.as_ref(),
        entries,
        &args.tenant,
        &args.prefix,
        args.all,
        file,
    )
    .await?;
    for m in &plan.moves {
        outln!(
            "{} {} (line {}) -> credential {} = {}",
            if args.dry_run { "would move" } else { "move" },
            m.key,
            m.line,
            m.credential,
            m.reference
        );
    }
    for (k, line, why) in &plan.kept {
        outln!("keep {} (line {line}): {why}", shown_key(k));
    }
    if plan.moves.is_empty() {
        outln!("nothing to move from {}", file.display());
        return Ok(0);
    }
    let new_text = rewrite(&text, format, &plan);
    check_rewrite(file, &before, &new_text, format, &plan)?;
    let new_text = format!("{bom}{new_text}");
    if args.dry_run {
        outln!(
            "dry run: {} value(s) would move to backend `{}` and tenant `{}`; nothing was changed",
            plan.moves.len(),
            backend.name(),
            args.tenant
        );
        return Ok(0);
    }
    let creds: Vec<(String, String)> = plan
        .moves
        .iter()
        .map(|m| (m.credential.clone(), m.reference.to_string()))
        .collect();
    // From the first write to the config edit, SIGINT, SIGTERM and SIGHUP do not end the
    // process half-way: they are held until the import has finished or been rolled back.
    let held = hold_signals();
    let done = apply(backend.as_ref(), &plan, file, &new_text, || {
        crate::edit::set_credentials_unlocked(paths, &args.tenant, &creds).map(drop)
    })
    .await;
    drop(held);
    done?;
    outln!(
        "moved {} value(s) to backend `{}`; tenant `{}` has the credentials; {} keeps a note where each value was",
        plan.moves.len(),
        backend.name(),
        args.tenant,
        file.display()
    );
    Ok(0)
}

/// Listeners that replace the default action (end the process) of SIGINT, SIGTERM and SIGHUP
/// while they are alive; a signal that arrives is only recorded. (tokio keeps its handler
/// installed after the listeners are dropped, so these signals stay held until exit, which
/// follows right after the import.)
fn hold_signals() -> Vec<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ]
    .into_iter()
    .filter_map(|k| signal(k).ok())
    .collect()
}

fn pick_backend(
    backends: &[Arc<dyn SecretBackend>],
    name: Option<&str>,
) -> Result<Arc<dyn SecretBackend>> {
    let found = match name {
        Some(n) => backends.iter().find(|b| b.name() == n),
        None => backends
            .iter()
            .find(|b| b.name() == "vault")
            .or_else(|| backends.iter().find(|b| b.kind() == BackendKind::Vault)),
    };
    let b = found.cloned().ok_or_else(|| {
        Error::config(format!(
            "import: no `[backends.{}]` table in the config",
            name.unwrap_or("vault")
        ))
    })?;
    let caps = b.capabilities();
    if !(caps.write && caps.read && caps.delete) {
        return Err(Error::config(format!(
            "import: backend `{}` cannot store, read back and delete values here",
            b.name()
        )));
    }
    Ok(b)
}

#[cfg(test)]
mod tests;
