//! Request and response behaviour against loopback servers: credential placement, redirects,
//! egress refusals, size caps and content encodings. No external network is used.
//!
//! The test server is a minimal HTTP/1.1 responder: one request per connection, answered with
//! a canned response that carries `Connection: close`, so the client never reuses a socket and
//! each request is one recorded connection.

use std::io::Write as _;
use std::net::SocketAddr;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::action::ParamValue;

const BEARER: &str = "FAKE-bearer-7f3a9c1d2e";
const KEY: &str = "FAKE-key/+=&?#-5b6c";

/// One request as the server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    raw: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Server {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Server {
    /// Every request received so far. The server records a request before answering it, so
    /// once the client has a response, its request is here.
    fn requests(&mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Ok(s) = self.seen.try_recv() {
            out.push(s);
        }
        out
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }
}

async fn read_request(sock: &mut TcpStream) -> Seen {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).await.expect("read request");
        assert!(n > 0, "client closed before sending a full request head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("ASCII request head");
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().expect("numeric content-length"))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "client closed before sending the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut parts = request_line.split(' ');
    Seen {
        method: parts.next().unwrap_or_default().to_owned(),
        target: parts.next().unwrap_or_default().to_owned(),
        headers,
        body: buf[head_end..head_end + len].to_vec(),
        raw: String::from_utf8_lossy(&buf).into_owned(),
    }
}

/// A server answering its first `responses.len()` connections, in order.
async fn serve(responses: Vec<Vec<u8>>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for resp in responses {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let req = read_request(&mut sock).await;
            let _ = tx.send(req);
            let _ = sock.write_all(&resp).await;
            let _ = sock.shutdown().await;
        }
    });
    Server { addr, seen }
}

/// A canned response. Adds `Content-Length` (unless the headers set a length or chunking) and
/// `Connection: close`.
fn response(status_line: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status_line}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn ok(body: &str) -> Vec<u8> {
    response("200 OK", &[("Content-Type", "text/plain")], body.as_bytes())
}

/// A listener nobody answers on; `assert_untouched` proves no connection reached it.
fn silent_listener() -> std::net::TcpListener {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    l
}

fn assert_untouched(l: &std::net::TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => panic!("accept failed: {e}"),
        Ok((_, peer)) => {
            panic!("a connection from {peer} reached a listener that must stay untouched")
        }
    }
}

fn client(allow: &[&str]) -> HttpClient {
    HttpClient::new(&EgressConfig {
        allow_private: allow.iter().map(|n| n.parse().expect("CIDR")).collect(),
    })
    .expect("client")
}

fn loopback_client() -> HttpClient {
    client(&["127.0.0.0/8", "::1/128"])
}

fn action_with(name: &str, toml_text: &str, client: HttpClient) -> HttpAction {
    let cfg: ActionConfig = toml::from_str(toml_text).expect("action config parses");
    HttpAction::new(name, &cfg, client).expect("action compiles")
}

fn action(toml_text: &str) -> HttpAction {
    action_with("test.action", toml_text, loopback_client())
}

fn creds(name: &str, value: &str) -> Credentials {
    let mut c = Credentials::new();
    c.insert(name, SecretValue::from_string(value.to_owned()));
    c
}

async fn run(
    a: &HttpAction,
    raw: &[(&str, serde_json::Value)],
    c: &Credentials,
) -> Result<ActionResponse> {
    let raw: RawParams = raw
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let params = a.validate(&raw)?;
    a.execute(&params, c).await
}

async fn body_of(resp: ActionResponse) -> (Vec<u8>, Option<Error>) {
    let mut body = Vec::new();
    let mut stream = resp.body;
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => body.extend_from_slice(&b),
            Err(e) => return (body, Some(e)),
        }
    }
    (body, None)
}

async fn body_ok(resp: ActionResponse) -> Vec<u8> {
    match body_of(resp).await {
        (body, None) => body,
        (_, Some(e)) => panic!("body failed: {e}"),
    }
}

fn header<'a>(resp: &'a ActionResponse, name: &str) -> Option<&'a [u8]> {
    resp.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

