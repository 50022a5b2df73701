//! `outloop scan [DIR]`: finds likely credentials in a workspace.
//!
//! Every text file under `DIR` (`.env*` files, JSON, YAML, TOML and INI configs, source) is
//! read line by line and checked three ways:
//!
//! 1. against the token formats of common services ([`rules::RULES`]);
//! 2. for assignments to secret-like key names (`*_API_KEY`, `*_TOKEN`, `*_SECRET`, …) whose
//!    value looks like a key ([`rules::KEY_NAME_KIND`]);
//! 3. unless `--no-backends`, for the values already stored in Outloop's backends that can be
//!    read without a prompt (the embedded vault), in every encoding the redactor knows (raw,
//!    base64, hex, percent and JSON escapes, …): kind [`STORED_KIND`].
//!
//! The walk respects `.gitignore`, `.ignore` and `.git/info/exclude` (the `ignore` crate,
//! ripgrep's walker) even outside a git repository, unless `--include-ignored`, except that
//! `.env*` files in the directories it visits are always read (git ignoring them does not keep
//! an agent from reading them); it visits hidden files but never `.git/`, and does not follow
//! symlinks. A file or directory it cannot read is counted as `unreadable`, not fatal. Files over
//! [`MAX_FILE_BYTES`] and binary files (a NUL byte in the first [`BINARY_PROBE_BYTES`]) are
//! skipped and counted.
//!
//! A finding never holds the value: only the file, line, column, kind and a masked preview.
//! The exit code is 0 when nothing was found and [`FINDINGS_EXIT`] when something was.

pub mod rules;

use std::io::Read;
use std::path::{Path, PathBuf};

use outloop_core::config::{HostConfig, Paths};
use outloop_core::redact::{Redactor, RedactorBuilder, SecretRedactor};
use outloop_core::{BackendKind, Error, ErrorKind, Result};
use serde::Serialize;

use crate::cli::ScanArgs;

/// Exit code of `outloop scan` when it found something (0: nothing found; 1, 2, 4 keep their
/// meaning as errors).
pub const FINDINGS_EXIT: u8 = 6;

/// Files larger than this many bytes (1 MiB) are skipped.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// How many leading bytes are probed for a NUL byte to tell a binary file (8 KiB, as git does).
pub const BINARY_PROBE_BYTES: usize = 8 << 10;

/// The kind of a finding that is a value stored in one of Outloop's backends.
pub const STORED_KIND: &str = "stored-secret";

/// One finding. Its fields are the `--json` output's (stable names).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// The file, relative to the scanned directory, with `/` separators.
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (in characters) where the value starts; 0 when unknown (stored values).
    pub column: usize,
    /// The kind: a token format (`github-token`, …), `secret-assignment` or `stored-secret`.
    pub kind: String,
    /// For token formats: the service the token belongs to, e.g. `GitHub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'static str>,
    /// `pattern` (a token format), `name` (a secret-like key name) or `backend` (a stored value).
    pub source: &'static str,
    /// A masked preview: at most four characters of a public prefix, `…`, and the length.
    pub preview: String,
    /// For `stored-secret`: the reference the value is stored under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A file that was not read, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skipped {
    /// The file, relative to the scanned directory.
    pub path: String,
    /// `binary`, `too-large` or `unreadable`.
    pub reason: &'static str,
}

/// What one scan found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The scanned directory, canonical.
    pub root: String,
    /// Findings, ordered by path, line and column.
    pub findings: Vec<Finding>,
    /// How many files were read.
    pub files_scanned: usize,
    /// Files not read.
    pub skipped: Vec<Skipped>,
    /// How many stored values were searched for (0 with `--no-backends`).
    pub stored_values: usize,
}

/// The scan's options, from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also read files that `.gitignore` and friends exclude.
    pub include_ignored: bool,
    /// Do not read Outloop's backends.
    pub no_backends: bool,
}

