//! [`Health`]: what `outloop doctor` reports for one backend.

use serde::Serialize;

use crate::error::Error;

/// The outcome of one health probe.
///
/// Serialized (for `outloop doctor --json`) as an object tagged by `status`:
/// `{"status":"ok","detail":"…"}`, `{"status":"failed","kind":"unavailable","message":"…"}`
/// or `{"status":"skipped","reason":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Probe {
    /// The check passed; `detail` says what was checked, in a few words.
    Ok {
        /// What was checked, e.g. `"session bus answered"`.
        detail: String,
    },
    /// The check failed.
    Failed {
        /// The error kind's stable name ([`crate::ErrorKind::as_str`]).
        kind: String,
        /// One line for the person at the terminal (never a secret, body or token).
        message: String,
    },
    /// The check was not made, e.g. because an earlier one failed.
    Skipped {
        /// Why not, in a few words.
        reason: String,
    },
}

impl Probe {
    /// A passed check.
    pub fn ok(detail: impl Into<String>) -> Self {
        Probe::Ok {
            detail: detail.into(),
        }
    }

    /// A failed check, from the error that failed it (its kind and one-line message).
    pub fn failed(error: &Error) -> Self {
        Probe::Failed {
            kind: error.kind().as_str().to_owned(),
            message: error.message().to_owned(),
        }
    }

    /// A check that was not made.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Probe::Skipped {
            reason: reason.into(),
        }
    }

    /// Whether the check failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, Probe::Failed { .. })
    }

    /// A short word for tables: `ok`, `FAILED` or `skipped`.
    pub fn word(&self) -> &'static str {
        match self {
            Probe::Ok { .. } => "ok",
            Probe::Failed { .. } => "FAILED",
            Probe::Skipped { .. } => "skipped",
        }
    }

    /// The detail, message or reason.
    pub fn text(&self) -> &str {
        match self {
            Probe::Ok { detail } => detail,
            Probe::Failed { message, .. } => message,
            Probe::Skipped { reason } => reason,
        }
    }
}

/// A backend's health: installed (its code and any CLI it needs are present), reachable
/// (its store or service answers) and authenticated (it may read, e.g. logged in, keyring
/// unlocked). Found without reading any secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The backend's code (and any CLI or library it drives) is present.
    pub installed: Probe,
    /// The store or service answers.
    pub reachable: Probe,
    /// The backend is logged in or unlocked, so reads can succeed.
    pub authenticated: Probe,
}

impl Health {
    /// Whether no probe failed (skipped probes do not count against it).
    pub fn is_ok(&self) -> bool {
        !(self.installed.is_failed()
            || self.reachable.is_failed()
            || self.authenticated.is_failed())
    }

    /// A health where `installed` failed with `error` and the rest were skipped.
    pub fn not_installed(error: &Error) -> Self {
        Health {
            installed: Probe::failed(error),
            reachable: Probe::skipped("not installed"),
            authenticated: Probe::skipped("not installed"),
        }
    }

    /// A health where the backend is installed, `reachable` failed with `error` and
    /// `authenticated` was skipped.
    pub fn unreachable(installed: Probe, error: &Error) -> Self {
        Health {
            installed,
            reachable: Probe::failed(error),
            authenticated: Probe::skipped("not reachable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn health_is_ok_unless_a_probe_failed() {
        let e = Error::new(ErrorKind::Unavailable, "no bus");
        let skipped = Health {
            installed: Probe::ok("built in"),
            reachable: Probe::skipped("x"),
            authenticated: Probe::skipped("x"),
        };
        assert!(skipped.is_ok());
        let bad = Health::unreachable(Probe::ok("built in"), &e);
        assert!(!bad.is_ok());
        let json = serde_json::to_value(&bad).unwrap();
        assert_eq!(json["reachable"]["status"], "failed");
        assert_eq!(json["reachable"]["kind"], "unavailable");
        assert_eq!(json["reachable"]["message"], "no bus");
        assert_eq!(json["authenticated"]["status"], "skipped");
        assert!(!Health::not_installed(&e).is_ok());
    }
}
