//! Tests for the vault backend. Every test uses its own temp dir and
//! [`IdentityStore::File`] (or a fake keystore), so no test touches a real keyring or the
//! process environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outloop_core::config::Paths;
use outloop_core::{ErrorKind, SecretBackend, SecretRef, SecretValue};
use zeroize::Zeroizing;

use super::identity::{Keystore, KeystoreError};
use super::{IdentityStore, VaultBackend, store};

fn home() -> (tempfile::TempDir, Paths) {
    let t = tempfile::tempdir().expect("temp dir");
    // A subdirectory that does not exist yet, so directory creation is exercised.
    let paths = Paths::under(t.path().join("home"));
    (t, paths)
}

fn open(paths: &Paths) -> VaultBackend {
    VaultBackend::open_with("vault", paths, &BTreeMap::new(), &[], IdentityStore::File)
        .expect("open vault")
}

fn r(s: &str) -> SecretRef {
    SecretRef::parse(s).expect("valid reference")
}

fn fake(s: &str) -> SecretValue {
    SecretValue::from_string(s.to_owned())
}

fn settings(pairs: &[(&str, toml::Value)]) -> BTreeMap<String, toml::Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test]
async fn tricky_values_round_trip_exactly() {
    let (_t, paths) = home();
    let v = open(&paths);
    assert!(v.init().unwrap());
    let big: Vec<u8> = (0..12 * 1024)
        .map(|i| b"FAKE-0123456789\n"[i % 16])
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("vault://acme/newline", b"FAKE-token\n".to_vec()),
        ("vault://acme/spaces", b"  FAKE token  ".to_vec()),
        (
            "vault://acme/multi",
            b"FAKE line 1\r\nline 2\n\nline 4".to_vec(),
        ),
        (
            "vault://acme/unicode",
            "FAKE-clé-密钥-🔑".as_bytes().to_vec(),
        ),
        (
            "vault://acme/binary",
            vec![0, 1, 0xff, 0xfe, b'"', b'\\', 0x7f, 0x80],
        ),
        ("vault://acme/big", big),
        ("vault://acme/empty", Vec::new()),
        ("vault://a%20b/%22quoted%22", b"FAKE-odd-path".to_vec()),
    ];
    for (reference, value) in &cases {
        v.set(&r(reference), SecretValue::new(value.clone()))
            .await
            .unwrap();
    }
    // A fresh instance reads from the file, not from anything cached.
    let v2 = open(&paths);
    for (reference, value) in &cases {
        let got = v2.get(&r(reference)).await.unwrap();
        assert_eq!(got.expose_secret(), &value[..], "{reference}");
    }
}