/// Stored values to look for: one redactor per reference (to name which one matched) and one
/// over all of them (to skip files that hold none quickly).
struct Stored {
    all: SecretRedactor,
    each: Vec<(String, SecretRedactor)>,
}

/// Runs `outloop scan`: prints the findings (text or JSON) and returns the exit code.
///
/// # Errors
///
/// [`ErrorKind::Usage`] when `dir` is not a directory; the config's and the vault's errors
/// when backends are read (pass `--no-backends` to scan without them).
pub async fn run(paths: &Paths, args: &ScanArgs) -> Result<u8> {
    let opts = &Options {
        include_ignored: args.include_ignored,
        no_backends: args.no_backends,
    };
    let json = args.json;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let root = std::fs::canonicalize(&dir)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            let problem = if dir.exists() {
                "is not a directory"
            } else {
                "does not exist"
            };
            Error::new(
                ErrorKind::Usage,
                format!("scan: `{}` {problem}", dir.display()),
            )
        })?;
    let stored = if opts.no_backends {
        None
    } else {
        stored_values(paths).await?
    };
    let report = scan_dir(&root, opts, stored.as_ref())?;
    if json {
        outln!(
            "{}",
            serde_json::to_string(&report).map_err(|e| Error::internal(e.to_string()))?
        );
    } else {
        for f in &report.findings {
            let reference = f
                .reference
                .as_deref()
                .map(|r| format!("  (stored as {r})"))
                .unwrap_or_default();
            outln!(
                "{}:{}:{}: {}  {}{}",
                f.path,
                f.line,
                f.column,
                f.kind,
                f.preview,
                reference
            );
        }
        let binary = report
            .skipped
            .iter()
            .filter(|s| s.reason == "binary")
            .count();
        let large = report
            .skipped
            .iter()
            .filter(|s| s.reason == "too-large")
            .count();
        errln!(
            "outloop scan: {} finding{} in {} file{} ({} stored value{} searched; skipped {binary} binary, {large} over 1 MiB, {} unreadable)",
            report.findings.len(),
            if report.findings.len() == 1 { "" } else { "s" },
            report.files_scanned,
            if report.files_scanned == 1 { "" } else { "s" },
            report.stored_values,
            if report.stored_values == 1 { "" } else { "s" },
            report.skipped.len() - binary - large
        );
    }
    Ok(if report.findings.is_empty() {
        0
    } else {
        FINDINGS_EXIT
    })
}

/// Reads every value of every vault backend (the backends readable without a prompt).
/// `Ok(None)` when there is no host config yet.
async fn stored_values(paths: &Paths) -> Result<Option<Stored>> {
    if !paths.config_file().exists() {
        return Ok(None);
    }
    let cfg = HostConfig::load(paths)?;
    let backends = outloop_backends::from_config(&cfg)?;
    let mut all = RedactorBuilder::new().floor(cfg.redaction.floor);
    let mut each = Vec::new();
    for b in backends
        .iter()
        .filter(|b| b.kind() == BackendKind::Vault && b.capabilities().list)
    {
        for r in b.list().await? {
            let value = b.get(&r).await?;
            let label = r.to_string();
            let mut one = RedactorBuilder::new().floor(cfg.redaction.floor);
            // A value the redactor refuses (shorter than the floor) cannot be searched for.
            if one.add(&label, &value).is_ok() && all.add(&label, &value).is_ok() {
                each.push((label, one.try_build()?));
            }
        }
    }
    Ok(Some(Stored {
        all: all.try_build()?,
        each,
    }))
}

