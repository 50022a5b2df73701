//! `outloop mcp` driven by the official MCP Python SDK (tests/mcp_client.py), started from the
//! entry `outloop init --agent claude-code` wrote, against the real httpbin.

use std::path::Path;
use std::process::Command;

use crate::support::{Env, httpbin};

/// The venv python that scripts/test-env.sh creates (it holds the pinned `mcp` package).
pub(super) fn venv_python() -> std::path::PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test-env.sh (it installs tests/requirements.txt)",
        p.display()
    );
    p
}

pub(super) fn config() -> String {
    let h = httpbin();
    format!(
        r#"
[actions."echo.bearer"]
description = "httpbin /bearer: reports the bearer token it received"
credential = "echo"
method = "GET"
url = "{h}/bearer"
auth = {{ type = "bearer" }}

[actions."echo.headers"]
description = "httpbin /headers with a named header"
credential = "key"
method = "GET"
url = "{h}/headers"
auth = {{ type = "header", name = "X-Api-Key", format = "Key {{secret}}" }}

[actions."echo.stream"]
description = "httpbin /stream/n: n JSON lines echoing the request"
credential = "echo"
method = "GET"
url = "{h}/stream/{{n}}"
auth = {{ type = "bearer" }}
params.n = {{ type = "integer", min = 1, max = 100 }}

[actions."echo.status"]
method = "GET"
url = "{h}/status/{{code}}"
params.code = {{ type = "integer", min = 100, max = 599 }}

[aliases.bin]
description = "httpbin itself"
credential = "echo"
base_url = "{h}"
auth = {{ type = "bearer" }}
allow = ["GET /bearer", "GET /anything/**", "POST /anything/**"]

[aliases.other]
credential = "echo"
base_url = "{h}"
auth = {{ type = "bearer" }}
allow = ["GET /**"]

[policy.tenants.acme]
allow = ["echo.*", "alias:bin"]
deny = ["echo.status"]
approve = ["echo.headers"]
"#
    )
}

#[test]
fn python_sdk_lists_calls_is_denied_approves_and_sees_reloads() {
    let env = Env::new(&config());
    // The server is started exactly as Claude Code would start it.
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
    let mcp_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.acme.join(".mcp.json")).unwrap())
            .unwrap();
    let entry = &mcp_json["mcpServers"]["outloop"];
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_outloop")).unwrap();
    assert_eq!(entry["command"], bin.to_str().unwrap());
    assert_eq!(
        entry["args"],
        serde_json::json!(["mcp", "--workspace", env.acme.to_str().unwrap()])
    );
    assert_eq!(entry["env"]["OUTLOOP_HOME"], env.home.to_str().unwrap());

    let out = Command::new(venv_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py"))
        .env("MCP_ENTRY", entry.to_string())
        .env("OUTLOOP_BIN", entry["command"].as_str().unwrap())
        .env("OUTLOOP_HOME", &env.home)
        .env("MCP_WORKSPACE", &env.acme)
        .env("MCP_OUTSIDE", &env.root)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("the venv python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    env.seen.lock().unwrap().extend_from_slice(&out.stdout);
    env.seen.lock().unwrap().extend_from_slice(&out.stderr);
    // First the leak check, so no message below can show a secret.
    env.assert_no_leak();
    // Shown with `--nocapture`: the client's checks, every tool result and the server's stderr
    // (already checked for leaks below, with everything else this test saw).
    #[allow(clippy::print_stdout)]
    {
        println!("{stdout}");
    }
    assert!(
        out.status.success()
            && stdout.contains("mcp client: all checks passed")
            && stdout.contains("mcp client (2026-07-28): all checks passed"),
        "the MCP client failed:\n{stdout}\n{stderr}"
    );
    // The server's stderr (printed by the client) logged the reload and the refused config.
    assert!(stdout.contains("outloop mcp: config reloaded"), "{stdout}");
    assert!(
        stdout.contains("the changed config is not used, the previous one stays"),
        "{stdout}"
    );
    // Every attempt, the denied one included, is audited.
    let audit = std::fs::read_to_string(env.audit_path()).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"echo.status\"") && l.contains("\"deny\"")),
        "{audit}"
    );
    env.assert_no_leak();
}

