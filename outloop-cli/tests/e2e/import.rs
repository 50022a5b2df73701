//! `outloop import`: a `.env` (and JSON, YAML) file's secrets move into the vault, the tenant
//! gets the credentials, the file keeps a note where each value was and every other byte.
//! Failures part-way are covered by the unit tests beside the code (a backend wrapper that
//! fails after the third value); here the binary refuses up front and changes nothing.

use std::path::Path;

use crate::support::Env;

use super::scan::tokens;

fn token(kind: &str) -> String {
    tokens().into_iter().find(|(k, _)| *k == kind).unwrap().1
}

/// A `.env` with every form: comments (full-line and trailing), blank lines, `export`,
/// single and double quotes with escapes, a multi-line value, CRLF, and entries that are not
/// secrets. Returns the text and the secret values in it.
fn dotenv() -> (String, Vec<String>) {
    let hub = token("hubspot-private-app-token");
    let stripe = token("stripe-secret-key");
    let gh = token("github-token");
    let multi = "FAKE line one\nFAKE \"line\" two\\".to_owned();
    let assigned = "FAKE9x2Lq Z7w#Vb3m".to_owned();
    let text = format!(
        "# Acme settings\r\nPORT=3000\n\nexport HUBSPOT_TOKEN={hub}   # from HubSpot, private app\nSTRIPE_SECRET_KEY='{stripe}'\n  GITHUB_TOKEN = \"{gh}\" # ci\nMULTI_LINE_SECRET=\"FAKE line one\nFAKE \\\"line\\\" two\\\\\"\nGREETING=\"hello # not a comment\"\nMY_SERVICE_PASSWORD=\"{assigned}\"\nEMPTY_TOKEN=\nNEXT_URL=${{BASE_URL}}/next\n# end\n"
    );
    (text, vec![hub, stripe, gh, multi, assigned])
}

fn expected_after() -> String {
    "# Acme settings\r\nPORT=3000\n\n# HUBSPOT_TOKEN moved to outloop: credential hubspot_token (vault://acme/hubspot_token)   # from HubSpot, private app\n# STRIPE_SECRET_KEY moved to outloop: credential stripe_secret_key (vault://acme/stripe_secret_key)\n  # GITHUB_TOKEN moved to outloop: credential github_token (vault://acme/github_token) # ci\n# MULTI_LINE_SECRET moved to outloop: credential multi_line_secret (vault://acme/multi_line_secret)\nGREETING=\"hello # not a comment\"\n# MY_SERVICE_PASSWORD moved to outloop: credential my_service_password (vault://acme/my_service_password)\nEMPTY_TOKEN=\nNEXT_URL=${BASE_URL}/next\n# end\n".to_owned()
}

fn env_with(values: &[String]) -> Env {
    let mut env = Env::new("");
    env.secrets
        .extend(values.iter().map(|v| v.clone().into_bytes()));
    env
}

/// No backup `import` made is left in `dir`.
fn assert_no_backup(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("outloop-backup"))
        .collect();
    assert!(left.is_empty(), "backups left: {left:?}");
}

fn secret_list(env: &Env) -> String {
    env.ok(&["secret", "list"], &env.root).stdout
}

