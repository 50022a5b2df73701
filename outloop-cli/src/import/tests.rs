//! `import` against the real vault, with a wrapper that injects failures part-way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use outloop_backends::vault::{IdentityStore, VaultBackend};
use outloop_core::backend::Capabilities;

use super::*;

/// Synthetic values, built from parts so no literal token sits in the source.
fn values() -> Vec<(String, String)> {
    let pad = |n: usize| "FAKE0123456789abcdefghij".repeat(4)[..n].to_owned();
    vec![
        (
            "HUBSPOT_TOKEN".into(),
            format!(
                "pat-na1-{}-{}-{}-{}-{}",
                pad(8),
                pad(4),
                pad(4),
                pad(4),
                pad(12)
            ),
        ),
        (
            "STRIPE_SECRET_KEY".into(),
            format!("sk_{}_{}", "test", pad(24)),
        ),
        ("GITHUB_TOKEN".into(), format!("ghp_{}", pad(36))),
        ("OPENAI_API_KEY".into(), format!("sk-proj-{}", pad(40))),
        ("MY_SERVICE_SECRET".into(), "FAKE9x2Lq Z7w\"Vb3m#".into()),
    ]
}

fn env_text() -> String {
    let v = values();
    format!(
        "# app settings\nPORT=3000\nexport {}={}  # hubspot\n\n{}='{}'\n{}=\"{}\"\nDEBUG=true\n{}={}\n{}={}\n# end\n",
        v[0].0,
        v[0].1,
        v[1].0,
        v[1].1,
        v[2].0,
        v[2].1,
        v[3].0,
        v[3].1,
        v[4].0,
        dotenv::quote(&v[4].1),
    )
}

struct Setup {
    _tmp: tempfile::TempDir,
    paths: Paths,
    vault: VaultBackend,
    file: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::under(tmp.path().join("home"));
    std::fs::create_dir_all(&paths.config_dir).unwrap();
    crate::edit::write_atomic(&paths.config_file(), crate::edit::TEMPLATE.as_bytes()).unwrap();
    crate::edit::add_tenant(&paths, "acme").unwrap();
    let vault =
        VaultBackend::open_with("vault", &paths, &BTreeMap::new(), &[], IdentityStore::File)
            .unwrap();
    vault.init().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let file = ws.join(".env");
    std::fs::write(&file, env_text()).unwrap();
    Setup {
        _tmp: tmp,
        paths,
        vault,
        file,
    }
}

/// Wraps the vault: the `fail_set`-th set (0-based) fails, and the `corrupt_get`-th get
/// returns a different value.
struct Faulty<'a> {
    inner: &'a VaultBackend,
    fail_set: Option<usize>,
    corrupt_get: Option<usize>,
    sets: AtomicUsize,
    gets: AtomicUsize,
}

impl<'a> Faulty<'a> {
    fn new(inner: &'a VaultBackend) -> Self {
        Self {
            inner,
            fail_set: None,
            corrupt_get: None,
            sets: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl SecretBackend for Faulty<'_> {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, r: &SecretRef) -> Result<SecretValue> {
        let n = self.gets.fetch_add(1, Ordering::SeqCst);
        if Some(n) == self.corrupt_get {
            return Ok(SecretValue::from_string("FAKE-other-value".into()));
        }
        self.inner.get(r).await
    }
    async fn set(&self, r: &SecretRef, v: SecretValue) -> Result<()> {
        let n = self.sets.fetch_add(1, Ordering::SeqCst);
        if Some(n) == self.fail_set {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "injected failure: backend went away",
            ));
        }
        self.inner.set(r, v).await
    }
    async fn delete(&self, r: &SecretRef) -> Result<()> {
        self.inner.delete(r).await
    }
    async fn list(&self) -> Result<Vec<SecretRef>> {
        self.inner.list().await
    }
}

async fn plan_for(s: &Setup, backend: &dyn SecretBackend) -> (Plan, String, Vec<Entry>) {
    let cfg = HostConfig::load(&s.paths).unwrap();
    let text = std::fs::read_to_string(&s.file).unwrap();
    let entries = dotenv::parse(&text).unwrap();
    let before = dotenv::parse(&text).unwrap();
    let p = plan(&cfg, backend, entries, "acme", "", false, &s.file)
        .await
        .unwrap();
    (p, text, before)
}

/// No `.<name>.outloop-backup-*` beside `file`.
fn assert_no_backup(file: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("outloop-backup-"))
        .collect();
    assert!(left.is_empty(), "backups left: {left:?}");
}

fn assert_no_value(s: &str) {
    for (_, v) in values() {
        assert!(!s.contains(&v), "a value leaked: {s}");
        assert!(!s.contains("FAKE0123"), "a value leaked: {s}");
    }
}

