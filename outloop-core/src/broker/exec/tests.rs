//! The exec request flow against a counting memory backend and an in-memory audit sink:
//! denied requests read no secret, allowed ones are audited before and after, and no record
//! or message holds a value.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::*;
use crate::approval::ApprovalStore;
use crate::audit::{AuditRecord, AuditSink};
use crate::backend::MemoryBackend;
use crate::broker::OnHold;
use crate::config::{HostConfig, Paths};
use crate::redact::Redactor;
use crate::reference::{BackendKind, SecretRef};

const ACME: &str = "FAKE-acme-exec-token-5d1e";
const ACME_KEY: &str = "FAKE-acme-exec-key-77aa";
const GLOBEX: &str = "FAKE-globex-exec-token-8c2b";

#[derive(Default)]
struct Sink(Mutex<Vec<AuditRecord>>);
impl AuditSink for Sink {
    fn append(&self, record: &mut AuditRecord) -> Result<()> {
        self.0.lock().unwrap().push(record.clone());
        Ok(())
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    acme: PathBuf,
    globex: PathBuf,
    ro: PathBuf,
    unbound: PathBuf,
    backend: Arc<MemoryBackend>,
    audit: Arc<Sink>,
    broker: Broker,
}

impl Setup {
    fn records(&self) -> Vec<AuditRecord> {
        self.audit.0.lock().unwrap().clone()
    }

    /// No secret in any audit record.
    fn assert_audit_clean(&self) {
        let text = serde_json::to_string(&self.records()).unwrap();
        for s in [ACME, ACME_KEY, GLOBEX] {
            assert!(!text.contains(s), "a secret reached the audit");
        }
    }
}

fn setup(extra_policy: &str, on_hold: Option<OnHold>) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let dirs = ["acme", "globex", "ro", "none"].map(|d| root.join(d));
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let [acme, globex, ro, unbound] = dirs;
    let text = format!(
        r#"
[tenants.acme]
workspaces = [{acme:?}]
credentials = {{ echo = "vault://acme/echo", key = "vault://acme/key", other = "vault://acme/other" }}
[tenants.globex]
workspaces = [{globex:?}]
credentials = {{ echo = "vault://globex/echo" }}
[tenants.ro]
workspaces = [{ro:?}]
credentials = {{ echo = "vault://acme/echo" }}
[policy.tenants.acme]
allow = ["exec:echo", "exec:key", "exec:nosuch"]
deny = ["exec:other"]
{extra_policy}
[policy.tenants.globex]
allow = ["echo.*"]
[policy.tenants.ro]
allow = ["exec:*"]
read_only = true
"#
    );
    let paths = Paths::under(root.join("home"));
    let cfg = HostConfig::from_str_at(&paths, &paths.config_file(), &text).unwrap();
    let backend = Arc::new(MemoryBackend::new("vault", BackendKind::Vault));
    for (r, v) in [
        ("vault://acme/echo", ACME),
        ("vault://acme/key", ACME_KEY),
        ("vault://acme/other", "FAKE-acme-other-0000"),
        ("vault://globex/echo", GLOBEX),
    ] {
        backend
            .insert(
                &SecretRef::parse(r).unwrap(),
                SecretValue::from_string(v.into()),
            )
            .unwrap();
    }
    let audit = Arc::new(Sink::default());
    let mut b = Broker::builder(cfg)
        .backend(backend.clone())
        .audit(audit.clone());
    if let Some(f) = on_hold {
        b = b.on_hold(f);
    }
    Setup {
        _tmp: tmp,
        acme,
        globex,
        ro,
        unbound,
        backend,
        audit,
        broker: b.build().unwrap(),
    }
}

fn cred(spec: &str) -> ExecCredential {
    ExecCredential::parse(spec).unwrap()
}

fn req(dir: &std::path::Path, creds: &[&str]) -> ExecRequest {
    ExecRequest {
        workspace: dir.to_path_buf(),
        tenant: None,
        credentials: creds.iter().map(|c| cred(c)).collect(),
        command: "printenv".into(),
    }
}

#[test]
fn parse_credential_specs() {
    assert_eq!(
        cred("echo"),
        ExecCredential {
            name: "echo".into(),
            variable: "ECHO".into()
        }
    );
    assert_eq!(cred("acme.key-2").variable, "ACME_KEY_2");
    assert_eq!(cred("echo=MY_TOKEN").variable, "MY_TOKEN");
    for (spec, want) in [
        (
            "x=LD_PRELOAD",
            "--credential `x=LD_PRELOAD`: variable `LD_PRELOAD` is refused",
        ),
        (
            "x=PATH",
            "--credential `x=PATH`: variable `PATH` is refused",
        ),
        ("x=1A", "is not a variable name"),
        ("x=A-B", "is not a variable name"),
        ("x=", "cannot be empty"),
        ("=X", "the credential name is empty"),
        ("", "the credential name is empty"),
        ("1x", "`1X` is not a variable name"),
    ] {
        let e = ExecCredential::parse(spec).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{spec}");
        assert!(e.message().contains(want), "{spec}: {}", e.message());
    }
}