fn assert_clean(e: &Error) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("FAKE"), "credential in error: {shown}");
}

// ---- credential placement ----

#[tokio::test]
async fn bearer_goes_only_in_authorization() {
    let mut srv = serve(vec![ok("hello")]).await;
    let a = action(&format!(
        r#"
        credential = "svc"
        method = "GET"
        url = "{}"
        auth = {{ type = "bearer" }}
        "#,
        srv.url("/v1/me")
    ));
    assert_eq!(a.credentials(), vec!["svc".to_owned()]);
    let resp = run(&a, &[], &creds("svc", BEARER)).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.status_text, "OK");
    assert_eq!(body_ok(resp).await, b"hello".to_vec());
    let seen = srv.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/v1/me");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {BEARER}").as_str())
    );
    assert_eq!(seen[0].raw.matches(BEARER).count(), 1, "{}", seen[0].raw);
}

#[tokio::test]
async fn named_header_uses_the_format() {
    let mut srv = serve(vec![ok("")]).await;
    let a = action(&format!(
        r#"
        credential = "svc"
        method = "GET"
        url = "{}"
        auth = {{ type = "header", name = "X-Api-Key", format = "Token {{secret}}" }}
        "#,
        srv.url("/")
    ));
    run(&a, &[], &creds("svc", KEY)).await.unwrap();
    let seen = srv.requests();
    assert_eq!(
        seen[0].header("x-api-key"),
        Some(format!("Token {KEY}").as_str())
    );
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(seen[0].raw.matches(KEY).count(), 1);
}

#[tokio::test]
async fn basic_auth_encodes_user_and_secret() {
    let mut srv = serve(vec![ok("")]).await;
    let a = action(&format!(
        r#"
        credential = "svc"
        method = "GET"
        url = "{}"
        auth = {{ type = "basic", username = "api" }}
        "#,
        srv.url("/")
    ));
    run(&a, &[], &creds("svc", KEY)).await.unwrap();
    let seen = srv.requests();
    let want = base64::engine::general_purpose::STANDARD.encode(format!("api:{KEY}"));
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Basic {want}").as_str())
    );
    assert!(!seen[0].raw.contains(KEY));
}

#[tokio::test]
async fn query_credential_is_one_encoded_pair() {
    let mut srv = serve(vec![ok("")]).await;
    let a = action(&format!(
        r#"
        credential = "svc"
        method = "GET"
        url = "{}"
        query = {{ limit = "{{limit}}", api_key = "{{limit}}" }}
        auth = {{ type = "query", name = "api_key" }}
        [params]
        limit = {{ type = "integer", default = 5 }}
        "#,
        srv.url("/search")
    ));
    run(&a, &[], &creds("svc", KEY)).await.unwrap();
    let seen = srv.requests();
    let url = Url::parse(&format!("http://x{}", seen[0].target)).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        vec![
            ("limit".to_owned(), "5".to_owned()),
            ("api_key".to_owned(), KEY.to_owned()),
        ]
    );
    assert_eq!(url.path(), "/search");
    assert_eq!(seen[0].header("authorization"), None);
}

#[tokio::test]
async fn auth_header_values_are_sensitive() {
    for auth in [
        r#"{ type = "bearer" }"#,
        r#"{ type = "basic", username = "u" }"#,
        r#"{ type = "header", name = "X-Key" }"#,
    ] {
        let a = action(&format!(
            "credential = \"svc\"\nmethod = \"GET\"\nurl = \"https://api.example.com/\"\nauth = {auth}"
        ));
        let c = creds("svc", BEARER);
        let (url, headers, body) = a.prepare(&Params::default()).unwrap();
        let req = a
            .request(
                &a.method,
                &url,
                &headers,
                body.as_ref(),
                c.get("svc"),
                &[],
                Duration::from_secs(1),
            )
            .unwrap();
        let (name, value) = req
            .headers()
            .iter()
            .find(|(k, _)| *k == AUTHORIZATION || k.as_str() == "x-key")
            .expect("auth header set");
        assert!(value.is_sensitive(), "{name} not marked sensitive");
        assert!(!format!("{req:?}").contains("FAKE"), "{auth}");
    }
}