/// Everything as it was: the file byte for byte, no values in the vault, no credentials in
/// the config, no backup left behind.
async fn assert_untouched(s: &Setup, original: &str) {
    assert_eq!(std::fs::read_to_string(&s.file).unwrap(), original);
    assert!(s.vault.list().await.unwrap().is_empty());
    let cfg = HostConfig::load(&s.paths).unwrap();
    assert!(cfg.tenants["acme"].credentials.is_empty());
    assert_no_backup(&s.file);
}

#[tokio::test]
async fn plan_picks_secrets_and_keeps_the_rest() {
    let s = setup();
    let (p, _, _) = plan_for(&s, &s.vault).await;
    let moved: Vec<_> = p
        .moves
        .iter()
        .map(|m| {
            (
                m.key.as_str(),
                m.line,
                m.credential.as_str(),
                m.reference.to_string(),
            )
        })
        .collect();
    assert_eq!(
        moved,
        [
            (
                "HUBSPOT_TOKEN",
                3,
                "hubspot_token",
                "vault://acme/hubspot_token".to_owned()
            ),
            (
                "STRIPE_SECRET_KEY",
                5,
                "stripe_secret_key",
                "vault://acme/stripe_secret_key".to_owned()
            ),
            (
                "GITHUB_TOKEN",
                6,
                "github_token",
                "vault://acme/github_token".to_owned()
            ),
            (
                "OPENAI_API_KEY",
                8,
                "openai_api_key",
                "vault://acme/openai_api_key".to_owned()
            ),
            (
                "MY_SERVICE_SECRET",
                9,
                "my_service_secret",
                "vault://acme/my_service_secret".to_owned()
            ),
        ]
    );
    let kept: Vec<_> = p.kept.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(kept, ["PORT", "DEBUG"]);
    assert_no_value(&format!("{p:?}"));
}

#[tokio::test]
async fn success_rewrites_only_the_moved_assignments() {
    let s = setup();
    let (p, text, before) = plan_for(&s, &s.vault).await;
    let new_text = rewrite(&text, ImportFormat::Env, &p);
    check_rewrite(&s.file, &before, &new_text, ImportFormat::Env, &p).unwrap();
    let creds: Vec<(String, String)> = p
        .moves
        .iter()
        .map(|m| (m.credential.clone(), m.reference.to_string()))
        .collect();
    apply(&s.vault, &p, &s.file, &new_text, || {
        crate::edit::set_credentials_unlocked(&s.paths, "acme", &creds).map(drop)
    })
    .await
    .unwrap();
    let after = std::fs::read_to_string(&s.file).unwrap();
    let v = values();
    let want = "# app settings\nPORT=3000\n# HUBSPOT_TOKEN moved to outloop: credential hubspot_token (vault://acme/hubspot_token)  # hubspot\n\n# STRIPE_SECRET_KEY moved to outloop: credential stripe_secret_key (vault://acme/stripe_secret_key)\n# GITHUB_TOKEN moved to outloop: credential github_token (vault://acme/github_token)\nDEBUG=true\n# OPENAI_API_KEY moved to outloop: credential openai_api_key (vault://acme/openai_api_key)\n# MY_SERVICE_SECRET moved to outloop: credential my_service_secret (vault://acme/my_service_secret)\n# end\n";
    assert_eq!(after, want);
    assert_no_value(&after);
    for (m, (_, value)) in p.moves.iter().zip(&v) {
        assert_eq!(
            s.vault.get(&m.reference).await.unwrap().expose_secret(),
            value.as_bytes()
        );
    }
    let cfg = HostConfig::load(&s.paths).unwrap();
    assert_eq!(cfg.tenants["acme"].credentials.len(), 5);
    assert_no_backup(&s.file);
}

#[tokio::test]
async fn a_failure_after_the_third_secret_leaves_everything_as_it_was() {
    let s = setup();
    let mut faulty = Faulty::new(&s.vault);
    faulty.fail_set = Some(3);
    let (p, text, _) = plan_for(&s, &faulty).await;
    let new_text = rewrite(&text, ImportFormat::Env, &p);
    let mut config_edited = false;
    let e = apply(&faulty, &p, &s.file, &new_text, || {
        config_edited = true;
        Ok(())
    })
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(
        e.message().contains("the 3 value(s) written were deleted"),
        "{}",
        e.message()
    );
    assert!(!config_edited);
    assert_eq!(faulty.sets.load(Ordering::SeqCst), 4);
    assert_no_value(e.message());
    assert_untouched(&s, &text).await;
}

