//! `outloop exec`: real child processes get the credential in their environment, a minimal
//! base and nothing else; their output is redacted while it streams (pipes and a real pty);
//! refused names and denied requests never start the child; exit codes pass through.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sha2::{Digest, Sha256};

use crate::support::{ACME_ECHO, ACME_KEY, Env, Run};

/// Synthetic backend tokens planted in outloop's own environment: never inherited.
const DOPPLER_FAKE: &str = "FAKE-doppler-service-token-19ac";
const OP_FAKE: &str = "FAKE-op-service-account-token-7d2e";

const POLICY: &str = r#"
[policy.tenants.acme]
allow = ["exec:echo", "exec:key"]
"#;

fn env() -> Env {
    let mut env = Env::new(POLICY);
    env.secrets.push(DOPPLER_FAKE.into());
    env.secrets.push(OP_FAKE.into());
    env
}

/// Starts `outloop <args>` in `cwd` with piped stdio and the planted tokens in its
/// environment.
fn spawn(env: &Env, args: &[&str], cwd: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_outloop"))
        .args(args)
        .current_dir(cwd)
        .env("OUTLOOP_HOME", &env.home)
        .env("DOPPLER_TOKEN", DOPPLER_FAKE)
        .env("OP_SERVICE_ACCOUNT_TOKEN", OP_FAKE)
        .env("INFISICAL_TOKEN", "FAKE-infisical-token-00")
        .env("NODE_OPTIONS", "--require=/nonexistent/outloop-test.js")
        .env("UNLISTED_VAR", "unlisted-value")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("outloop binary runs")
}

/// Runs to completion with `stdin`, recording the output for the leak check.
fn exec(env: &Env, args: &[&str], cwd: &Path, stdin: &[u8]) -> Run {
    let mut child = spawn(env, args, cwd);
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
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

fn audit(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.audit_path())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[test]
fn child_gets_the_value_and_its_output_is_redacted() {
    let env = env();
    // The child proves it holds the real value by its digest, then prints it outright.
    let r = exec(
        &env,
        &[
            "exec",
            "--credential",
            "echo",
            "--credential",
            "key=API_KEY",
            "--",
            "sh",
            "-c",
            r#"printf %s "$ECHO" | sha256sum; printf %s "$API_KEY" | sha256sum; echo "echo=$ECHO"; echo "key=$API_KEY" >&2"#,
        ],
        &env.acme,
        b"",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with(&sha256_hex(ACME_ECHO)), "{}", r.stdout);
    assert!(lines[1].starts_with(&sha256_hex(ACME_KEY)), "{}", r.stdout);
    assert_eq!(lines[2], "echo=[REDACTED:echo]");
    assert_eq!(r.stderr, "key=[REDACTED:key]\n");

    // Two records per run: handed out, then how it ended; argv[0] only, never arguments.
    let recs = audit(&env);
    let (start, end) = (&recs[recs.len() - 2], &recs[recs.len() - 1]);
    assert_eq!(start["action"], "exec:echo,key");
    assert_eq!(start["decision"], "allow");
    assert_eq!(start["outcome"], "started");
    assert_eq!(start["reason"], "command `sh`");
    assert_eq!(end["request_id"], start["request_id"]);
    assert_eq!(end["outcome"], "ok");
    assert_eq!(end["reason"], "command `sh` exited with code 0");
    assert_eq!(end["redactions"], 2);
    let log = std::fs::read_to_string(env.audit_path()).unwrap();
    assert!(!log.contains("sha256sum"), "arguments reached the audit");
    env.ok(&["audit", "verify"], &env.root);
    env.assert_no_leak();
}

#[test]
fn secret_split_across_two_writes_is_redacted_and_the_rest_streams() {
    let env = env();
    let dir = env.root.join("fifos");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ready", "go"] {
        let ok = Command::new("mkfifo")
            .arg(dir.join(f))
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo");
    }
    let half = ACME_ECHO.len() / 2;
    // Two processes write the two halves; between them the child waits for the test.
    let script = format!(
        r#"echo before
printf %s "$ECHO" | head -c {half}
echo ready > "$1/ready"
read go < "$1/go"
printf %s "$ECHO" | tail -c +{rest}
echo " after""#,
        rest = half + 1
    );
    let mut child = spawn(
        &env,
        &[
            "exec",
            "--credential",
            "echo",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
            dir.to_str().unwrap(),
        ],
        &env.acme,
    );
    drop(child.stdin.take());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Output that cannot begin a secret is released at once, before the child goes on.
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "before\n");
    // The first half has been written when the child reaches the handshake.
    let mut ready = String::new();
    std::fs::File::open(dir.join("ready"))
        .unwrap()
        .read_to_string(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("go"))
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    env.seen.lock().unwrap().extend_from_slice(rest.as_bytes());
    assert_eq!(status.code(), Some(0));
    assert_eq!(rest, "[REDACTED:echo] after\n");
    env.assert_no_leak();
}

