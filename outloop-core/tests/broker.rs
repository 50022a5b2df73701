//! The broker's request flow with a counting memory backend: denied requests read no secret,
//! each tenant gets only its own credential, and every attempt is audited.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use outloop_core::audit::{AuditRecord, AuditSink};
use outloop_core::broker::{Broker, CallRequest};
use outloop_core::config::{HostConfig, Paths};
use outloop_core::{BackendKind, ErrorKind, MemoryBackend, Result, SecretRef, SecretValue};
use sha2::{Digest, Sha256};

fn digest_of(token: &str) -> String {
    hex::encode(Sha256::digest(format!("Bearer {token}").as_bytes()))
}

const ACME: &str = "FAKE-acme-broker-token-1";
const GLOBEX: &str = "FAKE-globex-broker-token-2";

/// An upstream that echoes the Authorization header it received in its body.
fn echo_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = v.trim().to_owned();
                }
            }
            let body = format!("{{\"you_sent\":\"{auth}\"}}");
            // A digest of what arrived lets tests check which secret was used without the
            // secret itself coming back.
            let digest = hex::encode(Sha256::digest(auth.as_bytes()));
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Echo: {auth}\r\nX-Auth-Sha256: {digest}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[derive(Default)]
struct MemorySink(Mutex<Vec<AuditRecord>>);
impl AuditSink for MemorySink {
    fn append(&self, record: &mut AuditRecord) -> Result<()> {
        self.0.lock().unwrap().push(record.clone());
        Ok(())
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    acme: std::path::PathBuf,
    globex: std::path::PathBuf,
    unbound: std::path::PathBuf,
    backend: Arc<MemoryBackend>,
    audit: Arc<MemorySink>,
    broker: Broker,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (acme, globex, unbound) = (root.join("acme"), root.join("globex"), root.join("none"));
    for d in [&acme, &globex, &unbound] {
        std::fs::create_dir_all(d).unwrap();
    }
    let upstream = echo_server();
    let text = format!(
        r#"
[egress]
allow_private = ["127.0.0.0/8"]
[tenants.acme]
workspaces = [{acme:?}]
credentials = {{ echo = "vault://acme/echo", pinned = {{ ref = "vault://acme/pinned", pin = {{ url = "{upstream}/me", pointer = "/id", expect = "1" }} }} }}
[tenants.globex]
workspaces = [{globex:?}]
credentials = {{ echo = "vault://globex/echo" }}
[actions.echo]
credential = "echo"
method = "GET"
url = "{upstream}/echo"
auth = {{ type = "bearer" }}
[actions.held]
credential = "echo"
method = "GET"
url = "{upstream}/held"
auth = {{ type = "bearer" }}
[actions.pinned]
credential = "pinned"
method = "GET"
url = "{upstream}/pinned"
auth = {{ type = "bearer" }}
[actions.nocred]
credential = "missing"
method = "GET"
url = "{upstream}/x"
auth = {{ type = "bearer" }}
[policy.tenants.acme]
allow = ["*"]
approve = ["held"]
[policy.tenants.globex]
allow = ["echo"]
"#
    );
    let paths = Paths::under(root.join("home"));
    let cfg = HostConfig::from_str_at(&paths, &paths.config_file(), &text).unwrap();
    let backend = Arc::new(MemoryBackend::new("vault", BackendKind::Vault));
    for (r, v) in [
        ("vault://acme/echo", ACME),
        ("vault://globex/echo", GLOBEX),
        ("vault://acme/pinned", "FAKE-pinned-token-3"),
    ] {
        backend
            .insert(
                &SecretRef::parse(r).unwrap(),
                SecretValue::from_string(v.into()),
            )
            .unwrap();
    }
    let audit = Arc::new(MemorySink::default());
    let broker = Broker::builder(cfg)
        .backend(backend.clone())
        .audit(audit.clone())
        .build()
        .unwrap();
    Setup {
        _tmp: tmp,
        acme,
        globex,
        unbound,
        backend,
        audit,
        broker,
    }
}

fn req(dir: &Path, action: &str, tenant: Option<&str>) -> CallRequest {
    CallRequest {
        workspace: dir.to_path_buf(),
        tenant: tenant.map(str::to_owned),
        action: action.into(),
        params: Default::default(),
    }
}

#[tokio::test]
async fn deny_paths_read_no_secret() {
    let s = setup();
    let cases = [
        (
            req(&s.acme, "echo", Some("globex")),
            ErrorKind::PolicyDenied,
        ),
        (req(&s.unbound, "echo", None), ErrorKind::UnboundWorkspace),
        (req(&s.globex, "held", None), ErrorKind::PolicyDenied),
        (req(&s.acme, "held", None), ErrorKind::ApprovalRequired),
        (req(&s.acme, "pinned", None), ErrorKind::PermissionDenied),
        (req(&s.acme, "nocred", None), ErrorKind::Config),
        (req(&s.acme, "nope", None), ErrorKind::UnknownAction),
    ];
    for (r, kind) in cases {
        let action = r.action.clone();
        let e = s.broker.call(r).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{action}: {e}");
        assert!(!e.to_string().contains("FAKE"), "{e}");
    }
    assert_eq!(s.backend.reads(), 0, "a denied request read a secret");
    let recs = s.audit.0.lock().unwrap();
    assert_eq!(recs.len(), 7, "every attempt audited");
    assert_eq!(recs[0].decision, "deny");
    assert_eq!(recs[0].tenant.as_deref(), Some("acme"));
    assert_eq!(recs[1].decision, "deny");
    assert_eq!(recs[3].decision, "approve");
    assert_eq!(recs[3].outcome, "approval_required");
}

#[tokio::test]
async fn each_tenant_gets_its_own_credential_redacted_and_cached() {
    let s = setup();
    let a = s.broker.call(req(&s.acme, "echo", None)).await.unwrap();
    assert_eq!(a.tenant, "acme");
    assert_eq!(a.body, "{\"you_sent\":\"Bearer [REDACTED:echo]\"}");
    assert_eq!(a.headers["x-echo"], "Bearer [REDACTED:echo]");
    assert_eq!(a.redactions, 2);
    assert_eq!(a.headers["x-auth-sha256"], digest_of(ACME));
    let g = s
        .broker
        .call(req(&s.globex, "echo", Some("globex")))
        .await
        .unwrap();
    assert_eq!(g.tenant, "globex");
    assert_eq!(g.headers["x-auth-sha256"], digest_of(GLOBEX));
    assert_eq!(s.backend.reads(), 2);
    // The second acme call is served from the (tenant, backend, reference) cache.
    s.broker.call(req(&s.acme, "echo", None)).await.unwrap();
    assert_eq!(s.backend.reads(), 2);
    let recs = s.audit.0.lock().unwrap();
    assert!(
        recs.iter()
            .all(|r| r.outcome == "ok" && r.status == Some(200))
    );
    let all = serde_json::to_string(&*recs).unwrap();
    assert!(!all.contains(ACME) && !all.contains(GLOBEX));
}

#[tokio::test]
async fn concurrent_requests_never_cross_tenants() {
    let s = Arc::new(setup());
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let (dir, tenant, token) = if i % 2 == 0 {
                (&s.acme, "acme", ACME)
            } else {
                (&s.globex, "globex", GLOBEX)
            };
            let r = s.broker.call(req(dir, "echo", None)).await.unwrap();
            assert_eq!(r.tenant, tenant);
            assert_eq!(
                r.headers["x-auth-sha256"],
                digest_of(token),
                "tenant {tenant} got another's secret"
            );
            assert_eq!(r.body, "{\"you_sent\":\"Bearer [REDACTED:echo]\"}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn redact_for_uses_only_the_workspace_tenants_secrets() {
    let s = setup();
    let buf = format!("a={ACME} p=FAKE-pinned-token-3 g={GLOBEX} enc=QmVhcmVy");
    let (out, n) = s
        .broker
        .redact_for(&s.acme.join("."), buf.as_bytes())
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(n, 2, "{out}");
    assert_eq!(
        out,
        format!("a=[REDACTED:echo] p=[REDACTED:pinned] g={GLOBEX} enc=QmVhcmVy")
    );
    // Every credential of acme was fetched (echo and pinned), none of globex.
    assert_eq!(s.backend.reads(), 2);
    let e = s
        .broker
        .redact_for(&s.unbound, buf.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnboundWorkspace);
    assert!(!e.to_string().contains("FAKE"));
    assert!(
        s.audit.0.lock().unwrap().is_empty(),
        "redaction is not an attempt"
    );
}