#[tokio::test]
async fn a_value_that_reads_back_differently_undoes_the_import() {
    let s = setup();
    let mut faulty = Faulty::new(&s.vault);
    faulty.corrupt_get = Some(3);
    let (p, text, _) = plan_for(&s, &faulty).await;
    let new_text = rewrite(&text, ImportFormat::Env, &p);
    let e = apply(&faulty, &p, &s.file, &new_text, || Ok(()))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("differs from the one written"),
        "{}",
        e.message()
    );
    assert_no_value(e.message());
    assert_untouched(&s, &text).await;
}

#[tokio::test]
async fn a_failing_config_edit_puts_the_file_back() {
    let s = setup();
    let (p, text, _) = plan_for(&s, &s.vault).await;
    let new_text = rewrite(&text, ImportFormat::Env, &p);
    let e = apply(&s.vault, &p, &s.file, &new_text, || {
        // The file has been replaced by now: the edit fails after the rewrite.
        assert!(
            std::fs::read_to_string(&s.file)
                .unwrap()
                .contains("moved to outloop")
        );
        Err(Error::config("injected: config edit failed"))
    })
    .await
    .unwrap_err();
    assert!(
        e.message()
            .starts_with("injected: config edit failed; the 5 value(s)"),
        "{}",
        e.message()
    );
    assert_untouched(&s, &text).await;
}

#[tokio::test]
async fn an_existing_reference_is_refused_before_anything_is_written() {
    let s = setup();
    let r = SecretRef::parse("vault://acme/github_token").unwrap();
    s.vault
        .set(&r, SecretValue::from_string("FAKE-already-there".into()))
        .await
        .unwrap();
    let cfg = HostConfig::load(&s.paths).unwrap();
    let text = std::fs::read_to_string(&s.file).unwrap();
    let e = plan(
        &cfg,
        &s.vault,
        dotenv::parse(&text).unwrap(),
        "acme",
        "",
        false,
        &s.file,
    )
    .await
    .unwrap_err();
    assert!(
        e.message()
            .contains(":6: GITHUB_TOKEN: `vault://acme/github_token` already holds a secret"),
        "{}",
        e.message()
    );
    assert_eq!(s.vault.list().await.unwrap(), vec![r]);
    // With a prefix the names are free.
    let p = plan(
        &cfg,
        &s.vault,
        dotenv::parse(&text).unwrap(),
        "acme",
        "app_",
        false,
        &s.file,
    )
    .await
    .unwrap();
    assert_eq!(
        p.moves[2].reference.to_string(),
        "vault://acme/app_github_token"
    );
}

#[test]
fn json_and_yaml_notes_keep_the_documents_valid() {
    let tok = format!(
        "ghp_{}",
        "FAKE0123456789abcdefghij".repeat(2)[..36].to_owned()
    );
    let json = format!("{{\n  \"GITHUB_TOKEN\": \"{tok}\",\n  \"port\": 8080\n}}\n");
    let yaml = format!("# cfg\nGITHUB_TOKEN: '{tok}'  # gh\nport: 8080\n");
    for (text, format, want) in [
        (
            json.clone(),
            ImportFormat::Json,
            "{\n  \"GITHUB_TOKEN\": \"moved to outloop: credential github_token (vault://acme/github_token)\",\n  \"port\": 8080\n}\n",
        ),
        (
            yaml.clone(),
            ImportFormat::Yaml,
            "# cfg\n# GITHUB_TOKEN moved to outloop: credential github_token (vault://acme/github_token)  # gh\nport: 8080\n",
        ),
    ] {
        let file = Path::new("x");
        let entries = parse(file, &text, format).unwrap();
        let e = entries
            .into_iter()
            .find(|e| e.key == "GITHUB_TOKEN")
            .unwrap();
        let p = Plan {
            moves: vec![Move {
                key: e.key,
                line: e.line,
                credential: "github_token".into(),
                reference: SecretRef::parse("vault://acme/github_token").unwrap(),
                span: e.span,
                value: e.value,
            }],
            kept: vec![],
        };
        let out = rewrite(&text, format, &p);
        assert_eq!(out, want);
        check_rewrite(file, &parse(file, &text, format).unwrap(), &out, format, &p).unwrap();
    }
}

#[tokio::test]
async fn filing_the_credentials_keeps_the_config_mode() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup();
    let config = s.paths.config_file();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o400)).unwrap();
    let (p, text, _) = plan_for(&s, &s.vault).await;
    let new_text = rewrite(&text, ImportFormat::Env, &p);
    let creds: Vec<(String, String)> = p
        .moves
        .iter()
        .map(|m| (m.credential.clone(), m.reference.to_string()))
        .collect();
    apply(&s.vault, &p, &s.file, &new_text, || {
        crate::edit::set_credentials_unlocked(&s.paths, "acme", &creds).map(drop)
    })
    .await
    .unwrap();
    let cfg = HostConfig::load(&s.paths).unwrap();
    assert_eq!(cfg.tenants["acme"].credentials.len(), p.moves.len());
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o400);
}
