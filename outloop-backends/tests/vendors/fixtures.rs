//! Reusable fixtures: start a vendor fake and get a built backend plus the references and
//! values it is known to hold. Each fixture owns its fake; dropping it stops the fake.
//!
//! The fakes are the standalone scripts in `tests/fakes/` (Python standard library only),
//! run with `$OUTLOOP_TEST_PYTHON`, else the repository's `.venv/bin/python`, else `python3`.
//! The same scripts serve the proofs against the vendors' own clients
//! (`scripts/test-fakes.sh`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use outloop_backends::credential::Registry;
use outloop_backends::doppler::DopplerBackend;
use outloop_backends::infisical::InfisicalBackend;
use outloop_backends::onepassword::OnePasswordBackend;
use outloop_core::backend::{MemoryBackend, SecretBackend};
use outloop_core::{BackendKind, SecretRef, SecretValue};
use serde_json::json;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives one level below the repository root")
        .to_path_buf()
}

/// The Python interpreter that runs the fakes.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTLOOP_TEST_PYTHON") {
        return p.into();
    }
    let venv = repo().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Values that must round-trip byte for byte: trailing newline, trailing spaces, multi-line
/// PEM-like text, non-ASCII, and a 12 kB JSON document. All synthetic (`FAKE`).
pub fn tricky_values() -> Vec<(&'static str, String)> {
    let mut big = String::from("{\"FAKE\":[");
    let mut i = 0;
    while big.len() < 12 * 1024 {
        if i > 0 {
            big.push(',');
        }
        big.push_str(&format!("{{\"k{i}\":\"FAKE-json-value-{i:05}\"}}"));
        i += 1;
    }
    big.push_str("]}");
    vec![
        ("NEWLINE", "FAKE-ends-in-newline-0001\n".to_owned()),
        ("SPACES", "FAKE-ends-in-spaces-0002   ".to_owned()),
        (
            "PEM",
            "-----BEGIN FAKE TEST KEY-----\nFAKEMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END FAKE TEST KEY-----\n"
                .to_owned(),
        ),
        ("UNICODE", "FAKE-ünïcødé-秘密-🔑-0004".to_owned()),
        ("JSON", big),
    ]
}

/// `tokens` plus every tricky value: nothing a backend holds may appear in its errors.
fn with_values(mut tokens: Vec<String>) -> Vec<String> {
    tokens.extend(tricky_values().into_iter().map(|(_, v)| v));
    tokens
}

/// Panics when any of `secrets` appears in `text`.
pub fn assert_no_leak(text: &str, secrets: &[&str]) {
    for s in secrets {
        let s = s.trim();
        assert!(
            s.is_empty() || !text.contains(s),
            "a planted secret leaked into: {}",
            text.chars().take(300).collect::<String>()
        );
    }
}

/// Checks an error's message and Debug output against `secrets` and vendor wording.
pub fn assert_clean_error(e: &outloop_core::Error, secrets: &[&str]) {
    let shown = format!("{e} | {e:?}");
    assert_no_leak(&shown, secrets);
    for vendor in [
        "[ERROR]",
        "messages",
        "reqId",
        "statusCode",
        "Please re-authenticate",
        "isn't",
    ] {
        assert!(
            !shown.contains(vendor),
            "vendor text `{vendor}` in: {shown}"
        );
    }
    assert!(!shown.contains('\n'), "multi-line error: {shown}");
}

/// A running fake HTTP server; killed on drop.
pub struct FakeServer {
    child: Child,
    /// Its base URL, from the readiness line.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakeServer {
    /// Starts `tests/fakes/<script>` with `seed` and `args`; returns once it printed its URL.
    pub fn start(script: &str, seed: &serde_json::Value, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let seed_path = dir.path().join("seed.json");
        std::fs::write(&seed_path, seed.to_string()).expect("write seed");
        let mut child = Command::new(python())
            .arg(repo().join("tests/fakes").join(script))
            .arg(&seed_path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {script} with {:?}: {e}", python()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout piped"))
            .read_line(&mut line)
            .expect("readiness line");
        assert!(
            line.starts_with("http://127.0.0.1:"),
            "{script} said {line:?}"
        );
        Self {
            child,
            url: line.trim().to_owned(),
            _dir: dir,
        }
    }

    /// POSTs to one of the fake's `/__fake/…` controls.
    pub async fn control(&self, path_and_query: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}{path_and_query}", self.url))
            .send()
            .await
            .expect("fake control");
        assert!(r.status().is_success());
    }

    /// The fake's `/__fake/stats` counters.
    pub async fn stats(&self) -> serde_json::Value {
        let text = reqwest::get(format!("{}/__fake/stats", self.url))
            .await
            .expect("stats")
            .text()
            .await
            .expect("stats body");
        serde_json::from_str(&text).expect("stats JSON")
    }
}