#[test]
fn mcp_refuses_a_missing_workspace_and_a_broken_config_at_start() {
    let env = Env::new("");
    let r = env.run(
        &["mcp", "--workspace", "/nonexistent/outloop-ws"],
        &env.root,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("--workspace `/nonexistent/outloop-ws`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.is_empty(),
        "stdout carries only protocol: {}",
        r.stdout
    );

    std::fs::write(env.config_path(), "[policy\n").unwrap();
    let r = env.run(&["mcp"], &env.acme);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("config.toml:1"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    env.assert_no_leak();
}

/// `outloop mcp` for the acme workspace, driven by raw JSON-RPC lines, past the handshake
/// (`initialize` answered, `notifications/initialized` sent); stderr is piped.
fn raw_session(
    env: &Env,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::{BufRead, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_outloop"))
        .args(["mcp", "--workspace", env.acme.to_str().unwrap()])
        .current_dir(&env.root)
        .env("OUTLOOP_HOME", &env.home)
        .env_remove("OUTLOOP_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": { "name": "outloop-e2e", "version": "1" }
        }
    });
    writeln!(stdin, "{initialize}").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(
        line.starts_with(r#"{"jsonrpc":"2.0","id":1,"result""#),
        "{line}"
    );
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    (child, stdin, stdout)
}

/// A message longer than the SDK's 16 MiB line limit is dropped unanswered, with one line on
/// stderr saying so, and the session answers the next request. Raw JSON-RPC lines here: an
/// SDK client would refuse to send the oversized one.
#[test]
fn an_oversized_message_is_dropped_with_a_log_line_and_the_session_goes_on() {
    use std::io::{BufRead, Read, Write};
    let env = Env::new(&config());
    let (mut child, mut stdin, mut stdout) = raw_session(&env);
    let mut reply = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    };
    // 16 MiB of argument alone, so the line is past the limit whatever the framing adds.
    let oversized = serde_json::json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "echo__bearer", "arguments": { "x": "a".repeat(16 << 20) } }
    });
    writeln!(stdin, "{oversized}").unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":3,"method":"tools/list"}}"#).unwrap();
    let next = reply();
    assert_eq!(next["id"], 3, "the oversized request got a reply: {next}");
    assert!(
        next["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "echo__bearer")),
        "{next}"
    );
    drop(stdin);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    let dropped: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("exceeded the maximum line length"))
        .collect();
    assert_eq!(dropped.len(), 1, "{stderr}");
    assert!(dropped[0].contains("max_line_length=16777216"), "{stderr}");
    assert!(
        stderr.len() < 4096,
        "stderr holds the message: {stderr:.200}"
    );
    env.assert_no_leak();
}

/// A tool call still waiting on its upstream when the client closes stdin is audited: the
/// server gives in-flight calls the SDK's 5 s to finish, then exits, and the abandoned call's
/// record says `cancelled`.
#[test]
fn a_call_cut_off_by_the_client_closing_stdin_is_audited_as_cancelled() {
    use std::io::{Read, Write};
    let h = httpbin();
    let env = Env::new(&format!(
        r#"{}
[actions."echo.delay"]
description = "httpbin /delay/10: answers after 10 s"
credential = "echo"
method = "GET"
url = "{h}/delay/10"
auth = {{ type = "bearer" }}
"#,
        config()
    ));
    let (child, mut stdin, mut stdout) = raw_session(&env);
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo__delay","arguments":{{}}}}}}"#
    )
    .unwrap();
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    env.seen.lock().unwrap().extend_from_slice(rest.as_bytes());
    env.seen.lock().unwrap().extend_from_slice(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !rest.contains(r#""id":2"#),
        "the 10 s call answered: {rest}"
    );
    env.assert_one_cancelled_record("echo.delay", "allow", "stdin closed");
    env.assert_no_leak();
}

/// SIGTERM or SIGINT to the server (how a client stops one that outlived its stdin) ends it
/// with 128 + the signal at once, and a call still held for approval is audited as
/// `cancelled`.
#[test]
fn a_signal_ends_the_session_and_a_held_call_is_audited_as_cancelled() {
    use std::io::{BufRead, Write};
    crate::support::sigint_reaches_children();
    for (signal, code) in [("-TERM", 143), ("-INT", 130)] {
        let env = Env::new(&config());
        let (child, mut stdin, mut stdout) = raw_session(&env);
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo__headers","arguments":{{}}}}}}"#
        )
        .unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("approval_required"), "{signal}: {line}");
        crate::support::send_signal(child.id(), signal);
        let out = child.wait_with_output().unwrap();
        env.seen.lock().unwrap().extend_from_slice(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{signal}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env.assert_one_cancelled_record("echo.headers", "approve", signal);
        drop(stdin);
        env.assert_no_leak();
    }
}
