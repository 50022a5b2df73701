//! Redaction findings in the audit: per-tenant canaries (`[tenants.<name>] canaries`) are
//! redacted wherever they come back and raise an alert in the audit record; a secret hit only
//! in a case-folded form is counted in `folded`. Every path the broker audits a redacted
//! result is covered: actions (`Broker::call`), alias requests (head and streamed body) and
//! exec's closing record. No synthetic value reaches an audit record or an error.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use outloop_core::audit::{AuditRecord, AuditSink};
use outloop_core::broker::{
    AliasRequest, Broker, CallRequest, ExecCredential, ExecExit, ExecRequest,
};
use outloop_core::config::{HostConfig, Paths};
use outloop_core::redact::{Findings, RedactStream};
use outloop_core::{BackendKind, MemoryBackend, Result, SecretRef, SecretValue};

const ACME: &str = "FAKE-acme-canarytest-token-1";
const GLOBEX: &str = "FAKE-globex-canarytest-token-2";
const ACME_CANARY: &str = "FAKEcanaryAcme0000111";
const GLOBEX_CANARY: &str = "FAKEcanaryGlobex2223334";
const GLOBEX_CANARY_2: &str = "FAKEcanaryGlobexRotated555";

/// Every synthetic value a test may plant; none may reach an audit line or an error.
const PLANTED: [&str; 5] = [ACME, GLOBEX, ACME_CANARY, GLOBEX_CANARY, GLOBEX_CANARY_2];

