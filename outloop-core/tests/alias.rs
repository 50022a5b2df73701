//! Alias requests through the broker (`Broker::request`), against a loopback upstream that
//! echoes what it received and against the real httpbin (`OUTLOOP_TEST_HTTPBIN`, set by
//! scripts/test-rust.sh): the credential applied per `auth`, denied requests read no secret
//! and send nothing, the agent's credentials dropped, paths pinned below the base URL,
//! responses redacted while they stream, the size cap enforced without buffering, and the
//! audit record.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use futures_util::StreamExt;
use outloop_core::audit::{AuditRecord, AuditSink};
use outloop_core::broker::{AliasRequest, Broker};
use outloop_core::config::{HostConfig, Paths};
use outloop_core::{BackendKind, ErrorKind, MemoryBackend, Result, SecretRef, SecretValue};

const ACME: &str = "FAKE-acme-alias-token-1";
const GLOBEX: &str = "FAKE-globex-alias-token-2";

/// What the loopback upstream saw of one request.
#[derive(Debug, Clone, Default)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A loopback HTTP/1.1 upstream. `/stream…` answers with a chunked body: the first chunk at
/// once, then it waits for the test's signal on `release` before the rest. Every other path
/// echoes the request line, the headers and the body as JSON, and reflects the
/// Authorization header in `X-Echo`.
struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: mpsc::Sender<()>,
}

fn upstream() -> Upstream {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (release, wait) = mpsc::channel::<()>();
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut seen = Seen::default();
            if r.read_line(&mut seen.request_line).unwrap_or(0) == 0 {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    if k == "content-length" {
                        len = v.parse().unwrap_or(0);
                    }
                    seen.headers.push((k, v));
                }
            }
            seen.body = vec![0; len];
            let _ = r.read_exact(&mut seen.body);
            log.lock().unwrap().push(seen.clone());
            let path = seen.request_line.split(' ').nth(1).unwrap_or("").to_owned();
            if path.contains("/stream") {
                // The secret is split across the two chunks, so the redactor must hold the
                // tail of chunk 1 until chunk 2 shows whether it is a secret.
                let big = path.contains("big");
                let first: Vec<u8> = if big {
                    vec![b'a'; 600]
                } else {
                    format!("data: event-1\n\ndata: token {}", &ACME[..10]).into_bytes()
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
                    first.len()
                );
                let _ = s.write_all(&first);
                let _ = s.write_all(b"\r\n");
                let _ = s.flush();
                let _ = wait.recv();
                let second: Vec<u8> = if big {
                    vec![b'b'; 600]
                } else {
                    format!("{} end\n\n", &ACME[10..]).into_bytes()
                };
                let _ = write!(s, "{:x}\r\n", second.len());
                let _ = s.write_all(&second);
                let _ = s.write_all(b"\r\n0\r\n\r\n");
                continue;
            }
            let auth = seen
                .headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let body = serde_json::json!({
                "request_line": seen.request_line.trim_end(),
                "headers": seen.headers,
                "body": String::from_utf8_lossy(&seen.body),
            })
            .to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Echo: {auth}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Upstream { url, seen, release }
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
    acme: PathBuf,
    globex: PathBuf,
    backend: Arc<MemoryBackend>,
    audit: Arc<MemorySink>,
    broker: Broker,
    up: Upstream,
}

fn setup() -> Setup {
    let up = upstream();
    let httpbin = std::env::var("OUTLOOP_TEST_HTTPBIN").unwrap_or_else(|_| up.url.clone());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (acme, globex) = (root.join("acme"), root.join("globex"));
    for d in [&acme, &globex] {
        std::fs::create_dir_all(d).unwrap();
    }
    let text = format!(
        r#"
[egress]
allow_private = ["127.0.0.0/8"]
[tenants.acme]
workspaces = [{acme:?}]
credentials = {{ echo = "vault://acme/echo" }}
[tenants.globex]
workspaces = [{globex:?}]
credentials = {{ echo = "vault://globex/echo" }}
[aliases.echo]
credential = "echo"
base_url = "{up}/base"
auth = {{ type = "bearer" }}
allow = ["GET /anything/**", "POST /anything/**", "GET /stream*"]
[aliases.keyed]
credential = "echo"
base_url = "{up}/"
auth = {{ type = "header", name = "X-Api-Key" }}
allow = ["GET /**"]
[aliases.httpbin]
credential = "echo"
base_url = "{httpbin}"
auth = {{ type = "bearer" }}
allow = ["GET /anything/**", "GET /anything", "GET /bearer", "GET /headers"]
[aliases.httpbinq]
credential = "echo"
base_url = "{httpbin}"
auth = {{ type = "query", name = "api_key" }}
allow = ["GET /anything"]
[policy.tenants.acme]
allow = ["alias:*"]
max_response_bytes = 1000
[policy.tenants.globex]
allow = ["alias:echo"]
rate = {{ "alias:echo" = "1/hour" }}
"#,
        up = up.url
    );
    let paths = Paths::under(root.join("home"));
    let cfg = HostConfig::from_str_at(&paths, &paths.config_file(), &text).unwrap();
    let backend = Arc::new(MemoryBackend::new("vault", BackendKind::Vault));
    for (r, v) in [("vault://acme/echo", ACME), ("vault://globex/echo", GLOBEX)] {
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
        backend,
        audit,
        broker,
        up,
    }
}