#[tokio::test]
async fn missing_vault_and_missing_secret_are_not_found() {
    let (_t, paths) = home();
    let v = open(&paths);
    let e = v.get(&r("vault://acme/echo-token")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("outloop init"), "{e}");
    assert!(e.message().contains("outloop secret set"), "{e}");
    assert_eq!(v.list().await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        v.delete(&r("vault://acme/x")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Reading created nothing.
    assert!(!paths.data_dir.exists());

    v.init().unwrap();
    let e = v.get(&r("vault://acme/echo-token")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("vault://acme/echo-token"), "{e}");
}

#[tokio::test]
async fn init_is_idempotent_and_set_creates_a_missing_vault() {
    let (_t, paths) = home();
    let v = open(&paths);
    assert!(v.init().unwrap());
    assert!(!v.init().unwrap());
    assert!(!open(&paths).init().unwrap());
    assert!(v.list().await.unwrap().is_empty());
    assert_eq!(
        v.identity_location(),
        format!("file {}", paths.identity_file().display())
    );

    let (_t2, paths2) = home();
    let v2 = open(&paths2);
    v2.set(&r("vault://acme/t"), fake("FAKE-set-first"))
        .await
        .unwrap();
    assert!(paths2.identity_file().exists());
    assert_eq!(
        v2.get(&r("vault://acme/t")).await.unwrap().expose_secret(),
        b"FAKE-set-first"
    );
    assert!(!v2.init().unwrap());
}

#[tokio::test]
async fn list_is_sorted_and_delete_removes() {
    let (_t, paths) = home();
    let v = open(&paths);
    for name in [
        "vault://zeta/k",
        "vault://acme/b",
        "vault://acme/a",
        "vault://acme-x/a",
    ] {
        v.set(&r(name), fake("FAKE-list-value")).await.unwrap();
    }
    let listed = v.list().await.unwrap();
    let mut expected = listed.clone();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0], r("vault://acme/a"));

    v.delete(&r("vault://acme/a")).await.unwrap();
    assert_eq!(
        v.get(&r("vault://acme/a")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        v.delete(&r("vault://acme/a")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(v.list().await.unwrap().len(), 3);
}

#[tokio::test]
async fn overwriting_replaces_the_value() {
    let (_t, paths) = home();
    let v = open(&paths);
    v.set(&r("vault://acme/t"), fake("FAKE-old")).await.unwrap();
    v.set(&r("vault://acme/t"), fake("FAKE-new")).await.unwrap();
    assert_eq!(
        v.get(&r("vault://acme/t")).await.unwrap().expose_secret(),
        b"FAKE-new"
    );
    assert_eq!(v.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn missing_identity_is_unauthenticated() {
    let (_t, paths) = home();
    open(&paths).init().unwrap();
    open(&paths)
        .set(&r("vault://acme/t"), fake("FAKE-orphan"))
        .await
        .unwrap();
    std::fs::remove_file(paths.identity_file()).unwrap();
    let v = open(&paths);
    let e = v.get(&r("vault://acme/t")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(e.message().contains("identity"), "{e}");
    // Neither init nor set replaces the identity of an existing vault.
    assert_eq!(v.init().unwrap_err().kind(), ErrorKind::Unauthenticated);
    assert_eq!(
        v.set(&r("vault://acme/u"), fake("FAKE-x"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthenticated
    );
    assert!(!paths.identity_file().exists());
}

#[tokio::test]
async fn wrong_identity_is_unauthenticated() {
    let (_t, paths) = home();
    open(&paths)
        .set(&r("vault://acme/t"), fake("FAKE-wrong-id"))
        .await
        .unwrap();
    let other = age::x25519::Identity::generate();
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(paths.identity_file(), other.to_string().expose_secret()).unwrap();
    }
    let e = open(&paths).get(&r("vault://acme/t")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(e.message().contains("cannot decrypt vault"), "{e}");
    assert!(
        e.message()
            .contains(&paths.identity_file().display().to_string()),
        "{e}"
    );

    std::fs::write(paths.identity_file(), "not an identity\n").unwrap();
    let e = open(&paths).get(&r("vault://acme/t")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
}

#[tokio::test]
async fn damaged_vaults_are_io_errors_naming_the_file() {
    let (_t, paths) = home();
    let v = open(&paths);
    v.init().unwrap();
    std::fs::write(paths.vault_file(), b"FAKE junk, not age").unwrap();
    let e = v.get(&r("vault://acme/t")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.message().contains("vault.age"), "{e}");

    // A well-encrypted file whose plaintext is not a vault document.
    let loaded = v.inner.resolver.load().unwrap().unwrap();
    let ct = age::encrypt(&loaded.identity.to_public(), b"{\"FAKE-not-json").unwrap();
    std::fs::write(paths.vault_file(), ct).unwrap();
    let e = v.get(&r("vault://acme/t")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.message().contains("vault.age"), "{e}");
    assert!(!e.message().contains("FAKE"), "{e}");
}

#[test]
fn document_codec_round_trips_and_never_quotes_values() {
    let mut secrets = store::Secrets::new();
    secrets.insert("acme/\"q\"\\x".into(), fake("FAKE-a\n"));
    secrets.insert("b".into(), SecretValue::new(vec![0, 255, 10]));
    secrets.insert("c".into(), SecretValue::new(Vec::new()));
    let doc = store::encode_for_test(&secrets);
    let text = std::str::from_utf8(&doc).unwrap();
    assert!(text.starts_with("{\"version\":1,\"secrets\":{"), "{text}");
    let back = store::decode_for_test(&doc).unwrap();
    assert_eq!(back.len(), 3);
    for (k, v) in &secrets {
        assert_eq!(back[k].expose_secret(), v.expose_secret());
    }
    for bad in [
        &b"{\"version\":1,\"secrets\":{\"a\":\"FAKE!!notbase64\"}}"[..],
        b"{\"version\":1,\"secrets\":{\"a\":42}}",
        b"{\"version\":2,\"secrets\":{}}",
        b"[\"FAKE-array\"]",
    ] {
        let e = store::decode_for_test(bad).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Io), "{e}");
        assert!(!e.message().contains("FAKE"), "{e}");
    }
}

#[test]
fn settings_are_validated() {
    let (t, paths) = home();
    let e = VaultBackend::open_with(
        "vault",
        &paths,
        &settings(&[("passphrase", toml::Value::String("x".into()))]),
        &[],
        IdentityStore::File,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("passphrase"), "{e}");
    assert!(e.message().contains("backends.vault"), "{e}");

    for bad in [
        toml::Value::String("relative/vault.age".into()),
        toml::Value::Integer(3),
    ] {
        let e = VaultBackend::open_with(
            "vault",
            &paths,
            &settings(&[("path", bad)]),
            &[],
            IdentityStore::File,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("backends.vault.path"), "{e}");
    }

    let custom = t.path().join("elsewhere").join("my.age");
    let v = VaultBackend::open_with(
        "vault",
        &paths,
        &settings(&[("path", toml::Value::String(custom.display().to_string()))]),
        &[],
        IdentityStore::File,
    )
    .unwrap();
    assert_eq!(v.file(), custom);
    v.init().unwrap();
    assert!(custom.exists());
}

#[test]
fn refuses_vault_or_identity_inside_a_bound_workspace() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("clients").join("acme");
    std::fs::create_dir_all(&ws).unwrap();
    let ws = std::fs::canonicalize(&ws).unwrap();
    let bound = vec![ws.clone()];

    // Identity (and vault) under a home inside the workspace.
    let inside = Paths::under(ws.join(".outloop"));
    let e = VaultBackend::open_with(
        "vault",
        &inside,
        &BTreeMap::new(),
        &bound,
        IdentityStore::File,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");

    // Only the identity inside.
    let mut split = Paths::under(t.path().join("home"));
    split.config_dir = ws.join("cfg");
    let e = VaultBackend::open_with(
        "vault",
        &split,
        &BTreeMap::new(),
        &bound,
        IdentityStore::File,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("identity file"), "{e}");

    // Only the vault inside, via `path`, spelled with `..`.
    let outside = Paths::under(t.path().join("home"));
    let sneaky = ws.join("sub").join("..").join("v.age");
    let e = VaultBackend::open_with(
        "vault",
        &outside,
        &settings(&[("path", toml::Value::String(sneaky.display().to_string()))]),
        &bound,
        IdentityStore::File,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("vault file"), "{e}");

    // A sibling directory that merely shares a prefix is fine.
    let sibling = Paths::under(t.path().join("clients").join("acme-home"));
    VaultBackend::open_with(
        "vault",
        &sibling,
        &BTreeMap::new(),
        &bound,
        IdentityStore::File,
    )
    .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlinked_home_into_a_workspace_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    std::fs::create_dir_all(ws.join("hidden")).unwrap();
    let ws = std::fs::canonicalize(&ws).unwrap();
    let link = t.path().join("link");
    std::os::unix::fs::symlink(ws.join("hidden"), &link).unwrap();
    let e = VaultBackend::open_with(
        "vault",
        &Paths::under(&link),
        &BTreeMap::new(),
        &[ws],
        IdentityStore::File,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn other_kinds_and_ambiguous_paths_are_invalid_references() {
    let (_t, paths) = home();
    let v = open(&paths);
    let e = v.get(&r("doppler://a/b/C")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidReference);
    // An encoded `/` would be indistinguishable from a real one in the vault file; such a
    // reference does not even parse.
    let e = SecretRef::parse("vault://a%2Fb/c").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidReference);
}

#[cfg(unix)]
#[tokio::test]
async fn files_are_0600_and_created_dirs_0700() {
    let (_t, paths) = home();
    let v = open(&paths);
    v.init().unwrap();
    v.set(&r("vault://acme/t"), fake("FAKE-mode"))
        .await
        .unwrap();
    assert_eq!(mode(&paths.vault_file()), 0o600);
    assert_eq!(mode(&paths.identity_file()), 0o600);
    assert_eq!(mode(&store::lock_path(&paths.vault_file())), 0o600);
    assert_eq!(mode(&paths.data_dir), 0o700);
    // No temp file is left behind.
    let names: Vec<_> = std::fs::read_dir(&paths.data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[tokio::test]
async fn the_file_never_holds_the_plaintext() {
    let (_t, paths) = home();
    let v = open(&paths);
    let value = "FAKE-plaintext-needle-0123456789";
    v.set(&r("vault://acme/needle"), fake(value)).await.unwrap();
    let bytes = std::fs::read(paths.vault_file()).unwrap();
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(value)
    };
    for needle in [value.as_bytes(), b64.as_bytes(), b"acme/needle", b"secrets"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "vault file contains {:?}",
            String::from_utf8_lossy(needle)
        );
    }
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
}

#[tokio::test]
async fn debug_and_errors_never_show_a_value() {
    let (_t, paths) = home();
    let v = open(&paths);
    let value = "FAKE-debug-needle-42";
    v.set(&r("vault://acme/t"), fake(value)).await.unwrap();
    let got = v.get(&r("vault://acme/t")).await.unwrap();
    let mut shown = format!("{v:?} {v:#?} {got:?}");
    // Errors from every failure path, after the value was loaded at least once.
    shown += &format!("{:?}", v.get(&r("vault://acme/missing")).await.unwrap_err());
    shown += &format!(
        "{:?}",
        v.delete(&r("vault://acme/missing")).await.unwrap_err()
    );
    let other = age::x25519::Identity::generate();
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(paths.identity_file(), other.to_string().expose_secret()).unwrap();
    }
    let e = open(&paths).get(&r("vault://acme/t")).await.unwrap_err();
    shown += &format!("{e:?} {e}");
    assert!(!shown.contains(value), "{shown}");
    assert!(!shown.contains("AGE-SECRET-KEY"), "{shown}");
    // The identity is never printed either.
    let id = std::fs::read_to_string(paths.identity_file()).unwrap();
    assert!(!format!("{:?}", open(&paths)).contains(id.trim()));
}

#[test]
fn concurrent_writers_in_threads_lose_nothing() {
    let (_t, paths) = home();
    open(&paths).init().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let paths = paths.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                // Each thread has its own instance, as separate processes would.
                let v = open(&paths);
                rt.block_on(async {
                    for i in 0..25 {
                        let reference = r(&format!("vault://t{t}/k{i:02}"));
                        v.set(&reference, fake(&format!("FAKE-{t}-{i}")))
                            .await
                            .unwrap();
                    }
                });
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let v = open(&paths);
        let listed = v.list().await.unwrap();
        assert_eq!(listed.len(), 200);
        for t in 0..8 {
            for i in 0..25 {
                let got = v.get(&r(&format!("vault://t{t}/k{i:02}"))).await.unwrap();
                assert_eq!(got.expose_secret(), format!("FAKE-{t}-{i}").as_bytes());
            }
        }
    });
}

/// Env var naming the vault home for [`child_writer`]; set only by the parent test.
const CHILD_HOME: &str = "OUTLOOP_VAULT_TEST_CHILD_HOME";
const CHILD_ID: &str = "OUTLOOP_VAULT_TEST_CHILD_ID";

/// Not a test on its own: the body of each child process in
/// [`concurrent_writers_in_processes_lose_nothing`].
#[test]
#[ignore = "run as a child process by concurrent_writers_in_processes_lose_nothing"]
fn child_writer() {
    let (Some(home), Some(id)) = (std::env::var_os(CHILD_HOME), std::env::var_os(CHILD_ID)) else {
        return;
    };
    let id = id.to_string_lossy().into_owned();
    let paths = Paths::under(PathBuf::from(home));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v = open(&paths);
    rt.block_on(async {
        for i in 0..15 {
            v.set(&r(&format!("vault://p{id}/k{i:02}")), fake("FAKE-child"))
                .await
                .unwrap();
        }
    });
}

#[test]
fn concurrent_writers_in_processes_lose_nothing() {
    let (_t, paths) = home();
    open(&paths).init().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|id| {
            std::process::Command::new(&exe)
                .args([
                    "vault::tests::child_writer",
                    "--exact",
                    "--ignored",
                    "--quiet",
                ])
                .env(CHILD_HOME, &paths.config_dir)
                .env(CHILD_ID, id.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listed = rt.block_on(open(&paths).list()).unwrap();
    assert_eq!(listed.len(), 60, "{listed:?}");
}

/// A keystore fake: an in-memory map, or one that never answers.
struct FakeKeystore {
    hang: bool,
    entries: Mutex<BTreeMap<String, String>>,
}

impl Keystore for FakeKeystore {
    fn get(&self, account: &str) -> Result<Option<Zeroizing<String>>, KeystoreError> {
        if self.hang {
            std::thread::sleep(Duration::from_secs(30));
        }
        let map = self.entries.lock().unwrap();
        Ok(map.get(account).cloned().map(Zeroizing::new))
    }
    fn set(&self, account: &str, secret: &str) -> Result<(), KeystoreError> {
        if self.hang {
            std::thread::sleep(Duration::from_secs(30));
        }
        self.entries
            .lock()
            .unwrap()
            .insert(account.to_owned(), secret.to_owned());
        Ok(())
    }
}

fn open_with_keystore(paths: &Paths, ks: Arc<FakeKeystore>) -> VaultBackend {
    VaultBackend::open_inner(
        "vault",
        paths,
        &BTreeMap::new(),
        &[],
        IdentityStore::OsKeystore,
        ks,
        Duration::from_millis(300),
    )
    .unwrap()
}

#[tokio::test]
async fn keystore_holds_the_identity_when_it_answers() {
    let (_t, paths) = home();
    let ks = Arc::new(FakeKeystore {
        hang: false,
        entries: Mutex::new(BTreeMap::new()),
    });
    let v = open_with_keystore(&paths, Arc::clone(&ks));
    assert!(v.init().unwrap());
    assert!(!paths.identity_file().exists());
    assert!(
        v.identity_location()
            .starts_with("OS keystore (service outloop, account vault-identity:")
    );
    {
        let map = ks.entries.lock().unwrap();
        let (account, _) = map.iter().next().unwrap();
        assert!(account.starts_with("vault-identity:/"), "{account}");
    }
    v.set(&r("vault://acme/t"), fake("FAKE-ks")).await.unwrap();
    // A fresh instance finds the identity in the keystore.
    let v2 = open_with_keystore(&paths, Arc::clone(&ks));
    assert_eq!(
        v2.get(&r("vault://acme/t")).await.unwrap().expose_secret(),
        b"FAKE-ks"
    );
    // A file-only instance cannot open it, and says where it looked.
    let e = open(&paths).get(&r("vault://acme/t")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn a_hung_keystore_falls_back_to_the_file() {
    let (_t, paths) = home();
    let ks = Arc::new(FakeKeystore {
        hang: true,
        entries: Mutex::new(BTreeMap::new()),
    });
    let v = open_with_keystore(&paths, ks);
    let start = Instant::now();
    assert!(v.init().unwrap());
    // One timeout (the read); the instance does not ask again for the write.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(paths.identity_file().exists());
    assert_eq!(
        v.identity_location(),
        format!("file {}", paths.identity_file().display())
    );
    v.set(&r("vault://acme/t"), fake("FAKE-hung"))
        .await
        .unwrap();
    // The identity file, once it exists, wins without asking the keystore.
    assert_eq!(
        open(&paths)
            .get(&r("vault://acme/t"))
            .await
            .unwrap()
            .expose_secret(),
        b"FAKE-hung"
    );
}

#[test]
fn identity_store_names_where_it_looks() {
    let (_t, paths) = home();
    let v = open(&paths);
    assert_eq!(v.identity_store(), IdentityStore::File);
    assert!(v.identity_location().starts_with("file "));
}
