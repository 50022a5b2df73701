//! The one public error type, [`Error`], and its [`ErrorKind`].

use std::fmt;
use std::time::Duration;

/// What went wrong, as a kind a caller can match on.
///
/// New kinds may be added; match with a wildcard arm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The host config is malformed or inconsistent (file, line and key are in the message).
    Config,
    /// A command-line or API argument is malformed.
    Usage,
    /// A secret reference cannot be parsed or represented.
    InvalidReference,
    /// An action parameter is missing, unknown, malformed or out of range.
    InvalidParameter,
    /// No action or alias by that name exists in the host config.
    UnknownAction,
    /// The workspace is not bound to any tenant.
    UnboundWorkspace,
    /// Policy denied the request (the message holds the reason and the rule).
    PolicyDenied,
    /// The request needs a human's approval that was not given.
    ApprovalRequired,
    /// The backend has no secret at that reference.
    NotFound,
    /// The backend needs a login, or the login failed.
    Unauthenticated,
    /// The backend refused access to that secret.
    PermissionDenied,
    /// The backend or upstream asked us to slow down.
    RateLimited {
        /// How long the backend asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The backend or upstream cannot be reached or is not configured here.
    Unavailable,
    /// The backend or upstream did not answer in time.
    Timeout,
    /// The upstream could not be reached (connection refused, DNS failure, TLS failure).
    UpstreamUnreachable,
    /// A safety check refused the request or response: egress to a private address,
    /// a response over the size cap, an undecodable content encoding.
    SafetyRefused,
    /// A secret value cannot be used (empty, shorter than the redaction floor).
    InvalidSecret,
    /// The audit log could not be written or does not verify.
    Audit,
    /// A local file or OS operation failed.
    Io,
    /// A bug: an invariant did not hold.
    Internal,
}

impl ErrorKind {
    /// The `outloop` exit code for this kind, as DESIGN.md fixes them: 1 internal error,
    /// 2 usage or config error, 3 denied by policy, 4 backend error, 5 upstream unreachable,
    /// timed out or refused by a safety check.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Config
            | ErrorKind::Usage
            | ErrorKind::InvalidReference
            | ErrorKind::InvalidParameter
            | ErrorKind::UnknownAction => 2,
            ErrorKind::UnboundWorkspace | ErrorKind::PolicyDenied | ErrorKind::ApprovalRequired => {
                3
            }
            ErrorKind::NotFound
            | ErrorKind::Unauthenticated
            | ErrorKind::PermissionDenied
            | ErrorKind::RateLimited { .. }
            | ErrorKind::Unavailable
            | ErrorKind::InvalidSecret => 4,
            ErrorKind::Timeout | ErrorKind::UpstreamUnreachable | ErrorKind::SafetyRefused => 5,
            ErrorKind::Audit | ErrorKind::Io | ErrorKind::Internal => 1,
        }
    }

    /// A short, stable, snake_case name for the kind, used in JSON output and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Usage => "usage",
            ErrorKind::InvalidReference => "invalid_reference",
            ErrorKind::InvalidParameter => "invalid_parameter",
            ErrorKind::UnknownAction => "unknown_action",
            ErrorKind::UnboundWorkspace => "unbound_workspace",
            ErrorKind::PolicyDenied => "policy_denied",
            ErrorKind::ApprovalRequired => "approval_required",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::RateLimited { .. } => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::UpstreamUnreachable => "upstream_unreachable",
            ErrorKind::SafetyRefused => "safety_refused",
            ErrorKind::InvalidSecret => "invalid_secret",
            ErrorKind::Audit => "audit",
            ErrorKind::Io => "io",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether retrying the same operation later may succeed (rate limits, timeouts,
    /// unavailable backends).
    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited { .. } | ErrorKind::Timeout | ErrorKind::Unavailable
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outloop's error: a kind, a one-line message that never holds a secret, and an optional
/// source.
///
/// The message is written for the person at the terminal: it names the file, key, parameter,
/// backend or action involved. Constructors take the message as given, so callers must never
/// put a secret value, a vendor response body or a child process's output into it.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    temporary: bool,
}

impl Error {
    /// An error of `kind` with a one-line `message` (no secret, no vendor body).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let mut message = message.into();
        // One line, always: a stray newline would let text spill into logs as fake records.
        if message.contains(['\n', '\r']) {
            message = message.replace(['\n', '\r'], " ");
        }
        Self {
            kind,
            message,
            source: None,
            temporary: false,
        }
    }

    /// An [`ErrorKind::RateLimited`] error carrying how long the backend asked us to wait
    /// (from an HTTP `Retry-After` header, or a CLI's own hint), when it said.
    pub fn rate_limited(
        message: impl Into<String>,
        retry_after: Option<std::time::Duration>,
    ) -> Self {
        Self::new(ErrorKind::RateLimited { retry_after }, message)
    }

    /// Marks the error as temporary: the same operation may succeed if retried (an HTTP 5xx,
    /// a dropped connection). The retry layer
    /// ([`RetryBackend`](crate::backend::retry::RetryBackend)) retries only rate limits and
    /// errors marked this way. Never mark a failed login: retrying it can lock an identity.
    pub fn temporary(mut self) -> Self {
        self.temporary = true;
        self
    }

    /// Whether retrying the same operation later may succeed: a rate limit, or an error a
    /// backend marked with [`Error::temporary`]. Authentication and permission failures are
    /// never retryable, whatever they were marked.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Unauthenticated | ErrorKind::PermissionDenied => false,
            ErrorKind::RateLimited { .. } => true,
            _ => self.temporary,
        }
    }

    /// How long the backend asked us to wait before retrying, for
    /// [`ErrorKind::RateLimited`] errors that carried one; `None` otherwise.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::RateLimited { retry_after } => retry_after,
            _ => None,
        }
    }

    /// A copy of the kind, message and temporary mark, without the source (which need not be
    /// `Clone`). Used to hand one backend failure to every caller that waited on it.
    pub fn clone_shallow(&self) -> Self {
        Self {
            kind: self.kind,
            message: self.message.clone(),
            source: None,
            temporary: self.temporary,
        }
    }

    /// Attaches the underlying cause. Its `Display` is not part of [`Error`]'s `Display`,
    /// so a source that might carry sensitive text stays out of user-facing output.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with context, e.g. the file or key being processed.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }

    /// Shorthand for [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// An [`ErrorKind::Io`] error naming the `path` and the operation.
    pub fn io(op: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{op} {}: {err}", path.display())).with_source(err)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `Result` with Outloop's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_on_one_line() {
        let e = Error::new(ErrorKind::Config, "a\nb\rc");
        assert_eq!(e.to_string(), "a b c");
    }

    #[test]
    fn exit_codes_follow_design() {
        assert_eq!(ErrorKind::Config.exit_code(), 2);
        assert_eq!(ErrorKind::PolicyDenied.exit_code(), 3);
        assert_eq!(ErrorKind::UnboundWorkspace.exit_code(), 3);
        assert_eq!(ErrorKind::NotFound.exit_code(), 4);
        assert_eq!(ErrorKind::SafetyRefused.exit_code(), 5);
        assert_eq!(ErrorKind::Internal.exit_code(), 1);
    }
}
