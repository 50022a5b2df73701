//! Test support: a scratch Outloop home with workspaces, the `outloop` binary, a recording
//! loopback upstream, and the leak check.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;

/// The real httpbin the suite runs against (started by scripts/test.sh).
pub fn httpbin() -> String {
    std::env::var("OUTLOOP_TEST_HTTPBIN").expect(
        "OUTLOOP_TEST_HTTPBIN is not set: run the suite with scripts/test.sh, which starts httpbin",
    )
}

/// Makes SIGINT end the children this test process starts, as it does from a terminal.
///
/// A suite started as a background job of a non-interactive shell (`cmd &` in a script, as
/// some CI runners do) inherits SIGINT as ignored, and `exec` passes "ignored" on to every
/// child, so a test that interrupts `outloop` would wait for it forever. `exec` resets a
/// handled signal to its default action instead; so when SIGINT arrives here ignored, this
/// installs tokio's handler, which only records the signal: the test process still goes on as
/// before, and its children start with the default action. Reads the ignored set from
/// `/proc/self/status` (Linux); elsewhere it does nothing.
pub fn sigint_reaches_children() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let ignored = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .unwrap_or(0);
        // Bit n - 1 stands for signal n; SIGINT is 2.
        if ignored & (1 << 1) == 0 {
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the SIGINT handler");
        // The handler stays installed for the life of the process, after the listener and
        // the runtime are dropped.
        let listener = rt
            .block_on(async {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            })
            .expect("SIGINT handler installed");
        drop(listener);
    });
}

/// Sends `signal` (`kill`'s spelling: `-INT`, `-TERM`) to process `pid`, with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

/// A scratch setup: OUTLOOP_HOME, workspaces for two tenants and an unbound directory, and
/// every byte the broker printed (for the leak check).
pub struct Env {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    pub acme: PathBuf,
    pub globex: PathBuf,
    pub unbound: PathBuf,
    pub seen: Mutex<Vec<u8>>,
    pub secrets: Vec<Vec<u8>>,
}

/// The result of one `outloop` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

pub const ACME_ECHO: &str = "FAKE-acme-echo-token-7f3a9c";
pub const GLOBEX_ECHO: &str = "FAKE-globex-echo-token-2b8d41";
pub const ACME_KEY: &str = "FAKE acme/key+with&odd=chars\"1";

impl Env {
    /// A home with `outloop init` run, tenants acme and globex bound to their workspaces,
    /// and the `echo` credential stored for each (different values).
    pub fn new(extra_config: &str) -> Env {
        Self::with_egress(extra_config, "[\"127.0.0.0/8\"]")
    }

    /// As [`Env::new`], with `[egress] allow_private = <allow_private>`.
    pub fn with_egress(extra_config: &str, allow_private: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let home = root.join("home");
        let acme = root.join("clients/acme");
        let globex = root.join("clients/globex");
        let unbound = root.join("elsewhere");
        for d in [&acme, &globex, &unbound] {
            std::fs::create_dir_all(d).unwrap();
        }
        let env = Env {
            _tmp: tmp,
            root,
            home,
            acme,
            globex,
            unbound,
            seen: Mutex::new(Vec::new()),
            secrets: vec![ACME_ECHO.into(), GLOBEX_ECHO.into(), ACME_KEY.into()],
        };
        env.ok(&["init"], &env.root);
        env.ok(&["tenant", "add", "acme"], &env.root);
        env.ok(&["tenant", "add", "globex"], &env.root);
        env.ok(&["bind", env.acme.to_str().unwrap(), "acme"], &env.root);
        env.ok(&["bind", env.globex.to_str().unwrap(), "globex"], &env.root);
        env.set_secret("vault://acme/echo", ACME_ECHO, Some(("acme", "echo")));
        env.set_secret("vault://globex/echo", GLOBEX_ECHO, Some(("globex", "echo")));
        env.set_secret("vault://acme/key", ACME_KEY, Some(("acme", "key")));
        if !extra_config.is_empty() {
            let cfg = env.home.join("config.toml");
            let mut text = std::fs::read_to_string(&cfg).unwrap().replace(
                "allow_private = []",
                &format!("allow_private = {allow_private}"),
            );
            text.push('\n');
            text.push_str(extra_config);
            std::fs::write(&cfg, text).unwrap();
        }
        env
    }

    pub fn config_path(&self) -> PathBuf {
        self.home.join("config.toml")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.home.join("audit.jsonl")
    }