#[tokio::test]
async fn secret_unfit_for_a_header_is_refused_without_sending() {
    let l = silent_listener();
    let a = action(&format!(
        "credential = \"svc\"\nmethod = \"GET\"\nurl = \"http://127.0.0.1:{}/\"\nauth = {{ type = \"bearer\" }}",
        l.local_addr().unwrap().port()
    ));
    let e = run(&a, &[], &creds("svc", "FAKE-line\r\nX-Injected: 1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidSecret);
    assert!(e.message().contains("`svc`"), "{e}");
    assert_clean(&e);
    assert!(!e.message().contains("Injected"), "{e}");
    assert_untouched(&l);
}

#[tokio::test]
async fn missing_credential_is_internal() {
    let l = silent_listener();
    let a = action(&format!(
        "credential = \"svc\"\nmethod = \"GET\"\nurl = \"http://127.0.0.1:{}/\"\nauth = {{ type = \"bearer\" }}",
        l.local_addr().unwrap().port()
    ));
    let e = run(&a, &[], &creds("other", BEARER)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert!(e.message().contains("`svc`"), "{e}");
    assert_untouched(&l);
}

// ---- request shape ----

#[tokio::test]
async fn post_fills_path_query_headers_and_typed_body() {
    let mut srv = serve(vec![response("201 Whatever", &[], b"{}")]).await;
    let a = action(&format!(
        r#"
        description = "Create a thing"
        method = "POST"
        url = "{}"
        query = {{ dry = "{{dry}}", fixed = "1", after = "{{after}}" }}
        headers = {{ "X-Trace" = "t-{{id}}" }}
        body = {{ name = "{{name}}", count = "{{count}}", note = "for {{name}}", skip = "{{after}}" }}
        [params]
        id = {{ type = "string" }}
        name = {{ type = "string" }}
        count = {{ type = "integer" }}
        dry = {{ type = "boolean", default = false }}
        after = {{ type = "string", required = false }}
        "#,
        srv.url("/v1/things/{id}/items")
    ));
    assert_eq!(a.description(), "Create a thing");
    assert!(a.credentials().is_empty());
    let resp = run(
        &a,
        &[
            ("id", serde_json::json!("a/../b")),
            ("name", serde_json::json!("Ann")),
            ("count", serde_json::json!("3")),
        ],
        &Credentials::new(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 201);
    assert_eq!(
        resp.status_text, "Created",
        "canonical reason, not the upstream's"
    );
    let seen = srv.requests();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].target,
        "/v1/things/a%2F..%2Fb/items?dry=false&fixed=1"
    );
    assert_eq!(seen[0].header("x-trace"), Some("t-a/../b"));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "Ann", "count": 3, "note": "for Ann"})
    );
}

// ---- redirects ----

#[tokio::test]
async fn same_origin_redirect_is_followed_with_the_credential() {
    let mut srv = serve(vec![
        response("302 Found", &[("Location", "/next?page=2#frag")], b""),
        ok("landed"),
    ])
    .await;
    let a = action(&format!(
        "credential = \"svc\"\nmethod = \"GET\"\nurl = \"{}\"\nauth = {{ type = \"bearer\" }}",
        srv.url("/start")
    ));
    let resp = run(&a, &[], &creds("svc", BEARER)).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(body_of(resp).await.0, b"landed");
    let seen = srv.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].target, "/next?page=2");
    assert_eq!(
        seen[1].header("authorization"),
        Some(format!("Bearer {BEARER}").as_str())
    );
}

#[tokio::test]
async fn same_origin_redirect_reapplies_a_query_credential_once() {
    let mut srv = serve(vec![
        response(
            "307 Temporary Redirect",
            &[("Location", "/b?api_key=reflected&x=1")],
            b"",
        ),
        ok(""),
    ])
    .await;
    let a = action(&format!(
        "credential = \"svc\"\nmethod = \"GET\"\nurl = \"{}\"\nauth = {{ type = \"query\", name = \"api_key\" }}",
        srv.url("/a")
    ));
    run(&a, &[], &creds("svc", KEY)).await.unwrap();
    let seen = srv.requests();
    let url = Url::parse(&format!("http://x{}", seen[1].target)).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        vec![
            ("x".to_owned(), "1".to_owned()),
            ("api_key".to_owned(), KEY.to_owned())
        ]
    );
}

