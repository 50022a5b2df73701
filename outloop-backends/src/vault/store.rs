//! The vault file: its plaintext document, age encryption, locking and atomic replacement.
//!
//! Plaintext document (UTF-8 JSON, inside the age encryption):
//!
//! ```json
//! {"version":1,"secrets":{"acme/echo-token":"<standard base64 of the value's bytes>"}}
//! ```
//!
//! Every buffer that holds plaintext (the document, base64 text, values) is a
//! [`Zeroizing`] buffer sized up front so it never reallocates and leaves a copy behind.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use outloop_core::{Error, ErrorKind, Result, SecretValue};
use serde::Deserialize;
use zeroize::Zeroizing;

/// The document version this code reads and writes.
pub(super) const VERSION: u32 = 1;

/// The vault's contents: vault path (`acme/echo-token`) → value.
pub(super) type Secrets = BTreeMap<String, SecretValue>;

/// Creates `dir` and its missing parents with mode 0700.
///
/// # Errors
///
/// [`ErrorKind::Io`] naming the directory.
pub(super) fn ensure_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| Error::io("cannot create directory", dir, e))
}

/// Creates a new file (failing if it exists) with mode 0600.
pub(super) fn create_new_private(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o.open(path)?;
    #[cfg(unix)]
    {
        // The umask can only remove bits from 0600; set it exactly anyway.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Flushes a directory entry change (create, rename) to disk; best effort, as some
/// filesystems refuse to sync a directory.
pub(super) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// The lock file beside the vault file: `<vault file>.lock`.
pub(super) fn lock_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    file.with_file_name(name)
}

/// Takes the exclusive writer lock on `<file>.lock`, blocking until it is free. The lock is
/// released when the returned file is dropped. The lock file itself is never deleted
/// (deleting it would let two writers lock two different files).
///
/// # Errors
///
/// [`ErrorKind::Io`] naming the lock file.
pub(super) fn lock(file: &Path) -> Result<File> {
    let path = lock_path(file);
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o
        .open(&path)
        .map_err(|e| Error::io("cannot open vault lock", &path, e))?;
    f.lock()
        .map_err(|e| Error::io("cannot lock vault lock file", &path, e))?;
    Ok(f)
}

/// Reads the encrypted vault file; `None` when it does not exist.
///
/// # Errors
///
/// [`ErrorKind::Io`] naming the file.
pub(super) fn read_ciphertext(file: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(file) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read vault", file, e)),
    }
}

/// Decrypts and parses a vault file's bytes. `location` describes the identity for messages.
///
/// # Errors
///
/// [`ErrorKind::Unauthenticated`] when the identity cannot open the file;
/// [`ErrorKind::Io`] when the file is not a well-formed vault.
pub(super) fn decrypt(
    file: &Path,
    ciphertext: &[u8],
    identity: &age::x25519::Identity,
    location: &str,
) -> Result<Secrets> {
    let damaged = |what: &str| {
        Error::new(
            ErrorKind::Io,
            format!("vault {} is damaged: {what}", file.display()),
        )
    };
    let decryptor =
        age::Decryptor::new(ciphertext).map_err(|_| damaged("it is not an age-encrypted file"))?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys | age::DecryptError::KeyDecryptionFailed => {
                Error::new(
                    ErrorKind::Unauthenticated,
                    format!(
                        "cannot decrypt vault {} with identity at {location}",
                        file.display()
                    ),
                )
            }
            _ => damaged("its age header is malformed or was altered"),
        })?;
    // The plaintext is shorter than the ciphertext, so this buffer never reallocates.
    let mut plaintext = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    reader
        .read_to_end(&mut plaintext)
        .map_err(|_| damaged("its encrypted payload does not authenticate"))?;
    decode_document(file, &plaintext)
}

/// Checks that `identity` unwraps the vault's file key, without decrypting the payload (so
/// no secret value is read): the `health` probe.
///
/// # Errors
///
/// As for [`decrypt`]'s header step: [`ErrorKind::Unauthenticated`] when the identity does
/// not open the vault, [`ErrorKind::Io`] when the header is damaged.
pub(super) fn unlocks(
    file: &Path,
    ciphertext: &[u8],
    identity: &age::x25519::Identity,
    location: &str,
) -> Result<()> {
    let damaged = |what: &str| {
        Error::new(
            ErrorKind::Io,
            format!("vault {} is damaged: {what}", file.display()),
        )
    };
    let decryptor =
        age::Decryptor::new(ciphertext).map_err(|_| damaged("it is not an age-encrypted file"))?;
    match decryptor.decrypt(std::iter::once(identity as &dyn age::Identity)) {
        // The payload reader is dropped unread.
        Ok(_payload) => Ok(()),
        Err(age::DecryptError::NoMatchingKeys | age::DecryptError::KeyDecryptionFailed) => {
            Err(Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "cannot decrypt vault {} with identity at {location}",
                    file.display()
                ),
            ))
        }
        Err(_) => Err(damaged("its age header is malformed or was altered")),
    }
}

