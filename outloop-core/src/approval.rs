//! Human approval of held requests.
//!
//! A request that policy decides `approve` is written here as a pending approval bound to the
//! exact request (action or alias, tenant, canonical parameters, method and path) and waits.
//! A human decides with `outloop approve <id>` or `outloop reject <id>` from outside every
//! bound workspace. An approval is single-use (the waiting request consumes it) and expires
//! (5 minutes by default). When the waiting request goes away first (its caller was
//! interrupted or disconnected), its approval is withdrawn, so no human approves a request
//! that will never run. Each approval is one JSON file, mode 0600, in
//! `<state dir>/approvals/`, changed under an exclusive lock on a sibling lock file.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::create_private_dir;
use crate::error::{Error, ErrorKind, Result};

/// The default time a held request waits for a human, in seconds.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 300;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    /// Waiting for a human.
    Pending,
    /// Approved; the waiting request may consume it once.
    Approved,
    /// Rejected by a human.
    Rejected,
    /// Used by the request it was made for.
    Consumed,
    /// Not decided in time.
    Expired,
    /// The waiting request went away before it could run (its caller was interrupted or
    /// disconnected); nothing was sent.
    Withdrawn,
}

/// One held request and its decision. The fields are the JSON file's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// A random id (UUID v4), what `outloop approve` takes.
    pub id: String,
    /// When it was held, Unix seconds.
    pub created: i64,
    /// When it expires, Unix seconds.
    pub expires: i64,
    /// The workspace root the request came from.
    pub workspace: String,
    /// The tenant.
    pub tenant: String,
    /// The action name, or `alias:<name>`.
    pub action: String,
    /// The HTTP method.
    pub method: String,
    /// The full canonical parameters, so the human sees exactly what will run.
    pub params: serde_json::Value,
    /// The rule that asked for approval.
    pub rule: String,
    /// Where it stands.
    pub state: ApprovalState,
}

/// The approvals directory.
#[derive(Debug, Clone)]
pub struct ApprovalStore {
    dir: PathBuf,
}

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("approvals {}: {what}: {e}", path.display()),
    )
}