#[test]
fn env_shows_the_minimal_base_and_no_backend_token() {
    let env = env();
    let r = exec(
        &env,
        &["exec", "--credential", "echo", "--", "env"],
        &env.acme,
        b"",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let names: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    let base = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TERM",
        "COLORTERM",
        "TZ",
        "TMPDIR",
    ];
    for n in &names {
        assert!(
            *n == "ECHO" || base.contains(n) || n.starts_with("LC_"),
            "unexpected variable `{n}` in the child's environment"
        );
    }
    assert!(names.contains(&"PATH"), "{names:?}");
    assert!(r.stdout.contains("ECHO=[REDACTED:echo]\n"), "{}", r.stdout);
    for absent in [
        "DOPPLER_TOKEN",
        "OP_SERVICE_ACCOUNT_TOKEN",
        "INFISICAL_TOKEN",
        "OUTLOOP_HOME",
        "NODE_OPTIONS",
        "UNLISTED_VAR",
    ] {
        assert!(!names.contains(&absent), "{absent} was inherited");
    }

    // --env passes one more named variable, and nothing else.
    let r = exec(
        &env,
        &[
            "exec",
            "--credential",
            "echo",
            "--env",
            "UNLISTED_VAR",
            "--",
            "env",
        ],
        &env.acme,
        b"",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("UNLISTED_VAR=unlisted-value\n"));
    assert!(!r.stdout.contains("DOPPLER_TOKEN"));
    env.assert_no_leak();
}

#[test]
fn refused_names_fail_with_one_line_and_never_start_the_child() {
    let env = env();
    let marker = env.root.join("child-ran");
    let touch = format!("touch {}", marker.display());
    let cases: &[(&[&str], &str)] = &[
        (
            &["--credential", "echo=LD_PRELOAD"],
            "outloop: --credential `echo=LD_PRELOAD`: variable `LD_PRELOAD` is refused: the dynamic loader reads it",
        ),
        (
            &["--credential", "echo=PATH"],
            "outloop: --credential `echo=PATH`: variable `PATH` is refused",
        ),
        (
            &["--credential", "echo=BASH_ENV"],
            "variable `BASH_ENV` is refused: bash sources the file it names",
        ),
        (
            &["--credential", "echo=NODE_OPTIONS"],
            "variable `NODE_OPTIONS` is refused",
        ),
        (&["--credential", "echo=1A"], "`1A` is not a variable name"),
        (
            &["--credential", "echo=A-B"],
            "`A-B` is not a variable name",
        ),
        (
            &["--credential", "echo="],
            "a variable name cannot be empty",
        ),
        (&["--credential", "=ECHO"], "the credential name is empty"),
        (
            &["--credential", "echo", "--env", "DOPPLER_TOKEN"],
            "outloop: --env DOPPLER_TOKEN: variable `DOPPLER_TOKEN` is never passed on",
        ),
        (
            &["--credential", "echo", "--env", "LD_PRELOAD"],
            "variable `LD_PRELOAD` is refused",
        ),
    ];
    let before = audit(&env).len();
    for (flags, want) in cases {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend(["--", "sh", "-c", &touch]);
        let r = exec(&env, &args, &env.acme, b"");
        assert_eq!(r.code, 2, "{flags:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{flags:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
        assert!(r.stdout.is_empty());
        assert!(!marker.exists(), "{flags:?}: the child ran");
    }
    // Refused before the broker: no backend read, nothing to audit.
    assert_eq!(audit(&env).len(), before);
    env.assert_no_leak();
}

#[test]
fn exit_codes_and_signals_pass_through() {
    let env = env();
    for (script, code) in [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 42", 42),
        ("kill -TERM $$", 128 + 15),
        ("kill -KILL $$", 128 + 9),
    ] {
        let r = exec(
            &env,
            &["exec", "--credential", "echo", "--", "sh", "-c", script],
            &env.acme,
            b"",
        );
        assert_eq!(r.code, code, "{script}: {}", r.stderr);
        assert!(r.stderr.is_empty(), "{script}: {}", r.stderr);
    }
    let recs = audit(&env);
    assert_eq!(
        recs.last().unwrap()["reason"],
        "command `sh` was ended by signal 9 (exit code 137)"
    );

    let r = exec(
        &env,
        &[
            "exec",
            "--credential",
            "echo",
            "--",
            "no-such-command-outloop",
        ],
        &env.acme,
        b"",
    );
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("outloop: cannot run `no-such-command-outloop`: "),
        "{}",
        r.stderr
    );
    assert_eq!(audit(&env).last().unwrap()["outcome"], "not_found");
    env.assert_no_leak();
}