/// A backend built against a fake, what it holds, and the tokens it uses.
pub struct Fixture<B> {
    /// The backend under test.
    pub backend: Arc<B>,
    /// References the fake holds, with their exact values.
    pub known: Vec<(SecretRef, Vec<u8>)>,
    /// A reference the fake does not hold.
    pub missing: SecretRef,
    /// Synthetic tokens and credentials that must never leak.
    pub secrets: Vec<String>,
    /// The fake server, when there is one.
    pub server: Option<FakeServer>,
    /// The memory backend holding the backend's own credential.
    pub creds: Arc<MemoryBackend>,
    /// Scratch directory (1Password: the fake `op` and its record).
    pub dir: Option<tempfile::TempDir>,
}

impl<B: SecretBackend + 'static> Fixture<B> {
    /// The backend as the broker sees it.
    pub fn dyn_backend(&self) -> Arc<dyn SecretBackend> {
        self.backend.clone()
    }
}

/// A credential store for the vendor backends' own tokens: a memory backend serving
/// `vault://` references.
pub fn cred_store(reference: &str, value: &str) -> Arc<MemoryBackend> {
    let m = Arc::new(MemoryBackend::new("vault", BackendKind::Vault));
    m.insert(
        &SecretRef::parse(reference).expect("credential reference"),
        SecretValue::from_string(value.to_owned()),
    )
    .expect("insert credential");
    m
}

fn settings(v: serde_json::Value) -> std::collections::BTreeMap<String, toml::Value> {
    let t: toml::Value = toml::Value::try_from(v).expect("settings as TOML");
    match t {
        toml::Value::Table(t) => t.into_iter().collect(),
        _ => unreachable!("settings are a table"),
    }
}

// ---------------------------------------------------------------------------------- Infisical

/// The machine identity's client ID the Infisical fake accepts.
pub const INF_CLIENT_ID: &str = "5b6f2a9e-0c1d-4e8f-9a7b-FAKE00000001";
/// The client secret the Infisical fake accepts (synthetic, 64 characters).
pub const INF_CLIENT_SECRET: &str =
    "FAKEc1e4a7d2f9b3e6a0c8d5f2b9e6a3d0c7f4b1e8a5d2f9c6b3e0a7d4f1b8e5";
/// The project holding the known Infisical secrets.
pub const INF_PROJECT: &str = "p-FAKE-0001";

/// The Infisical fake's seed: the tricky values at `/app/db`, one hidden value, one secret
/// at the root path, and a project the identity may not read.
pub fn infisical_seed() -> serde_json::Value {
    let mut secrets: Vec<serde_json::Value> = tricky_values()
        .into_iter()
        .map(|(n, v)| json!({"project": INF_PROJECT, "environment": "dev", "path": "/app/db", "name": n, "value": v}))
        .collect();
    secrets.push(json!({"project": INF_PROJECT, "environment": "dev", "path": "/app/db", "name": "HIDDEN", "value": "FAKE-hidden-value-never-shown", "hidden": true}));
    secrets.push(json!({"project": INF_PROJECT, "environment": "prod", "path": "/", "name": "ROOT_TOKEN", "value": "FAKE-root-path-value-0005"}));
    json!({"clientId": INF_CLIENT_ID, "clientSecret": INF_CLIENT_SECRET, "secrets": secrets,
           "denied_projects": ["p-FAKE-denied"]})
}

