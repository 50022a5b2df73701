//! The per-user daemon: `outloop serve` / `outloop status`, every command through it with the
//! same results as in-process, its hardening, signals, and load.
//!
//! Each test starts the real `outloop serve` as a child in its own OUTLOOP_HOME and waits for
//! its readiness line on stderr (never a sleep); signals go to the child's pid.

#![allow(clippy::print_stderr)] // the load test reports its throughput

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::actions;
use crate::support::{ACME_ECHO, Env, Recorder, Run};

#[allow(dead_code, unused_imports)]
#[path = "../../src/daemon/protocol.rs"]
mod protocol;

/// How long any wait on the daemon may take before the test fails.
const WAIT: Duration = Duration::from_secs(60);

/// A running `outloop serve`, its stderr lines arriving on a channel.
pub(super) struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Daemon {
    pub(super) fn start(env: &Env) -> Daemon {
        Self::start_with(env, Path::new(env!("CARGO_BIN_EXE_outloop")), |_| {})
    }

    /// Starts `outloop serve` for `env` from the binary at `program` (with `adjust` applied
    /// to the command) and waits for its readiness line.
    fn start_with(env: &Env, program: &Path, adjust: impl FnOnce(&mut Command)) -> Daemon {
        let mut cmd = Command::new(program);
        cmd.arg("serve")
            .current_dir(&env.root)
            .env("OUTLOOP_HOME", &env.home)
            .env_remove("OUTLOOP_NO_DAEMON")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("outloop serve runs");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            lines,
            log: Vec::new(),
        };
        d.wait_line("ready on");
        d
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub(super) fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the daemon printed no line with `{needle}`; its log:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    pub(super) fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Waits for the daemon to exit; returns its exit code and all it logged.
    pub(super) fn wait_exit(mut self) -> (i32, Vec<String>) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.log.push(line);
        }
        (status.code().unwrap_or(-1), std::mem::take(&mut self.log))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `outloop` as `Env::run` does, with extra environment variables; output is added to
/// the leak check.
pub(super) fn run_env(env: &Env, args: &[&str], cwd: &Path, vars: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outloop"));
    cmd.args(args)
        .current_dir(cwd)
        .env("OUTLOOP_HOME", &env.home)
        .env_remove("OUTLOOP_NO_DAEMON")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("outloop runs");
    {
        let mut seen = env.seen.lock().unwrap();
        seen.extend_from_slice(&out.stdout);
        seen.extend_from_slice(&out.stderr);
    }
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn in_process(env: &Env, args: &[&str], cwd: &Path) -> Run {
    run_env(env, args, cwd, &[("OUTLOOP_NO_DAEMON", "1")])
}

pub(super) fn status(env: &Env) -> serde_json::Value {
    let r = run_env(env, &["status", "--json"], &env.root, &[]);
    assert_eq!(r.code, 0, "status: {}{}", r.stdout, r.stderr);
    r.json()
}

/// A `call --json` result without the headers that differ between two runs of one request.
fn stable(r: &Run) -> serde_json::Value {
    let mut v = r.json();
    if let Some(h) = v["headers"].as_object_mut() {
        h.remove("date");
    }
    v
}

#[test]
fn every_command_gives_the_same_result_with_and_without_the_daemon() {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));
    let d = Daemon::start(&env);
    let cases: &[(&[&str], &Path)] = &[
        (&["call", "echo.bearer", "--json"], &env.acme),
        (&["call", "echo.bearer"], &env.acme),
        (&["call", "echo.headers", "--json"], &env.acme),
        (&["call", "rec.get", "-p", "id=7", "--json"], &env.globex),
        (&["call", "echo.status", "-p", "code=200"], &env.acme),
        (&["call", "echo.bearer", "--tenant", "globex"], &env.acme),
        (&["call", "echo.bearer", "--json"], &env.unbound),
        (&["call", "nope.nothing"], &env.acme),
        (&["call", "rec.create", "-p", "name=gamma"], &env.acme),
        (&["call", "metadata"], &env.acme),
        (&["actions"], &env.acme),
        (&["actions", "--json"], &env.globex),
        (&["actions"], &env.unbound),
        (
            &["policy", "explain", "echo.status", "-p", "code=201"],
            &env.acme,
        ),
        (
            &["policy", "explain", "rec.get", "-p", "id=1", "--json"],
            &env.globex,
        ),
        (
            &["policy", "explain", "echo.bearer", "--json"],
            &env.unbound,
        ),
    ];
    for (args, cwd) in cases {
        let via = run_env(&env, args, cwd, &[]);
        let local = in_process(&env, args, cwd);
        let what = format!("`outloop {}` in {}", args.join(" "), cwd.display());
        assert_eq!(via.code, local.code, "{what}: exit codes differ");
        assert_eq!(via.stderr, local.stderr, "{what}: stderr differs");
        if args.contains(&"call") && args.contains(&"--json") && via.code == 0 {
            assert_eq!(stable(&via), stable(&local), "{what}: results differ");
        } else {
            assert_eq!(via.stdout, local.stdout, "{what}: stdout differs");
        }
    }
    // `--workspace` names the workspace explicitly; the daemon honours it too.
    let ws = env.globex.to_str().unwrap();
    let args = [
        "policy",
        "explain",
        "rec.get",
        "-p",
        "id=1",
        "--workspace",
        ws,
    ];
    let via = run_env(&env, &args, &env.unbound, &[]);
    assert_eq!(via.code, 0, "{}", via.stderr);
    assert_eq!(via.stdout, in_process(&env, &args, &env.unbound).stdout);
    assert!(via.stdout.contains("tenant:   globex"), "{}", via.stdout);

    // The daemon really answered them: it counted every call, actions and explain.
    let s = status(&env);
    assert_eq!(s["running"], true);
    assert_eq!(s["pid"], d.pid());
    assert_eq!(s["requests"], cases.len() as u64 + 1);
    assert_eq!(s["in_flight"], 0);
    // It takes the workspace from the peer: the same request from another directory differs.
    let r = run_env(&env, &["call", "echo.bearer", "--json"], &env.globex, &[]);
    assert_eq!(r.json()["tenant"], "globex");
    // Both paths audited every call, and the chain holds.
    env.ok(&["audit", "verify"], &env.root);
    env.assert_no_leak();
}