#[tokio::test]
async fn cross_origin_redirect_is_returned_not_followed() {
    let other = silent_listener();
    let target = format!(
        "http://127.0.0.1:{}/steal",
        other.local_addr().unwrap().port()
    );
    for auth in [
        r#"{ type = "bearer" }"#,
        r#"{ type = "query", name = "api_key" }"#,
    ] {
        let mut srv = serve(vec![response(
            "302 Found",
            &[("Location", &target)],
            b"moved",
        )])
        .await;
        let a = action(&format!(
            "credential = \"svc\"\nmethod = \"GET\"\nurl = \"{}\"\nauth = {auth}\ntimeout_secs = 5",
            srv.url("/start")
        ));
        let resp = run(&a, &[], &creds("svc", KEY)).await.unwrap();
        assert_eq!(resp.status, 302);
        assert_eq!(header(&resp, "location"), Some(target.as_bytes()));
        assert_eq!(body_of(resp).await.0, b"moved");
        assert_eq!(srv.requests().len(), 1);
        assert_untouched(&other);
    }
}

#[tokio::test]
async fn see_other_after_post_becomes_get_without_body() {
    let mut srv = serve(vec![
        response("303 See Other", &[("Location", "/result")], b""),
        ok("done"),
    ])
    .await;
    let a = action(&format!(
        "method = \"POST\"\nurl = \"{}\"\nbody = {{ a = 1 }}",
        srv.url("/submit")
    ));
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    assert_eq!(resp.status, 200);
    let seen = srv.requests();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body, br#"{"a":1}"#);
    assert_eq!(seen[1].method, "GET");
    assert!(seen[1].body.is_empty());
    assert_eq!(seen[1].header("content-type"), None);
}

#[tokio::test]
async fn redirects_stop_after_five_hops() {
    let loop_resp = response("302 Found", &[("Location", "/again")], b"");
    let mut srv = serve(vec![loop_resp; MAX_REDIRECTS + 2]).await;
    let a = action(&format!(
        "method = \"GET\"\nurl = \"{}\"",
        srv.url("/again")
    ));
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    assert_eq!(resp.status, 302);
    assert_eq!(srv.requests().len(), MAX_REDIRECTS + 1);
}

// ---- egress ----

#[tokio::test]
async fn metadata_address_is_refused() {
    let a = action_with(
        "meta",
        "credential = \"svc\"\nmethod = \"GET\"\nurl = \"http://169.254.169.254/latest/meta-data/\"\nauth = { type = \"bearer\" }",
        client(&[]),
    );
    let e = run(&a, &[], &creds("svc", BEARER)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SafetyRefused);
    assert!(
        e.message().contains("egress to 169.254.169.254 refused"),
        "{e}"
    );
    assert!(e.message().contains("allow_private"), "{e}");
    assert_clean(&e);
}