/// Starts the Infisical fake (with `fake_args`, e.g. `--no-v4`) and builds a backend whose
/// client secret (`client_secret` as stored) lives in a memory backend.
pub fn infisical_with(
    fake_args: &[&str],
    client_secret: &str,
    extra: serde_json::Value,
) -> Fixture<InfisicalBackend> {
    let server = FakeServer::start("infisical_fake.py", &infisical_seed(), fake_args);
    let creds = cred_store("vault://outloop/infisical", client_secret);
    let registry = Registry::with(&[creds.clone() as Arc<dyn SecretBackend>]);
    let mut s = json!({"url": format!("{}/api", server.url), "client_id": INF_CLIENT_ID,
                       "client_secret": "vault://outloop/infisical", "timeout_secs": 10});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    let backend = InfisicalBackend::from_settings("infisical", &settings(s), &registry)
        .expect("build infisical");
    let known = tricky_values()
        .into_iter()
        .map(|(n, v)| {
            (
                SecretRef::from_parts(
                    BackendKind::Infisical,
                    &[INF_PROJECT, "dev", "app", "db", n],
                )
                .unwrap(),
                v.into_bytes(),
            )
        })
        .collect();
    Fixture {
        backend: Arc::new(backend),
        known,
        missing: SecretRef::parse(&format!("infisical://{INF_PROJECT}/dev/app/db/NOPE")).unwrap(),
        secrets: with_values(vec![
            client_secret.to_owned(),
            INF_CLIENT_SECRET.to_owned(),
            "FAKE-hidden-value-never-shown".into(),
        ]),
        server: Some(server),
        creds,
        dir: None,
    }
}

/// The standard Infisical fixture: a v4 server and the right client secret.
pub fn infisical() -> Fixture<InfisicalBackend> {
    infisical_with(&[], INF_CLIENT_SECRET, json!({}))
}

// ------------------------------------------------------------------------------------ Doppler

/// A Doppler service token scoped to `web`/`dev`.
pub const DP_SERVICE: &str = "dp.st.dev.FAKEsvc0000000000000000000000000000000001";
/// A Doppler personal token that may read every project but `secret-project`.
pub const DP_PERSONAL: &str = "dp.pt.FAKEpersonal000000000000000000000000000000002";

/// The Doppler fake's seed: project `web`, config `dev` with the tricky values (names
/// upper-cased), a raw/computed pair and a restricted secret; a project the personal token may
/// not read.
pub fn doppler_seed() -> serde_json::Value {
    let mut dev = serde_json::Map::new();
    for (n, v) in tricky_values() {
        dev.insert(n.to_owned(), json!(v));
    }
    dev.insert(
        "DB_URL".into(),
        json!({"raw": "postgres://${USER_FAKE}@db", "computed": "postgres://FAKE-user-0006@db"}),
    );
    dev.insert("LOCKED".into(), json!({"restricted": true}));
    json!({
        "tokens": {DP_SERVICE: {"project": "web", "config": "dev"}, DP_PERSONAL: {"denied_projects": ["secret-project"]}},
        "projects": {
            "web": {"dev": {"environment": "dev", "secrets": dev}, "prd": {"environment": "prd", "secrets": {"PRD_ONLY": "FAKE-prd-value-0007"}}},
            "secret-project": {"main": {"environment": "main", "secrets": {"X_FAKE": "FAKE-x-value-0008"}}}
        }
    })
}

/// Starts the Doppler fake and builds a backend whose token (`token`) lives in a memory
/// backend; `extra` adds settings (`project`, `config`, `value`).
pub fn doppler_with(token: &str, extra: serde_json::Value) -> Fixture<DopplerBackend> {
    let server = FakeServer::start("doppler_fake.py", &doppler_seed(), &[]);
    let creds = cred_store("vault://outloop/doppler", token);
    let registry = Registry::with(&[creds.clone() as Arc<dyn SecretBackend>]);
    let mut s =
        json!({"api_host": server.url, "token": "vault://outloop/doppler", "timeout_secs": 10});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    let backend =
        DopplerBackend::from_settings("doppler", &settings(s), &registry).expect("build doppler");
    let known = tricky_values()
        .into_iter()
        .map(|(n, v)| {
            (
                SecretRef::from_parts(BackendKind::Doppler, &["web", "dev", n]).unwrap(),
                v.into_bytes(),
            )
        })
        .collect();
    Fixture {
        backend: Arc::new(backend),
        known,
        missing: SecretRef::parse("doppler://web/dev/NOPE").unwrap(),
        secrets: with_values(vec![
            token.to_owned(),
            DP_SERVICE.to_owned(),
            DP_PERSONAL.to_owned(),
        ]),
        server: Some(server),
        creds,
        dir: None,
    }
}