fn req(dir: &Path, alias: &str, method: &str, path: &str) -> AliasRequest {
    AliasRequest {
        workspace: dir.to_path_buf(),
        alias: alias.into(),
        method: method.into(),
        path: path.into(),
        ..Default::default()
    }
}

/// Asserts that no synthetic secret appears in `text`.
fn assert_no_leak(text: &str) {
    for secret in [ACME, GLOBEX] {
        assert!(!text.contains(secret), "secret leaked: {text}");
    }
}

#[tokio::test]
async fn allowed_request_applies_the_credential_and_drops_the_agents() {
    let s = setup();
    let mut r = req(&s.acme, "echo", "POST", "/anything/items");
    r.query = Some("limit=5&q=a%20b".into());
    r.headers = vec![
        ("Authorization".into(), "Bearer FAKE-agent-own-token".into()),
        ("Cookie".into(), "session=FAKE-agent-cookie".into()),
        ("Proxy-Authorization".into(), "Basic FAKE-proxy".into()),
        ("Host".into(), "evil.example".into()),
        ("X-Custom".into(), "kept".into()),
        ("Content-Type".into(), "application/json".into()),
    ];
    r.body = br#"{"name":"FAKE widget"}"#.to_vec();
    let resp = s.broker.request(r).await.unwrap();
    assert_eq!(resp.status, 200);
    let echo = resp
        .headers
        .iter()
        .find(|(k, _)| k == "x-echo")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(echo, "Bearer [REDACTED:echo]");
    assert!(!resp.headers.iter().any(|(k, _)| k == "content-length"));
    let result = resp.collect("echo", "acme").await.unwrap();
    assert_eq!(result.action, "alias:echo");
    assert_eq!(result.tenant, "acme");
    assert!(result.redactions >= 2, "{result:?}");
    let body: serde_json::Value = serde_json::from_str(&result.body).unwrap();
    assert_eq!(
        body["request_line"],
        "POST /base/anything/items?limit=5&q=a%20b HTTP/1.1"
    );
    assert_eq!(body["body"], r#"{"name":"FAKE widget"}"#);
    let headers: Vec<(String, String)> = serde_json::from_value(body["headers"].clone()).unwrap();
    let get = |n: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("authorization"), ["Bearer [REDACTED:echo]"]);
    assert!(get("cookie").is_empty());
    assert!(get("proxy-authorization").is_empty());
    assert_eq!(get("host").len(), 1);
    assert!(!get("host")[0].contains("evil"));
    assert_eq!(get("x-custom"), ["kept"]);
    assert_eq!(get("content-type"), ["application/json"]);
    assert_no_leak(&serde_json::to_string(&result).unwrap());
    // The upstream itself got the tenant's token, not the agent's.
    let seen = s.up.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let auth: Vec<_> = seen[0]
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .collect();
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0].1, format!("Bearer {ACME}"));
    drop(seen);

    let records = s.audit.0.lock().unwrap();
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    assert_eq!(rec.action, "alias:echo");
    assert_eq!(rec.request.as_deref(), Some("POST /anything/items"));
    assert_eq!(rec.decision, "allow");
    assert_eq!(rec.outcome, "ok");
    assert_eq!(rec.status, Some(200));
    assert_eq!(rec.tenant.as_deref(), Some("acme"));
    let line = serde_json::to_string(rec).unwrap();
    assert_no_leak(&line);
    for absent in ["limit=5", "a%20b", "widget", "FAKE-agent"] {
        assert!(!line.contains(absent), "{absent} in audit: {line}");
    }
}