#[test]
fn dotenv_round_trip_into_the_vault() {
    let (text, values) = dotenv();
    // MULTI_LINE_SECRET is moved because its name says so; it is not assigned-looking text.
    let env = env_with(&values);
    let file = env.acme.join(".env");
    std::fs::write(&file, &text).unwrap();
    let copy = env.unbound.join("original.env");
    std::fs::write(&copy, &text).unwrap();

    let r = env.run(
        &["import", ".env", "--tenant", "acme", "--all", "--dry-run"],
        &env.acme,
    );
    // --all also moves GREETING; PORT=3000 is under the redaction floor and kept.
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("would move GREETING (line 9)")
            && r.stdout.contains(
                "keep PORT (line 2): shorter than the redaction floor, so not a secret outloop can redact\n"
            ),
        "{}",
        r.stdout
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    let r = env.run(&["import", ".env", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        "move HUBSPOT_TOKEN (line 4) -> credential hubspot_token = vault://acme/hubspot_token\n\
         move STRIPE_SECRET_KEY (line 5) -> credential stripe_secret_key = vault://acme/stripe_secret_key\n\
         move GITHUB_TOKEN (line 6) -> credential github_token = vault://acme/github_token\n\
         move MULTI_LINE_SECRET (line 7) -> credential multi_line_secret = vault://acme/multi_line_secret\n\
         move MY_SERVICE_PASSWORD (line 10) -> credential my_service_password = vault://acme/my_service_password\n\
         keep PORT (line 2): does not look like a secret\n\
         keep GREETING (line 9): does not look like a secret (--all moves it)\n\
         keep EMPTY_TOKEN (line 11): empty\n\
         keep NEXT_URL (line 12): refers to another variable\n\
         moved 5 value(s) to backend `vault`; tenant `acme` has the credentials; .env keeps a note where each value was\n"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), expected_after());
    assert_no_backup(&env.acme);
    let list = secret_list(&env);
    for c in [
        "hubspot_token",
        "stripe_secret_key",
        "github_token",
        "multi_line_secret",
        "my_service_password",
    ] {
        assert!(list.contains(&format!("vault://acme/{c}\n")), "{list}");
    }
    let tenants = env.ok(&["tenant", "list"], &env.root).stdout;
    assert!(
        tenants.contains("credential github_token = vault://acme/github_token"),
        "{tenants}"
    );

    // The workspace is clean now; the original copy elsewhere holds exactly the stored values.
    let r = env.run(&["scan", "."], &env.acme);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    let r = env.run(&["scan", "--json", "."], &env.unbound);
    assert_eq!(r.code, 6);
    let refs: Vec<(u64, String)> = r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["line"].as_u64().unwrap(),
                f["reference"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        refs,
        [
            (4, "vault://acme/hubspot_token".to_owned()),
            (5, "vault://acme/stripe_secret_key".to_owned()),
            (6, "vault://acme/github_token".to_owned()),
            (7, "vault://acme/multi_line_secret".to_owned()),
            (8, "vault://acme/multi_line_secret".to_owned()),
            (10, "vault://acme/my_service_password".to_owned()),
        ]
    );
    env.assert_no_leak();
}