/// The standard Doppler fixture: a service token for `web`/`dev`, configured so.
pub fn doppler() -> Fixture<DopplerBackend> {
    doppler_with(DP_SERVICE, json!({"project": "web", "config": "dev"}))
}

// ---------------------------------------------------------------------------------- 1Password

/// The 1Password service-account token the fake `op` accepts.
pub const OP_SA_TOKEN: &str =
    "ops_eyJFAKEserviceaccounttoken0000000000000000000000000000000000000003";

/// The fake `op`'s database: desktop-mode signed in, the tricky values in vault `Private`
/// item `Service`, and names with spaces, dots, slashes and `&`.
pub fn op_db(mode: Option<&str>, desktop_signed_in: bool) -> serde_json::Value {
    let mut fields: Vec<serde_json::Value> = tricky_values()
        .into_iter()
        .enumerate()
        .map(|(i, (n, v))| json!({"id": format!("fld{i:023}"), "label": n.to_lowercase(), "value": v}))
        .collect();
    fields.push(
        json!({"id": "credential", "label": "credential", "value": "FAKE-sectioned-value-0009",
                       "section": {"id": "sec0000000000000000000000a", "label": "API Keys"}}),
    );
    json!({
        "service_account_token": OP_SA_TOKEN,
        "desktop_signed_in": desktop_signed_in,
        "mode": mode,
        "vaults": [
            {"id": "vlt0000000000000000000000a", "name": "Private", "items": [
                {"id": "itm0000000000000000000000a", "title": "Service", "fields": fields}
            ]},
            {"id": "vlt0000000000000000000000b", "name": "R&D / Ops", "items": [
                {"id": "itm0000000000000000000000b", "title": "db.prod & cache/primary", "fields": [
                    {"id": "fld0000000000000000000000b", "label": "pass word/& co.", "value": "FAKE-odd-names-value-0010 "},
                    {"id": "fld0000000000000000000000c", "label": "one-time password", "value": "otpauth://totp/FAKE?secret=FAKESEED", "totp": "123456", "type": "OTP"}
                ]}
            ]}
        ]
    })
}

/// Installs the fake `op` (as an executable named `op` whose interpreter is [`python()`])
/// with `db` beside it, and builds a backend with `extra` settings (`account`,
/// `service_account_token`, `timeout_secs`).
pub fn onepassword_with(
    db: serde_json::Value,
    extra: serde_json::Value,
) -> Fixture<OnePasswordBackend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let script =
        std::fs::read_to_string(repo().join("tests/fakes/op_fake.py")).expect("op_fake.py");
    let body = script
        .split_once('\n')
        .map(|(_, rest)| rest)
        .unwrap_or(&script);
    let op = dir.path().join("op");
    std::fs::write(&op, format!("#!{}\n{body}", python().display())).expect("write op");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&op, std::fs::Permissions::from_mode(0o755)).expect("chmod op");
    std::fs::write(dir.path().join("op-db.json"), db.to_string()).expect("write db");
    let creds = cred_store("vault://outloop/op", OP_SA_TOKEN);
    let registry = Registry::with(&[creds.clone() as Arc<dyn SecretBackend>]);
    let mut s = json!({"op_path": op.display().to_string(), "timeout_secs": 20});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    let backend =
        OnePasswordBackend::from_settings("op", &settings(s), &registry).expect("build op");
    let known = tricky_values()
        .into_iter()
        .map(|(n, v)| {
            (
                SecretRef::from_parts(
                    BackendKind::OnePassword,
                    &["Private", "Service", &n.to_lowercase()],
                )
                .unwrap(),
                v.into_bytes(),
            )
        })
        .collect();
    Fixture {
        backend: Arc::new(backend),
        known,
        missing: SecretRef::parse("op://Private/Nope/credential").unwrap(),
        secrets: with_values(vec![OP_SA_TOKEN.to_owned()]),
        server: None,
        creds,
        dir: Some(dir),
    }
}

/// The standard 1Password fixture: desktop-app mode, signed in.
pub fn onepassword() -> Fixture<OnePasswordBackend> {
    onepassword_with(op_db(None, true), json!({}))
}

/// Every JSON line the fake `op` recorded, oldest first.
pub fn op_records(f: &Fixture<OnePasswordBackend>) -> Vec<serde_json::Value> {
    let path = f
        .dir
        .as_ref()
        .expect("op fixture has a dir")
        .path()
        .join("op-record.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("record line"))
        .collect()
}
