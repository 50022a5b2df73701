//! `outloop import --backend <secret-service>`: the same import into a real, private GNOME
//! Keyring (the fixture in outloop-backends/tests/support/keyring.rs), read back with
//! `secret-tool`; and a refusal that leaves the keyring as it was.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::scan::tokens;
use crate::keyring::PrivateKeyring;
use crate::support::{Env, Run};

const KEYRING_BACKEND: &str =
    "\n[backends.keyring]\nkind = \"secret-service\"\ntimeout = \"10s\"\n";

/// Runs `outloop` on the private keyring's bus, recording its output for the leak check.
fn run(env: &Env, args: &[&str], cwd: &Path, kr: &PrivateKeyring) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outloop"));
    cmd.args(args)
        .current_dir(cwd)
        .env("OUTLOOP_HOME", &env.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    kr.env(&mut cmd);
    let mut child = cmd.spawn().expect("outloop runs");
    child.stdin.take().unwrap().write_all(b"").unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    {
        let mut seen = env.seen.lock().unwrap();
        seen.extend_from_slice(&stdout);
        seen.extend_from_slice(&stderr);
    }
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn keyring() -> (tokio::runtime::Runtime, PrivateKeyring) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let k = rt.block_on(PrivateKeyring::start());
    (rt, k)
}

fn token(kind: &str) -> String {
    tokens().into_iter().find(|(k, _)| *k == kind).unwrap().1
}

#[test]
fn dotenv_round_trip_into_the_secret_service() {
    let (_rt, kr) = keyring();
    let mut env = Env::new(KEYRING_BACKEND);
    let (gh, sg) = (token("github-token"), token("sendgrid-api-key"));
    let multi = "FAKE first line\nFAKE second line\n".to_owned();
    env.secrets
        .extend([gh.clone(), sg.clone(), multi.clone()].map(String::into_bytes));
    let text = format!(
        "# ci\nexport GITHUB_TOKEN={gh} # bot\nSENDGRID_API_KEY='{sg}'\nDEPLOY_SECRET=\"FAKE first line\nFAKE second line\n\"\nREGION=eu\n"
    );
    let file = env.acme.join(".env");
    std::fs::write(&file, &text).unwrap();
    let r = run(
        &env,
        &["import", ".env", "--tenant", "acme", "--backend", "keyring"],
        &env.acme,
        &kr,
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "# ci\n# GITHUB_TOKEN moved to outloop: credential github_token (secret-service://outloop-acme/github_token) # bot\n# SENDGRID_API_KEY moved to outloop: credential sendgrid_api_key (secret-service://outloop-acme/sendgrid_api_key)\n# DEPLOY_SECRET moved to outloop: credential deploy_secret (secret-service://outloop-acme/deploy_secret)\nREGION=eu\n"
    );
    for (account, value) in [
        ("github_token", &gh),
        ("sendgrid_api_key", &sg),
        ("deploy_secret", &multi),
    ] {
        assert_eq!(
            kr.lookup("outloop-acme", account),
            (0, value.clone().into_bytes()),
            "{account}"
        );
    }
    let tenants = run(&env, &["tenant", "list"], &env.root, &kr).stdout;
    assert!(
        tenants.contains("credential deploy_secret = secret-service://outloop-acme/deploy_secret"),
        "{tenants}"
    );
    env.assert_no_leak();
}

#[test]
fn a_taken_keyring_item_is_refused_and_nothing_is_written() {
    let (_rt, kr) = keyring();
    let mut env = Env::new(KEYRING_BACKEND);
    let (gh, sg) = (token("github-token"), token("sendgrid-api-key"));
    env.secrets
        .extend([gh.clone(), sg.clone()].map(String::into_bytes));
    kr.store("outloop-acme", "sendgrid_api_key", b"FAKE-kept-as-it-was");
    let text = format!("GITHUB_TOKEN={gh}\nSENDGRID_API_KEY={sg}\n");
    let file = env.acme.join(".env");
    std::fs::write(&file, &text).unwrap();
    let r = run(
        &env,
        &["import", ".env", "--tenant", "acme", "--backend", "keyring"],
        &env.acme,
        &kr,
    );
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(".env:2: SENDGRID_API_KEY: `secret-service://outloop-acme/sendgrid_api_key` already holds a secret"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    assert_eq!(
        kr.lookup("outloop-acme", "github_token").0,
        1,
        "nothing written"
    );
    assert_eq!(
        kr.lookup("outloop-acme", "sendgrid_api_key"),
        (0, b"FAKE-kept-as-it-was".to_vec())
    );
    env.assert_no_leak();
}