#[tokio::test]
async fn allowed_request_hands_out_values_and_is_audited_twice() {
    let s = setup("", None);
    let mut session = s
        .broker
        .exec_start(req(&s.acme, &["echo", "key=API_KEY"]))
        .await
        .unwrap();
    assert_eq!(session.tenant(), "acme");
    assert_eq!(session.workspace(), s.acme);
    let dbg = format!("{session:?}");
    assert!(dbg.contains("API_KEY") && !dbg.contains(ACME) && !dbg.contains(ACME_KEY));

    // The opening record is on disk before any value is handed out.
    let recs = s.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].action, "exec:echo,key");
    assert_eq!(recs[0].decision, "allow");
    assert_eq!(recs[0].outcome, "started");
    assert_eq!(recs[0].tenant.as_deref(), Some("acme"));
    assert_eq!(recs[0].reason.as_deref(), Some("command `printenv`"));
    assert!(
        recs[0]
            .rule
            .as_deref()
            .unwrap()
            .contains("policy.tenants.acme.allow[0] = \"exec:echo\"")
    );

    let vars = session.take_variables();
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ECHO", "API_KEY"]);
    assert_eq!(vars[0].1.expose_secret(), ACME.as_bytes());
    assert_eq!(vars[1].1.expose_secret(), ACME_KEY.as_bytes());
    assert!(session.take_variables().is_empty(), "values are taken once");
    drop(vars);

    let out = session
        .redactor()
        .redact(format!("a={ACME} b={ACME_KEY}").as_bytes());
    assert_eq!(out.output, b"a=[REDACTED:echo] b=[REDACTED:key]");
    let id = session.request_id().to_owned();

    s.broker
        .exec_finish(session, ExecExit::Exited(42), 2)
        .await
        .unwrap();
    let recs = s.records();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].request_id, id);
    assert_eq!(recs[1].request_id, id);
    assert_eq!(recs[1].outcome, "ok");
    assert_eq!(recs[1].redactions, 2);
    assert_eq!(
        recs[1].reason.as_deref(),
        Some("command `printenv` exited with code 42")
    );
    assert_eq!(s.backend.reads(), 2);
    s.assert_audit_clean();
}

#[tokio::test]
async fn exit_kinds_are_recorded() {
    let s = setup("", None);
    for (exit, code, outcome, reason) in [
        (
            ExecExit::Signaled(9),
            137,
            "ok",
            "command `printenv` was ended by signal 9 (exit code 137)",
        ),
        (
            ExecExit::NotStarted(ErrorKind::NotFound, "no such file".into()),
            127,
            "not_found",
            "command `printenv` could not be started: no such file",
        ),
        (
            ExecExit::NotStarted(ErrorKind::Io, "permission denied".into()),
            126,
            "io",
            "command `printenv` could not be started: permission denied",
        ),
        (
            ExecExit::Exited(0),
            0,
            "ok",
            "command `printenv` exited with code 0",
        ),
        (
            ExecExit::Unknown {
                outcome: "client_gone".into(),
                why: "the client went away".into(),
            },
            1,
            "client_gone",
            "command `printenv`: the client went away",
        ),
    ] {
        assert_eq!(exit.code(), code);
        let session = s.broker.exec_start(req(&s.acme, &["echo"])).await.unwrap();
        s.broker.exec_finish(session, exit, 0).await.unwrap();
        let last = s.records().pop().unwrap();
        assert_eq!(last.outcome, outcome);
        assert_eq!(last.reason.as_deref(), Some(reason));
    }
}

#[tokio::test]
async fn denied_requests_read_no_secret() {
    let s = setup("", None);
    let mut named = req(&s.acme, &["echo"]);
    named.tenant = Some("globex".into());
    let cases = [
        // default deny: globex allows only `echo.*`
        (
            req(&s.globex, &["echo"]),
            ErrorKind::PolicyDenied,
            "policy.default",
        ),
        // an explicit deny wins even next to an allowed credential
        (
            req(&s.acme, &["echo", "other"]),
            ErrorKind::PolicyDenied,
            "policy.tenants.acme.deny[0] = \"exec:other\"",
        ),
        // not in the allow list
        (
            req(&s.acme, &["unlisted"]),
            ErrorKind::PolicyDenied,
            "policy.default",
        ),
        // read-only tenants cannot exec, whatever they allow
        (
            req(&s.ro, &["echo"]),
            ErrorKind::PolicyDenied,
            "policy.tenants.ro.read_only = true",
        ),
        (named, ErrorKind::PolicyDenied, "is bound to tenant `acme`"),
        (req(&s.unbound, &["echo"]), ErrorKind::UnboundWorkspace, ""),
    ];
    for (i, (r, kind, rule)) in cases.into_iter().enumerate() {
        let e = s.broker.exec_start(r).await.unwrap_err();
        assert_eq!(e.kind(), kind, "case {i}: {}", e.message());
        assert!(e.message().contains(rule), "case {i}: {}", e.message());
        let rec = s.records().pop().unwrap();
        assert_eq!(rec.decision, "deny", "case {i}");
        assert_eq!(rec.outcome, kind.as_str(), "case {i}");
        assert!(rec.reason.unwrap().starts_with("command `printenv`: "));
    }
    assert_eq!(
        s.backend.reads(),
        0,
        "no denied request touched the backend"
    );
    s.assert_audit_clean();
}