#[tokio::test]
async fn loopback_literal_refused_unless_allowed() {
    let l = silent_listener();
    let port = l.local_addr().unwrap().port();
    for host in ["127.0.0.1", "[::ffff:127.0.0.1]", "0x7f.1"] {
        let a = action_with(
            "local",
            &format!("method = \"GET\"\nurl = \"http://{host}:{port}/\""),
            client(&[]),
        );
        let e = run(&a, &[], &Credentials::new()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SafetyRefused, "{host}");
        assert!(e.message().contains("refused"), "{e}");
    }
    assert_untouched(&l);

    let mut srv = serve(vec![ok("reached")]).await;
    let a = action_with(
        "local",
        &format!("method = \"GET\"\nurl = \"{}\"", srv.url("/")),
        client(&["127.0.0.0/8"]),
    );
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    assert_eq!(body_of(resp).await.0, b"reached");
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn hostname_resolving_to_loopback_is_refused_unless_allowed() {
    let l = silent_listener();
    let port = l.local_addr().unwrap().port();
    let a = action_with(
        "local",
        &format!("method = \"GET\"\nurl = \"http://localhost:{port}/\""),
        client(&[]),
    );
    let e = run(&a, &[], &Credentials::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SafetyRefused);
    assert_eq!(
        e.message(),
        "egress to localhost refused: resolves only to private/loopback/link-local addresses; add it to [egress] allow_private"
    );
    assert_untouched(&l);

    let mut srv = serve(vec![ok("via name")]).await;
    let a = action_with(
        "local",
        &format!(
            "method = \"GET\"\nurl = \"http://localhost:{}/\"",
            srv.addr.port()
        ),
        loopback_client(),
    );
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    assert_eq!(body_of(resp).await.0, b"via name");
    assert_eq!(srv.requests().len(), 1);
}

// ---- transport failures ----

#[tokio::test]
async fn connection_refused_is_unreachable_and_names_only_the_host() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = action(&format!(
        "credential = \"svc\"\nmethod = \"GET\"\nurl = \"http://127.0.0.1:{port}/x\"\nauth = {{ type = \"query\", name = \"api_key\" }}"
    ));
    let e = run(&a, &[], &creds("svc", KEY)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UpstreamUnreachable);
    assert!(
        e.message()
            .starts_with(&format!("cannot reach 127.0.0.1:{port}: ")),
        "{e}"
    );
    assert_clean(&e);
    // The attached source has its URL stripped too.
    let mut chain = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = cur {
        chain.push_str(&format!("{s} {s:?} "));
        cur = s.source();
    }
    assert!(!chain.contains("FAKE"), "{chain}");
    assert!(!chain.contains("api_key"), "{chain}");
}

#[tokio::test]
async fn dns_failure_is_unreachable() {
    let a = action_with(
        "dns",
        "method = \"GET\"\nurl = \"http://outloop-test.invalid/\"",
        client(&[]),
    );
    let e = run(&a, &[], &Credentials::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UpstreamUnreachable, "{e}");
    assert!(e.message().contains("outloop-test.invalid"), "{e}");
}

#[tokio::test]
async fn silent_upstream_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (held_tx, mut held_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        if let Ok((mut sock, _)) = listener.accept().await {
            let _ = read_request(&mut sock).await;
            // Keep the socket open and never answer.
            let _ = held_tx.send(sock);
        }
    });
    let a = action(&format!(
        "credential = \"svc\"\nmethod = \"GET\"\nurl = \"http://127.0.0.1:{port}/\"\nauth = {{ type = \"query\", name = \"k\" }}\ntimeout_secs = 1"
    ));
    let e = run(&a, &[], &creds("svc", KEY)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.message().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert_clean(&e);
    assert!(
        held_rx.try_recv().is_ok(),
        "the request did reach the server"
    );
}

// ---- response handling ----

#[tokio::test]
async fn content_length_over_the_cap_fails_at_once() {
    let srv = serve(vec![response("200 OK", &[], &[b'x'; 100])]).await;
    let a = action(&format!(
        "method = \"GET\"\nurl = \"{}\"\nmax_response_bytes = 16",
        srv.url("/")
    ));
    let e = run(&a, &[], &Credentials::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SafetyRefused);
    assert_eq!(
        e.message(),
        "response body exceeds the 16-byte cap of action `test.action` (Content-Length: 100)"
    );
}