fn scan_dir(root: &Path, opts: &Options, stored: Option<&Stored>) -> Result<Report> {
    let mut report = Report {
        root: root.display().to_string(),
        stored_values: stored.map_or(0, |s| s.each.len()),
        ..Report::default()
    };
    let ignore = !opts.include_ignored;
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .parents(ignore)
        .ignore(ignore)
        .git_ignore(ignore)
        .git_global(ignore)
        .git_exclude(ignore)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(std::ffi::OsStr::cmp)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let rel_of = |path: &Path| {
        path.strip_prefix(root)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    };
    let mut scanned = std::collections::BTreeSet::new();
    // `.env*` files the ignore rules hide from the walk, found in the directories it visits.
    let mut dotenvs = std::collections::BTreeSet::new();
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                // A directory or file the walk cannot read is counted, not fatal.
                report.skipped.push(Skipped {
                    path: walk_error_path(&e).map_or_else(|| "?".to_owned(), &rel_of),
                    reason: "unreadable",
                });
                continue;
            }
        };
        let Some(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if ignore {
                dotenv_files(entry.path(), &mut dotenvs);
            }
            continue;
        }
        if !file_type.is_file() {
            continue;
        }
        scanned.insert(entry.path().to_path_buf());
        scan_one(entry.path(), rel_of(entry.path()), stored, &mut report);
    }
    for path in dotenvs.difference(&scanned) {
        scan_one(path, rel_of(path), stored, &mut report);
    }
    Ok(report)
}

/// Scans one file into `report`, or records why it was skipped.
fn scan_one(path: &Path, rel: String, stored: Option<&Stored>, report: &mut Report) {
    match read_text(path) {
        Ok(text) => {
            report.files_scanned += 1;
            scan_text(&rel, &text, stored, &mut report.findings);
        }
        Err(reason) => report.skipped.push(Skipped { path: rel, reason }),
    }
}

/// Adds the regular `.env*` files directly in `dir` to `out`. They are read even when
/// `.gitignore` lists them: git ignoring a file does not stop an agent from reading it, and
/// `.env` is the file most projects ignore.
fn dotenv_files(dir: &Path, out: &mut std::collections::BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".env")
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            out.insert(entry.path());
        }
    }
}

/// The path a walk error is about, when it names one.
fn walk_error_path(e: &ignore::Error) -> Option<&Path> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            walk_error_path(err)
        }
        _ => None,
    }
}

/// Reads a file as text, or says why not (`binary`, `too-large`, `unreadable`).
fn read_text(path: &Path) -> std::result::Result<String, &'static str> {
    let f = std::fs::File::open(path).map_err(|_| "unreadable")?;
    let len = f.metadata().map_err(|_| "unreadable")?.len();
    if len > MAX_FILE_BYTES {
        return Err("too-large");
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|_| "unreadable")?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err("too-large");
    }
    if buf[..buf.len().min(BINARY_PROBE_BYTES)].contains(&0) {
        return Err("binary");
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Finds everything in one file's text, appending to `out` in line order.
fn scan_text(path: &str, text: &str, stored: Option<&Stored>, out: &mut Vec<Finding>) {
    let detector = rules::Detector::get();
    let has_stored = stored.is_some_and(|s| s.all.redact(text.as_bytes()).count > 0);
    for (i, line) in text.lines().enumerate() {
        if has_stored && let Some(s) = stored {
            let matched: Vec<&String> = s
                .each
                .iter()
                .filter(|(_, r)| r.redact(line.as_bytes()).count > 0)
                .map(|(label, _)| label)
                .collect();
            if !matched.is_empty() {
                // A known value: name where it is stored; the format detectors would only
                // repeat the finding.
                for label in matched {
                    out.push(Finding {
                        path: path.to_owned(),
                        line: i + 1,
                        column: 0,
                        kind: STORED_KIND.to_owned(),
                        service: None,
                        source: "backend",
                        preview: "… (stored value)".to_owned(),
                        reference: Some(label.clone()),
                    });
                }
                continue;
            }
        }
        for h in detector.line(line) {
            out.push(Finding {
                path: path.to_owned(),
                line: i + 1,
                column: line[..h.start].chars().count() + 1,
                kind: h.kind.to_owned(),
                service: h.service,
                source: if h.kind == rules::KEY_NAME_KIND {
                    "name"
                } else {
                    "pattern"
                },
                preview: h.preview,
                reference: None,
            });
        }
    }
}
