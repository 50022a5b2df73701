//! The audit log: one JSON line per attempt, chained by SHA-256, written durably.
//!
//! Each record holds the SHA-256 (hex) of the previous line's bytes in `prev` (64 zeros for
//! the first), so `outloop audit verify` detects any changed, inserted or removed line.
//! Records never hold a secret: parameters are recorded by name only.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One attempt, allowed or denied. Field names are the JSON Lines format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// A random id for the request (UUID v4).
    pub request_id: String,
    /// The canonical directory the request came from.
    pub workspace: String,
    /// The tenant, when the workspace resolved to one.
    pub tenant: Option<String>,
    /// The action name, or `alias:<name>`.
    pub action: String,
    /// The names of the parameters given (never their values).
    pub params: Vec<String>,
    /// `allow`, `deny` or `approve`; `error` when the request failed before a decision.
    pub decision: String,
    /// The rule that decided, when policy ran.
    pub rule: Option<String>,
    /// Why: the denial reason or the error message (never a secret).
    pub reason: Option<String>,
    /// `ok` when the action ran, else the error kind (`policy_denied`, `timeout`, …).
    pub outcome: String,
    /// The upstream HTTP status, when there was a response.
    pub status: Option<u16>,
    /// Time from arrival to this record, in milliseconds.
    pub duration_ms: u64,
    /// How many secret occurrences were replaced in the response.
    pub redactions: usize,
    /// For an alias request, its method and path (`GET /crm/v3/objects`); never the query or
    /// the body. Absent for actions (and from records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// How many of the `redactions` were hit only by a case-folded form of a secret (the
    /// value upper- or lower-cased by the upstream), never by an exact form. Absent when 0
    /// (and from records written before it existed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub folded: usize,
    /// The tenants whose planted canary value (`[tenants.<name>] canaries`) was seen in the
    /// response or output, each once. A canary is never sent by Outloop, so any entry is an
    /// alert: see `alert`. Absent when empty (and from records written before it existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<String>,
    /// One line for the human when something needs a look, e.g. ``canary of tenant `globex`
    /// seen in the response``; never a secret. Absent when there is nothing to raise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// SHA-256 (lower-case hex) of the previous line's bytes, without its newline.
    pub prev: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl AuditRecord {
    /// Records what redaction found beyond the count: adds `folded` (runs hit only by a
    /// case-folded form) and the tenants in `canaries` (each kept once, in order), and sets
    /// `alert` to name every canary tenant seen so far in `place` (e.g. `the response`).
    /// Counts in `redactions` are not touched.
    pub fn note_findings(&mut self, folded: usize, canaries: &[String], place: &str) {
        self.folded += folded;
        for t in canaries {
            if !self.canaries.contains(t) {
                self.canaries.push(t.clone());
            }
        }
        if !self.canaries.is_empty() {
            let names: Vec<String> = self.canaries.iter().map(|t| format!("`{t}`")).collect();
            self.alert = Some(format!(
                "canary of tenant {} seen in {place}: a planted fake value came back, so something copied it where it does not belong",
                names.join(", ")
            ));
        }
    }
}

/// Appends one record durably.
pub trait AuditSink: Send + Sync {
    /// Fills in `record.prev` and appends the record; returns once it is on disk (fsynced).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Audit`] when the log cannot be opened, locked, read or written. The broker
    /// then fails the request: an attempt that cannot be audited does not return a result.
    fn append(&self, record: &mut AuditRecord) -> Result<()>;
}

/// The built-in audit log: a JSON Lines file, appended under an exclusive file lock so
/// concurrent processes keep the chain intact.
///
/// Appends from many threads of one process are **group-committed**: while one append writes
/// and fsyncs, the records that arrive queue up; the next writer takes the whole queue, chains
/// the records in arrival order, writes them with one `write` and one `fsync`, and wakes their
/// callers. Each [`AuditSink::append`] still returns only once its own record is on disk.
/// Clones share the queue.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    group: Arc<Group>,
}

/// The group-commit queue shared by an [`AuditLog`] and its clones.
#[derive(Debug, Default)]
struct Group {
    state: Mutex<GroupState>,
    done: Condvar,
}

/// What a committed record's caller gets back: its `prev`, or the batch's error.
type Committed = std::result::Result<String, (ErrorKind, String)>;

#[derive(Debug, Default)]
struct GroupState {
    /// Records waiting for the next batch, with their tickets, in arrival order.
    queue: Vec<(u64, AuditRecord)>,
    next_ticket: u64,
    /// Whether a thread is writing a batch now.
    writing: bool,
    /// Outcomes of written batches not yet picked up by their callers.
    results: HashMap<u64, Committed>,
    /// Batches written (one `fsync` each), for tests and measurements.
    syncs: u64,
}