fn chunked(chunks: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for c in chunks {
        body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        body.extend_from_slice(c);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    response("200 OK", &[("Transfer-Encoding", "chunked")], &body)
}

#[tokio::test]
async fn chunked_body_over_the_cap_fails_in_the_stream() {
    let srv = serve(vec![chunked(&[&[b'a'; 10], &[b'b'; 10], &[b'c'; 10]])]).await;
    let a = action(&format!(
        "method = \"GET\"\nurl = \"{}\"\nmax_response_bytes = 16",
        srv.url("/")
    ));
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    let (got, err) = body_of(resp).await;
    let e = err.expect("the cap must fail the stream");
    assert_eq!(e.kind(), ErrorKind::SafetyRefused);
    assert_eq!(
        e.message(),
        "response body exceeds the 16-byte cap of action `test.action`"
    );
    assert!(got.len() <= 16, "{} bytes passed the cap", got.len());
}

#[tokio::test]
async fn chunked_body_within_the_cap_streams_whole() {
    let srv = serve(vec![chunked(&[b"hello ", b"chunked ", b"world"])]).await;
    let a = action(&format!(
        "method = \"GET\"\nurl = \"{}\"\nmax_response_bytes = 19",
        srv.url("/")
    ));
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    assert_eq!(body_ok(resp).await, b"hello chunked world".to_vec());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn gzip_body_is_decoded_and_its_headers_dropped() {
    let text = br#"{"token":"an upstream echo to redact"}"#;
    let srv = serve(vec![response(
        "200 OK",
        &[
            ("Content-Encoding", "gzip"),
            ("Content-Type", "application/json"),
        ],
        &gzip(text),
    )])
    .await;
    let a = action(&format!("method = \"GET\"\nurl = \"{}\"", srv.url("/")));
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    assert_eq!(header(&resp, "content-encoding"), None);
    assert_eq!(header(&resp, "content-length"), None);
    assert_eq!(
        header(&resp, "content-type"),
        Some(&b"application/json"[..])
    );
    assert_eq!(body_ok(resp).await, text.to_vec());
}

#[tokio::test]
async fn cap_applies_to_decoded_bytes() {
    let bomb = gzip(&vec![0u8; 1 << 20]);
    assert!(bomb.len() < 4096);
    let srv = serve(vec![response(
        "200 OK",
        &[("Content-Encoding", "gzip")],
        &bomb,
    )])
    .await;
    let a = action(&format!(
        "method = \"GET\"\nurl = \"{}\"\nmax_response_bytes = 4096",
        srv.url("/")
    ));
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    let (got, err) = body_of(resp).await;
    assert_eq!(
        err.expect("decoded size passes the cap").kind(),
        ErrorKind::SafetyRefused
    );
    assert!(got.len() <= 4096);
}

#[tokio::test]
async fn undecodable_content_encodings_are_refused() {
    for enc in ["compress", "zstd", "gzip, zstd", "x-custom"] {
        let srv = serve(vec![response(
            "200 OK",
            &[("Content-Encoding", enc)],
            b"opaque",
        )])
        .await;
        let a = action(&format!("method = \"GET\"\nurl = \"{}\"", srv.url("/")));
        let e = run(&a, &[], &Credentials::new()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SafetyRefused, "{enc}");
        assert!(
            e.message()
                .ends_with("that outloop cannot decode; refused rather than passed through unread"),
            "{e}"
        );
    }
    let srv = serve(vec![response(
        "200 OK",
        &[("Content-Encoding", "identity")],
        b"plain",
    )])
    .await;
    let a = action(&format!("method = \"GET\"\nurl = \"{}\"", srv.url("/")));
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    assert_eq!(body_of(resp).await.0, b"plain");
}

#[tokio::test]
async fn stacked_encodings_are_decoded_in_full() {
    let text = b"{\"echo\":\"FAKE-stacked-secret\"}";
    let twice = gzip(&gzip(text));
    // Two header lines, and one line naming both codings: both mean gzip applied twice.
    for headers in [
        &[("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")][..],
        &[("Content-Encoding", "gzip, gzip")][..],
    ] {
        let srv = serve(vec![response("200 OK", headers, &twice)]).await;
        let a = action(&format!("method = \"GET\"\nurl = \"{}\"", srv.url("/")));
        let resp = run(&a, &[], &Credentials::new()).await.unwrap();
        assert_eq!(header(&resp, "content-encoding"), None);
        assert_eq!(body_ok(resp).await, text.to_vec(), "{headers:?}");
    }
}

#[tokio::test]
async fn a_body_that_does_not_decode_is_refused() {
    let srv = serve(vec![response(
        "200 OK",
        &[("Content-Encoding", "gzip")],
        b"FAKE-not-gzip-at-all",
    )])
    .await;
    let a = action(&format!("method = \"GET\"\nurl = \"{}\"", srv.url("/")));
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    let (got, err) = body_of(resp).await;
    let err = err.expect("undecodable body fails");
    assert_eq!(err.kind(), ErrorKind::SafetyRefused);
    assert!(
        err.message().contains("is not valid `gzip` content"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&got).contains("FAKE"),
        "raw bytes passed through"
    );
}

#[tokio::test]
async fn head_has_an_empty_body() {
    let mut srv = serve(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\nContent-Encoding: zstd\r\nConnection: close\r\n\r\n".to_vec(),
    ])
    .await;
    let a = action(&format!(
        "method = \"HEAD\"\nurl = \"{}\"\nmax_response_bytes = 10",
        srv.url("/")
    ));
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(header(&resp, "content-length"), Some(&b"50000000"[..]));
    assert!(body_ok(resp).await.is_empty());
    assert_eq!(srv.requests()[0].method, "HEAD");
}

#[tokio::test]
async fn response_headers_are_lower_case_raw_bytes() {
    let srv = serve(vec![response(
        "200 OK",
        &[
            ("X-Thing", "caf\u{e9}"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ],
        b"",
    )])
    .await;
    let a = action(&format!("method = \"GET\"\nurl = \"{}\"", srv.url("/")));
    let resp = run(&a, &[], &Credentials::new()).await.unwrap();
    assert_eq!(header(&resp, "x-thing"), Some("caf\u{e9}".as_bytes()));
    let cookies: Vec<&[u8]> = resp
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_slice())
        .collect();
    assert_eq!(cookies, vec![&b"a=1"[..], &b"b=2"[..]]);
}

// ---- compile-time checks and the trait surface ----

#[test]
fn config_errors_name_the_action() {
    let cases = [
        (
            "method = \"GET\"\nurl = \"https://{h}.example.com/\"\n[params]\nh = { type = \"string\" }",
            "placeholders may appear only in the URL path",
        ),
        (
            "method = \"GET\"\nurl = \"https://api.example.com/{x}\"",
            "placeholder `{x}` has no declared parameter",
        ),
        (
            "method = \"GET\"\nurl = \"https://api.example.com/\"\nheaders = { \"X-{y}\" = \"1\" }",
            "not a valid header name",
        ),
        (
            "method = \"GET\"\nurl = \"https://api.example.com/\"\n[params]\np = { type = \"string\", pattern = \"(\" }",
            "bad regular expression",
        ),
        (
            "method = \"GET\"\nurl = \"https://api.example.com/\"\ncredential = \"c\"",
            "`auth` is required",
        ),
        (
            "method = \"GET\"\nurl = \"https://api.example.com/\"\nbody = { a = 1 }",
            "has no body",
        ),
        (
            "method = \"GET\"\nurl = \"https://api.example.com/\"\ntimeout_secs = 0",
            "timeout_secs",
        ),
        (
            "method = \"GET\"\nurl = \"https://api.example.com/\"\nmax_response_bytes = 0",
            "max_response_bytes",
        ),
    ];
    for (text, needle) in cases {
        let cfg: ActionConfig = toml::from_str(text).unwrap();
        let e = HttpAction::new("acme.thing", &cfg, client(&[])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{text}");
        assert!(e.message().starts_with("action `acme.thing`: "), "{e}");
        assert!(e.message().contains(needle), "`{e}` lacks `{needle}`");
    }
}

#[test]
fn schema_and_validate_go_through_the_trait() {
    let a = action_with(
        "acme.list",
        "method = \"GET\"\nurl = \"https://api.example.com/\"\nquery = { limit = \"{limit}\" }\n[params]\nlimit = { type = \"integer\", min = 1, max = 100, default = 10 }",
        client(&[]),
    );
    let a: &dyn Action = &a;
    assert_eq!(a.name(), "acme.list");
    assert_eq!(a.params_schema()["properties"]["limit"]["maximum"], 100);
    let e = a
        .validate(&RawParams::from([(
            "nope".to_owned(),
            serde_json::json!(1),
        )]))
        .unwrap_err();
    assert_eq!(
        e.message(),
        "unknown parameter `nope` for action `acme.list`; declared: `limit`"
    );
    let p = a.validate(&RawParams::new()).unwrap();
    assert_eq!(p.get("limit"), Some(&ParamValue::Integer(10)));
}

#[test]
fn debug_output_carries_no_secret() {
    let a = action(
        "credential = \"svc\"\nmethod = \"GET\"\nurl = \"https://api.example.com/\"\nauth = { type = \"bearer\" }",
    );
    let shown = format!("{a:?} {:?}", a.client);
    assert!(shown.contains("test.action"));
    assert!(!shown.contains("FAKE"));
}

// ---- credential_headers ----

#[tokio::test]
async fn credential_headers_carry_a_second_credential_whole_and_sensitive() {
    let mut srv = serve(vec![ok("{}")]).await;
    let a = action(&format!(
        r#"
        credential = "svc"
        method = "POST"
        url = "{}"
        auth = {{ type = "bearer" }}
        credential_headers = {{ "developer-token" = "dev" }}
        body = {{ query = "SELECT 1" }}
        "#,
        srv.url("/v24/customers/1/googleAds:searchStream")
    ));
    assert_eq!(a.credentials(), vec!["svc".to_owned(), "dev".to_owned()]);
    let mut c = creds("svc", BEARER);
    c.insert("dev", SecretValue::from_string(KEY.to_owned()));
    let (url, headers, body) = a.prepare(&Params::default()).unwrap();
    let dev = c.get("dev").unwrap();
    let extra = [(&a.credential_headers[0].0, "dev", dev)];
    let req = a
        .request(
            &a.method,
            &url,
            &headers,
            body.as_ref(),
            c.get("svc"),
            &extra,
            Duration::from_secs(1),
        )
        .unwrap();
    assert!(req.headers()["developer-token"].is_sensitive());

    let resp = run(&a, &[], &c).await.unwrap();
    assert_eq!(resp.status, 200);
    let seen = srv.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("developer-token"), Some(KEY));
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {BEARER}").as_str())
    );
    assert_eq!(seen[0].raw.matches(KEY).count(), 1, "{}", seen[0].raw);
}

