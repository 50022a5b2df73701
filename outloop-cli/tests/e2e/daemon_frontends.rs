//! `outloop exec` and `outloop mcp` through the daemon: the same results as in-process
//! (output, exit codes, tool lists, tool results, audit record shapes), the daemon path
//! really taken (its request counter), and an exec session whose client dies or whose daemon
//! stops still gets its closing audit record.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::daemon::{Daemon, run_env, status};
use crate::support::Env;

const EXEC_POLICY: &str = r#"
[policy.tenants.acme]
allow = ["exec:echo", "exec:key"]
"#;

/// The audit records appended since `from`, without what differs between two runs of one
/// request (time, ids, durations, the chain).
fn audit_shapes(env: &Env, from: usize) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.audit_path())
        .unwrap_or_default()
        .lines()
        .skip(from)
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in ["time", "request_id", "duration_ms", "prev"] {
                o.remove(k);
            }
            // The approval id differs between runs: `approved by a human (<id>)`.
            if let Some(r) = o.get("reason").and_then(|r| r.as_str())
                && let Some((head, _)) = r.split_once("approved by a human (")
            {
                let masked = format!("{head}approved by a human (<id>)");
                o.insert("reason".into(), masked.into());
            }
            v
        })
        .collect()
}

fn audit_len(env: &Env) -> usize {
    std::fs::read_to_string(env.audit_path())
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn exec_gives_the_same_results_with_and_without_the_daemon() {
    let env = Env::new(EXEC_POLICY);
    let script = r#"echo "e=$ECHO"; echo "k=$API_KEY" >&2; exit 3"#;
    let cases: &[(&[&str], &Path)] = &[
        (
            &[
                "exec",
                "--credential",
                "echo",
                "--credential",
                "key=API_KEY",
                "--",
                "sh",
                "-c",
                script,
            ],
            &env.acme,
        ),
        (
            &[
                "exec",
                "--credential",
                "echo",
                "--pty",
                "--",
                "sh",
                "-c",
                "echo \"$ECHO\"",
            ],
            &env.acme,
        ),
        (&["exec", "--credential", "echo", "--", "env"], &env.acme),
        (
            &[
                "exec",
                "--credential",
                "echo",
                "--",
                "no-such-command-outloop",
            ],
            &env.acme,
        ),
        (&["exec", "--credential", "other", "--", "true"], &env.acme),
        (&["exec", "--credential", "echo", "--", "true"], &env.globex),
        (
            &["exec", "--credential", "echo", "--", "true"],
            &env.unbound,
        ),
        (
            &[
                "exec",
                "--credential",
                "echo",
                "--tenant",
                "globex",
                "--",
                "true",
            ],
            &env.acme,
        ),
    ];
    // First with no daemon at all, then with one; each case's output, exit code and audit
    // records must match.
    let mut local = Vec::new();
    for (args, cwd) in cases {
        let before = audit_len(&env);
        let r = run_env(&env, args, cwd, &[]);
        local.push((r, audit_shapes(&env, before)));
    }
    let d = Daemon::start(&env);
    assert_eq!(status(&env)["requests"], 0);
    for ((args, cwd), (l, l_audit)) in cases.iter().zip(&local) {
        let before = audit_len(&env);
        let via = run_env(&env, args, cwd, &[]);
        let what = format!("`outloop {}` in {}", args.join(" "), cwd.display());
        assert_eq!(
            via.code, l.code,
            "{what}: exit codes differ: {}",
            via.stderr
        );
        assert_eq!(via.stdout, l.stdout, "{what}: stdout differs");
        assert_eq!(via.stderr, l.stderr, "{what}: stderr differs");
        assert_eq!(
            &audit_shapes(&env, before),
            l_audit,
            "{what}: audit differs"
        );
    }
    // What the first case printed, and that it was redacted on both paths.
    let (first, first_audit) = &local[0];
    assert_eq!(first.code, 3);
    assert_eq!(first.stdout, "e=[REDACTED:echo]\n");
    assert_eq!(first.stderr, "k=[REDACTED:key]\n");
    assert_eq!(first_audit.len(), 2, "{first_audit:?}");
    assert_eq!(first_audit[0]["outcome"], "started");
    assert_eq!(first_audit[1]["outcome"], "ok");
    assert_eq!(first_audit[1]["redactions"], 2);
    assert_eq!(local[3].0.code, 127);
    assert_eq!(local[4].0.code, 3);
    // The daemon answered every one of them (one `exec_start` each).
    let s = status(&env);
    assert_eq!(s["pid"], d.pid());
    assert_eq!(s["requests"], cases.len() as u64);
    assert_eq!(s["in_flight"], 0);
    env.ok(&["audit", "verify"], &env.root);
    env.assert_no_leak();
}

#[test]
fn an_exec_held_for_approval_through_the_daemon_runs_once_approved() {
    let env = Env::new(
        r#"
[policy.tenants.acme]
approve = ["exec:key"]
"#,
    );
    let mut d = Daemon::start(&env);
    let mut child = Command::new(env!("CARGO_BIN_EXE_outloop"))
        .args(["exec", "--credential", "key=API_KEY", "--", "sh", "-c"])
        .arg("echo \"k=$API_KEY\"")
        .current_dir(&env.acme)
        .env("OUTLOOP_HOME", &env.home)
        .env_remove("OUTLOOP_NO_DAEMON")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hold line `outloop exec` prints names the approval id, as in-process.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    env.seen.lock().unwrap().extend_from_slice(line.as_bytes());
    assert!(
        line.starts_with("outloop: held for a human's approval as "),
        "{line}"
    );
    let id = line
        .split(" as ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    d.wait_line(&format!("held exec:key for tenant `acme` as {id}"));
    env.ok(&["approve", &id], &env.root);
    let out = child.wait_with_output().unwrap();
    env.seen.lock().unwrap().extend_from_slice(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "k=[REDACTED:key]\n");
    let (start, end) = last_two(&env);
    assert_eq!(start["decision"], "approve");
    assert_eq!(start["outcome"], "started");
    assert_eq!(end["outcome"], "ok");
    assert_eq!(end["redactions"], 1);
    assert_eq!(status(&env)["requests"], 1);
    env.assert_no_leak();
}

/// Starts `outloop exec` through the daemon with a command that prints `started` and then
/// waits for a line on its stdin (outloop's stdin, which the test holds).
fn start_waiting_exec(env: &Env) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outloop"))
        .args(["exec", "--credential", "echo", "--", "sh", "-c"])
        .arg("echo started; read line; echo \"$ECHO\"; exit 4")
        .current_dir(&env.acme)
        .env("OUTLOOP_HOME", &env.home)
        .env_remove("OUTLOOP_NO_DAEMON")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    (child, out)
}

fn last_two(env: &Env) -> (serde_json::Value, serde_json::Value) {
    let text = std::fs::read_to_string(env.audit_path()).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n = recs.len();
    (recs[n - 2].clone(), recs[n - 1].clone())
}

#[test]
fn an_exec_whose_client_dies_or_whose_daemon_stops_still_gets_its_closing_record() {
    let env = Env::new(EXEC_POLICY);
    let mut d = Daemon::start(&env);

    // The client is killed while its command runs: the daemon records `client_gone`.
    let (mut child, _out) = start_waiting_exec(&env);
    child.kill().unwrap();
    child.wait().unwrap();
    d.wait_line("recorded as client_gone");
    let (start, end) = last_two(&env);
    assert_eq!(start["outcome"], "started");
    assert_eq!(end["request_id"], start["request_id"]);
    assert_eq!(end["outcome"], "client_gone");
    assert_eq!(end["action"], "exec:echo");
    assert_eq!(end["tenant"], "acme");
    assert!(
        end["reason"]
            .as_str()
            .unwrap()
            .starts_with("command `sh`: the outloop exec client went away"),
        "{end}"
    );
    // The orphaned command ends when its stdin closes.
    drop(child.stdin.take());

    // The daemon stops while a command runs: it does not wait for the command, records
    // `daemon_stopped`, and the command still runs to its end with its output redacted.
    let (mut child, mut out) = start_waiting_exec(&env);
    d.signal(rustix::process::Signal::TERM);
    let (code, log) = d.wait_exit();
    assert_eq!(code, 0, "{log:?}");
    assert!(
        log.iter().any(|l| l.contains("recorded as daemon_stopped")),
        "{log:?}"
    );
    let (start, end) = last_two(&env);
    assert_eq!(end["request_id"], start["request_id"]);
    assert_eq!(end["outcome"], "daemon_stopped");
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let status = child.wait().unwrap();
    env.seen.lock().unwrap().extend_from_slice(rest.as_bytes());
    env.seen.lock().unwrap().extend_from_slice(err.as_bytes());
    assert_eq!(rest, "[REDACTED:echo]\n");
    assert_eq!(status.code(), Some(4), "the command's code: {err}");
    assert!(err.starts_with("outloop: warning: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    env.ok(&["audit", "verify"], &env.root);
    env.assert_no_leak();
}

/// Runs the official-SDK MCP client (tests/mcp_client.py) against the server entry
/// `outloop init --agent claude-code` wrote, with its transcript written to `transcript`;
/// returns its stdout (already added to the leak check) after asserting every check passed.
fn mcp_session(env: &Env, transcript: &Path) -> String {
    let mcp_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.acme.join(".mcp.json")).unwrap())
            .unwrap();
    let entry = &mcp_json["mcpServers"]["outloop"];
    let out = Command::new(super::mcp::venv_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py"))
        .env("MCP_ENTRY", entry.to_string())
        .env("OUTLOOP_BIN", entry["command"].as_str().unwrap())
        .env("OUTLOOP_HOME", &env.home)
        .env("MCP_WORKSPACE", &env.acme)
        .env("MCP_OUTSIDE", &env.root)
        .env("MCP_TRANSCRIPT", transcript)
        .env_remove("OUTLOOP_NO_DAEMON")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("the venv python runs");
    env.seen.lock().unwrap().extend_from_slice(&out.stdout);
    env.seen.lock().unwrap().extend_from_slice(&out.stderr);
    env.assert_no_leak();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success()
            && stdout.contains("mcp client: all checks passed")
            && stdout.contains("mcp client (2026-07-28): all checks passed"),
        "the MCP client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn an_mcp_session_gives_the_same_tools_and_results_through_the_daemon() {
    let env = Env::new(&super::mcp::config());
    env.ok(
        &[
            "init",
            "--agent",
            "claude-code",
            "--workspace",
            env.acme.to_str().unwrap(),
        ],
        &env.root,
    );
    let local_t = env.root.join("local.json");
    let via_t = env.root.join("via.json");

    // In-process: no daemon runs.
    assert_eq!(run_env(&env, &["status"], &env.root, &[]).code, 3);
    let before = audit_len(&env);
    let local_out = mcp_session(&env, &local_t);
    let local_audit = audit_shapes(&env, before);

    // Through the daemon: the same session, the same answers.
    let d = Daemon::start(&env);
    let before = audit_len(&env);
    let via_out = mcp_session(&env, &via_t);
    let via_audit = audit_shapes(&env, before);

    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (local, via) = (read(&local_t), read(&via_t));
    let entries = local.as_array().unwrap();
    assert_eq!(entries.len(), 13, "{local:#}");
    for (l, v) in entries.iter().zip(via.as_array().unwrap()) {
        assert_eq!(l, v, "`{}` differs through the daemon", l["label"]);
    }
    assert_eq!(local, via);
    // What was compared is what the session is about: tools, redacted results, errors.
    let tools = &entries[0]["value"];
    assert!(tools.as_array().unwrap().len() >= 4, "{tools}");
    assert_eq!(entries[1]["label"], "echo__bearer");
    assert!(
        entries[1]["value"]["body"]["body"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:echo]")
    );
    assert_eq!(entries[4]["value"]["is_error"], true);

    // The same audit records, in the same order (times and ids aside).
    assert!(local_audit.len() >= 10, "{local_audit:?}");
    assert_eq!(local_audit, via_audit);

    // The same server log lines for reloads and refused configs on both paths.
    for out in [&local_out, &via_out] {
        assert!(out.contains("outloop mcp: config reloaded"), "{out}");
        assert!(out.contains("the changed config is not used"), "{out}");
    }
    // `outloop actions --json` shows an alias's allow rules (the `request` tool's description
    // uses them) on both paths.
    let via = run_env(&env, &["actions", "--json"], &env.acme, &[]);
    let local = run_env(
        &env,
        &["actions", "--json"],
        &env.acme,
        &[("OUTLOOP_NO_DAEMON", "1")],
    );
    assert_eq!(via.stdout, local.stdout);
    let bin = via.json()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "alias:bin")
        .cloned()
        .unwrap();
    assert_eq!(
        bin["allow"],
        serde_json::json!(["GET /bearer", "GET /anything/**", "POST /anything/**"])
    );

    // The daemon answered the second session: the tool lists, explains and calls.
    let s = status(&env);
    assert_eq!(s["pid"], d.pid());
    assert!(s["requests"].as_u64().unwrap() >= 13, "{s}");
    env.ok(&["audit", "verify"], &env.root);
    env.assert_no_leak();
}

/// Also: the server is started outside the workspace with `--workspace`, which it changes
/// into, so the daemon sees the workspace from the peer's working directory.
#[test]
fn an_mcp_session_goes_on_in_process_when_the_daemon_stops() {
    let env = Env::new(&super::mcp::config());
    let d = Daemon::start(&env);
    let mut py = Command::new(super::mcp::venv_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_failover.py"))
        .env("OUTLOOP_BIN", env!("CARGO_BIN_EXE_outloop"))
        .env("OUTLOOP_HOME", &env.home)
        .env("MCP_WORKSPACE", &env.acme)
        .env("MCP_OUTSIDE", &env.unbound)
        .env_remove("OUTLOOP_NO_DAEMON")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the venv python runs");
    let mut out = BufReader::new(py.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "no READY:\n{seen}");
        seen.push_str(&line);
        if line == "READY\n" {
            break;
        }
    }
    // The first tool list and call went to the daemon.
    let s = status(&env);
    assert!(s["requests"].as_u64().unwrap() >= 3, "{s}");
    d.signal(rustix::process::Signal::TERM);
    let (code, log) = d.wait_exit();
    assert_eq!(code, 0, "{log:?}");
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    seen.push_str(&rest);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut py.stderr.take().unwrap(), &mut err).unwrap();
    let status = py.wait().unwrap();
    env.seen.lock().unwrap().extend_from_slice(seen.as_bytes());
    env.seen.lock().unwrap().extend_from_slice(err.as_bytes());
    env.assert_no_leak();
    assert!(
        status.success() && seen.contains("failover: all checks passed"),
        "{seen}\n{err}"
    );
    // Both calls were audited, the second by the in-process broker after the daemon left.
    let text = std::fs::read_to_string(env.audit_path()).unwrap();
    let calls = text
        .lines()
        .filter(|l| l.contains("\"action\":\"echo.bearer\""))
        .count();
    assert_eq!(calls, 2, "{text}");
    env.ok(&["audit", "verify"], &env.root);
}

