//! Workspace identity: which tenant a directory belongs to.
//!
//! A workspace is a directory tree bound, in the host config, to exactly one tenant. A
//! request's directory is canonicalized (symlinks and `..` resolved) and matched against the
//! bound directories component by component; the longest (innermost) bound prefix wins, so
//! `~/clients/acme-old` never matches a binding of `~/clients/acme`.

use std::path::{Path, PathBuf};

use crate::config::HostConfig;
use crate::error::{Error, ErrorKind, Result};

/// A directory resolved to its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The request's directory, canonical.
    pub dir: PathBuf,
    /// The bound directory that matched (a prefix of `dir`), canonical.
    pub root: PathBuf,
    /// The tenant the root is bound to.
    pub tenant: String,
}

/// Canonicalizes `dir`: resolves symlinks and `..`, and makes it absolute.
///
/// # Errors
///
/// [`ErrorKind::Io`] naming the directory when it does not exist or cannot be read.
pub fn canonical_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(dir).map_err(|e| Error::io("cannot resolve workspace directory", dir, e))
}

/// The working directory of the process at the other end of a Unix socket, as the OS reports
/// it: on Linux the peer's pid from `SO_PEERCRED`, then `/proc/<pid>/cwd` (absolute, with
/// symlinks resolved by the kernel).
/// Frontends that accept local connections (the daemon) use this for workspace identity, so a
/// client cannot claim another directory; without a socket, the caller's own working
/// directory is used instead.
///
/// # Errors
///
/// [`ErrorKind::Unavailable`] when the OS does not report the peer's pid or its working
/// directory (on platforms other than Linux, or when the peer has exited);
/// [`ErrorKind::Io`] when the directory cannot be resolved.
pub fn peer_dir(stream: &tokio::net::UnixStream) -> Result<PathBuf> {
    let cred = stream.peer_cred().map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot read the socket peer's credentials: {e}"),
        )
    })?;
    let pid = cred.pid().ok_or_else(|| {
        Error::new(
            ErrorKind::Unavailable,
            "the OS does not report the socket peer's pid",
        )
    })?;
    proc_cwd(pid)
}

#[cfg(target_os = "linux")]
fn proc_cwd(pid: i32) -> Result<PathBuf> {
    let link = PathBuf::from(format!("/proc/{pid}/cwd"));
    // The kernel reports the absolute path with symlinks resolved; [`resolve`] canonicalizes
    // it once more (and fails on a deleted directory, shown as `<path> (deleted)`).
    std::fs::read_link(&link).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot read the working directory of process {pid}: {e}"),
        )
    })
}

#[cfg(not(target_os = "linux"))]
fn proc_cwd(pid: i32) -> Result<PathBuf> {
    Err(Error::new(
        ErrorKind::Unavailable,
        format!("reading the working directory of process {pid} is not supported on this platform"),
    ))
}

/// Finds the tenant of the (already canonical) directory `dir`: the longest bound workspace
/// that is `dir` or one of its ancestors. `None` when no binding covers it.
pub fn find_binding(config: &HostConfig, dir: &Path) -> Option<(PathBuf, String)> {
    config
        .tenants
        .iter()
        .flat_map(|(name, t)| t.workspaces.iter().map(move |w| (w, name)))
        .filter(|(w, _)| dir.starts_with(w))
        .max_by_key(|(w, _)| w.components().count())
        .map(|(w, name)| (w.clone(), name.clone()))
}

/// Resolves `dir` to its workspace and tenant.
///
/// # Errors
///
/// [`ErrorKind::Io`] when `dir` cannot be canonicalized; [`ErrorKind::UnboundWorkspace`]
/// when no workspace binding covers it (the message says how to bind one).
pub fn resolve(config: &HostConfig, dir: &Path) -> Result<Workspace> {
    let dir = canonical_dir(dir)?;
    match find_binding(config, &dir) {
        Some((root, tenant)) => Ok(Workspace { dir, root, tenant }),
        None => Err(Error::new(
            ErrorKind::UnboundWorkspace,
            format!(
                "directory `{}` is not in any bound workspace; bind it with `outloop bind <dir> <tenant>`",
                dir.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Paths;

    fn config_with(home: &Path, bindings: &[(&str, &Path)]) -> HostConfig {
        let mut text = String::new();
        for (tenant, dir) in bindings {
            text.push_str(&format!(
                "[tenants.{tenant}]\nworkspaces = [{:?}]\n",
                dir.to_str().unwrap()
            ));
        }
        let paths = Paths::under(home);
        HostConfig::from_str_at(&paths, &paths.config_file(), &text).unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_socket_peer_s_working_directory_is_reported_by_the_os() {
        // A real socket pair: the peer is this process, so the OS reports our own cwd.
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        let dir = peer_dir(&a).unwrap();
        assert_eq!(
            dir,
            std::env::current_dir().unwrap().canonicalize().unwrap()
        );
    }

    #[test]
    fn longest_prefix_symlinks_dotdot_and_sibling_names() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let home = root.join("home");
        let acme = root.join("clients/acme");
        let acme_old = root.join("clients/acme-old");
        let nested = acme.join("sub/globex-part");
        for d in [&home, &acme, &acme_old, &nested] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&acme, root.join("link-to-acme")).unwrap();
        let cfg = config_with(&home, &[("acme", &acme), ("globex", &nested)]);

        let t = |p: PathBuf| resolve(&cfg, &p).map(|w| w.tenant);
        assert_eq!(t(acme.clone()).unwrap(), "acme");
        assert_eq!(t(acme.join("sub")).unwrap(), "acme");
        assert_eq!(
            t(nested.clone()).unwrap(),
            "globex",
            "innermost binding wins"
        );
        assert_eq!(
            t(root.join("link-to-acme/sub")).unwrap(),
            "acme",
            "symlink resolved"
        );
        assert_eq!(
            t(nested.join("../../../acme-old")).unwrap_err().kind(),
            ErrorKind::UnboundWorkspace,
            "`..` resolved, and acme-old is not acme"
        );
        assert_eq!(t(acme_old).unwrap_err().kind(), ErrorKind::UnboundWorkspace);
        assert_eq!(t(root.join("missing")).unwrap_err().kind(), ErrorKind::Io);
    }
}