#[tokio::test]
async fn unresolved_credential_header_is_internal_and_sends_nothing() {
    let l = silent_listener();
    let a = action(&format!(
        r#"
        credential = "svc"
        method = "GET"
        url = "http://{}/x"
        auth = {{ type = "bearer" }}
        credential_headers = {{ "developer-token" = "dev" }}
        "#,
        l.local_addr().unwrap()
    ));
    let e = run(&a, &[], &creds("svc", BEARER)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert!(e.message().contains("`dev`"), "{e}");
    assert_clean(&e);
    assert_untouched(&l);
}

// ---- form bodies ----

#[tokio::test]
async fn form_body_is_url_encoded_and_leaves_out_absent_fields() {
    let mut srv = serve(vec![ok("{}")]).await;
    let a = action(&format!(
        r#"
        credential = "svc"
        method = "POST"
        url = "{}"
        auth = {{ type = "bearer" }}
        form = {{ email = "{{email}}", name = "{{name}}", "metadata[tier]" = "gold", description = "{{description}}" }}
        params.email = {{ type = "string" }}
        params.name = {{ type = "string" }}
        params.description = {{ type = "string", required = false }}
        "#,
        srv.url("/v1/customers")
    ));
    let resp = run(
        &a,
        &[
            ("email", serde_json::json!("ada+test@example.com")),
            ("name", serde_json::json!("Ada L&ovelace=1")),
        ],
        &creds("svc", BEARER),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = srv.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        String::from_utf8(seen[0].body.clone()).unwrap(),
        "email=ada%2Btest%40example.com&metadata%5Btier%5D=gold&name=Ada+L%26ovelace%3D1"
    );
}