impl ApprovalStore {
    /// The store in `dir` (created on first use, mode 0700).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn lock(&self) -> Result<File> {
        create_private_dir(&self.dir).map_err(|e| io(&self.dir, "cannot create", e))?;
        let p = self.dir.join(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| io(&p, "cannot open", e))?;
        f.lock().map_err(|e| io(&p, "cannot lock", e))?;
        Ok(f)
    }

    fn path(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("`{id}` is not an approval id"),
            ));
        }
        Ok(self.dir.join(format!("{id}.json")))
    }

    fn write(&self, a: &Approval) -> Result<()> {
        use std::io::Write;
        let path = self.path(&a.id)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|e| io(&self.dir, "cannot write", e))?;
        let bytes = serde_json::to_vec_pretty(a).map_err(|e| Error::internal(e.to_string()))?;
        tmp.write_all(&bytes)
            .and_then(|()| tmp.as_file().sync_data())
            .map_err(|e| io(&path, "cannot write", e))?;
        tmp.persist(&path)
            .map_err(|e| io(&path, "cannot replace", e.error))?;
        Ok(())
    }

    fn read(&self, id: &str) -> Result<Approval> {
        let path = self.path(id)?;
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::Usage,
                    format!("no approval `{id}` (see `outloop approvals`)"),
                )
            } else {
                io(&path, "cannot read", e)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("approval {} is damaged: {e}", path.display()),
            )
        })
    }

    /// Holds a request: writes a pending approval and returns it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the store cannot be written.
    pub fn hold(&self, mut approval: Approval) -> Result<Approval> {
        let _lock = self.lock()?;
        approval.state = ApprovalState::Pending;
        self.write(&approval)?;
        Ok(approval)
    }

    /// Every approval still pending and not expired at `now`, oldest first.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the store cannot be read.
    pub fn pending(&self, now: i64) -> Result<Vec<Approval>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir, "cannot list", e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json")
                && let Ok(a) = self.read(id)
                && a.state == ApprovalState::Pending
                && a.expires > now
            {
                out.push(a);
            }
        }
        out.sort_by_key(|a| (a.created, a.id.clone()));
        Ok(out)
    }

    /// Records a human's decision on a pending approval.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] when the id is unknown, already decided or expired.
    pub fn decide(&self, id: &str, approve: bool, now: i64) -> Result<Approval> {
        let _lock = self.lock()?;
        let mut a = self.read(id)?;
        if a.state != ApprovalState::Pending {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "approval `{id}` is already {}",
                    serde_json::to_string(&a.state)
                        .unwrap_or_default()
                        .trim_matches('"')
                ),
            ));
        }
        if a.expires <= now {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("approval `{id}` has expired"),
            ));
        }
        a.state = if approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Rejected
        };
        self.write(&a)?;
        Ok(a)
    }

    /// For a waiting request that goes away: withdraws its approval if it is still pending,
    /// or approved but not yet consumed, and returns the state it found.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] when the id is unknown; [`ErrorKind::Io`] when the store cannot
    /// be read or written.
    pub fn withdraw(&self, id: &str) -> Result<ApprovalState> {
        let _lock = self.lock()?;
        let mut a = self.read(id)?;
        let found = a.state;
        if matches!(found, ApprovalState::Pending | ApprovalState::Approved) {
            a.state = ApprovalState::Withdrawn;
            self.write(&a)?;
        }
        Ok(found)
    }

    /// For the waiting request: consumes an approved approval (single use), marks a pending
    /// one expired once `now` passes its expiry, and returns the state it found.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the store cannot be read or written.
    pub fn poll(&self, id: &str, now: i64) -> Result<ApprovalState> {
        let _lock = self.lock()?;
        let mut a = self.read(id)?;
        let found = a.state;
        match a.state {
            ApprovalState::Approved => a.state = ApprovalState::Consumed,
            ApprovalState::Pending if a.expires <= now => a.state = ApprovalState::Expired,
            _ => {
                return Ok(if found == ApprovalState::Pending {
                    found
                } else {
                    a.state
                });
            }
        }
        self.write(&a)?;
        Ok(if found == ApprovalState::Pending {
            ApprovalState::Expired
        } else {
            found
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(store: &ApprovalStore, id: &str, now: i64) -> Approval {
        store
            .hold(Approval {
                id: id.into(),
                created: now,
                expires: now + 300,
                workspace: "/w".into(),
                tenant: "acme".into(),
                action: "sendgrid.send".into(),
                method: "POST".into(),
                params: serde_json::json!({"to": "a@example.com"}),
                rule: "r".into(),
                state: ApprovalState::Approved,
            })
            .unwrap()
    }

    #[test]
    fn approve_is_single_use_reject_and_expiry_end_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = ApprovalStore::new(dir.path().join("approvals"));
        let a = held(&s, "0001", 100);
        assert_eq!(
            a.state,
            ApprovalState::Pending,
            "hold always starts pending"
        );
        assert_eq!(s.pending(100).unwrap().len(), 1);
        assert_eq!(s.poll("0001", 101).unwrap(), ApprovalState::Pending);
        s.decide("0001", true, 102).unwrap();
        assert_eq!(s.poll("0001", 103).unwrap(), ApprovalState::Approved);
        assert_eq!(
            s.poll("0001", 104).unwrap(),
            ApprovalState::Consumed,
            "single use"
        );
        assert!(
            s.decide("0001", true, 105)
                .unwrap_err()
                .to_string()
                .contains("already consumed")
        );

        held(&s, "0002", 100);
        s.decide("0002", false, 101).unwrap();
        assert_eq!(s.poll("0002", 102).unwrap(), ApprovalState::Rejected);

        held(&s, "0003", 100);
        assert!(s.pending(400).unwrap().is_empty());
        assert_eq!(s.poll("0003", 400).unwrap(), ApprovalState::Expired);
        assert!(s.decide("0003", true, 401).is_err());
        assert!(
            s.decide("../etc", true, 1)
                .unwrap_err()
                .to_string()
                .contains("not an approval id")
        );
    }

    /// A withdrawn approval leaves the pending list and can no longer be decided; one
    /// already consumed, rejected or expired stays as it was.
    #[test]
    fn withdraw_ends_a_pending_or_approved_approval_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = ApprovalStore::new(dir.path().join("approvals"));
        held(&s, "0001", 100);
        assert_eq!(s.withdraw("0001").unwrap(), ApprovalState::Pending);
        assert!(s.pending(101).unwrap().is_empty());
        let e = s.decide("0001", true, 102).unwrap_err();
        assert!(e.to_string().contains("already withdrawn"), "{e}");
        assert_eq!(s.poll("0001", 103).unwrap(), ApprovalState::Withdrawn);

        held(&s, "0002", 100);
        s.decide("0002", true, 101).unwrap();
        assert_eq!(s.withdraw("0002").unwrap(), ApprovalState::Approved);
        assert_eq!(s.poll("0002", 102).unwrap(), ApprovalState::Withdrawn);

        held(&s, "0003", 100);
        s.decide("0003", false, 101).unwrap();
        assert_eq!(s.withdraw("0003").unwrap(), ApprovalState::Rejected);
        assert_eq!(s.poll("0003", 102).unwrap(), ApprovalState::Rejected);
        assert!(s.withdraw("0009").is_err(), "an unknown id");
    }
}