#[tokio::test]
async fn malformed_requests_are_refused_before_the_workspace() {
    let s = setup("", None);
    let mut twice = req(&s.acme, &["echo=A", "key=A"]);
    let mut refused = req(&s.acme, &["echo"]);
    refused.credentials[0].variable = "LD_PRELOAD".into();
    let mut empty_cmd = req(&s.acme, &["echo"]);
    empty_cmd.command.clear();
    let none = req(&s.acme, &[]);
    twice.tenant = None;
    for (r, want) in [
        (twice, "variable `A` is given twice"),
        (refused, "variable `LD_PRELOAD` is refused"),
        (empty_cmd, "the command is empty"),
        (none, "name at least one credential"),
    ] {
        let e = s.broker.exec_start(r).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.message().contains(want), "{}", e.message());
        assert_eq!(s.records().pop().unwrap().outcome, "usage");
    }
    assert_eq!(s.backend.reads(), 0);
}

#[tokio::test]
async fn missing_credential_is_a_config_error_after_policy() {
    let s = setup("", None);
    let e = s
        .broker
        .exec_start(req(&s.acme, &["nosuch"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.message()
            .contains("tenant `acme` has no credential `nosuch`"),
        "{}",
        e.message()
    );
    assert_eq!(s.backend.reads(), 0);
}

#[tokio::test]
async fn rate_limits_apply_to_exec_targets() {
    let s = setup("rate = { \"exec:*\" = \"1/hour\" }", None);
    let session = s.broker.exec_start(req(&s.acme, &["echo"])).await.unwrap();
    s.broker
        .exec_finish(session, ExecExit::Exited(0), 0)
        .await
        .unwrap();
    let e = s
        .broker
        .exec_start(req(&s.acme, &["echo"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PolicyDenied);
    assert!(
        e.message().contains("rate limit for `exec:echo`"),
        "{}",
        e.message()
    );
    assert_eq!(s.backend.reads(), 1);
}

#[tokio::test]
async fn approval_holds_the_request_with_its_command() {
    // The human's decision is taken in the hold callback, from the approval store the CLI's
    // `outloop approve`/`reject` use.
    let decision = Arc::new(Mutex::new((true, Vec::<String>::new())));
    let state: Arc<Mutex<Option<PathBuf>>> = Arc::new(Mutex::new(None));
    let (d, st) = (Arc::clone(&decision), Arc::clone(&state));
    let on_hold: OnHold = Arc::new(move |a: &crate::approval::Approval| {
        let dir = st.lock().unwrap().clone().unwrap();
        let mut d = d.lock().unwrap();
        d.1.push(format!("{} {} {}", a.method, a.action, a.params));
        ApprovalStore::new(dir)
            .decide(&a.id, d.0, chrono::Utc::now().timestamp())
            .unwrap();
    });
    let s = setup("approve = [\"exec:key\"]", Some(on_hold));
    // The store the broker holds requests in (`<state dir>/approvals`).
    *state.lock().unwrap() = Some(s.broker.config().paths.state_dir.join("approvals"));

    decision.lock().unwrap().0 = false;
    let e = s
        .broker
        .exec_start(req(&s.acme, &["echo", "key"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PolicyDenied);
    assert!(
        e.message().contains("rejected by a human"),
        "{}",
        e.message()
    );
    assert_eq!(s.backend.reads(), 0);

    decision.lock().unwrap().0 = true;
    let session = s
        .broker
        .exec_start(req(&s.acme, &["echo", "key"]))
        .await
        .unwrap();
    let rec = s.records().pop().unwrap();
    assert_eq!(rec.decision, "approve");
    assert_eq!(rec.outcome, "started");
    assert!(
        rec.reason
            .as_deref()
            .unwrap()
            .starts_with("command `printenv`; approved by a human"),
        "{:?}",
        rec.reason
    );
    drop(session);
    let shown = decision.lock().unwrap().1.clone();
    assert_eq!(shown.len(), 2);
    assert_eq!(
        shown[0],
        r#"EXEC exec:echo,key {"command":"printenv","variables":"ECHO,KEY"}"#
    );
    s.assert_audit_clean();
}
