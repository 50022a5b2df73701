//! The broker's request flow with a counting memory backend: denied requests read no secret,
//! each tenant gets only its own credential, and every attempt is audited.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use outloop_core::approval::ApprovalStore;
use outloop_core::audit::{AuditRecord, AuditSink};
use outloop_core::broker::{Broker, CallRequest, OnHold};
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
            let mut request_line = String::new();
            let _ = r.read_line(&mut request_line);
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
            // `/me` is an identity endpoint for account pinning: account 4455667.
            let body = if request_line.starts_with("GET /me ") {
                "{\"portalId\":4455667}".to_owned()
            } else {
                format!("{{\"you_sent\":\"{auth}\"}}")
            };
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
    state: std::path::PathBuf,
}

fn setup() -> Setup {
    setup_with(1, None)
}

fn setup_with(approval_timeout: u64, on_hold: Option<OnHold>) -> Setup {
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
credentials = {{ echo = "vault://acme/echo", pinned = {{ ref = "vault://acme/pinned", pin = {{ url = "{upstream}/me", pointer = "/portalId", expect = "1" }} }}, pinned_ok = {{ ref = "vault://acme/pinned", pin = {{ url = "{upstream}/me", pointer = "/portalId", expect = "4455667" }} }} }}
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
[actions.pinned_ok]
credential = "pinned_ok"
method = "GET"
url = "{upstream}/pinned"
auth = {{ type = "bearer" }}
[actions.post]
credential = "echo"
method = "POST"
url = "{upstream}/post"
auth = {{ type = "bearer" }}
[actions.limited]
credential = "echo"
method = "GET"
url = "{upstream}/limited"
auth = {{ type = "bearer" }}
params.n = {{ type = "integer", min = 0, max = 100, default = 1 }}
[actions.nocred]
credential = "missing"
method = "GET"
url = "{upstream}/x"
auth = {{ type = "bearer" }}
[policy.tenants.acme]
allow = ["*"]
approve = ["held"]
approval_timeout_secs = {approval_timeout}
rate = {{ limited = "2/hour" }}
params = {{ limited = {{ n = {{ max = 10 }} }} }}
[policy.tenants.globex]
allow = ["echo", "post"]
read_only = true
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
    let mut builder = Broker::builder(cfg)
        .backend(backend.clone())
        .audit(audit.clone());
    if let Some(f) = on_hold {
        builder = builder.on_hold(f);
    }
    let broker = builder.build().unwrap();
    Setup {
        _tmp: tmp,
        acme,
        globex,
        unbound,
        backend,
        audit,
        broker,
        state: root.join("home"),
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

fn req_p(dir: &Path, action: &str, params: &[(&str, serde_json::Value)]) -> CallRequest {
    CallRequest {
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..req(dir, action, None)
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
        (req(&s.globex, "post", None), ErrorKind::PolicyDenied),
        (req(&s.acme, "held", None), ErrorKind::ApprovalRequired),
        (
            req_p(&s.acme, "limited", &[("n", 11.into())]),
            ErrorKind::PolicyDenied,
        ),
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
    assert_eq!(recs.len(), 8, "every attempt audited");
    assert_eq!(recs[0].decision, "deny");
    assert_eq!(recs[0].tenant.as_deref(), Some("acme"));
    assert_eq!(recs[1].decision, "deny");
    assert_eq!(
        recs[3].rule.as_deref(),
        Some("policy.tenants.globex.read_only = true")
    );
    assert_eq!(recs[4].decision, "approve");
    assert_eq!(recs[4].outcome, "approval_required", "approval timed out");
    assert_eq!(
        recs[5].rule.as_deref(),
        Some("policy.tenants.acme.params.\"limited\".n.max = 10")
    );
}

#[tokio::test]
async fn rate_limit_denies_the_third_call_without_a_backend_read() {
    let s = setup();
    for _ in 0..2 {
        s.broker.call(req(&s.acme, "limited", None)).await.unwrap();
    }
    let reads = s.backend.reads();
    let e = s
        .broker
        .call(req(&s.acme, "limited", None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PolicyDenied);
    assert!(
        e.to_string().contains("rate.\"limited\" = \"2/hour\""),
        "{e}"
    );
    assert_eq!(
        s.backend.reads(),
        reads,
        "the rate-limited call read a secret"
    );
}

#[tokio::test]
async fn account_pin_blocks_a_key_filed_under_the_wrong_account() {
    let s = setup();
    // The identity endpoint says 4455667: the pin expecting it passes.
    let ok = s
        .broker
        .call(req(&s.acme, "pinned_ok", None))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    // The pin expecting account 1 fails, and the credential is blocked for the tenant.
    let e = s
        .broker
        .call(req(&s.acme, "pinned", None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(
        e.to_string()
            .contains("does not belong to the pinned account"),
        "{e}"
    );
    assert!(!e.to_string().contains("FAKE"));
    let reads = s.backend.reads();
    let e = s
        .broker
        .call(req(&s.acme, "pinned", None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        s.backend.reads(),
        reads,
        "a blocked credential was read again"
    );
}

#[tokio::test]
async fn an_approved_request_runs_once() {
    // The broker tells us when it holds the request, as it tells the CLI.
    let (on_hold, mut rx) = hold_ids();
    let s = Arc::new(setup_with(30, Some(on_hold)));
    let s2 = Arc::clone(&s);
    let call = tokio::spawn(async move { s2.broker.call(req(&s2.acme, "held", None)).await });
    let store = ApprovalStore::new(s.state.join("approvals"));
    let held_id = rx.recv().await.expect("the request was held");
    let pending = store.pending(chrono_now()).unwrap();
    assert_eq!(pending[0].id, held_id);
    assert_eq!(pending.len(), 1, "the request was not held");
    assert_eq!(pending[0].action, "held");
    assert_eq!(pending[0].tenant, "acme");
    assert_eq!(s.backend.reads(), 0, "a held request read a secret");
    store.decide(&pending[0].id, true, chrono_now()).unwrap();
    let result = call.await.unwrap().unwrap();
    assert_eq!(result.status, 200);
    // Single use: the approval is consumed.
    assert!(store.decide(&pending[0].id, true, chrono_now()).is_err());
    let recs = s.audit.0.lock().unwrap();
    assert_eq!(recs.last().unwrap().decision, "approve");
    assert_eq!(recs.last().unwrap().outcome, "ok");
}

/// A name that is no action is refused, and it is bounded in the message and the audit
/// record, whatever its length.
#[tokio::test]
async fn an_unknown_action_name_is_bounded_in_the_error_and_the_record() {
    let s = setup();
    let name = format!("nope\n{}", "x".repeat(1 << 20));
    let e = s.broker.call(req(&s.acme, &name, None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownAction);
    assert!(e.message().starts_with("no action `nope?xxx"), "{e}");
    assert!(e.message().len() < 200, "{} bytes", e.message().len());
    let recs = s.audit.0.lock().unwrap();
    let rec = recs.last().unwrap();
    assert_eq!(rec.outcome, "unknown_action");
    assert_eq!(rec.action.chars().count(), 100);
    assert!(rec.action.starts_with("nope?xxx"), "{}", rec.action);
    assert!(serde_json::to_string(rec).unwrap().len() < 1000);
    assert_eq!(s.backend.reads(), 0);
}

/// A request whose caller goes away mid-flight (its future dropped, as when an MCP client
/// disconnects or the runtime shuts down) is still audited, as `cancelled`; held for
/// approval, it also withdraws its approval, and its record says nothing was sent.
#[tokio::test]
async fn a_request_dropped_mid_flight_is_audited_as_cancelled() {
    let (on_hold, mut rx) = hold_ids();
    let s = setup_with(600, Some(on_hold));
    let store = ApprovalStore::new(s.state.join("approvals"));
    let held_id = tokio::select! {
        r = s.broker.call(req(&s.acme, "held", None)) => {
            panic!("a held request finished unapproved: {:?}", r.map(|r| r.status));
        }
        id = rx.recv() => id.expect("the request was held"),
    };
    // Its approval went with it: no longer listed, and a human cannot approve it.
    assert!(store.pending(chrono_now()).unwrap().is_empty());
    let e = store.decide(&held_id, true, chrono_now()).unwrap_err();
    assert!(e.to_string().contains("already withdrawn"), "{e}");
    // The call's future is gone; its record was appended as it dropped.
    let before = {
        let recs = s.audit.0.lock().unwrap();
        assert_eq!(recs.len(), 1, "{recs:?}");
        let rec = &recs[0];
        assert_eq!(rec.action, "held");
        assert_eq!(rec.tenant.as_deref(), Some("acme"));
        assert_eq!(rec.decision, "approve");
        assert_eq!(rec.outcome, "cancelled");
        let reason = rec.reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with(&format!(
                "held for approval as {held_id}; the caller went away"
            )) && reason.contains("withdrawn and nothing was sent"),
            "{rec:?}"
        );
        assert_eq!(s.backend.reads(), 0);
        let text = serde_json::to_string(&*recs).unwrap();
        assert!(!text.contains(ACME) && !text.contains(GLOBEX), "{text}");
        recs.len()
    };
    // A request that finishes is audited once, not again as cancelled.
    let r = s.broker.call(req(&s.acme, "echo", None)).await.unwrap();
    assert_eq!(r.status, 200);
    let recs = s.audit.0.lock().unwrap();
    assert_eq!(recs.len(), before + 1);
    assert_eq!(recs.last().unwrap().outcome, "ok");
}

/// When the approval cannot be withdrawn (here its store's lock file has become a
/// directory), the cancelled record says so instead of claiming it was.
#[tokio::test]
async fn a_dropped_held_request_whose_approval_cannot_be_withdrawn_says_so() {
    let (on_hold, mut rx) = hold_ids();
    let s = setup_with(600, Some(on_hold));
    let mut call = Box::pin(s.broker.call(req(&s.acme, "held", None)));
    let held_id = tokio::select! {
        r = &mut call => panic!("a held request finished unapproved: {:?}", r.map(|r| r.status)),
        id = rx.recv() => id.expect("the request was held"),
    };
    // Not polled again before the drop: the store breaks in between.
    let lock = s.state.join("approvals").join(".lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    drop(call);
    let recs = s.audit.0.lock().unwrap();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].outcome, "cancelled");
    let reason = recs[0].reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "nothing was sent, but approval {held_id} could not be withdrawn"
        )),
        "{reason}"
    );
    assert!(!reason.contains("is withdrawn"), "{reason}");
}

/// A hold callback (as the CLI gets one) and the ids of the approvals it is called with.
fn hold_ids() -> (OnHold, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let on_hold: OnHold = Arc::new(move |a: &outloop_core::approval::Approval| {
        let _ = tx.send(a.id.clone());
    });
    (on_hold, rx)
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
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

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(6))]

    /// For random mixes of concurrent requests from both tenants sharing one broker (and its
    /// credential cache), every request is served with its own tenant's secret.
    #[test]
    fn concurrent_random_requests_never_cross_tenants(
        order in proptest::collection::vec(proptest::bool::ANY, 4..24)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let s = Arc::new(setup());
            let tasks: Vec<_> = order
                .iter()
                .map(|&acme| {
                    let s = Arc::clone(&s);
                    tokio::spawn(async move {
                        let (dir, token) = if acme { (&s.acme, ACME) } else { (&s.globex, GLOBEX) };
                        let r = s.broker.call(req(dir, "echo", None)).await.unwrap();
                        (r.headers["x-auth-sha256"].clone(), digest_of(token))
                    })
                })
                .collect();
            for t in tasks {
                let (got, want) = t.await.unwrap();
                assert_eq!(got, want, "a tenant received another tenant's credential");
            }
            // The cache may miss under concurrency, but never reads more than once per request.
            assert!(s.backend.reads() <= order.len());
        });
    }
}
