//! Comment-preserving edits of the host config with toml_edit. Every edit is validated by
//! loading the result as a [`HostConfig`] before the file is replaced atomically.

use std::path::Path;

use outloop_core::config::{HostConfig, Paths};
use outloop_core::{Error, Result};
use toml_edit::{Array, DocumentMut, Item, Table, value};

/// The config `outloop init` writes.
pub const TEMPLATE: &str = r#"# Outloop host config. Agents never read this file: keep it outside every workspace.
# Its shape is described in Outloop's README ("Host config").

# Action packs: TOML files holding [actions.*] and [aliases.*] tables.
include = ["actions/*.toml"]

# The embedded default backend: an age-encrypted file beside this config.
[backends.vault]
kind = "vault"

[egress]
# Loopback, private or link-local networks that upstreams may use, as CIDRs,
# e.g. ["127.0.0.0/8"] for a local test server. Empty: all such addresses are refused.
allow_private = []

[policy]
# What no rule allows is denied.
default = "deny"

# Tenants are added with `outloop tenant add <name>` and workspaces with
# `outloop bind <dir> <tenant>`; credentials with `outloop secret set <ref> --tenant T --credential NAME`.
"#;

/// Holds an exclusive lock on `config.toml.lock` while `edit` reads, changes and writes the
/// config, so concurrent edits never lose each other's changes.
fn locked<T>(paths: &Paths, edit: impl FnOnce() -> Result<T>) -> Result<T> {
    let lock_path = paths.config_dir.join("config.toml.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("cannot open", &lock_path, e))?;
    f.lock()
        .map_err(|e| Error::io("cannot lock", &lock_path, e))?;
    edit()
}

fn load_doc(paths: &Paths) -> Result<(String, DocumentMut)> {
    let file = paths.config_file();
    // Load through the validating loader first, so edits start from a good config.
    HostConfig::load(paths)?;
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io("cannot read", &file, e))?;
    let doc = text
        .parse::<DocumentMut>()
        .map_err(|e| Error::config(format!("{}: {}", file.display(), e.message())))?;
    Ok((text, doc))
}

/// Validates `doc` as a host config and writes it atomically (temp file, fsync, rename).
fn save(paths: &Paths, doc: &DocumentMut) -> Result<HostConfig> {
    let file = paths.config_file();
    let text = doc.to_string();
    let cfg = HostConfig::from_str_at(paths, &file, &text)?;
    write_atomic(&file, text.as_bytes())?;
    Ok(cfg)
}

/// Writes `bytes` to `file` through a temp file in the same directory and a rename; the mode of
/// the file replaced (a read-only config stays read-only), 0600 for a new file.
pub fn write_atomic(file: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("cannot write", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io("cannot write", tmp.path(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).map_or(0o600, |m| m.permissions().mode() & 0o7777);
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("cannot set permissions on", tmp.path(), e))?;
    }
    tmp.persist(file)
        .map_err(|e| Error::io("cannot replace", file, e.error))?;
    Ok(())
}

fn tenants_table(doc: &mut DocumentMut) -> Result<&mut Table> {
    let item = doc.entry("tenants").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    item.as_table_mut()
        .ok_or_else(|| Error::config("`tenants` in the config is not a table"))
}

/// Adds `[tenants.<name>]` with an empty workspace list and credentials table.
///
/// # Errors
///
/// [`outloop_core::ErrorKind::Config`] when the tenant exists or the name is invalid.
pub fn add_tenant(paths: &Paths, name: &str) -> Result<HostConfig> {
    locked(paths, || add_tenant_unlocked(paths, name))
}

fn add_tenant_unlocked(paths: &Paths, name: &str) -> Result<HostConfig> {
    let (_, mut doc) = load_doc(paths)?;
    let tenants = tenants_table(&mut doc)?;
    if tenants.contains_key(name) {
        return Err(Error::config(format!("tenant `{name}` already exists")));
    }
    let mut t = Table::new();
    t.insert("workspaces", value(Array::new()));
    let mut creds = Table::new();
    creds.set_implicit(false);
    t.insert("credentials", Item::Table(creds));
    tenants.insert(name, Item::Table(t));
    save(paths, &doc)
}