#[test]
fn status_reports_the_daemon_and_exits_3_when_none_runs() {
    let env = Env::new("");
    let r = run_env(&env, &["status"], &env.root, &[]);
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(r.stdout.contains("not running"), "{}", r.stdout);
    let r = run_env(&env, &["status", "--json"], &env.root, &[]);
    assert_eq!(r.code, 3);
    assert_eq!(r.json()["running"], false);
    let socket = env.home.join("run/outloop.sock");
    assert_eq!(r.json()["socket"], socket.to_str().unwrap());

    let d = Daemon::start(&env);
    let r = run_env(&env, &["status"], &env.root, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for want in [
        "outloop daemon: running".to_owned(),
        format!("pid:      {}", d.pid()),
        format!("socket:   {}", socket.display()),
        format!("config:   {}", env.config_path().display()),
        "requests: 0 (0 in flight)".to_owned(),
    ] {
        assert!(r.stdout.contains(&want), "`{want}` missing:\n{}", r.stdout);
    }
    let s = status(&env);
    assert_eq!(s["socket"], socket.to_str().unwrap());
    assert_eq!(s["protocol"], 1);
    assert!(s["uptime_secs"].is_u64());
}

#[test]
fn socket_and_directory_are_private_and_the_process_keeps_no_core() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("");
    let d = Daemon::start(&env);
    let run = env.home.join("run");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&run), 0o700, "runtime directory");
    assert_eq!(mode(&run.join("outloop.sock")), 0o600, "socket");
    assert_eq!(mode(&run.join("outloop.lock")), 0o600, "lock file");
    // RLIMIT_CORE is 0, soft and hard, as the kernel reports it.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

