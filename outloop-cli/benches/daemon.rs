//! Latency and throughput of an action through the daemon, against a direct `reqwest` call to
//! the same loopback upstream measured in the same run.
//!
//! A bench binary rather than criterion: it reports percentiles (p50, p99), which criterion
//! does not. It lives in outloop-cli because it runs the real `outloop serve`
//! (`CARGO_BIN_EXE_outloop`, built in the bench profile). Run:
//!
//! ```text
//! cargo bench -p outloop-cli --bench daemon            # OUTLOOP_BENCH_CALLS=3000 by default
//! ```
//!
//! Each daemon row starts a daemon whose OUTLOOP_HOME (and so its audit log, fsynced per
//! request) lives on the named file system: `/dev/shm` (tmpfs, fsync nearly free: the
//! daemon's own cost) and the disk under the system temp dir (fsync-bound).

#![allow(clippy::print_stdout, clippy::print_stderr, missing_docs)]

#[allow(dead_code, unused_imports)]
#[path = "../src/daemon/protocol.rs"]
mod protocol;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "FAKE-bench-token-8c1d52e0a9";

/// The loopback upstream: keep-alive HTTP/1.1 (hyper), answering `{"auth":"<Authorization>"}`.
async fn echo_upstream() -> String {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.as_bytes().to_vec())
                            .unwrap_or_default();
                        let mut body = b"{\"auth\":\"".to_vec();
                        body.extend_from_slice(&auth);
                        body.extend_from_slice(b"\"}");
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(body),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn outloop(home: &Path, args: &[&str], stdin: &[u8]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outloop"))
        .args(args)
        .env("OUTLOOP_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "outloop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A home under `base` with tenant acme bound to this process's cwd and `load.get` allowed.
fn setup_home(base: &Path, upstream: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir_in(base).unwrap();
    let home = tmp.path().join("home");
    let here = std::env::current_dir().unwrap().canonicalize().unwrap();
    outloop(&home, &["init"], b"");
    outloop(&home, &["tenant", "add", "acme"], b"");
    outloop(&home, &["bind", here.to_str().unwrap(), "acme"], b"");
    outloop(
        &home,
        &[
            "secret",
            "set",
            "vault://acme/echo",
            "--tenant",
            "acme",
            "--credential",
            "echo",
        ],
        TOKEN.as_bytes(),
    );
    let cfg = home.join("config.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("allow_private = []", "allow_private = [\"127.0.0.0/8\"]");
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[actions.\"load.get\"]\ncredential = \"echo\"\nmethod = \"GET\"\nurl = \"{upstream}/load\"\nauth = {{ type = \"bearer\" }}\n\n[actions.\"other.denied\"]\nmethod = \"GET\"\nurl = \"{upstream}/load\"\n\n[policy.tenants.acme]\nallow = [\"load.*\"]\n"
        ),
    )
    .unwrap();
    tmp
}

struct Daemon(Child);

impl Daemon {
    fn start(home: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_outloop"))
            .arg("serve")
            .env("OUTLOOP_HOME", home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        loop {
            let line = lines
                .next()
                .expect("the daemon printed its ready line")
                .unwrap();
            if line.contains("ready on") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.0.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.0.wait();
    }
}

/// A blocking protocol client on one connection.
struct Client {
    stream: BufReader<UnixStream>,
    request: Vec<u8>,
    line: Vec<u8>,
}

impl Client {
    fn connect(socket: &Path) -> Client {
        let mut request = serde_json::to_vec(&protocol::Request::new(protocol::Op::Call {
            action: "load.get".into(),
            params: serde_json::Map::new(),
            tenant: None,
        }))
        .unwrap();
        request.push(b'\n');
        Client {
            stream: BufReader::new(UnixStream::connect(socket).unwrap()),
            request,
            line: Vec::new(),
        }
    }

    /// Sends one raw request line and returns the answer line's `type`.
    fn raw(&mut self, request: &[u8]) -> String {
        self.stream.get_mut().write_all(request).unwrap();
        self.line.clear();
        self.stream.read_until(b'\n', &mut self.line).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&self.line).unwrap();
        v["type"].as_str().unwrap_or_default().to_owned()
    }

    fn call(&mut self) {
        self.stream.get_mut().write_all(&self.request).unwrap();
        self.line.clear();
        self.stream.read_until(b'\n', &mut self.line).unwrap();
        let resp: protocol::Response = serde_json::from_slice(&self.line).unwrap();
        match resp.body {
            protocol::Body::Call(c) => {
                assert_eq!(c.body, r#"{"auth":"Bearer [REDACTED:echo]"}"#);
            }
            other => panic!("{other:?}"),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Row {
    name: String,
    p50: Duration,
    p99: Duration,
    rps: f64,
    /// p50 of the stages measured on the same daemon (daemon rows only).
    parts: Vec<(&'static str, Duration)>,
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

const CONCURRENCY: usize = 16;

fn bench_daemon(name: &str, base: &Path, upstream: &str, calls: usize) -> Row {
    let home = setup_home(base, upstream);
    let home = home.path().join("home");
    let _d = Daemon::start(&home);
    let socket = home.join("run/outloop.sock");
    let mut c = Client::connect(&socket);
    for _ in 0..200 {
        c.call();
    }
    let mut lat = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        c.call();
        lat.push(t.elapsed());
    }
    lat.sort();
    // Where the time goes, on the same connection: the socket and protocol alone (`status`,
    // no broker), and a call policy denies (workspace, policy and the audit append, no
    // credential, no upstream).
    let stages = [
        ("status", &b"{\"v\":1,\"op\":\"status\"}\n"[..], "status"),
        (
            "denied call",
            &b"{\"v\":1,\"op\":\"call\",\"action\":\"other.denied\"}\n"[..],
            "error",
        ),
    ];
    let mut parts = Vec::new();
    for (what, line, want) in stages {
        let mut t = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            assert_eq!(c.raw(line), want, "{what}");
            t.push(start.elapsed());
        }
        t.sort();
        parts.push((what, percentile(&t, 0.5)));
    }
    let per = calls / CONCURRENCY;
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CONCURRENCY {
            let socket = socket.clone();
            s.spawn(move || {
                let mut c = Client::connect(&socket);
                for _ in 0..per {
                    c.call();
                }
            });
        }
    });
    let rps = (per * CONCURRENCY) as f64 / started.elapsed().as_secs_f64();
    Row {
        name: name.into(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        rps,
        parts,
    }
}

fn bench_direct(rt: &tokio::runtime::Runtime, upstream: &str, calls: usize) -> Row {
    let client = reqwest::Client::new();
    let url = format!("{upstream}/load");
    let one = |client: reqwest::Client, url: String| async move {
        let r = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap()
    };
    rt.block_on(async {
        for _ in 0..200 {
            one(client.clone(), url.clone()).await;
        }
        let mut lat = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            one(client.clone(), url.clone()).await;
            lat.push(t.elapsed());
        }
        lat.sort();
        let per = calls / CONCURRENCY;
        let started = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    for _ in 0..per {
                        one(client.clone(), url.clone()).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let rps = (per * CONCURRENCY) as f64 / started.elapsed().as_secs_f64();
        Row {
            name: "direct reqwest (baseline)".into(),
            p50: percentile(&lat, 0.5),
            p99: percentile(&lat, 0.99),
            rps,
            parts: Vec::new(),
        }
    })
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--test`-less args too; only run for
    // `cargo bench` (which passes `--bench`).
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let calls: usize = std::env::var("OUTLOOP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(echo_upstream());
    let direct = bench_direct(&rt, &upstream, calls);
    let mut rows = vec![];
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        rows.push(bench_daemon(
            "through the daemon, home on tmpfs (/dev/shm)",
            &shm,
            &upstream,
            calls,
        ));
    }
    rows.push(bench_daemon(
        "through the daemon, home on disk (temp dir)",
        &std::env::temp_dir(),
        &upstream,
        calls,
    ));
    println!(
        "{calls} sequential calls for the percentiles; throughput with {CONCURRENCY} concurrent clients\n"
    );
    println!("| path | p50 ms | p99 ms | p50 added vs direct ms | p50 ratio vs direct | calls/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | – | 1.00× | {:.0} |",
        direct.name,
        ms(direct.p50),
        ms(direct.p99),
        direct.rps
    );
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.2}× | {:.0} |",
            r.name,
            ms(r.p50),
            ms(r.p99),
            ms(r.p50.saturating_sub(direct.p50)),
            r.p50.as_secs_f64() / direct.p50.as_secs_f64(),
            r.rps
        );
    }
    println!("\n| daemon | status p50 ms | denied call p50 ms | full call p50 ms |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        let part = |w: &str| {
            r.parts
                .iter()
                .find(|p| p.0 == w)
                .map_or(Duration::ZERO, |p| p.1)
        };
        println!(
            "| {} | {} | {} | {} |",
            r.name,
            ms(part("status")),
            ms(part("denied call")),
            ms(r.p50)
        );
    }
}