#[tokio::test]
async fn header_auth_replaces_an_agent_header_of_the_same_name() {
    let s = setup();
    let mut r = req(&s.acme, "keyed", "GET", "/x");
    r.headers = vec![("x-api-key".into(), "FAKE-agent-key".into())];
    let result = s
        .broker
        .request(r)
        .await
        .unwrap()
        .collect("keyed", "acme")
        .await
        .unwrap();
    let seen = s.up.seen.lock().unwrap();
    let keys: Vec<_> = seen[0]
        .headers
        .iter()
        .filter(|(k, _)| k == "x-api-key")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(keys, [ACME]);
    // A JSON array element is tagged with its number (see outloop_core::redact).
    assert!(result.body.contains("[REDACTED:echo#1]"), "{}", result.body);
    assert!(!result.body.contains("FAKE-agent-key"));
    assert_no_leak(&result.body);
}

#[tokio::test]
async fn denied_requests_read_no_secret_and_send_nothing() {
    let s = setup();
    let mut wrong_tenant = req(&s.acme, "echo", "GET", "/anything/x");
    wrong_tenant.tenant = Some("globex".into());
    let cases = [
        // outside the alias's allow rules: path, then method
        (
            req(&s.acme, "echo", "GET", "/admin/users"),
            ErrorKind::PolicyDenied,
        ),
        (
            req(&s.acme, "echo", "DELETE", "/anything/x"),
            ErrorKind::PolicyDenied,
        ),
        // the tenant's rules: globex may use `echo` only
        (
            req(&s.globex, "keyed", "GET", "/x"),
            ErrorKind::PolicyDenied,
        ),
        (wrong_tenant, ErrorKind::PolicyDenied),
        (
            req(&s.acme, "nosuch", "GET", "/x"),
            ErrorKind::UnknownAction,
        ),
        (
            req(&s.acme, "echo", "TRACE", "/anything/x"),
            ErrorKind::InvalidParameter,
        ),
    ];
    let n = cases.len();
    for (r, kind) in cases {
        let what = format!("{} {} {}", r.alias, r.method, r.path);
        let err = s.broker.request(r).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{what}: {err}");
        assert_no_leak(&err.to_string());
    }
    assert_eq!(s.backend.reads(), 0);
    assert!(s.up.seen.lock().unwrap().is_empty());
    let records = s.audit.0.lock().unwrap();
    assert_eq!(records.len(), n);
    for rec in records.iter() {
        assert_ne!(rec.outcome, "ok");
        assert_no_leak(&serde_json::to_string(rec).unwrap());
    }
    assert_eq!(records[0].decision, "deny");
    assert!(
        records[0]
            .rule
            .as_deref()
            .unwrap()
            .starts_with("aliases.echo.allow"),
        "{:?}",
        records[0].rule
    );
}

#[tokio::test]
async fn paths_cannot_leave_the_base_url() {
    let s = setup();
    let paths = [
        "/anything/../../admin",
        "/anything/%2e%2e/%2e%2e/admin",
        "/anything/%2E%2E/admin",
        "/anything/.%2e/admin",
        "/anything/./x",
        "/anything/a%2f..%2f..%2fadmin",
        "/anything/a%5c..%5cadmin",
        "//evil.example/anything/x",
        "/anything//evil.example",
        "http://evil.example/anything/x",
        "https:/evil.example/anything",
        "@evil.example/anything",
        "anything/x",
        "/anything\\..\\admin",
        "\\\\evil.example\\x",
        "/anything/x?token=1",
        "/anything/x#frag",
        "/anything/x y",
        "/anything/%zz",
    ];
    for path in paths {
        let err = s
            .broker
            .request(req(&s.acme, "echo", "GET", path))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter, "{path}: {err}");
        assert!(err.message().starts_with("path:"), "{path}: {err}");
    }
    assert_eq!(s.backend.reads(), 0);
    assert!(s.up.seen.lock().unwrap().is_empty());
    // A query cannot smuggle a fragment or raw spaces either.
    let mut r = req(&s.acme, "echo", "GET", "/anything/x");
    r.query = Some("a=1#x".into());
    let err = s.broker.request(r).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    assert!(s.up.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_stream_is_redacted_chunk_by_chunk_without_waiting_for_its_end() {
    let s = setup();
    let resp = s
        .broker
        .request(req(&s.acme, "echo", "GET", "/stream"))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let mut body = resp.body;
    // The first event arrives while the upstream still waits for our signal: nothing waits
    // for the end of the body. The tail that may begin the secret is held back.
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: event-1\n\ndata: token ");
    s.up.release.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(rest).unwrap(), "[REDACTED:echo] end\n\n");
    assert_eq!(body.redactions(), 1);
}

