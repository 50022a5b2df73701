//! Change detection for the host config: the config file and every file its `include` globs
//! match, by path, modification time, size and inode. The daemon and the MCP server use it to
//! pick up edits made by hand, so a policy change applies without a signal.

use std::path::{Path, PathBuf};

use outloop_core::config::Paths;

/// One file's identity for change detection: path, modification time, size, inode.
pub type Stamp = (PathBuf, Option<(std::time::SystemTime, u64, u64)>);

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok().map(|m| {
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let ino = 0;
        (m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len(), ino)
    });
    (path.to_path_buf(), meta)
}

/// The state of the config file and every file its `include` globs match now.
pub fn fingerprint(paths: &Paths) -> Vec<Stamp> {
    let file = paths.config_file();
    let mut out = vec![stamp(&file)];
    let includes = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("include").cloned());
    let base = file.parent().unwrap_or(Path::new("."));
    if let Some(toml::Value::Array(patterns)) = includes {
        for p in patterns.iter().filter_map(|p| p.as_str()) {
            let full = if Path::new(p).is_absolute() {
                PathBuf::from(p)
            } else {
                base.join(p)
            };
            if let Ok(entries) = glob::glob(&full.to_string_lossy()) {
                let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).collect();
                files.sort();
                out.extend(files.iter().map(|f| stamp(f)));
            }
        }
    }
    out
}

/// Whether every file in `stamps` is as it was (a cheap re-stat; files an `include` glob
/// newly matches are found by [`fingerprint`], not here).
pub fn unchanged(stamps: &[Stamp]) -> bool {
    stamps.iter().all(|s| stamp(&s.0) == *s)
}