/// An upstream answering `GET <path>` with the (headers, body) registered for the path, or
/// 404. Plain HTTP/1.1 with `Content-Length` and `Connection: close` (RFC 9112).
fn upstream(routes: HashMap<String, (String, String)>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = r.read_line(&mut request_line);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
            let path = path.split('?').next().unwrap_or("/").to_owned();
            let (status, (headers, body)) = match routes.get(&path) {
                Some(r) => ("200 OK", r.clone()),
                None => ("404 Not Found", (String::new(), String::new())),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

/// An audit sink in memory that lets a test wait for a record written in the background.
#[derive(Default)]
struct Sink {
    records: Mutex<Vec<AuditRecord>>,
    added: Condvar,
}

impl AuditSink for Sink {
    fn append(&self, record: &mut AuditRecord) -> Result<()> {
        self.records.lock().unwrap().push(record.clone());
        self.added.notify_all();
        Ok(())
    }
}

impl Sink {
    fn all(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until `n` records are in, then returns them.
    fn wait_for(&self, n: usize) -> Vec<AuditRecord> {
        let guard = self.records.lock().unwrap();
        let (guard, timeout) = self
            .added
            .wait_timeout_while(guard, Duration::from_secs(10), |r| r.len() < n)
            .unwrap();
        assert!(!timeout.timed_out(), "only {} of {n} records", guard.len());
        guard.clone()
    }
}

/// Asserts that no planted value appears in `text` (an audit line, an error, a result).
fn assert_no_leak(text: &str) {
    for v in PLANTED {
        assert!(!text.contains(v), "a planted value leaked: {text}");
    }
}

fn assert_records_clean(records: &[AuditRecord]) {
    for r in records {
        assert_no_leak(&serde_json::to_string(r).unwrap());
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    acme: PathBuf,
    backend: Arc<MemoryBackend>,
    audit: Arc<Sink>,
    broker: Broker,
}

const ALERT_GLOBEX: &str = "canary of tenant `globex` seen in the response: a planted fake value came back, so something copied it where it does not belong";

/// Tenants acme and globex, each with a credential and canaries (globex has one that is
/// missing from the backend), a vault with caching off, and an upstream whose routes echo
/// what each test needs.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (acme, globex) = (root.join("acme"), root.join("globex"));
    for d in [&acme, &globex] {
        std::fs::create_dir_all(d).unwrap();
    }
    let routes: HashMap<String, (String, String)> = [
        ("/clean", "", "{\"ok\":true}".to_owned()),
        (
            "/globex-canary",
            "",
            format!("{{\"note\":\"{GLOBEX_CANARY}\"}}"),
        ),
        (
            "/globex-canary-2",
            "",
            format!("{{\"note\":\"{GLOBEX_CANARY_2}\"}}"),
        ),
        (
            "/canary-header",
            "X-Note: FAKEcanaryAcme0000111\r\n",
            "{}".to_owned(),
        ),
        (
            "/folded",
            "",
            format!("{{\"echo\":\"{}\"}}", ACME.to_uppercase()),
        ),
        ("/exact", "", format!("{{\"echo\":\"{ACME}\"}}")),
    ]
    .into_iter()
    .map(|(p, h, b)| (p.to_owned(), (h.to_owned(), b)))
    .collect();
    let up = upstream(routes);
    let mut actions = String::new();
    for a in [
        "clean",
        "globex-canary",
        "globex-canary-2",
        "canary-header",
        "folded",
        "exact",
    ] {
        actions.push_str(&format!(
            "[actions.{a}]\ncredential = \"echo\"\nmethod = \"GET\"\nurl = \"{up}/{a}\"\nauth = {{ type = \"bearer\" }}\n"
        ));
    }
    let text = format!(
        r#"
[backends.vault]
kind = "vault"
cache_ttl = "0s"
[egress]
allow_private = ["127.0.0.0/8"]
[tenants.acme]
workspaces = [{acme:?}]
canaries = ["vault://acme/canary"]
credentials = {{ echo = "vault://acme/echo" }}
[tenants.globex]
workspaces = [{globex:?}]
canaries = ["vault://globex/canary", "vault://globex/canary-missing"]
credentials = {{ echo = "vault://globex/echo" }}
{actions}
[aliases.up]
credential = "echo"
base_url = "{up}/"
auth = {{ type = "bearer" }}
allow = ["GET /**"]
[policy.tenants.acme]
allow = ["*"]
[policy.tenants.globex]
allow = ["*"]
"#
    );
    let paths = Paths::under(root.join("home"));
    let cfg = HostConfig::from_str_at(&paths, &paths.config_file(), &text).unwrap();
    let backend = Arc::new(MemoryBackend::new("vault", BackendKind::Vault));
    for (r, v) in [
        ("vault://acme/echo", ACME),
        ("vault://globex/echo", GLOBEX),
        ("vault://acme/canary", ACME_CANARY),
        ("vault://globex/canary", GLOBEX_CANARY),
    ] {
        backend
            .insert(
                &SecretRef::parse(r).unwrap(),
                SecretValue::from_string(v.into()),
            )
            .unwrap();
    }
    let audit = Arc::new(Sink::default());
    let broker = Broker::builder(cfg)
        .backend(backend.clone())
        .audit(audit.clone())
        .build()
        .unwrap();
    Setup {
        _tmp: tmp,
        acme,
        backend,
        audit,
        broker,
    }
}

fn call(dir: &Path, action: &str) -> CallRequest {
    CallRequest {
        workspace: dir.to_path_buf(),
        tenant: None,
        action: action.into(),
        params: Default::default(),
    }
}

/// Each action's response and the exact audit findings it leaves, by kind.
#[tokio::test]
async fn action_responses_fill_folded_and_canary_alerts() {
    struct Case {
        kind: &'static str,
        action: &'static str,
        body: &'static str,
        header: Option<(&'static str, &'static str)>,
        redactions: usize,
        folded: usize,
        canaries: &'static [&'static str],
        alert: Option<&'static str>,
    }
    let cases = [
        Case {
            kind: "nothing found: no new keys",
            action: "clean",
            body: "{\"ok\":true}",
            header: None,
            redactions: 0,
            folded: 0,
            canaries: &[],
            alert: None,
        },
        Case {
            kind: "exact credential: counted, not folded",
            action: "exact",
            body: "{\"echo\":\"[REDACTED:echo]\"}",
            header: None,
            redactions: 1,
            folded: 0,
            canaries: &[],
            alert: None,
        },
        Case {
            kind: "upper-cased credential: folded",
            action: "folded",
            body: "{\"echo\":\"[REDACTED:echo]\"}",
            header: None,
            redactions: 1,
            folded: 1,
            canaries: &[],
            alert: None,
        },
        Case {
            kind: "another tenant's canary in the body: redacted, alert",
            action: "globex-canary",
            body: "{\"note\":\"[REDACTED:secret]\"}",
            header: None,
            redactions: 1,
            folded: 0,
            canaries: &["globex"],
            alert: Some(ALERT_GLOBEX),
        },
        Case {
            kind: "own canary in a header: redacted, alert",
            action: "canary-header",
            body: "{}",
            header: Some(("x-note", "[REDACTED:secret]")),
            redactions: 1,
            folded: 0,
            canaries: &["acme"],
            alert: Some(
                "canary of tenant `acme` seen in the response: a planted fake value came back, so something copied it where it does not belong",
            ),
        },
    ];
    let s = setup();
    let mut wrong = Vec::new();
    for c in &cases {
        let before = s.audit.all().len();
        let r = s.broker.call(call(&s.acme, c.action)).await.unwrap();
        let rec = s.audit.all().remove(before);
        let got_header = c
            .header
            .map(|(n, _)| (n, r.headers.get(n).map(String::as_str).unwrap_or("")));
        let got = (
            r.body.as_str(),
            got_header,
            r.redactions,
            rec.redactions,
            rec.folded,
            rec.canaries.clone(),
            rec.alert.as_deref(),
        );
        let want = (
            c.body,
            c.header,
            c.redactions,
            c.redactions,
            c.folded,
            c.canaries.iter().map(|t| (*t).to_owned()).collect(),
            c.alert,
        );
        if got != want {
            wrong.push(format!("{}:\n got {got:?}\nwant {want:?}", c.kind));
        }
        let line = serde_json::to_string(&rec).unwrap();
        for (key, present) in [
            ("\"folded\"", c.folded > 0),
            ("\"canaries\"", !c.canaries.is_empty()),
            ("\"alert\"", c.alert.is_some()),
        ] {
            if line.contains(key) != present {
                wrong.push(format!("{}: key {key} present = {}", c.kind, !present));
            }
        }
        assert_no_leak(&format!("{r:?}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_records_clean(&s.audit.all());
}

/// A canary that cannot be resolved (`vault://globex/canary-missing`) does not block calls,
/// and is not fetched again on the next request (it waits 60 s), so a broken backend costs
/// one read per interval. Caching is off (`cache_ttl = "0s"`): every other value is read
/// on every request.
#[tokio::test]
async fn missing_canary_does_not_block_and_is_not_refetched_at_once() {
    let s = setup();
    let reads = || s.backend.reads();
    let r0 = reads();
    let r = s.broker.call(call(&s.acme, "clean")).await.unwrap();
    assert_eq!(r.body, "{\"ok\":true}");
    // echo, acme's canary, globex's canary and the missing one.
    assert_eq!(reads() - r0, 4);
    let r1 = reads();
    s.broker.call(call(&s.acme, "clean")).await.unwrap();
    assert_eq!(
        reads() - r1,
        3,
        "the missing canary was fetched again at once"
    );
    let rec = s.audit.all().pop().unwrap();
    assert_eq!((rec.outcome.as_str(), rec.alert.as_deref()), ("ok", None));
    assert_records_clean(&s.audit.all());
}

/// The redactor cache is keyed by the canaries too: a canary rotated to a new value is
/// searched for on the next request, though the credentials did not change.
#[tokio::test]
async fn a_rotated_canary_reaches_the_cached_redactor() {
    let s = setup();
    let r = s
        .broker
        .call(call(&s.acme, "globex-canary-2"))
        .await
        .unwrap();
    assert_eq!(r.body, format!("{{\"note\":\"{GLOBEX_CANARY_2}\"}}"));
    assert_eq!(s.audit.all().last().unwrap().canaries, Vec::<String>::new());

    s.backend
        .insert(
            &SecretRef::parse("vault://globex/canary").unwrap(),
            SecretValue::from_string(GLOBEX_CANARY_2.into()),
        )
        .unwrap();
    let r = s
        .broker
        .call(call(&s.acme, "globex-canary-2"))
        .await
        .unwrap();
    assert_eq!(r.body, "{\"note\":\"[REDACTED:secret]\"}");
    let rec = s.audit.all().pop().unwrap();
    assert_eq!(rec.canaries, ["globex"]);
    assert_eq!(rec.alert.as_deref(), Some(ALERT_GLOBEX));
    assert_records_clean(&s.audit.all());
}

/// An alias request's record is written when the head arrives; a canary in the streamed body
/// then adds a second record with the same request id carrying the alert.
#[tokio::test]
async fn alias_body_canary_adds_an_alert_record() {
    let s = setup();
    let req = |path: &str| AliasRequest {
        workspace: s.acme.clone(),
        alias: "up".into(),
        method: "GET".into(),
        path: path.into(),
        ..Default::default()
    };

    // Nothing found: one record, no follow-up.
    let resp = s.broker.request(req("/clean")).await.unwrap();
    let body: Vec<_> = resp.body.collect().await;
    assert_eq!(body.len(), 1);
    let clean = s.audit.wait_for(1);

    let resp = s.broker.request(req("/globex-canary")).await.unwrap();
    let mut out = Vec::new();
    let mut body = resp.body;
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out, b"{\"note\":\"[REDACTED:secret]\"}");
    let records = s.audit.wait_for(3);
    assert_eq!(records.len(), 3, "one record for the clean request");
    assert_eq!(clean[0].alert, None);
    let (head, follow) = (&records[1], &records[2]);
    assert_eq!(head.request_id, follow.request_id);
    assert_eq!((head.redactions, head.alert.as_deref()), (0, None));
    assert_eq!(follow.action, "alias:up");
    assert_eq!(follow.reason.as_deref(), Some("response body"));
    assert_eq!(follow.redactions, 1);
    assert_eq!(follow.canaries, ["globex"]);
    assert_eq!(
        follow.alert.as_deref(),
        Some(
            "canary of tenant `globex` seen in the response body: a planted fake value came back, so something copied it where it does not belong"
        )
    );
    // A canary in the head is on the first record itself.
    let resp = s.broker.request(req("/canary-header")).await.unwrap();
    drop(resp);
    let rec = s.audit.all().pop().unwrap();
    assert_eq!(rec.canaries, ["acme"]);
    assert_records_clean(&s.audit.all());
}

/// Exec's closing record carries what the command's output redaction found.
#[tokio::test]
async fn exec_finish_records_folded_and_canaries() {
    let s = setup();
    let session = s
        .broker
        .exec_start(ExecRequest {
            workspace: s.acme.clone(),
            tenant: None,
            credentials: vec![ExecCredential::parse("echo").unwrap()],
            command: "FAKE-tool".into(),
        })
        .await
        .unwrap();
    // What the caller's output streams found: the redactor is the session's own.
    let mut stream = session.redactor().stream_session();
    let mut out = Vec::new();
    let output = format!("{}\n{GLOBEX_CANARY}\n", ACME.to_lowercase());
    stream.push(output.as_bytes(), &mut out);
    stream.finish(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "[REDACTED:echo]\n[REDACTED:secret]\n"
    );
    let found: Findings = stream.findings();
    s.broker
        .exec_finish_with(session, ExecExit::Exited(0), &found)
        .await
        .unwrap();
    let rec = s.audit.all().pop().unwrap();
    assert_eq!(rec.outcome, "ok");
    assert_eq!((rec.redactions, rec.folded), (2, 1));
    assert_eq!(rec.canaries, ["globex"]);
    assert_eq!(
        rec.alert.as_deref(),
        Some(
            "canary of tenant `globex` seen in the command's output: a planted fake value came back, so something copied it where it does not belong"
        )
    );
    assert_records_clean(&s.audit.all());
}