#[tokio::test]
async fn the_size_cap_ends_a_stream_that_was_not_buffered() {
    let s = setup();
    let resp = s
        .broker
        .request(req(&s.acme, "echo", "GET", "/stream-big"))
        .await
        .unwrap();
    let mut body = resp.body;
    // 600 bytes arrive before the upstream sends more: under the 1,000-byte cap, streamed.
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(first.len(), 600);
    s.up.release.send(()).unwrap();
    let err = body.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SafetyRefused);
    assert!(err.message().contains("1000-byte cap"), "{err}");
    assert!(body.next().await.is_none());
}

/// The same through httpbin (https://github.com/postmanlabs/httpbin): `/bearer` returns the
/// token it received, `/headers` and `/anything` reflect the request headers and query.
#[tokio::test]
async fn httpbin_reflections_come_back_redacted() {
    let Ok(_) = std::env::var("OUTLOOP_TEST_HTTPBIN") else {
        panic!(
            "OUTLOOP_TEST_HTTPBIN is not set: run the suite with scripts/test.sh, which starts httpbin"
        );
    };
    let s = setup();
    let calls = AtomicUsize::new(0);
    for path in ["/bearer", "/headers", "/anything/x"] {
        calls.fetch_add(1, Ordering::Relaxed);
        let mut r = req(&s.acme, "httpbin", "GET", path);
        r.query = Some("page=2".into());
        r.headers = vec![
            ("Authorization".into(), "Bearer FAKE-agent-own-token".into()),
            ("X-Agent".into(), "FAKE-visible".into()),
        ];
        let result = s
            .broker
            .request(r)
            .await
            .unwrap()
            .collect("httpbin", "acme")
            .await
            .unwrap();
        assert_eq!(result.status, 200, "{path}: {}", result.body);
        assert!(
            result.body.contains("[REDACTED:echo]"),
            "{path}: {}",
            result.body
        );
        assert!(!result.body.contains("FAKE-agent-own-token"), "{path}");
        assert_no_leak(&serde_json::to_string(&result).unwrap());
        if path != "/bearer" {
            assert!(
                result.body.contains("FAKE-visible"),
                "{path}: {}",
                result.body
            );
        }
        if path == "/anything/x" {
            let v: serde_json::Value = serde_json::from_str(&result.body).unwrap();
            assert_eq!(v["args"]["page"], "2");
            assert!(v["url"].as_str().unwrap().ends_with("/anything/x?page=2"));
        }
    }
    // Query auth: httpbin reflects the query (args and url) with the credential in it.
    let mut r = req(&s.acme, "httpbinq", "GET", "/anything");
    r.query = Some("api_key=FAKE-agent-key&page=3".into());
    let result = s
        .broker
        .request(r)
        .await
        .unwrap()
        .collect("httpbinq", "acme")
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&result.body).unwrap();
    assert_eq!(v["args"]["api_key"], "[REDACTED:echo]");
    assert_eq!(v["args"]["page"], "3");
    assert!(!result.body.contains("FAKE-agent-key"));
    assert_no_leak(&result.body);
    assert_eq!(s.audit.0.lock().unwrap().len(), calls.into_inner() + 1);
}

#[tokio::test]
async fn rate_limits_count_alias_requests() {
    let s = setup();
    let first = s
        .broker
        .request(req(&s.globex, "echo", "GET", "/anything/a"))
        .await
        .unwrap()
        .collect("echo", "globex")
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    assert!(first.body.contains("[REDACTED:echo]"), "{}", first.body);
    assert!(!first.body.contains(GLOBEX));
    let err = s
        .broker
        .request(req(&s.globex, "echo", "GET", "/anything/b"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PolicyDenied);
    assert!(err.message().contains("rate limit"), "{err}");
    assert_eq!(s.up.seen.lock().unwrap().len(), 1);
    let records = s.audit.0.lock().unwrap();
    assert_eq!(records[1].decision, "deny");
    assert_eq!(records[1].request.as_deref(), Some("GET /anything/b"));
}