#[test]
fn dry_run_shows_the_plan_and_changes_nothing() {
    let (text, values) = dotenv();
    let env = env_with(&values);
    let file = env.acme.join(".env");
    std::fs::write(&file, &text).unwrap();
    let before = secret_list(&env);
    let r = env.run(
        &[
            "import",
            ".env",
            "--tenant",
            "acme",
            "--dry-run",
            "--prefix",
            "app_",
        ],
        &env.acme,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with(
        "would move HUBSPOT_TOKEN (line 4) -> credential app_hubspot_token = vault://acme/app_hubspot_token\n"
    ), "{}", r.stdout);
    assert!(r.stdout.ends_with("dry run: 5 value(s) would move to backend `vault` and tenant `acme`; nothing was changed\n"), "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    assert_eq!(secret_list(&env), before);
    env.assert_no_leak();
}

#[test]
fn an_existing_reference_or_credential_is_refused_up_front() {
    let (text, values) = dotenv();
    let env = env_with(&values);
    let file = env.acme.join(".env");
    std::fs::write(&file, &text).unwrap();
    env.set_secret(
        "vault://acme/github_token",
        "FAKE-already-stored-value",
        None,
    );
    let before = secret_list(&env);
    let r = env.run(&["import", ".env", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "outloop: .env:6: GITHUB_TOKEN: `vault://acme/github_token` already holds a secret; nothing was changed (delete it with `outloop secret delete vault://acme/github_token` or pick another name with --prefix)\n"
    );
    assert_eq!(r.stdout, "");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    assert_eq!(secret_list(&env), before);

    // A credential name the tenant already has.
    std::fs::write(&file, format!("ECHO={}\n", values[2])).unwrap();
    let r = env.run(&["import", ".env", "--tenant", "acme", "--all"], &env.acme);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains(".env:1: ECHO: tenant `acme` already has credential `echo`"),
        "{}",
        r.stderr
    );
    // An unknown tenant and a file that does not parse.
    let r = env.run(&["import", ".env", "--tenant", "nobody"], &env.acme);
    assert_eq!(
        (r.code, r.stderr.contains("no tenant `nobody`")),
        (2, true),
        "{}",
        r.stderr
    );
    std::os::unix::fs::symlink(&file, env.acme.join("link.env")).unwrap();
    let r = env.run(&["import", "link.env", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "outloop: import: `link.env` is a symbolic link; import the file it points to\n"
    );
    std::fs::write(&file, "A=1\nB=\"open\n").unwrap();
    let r = env.run(&["import", ".env", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "outloop: .env:2: the double quote opened here is never closed\n"
    );
    assert_eq!(secret_list(&env), before);
    env.assert_no_leak();
}

fn import_structured(name: &str, text: &str, want: &str, values: &[String]) {
    let env = env_with(values);
    let file = env.acme.join(name);
    std::fs::write(&file, text).unwrap();
    let r = env.run(&["import", name, "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), want);
    let r = env.run(&["scan", "--json", "."], Path::new(&env.acme));
    assert_eq!(r.code, 0, "{}", r.stdout);
    env.assert_no_leak();
}

#[test]
fn json_and_yaml_files_by_extension() {
    let gh = token("github-token");
    let sg = token("sendgrid-api-key");
    import_structured(
        "settings.json",
        &format!(
            "{{\n  \"github_token\": \"{gh}\",\n  \"retries\": 3,\n  \"nested\": {{\"keep\": \"me\"}},\n  \"SENDGRID\": \"{sg}\"\n}}\n"
        ),
        "{\n  \"github_token\": \"moved to outloop: credential github_token (vault://acme/github_token)\",\n  \"retries\": 3,\n  \"nested\": {\"keep\": \"me\"},\n  \"SENDGRID\": \"moved to outloop: credential sendgrid (vault://acme/sendgrid)\"\n}\n",
        &[gh.clone(), sg.clone()],
    );
    import_structured(
        "settings.yml",
        &format!("# service\ngithub_token: \"{gh}\"  # ci\nretries: 3\nSENDGRID: {sg}\n"),
        "# service\n# github_token moved to outloop: credential github_token (vault://acme/github_token)  # ci\nretries: 3\n# SENDGRID moved to outloop: credential sendgrid (vault://acme/sendgrid)\n",
        &[gh, sg],
    );
}

#[test]
fn a_token_on_its_own_line_or_as_a_key_is_never_printed() {
    let hub = token("hubspot-private-app-token");
    let gh = token("github-token");
    let env = env_with(&[hub.clone(), gh.clone()]);
    let file = env.acme.join(".env");
    for line in [hub.clone(), format!("export {hub}"), format!("{hub} # c")] {
        let text = format!("PORT=3000\n{line}\n");
        std::fs::write(&file, &text).unwrap();
        let r = env.run(&["import", ".env", "--tenant", "acme"], &env.acme);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert_eq!(r.stderr, "outloop: .env:2: expected `KEY=value`\n");
        assert!(!r.stdout.contains(&hub) && !r.stderr.contains(&hub));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    }
    // A token used as a key: kept, and printed masked.
    std::fs::write(&file, format!("{gh}=1\n")).unwrap();
    let r = env.run(&["import", ".env", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains(&gh), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("(line 1): the key itself looks like a secret; rename it"),
        "{}",
        r.stdout
    );
    let json = env.acme.join("app.json");
    std::fs::write(&json, format!("{{\"{gh}\": \"x\"}}\n")).unwrap();
    let r = env.run(&["import", "app.json", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains(&gh), "{}", r.stdout);
    env.assert_no_leak();
}

#[test]
fn a_user_file_named_like_the_backup_is_left_alone() {
    let hub = token("hubspot-private-app-token");
    let env = env_with(std::slice::from_ref(&hub));
    let file = env.acme.join("app.env");
    std::fs::write(&file, format!("HUBSPOT_TOKEN={hub}\n")).unwrap();
    let mine = env.acme.join(".app.env.outloop-backup");
    std::fs::write(&mine, "mine\n").unwrap();
    let r = env.run(&["import", "app.env", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "mine\n");
    std::fs::remove_file(&mine).unwrap();
    assert_no_backup(&env.acme);
    assert!(!std::fs::read_to_string(&file).unwrap().contains(&hub));
    env.assert_no_leak();
}

#[test]
fn fifos_and_hard_linked_files_are_refused() {
    let hub = token("hubspot-private-app-token");
    let env = env_with(std::slice::from_ref(&hub));
    let fifo = env.acme.join(".env");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let r = env.run(&["import", ".env", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr, "outloop: import: `.env` is not a regular file\n");

    let file = env.acme.join("app.env");
    let text = format!("HUBSPOT_TOKEN={hub}\n");
    std::fs::write(&file, &text).unwrap();
    std::fs::hard_link(&file, env.unbound.join("other.env")).unwrap();
    let r = env.run(&["import", "app.env", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("outloop: import: `app.env` has 2 hard links;"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    assert!(!secret_list(&env).contains("hubspot_token"));
    env.assert_no_leak();
}

/// With another process holding the config lock, import waits (saying so) before changing
/// anything; SIGINT then leaves the file, the vault and the config as they were.
#[test]
fn interrupted_while_waiting_for_the_config_lock_changes_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let hub = token("hubspot-private-app-token");
    let env = env_with(std::slice::from_ref(&hub));
    let file = env.acme.join(".env");
    let text = format!("HUBSPOT_TOKEN={hub}\n");
    std::fs::write(&file, &text).unwrap();
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    let before = secret_list(&env);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(env.home.join("config.toml.lock"))
        .unwrap();
    lock.lock().unwrap();
    crate::support::sigint_reaches_children();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outloop"))
        .args(["import", ".env", "--tenant", "acme"])
        .current_dir(&env.acme)
        .env("OUTLOOP_HOME", &env.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("waiting for the config lock "), "{line}");
    crate::support::send_signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    drop(lock);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(&hub) && !line.contains(&hub));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    assert_eq!(std::fs::read_to_string(env.config_path()).unwrap(), config);
    assert_eq!(secret_list(&env), before);
    assert_no_backup(&env.acme);
}

#[test]
fn a_prefix_credential_names_cannot_have_is_refused() {
    let hub = token("hubspot-private-app-token");
    let env = env_with(std::slice::from_ref(&hub));
    let file = env.acme.join(".env");
    let text = format!("HUBSPOT_TOKEN={hub}\n");
    std::fs::write(&file, &text).unwrap();
    for prefix in ["a b.", "\"q\"", "../x/"] {
        let r = env.run(
            &["import", ".env", "--tenant", "acme", "--prefix", prefix],
            &env.acme,
        );
        assert_eq!(r.code, 2, "{prefix}: {}", r.stderr);
        assert!(
            r.stderr
                .starts_with("outloop: import: --prefix: credential names use letters"),
            "{}",
            r.stderr
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    }
    env.assert_no_leak();
}

#[test]
fn a_byte_order_mark_is_kept_and_cr_only_files_are_refused() {
    let hub = token("hubspot-private-app-token");
    let env = env_with(std::slice::from_ref(&hub));
    let file = env.acme.join(".env");
    std::fs::write(&file, format!("\u{feff}HUBSPOT_TOKEN={hub}\nPORT=3000\n")).unwrap();
    let r = env.run(&["import", ".env", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "\u{feff}# HUBSPOT_TOKEN moved to outloop: credential hubspot_token (vault://acme/hubspot_token)\nPORT=3000\n"
    );

    let file = env.acme.join("mac.env");
    let text = format!("PORT=3000\rGITHUB_TOKEN={hub}\r");
    std::fs::write(&file, &text).unwrap();
    let r = env.run(&["import", "mac.env", "--tenant", "acme"], &env.acme);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "outloop: import: `mac.env` ends its lines with CR only; convert it to LF (or CRLF) line endings first\n"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    env.assert_no_leak();
}