/// Changes the owner of `dir` and everything below it.
fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    if dir.is_dir() && !dir.is_symlink() {
        for e in std::fs::read_dir(dir).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

fn proc_owner(pid: u32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid()
}

#[test]
fn the_daemon_is_not_dumpable_and_refuses_a_peer_of_another_uid() {
    // A non-dumpable process's /proc/<pid> files belong to root (proc(5)), whatever its uid.
    // So the daemon must run as a uid other than root for the check to mean something: as
    // root, the test runs it as `nobody` (65534), which also makes this test (uid 0) a peer
    // of another uid. Not as root, it runs as ourselves and the peer check is covered by the
    // unit test `a_peer_of_another_uid_is_refused` with synthetic uids.
    const NOBODY: u32 = 65534;
    let env = Env::new("[policy.tenants.acme]\nallow = [\"*\"]\n");
    let me = rustix::process::geteuid().as_raw();
    let as_root = me == 0;
    // As `nobody` the binary must be reachable: a clone under a 0700 directory (`mktemp -d`)
    // is not, so the daemon runs from a link (or copy) inside the workspace it serves, made
    // after the chown so the build's own binary keeps its owner.
    let mut program = PathBuf::from(env!("CARGO_BIN_EXE_outloop"));
    if as_root {
        chown_tree(&env.root, NOBODY, NOBODY);
        let inside = env.root.join("outloop-under-test");
        if std::fs::hard_link(&program, &inside).is_err() {
            std::fs::copy(&program, &inside).expect("copy the outloop binary");
        }
        program = inside;
    }
    let mut d = Daemon::start_with(&env, &program, |cmd| {
        if as_root {
            use std::os::unix::process::CommandExt;
            cmd.uid(NOBODY).gid(NOBODY).env("HOME", &env.root);
        }
    });
    let daemon_uid = if as_root { NOBODY } else { me };
    assert_ne!(daemon_uid, 0);
    assert_eq!(
        proc_owner(d.pid()),
        0,
        "/proc/{}/status of a uid-{daemon_uid} daemon belongs to root only when it is not dumpable",
        d.pid()
    );
    // The check tells the difference: an ordinary child of the same uid owns its /proc files.
    let mut control = Command::new("cat");
    control.stdin(Stdio::piped()).stdout(Stdio::null());
    if as_root {
        use std::os::unix::process::CommandExt;
        control.uid(NOBODY).gid(NOBODY);
    }
    let mut control = control.spawn().unwrap();
    assert_eq!(proc_owner(control.id()), daemon_uid);
    drop(control.stdin.take());
    control.wait().unwrap();

    if !as_root {
        eprintln!("not root: the foreign-uid peer is covered by the unit test only");
        return;
    }
    // We are uid 0, the daemon is 65534: it refuses us, and the command says why (exit 4).
    let r = run_env(&env, &["actions", "--json"], &env.acme, &[]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("serves uid 65534 only and refused a peer of uid 0"),
        "{}",
        r.stderr
    );
    assert_eq!(r.json()["error"]["kind"], "permission_denied");
    d.wait_line("refused a peer of uid 0");
}

#[test]
fn an_edit_by_hand_applies_to_the_next_request_and_a_bad_one_keeps_the_old_config() {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));
    let mut d = Daemon::start(&env);
    let names = |env: &Env| -> Vec<String> {
        let r = run_env(env, &["actions", "--json"], &env.acme, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json()["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = names(&env);
    assert!(!before.contains(&"echo.fresh".to_owned()));

    let mut cfg = std::fs::read_to_string(env.config_path()).unwrap();
    cfg.push_str(&format!(
        "\n[actions.\"echo.fresh\"]\ndescription = \"added while the daemon ran\"\nmethod = \"GET\"\nurl = \"{}/get\"\n",
        crate::support::httpbin()
    ));
    std::fs::write(env.config_path(), &cfg).unwrap();
    // No signal: the next request sees the edit.
    let after = names(&env);
    assert!(after.contains(&"echo.fresh".to_owned()), "{after:?}");
    d.wait_line("reloaded");
    let r = run_env(&env, &["call", "echo.fresh", "--json"], &env.acme, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["status"], 200);

    // A bad config: refused with its one-line `file:line: …` error, the old one kept.
    std::fs::write(
        env.config_path(),
        format!("{cfg}\n[actions.\"echo.broken\"]\nmethd = \"GET\"\n"),
    )
    .unwrap();
    assert_eq!(names(&env), after, "the previous config stays in use");
    let line = d.wait_line("reload refused");
    assert!(line.contains("config.toml:"), "{line}");
    assert!(line.contains("keeping the previous config"), "{line}");
    let r = run_env(&env, &["call", "echo.fresh", "--json"], &env.acme, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // SIGHUP still reloads on demand (here: refused again, the config is still bad).
    d.signal(rustix::process::Signal::HUP);
    d.wait_line("reload refused");
    assert_eq!(status(&env)["reloads"], 1);
    // The daemon did not go away over it.
    assert_eq!(status(&env)["pid"], d.pid());
}

#[test]
fn a_permission_revoked_by_hand_is_denied_on_the_next_request() {
    let rec = Recorder::start();
    let env = Env::new(&actions(&rec.url));
    let _d = Daemon::start(&env);
    let r = run_env(&env, &["call", "echo.bearer", "--json"], &env.acme, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cfg = std::fs::read_to_string(env.config_path()).unwrap();
    let revoked = cfg.replace(
        "allow = [\"echo.*\", \"rec.*\", \"metadata\"]",
        "allow = [\"rec.*\"]",
    );
    assert_ne!(cfg, revoked, "the test config changed shape");
    std::fs::write(env.config_path(), revoked).unwrap();
    let r = run_env(&env, &["call", "echo.bearer", "--json"], &env.acme, &[]);
    assert_eq!(r.code, 3, "revoked, yet: {} {}", r.stdout, r.stderr);
    env.assert_no_leak();
}

#[test]
fn commands_that_edit_the_config_make_the_daemon_reload() {
    let env = Env::new("[policy.tenants.acme]\nallow = [\"*\"]\n");
    let _d = Daemon::start(&env);
    let extra = env.root.join("clients/extra");
    std::fs::create_dir_all(&extra).unwrap();
    let r = run_env(&env, &["actions"], &extra, &[]);
    assert_eq!(r.code, 3, "unbound at first: {}", r.stderr);
    env.ok(&["bind", extra.to_str().unwrap(), "acme"], &env.root);
    let r = run_env(&env, &["actions"], &extra, &[]);
    assert_eq!(r.code, 0, "bound after `outloop bind`: {}", r.stderr);
    assert_eq!(status(&env)["reloads"], 1);
}

/// A loopback upstream that holds each request until the test releases it, and reports when
/// a request has arrived: the readiness signal for "a request is in flight".
fn gated_upstream() -> (String, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let _ = arrived_tx.send(());
            if release_rx.recv().is_err() {
                return;
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow",
            );
        }
    });
    (url, arrived, release)
}

#[test]
fn sigterm_drains_a_request_in_flight_and_its_audit_record_is_written() {
    let (url, arrived, release) = gated_upstream();
    let env = Env::new(&format!(
        "[actions.\"slow.get\"]\ncredential = \"echo\"\nmethod = \"GET\"\nurl = \"{url}/slow\"\nauth = {{ type = \"bearer\" }}\n\n[policy.tenants.acme]\nallow = [\"slow.*\"]\n"
    ));
    let mut d = Daemon::start(&env);
    let call = Command::new(env!("CARGO_BIN_EXE_outloop"))
        .args(["call", "slow.get", "--json"])
        .current_dir(&env.acme)
        .env("OUTLOOP_HOME", &env.home)
        .env_remove("OUTLOOP_NO_DAEMON")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The request is in flight once the upstream holds it.
    arrived
        .recv_timeout(WAIT)
        .expect("the call reached the upstream");
    d.signal(rustix::process::Signal::TERM);
    d.wait_line("stopped listening; draining 1 request(s) in flight");
    // Draining: the daemon is still up, but new commands no longer find it.
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "exited before draining"
    );
    let r = run_env(&env, &["status"], &env.root, &[]);
    assert_eq!(r.code, 3, "{}", r.stdout);
    release.send(()).unwrap();
    let out = call.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["body"], "slow");
    let (code, log) = d.wait_exit();
    assert_eq!(code, 0, "{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("stopped after 1 request(s)")),
        "{}",
        log.join("\n")
    );
    let tail = env.ok(&["audit", "tail", "--json"], &env.root);
    let last: serde_json::Value =
        serde_json::from_str(tail.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "slow.get");
    assert_eq!(last["outcome"], "ok");
    assert_eq!(last["status"], 200);
    env.ok(&["audit", "verify"], &env.root);
    env.assert_no_leak();
}

