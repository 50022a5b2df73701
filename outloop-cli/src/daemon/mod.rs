//! The per-user daemon (`outloop serve`), its client, and `outloop status`.
//!
//! One daemon per user listens on a Unix socket in a private runtime directory:
//! `$OUTLOOP_HOME/run/outloop.sock` when `OUTLOOP_HOME` is set, else
//! `$XDG_RUNTIME_DIR/outloop/outloop.sock`, else `<state dir>/run/outloop.sock`. The directory
//! is 0700 and the socket 0600, and the daemon refuses peers of another uid. Every CLI command
//! that runs the broker (`call`, `actions`, `policy explain`, `mcp`, `exec`) goes through the
//! daemon when one answers, and runs the broker in-process otherwise (or when
//! `OUTLOOP_NO_DAEMON=1`), with the same output and exit codes. See [`protocol`] for the wire
//! format, [`exec_client`] for `outloop exec`'s session, and `crate::mcp` for the MCP server.

pub mod client;
mod exec;
pub mod exec_client;
pub mod protocol;
pub mod server;

use std::path::{Path, PathBuf};

use outloop_core::config::Paths;
use outloop_core::{Error, ErrorKind, Result};

/// The socket's file name inside the runtime directory.
pub const SOCKET_NAME: &str = "outloop.sock";

/// The lock file a running daemon holds (exclusive `flock`) for its lifetime, beside the
/// socket, so two `outloop serve` never race for one socket.
pub const LOCK_NAME: &str = "outloop.lock";

/// The environment variable that, set to `1`, makes every command run the broker in-process
/// even when a daemon runs.
pub const NO_DAEMON_ENV: &str = "OUTLOOP_NO_DAEMON";

/// The per-user runtime directory that holds the socket: `$OUTLOOP_HOME/run` when
/// `OUTLOOP_HOME` is set (tests stay isolated), else `$XDG_RUNTIME_DIR/outloop` when that is
/// an absolute path, else `<state dir>/run`.
pub fn run_dir(paths: &Paths) -> PathBuf {
    if std::env::var_os("OUTLOOP_HOME").is_some_and(|h| !h.is_empty()) {
        return paths.state_dir.join("run");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(x) if x.is_absolute() => x.join("outloop"),
        _ => paths.state_dir.join("run"),
    }
}

/// The daemon's socket path: [`run_dir`] joined with [`SOCKET_NAME`].
pub fn socket_path(paths: &Paths) -> PathBuf {
    run_dir(paths).join(SOCKET_NAME)
}

/// Whether `OUTLOOP_NO_DAEMON` asks for the in-process broker.
pub fn disabled() -> bool {
    std::env::var_os(NO_DAEMON_ENV).is_some_and(|v| v == "1")
}

/// This process's effective uid.
pub fn own_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Refuses a socket peer whose uid is not the daemon's own: the daemon serves exactly one
/// user.
///
/// # Errors
///
/// [`ErrorKind::PermissionDenied`] naming both uids when they differ.
pub fn check_peer_uid(peer_uid: u32, own_uid: u32) -> Result<()> {
    if peer_uid == own_uid {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "the outloop daemon serves uid {own_uid} only and refused a peer of uid {peer_uid}"
            ),
        ))
    }
}

/// Creates the runtime directory `dir` (mode 0700) or checks an existing one: it must be a
/// directory owned by this uid; group and other permission bits are removed.
///
/// # Errors
///
/// [`ErrorKind::Io`] when it cannot be created or read, is not a directory, or belongs to
/// another uid.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    outloop_core::audit::create_private_dir(dir)
        .map_err(|e| Error::io("cannot create the runtime directory", dir, e))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io("cannot read the runtime directory", dir, e))?;
    if !meta.is_dir() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("runtime directory {} is not a directory", dir.display()),
        ));
    }
    if meta.uid() != own_uid() {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "runtime directory {} belongs to uid {}, not to this user (uid {})",
                dir.display(),
                meta.uid(),
                own_uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("cannot make private (0700)", dir, e))?;
    }
    Ok(())
}

/// Hardens this process against leaking secrets through memory dumps: no core dumps
/// (`RLIMIT_CORE` 0, soft and hard) and, on Linux, not dumpable (`prctl(PR_SET_DUMPABLE, 0)`:
/// no core file, no `ptrace` attach by same-uid processes, `/proc/<pid>` owned by root).
///
/// # Errors
///
/// [`ErrorKind::Io`] when the OS refuses either setting.
pub fn harden_process() -> Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot turn core dumps off (RLIMIT_CORE): {e}"),
        )
    })?;
    #[cfg(target_os = "linux")]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot make the process non-dumpable (PR_SET_DUMPABLE): {e}"),
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_of_another_uid_is_refused() {
        assert!(check_peer_uid(1000, 1000).is_ok());
        assert!(check_peer_uid(0, 0).is_ok());
        for (peer, own) in [(1001, 1000), (0, 1000), (1000, 0), (u32::MAX, 1000)] {
            let e = check_peer_uid(peer, own).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied);
            assert!(e.message().contains(&format!("uid {peer}")), "{e}");
        }
    }

    #[test]
    fn the_runtime_directory_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/run");
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // An existing directory with loose modes is tightened.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A file in its place is refused.
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(ensure_private_dir(&file).unwrap_err().kind(), ErrorKind::Io);
    }
}