fn audit_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Audit,
        format!("audit log {}: {what}: {e}", path.display()),
    )
    .with_source(e)
}

/// SHA-256 of `line` as lower-case hex.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// Reads the last line (without its newline) of a file whose length is `len`.
fn last_line(f: &mut File, len: u64) -> std::io::Result<Option<Vec<u8>>> {
    if len == 0 {
        return Ok(None);
    }
    let mut chunk = 4096u64;
    loop {
        let start = len.saturating_sub(chunk);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        Read::by_ref(f).take(len - start).read_to_end(&mut buf)?;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if let Some(pos) = body.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(body[pos + 1..].to_vec()));
        }
        if start == 0 {
            return Ok(Some(body.to_vec()));
        }
        chunk *= 4;
    }
}

impl AuditLog {
    /// An audit log at `path` (created on first append, with its directory, mode 0600).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            group: Arc::default(),
        }
    }

    /// How many batches this log (and its clones) has written, each with one `fsync`; with
    /// concurrent appenders it is lower than the number of records.
    pub fn syncs(&self) -> u64 {
        self.lock_group().syncs
    }

    fn lock_group(&self) -> MutexGuard<'_, GroupState> {
        // Poisoning means a panic while holding the lock; the queue itself stays consistent.
        self.group.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `batch` under the file lock: chains each record to the line before (setting its
    /// `prev`), appends them with one write and makes them durable with one fsync.
    fn write_batch(&self, batch: &mut [(u64, AuditRecord)]) -> Result<()> {
        let mut f = self.open_append()?;
        f.lock()
            .map_err(|e| audit_err(&self.path, "cannot lock", e))?;
        let len = f
            .metadata()
            .map_err(|e| audit_err(&self.path, "cannot stat", e))?
            .len();
        if len > 0 {
            let mut end = [0u8; 1];
            f.seek(SeekFrom::Start(len - 1))
                .and_then(|_| f.read_exact(&mut end))
                .map_err(|e| audit_err(&self.path, "cannot read", e))?;
            if end[0] != b'\n' {
                // Appending would glue this record onto a damaged line and break the chain.
                return Err(Error::new(
                    ErrorKind::Audit,
                    format!(
                        "audit log {}: the last line is incomplete; nothing more is appended until it is repaired or moved aside (see `outloop audit verify`)",
                        self.path.display()
                    ),
                ));
            }
        }
        let last = last_line(&mut f, len).map_err(|e| audit_err(&self.path, "cannot read", e))?;
        let mut prev = last.map_or_else(|| GENESIS.to_owned(), |l| line_hash(&l));
        let mut out = Vec::new();
        for (_, record) in batch.iter_mut() {
            record.prev = prev;
            let line = serde_json::to_vec(record)
                .map_err(|e| Error::internal(format!("cannot encode audit record: {e}")))?;
            prev = line_hash(&line);
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
        f.write_all(&out)
            .and_then(|()| f.sync_data())
            .map_err(|e| audit_err(&self.path, "cannot write", e))?;
        // Make a new file's directory entry durable too.
        if len == 0
            && let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        // The lock is released when `f` is closed.
        Ok(())
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_append(&self) -> Result<File> {
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(&self.path) {
            // The directory is created only when missing, not on every batch.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = self.path.parent() {
                    create_private_dir(dir)
                        .map_err(|e| audit_err(dir, "cannot create directory", e))?;
                }
                opts.open(&self.path)
            }
            other => other,
        }
        .map_err(|e| audit_err(&self.path, "cannot open", e))
    }

    /// Reads the last `n` records (all when `n` is `None`), oldest first.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Audit`] when the file cannot be read or a line is not a record. A missing
    /// log reads as empty.
    pub fn tail(&self, n: Option<usize>) -> Result<Vec<AuditRecord>> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(audit_err(&self.path, "cannot open", e)),
        };
        let mut out = std::collections::VecDeque::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| audit_err(&self.path, "cannot read", e))?;
            let rec: AuditRecord = serde_json::from_str(&line).map_err(|e| {
                Error::new(
                    ErrorKind::Audit,
                    format!(
                        "audit log {}:{}: not a record: {e}",
                        self.path.display(),
                        i + 1
                    ),
                )
            })?;
            out.push_back(rec);
            if n.is_some_and(|n| out.len() > n) {
                out.pop_front();
            }
        }
        Ok(out.into())
    }

    /// Checks the chain: every line is a record and its `prev` is the SHA-256 of the line
    /// before. Returns the number of records checked.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Audit`] naming the first line that does not verify and why. A missing or
    /// empty log verifies with 0 records.
    pub fn verify(&self) -> Result<usize> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(audit_err(&self.path, "cannot read", e)),
        };
        if bytes.is_empty() {
            return Ok(0);
        }
        let bad = |line: usize, why: String| {
            Error::new(
                ErrorKind::Audit,
                format!(
                    "audit log {}:{line}: chain broken: {why}",
                    self.path.display()
                ),
            )
        };
        let Some(body) = bytes.strip_suffix(b"\n") else {
            return Err(bad(
                bytes.split(|&b| b == b'\n').count(),
                "the last line is incomplete".into(),
            ));
        };
        let mut prev = GENESIS.to_owned();
        let mut count = 0;
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let rec: AuditRecord = serde_json::from_slice(line)
                .map_err(|e| bad(i + 1, format!("not a record ({e})")))?;
            if rec.prev != prev {
                return Err(bad(
                    i + 1,
                    "`prev` does not match the SHA-256 of the line before".into(),
                ));
            }
            prev = line_hash(line);
            count += 1;
        }
        Ok(count)
    }
}