#[test]
fn a_second_daemon_is_refused_and_a_stale_socket_is_replaced() {
    let env = Env::new("[policy.tenants.acme]\nallow = [\"*\"]\n");
    let mut first = Daemon::start(&env);
    let r = run_env(&env, &["serve"], &env.root, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "an outloop daemon (pid {}) is already serving",
            first.pid()
        )),
        "{}",
        r.stderr
    );
    // Killed without a chance to clean up: the socket file stays behind, stale.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let socket = env.home.join("run/outloop.sock");
    assert!(socket.exists(), "a killed daemon leaves its socket");
    // Commands fall back to the in-process broker; status says nothing runs.
    let r = run_env(&env, &["actions"], &env.acme, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(run_env(&env, &["status"], &env.root, &[]).code, 3);
    let second = Daemon::start_with(&env, Path::new(env!("CARGO_BIN_EXE_outloop")), |_| {});
    assert!(
        second
            .log
            .iter()
            .any(|l| l.contains("replacing stale socket")),
        "{:?}",
        second.log
    );
    assert_eq!(status(&env)["pid"], second.pid());
    second.signal(rustix::process::Signal::TERM);
    let (code, _) = second.wait_exit();
    assert_eq!(code, 0);
    assert!(!socket.exists(), "a stopped daemon removes its socket");
}