#[test]
fn denied_requests_exit_3_and_never_start_the_child() {
    let env = env();
    let marker = env.root.join("child-ran");
    let touch = format!("touch {}", marker.display());
    let cases: [(&[&str], &PathBuf, &str); 4] = [
        // globex has no exec rule: denied by default
        (&["--credential", "echo"], &env.globex, "policy.default"),
        // `other` is not allowed for acme
        (&["--credential", "other"], &env.acme, "policy.default"),
        (&["--credential", "echo"], &env.unbound, ""),
        (
            &["--credential", "echo", "--tenant", "globex"],
            &env.acme,
            "is bound to tenant `acme`",
        ),
    ];
    for (flags, dir, want) in cases {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend(["--", "sh", "-c", &touch]);
        let r = exec(&env, &args, dir, b"");
        assert_eq!(r.code, 3, "{flags:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{flags:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        assert!(!marker.exists(), "{flags:?}: the child ran");
        let last = audit(&env).pop().unwrap();
        assert_eq!(last["decision"], "deny");
        assert!(
            last["reason"]
                .as_str()
                .unwrap()
                .starts_with("command `sh`: ")
        );
    }
    env.assert_no_leak();
}

#[test]
fn stdin_is_forwarded_in_pipe_mode() {
    let env = env();
    let r = exec(
        &env,
        &[
            "exec",
            "--credential",
            "echo",
            "--",
            "sh",
            "-c",
            r#"read line; echo "got:$line:$ECHO""#,
        ],
        &env.acme,
        b"hello\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "got:hello:[REDACTED:echo]\n");
    env.assert_no_leak();
}

#[test]
fn pty_mode_is_a_terminal_keeps_colour_and_redacts() {
    let env = env();
    // The secret in red, and once more with a colour change inside it.
    let half = ACME_ECHO.len() / 2;
    let script = format!(
        r#"if [ -t 0 ] && [ -t 1 ] && [ -t 2 ]; then
  printf '\033[31mtty %s\033[0m\n' "$ECHO"
  printf '%s\033[1m%s\n' "$(printf %s "$ECHO" | head -c {half})" "$(printf %s "$ECHO" | tail -c +{rest})"
  printf 'err %s\n' "$ECHO" >&2
  stty size
else
  echo notty
fi"#,
        rest = half + 1
    );
    let r = exec(
        &env,
        &[
            "exec",
            "--pty",
            "--credential",
            "echo",
            "--",
            "sh",
            "-c",
            &script,
        ],
        &env.acme,
        b"",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("notty"), "{}", r.stdout);
    // The pty turns `\n` into `\r\n`, as a terminal does.
    assert!(
        r.stdout.contains("\x1b[31mtty [REDACTED:echo]\x1b[0m\r\n"),
        "{:?}",
        r.stdout
    );
    assert!(
        r.stdout.contains("err [REDACTED:echo]\r\n"),
        "{:?}",
        r.stdout
    );
    // Without a terminal of our own, the pty gets a standard 24x80 window.
    assert!(r.stdout.contains("24 80\r\n"), "{:?}", r.stdout);
    assert_eq!(
        r.stdout.matches("[REDACTED:echo]").count(),
        3,
        "{:?}",
        r.stdout
    );
    env.assert_no_leak();
}

#[test]
fn pty_mode_forwards_stdin_and_exit_codes() {
    let env = env();
    let r = exec(
        &env,
        &[
            "exec",
            "--pty",
            "--credential",
            "echo",
            "--",
            "sh",
            "-c",
            r#"read line; echo "got:$line:$ECHO"; exit 7"#,
        ],
        &env.acme,
        b"hello\n",
    );
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(
        r.stdout.contains("got:hello:[REDACTED:echo]\r\n"),
        "{:?}",
        r.stdout
    );
    // Input without a final newline, then end of input, reaches a reader of all of stdin.
    let r = exec(
        &env,
        &[
            "exec",
            "--pty",
            "--credential",
            "echo",
            "--",
            "sh",
            "-c",
            "cat >/dev/null; kill -INT $$",
        ],
        &env.acme,
        b"partial",
    );
    assert_eq!(r.code, 128 + 2, "{}", r.stderr);
    env.assert_no_leak();
}

#[test]
fn sigterm_to_outloop_is_passed_on_to_the_child() {
    let env = env();
    // The child announces itself, then waits in `wait`, which a trapped signal interrupts
    // (the 30 s sleep only bounds a failing run; nothing waits for it to pass).
    let script = r#"trap 'kill $!; echo got-term; exit 5' TERM
sleep 30 >/dev/null 2>&1 &
echo ready
wait $!"#;
    let mut child = spawn(
        &env,
        &["exec", "--credential", "echo", "--", "sh", "-c", script],
        &env.acme,
    );
    drop(child.stdin.take());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    crate::support::send_signal(child.id(), "-TERM");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(
        status.code(),
        Some(5),
        "outloop outlived TERM and passed the code on"
    );
    let last = audit(&env).pop().unwrap();
    assert_eq!(last["reason"], "command `sh` exited with code 5");
    env.assert_no_leak();
}