/// Serializes and encrypts `secrets` to `recipient`.
///
/// # Errors
///
/// [`ErrorKind::Internal`] when age fails to encrypt to a memory buffer.
pub(super) fn encrypt(secrets: &Secrets, recipient: &age::x25519::Recipient) -> Result<Vec<u8>> {
    let plaintext = encode_document(secrets);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
            .map_err(|_| Error::internal("age refused the vault recipient"))?;
    let mut out = Vec::with_capacity(plaintext.len() + 512);
    let mut w = encryptor
        .wrap_output(&mut out)
        .map_err(|_| Error::internal("cannot start age encryption"))?;
    w.write_all(&plaintext)
        .and_then(|()| w.finish().map(drop))
        .map_err(|_| Error::internal("age encryption to memory failed"))?;
    Ok(out)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `file` with `bytes` atomically: writes a 0600 temp file in the same directory,
/// fsyncs it, renames it over `file` and fsyncs the directory. The caller holds the lock.
///
/// # Errors
///
/// [`ErrorKind::Io`] naming the file; the temp file is removed.
pub(super) fn write_atomic(file: &Path, bytes: &[u8]) -> Result<()> {
    let dir = file
        .parent()
        .ok_or_else(|| Error::internal(format!("vault path {} has no parent", file.display())))?;
    let mut name = std::ffi::OsString::from(".");
    name.push(file.file_name().unwrap_or_default());
    name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(name);
    let result = (|| {
        let mut f = create_new_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, file)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("cannot write vault", file, e));
    }
    sync_dir(dir);
    Ok(())
}

/// Writes the plaintext JSON document by hand, so the base64 text of each value goes straight
/// into one zeroizing buffer sized in advance.
fn encode_document(secrets: &Secrets) -> Zeroizing<Vec<u8>> {
    let header = format!("{{\"version\":{VERSION},\"secrets\":{{");
    let mut keys = Vec::with_capacity(secrets.len());
    let mut cap = header.len() + 3;
    for (k, v) in secrets {
        // Keys are vault paths, not secrets; serde_json escapes them.
        let key = serde_json::to_string(k).unwrap_or_else(|_| "\"\"".into());
        cap += key.len() + 4 + base64::encoded_len(v.len(), true).unwrap_or(0);
        keys.push(key);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(cap));
    out.extend_from_slice(header.as_bytes());
    for (i, ((_, v), key)) in secrets.iter().zip(&keys).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b":\"");
        let start = out.len();
        let n = base64::encoded_len(v.len(), true).unwrap_or(0);
        out.resize(start + n, 0);
        let written = STANDARD
            .encode_slice(v.expose_secret(), &mut out[start..])
            .unwrap_or(0);
        out.truncate(start + written);
        out.push(b'"');
    }
    out.extend_from_slice(b"}}");
    debug_assert!(out.len() <= cap, "the document buffer was sized too small");
    out
}

/// One base64 value, decoded straight into a [`SecretValue`]; errors never quote it.
struct B64Value(SecretValue);

impl<'de> Deserialize<'de> for B64Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        let mut buf = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(text.len())]);
        let n = STANDARD
            .decode_slice(text.as_bytes(), &mut buf)
            .map_err(|_| serde::de::Error::custom("a value is not valid base64"))?;
        Ok(B64Value(SecretValue::new(buf[..n].to_vec())))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    secrets: BTreeMap<String, B64Value>,
}

fn decode_document(file: &Path, plaintext: &[u8]) -> Result<Secrets> {
    // serde_json's messages can quote input; report only where parsing stopped.
    let doc: Document = serde_json::from_slice(plaintext).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!(
                "vault {} is damaged: its document is not valid vault JSON (line {}, column {})",
                file.display(),
                e.line(),
                e.column()
            ),
        )
    })?;
    if doc.version != VERSION {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "vault {} has document version {}; this Outloop reads version {VERSION}",
                file.display(),
                doc.version
            ),
        ));
    }
    Ok(doc.secrets.into_iter().map(|(k, v)| (k, v.0)).collect())
}

#[cfg(test)]
pub(super) fn decode_for_test(plaintext: &[u8]) -> Result<Secrets> {
    decode_document(Path::new("test.age"), plaintext)
}

#[cfg(test)]
pub(super) fn encode_for_test(secrets: &Secrets) -> Zeroizing<Vec<u8>> {
    encode_document(secrets)
}