// ── Load ────────────────────────────────────────────────────────────────────────────────

/// A keep-alive HTTP/1.1 loopback upstream (hyper) that answers every request with
/// `{"auth":"<the Authorization header it received>"}`, so every response echoes the
/// credential and must come back redacted.
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

/// An Env whose `load.get` action calls `upstream` with acme's echo credential, and whose
/// acme workspace also covers this test process's working directory: load clients are this
/// process, and the daemon takes the workspace from the peer.
fn load_env(upstream: &str) -> Env {
    let env = Env::new(&format!(
        "[actions.\"load.get\"]\ncredential = \"echo\"\nmethod = \"GET\"\nurl = \"{upstream}/load\"\nauth = {{ type = \"bearer\" }}\n\n[policy.tenants.acme]\nallow = [\"load.*\"]\n"
    ));
    let here = std::env::current_dir().unwrap().canonicalize().unwrap();
    env.ok(&["bind", here.to_str().unwrap(), "acme"], &env.root);
    env
}

const LOAD_BODY: &str = r#"{"auth":"Bearer [REDACTED:echo]"}"#;

/// One client connection making up to `max` `load.get` calls one after another. Returns how
/// many were answered; stops at the first broken connection (`Err` names it) or non-call
/// answer (a panic: the daemon must never answer a load call with an error).
async fn load_client(
    socket: PathBuf,
    max: usize,
    acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> (usize, Option<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let stream = match tokio::net::UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e) => return (0, Some(format!("connect: {e}"))),
    };
    let mut stream = tokio::io::BufReader::new(stream);
    let mut req = serde_json::to_vec(&protocol::Request::new(protocol::Op::Call {
        action: "load.get".into(),
        params: serde_json::Map::new(),
        tenant: None,
    }))
    .unwrap();
    req.push(b'\n');
    let mut line = Vec::new();
    for done in 0..max {
        if let Err(e) = stream.get_mut().write_all(&req).await {
            return (done, Some(format!("write: {e}")));
        }
        line.clear();
        match stream.read_until(b'\n', &mut line).await {
            Ok(0) => return (done, Some("closed".into())),
            Err(e) => return (done, Some(format!("read: {e}"))),
            Ok(_) => {}
        }
        let resp: protocol::Response = serde_json::from_slice(&line).unwrap();
        match resp.body {
            protocol::Body::Call(c) => {
                assert_eq!(c.status, 200);
                assert_eq!(c.body, LOAD_BODY, "redacted echo of the credential");
                assert_eq!(c.redactions, 1);
            }
            other => panic!("request {done} answered with {other:?}"),
        }
        acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    (max, None)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The process's descriptor count once it is at most `bound`, or after 5 s the count then.
fn fd_count_within(pid: u32, bound: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = fd_count(pid);
        if n <= bound || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn audit_outcomes(env: &Env) -> (usize, usize) {
    let text = std::fs::read_to_string(env.audit_path()).unwrap_or_default();
    assert!(
        !text.contains(ACME_ECHO),
        "the credential reached the audit log"
    );
    let mut ok = 0;
    let mut other = 0;
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["action"] == "load.get" && v["outcome"] == "ok" {
            ok += 1;
        } else {
            other += 1;
        }
    }
    (ok, other)
}

#[test]
fn sixty_four_concurrent_clients_make_calls_without_an_error_or_a_leak() {
    // 64 clients at once, each making 1,000 calls (OUTLOOP_LOAD_CALLS overrides) one after
    // another on its own connection: 64,000 calls, about 100 s for a debug daemon on the 2-core
    // machine (629 calls/s measured) now that the broker reuses built redactors.
    const CLIENTS: usize = 64;
    let calls: usize = std::env::var("OUTLOOP_LOAD_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(echo_upstream());
    let env = load_env(&upstream);
    let d = Daemon::start(&env);
    let socket = env.home.join("run/outloop.sock");
    let fds_before = fd_count(d.pid());
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // One round: CLIENTS concurrent clients of `calls` calls each; what each achieved.
    let round = |calls: usize| {
        rt.block_on(async {
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|_| tokio::spawn(load_client(socket.clone(), calls, acked.clone())))
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
    };
    let started = Instant::now();
    let results = round(calls);
    let elapsed = started.elapsed();
    for (i, (n, err)) in results.iter().enumerate() {
        assert_eq!(*n, calls, "client {i} stopped early: {err:?}");
    }
    let total = CLIENTS * calls;
    eprintln!(
        "load: {total} calls from {CLIENTS} clients in {:.1} s ({:.0} calls/s, debug build)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    // A client's last reply can arrive before the daemon has dropped its end of the socket,
    // so each count is read until it is within bounds (or 5 s pass, and the assertion shows it).
    let fds_after = fd_count_within(d.pid(), fds_before + 2 * CLIENTS + 8);
    // The upstream connection pool keeps about one idle connection per concurrent client
    // (hyper may open a few more while others are being returned), so the count after one
    // round is only bounded loosely. A leak shows as growth in a second round of 64 new
    // connections: a socket per connection would add 64, a descriptor per call 1,280.
    assert!(
        fds_after <= fds_before + 2 * CLIENTS + 8,
        "{fds_before} descriptors before, {fds_after} after"
    );
    const ROUND_TWO: usize = 20;
    let results = round(ROUND_TWO);
    for (i, (n, err)) in results.iter().enumerate() {
        assert_eq!(
            *n, ROUND_TWO,
            "client {i} stopped early in round two: {err:?}"
        );
    }
    let fds_again = fd_count_within(d.pid(), fds_after + CLIENTS / 2);
    assert!(
        fds_again <= fds_after + CLIENTS / 2,
        "{fds_after} descriptors after the first round, {fds_again} after the second"
    );
    let total = total + CLIENTS * ROUND_TWO;
    let s = status(&env);
    assert_eq!(s["requests"], total as u64);
    assert_eq!(s["in_flight"], 0);
    let v = env.ok(&["audit", "verify"], &env.root);
    assert!(
        v.stdout.contains(&format!("{total} records, chain intact")),
        "{}",
        v.stdout
    );
    assert_eq!(audit_outcomes(&env), (total, 0));
}

#[test]
fn sigterm_in_the_middle_of_load_loses_no_acknowledged_audit_record() {
    const CLIENTS: usize = 16;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(echo_upstream());
    let env = load_env(&upstream);
    let mut d = Daemon::start(&env);
    let socket = env.home.join("run/outloop.sock");
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| rt.spawn(load_client(socket.clone(), usize::MAX, acked.clone())))
        .collect();
    // Signal once the load is well under way (a condition on answered calls, not a time).
    let deadline = Instant::now() + WAIT;
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 100 {
        assert!(Instant::now() < deadline, "the load did not get going");
        std::thread::yield_now();
    }
    d.signal(rustix::process::Signal::TERM);
    d.wait_line("stopped listening");
    let results = rt.block_on(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let (code, log) = d.wait_exit();
    assert_eq!(code, 0, "{}", log.join("\n"));
    let acked = acked.load(std::sync::atomic::Ordering::SeqCst) as usize;
    let answered: usize = results.iter().map(|(n, _)| n).sum();
    assert_eq!(answered, acked);
    for (n, err) in &results {
        assert!(err.is_some(), "a client ran forever? {n}");
    }
    // Every call a client got an answer for has its audit record, and nothing else ran.
    env.ok(&["audit", "verify"], &env.root);
    let (ok, other) = audit_outcomes(&env);
    assert_eq!(ok, acked, "{log:?}");
    assert_eq!(other, 0);
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("stopped after {acked} request(s)"))),
        "{}",
        log.join("\n")
    );
}