fn tenant_mut<'a>(doc: &'a mut DocumentMut, tenant: &str) -> Result<&'a mut Table> {
    tenants_table(doc)?
        .get_mut(tenant)
        .and_then(Item::as_table_mut)
        .ok_or_else(|| {
            Error::config(format!(
                "no tenant `{tenant}` in the config; add it with `outloop tenant add {tenant}`"
            ))
        })
}

/// Appends the canonical `dir` to the tenant's workspaces.
///
/// # Errors
///
/// [`outloop_core::ErrorKind::Config`] when the tenant does not exist or the directory is
/// already bound (to this or another tenant).
pub fn bind(paths: &Paths, dir: &Path, tenant: &str) -> Result<HostConfig> {
    locked(paths, || bind_unlocked(paths, dir, tenant))
}

fn bind_unlocked(paths: &Paths, dir: &Path, tenant: &str) -> Result<HostConfig> {
    let (_, mut doc) = load_doc(paths)?;
    let t = tenant_mut(&mut doc, tenant)?;
    let dir_s = dir
        .to_str()
        .ok_or_else(|| Error::config(format!("`{}` is not valid UTF-8", dir.display())))?;
    let ws = t
        .entry("workspaces")
        .or_insert_with(|| value(Array::new()))
        .as_array_mut()
        .ok_or_else(|| Error::config(format!("tenants.{tenant}.workspaces is not an array")))?;
    if ws.iter().any(|v| v.as_str() == Some(dir_s)) {
        return Err(Error::config(format!(
            "`{dir_s}` is already bound to tenant `{tenant}`"
        )));
    }
    ws.push(dir_s);
    save(paths, &doc)
}

/// Files `reference` as the tenant's credential `name` (replacing an earlier entry).
///
/// # Errors
///
/// [`outloop_core::ErrorKind::Config`] when the tenant does not exist.
pub fn set_credential(
    paths: &Paths,
    tenant: &str,
    name: &str,
    reference: &str,
) -> Result<HostConfig> {
    locked(paths, || {
        set_credential_unlocked(paths, tenant, name, reference)
    })
}

fn set_credential_unlocked(
    paths: &Paths,
    tenant: &str,
    name: &str,
    reference: &str,
) -> Result<HostConfig> {
    let (_, mut doc) = load_doc(paths)?;
    let t = tenant_mut(&mut doc, tenant)?;
    let creds = t
        .entry("credentials")
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_like_mut()
        .ok_or_else(|| Error::config(format!("tenants.{tenant}.credentials is not a table")))?;
    creds.insert(name, value(reference));
    save(paths, &doc)
}

/// Takes the exclusive lock on `config.toml.lock` and returns it (held until dropped), for a
/// caller that must check and edit the config as one step (`import`). When another process
/// holds it, prints `waiting for the config lock …` to stderr and blocks.
///
/// # Errors
///
/// [`outloop_core::ErrorKind::Io`] when the lock file cannot be opened or locked.
pub fn lock_config(paths: &Paths) -> Result<std::fs::File> {
    let lock_path = paths.config_dir.join("config.toml.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("cannot open", &lock_path, e))?;
    match f.try_lock() {
        Ok(()) => return Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            errln!("waiting for the config lock {} …", lock_path.display());
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::io("cannot lock", &lock_path, e));
        }
    }
    f.lock()
        .map_err(|e| Error::io("cannot lock", &lock_path, e))?;
    Ok(f)
}

/// Files several credentials of one tenant in one validated edit (`import`), for a caller
/// that holds [`lock_config`]. Refuses, changing nothing, when the tenant already has one of
/// the names.
///
/// # Errors
///
/// [`outloop_core::ErrorKind::Config`] when the tenant does not exist or already has one of
/// the credential names.
pub fn set_credentials_unlocked(
    paths: &Paths,
    tenant: &str,
    credentials: &[(String, String)],
) -> Result<HostConfig> {
    {
        let (_, mut doc) = load_doc(paths)?;
        let t = tenant_mut(&mut doc, tenant)?;
        let creds = t
            .entry("credentials")
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_like_mut()
            .ok_or_else(|| Error::config(format!("tenants.{tenant}.credentials is not a table")))?;
        for (name, reference) in credentials {
            if creds.contains_key(name) {
                return Err(Error::config(format!(
                    "tenant `{tenant}` already has credential `{name}`"
                )));
            }
            creds.insert(name, value(reference.as_str()));
        }
        save(paths, &doc)
    }
}