impl AuditSink for AuditLog {
    fn append(&self, record: &mut AuditRecord) -> Result<()> {
        let mut st = self.lock_group();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, record.clone()));
        loop {
            if let Some(outcome) = st.results.remove(&ticket) {
                return match outcome {
                    Ok(prev) => {
                        record.prev = prev;
                        Ok(())
                    }
                    Err((kind, message)) => Err(Error::new(kind, message)),
                };
            }
            if st.writing || st.queue.is_empty() {
                st = self.group.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead the next batch: everything queued so far, this record included if it is
            // still waiting.
            st.writing = true;
            let mut batch = std::mem::take(&mut st.queue);
            drop(st);
            let written = self.write_batch(&mut batch);
            st = self.lock_group();
            st.writing = false;
            st.syncs += 1;
            for (t, rec) in batch {
                let outcome = match &written {
                    Ok(()) => Ok(rec.prev),
                    Err(e) => Err((e.kind(), e.message().to_owned())),
                };
                st.results.insert(t, outcome);
            }
            self.group.done.notify_all();
        }
    }
}

/// Creates `dir` and its parents; new directories get mode 0700 on Unix.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str) -> AuditRecord {
        AuditRecord {
            time: "2026-11-30T00:00:00.000Z".into(),
            request_id: "r".into(),
            workspace: "/w".into(),
            tenant: Some("acme".into()),
            action: action.into(),
            params: vec!["limit".into()],
            decision: "allow".into(),
            rule: None,
            reason: None,
            outcome: "ok".into(),
            status: Some(200),
            duration_ms: 1,
            redactions: 0,
            request: None,
            folded: 0,
            canaries: Vec::new(),
            alert: None,
            prev: String::new(),
        }
    }

    #[test]
    fn chain_appends_verifies_and_detects_a_changed_byte() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("state/audit.jsonl"));
        assert_eq!(log.verify().unwrap(), 0);
        for i in 0..5 {
            log.append(&mut record(&format!("a{i}"))).unwrap();
        }
        assert_eq!(log.verify().unwrap(), 5);
        let recs = log.tail(Some(2)).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
            ["a3", "a4"]
        );
        assert_eq!(log.tail(None).unwrap()[0].prev, GENESIS);

        let mut bytes = std::fs::read(log.path()).unwrap();
        let pos = bytes.windows(4).position(|w| w == b"\"a2\"").unwrap();
        bytes[pos + 1] = b'b';
        std::fs::write(log.path(), &bytes).unwrap();
        let e = log.verify().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Audit);
        assert!(e.to_string().contains(":4: chain broken"), "{e}");
    }

    /// Lines written before `folded`, `canaries` and `alert` existed (exact bytes of the old
    /// format, chained by hand) still read and verify, and a new record appended after them
    /// chains on.
    #[test]
    fn old_format_log_verifies_and_new_fields_are_skipped_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let first = r#"{"time":"2026-01-01T00:00:00.000Z","request_id":"r1","workspace":"/w","tenant":"acme","action":"echo","params":[],"decision":"allow","rule":"policy.tenants.acme.allow[0]","reason":null,"outcome":"ok","status":200,"duration_ms":3,"redactions":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
        let second = format!(
            r#"{{"time":"2026-01-01T00:00:01.000Z","request_id":"r2","workspace":"/w","tenant":"acme","action":"alias:crm","params":[],"decision":"allow","rule":null,"reason":null,"outcome":"ok","status":200,"duration_ms":3,"redactions":0,"request":"GET /x","prev":"{}"}}"#,
            line_hash(first.as_bytes())
        );
        std::fs::write(&path, format!("{first}\n{second}\n")).unwrap();
        let log = AuditLog::new(&path);
        assert_eq!(log.verify().unwrap(), 2);
        let old = log.tail(None).unwrap();
        assert_eq!((old[0].folded, old[0].canaries.len()), (0, 0));
        assert_eq!(old[0].alert, None);

        // A quiet record keeps the old shape: no new keys at all.
        log.append(&mut record("quiet")).unwrap();
        let mut loud = record("loud");
        loud.redactions = 2;
        loud.note_findings(1, &["globex".into()], "the response");
        loud.note_findings(0, &["globex".into()], "the response");
        log.append(&mut loud).unwrap();
        assert_eq!(log.verify().unwrap(), 4);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for key in ["\"folded\"", "\"canaries\"", "\"alert\""] {
            assert!(
                !lines[2].contains(key),
                "{key} in a quiet record: {}",
                lines[2]
            );
            assert!(lines[3].contains(key), "{key} missing: {}", lines[3]);
        }
        let back = log.tail(Some(1)).unwrap().remove(0);
        assert_eq!(back.folded, 1);
        assert_eq!(back.canaries, ["globex"]);
        assert_eq!(
            back.alert.as_deref(),
            Some(
                "canary of tenant `globex` seen in the response: a planted fake value came back, so something copied it where it does not belong"
            )
        );
    }

    #[test]
    fn concurrent_appenders_keep_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::thread::scope(|s| {
            for t in 0..8 {
                let path = path.clone();
                s.spawn(move || {
                    let log = AuditLog::new(path);
                    for i in 0..25 {
                        log.append(&mut record(&format!("t{t}-{i}"))).unwrap();
                    }
                });
            }
        });
        assert_eq!(AuditLog::new(&path).verify().unwrap(), 200);
    }

    #[test]
    fn group_commit_shares_fsyncs_and_each_append_returns_durable() {
        // 32 threads released together append through one log (one group): every append
        // returns only once its own line is in the file, the chain verifies, and batches
        // shared fsyncs (fewer syncs than records).
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        let threads = 32;
        let per = 10;
        let start = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            for t in 0..threads {
                let log = log.clone();
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    for i in 0..per {
                        let mut r = record(&format!("t{t}-{i}"));
                        r.request_id = format!("id-{t}-{i}");
                        log.append(&mut r).unwrap();
                        // Durable on return: the line is in the file, with the `prev` we got.
                        let text = std::fs::read_to_string(log.path()).unwrap();
                        let line = text
                            .lines()
                            .find(|l| l.contains(&format!("\"id-{t}-{i}\"")))
                            .expect("record in the file when append returns");
                        let back: AuditRecord = serde_json::from_str(line).unwrap();
                        assert_eq!(back.prev, r.prev);
                    }
                });
            }
        });
        assert_eq!(log.verify().unwrap(), threads * per);
        let syncs = log.syncs();
        assert!(
            syncs < (threads * per) as u64,
            "{syncs} fsyncs for {} records: no batch was shared",
            threads * per
        );
        // Each thread's records keep their order in the chain.
        let recs = log.tail(None).unwrap();
        for t in 0..threads {
            let mine: Vec<_> = recs
                .iter()
                .filter(|r| r.action.starts_with(&format!("t{t}-")))
                .map(|r| r.action.clone())
                .collect();
            let want: Vec<_> = (0..per).map(|i| format!("t{t}-{i}")).collect();
            assert_eq!(mine, want);
        }
    }

    #[test]
    fn a_failed_batch_fails_every_caller_in_it_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        log.append(&mut record("first")).unwrap();
        let good = std::fs::read(log.path()).unwrap();
        // A damaged (incomplete) last line: every concurrent append is refused.
        std::fs::write(log.path(), &good[..good.len() - 1]).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let log = log.clone();
                s.spawn(move || {
                    let e = log.append(&mut record(&format!("t{t}"))).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::Audit);
                    assert!(e.to_string().contains("incomplete"), "{e}");
                });
            }
        });
        assert_eq!(std::fs::read(log.path()).unwrap(), &good[..good.len() - 1]);
    }

    #[test]
    fn removed_line_and_truncated_tail_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        for i in 0..3 {
            log.append(&mut record(&format!("a{i}"))).unwrap();
        }
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(log.path(), format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(log.verify().unwrap_err().to_string().contains(":2:"));
        std::fs::write(log.path(), &text[..text.len() - 3]).unwrap();
        assert!(log.verify().unwrap_err().to_string().contains("incomplete"));
        // Nothing is glued onto the damaged line.
        let e = log.append(&mut record("after")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Audit);
        assert!(e.to_string().contains("the last line is incomplete"), "{e}");
        assert_eq!(
            std::fs::read_to_string(log.path()).unwrap(),
            &text[..text.len() - 3]
        );
    }
}