/// A raw protocol client in Python (the standard library only), run in `cwd` so the daemon
/// sees that workspace; prints one JSON line per answer, and a value only as its SHA-256.
const RAW_CLIENT: &str = r#"
import base64, hashlib, json, os, socket
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["SOCK"])
f = s.makefile("rwb")
def ask(o):
    f.write((json.dumps(o) + "\n").encode()); f.flush()
    return json.loads(f.readline())
print(json.dumps(ask({"v": 1, "op": "exec_end", "exit": {"exited": 0}})))
r = ask({"v": 1, "op": "exec_start", "command": "raw",
         "credentials": [{"name": "echo", "variable": "ECHO"}]})
value = base64.b64decode(r["data"]["variables"][0].pop("value"))
r["data"]["value_sha256"] = hashlib.sha256(value).hexdigest()
print(json.dumps(r))
print(json.dumps(ask({"v": 1, "op": "actions"})))
print(json.dumps(ask({"v": 1, "op": "exec_end", "exit": {"exited": 7}, "redactions": 2})))
"#;

#[test]
fn the_exec_session_protocol_orders_its_operations() {
    use sha2::{Digest, Sha256};
    let env = Env::new(EXEC_POLICY);
    let _d = Daemon::start(&env);
    let out = Command::new(super::mcp::venv_python())
        .args(["-c", RAW_CLIENT])
        .current_dir(&env.acme)
        .env("SOCK", env.home.join("run/outloop.sock"))
        .output()
        .unwrap();
    env.seen.lock().unwrap().extend_from_slice(&out.stdout);
    env.seen.lock().unwrap().extend_from_slice(&out.stderr);
    env.assert_no_leak();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // `exec_end` needs a session.
    assert_eq!(lines[0]["type"], "error");
    assert_eq!(lines[0]["data"]["kind"], "usage");
    // The session hands out the value for the peer's workspace (acme's, checked by digest).
    assert_eq!(lines[1]["type"], "exec_started");
    let data = &lines[1]["data"];
    assert_eq!(data["tenant"], "acme");
    assert_eq!(data["variables"][0]["variable"], "ECHO");
    assert_eq!(data["variables"][0]["credential"], "echo");
    assert_eq!(
        data["value_sha256"],
        hex::encode(Sha256::digest(crate::support::ACME_ECHO.as_bytes()))
    );
    // While it is open, nothing but `exec_end` is answered.
    assert_eq!(lines[2]["type"], "error");
    assert!(
        lines[2]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("send `exec_end` first"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3]["type"], "exec_ended");
    assert_eq!(lines[3]["data"]["request_id"], data["request_id"]);
    let (start, end) = last_two(&env);
    assert_eq!(start["request_id"], data["request_id"]);
    assert_eq!(end["reason"], "command `raw` exited with code 7");
    assert_eq!(end["redactions"], 2);
}