    /// Asserts that the audit log holds exactly one record, for `action`, decided `decision`,
    /// with `outcome = "cancelled"`, and that its chain verifies; `what` labels failures.
    pub fn assert_one_cancelled_record(&self, action: &str, decision: &str, what: &str) {
        let log = std::fs::read_to_string(self.audit_path()).unwrap_or_default();
        let records: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 1, "{what}: {log}");
        assert_eq!(records[0]["action"], action, "{what}: {log}");
        assert_eq!(records[0]["decision"], decision, "{what}: {log}");
        assert_eq!(records[0]["outcome"], "cancelled", "{what}: {log}");
        let reason = records[0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("the caller went away"), "{what}: {log}");
        let verify = self.run(&["audit", "verify"], &self.root);
        assert_eq!(verify.code, 0, "{what}: {}", verify.stderr);
    }

    pub fn set_secret(&self, reference: &str, value: &str, file_as: Option<(&str, &str)>) {
        let mut args = vec!["secret", "set", reference];
        if let Some((t, c)) = file_as {
            args.extend(["--tenant", t, "--credential", c]);
        }
        let r = self.run_with_stdin(&args, &self.root, value.as_bytes());
        assert_eq!(r.code, 0, "secret set failed: {}", r.stderr);
    }

    pub fn run(&self, args: &[&str], cwd: &Path) -> Run {
        self.run_with_stdin(args, cwd, b"")
    }

    pub fn run_with_stdin(&self, args: &[&str], cwd: &Path, stdin: &[u8]) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_outloop"))
            .args(args)
            .current_dir(cwd)
            .env("OUTLOOP_HOME", &self.home)
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("outloop binary runs");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        {
            let mut seen = self.seen.lock().unwrap();
            seen.extend_from_slice(&stdout);
            seen.extend_from_slice(&stderr);
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    pub fn ok(&self, args: &[&str], cwd: &Path) -> Run {
        let r = self.run(args, cwd);
        assert_eq!(
            r.code,
            0,
            "`outloop {}` failed:\n{}\n{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r
    }

    /// Checks every byte the broker printed, plus the audit log, for every secret in every
    /// encoding.
    pub fn assert_no_leak(&self) {
        let mut all = self.seen.lock().unwrap().clone();
        if let Ok(a) = std::fs::read(self.audit_path()) {
            all.extend_from_slice(&a);
        }
        for s in &self.secrets {
            assert_no_variant(&all, s);
        }
    }
}

/// Every encoding of `secret` the leak check looks for.
pub fn variants(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut v: Vec<(String, Vec<u8>)> = vec![
        ("raw".into(), secret.to_vec()),
        ("hex".into(), hex::encode(secret).into_bytes()),
        ("HEX".into(), hex::encode_upper(secret).into_bytes()),
        ("base64".into(), STANDARD.encode(secret).into_bytes()),
        (
            "base64-nopad".into(),
            STANDARD_NO_PAD.encode(secret).into_bytes(),
        ),
        ("base64url".into(), URL_SAFE.encode(secret).into_bytes()),
        (
            "base64url-nopad".into(),
            URL_SAFE_NO_PAD.encode(secret).into_bytes(),
        ),
        (
            "percent".into(),
            percent_encoding::percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .into_bytes(),
        ),
        (
            "json".into(),
            serde_json::to_string(&String::from_utf8_lossy(secret))
                .unwrap()
                .trim_matches('"')
                .as_bytes()
                .to_vec(),
        ),
    ];
    let pct = String::from_utf8(v[7].1.clone()).unwrap();
    v.push(("percent-lower".into(), lower_hex_escapes(&pct).into_bytes()));
    v.push(("form".into(), pct.replace("%20", "+").into_bytes()));
    // The stable interior of base64 when the secret sits at offset 1 or 2 of a longer input.
    for off in 1..3usize {
        let mut input = vec![b'x'; off];
        input.extend_from_slice(secret);
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let enc = engine.encode(&input);
            let start = (off * 8).div_ceil(6);
            let end = (input.len() * 8) / 6;
            if end > start + 8 {
                v.push((
                    format!("base64-interior-{off}"),
                    enc.as_bytes()[start..end].to_vec(),
                ));
            }
        }
    }
    v
}

fn lower_hex_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            for _ in 0..2 {
                if let Some(h) = chars.next() {
                    out.push(h.to_ascii_lowercase());
                }
            }
        }
    }
    out
}

pub fn assert_no_variant(haystack: &[u8], secret: &[u8]) {
    for (kind, needle) in variants(secret) {
        if needle.len() >= 8 {
            assert!(
                !haystack
                    .windows(needle.len())
                    .any(|w| w == needle.as_slice()),
                "a secret leaked in its {kind} form"
            );
        }
    }
}

/// A loopback upstream that records every request and answers `200 {"ok":true}`.
pub struct Recorder {
    pub url: String,
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let rec = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    let end = line == "\r\n";
                    head.push_str(&line);
                    if end {
                        break;
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                head.push_str(&String::from_utf8_lossy(&body));
                rec.lock().unwrap().push(head);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}",
                );
            }
        });
        Recorder {
            url: format!("http://{addr}"),
            addr,
            requests,
        }
    }

    /// Every request received so far, in order. Connections are accepted in order, so a
    /// sentinel request of our own, once recorded, proves every earlier one is recorded too.
    pub fn requests(&self) -> Vec<String> {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.write_all(b"GET /__sentinel HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        let mut all = self.requests.lock().unwrap().clone();
        let last = all.pop().expect("sentinel recorded");
        assert!(last.starts_with("GET /__sentinel"), "sentinel last");
        all.retain(|r| !r.starts_with("GET /__sentinel"));
        self.requests.lock().unwrap().clear();
        all
    }
}
