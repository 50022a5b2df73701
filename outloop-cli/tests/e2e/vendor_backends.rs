//! A credential held in Doppler, through the whole chain: `[backends.doppler]` whose token
//! lives in the vault, the Doppler fake (`tests/fakes/doppler_fake.py`), httpbin echoing the
//! credential back, and redaction of both the credential and the backend's own token.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::{Env, httpbin};

const DOPPLER_TOKEN: &str = "dp.st.dev.FAKEe2eServiceToken000000000000000000000001";
const ECHO_VALUE: &str = "FAKE-doppler-held-echo-token-5e1d";

struct Fake(Child);

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_doppler(dir: &Path) -> (Fake, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let venv = repo.join(".venv/bin/python");
    let python = std::env::var_os("OUTLOOP_TEST_PYTHON")
        .map(Into::into)
        .unwrap_or(if venv.exists() {
            venv
        } else {
            "python3".into()
        });
    let seed = serde_json::json!({
        "tokens": {DOPPLER_TOKEN: {"project": "web", "config": "dev"}},
        "projects": {"web": {"dev": {"environment": "dev", "secrets": {"ECHO_TOKEN": ECHO_VALUE}}}}
    });
    let seed_path = dir.join("doppler-seed.json");
    std::fs::write(&seed_path, seed.to_string()).unwrap();
    let mut child = Command::new(python)
        .arg(repo.join("tests/fakes/doppler_fake.py"))
        .arg(&seed_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Doppler fake");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("http://127.0.0.1:"), "{line:?}");
    (Fake(child), line.trim().to_owned())
}

#[test]
fn a_doppler_credential_is_applied_and_it_and_the_backend_token_are_redacted() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, url) = start_doppler(tmp.path());
    let h = httpbin();
    let extra = format!(
        r#"
[backends.doppler]
kind = "doppler"
token = "vault://outloop/doppler-token"
api_host = "{url}"
project = "web"
config = "dev"

[actions."dop.bearer"]
credential = "dop"
method = "GET"
url = "{h}/bearer"
auth = {{ type = "bearer" }}

[actions."dop.anything"]
credential = "dop"
method = "GET"
url = "{h}/anything"
query = {{ q = "{{q}}" }}
auth = {{ type = "bearer" }}
params.q = {{ type = "string" }}

[policy.tenants.acme]
allow = ["dop.*"]
"#
    );
    let mut env = Env::new(&extra);
    env.secrets.push(DOPPLER_TOKEN.into());
    env.secrets.push(ECHO_VALUE.into());
    env.set_secret("vault://outloop/doppler-token", DOPPLER_TOKEN, None);
    let cfg = env.config_path();
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[tenants.acme.credentials]\n",
        "[tenants.acme.credentials]\ndop = \"doppler://web/dev/ECHO_TOKEN\"\n",
        1,
    );
    std::fs::write(&cfg, text).unwrap();

    let r = env.run(&["call", "dop.bearer", "--json"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    let body: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["authenticated"], true,
        "httpbin got the Doppler-held token"
    );
    assert_eq!(body["token"], "[REDACTED:dop]");

    // An upstream that reflects the backend's own token gets it redacted too (own_secrets).
    let q = format!("q={DOPPLER_TOKEN}");
    let r = env.run(&["call", "dop.anything", "-p", &q, "--json"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let body = r.json()["body"].as_str().unwrap().to_owned();
    assert!(body.contains("[REDACTED:backend:doppler]"), "{body}");

    // A reference the fake does not hold is a backend error (exit 4) with no vendor text.
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "doppler://web/dev/ECHO_TOKEN",
        "doppler://web/dev/MISSING",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let r = env.run(&["call", "dop.bearer"], &env.acme);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("404") && !r.stderr.contains("messages"),
        "{}",
        r.stderr
    );
    env.assert_no_leak();
}
